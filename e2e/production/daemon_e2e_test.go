package production_test

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kpo-reaper/kpo-reaper/e2e/airflowsim"
	"github.com/kpo-reaper/kpo-reaper/e2e/fixture"
)

// newSeededDaemonEnv is a new env with the shipped setup (shippedSetup),
// the placeholder pod a daemon stands for, named self, and the seed pods.
func newSeededDaemonEnv(t *testing.T, self string) (e *env, kubeconfig, user string, selfPod *corev1.Pod) {
	t.Helper()
	e = newEnv(t)
	kubeconfig, user = e.shippedSetup()
	selfPod = e.createPlaceholderPod(self)
	e.createPods(fixture.SeedPods()...)
	return e, kubeconfig, user, selfPod
}

// shippedSetup applies deploy/manifests' ServiceAccount, Role and
// RoleBinding to the namespace and returns a kubeconfig for that
// ServiceAccount and its user name.
func (e *env) shippedSetup() (kubeconfig, user string) {
	e.t.Helper()
	kc, err := fixture.ApplyShippedRBAC(e.ctx, cluster, e.ns)
	if err != nil {
		e.t.Fatalf("applying the shipped RBAC: %v", err)
	}
	return kc, "system:serviceaccount:" + e.ns + ":kpo-reaper"
}

// configFile writes a reaper configuration (fixture.Config: no age
// thresholds, Airflow timeout 5s, no retries) for the namespace, plus
// extra YAML appended verbatim.
func (e *env) configFile(url, authType, kubeconfig string, dryRun bool, extra string) string {
	e.t.Helper()
	dir := e.t.TempDir()
	p, err := fixture.Config{AirflowURL: url, AuthType: authType, Kubeconfig: kubeconfig, Namespace: e.ns,
		Confirmations: 1, DryRun: &dryRun}.Write(dir)
	if err != nil {
		e.t.Fatal(err)
	}
	if extra != "" {
		f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			e.t.Fatal(err)
		}
		if _, err := f.WriteString(extra); err != nil {
			e.t.Fatal(err)
		}
		f.Close()
	}
	return p
}

// daemonArgs are the arguments of a daemon run from a config file with a
// 1s interval and JSON logs.
func daemonArgs(cfg string, extra ...string) []string {
	return append([]string{"run", "--config", cfg, "--interval", "1s", "--log-format", "json"}, extra...)
}

