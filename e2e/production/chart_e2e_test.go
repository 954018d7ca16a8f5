package production_test

import (
	"fmt"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/kpo-reaper/kpo-reaper/e2e/chart"
	"github.com/kpo-reaper/kpo-reaper/e2e/fixture"
)

// airflowSecret is the Secret the chart's existingSecret names; the test
// creates it as an operator would before `helm install`.
const airflowSecret = "kpo-reaper-airflow"

// chartValues are the values of a test install: the simulator's URL and
// credentials from a Secret, and reaper timings that let pods created a
// moment ago be judged, with a 1s interval.
func chartValues(mode, url, authType string, dryRun bool, confirmations int) map[string]any {
	return map[string]any{
		"mode":   mode,
		"dryRun": dryRun,
		"airflow": map[string]any{
			"url":        url,
			"timeout":    "5s",
			"maxRetries": 1,
			"auth": map[string]any{
				"type":           authType,
				"username":       "admin",
				"existingSecret": airflowSecret,
			},
		},
		"reaper": map[string]any{
			"interval":            "1s",
			"minPodAge":           "0s",
			"terminalGracePeriod": "0s",
			"orphanMinAge":        "0s",
			"confirmations":       confirmations,
			// Successive runs a moment apart count as spaced sightings
			// here; the default spacing has its own e2e test.
			"confirmationSpacing": "1ns",
		},
	}
}

// TestDeploymentMode installs the chart's Deployment shape (its RBAC
// applied to the apiserver, its ConfigMap as the config file, its
// container's args and env) and runs the binary as that container would:
// the daemon reaps the seed DAG's zombies and keeps the live pods, and its
// metrics, probes, Events and SIGTERM behave as docs/operations.md says.
//
// Changed for running outside a cluster, through the environment:
// KPO_REAPER_KUBERNETES_KUBECONFIG (the chart relies on the in-cluster
// config; the kubeconfig authenticates as the chart's ServiceAccount) and
// KPO_REAPER_SERVER_ADDRESS (a free loopback port instead of :8080).
func TestDeploymentMode(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createPods(fixture.SeedPods()...)
	e.createSecret(airflowSecret, map[string]string{"password": "admin"})
	_, url := e.startSim(seedScenario(t, "seed-v2.yaml")) // Airflow 3: API v2 with JWT login

	r := e.renderChart(chartValues("deployment", url, "airflow-jwt", false, 1))
	cm := r.configMap(t)
	dep := r.deployment(t)
	spec := dep.Spec.Template.Spec
	if spec.ServiceAccountName != chart.ReleaseName {
		t.Fatalf("the Deployment runs as ServiceAccount %q, want %q", spec.ServiceAccountName, chart.ReleaseName)
	}
	kubeconfig, err := cluster.ServiceAccountKubeconfig(e.ctx, e.ns, spec.ServiceAccountName)
	if err != nil {
		t.Fatal(err)
	}
	user := "system:serviceaccount:" + e.ns + ":" + spec.ServiceAccountName
	const podName = "kpo-reaper-5d8f7b9c4-x7k2p"
	run := e.containerRun(spec, "kpo-reaper", podName, cm)
	c := containerNamed(t, spec, "kpo-reaper")
	liveness := probePath(t, c, c.LivenessProbe, "liveness")
	readiness := probePath(t, c, c.ReadinessProbe, "readiness")

	d := startDaemon(t, "deployment", run.args, append(run.env, "KPO_REAPER_KUBERNETES_KUBECONFIG="+kubeconfig), liveness)

	e.waitGone(60*time.Second, fixture.SeedZombies...)
	// A whole cycle after the deletes, so a live pod deleted late is seen.
	m := d.metrics()
	after, _ := m.value("kpo_reaper_cycles_total", map[string]string{"result": "success"})
	d.waitMetric(e.ctx, 30*time.Second, "kpo_reaper_cycles_total", map[string]string{"result": "success"}, fmt.Sprintf(">= %v", after+1), atLeast(after+1))
	e.expectPresent(fixture.SeedLive...)

	m = d.metrics()
	expectMetric(t, m, "kpo_reaper_cycles_total", map[string]string{"result": "success"}, atLeast(1), ">= 1")
	expectMetric(t, m, "kpo_reaper_deletions_total", map[string]string{"reason": "ti-finished", "result": "deleted"}, equal(2), "== 2")
	expectMetric(t, m, "kpo_reaper_pods", map[string]string{"verdict": "keep", "reason": "ti-active"}, equal(2), "== 2")
	expectMetric(t, m, "kpo_reaper_leader", nil, equal(1), "== 1")
	build := m.series("kpo_reaper_build_info")
	if len(build) != 1 || build[0].value != 1 || build[0].labels["version"] == "" || build[0].labels["goversion"] == "" {
		t.Errorf("kpo_reaper_build_info: %+v, want one series, value 1, with version and goversion", build)
	}
	if s := m.series("kpo_reaper_airflow_requests_total"); len(s) == 0 {
		t.Error("kpo_reaper_airflow_requests_total has no series")
	} else if _, ok := m.value("kpo_reaper_airflow_requests_total", map[string]string{"code": "200"}); !ok {
		t.Errorf("kpo_reaper_airflow_requests_total has no code=\"200\" series: %+v", s)
	}
	for _, path := range []string{liveness, readiness} {
		if code, body, err := d.get(path); err != nil || code != http.StatusOK {
			t.Errorf("GET %s: %d %q %v, want 200", path, code, body, err)
		}
	}

	e.expectReapedEvents(map[string]string{fixture.ZombiePod: seedTask[fixture.ZombiePod], fixture.Mapped0Pod: seedTask[fixture.Mapped0Pod]}, "success", "ti-finished")

	d.signal(syscall.SIGTERM)
	if code := d.exitCode(30 * time.Second); code != 0 {
		t.Errorf("after SIGTERM the daemon exited %d, want 0\n%s", code, d.tail(20))
	}

	// The writes, from the audit log: the two force deletes, by the chart's
	// ServiceAccount, with a user agent naming this replica.
	ua := "kpo-reaper/" + build[0].labels["version"] + " (" + podName + ")"
	evs := e.syncAudit()
	dels := podDeletes(evs)
	if got := names(dels); !sameSet(got, fixture.SeedZombies) {
		t.Errorf("pod DELETEs in the namespace: %q, want exactly %q", got, fixture.SeedZombies)
	}
	for _, ev := range dels {
		if ev.User != user || ev.UserAgent != ua || ev.Code != http.StatusOK {
			t.Errorf("DELETE of %s by %s (%q) -> %d, want by %s (%q) -> 200", ev.Name, ev.User, ev.UserAgent, ev.Code, user, ua)
		}
	}
	for _, ev := range byUser(evs, user) {
		if ev.IsWrite() && ev.Resource == "pods" && ev.Verb != "delete" {
			t.Errorf("unexpected pod write with confirmations 1: %s", ev)
		}
	}
}

