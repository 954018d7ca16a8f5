package e2e_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kpo-reaper/kpo-reaper/e2e/fixture"
)

// The operator inside a real Airflow 3 (api-server, scheduler, LocalExecutor
// task runner) built by ../shared/realairflow's recipe in a Debian chroot:
// the wheel is pip-installed into the chroot, a KPO stand-in DAG leaves one
// zombie pod and one live pod in the real kube-apiserver, and the reaper
// DAG's task deletes the zombie. Skipped, saying why, where that chroot is
// not built (it needs root and about 5 minutes), as on a clean clone.

// realAirflowDir holds api-server.sh and live.sh: $REAL_AIRFLOW_SCRIPTS, or
// shared/realairflow next to the clone (or next to its worktrees' folder).
func realAirflowDir() string {
	if d := os.Getenv("REAL_AIRFLOW_SCRIPTS"); d != "" {
		return d
	}
	for _, up := range []string{"..", "../.."} {
		d := filepath.Join(fixture.RepoRoot(), up, "shared", "realairflow")
		if _, err := os.Stat(filepath.Join(d, "api-server.sh")); err == nil {
			return d
		}
	}
	return filepath.Join(fixture.RepoRoot(), "..", "shared", "realairflow")
}

const realKPODag = `
from airflow.sdk import DAG, BaseOperator
import datetime, time

class KubernetesPodOperator(BaseOperator):
    """A stand-in for the cncf.kubernetes provider's operator: the pod is
    created by the test, labelled as KPO labels it; this pushes its name."""
    def __init__(self, pod_name, hold=False, **kw):
        super().__init__(**kw)
        self.pod_name, self.hold = pod_name, hold
    def execute(self, context):
        context["ti"].xcom_push(key="pod_name", value=self.pod_name)
        while self.hold:  # a live task: runs until the scheduler is stopped
            time.sleep(1)

with DAG("kpo_zombie_dag", schedule=None, start_date=datetime.datetime(2025, 1, 1), catchup=False):
    KubernetesPodOperator(task_id="zombie_kpo_task", pod_name=%q)
    KubernetesPodOperator(task_id="healthy_kpo_task", pod_name=%q, hold=True)
`

const realReaperDag = `
from kpo_reaper_airflow import kpo_reaper_dag

dag = kpo_reaper_dag(
    dag_id="kpo_reaper",
    schedule=None,
    airflow_conn_id="kpo_reaper_airflow",
    namespaces=[%q],
    kubeconfig=%q,
    dry_run=False,
    config={"reaper": {"minPodAge": "0s", "terminalGracePeriod": "0s", "confirmations": 1}},
)
`

// realAirflow is one private api-server and scheduler in the chroot.
type realAirflow struct {
	t       *testing.T
	scripts string
	dir     string
	env     map[string]string
	token   string
}