// TestFailClosedWarning: when Airflow's API answers 500, the daemon's
// cycles fail closed: zombies that appeared meanwhile are not deleted, a
// Warning Event CycleFailedClosed lands on the reaper's own pod (named by
// POD_NAMESPACE/POD_NAME/POD_UID), kpo_reaper_cycles_total{result="failure"}
// counts and /readyz turns 503. When the API recovers, the same zombies are
// deleted (so they were real zombies all along) and /readyz is 200 again.
func TestFailClosedWarning(t *testing.T) {
	t.Parallel()
	e, kubeconfig, user, self := newSeededDaemonEnv(t, "kpo-reaper-7c9d8b6f5-self")

	// Every task instance is still running at first: nothing to reap.
	sc := seedScenario(t, "seed-v2.yaml")
	for i := range sc.TaskInstances {
		sc.TaskInstances[i].State, sc.TaskInstances[i].EndDate = ptr("running"), ""
	}
	sim, url := e.startSim(sc)
	cfg := e.configFile(url, "airflow-jwt", kubeconfig, false, "")
	env := append(baseEnv(), "POD_NAMESPACE="+e.ns, "POD_NAME="+self.Name, "POD_UID="+string(self.UID))
	d := startDaemon(t, "reaper", daemonArgs(cfg), env, "/healthz")
	d.waitMetric(e.ctx, 30*time.Second, "kpo_reaper_cycles_total", map[string]string{"result": "success"}, ">= 1", atLeast(1))
	expectStatus(t, d, "/readyz", http.StatusOK)

	// Airflow breaks; then two task instances finish, leaving zombies.
	sim.SetFault(airflowsim.FaultError500)
	now := time.Now()
	for _, key := range []airflowsim.TIKey{
		{DagID: fixture.SeedDag, RunID: fixture.SeedRun, TaskID: "zombie_kpo_task", MapIndex: -1},
		{DagID: fixture.SeedDag, RunID: fixture.SeedRun, TaskID: "mapped_kpo_task", MapIndex: 0},
	} {
		if err := sim.SetTaskState(key, "success", 0, &now); err != nil {
			t.Fatal(err)
		}
	}

	d.waitMetric(e.ctx, 30*time.Second, "kpo_reaper_cycles_total", map[string]string{"result": "failure"}, ">= 1", atLeast(1))
	var warning corev1.Event
	e.eventually(30*time.Second, "a CycleFailedClosed Warning on the reaper's pod", func() (bool, string) {
		evs := e.eventsByReason("CycleFailedClosed")
		if l := evs[self.Name]; len(l) > 0 {
			warning = l[0]
			return true, ""
		}
		return false, fmt.Sprintf("CycleFailedClosed events on %d other objects", len(evs))
	})
	if warning.Type != corev1.EventTypeWarning || warning.InvolvedObject.Kind != "Pod" || warning.InvolvedObject.UID != self.UID ||
		warning.InvolvedObject.Namespace != e.ns || warning.Source.Component != "kpo-reaper" {
		t.Errorf("CycleFailedClosed event: type %s, object %s %s/%s uid %s, source %q; want Warning on Pod %s/%s uid %s from kpo-reaper",
			warning.Type, warning.InvolvedObject.Kind, warning.InvolvedObject.Namespace, warning.InvolvedObject.Name, warning.InvolvedObject.UID,
			warning.Source.Component, e.ns, self.Name, self.UID)
	}
	if !strings.Contains(warning.Message, "nothing deleted") || !strings.Contains(warning.Message, "500") {
		t.Errorf("CycleFailedClosed message %q should say nothing was deleted and why (HTTP 500)", warning.Message)
	}
	e.eventually(30*time.Second, "/readyz 503", func() (bool, string) {
		code, body, err := d.get("/readyz")
		return err == nil && code == http.StatusServiceUnavailable, fmt.Sprintf("%d %q %v", code, body, err)
	})
	if code, _, err := d.get("/healthz"); err != nil || code != http.StatusOK {
		t.Errorf("/healthz while failing: %d %v, want 200 (liveness must not restart a reaper Airflow broke)", code, err)
	}

	// Nothing was deleted (or marked) while the API failed.
	m := d.metrics()
	if v, _ := m.value("kpo_reaper_deletions_total", nil); v != 0 {
		t.Errorf("kpo_reaper_deletions_total sums to %v while every cycle failed, want 0", v)
	}
	e.expectSeedUntouched(user, "while failing closed")

	// Airflow recovers: the zombies go, the reaper is ready again.
	sim.SetFault(airflowsim.FaultNone)
	e.expectSeedReaped(30 * time.Second)
	e.expectReady(d, "after recovery")
	d.terminate()
}