// TestCronJobMode installs the chart's CronJob shape with confirmations 2
// and runs its container (`run --once`) twice, as two Jobs would: the first
// run deletes nothing and marks the zombies, the second deletes exactly
// them; both exit 0 and the second leaves ZombiePodReaped Events behind.
//
// Changed for running outside a cluster: KPO_REAPER_KUBERNETES_KUBECONFIG
// only (the CronJob runs without a server).
func TestCronJobMode(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createPods(fixture.SeedPods()...)
	e.createSecret(airflowSecret, map[string]string{"password": "admin"})
	_, url := e.startSim(seedScenario(t, "seed-v1.yaml")) // Airflow 2: API v1, basic auth

	r := e.renderChart(chartValues("cronjob", url, "basic", false, 2))
	cm := r.configMap(t)
	cj := r.cronJob(t)
	spec := cj.Spec.JobTemplate.Spec.Template.Spec
	kubeconfig, err := cluster.ServiceAccountKubeconfig(e.ctx, e.ns, spec.ServiceAccountName)
	if err != nil {
		t.Fatal(err)
	}
	user := "system:serviceaccount:" + e.ns + ":" + spec.ServiceAccountName
	runJob := func(job string) {
		t.Helper()
		run := e.containerRun(spec, "kpo-reaper", "kpo-reaper-29410560-"+job, cm)
		if !contains(run.args, "--once") {
			t.Fatalf("the CronJob's container args %q lack --once", run.args)
		}
		p := startProc(t, "cronjob-"+job, run.args, append(run.env, "KPO_REAPER_KUBERNETES_KUBECONFIG="+kubeconfig))
		if code := p.exitCode(90 * time.Second); code != 0 {
			t.Fatalf("job %s exited %d, want 0\n%s", job, code, p.tail(40))
		}
	}

	runJob("first")
	evs := byUser(e.syncAudit(), user)
	if dels := podDeletes(evs); len(dels) > 0 {
		t.Errorf("the first run deleted %q; with confirmations 2 it must only mark", names(dels))
	}
	var patched []string
	for _, ev := range evs {
		if ev.Verb == "patch" && ev.Resource == "pods" {
			patched = append(patched, ev.Name)
		}
	}
	if !sameSet(patched, fixture.SeedZombies) {
		t.Errorf("the first run patched %q, want exactly %q", patched, fixture.SeedZombies)
	}
	pods := e.pods()
	for _, n := range fixture.SeedZombies {
		if got := pods[n].Annotations["kpo-reaper.io/zombie-count"]; got != "1" {
			t.Errorf("after the first run pod %s has zombie-count %q, want 1", n, got)
		}
	}
	for _, n := range fixture.SeedLive {
		if _, ok := pods[n].Annotations["kpo-reaper.io/zombie-count"]; ok {
			t.Errorf("live pod %s was marked a zombie: %v", n, pods[n].Annotations)
		}
	}
	e.expectPresent(append(append([]string(nil), fixture.SeedZombies...), fixture.SeedLive...)...)

	runJob("second")
	e.waitGone(30*time.Second, fixture.SeedZombies...)
	e.expectPresent(fixture.SeedLive...)
	dels := podDeletes(byUser(e.syncAudit(), user))
	if got := names(dels); !sameSet(got, fixture.SeedZombies) {
		t.Errorf("pod DELETEs over both runs: %q, want exactly %q, each once", got, fixture.SeedZombies)
	}
	// --once flushes its Events before exiting.
	e.expectReapedEvents(map[string]string{fixture.ZombiePod: seedTask[fixture.ZombiePod], fixture.Mapped0Pod: seedTask[fixture.Mapped0Pod]}, "success", "ti-finished")
}

func expectMetric(t *testing.T, m metricSet, name string, labels map[string]string, cond func(float64) bool, want string) {
	t.Helper()
	v, ok := m.value(name, labels)
	if !ok {
		t.Errorf("%s %v: no such series, want %s", name, labels, want)
		return
	}
	if !cond(v) {
		t.Errorf("%s %v = %v, want %s", name, labels, v, want)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func sameSet(a, b []string) bool {
	count := map[string]int{}
	for _, x := range a {
		count[x]++
	}
	for _, x := range b {
		count[x]--
	}
	for _, n := range count {
		if n != 0 {
			return false
		}
	}
	return true
}
