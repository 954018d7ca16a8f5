package production_test

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/kpo-reaper/kpo-reaper/e2e/airflowsim"
	"github.com/kpo-reaper/kpo-reaper/e2e/chart"
	"github.com/kpo-reaper/kpo-reaper/e2e/fixture"
)

const sidecarDir = "deploy/airflow-chart-sidecar/"

// TestSidecarLeaderElection installs deploy/airflow-chart-sidecar the way
// its README says (rbac.yaml bound to the scheduler's ServiceAccount, the
// ConfigMap's config, the values snippet's container) and runs two
// replicas, scheduler-0 and scheduler-1, with leader election: exactly one
// holds the Lease and reaps, the standby is ready and idle; when the leader
// is SIGKILLed the standby takes the Lease over and reaps the zombies that
// appear afterwards. The audit log must show every pod deleted at most once
// and every pod write made by the replica that held the Lease at the time.
//
// What the test changes, and how:
//   - the files' namespace "airflow" becomes the test's namespace (README:
//     "The files assume release airflow in namespace airflow. Replace both
//     where they differ"): text replacement in rbac.yaml, and in an edited
//     copy of the ConfigMap's config (kubernetes.namespaces);
//   - in the same edited copy, as README steps 3 and 7 say: airflow.url (the
//     simulator) and reaper.dryRun: false;
//   - through the environment, for running outside a pod:
//     KPO_REAPER_KUBERNETES_KUBECONFIG (the scheduler ServiceAccount's
//     token) and KPO_REAPER_SERVER_ADDRESS (a loopback port per replica
//     instead of :9808);
//   - through the environment, for speed: KPO_REAPER_REAPER_INTERVAL=1s, the
//     age thresholds 0s, and lease timings 4s/3s/1s instead of 15s/10s/2s.
//
// reaper.confirmations stays at the shipped 2.
func TestSidecarLeaderElection(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	// rbac.yaml, in the test's namespace; its subjects name the
	// scheduler's ServiceAccount, which the test creates (the Airflow
	// chart would).
	rbacYAML := strings.ReplaceAll(string(readRepoFile(t, sidecarDir+"rbac.yaml")), "namespace: airflow", "namespace: "+e.ns)
	docs, err := chart.SplitDocuments([]byte(rbacYAML))
	if err != nil {
		t.Fatal(err)
	}
	var schedulerSA string
	for _, d := range docs {
		var rb rbacv1.RoleBinding
		if err := yaml.Unmarshal(d, &rb); err == nil && rb.Kind == "RoleBinding" {
			for _, s := range rb.Subjects {
				if schedulerSA != "" && schedulerSA != s.Name {
					t.Fatalf("rbac.yaml binds two ServiceAccounts, %s and %s", schedulerSA, s.Name)
				}
				schedulerSA = s.Name
			}
		}
	}
	if schedulerSA == "" {
		t.Fatal("rbac.yaml binds no ServiceAccount")
	}
	kubeconfig, err := cluster.ServiceAccountKubeconfig(e.ctx, e.ns, schedulerSA)
	if err != nil {
		t.Fatal(err)
	}
	if err := cluster.Apply(e.ctx, []byte(rbacYAML), e.ns); err != nil {
		t.Fatalf("applying %srbac.yaml: %v", sidecarDir, err)
	}
	user := "system:serviceaccount:" + e.ns + ":" + schedulerSA

	// The Airflow user and Secret of README steps 1 and 2.
	const password = "viewer-password"
	e.createSecret("kpo-reaper-airflow", map[string]string{"password": password})
	e.createPods(fixture.SeedPods()...)
	sc := seedScenario(t, "seed-v1.yaml")
	sc.Auth.Username, sc.Auth.Password = "kpo-reaper", password
	sim, url := e.startSim(sc)

	// The ConfigMap, edited as README step 3 and 7 say.
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(readRepoFile(t, sidecarDir+"configmap.yaml"), &cm); err != nil {
		t.Fatal(err)
	}
	cfg := cm.Data["kpo-reaper.yaml"]
	cfg = replaceOnce(t, cfg, "url: http://airflow-webserver.airflow:8080", "url: "+url, "configmap.yaml")
	cfg = replaceOnce(t, cfg, "namespaces: [airflow]", "namespaces: ["+e.ns+"]", "configmap.yaml")
	cfg = replaceOnce(t, cfg, "dryRun: true", "dryRun: false", "configmap.yaml")
	cm.Data["kpo-reaper.yaml"] = cfg

	// The container of the values snippet, with its config volume.
	var snippet struct {
		Scheduler struct {
			ExtraContainers []corev1.Container `json:"extraContainers"`
			ExtraVolumes    []corev1.Volume    `json:"extraVolumes"`
		} `json:"scheduler"`
	}
	if err := yaml.Unmarshal(readRepoFile(t, sidecarDir+"values-snippet.yaml"), &snippet); err != nil {
		t.Fatal(err)
	}
	spec := corev1.PodSpec{Containers: snippet.Scheduler.ExtraContainers, Volumes: snippet.Scheduler.ExtraVolumes}
	// The snippet has no readiness probe on purpose (README); /readyz is
	// still served and checked below.
	liveness := probePath(t, containerNamed(t, spec, "kpo-reaper"), containerNamed(t, spec, "kpo-reaper").LivenessProbe, "liveness")

	overrides := []string{
		"KPO_REAPER_KUBERNETES_KUBECONFIG=" + kubeconfig,
		"KPO_REAPER_REAPER_INTERVAL=1s",
		"KPO_REAPER_REAPER_MINPODAGE=0s",
		"KPO_REAPER_REAPER_TERMINALGRACEPERIOD=0s",
		"KPO_REAPER_REAPER_ORPHANMINAGE=0s",
		"KPO_REAPER_LEADERELECTION_LEASEDURATION=4s",
		"KPO_REAPER_LEADERELECTION_RENEWDEADLINE=3s",
		"KPO_REAPER_LEADERELECTION_RETRYPERIOD=1s",
	}
	replicas := map[string]*proc{}
	for _, pod := range []string{"scheduler-0", "scheduler-1"} {
		run := e.containerRun(spec, "kpo-reaper", pod, &cm)
		// The shipped RBAC alone: the self-check must accept get/update
		// granted on the Lease by name.
		p, out := tryStartDaemon(t, pod, run.args, append(run.env, overrides...), liveness)
		if p == nil {
			t.Fatalf("%s exited during start-up\n%s", pod, out)
		}
		replicas[pod] = p
	}
	version := ""
	if b := replicas["scheduler-0"].metrics().series("kpo_reaper_build_info"); len(b) == 1 {
		version = b[0].labels["version"]
	}
	uaOf := func(pod string) string { return "kpo-reaper/" + version + " (" + pod + ")" }

	// Exactly one replica holds the Lease.
	leader := e.waitLeaseHolder(30*time.Second, "scheduler-0", "scheduler-1")
	standby := "scheduler-1"
	if leader == "scheduler-1" {
		standby = "scheduler-0"
	}
	t.Logf("leader %s, standby %s", leader, standby)

	// The leader reaps the seed zombies (two cycles: confirmations 2).
	e.waitGone(60*time.Second, fixture.SeedZombies...)
	e.expectPresent(fixture.SeedLive...)
	if h := e.leaseHolder(); h != leader {
		t.Fatalf("the Lease moved from %s to %q while both replicas ran", leader, h)
	}
	lm, sm := replicas[leader].metrics(), replicas[standby].metrics()
	expectMetric(t, lm, "kpo_reaper_leader", nil, equal(1), "== 1 on the leader")
	expectMetric(t, sm, "kpo_reaper_leader", nil, equal(0), "== 0 on the standby")
	expectMetric(t, lm, "kpo_reaper_deletions_total", map[string]string{"reason": "ti-finished", "result": "deleted"}, equal(2), "== 2 on the leader")
	if v, _ := sm.value("kpo_reaper_deletions_total", nil); v != 0 {
		t.Errorf("the standby counts %v deletions, want 0", v)
	}
	if v, _ := sm.value("kpo_reaper_cycles_total", nil); v != 0 {
		t.Errorf("the standby ran %v cycles, want 0", v)
	}
	if code, body, err := replicas[standby].get("/readyz"); err != nil || code != http.StatusOK {
		t.Errorf("the standby's /readyz: %d %q %v, want 200", code, body, err)
	}
	if code, body, err := replicas[leader].get("/readyz"); err != nil || code != http.StatusOK {
		t.Errorf("the leader's /readyz: %d %q %v, want 200", code, body, err)
	}

	// The leader dies without releasing the Lease.
	replicas[leader].signal(syscall.SIGKILL)
	replicas[leader].exitCode(30 * time.Second)
	killed := time.Now()
	if got := e.waitLeaseHolder(30*time.Second, standby); got != standby {
		t.Fatalf("after the leader died the Lease is held by %s", got)
	}
	replicas[standby].waitMetric(e.ctx, 30*time.Second, "kpo_reaper_leader", nil, "== 1 after the takeover", equal(1))

	// New zombies appear after the takeover; the new leader reaps them.
	late := []fixture.PodSpec{
		{Name: "late-zombie-a-pod", DagID: fixture.SeedDag, RunID: fixture.SeedRun, TaskID: "late_task_a", MapIndex: -1},
		{Name: "late-zombie-b-pod", DagID: fixture.SeedDag, RunID: fixture.SeedRun, TaskID: "late_task_b", MapIndex: -1},
		{Name: "late-live-pod", DagID: fixture.SeedDag, RunID: fixture.SeedRun, TaskID: "late_task_live", MapIndex: -1},
	}
	e.createPods(late...)
	for _, ti := range []struct{ task, state, end string }{
		{"late_task_a", "success", "-0s"}, {"late_task_b", "failed", "-0s"}, {"late_task_live", "running", ""},
	} {
		err := sim.PutTaskInstance(airflowsim.TaskInstanceSpec{
			DagID: fixture.SeedDag, RunID: fixture.SeedRun, TaskID: ti.task, State: &ti.state,
			Operator: ptr("KubernetesPodOperator"), StartDate: "-1m", EndDate: airflowsim.TimeSpec(ti.end),
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	lateZombies := []string{"late-zombie-a-pod", "late-zombie-b-pod"}
	e.waitGone(60*time.Second, lateZombies...)
	e.expectPresent(append([]string{"late-live-pod"}, fixture.SeedLive...)...)
	expectMetric(t, replicas[standby].metrics(), "kpo_reaper_deletions_total", map[string]string{"reason": "ti-finished", "result": "deleted"}, equal(2), "== 2 on the new leader")

	replicas[standby].signal(syscall.SIGTERM)
	if code := replicas[standby].exitCode(30 * time.Second); code != 0 {
		t.Errorf("the new leader exited %d after SIGTERM, want 0", code)
	}

	// The audit trail.
	evs := e.syncAudit()
	dels := podDeletes(evs)
	count := map[string]int{}
	for _, ev := range dels {
		count[ev.Name]++
	}
	for name, n := range count {
		if n > 1 {
			t.Errorf("pod %s: %d DELETE requests, want at most 1", name, n)
		}
	}
	deletedBy := map[string]string{}
	for _, ev := range dels {
		deletedBy[ev.Name] = ev.UserAgent
	}
	for _, n := range fixture.SeedZombies {
		if deletedBy[n] != uaOf(leader) {
			t.Errorf("seed zombie %s deleted by %q, want the first leader %q", n, deletedBy[n], uaOf(leader))
		}
	}
	for _, n := range lateZombies {
		if deletedBy[n] != uaOf(standby) {
			t.Errorf("late zombie %s deleted by %q, want the new leader %q", n, deletedBy[n], uaOf(standby))
		}
	}
	if len(count) != len(fixture.SeedZombies)+len(lateZombies) {
		t.Errorf("pods deleted: %v, want exactly %q and %q", count, fixture.SeedZombies, lateZombies)
	}

	// Who held the Lease when: a successful write of the Lease (create,
	// update) can only come from its holder, so the holder at any instant
	// is the user agent of the last successful Lease write before it.
	takeover := time.Time{}
	type write struct {
		at time.Time
		ua string
	}
	var leaseWrites []write
	for _, ev := range evs {
		if ev.APIGroup == "coordination.k8s.io" && ev.Resource == "leases" && ev.Name == "kpo-reaper" &&
			(ev.Verb == "create" || ev.Verb == "update") && ev.Code >= 200 && ev.Code < 300 {
			if ev.User != user {
				t.Errorf("Lease written by %s, want %s", ev.User, user)
			}
			leaseWrites = append(leaseWrites, write{ev.Time, ev.UserAgent})
			if takeover.IsZero() && ev.UserAgent == uaOf(standby) {
				takeover = ev.Time
			}
		}
	}
	sort.SliceStable(leaseWrites, func(i, j int) bool { return leaseWrites[i].at.Before(leaseWrites[j].at) })
	if takeover.IsZero() {
		t.Fatalf("the audit log shows no Lease write by %s", standby)
	}
	holderAt := func(at time.Time) string {
		h := ""
		for _, w := range leaseWrites {
			if w.at.After(at) {
				break
			}
			h = w.ua
		}
		return h
	}
	for _, ev := range evs {
		if ev.Resource != "pods" || (ev.Verb != "delete" && ev.Verb != "patch") {
			continue
		}
		if ev.User != user {
			continue
		}
		if h := holderAt(ev.Time); ev.UserAgent != h {
			t.Errorf("%s by %q at %s, but the Lease holder then was %q", ev, ev.UserAgent, ev.Time.Format(time.RFC3339Nano), h)
		}
		if ev.UserAgent == uaOf(standby) && ev.Time.Before(takeover) {
			t.Errorf("the standby wrote before the takeover (%s): %s", takeover.Format(time.RFC3339Nano), ev)
		}
		if ev.UserAgent == uaOf(leader) && ev.Time.After(killed) {
			t.Errorf("the killed leader wrote after it died (%s): %s", killed.Format(time.RFC3339Nano), ev)
		}
		if ev.UserAgent != uaOf(leader) && ev.UserAgent != uaOf(standby) {
			t.Errorf("pod write with an unexpected user agent %q: %s", ev.UserAgent, ev)
		}
	}
}

// leaseHolder is the replica (pod name) named by the Lease's
// holderIdentity, "<POD_NAME>_<suffix>", or "" when nobody holds it.
func (e *env) leaseHolder() string {
	e.t.Helper()
	l, err := cluster.Admin().CoordinationV1().Leases(e.ns).Get(e.ctx, "kpo-reaper", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return ""
	}
	if err != nil {
		e.t.Fatal(err)
	}
	if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
		return ""
	}
	id := *l.Spec.HolderIdentity
	if i := strings.LastIndexByte(id, '_'); i > 0 {
		return id[:i]
	}
	return id
}

// waitLeaseHolder waits until one of the candidates holds the Lease.
func (e *env) waitLeaseHolder(timeout time.Duration, candidates ...string) string {
	e.t.Helper()
	var h string
	e.eventually(timeout, fmt.Sprintf("the Lease held by one of %q", candidates), func() (bool, string) {
		h = e.leaseHolder()
		return contains(candidates, h), "holder " + h
	})
	return h
}

func ptr[T any](v T) *T { return &v }
