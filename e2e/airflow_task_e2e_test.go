package e2e_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/kpo-reaper/kpo-reaper/e2e/fixture"
)

// The Airflow task form: the kpo-reaper-airflow wheel, built from the binary
// under test by python/build_wheel.py and installed into a fresh venv with
// pip --no-index, runs the operator's core (what KpoReaperOperator.execute
// does once Airflow has handed it the connection and its configuration)
// against kube-apiserver and the simulator. Airflow itself is not needed:
// the Airflow-facing class only gathers those inputs.

// taskDriver runs kpo_reaper_airflow.core from the venv: the task's
// arguments as JSON on stdin; the summary, or the failure, and the task
// log's lines as JSON on stdout.
const taskDriver = `
import json, logging, sys
import kpo_reaper_airflow
from kpo_reaper_airflow import core
assert kpo_reaper_airflow.__file__.startswith(sys.prefix), kpo_reaper_airflow.__file__
a = json.load(sys.stdin)
lines = []
class Keep(logging.Handler):
    def emit(self, r): lines.append(logging.getLevelName(r.levelno) + " " + r.getMessage())
log = logging.getLogger("task")
log.addHandler(Keep()); log.setLevel(logging.DEBUG); log.propagate = False
c = a["conn"]
auth = core.auth_from_connection(c["type"], c["login"], c["password"], c.get("host"), c.get("extra"), a["airflow_major"])
cfg = core.build_config(a["airflow_url"], auth, a["namespaces"], a["kubeconfig"], a.get("dry_run", True), a["config"])
out = {"log": lines}
try:
    out["summary"] = core.run_once(cfg, auth.secret_env, log=log)
except core.ReaperFailed as e:
    out["failed"] = {"exit_code": e.exit_code, "message": str(e)}
print(json.dumps(out))
`