func (r *realAirflow) sh(script string, args ...string) string {
	r.t.Helper()
	out, err := exec.CommandContext(r.t.Context(), filepath.Join(r.scripts, script), args...).CombinedOutput()
	if err != nil {
		r.t.Fatalf("%s %s: %v\n%s", script, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (r *realAirflow) api(method, path string, body any, out any) {
	r.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(r.t.Context(), method, r.env["RA_URL"]+path, rd)
	if err != nil {
		r.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		r.t.Fatalf("%s %s: %s %s", method, path, resp.Status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			r.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
}

// waitTI waits until the task instance is in one of the states, polling
// the API (the scheduler's progress has no event to wait on).
func (r *realAirflow) waitTI(dag, run, task string, states ...string) string {
	r.t.Helper()
	deadline := time.Now().Add(4 * time.Minute)
	var ti struct{ State *string }
	for time.Now().Before(deadline) {
		r.api("GET", fmt.Sprintf("/api/v2/dags/%s/dagRuns/%s/taskInstances/%s", dag, run, task), nil, &ti)
		for _, s := range states {
			if ti.State != nil && *ti.State == s {
				return s
			}
		}
		time.Sleep(time.Second)
	}
	r.t.Fatalf("%s/%s/%s did not reach %v in 4 minutes (state %v); scheduler log %s/ra/scheduler.log",
		dag, run, task, states, ti.State, r.dir)
	return ""
}

func (r *realAirflow) trigger(dag, run string) {
	r.t.Helper()
	r.api("PATCH", "/api/v2/dags/"+dag, map[string]any{"is_paused": false}, nil)
	r.api("POST", "/api/v2/dags/"+dag+"/dagRuns", map[string]any{"dag_run_id": run, "logical_date": nil}, nil)
}

func TestAirflowTaskInRealAirflow(t *testing.T) {
	t.Parallel()
	scripts := realAirflowDir()
	if out, err := exec.Command(filepath.Join(scripts, "api-server.sh"), "check").CombinedOutput(); err != nil {
		t.Skipf("SKIPPED: no real Airflow here (%s check: %s): the operator is tested without it in TestAirflowTask",
			filepath.Join(scripts, "api-server.sh"), strings.TrimSpace(string(out)))
	}
	root := os.Getenv("REAL_AIRFLOW_ROOT")
	if root == "" {
		root = "/tmp/realairflow/rootfs"
	}
	e := newEnv(t)
	const run = "manual__kpo_reaper_real"
	zombie := fixture.PodSpec{Name: "real-zombie-pod", DagID: "kpo_zombie_dag", RunID: run, TaskID: "zombie_kpo_task", MapIndex: -1}
	live := fixture.PodSpec{Name: "real-live-pod", DagID: "kpo_zombie_dag", RunID: run, TaskID: "healthy_kpo_task", MapIndex: -1}
	e.createPods(zombie, live) // before the task instances end, as KPO creates them

	// The wheel, built from the binary under test, pip-installed into the
	// chroot's Python (where the tasks run), and the kubeconfig copied in.
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[runtime.GOARCH]
	stage, err := os.MkdirTemp(filepath.Join(root, "tmp"), "kpo-reaper-wheel.")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(stage) })
	if err := os.Chmod(stage, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("python3", filepath.Join(fixture.RepoRoot(), "python", "build_wheel.py"), "--out", stage,
		"--version", "v0.0.0", "--binary", arch+"="+reaperBin).CombinedOutput(); err != nil {
		t.Fatalf("building the wheel: %v\n%s", err, out)
	}
	wheels, _ := filepath.Glob(filepath.Join(stage, "*.whl"))
	inChroot := strings.TrimPrefix(wheels[0], root)
	if out, err := exec.Command("chroot", root, "python3", "-m", "pip", "install", "-q", "--no-index", "--no-deps",
		"--break-system-packages", "--root-user-action=ignore", "--force-reinstall", inChroot).CombinedOutput(); err != nil {
		t.Fatalf("pip install in the chroot: %v\n%s", err, out)
	}
	kc, err := os.ReadFile(e.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stage, "kubeconfig"), kc, 0o644); err != nil {
		t.Fatal(err)
	}
	dags := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dags, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	kpoDag := write("kpo_zombie_dag.py", fmt.Sprintf(realKPODag, zombie.Name, live.Name))
	reaperDag := write("kpo_reaper.py", fmt.Sprintf(realReaperDag, e.ns, strings.TrimPrefix(stage, root)+"/kubeconfig"))

	r := &realAirflow{t: t, scripts: scripts, dir: t.TempDir()}
	t.Cleanup(func() {
		_ = exec.Command(filepath.Join(scripts, "live.sh"), "stop", r.dir).Run() // best effort: the test is over
		_ = exec.Command(filepath.Join(scripts, "api-server.sh"), "stop", r.dir).Run()
	})
	envFile := strings.TrimSpace(r.sh("api-server.sh", "start", r.dir, kpoDag, reaperDag))
	envFile = envFile[strings.LastIndex(envFile, "\n")+1:]
	b, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatal(err)
	}
	r.env = map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			r.env[k] = v
		}
	}
	t.Logf("real Airflow %s at %s", r.env["RA_VERSION"], r.env["RA_URL"])
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	r.api("POST", "/auth/token", map[string]string{"username": "admin", "password": "admin"}, &tok)
	r.token = tok.AccessToken
	// The reaper's connection: user and password, so airflow-jwt on
	// Airflow 3; no host: the URL comes from this Airflow's configuration.
	r.api("POST", "/api/v2/connections", map[string]any{"connection_id": "kpo_reaper_airflow", "conn_type": "http",
		"login": "admin", "password": "admin"}, nil)
	r.sh("live.sh", "start", r.dir, "scheduler")

	r.trigger("kpo_zombie_dag", run)
	r.waitTI("kpo_zombie_dag", run, "zombie_kpo_task", "success")
	r.waitTI("kpo_zombie_dag", run, "healthy_kpo_task", "running")

	const reaperRun = "manual__reap_once"
	r.trigger("kpo_reaper", reaperRun)
	state := r.waitTI("kpo_reaper", reaperRun, "reap", "success", "failed")

	var logs struct {
		Content []map[string]any `json:"content"`
	}
	r.api("GET", "/api/v2/dags/kpo_reaper/dagRuns/"+reaperRun+"/taskInstances/reap/logs/1?full_content=true", nil, &logs)
	var lines []string
	for _, c := range logs.Content {
		if ev, _ := c["event"].(string); ev != "" {
			lines = append(lines, fmt.Sprintf("[%v] %v: %s", c["timestamp"], c["level"], ev))
		}
	}
	t.Logf("reap task log:\n%s", strings.Join(lines, "\n"))
	if state != "success" {
		t.Fatalf("the reaper task ended %s", state)
	}
	var xcom struct {
		Value any `json:"value"`
	}
	r.api("GET", "/api/v2/dags/kpo_reaper/dagRuns/"+reaperRun+"/taskInstances/reap/xcomEntries/return_value", nil, &xcom)
	t.Logf("reap task return value: %v", xcom.Value)
	got, _ := json.Marshal(xcom.Value)
	var sum taskSummary
	if s, ok := xcom.Value.(string); ok { // older APIs return the stored JSON text
		got = []byte(s)
	}
	if err := json.Unmarshal(got, &sum); err != nil {
		t.Fatalf("return value %s: %v", got, err)
	}
	if sum.Deleted != 1 || sum.Pods != 2 || sum.Kept != 1 {
		t.Errorf("summary %+v: want 2 pods, 1 kept, 1 deleted", sum)
	}
	deleted := false
	for _, l := range lines {
		deleted = deleted || strings.Contains(l, "deleted pod="+e.ns+"/"+zombie.Name+" ")
	}
	if !deleted {
		t.Errorf("the task log does not say %s was deleted", zombie.Name)
	}
	e.expectGone([]string{zombie.Name})
}