// TestDryRunEmitsNothing: a dry-run daemon that finds the zombies (and
// then has failing cycles, which would otherwise raise a Warning) sends no
// pod DELETE, no PATCH and creates no Event: the audit log shows no write
// at all by its ServiceAccount, even with POD_NAME set and the shipped RBAC
// allowing all of them.
func TestDryRunEmitsNothing(t *testing.T) {
	t.Parallel()
	e, kubeconfig, user, self := newSeededDaemonEnv(t, "kpo-reaper-7c9d8b6f5-dry")
	// The password comes from the environment, as from a Secret, and must
	// show in no metric and no log line.
	const password = "daemon-Pa55word-never-shown"
	sc := seedScenario(t, "seed-v1.yaml")
	sc.Auth.Password = password
	sim, url := e.startSim(sc)
	cfg := e.configFile(url, "basic", kubeconfig, true, "")
	env := append(baseEnv(), "POD_NAMESPACE="+e.ns, "POD_NAME="+self.Name, "POD_UID="+string(self.UID),
		"KPO_REAPER_AIRFLOW_AUTH_PASSWORD="+password)
	d := startDaemon(t, "reaper", daemonArgs(cfg, "--log-level", "debug"), env, "/healthz")

	// It sees the zombies, twice, and would delete them.
	d.waitMetric(e.ctx, 30*time.Second, "kpo_reaper_cycles_total", map[string]string{"result": "success"}, ">= 2", atLeast(2))
	m := d.metrics()
	expectMetric(t, m, "kpo_reaper_pods", map[string]string{"verdict": "reap", "reason": "ti-finished"}, equal(2), "== 2")
	expectMetric(t, m, "kpo_reaper_pods", map[string]string{"verdict": "keep", "reason": "ti-active"}, equal(2), "== 2")
	// A failing cycle, which in a real run emits a Warning.
	sim.SetFault(airflowsim.FaultError500)
	d.waitMetric(e.ctx, 30*time.Second, "kpo_reaper_cycles_total", map[string]string{"result": "failure"}, ">= 1", atLeast(1))
	_, scrape, err := d.get("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	d.terminate()
	for what, secret := range map[string]string{"password": password, "basic credential": base64.StdEncoding.EncodeToString([]byte("admin:" + password))} {
		if strings.Contains(scrape, secret) {
			t.Errorf("/metrics shows the %s", what)
		}
		if strings.Contains(d.output(), secret) {
			t.Errorf("the log shows the %s", what)
		}
	}

	e.expectPresent(append(append([]string(nil), fixture.SeedZombies...), fixture.SeedLive...)...)
	for name, p := range e.pods() {
		for k := range p.Annotations {
			if strings.HasPrefix(k, "kpo-reaper.io/") {
				t.Errorf("dry run annotated pod %s: %s", name, k)
			}
		}
	}
	// Every namespace, not only this one: the user is this test's own.
	e.syncAudit()
	all, err := cluster.AuditEvents()
	if err != nil {
		t.Fatal(err)
	}
	var reads int
	for _, ev := range byUser(all, user) {
		// SelfSubjectAccessReviews (the start-up permission check) are
		// "create"s that change nothing.
		if ev.IsWrite() && ev.Resource != "selfsubjectaccessreviews" {
			t.Errorf("dry run wrote to the cluster: %s", ev)
		}
		if ev.Resource == "pods" && (ev.Verb == "list" || ev.Verb == "watch") {
			reads++
		}
	}
	if reads == 0 {
		t.Error("the audit log shows no pod list or watch by the reaper: the filter sees nothing")
	}
	// Events are cluster-visible objects too: none in the namespace.
	for reason, list := range map[string]map[string][]corev1.Event{
		"ZombiePodReaped": e.eventsByReason("ZombiePodReaped"), "CycleFailedClosed": e.eventsByReason("CycleFailedClosed"),
	} {
		if len(list) > 0 {
			t.Errorf("dry run left %s events: %v", reason, list)
		}
	}
}

// TestOnceRefusesLeaderElection: `run --once` with leaderElection.enabled
// exits 2 (bad configuration) with a message naming leaderElection, before
// it asks Airflow or Kubernetes anything.
func TestOnceRefusesLeaderElection(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	kubeconfig, _ := e.shippedSetup()
	sim, url := e.startSim(seedScenario(t, "seed-v1.yaml"))
	cfg := e.configFile(url, "basic", kubeconfig, false,
		"leaderElection:\n  enabled: true\n  leaseName: kpo-reaper\n  leaseNamespace: "+e.ns+"\n")
	p := startProc(t, "once", []string{"run", "--once", "--config", cfg}, baseEnv())
	if code := p.exitCode(60 * time.Second); code != 2 {
		t.Fatalf("exit code %d, want 2\n%s", code, p.tail(20))
	}
	out := p.output()
	if !strings.Contains(out, "leaderElection") {
		t.Errorf("the refusal does not name leaderElection:\n%s", out)
	}
	if n := len(sim.Requests()); n != 0 {
		t.Errorf("the refused run made %d Airflow requests, want 0", n)
	}
}

func expectStatus(t *testing.T, p *proc, path string, want int) {
	t.Helper()
	code, body, err := p.get(path)
	if err != nil || code != want {
		t.Errorf("GET %s: %d %q %v, want %d", path, code, body, err, want)
	}
}