// taskVenv builds the wheel for this machine from the reaper binary and
// installs it into a fresh venv; it returns the venv's python.
func taskVenv(t *testing.T) string {
	t.Helper()
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[runtime.GOARCH]
	if arch == "" {
		t.Fatalf("no wheel architecture for GOARCH %s", runtime.GOARCH)
	}
	dir := t.TempDir()
	run := func(name string, args ...string) {
		t.Helper()
		out, err := exec.CommandContext(t.Context(), name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	run("python3", filepath.Join(fixture.RepoRoot(), "python", "build_wheel.py"), "--out", filepath.Join(dir, "wheel"),
		"--version", "v0.0.0", "--binary", arch+"="+reaperBin)
	wheels, _ := filepath.Glob(filepath.Join(dir, "wheel", "*.whl"))
	if len(wheels) != 1 {
		t.Fatalf("built wheels: %v, want one", wheels)
	}
	run("python3", "-m", "venv", filepath.Join(dir, "venv"))
	py := filepath.Join(dir, "venv", "bin", "python")
	run(py, "-m", "pip", "install", "-q", "--no-index", wheels[0])
	return py
}

type taskConn struct {
	Type     string `json:"type"`
	Login    string `json:"login"`
	Password string `json:"password"`
}

type taskArgs struct {
	AirflowURL   string         `json:"airflow_url"`
	Conn         taskConn       `json:"conn"`
	AirflowMajor int            `json:"airflow_major"`
	Namespaces   []string       `json:"namespaces"`
	Kubeconfig   string         `json:"kubeconfig"`
	DryRun       *bool          `json:"dry_run,omitempty"` // nil: the operator's default
	Config       map[string]any `json:"config"`
}

type taskSummary struct {
	Pods, Reaped, Kept, Skipped, Deleted, Calls int
	WouldDelete                                 int  `json:"would_delete"`
	DryRun                                      bool `json:"dry_run"`
}

type taskOutcome struct {
	Log     []string     `json:"log"`
	Summary *taskSummary `json:"summary"`
	Failed  *struct {
		ExitCode int    `json:"exit_code"`
		Message  string `json:"message"`
	} `json:"failed"`
}

// runTask runs the operator's core once with the seed namespace's
// arguments; mod changes them. environ adds to this process's environment.
func (e *env) runTask(py, url string, v airflowVersion, mod func(*taskArgs), environ ...string) taskOutcome {
	e.t.Helper()
	a := taskArgs{
		AirflowURL: url, Conn: taskConn{Type: "http", Login: "admin", Password: "admin"},
		// API v1 is Airflow 2 (basic), v2 is Airflow 3 (airflow-jwt).
		AirflowMajor: v.api + 1, Namespaces: []string{e.ns}, Kubeconfig: e.kubeconfig,
		Config: map[string]any{"reaper": map[string]any{
			"minPodAge": "0s", "terminalGracePeriod": "0s", "confirmations": 1}},
	}
	if mod != nil {
		mod(&a)
	}
	in, err := json.Marshal(a)
	if err != nil {
		e.t.Fatal(err)
	}
	cmd := exec.CommandContext(e.ctx, py, "-c", taskDriver)
	cmd.Dir = e.t.TempDir() // not the source tree: the package comes from the venv
	cmd.Stdin = bytes.NewReader(in)
	cmd.Env = append(os.Environ(), environ...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		e.t.Fatalf("task driver: %v\n%s", err, stderr.String())
	}
	var o taskOutcome
	if err := json.Unmarshal(out, &o); err != nil {
		e.t.Fatalf("task driver output %q: %v", out, err)
	}
	e.t.Logf("task log:\n%s", strings.Join(o.Log, "\n"))
	return o
}

func (o taskOutcome) logged(line string) bool {
	for _, l := range o.Log {
		if strings.HasPrefix(l, line) {
			return true
		}
	}
	return false
}

func TestAirflowTask(t *testing.T) {
	t.Parallel()
	py := taskVenv(t)

	// The task deletes the zombies and keeps the live pods; a reaper task
	// run by KubernetesPodOperator is one of those live pods (its task
	// instance is running while it runs) and keeps itself.
	t.Run("ZombiesDeletedLivePodsAndItsOwnPodKept", func(t *testing.T) {
		t.Parallel()
		forEachVersion(t, func(t *testing.T, v airflowVersion) {
			e, s := newSeedEnv(t, v)
			own := fixture.HealthyPod
			o := e.runTask(py, s.URL, v, func(a *taskArgs) { a.DryRun = new(false) },
				"POD_NAME="+own, "POD_NAMESPACE="+e.ns, "POD_UID="+string(e.uids[own]))
			if o.Failed != nil {
				t.Fatalf("the task failed: %s", o.Failed.Message)
			}
			want := taskSummary{Pods: 4, Reaped: 2, Kept: 2, Deleted: 2}
			got := *o.Summary
			got.Calls = 0
			if got != want || o.Summary.Calls == 0 {
				t.Errorf("summary %+v, want %+v and some calls", *o.Summary, want)
			}
			for _, z := range fixture.SeedZombies {
				if !o.logged("INFO deleted pod=" + e.ns + "/" + z + " ") {
					t.Errorf("the task log does not say %s was deleted", z)
				}
			}
			e.expectGone(fixture.SeedZombies)
		})
	})

	t.Run("DryRunUnlessToldOtherwise", func(t *testing.T) {
		t.Parallel()
		forEachVersion(t, func(t *testing.T, v airflowVersion) {
			e, s := newSeedEnv(t, v)
			o := e.runTask(py, s.URL, v, nil)
			if o.Failed != nil {
				t.Fatalf("the task failed: %s", o.Failed.Message)
			}
			if s := o.Summary; !s.DryRun || s.WouldDelete != 2 || s.Deleted != 0 {
				t.Errorf("summary %+v, want a dry run that would delete 2 and deleted none", *s)
			}
			e.expectGone(nil)
		})
	})

	// Airflow unreachable: the reaper exits 1 and the task fails with its
	// error; nothing is deleted.
	t.Run("AirflowDownFailsTheTask", func(t *testing.T) {
		t.Parallel()
		forEachVersion(t, func(t *testing.T, v airflowVersion) {
			e, s := newSeedEnv(t, v)
			s.stop()
			o := e.runTask(py, s.URL, v, func(a *taskArgs) { a.DryRun = new(false) })
			if o.Failed == nil {
				t.Fatalf("the task succeeded with %+v; want it failed", *o.Summary)
			}
			if o.Failed.ExitCode != 1 || !strings.Contains(o.Failed.Message, "nothing was deleted") ||
				!strings.Contains(o.Failed.Message, "127.0.0.1") {
				t.Errorf("failure %+v: want exit 1 naming the unreachable Airflow", *o.Failed)
			}
			e.expectGone(nil)
		})
	})

	// Confirmations live in the pods' annotations, so they add up across
	// task runs: a run right after another (a retry, a manual trigger) is
	// the same sighting; a run after confirmationSpacing confirms.
	t.Run("ConfirmationsAcrossTaskRuns", func(t *testing.T) {
		t.Parallel()
		forEachVersion(t, func(t *testing.T, v airflowVersion) {
			e, s := newSeedEnv(t, v)
			spaced := func(spacing string) func(*taskArgs) {
				return func(a *taskArgs) {
					a.DryRun = new(false)
					a.Config["reaper"] = map[string]any{"minPodAge": "0s", "terminalGracePeriod": "0s",
						"confirmations": 2, "confirmationSpacing": spacing}
				}
			}
			for i, step := range []struct {
				spacing string
				deleted int
			}{{"1h", 0}, {"1h", 0}, {"1ms", 2}} {
				o := e.runTask(py, s.URL, v, spaced(step.spacing))
				if o.Failed != nil {
					t.Fatalf("run %d failed: %s", i+1, o.Failed.Message)
				}
				if o.Summary.Deleted != step.deleted {
					t.Errorf("run %d (spacing %s) deleted %d, want %d", i+1, step.spacing, o.Summary.Deleted, step.deleted)
				}
				if i == 1 {
					e.expectMarks(map[string]int{fixture.ZombiePod: 1, fixture.Mapped0Pod: 1})
				}
			}
			e.expectGone(fixture.SeedZombies)
		})
	})
}
