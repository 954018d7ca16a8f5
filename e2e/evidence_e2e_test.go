package e2e_test

// Hazards to the prime rule: each case below once made `run --once`
// (dryRun false) delete a pod whose task was alive; each test reproduces
// it and checks that the pod now survives the real cycle (exit 0, no
// DELETE of it in the audit log) and that plan -o json does not reap it.
// Every test also has a control pod in the same cycle that must still be
// deleted, so "nothing is ever deleted" cannot pass. Then the
// confirmation count, which two back-to-back runs could satisfy, and a dry
// run that said nothing of what it would do.

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kpo-reaper/kpo-reaper/e2e/airflowsim"
	"github.com/kpo-reaper/kpo-reaper/e2e/fixture"
	"github.com/kpo-reaper/kpo-reaper/e2e/harness"
)

// reapOrphansEnv turns reaper.reapOrphans on through the environment, so
// that the cases about 404s are judged as a reaper that may delete
// orphans would judge them (with it off every orphan is kept anyway). A
// binary that predates the key ignores the variable (it reads the
// environment only for the keys it knows) and reaps orphans, as it always
// did, so the same test fails on it for the right reason.
const reapOrphansEnv = "KPO_REAPER_REAPER_REAPORPHANS=true"

// Pod annotations of the confirmation count.
const (
	annCount     = "kpo-reaper.io/zombie-count"
	annFirstSeen = "kpo-reaper.io/zombie-first-seen"
	annLastSeen  = "kpo-reaper.io/zombie-last-seen"
)

// planAll runs plan -o json and returns its pods by "namespace/name",
// whatever namespaces they are in.
func (e *env) planAll(extraEnv []string, cfg string) map[string]planPod {
	e.t.Helper()
	res := e.reaperEnv(0, extraEnv, nil, "plan", "--config", cfg, "-o", "json")
	m := map[string]planPod{}
	for _, p := range e.planPods(res.Stdout) {
		m[p.Namespace+"/"+p.Name] = p
	}
	return m
}

// expectNotReaped checks that the plan lists the pod and does not reap it;
// reason, when not empty, is the reason it must give.
func (e *env) expectNotReaped(plan map[string]planPod, nsName, reason string) {
	e.t.Helper()
	p, ok := plan[nsName]
	switch {
	case !ok:
		e.t.Errorf("plan does not list %s", nsName)
	case p.Verdict == "reap":
		e.t.Errorf("plan: %s is %s/%s (%s): a live pod must not be reaped", nsName, p.Verdict, p.Reason, p.Detail)
	case reason != "" && p.Reason != reason:
		e.t.Errorf("plan: %s is %s/%s (%s), want reason %s", nsName, p.Verdict, p.Reason, p.Detail, reason)
	default:
		e.t.Logf("plan: %s is %s/%s (%s)", nsName, p.Verdict, p.Reason, p.Detail)
	}
}

// expectReaped checks that the plan reaps the pod for reason.
func (e *env) expectReaped(plan map[string]planPod, nsName, reason string) {
	e.t.Helper()
	p, ok := plan[nsName]
	if !ok || p.Verdict != "reap" || p.Reason != reason {
		e.t.Errorf("plan: control pod %s is %s/%s (%s), want reap/%s", nsName, p.Verdict, p.Reason, p.Detail, reason)
	}
}

// podDeletes returns the reaper's audited pod DELETEs in the namespaces,
// as "namespace/name", after an audit sync.
func (e *env) podDeletes(namespaces ...string) []string {
	e.t.Helper()
	e.syncAudit()
	evs, err := cluster.AuditEvents()
	if err != nil {
		e.t.Fatal(err)
	}
	in := set(namespaces...)
	var out []string
	for _, ev := range evs {
		if ev.User == e.user && in[ev.Namespace] && ev.Verb == "delete" && ev.Resource == "pods" && ev.Subresource == "" {
			out = append(out, ev.Namespace+"/"+ev.Name)
		}
	}
	return sorted(out)
}

// expectDeletes checks the reaper's audited pod DELETEs in the namespaces
// are exactly want ("namespace/name"), waiting for those expected first.
func (e *env) expectDeletes(namespaces []string, want ...string) {
	e.t.Helper()
	wanted := set(want...)
	if len(wanted) > 0 {
		seen := map[string]bool{}
		_, err := cluster.WaitForAuditEvent(e.ctx, 30*time.Second, func(ev harness.AuditEvent) bool {
			if ev.User == e.user && ev.Verb == "delete" && ev.Resource == "pods" && wanted[ev.Namespace+"/"+ev.Name] {
				seen[ev.Namespace+"/"+ev.Name] = true
			}
			return len(seen) == len(wanted)
		})
		if err != nil {
			e.t.Errorf("audited deletes: saw %d of the %d expected: %v", len(seen), len(wanted), err)
		}
	}
	if got := e.podDeletes(namespaces...); !sameSet(got, want) {
		e.t.Errorf("the reaper's pod DELETEs: %q, want exactly %q", got, sorted(want))
	}
}

// createdAfter makes sure pods created from now on get a later
// creationTimestamp than every pod given: the apiserver stamps whole
// seconds, and the evidence rule wants the current try's pod created after
// the pod it condemns. At most a second of wall clock, not a
// synchronisation.
func createdAfter(pods ...*corev1.Pod) {
	var last time.Time
	for _, p := range pods {
		if t := p.CreationTimestamp.Time; t.After(last) {
			last = t
		}
	}
	time.Sleep(time.Until(last.Add(time.Second + 10*time.Millisecond)))
}

// otherNamespace creates a second namespace the reaper (the first
// namespace's ServiceAccount) may work in with the shipped Role, as a
// deployment watching two namespaces is set up.
func (e *env) otherNamespace() string {
	e.t.Helper()
	ns := e.ns + "-b"
	if len(ns) > 63 {
		ns = strings.TrimRight(e.ns[:61], "-") + "-b"
	}
	if err := cluster.EnsureNamespace(e.ctx, ns); err != nil {
		e.t.Fatal(err)
	}
	role, err := os.ReadFile(fixture.RepoRoot() + "/deploy/manifests/role.yaml")
	if err != nil {
		e.t.Fatal(err)
	}
	binding := fmt.Sprintf(`apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: kpo-reaper
  namespace: %s
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: kpo-reaper
subjects:
  - kind: ServiceAccount
    name: kpo-reaper
    namespace: %s
`, ns, e.ns)
	docs := strings.ReplaceAll(string(role), "namespace: airflow", "namespace: "+ns) + "\n---\n" + binding
	if err := cluster.Apply(e.ctx, []byte(docs), ns); err != nil {
		e.t.Fatalf("RBAC in %s: %v", ns, err)
	}
	return ns
}

// createIn creates a pod in another namespace than the test's own.
func (e *env) createIn(ns string, s fixture.PodSpec) *corev1.Pod {
	e.t.Helper()
	p, err := cluster.CreatePod(e.ctx, s.Pod(ns))
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// expectPresent checks each "namespace/name" pod still exists with its
// UID and is not being deleted.
func (e *env) expectPresent(pods ...*corev1.Pod) {
	e.t.Helper()
	for _, want := range pods {
		p, err := cluster.Admin().CoreV1().Pods(want.Namespace).Get(e.ctx, want.Name, metav1.GetOptions{})
		switch {
		case err != nil:
			e.t.Errorf("pod %s/%s must have been kept: %v", want.Namespace, want.Name, err)
		case p.UID != want.UID || p.DeletionTimestamp != nil:
			e.t.Errorf("pod %s/%s must have been kept: uid %s (want %s), deletionTimestamp %v", want.Namespace, want.Name, p.UID, want.UID, p.DeletionTimestamp)
		}
	}
}

func nsName(p *corev1.Pod) string { return p.Namespace + "/" + p.Name }

// hazardScenario is an Airflow with the hazard DAG, one run of it started an
// hour ago, and the task instances tis.
func hazardScenario(v airflowVersion, tis ...airflowsim.TaskInstanceSpec) *airflowsim.Scenario {
	return &airflowsim.Scenario{
		AirflowVersion: v.version,
		Auth:           airflowsim.AuthSpec{Username: "admin", Password: "admin"},
		DAGs:           []airflowsim.DAGSpec{{DagID: hazardDag}},
		Runs:           []airflowsim.DagRunSpec{{DagID: hazardDag, RunID: hazardRun, StartDate: "-1h"}},
		TaskInstances:  tis,
	}
}

// TestOtherAirflowsRunIsKept: a pod of another Airflow sharing the
// namespace, of a DAG this Airflow also has, in a run this Airflow does not
// have. That is all an orphan looks like; orphans are kept unless
// reaper.reapOrphans is set.
func TestOtherAirflowsRunIsKept(t *testing.T) {
	t.Parallel()
	forEachVersion(t, func(t *testing.T, v airflowVersion) {
		e := newEnv(t)
		other := e.createPod(fixture.PodSpec{Name: "other-airflow-pod", DagID: hazardDag,
			RunID: "manual__2026-11-27T09:00:00+00:00", TaskID: "hazard_task", MapIndex: -1, Try: 1}.Pod(e.ns))
		zombie := e.createPod(kpo("finished-pod", "finished_task", 1).Pod(e.ns))
		live := e.createPod(kpo("running-pod", "hazard_task", 1).Pod(e.ns))
		s := e.startSim(hazardScenario(v,
			tiSpec(hazardDag, hazardRun, "hazard_task", 1, "running"),
			tiSpec(hazardDag, hazardRun, "finished_task", 1, "success"),
		), nil)
		cfg := e.config(s.URL, v, nil)

		e.expectKeptBesideZombie(cfg, other, "orphan-not-enabled", zombie, live)
	})
}

// expectKeptBesideZombie plans and runs one cycle: kept is not reaped, for
// reason; the finished zombie beside it is reaped and deleted; kept and the
// live pod stay.
func (e *env) expectKeptBesideZombie(cfg string, kept *corev1.Pod, reason string, zombie, live *corev1.Pod) {
	e.t.Helper()
	plan := e.planAll(nil, cfg)
	e.expectNotReaped(plan, nsName(kept), reason)
	e.expectReaped(plan, nsName(zombie), "ti-finished")

	e.runOnce(cfg, 0)
	e.expectPresent(kept, live)
	e.expectDeletes([]string{e.ns}, nsName(zombie))
}

// judgeWithStaleTryControl plans and runs one real cycle of a case where a
// try-2 pod (notEvidence) is no evidence against the reattached try-1 pod
// of a task instance on try 2: neither is reaped nor deleted. The control is
// a try-1 pod (stale) whose try-2 pod (current) is evidence: stale is reaped
// as a stale try and is the only pod deleted in namespaces.
func (e *env) judgeWithStaleTryControl(cfg string, namespaces []string, reattached, notEvidence, stale, current *corev1.Pod) {
	e.t.Helper()
	plan := e.planAll(nil, cfg)
	e.expectNotReaped(plan, nsName(reattached), "")
	e.expectNotReaped(plan, nsName(notEvidence), "")
	e.expectReaped(plan, nsName(stale), "stale-try")

	e.runOnce(cfg, 0)
	e.expectPresent(reattached, notEvidence, current)
	e.expectDeletes(namespaces, nsName(stale))
}

// TestTryPodInOtherNamespaceIsNoStaleTryEvidence: the task instance is on
// try 2, running in its reattached try-1 pod; a try-2 pod of the same
// dag/task/run exists only in another watched namespace, and the current
// try has not pushed its XCom pod_name yet. That pod is no evidence about
// this namespace's. Control: the same with the try-2 pod in the same
// namespace is a stale try.
func TestTryPodInOtherNamespaceIsNoStaleTryEvidence(t *testing.T) {
	t.Parallel()
	forEachVersion(t, func(t *testing.T, v airflowVersion) {
		e := newEnv(t)
		otherNS := e.otherNamespace()
		reattached := e.createPod(kpo("reattached-pod", "reattach_task", 1).Pod(e.ns))
		stale := e.createPod(kpo("control-try1-pod", "control_task", 1).Pod(e.ns))
		createdAfter(reattached, stale)
		elsewhere := e.createIn(otherNS, kpo("reattach-try2-pod", "reattach_task", 2))
		current := e.createPod(kpo("control-try2-pod", "control_task", 2).Pod(e.ns))
		s := e.startSim(hazardScenario(v,
			tiSpec(hazardDag, hazardRun, "reattach_task", 2, "running"),
			tiSpec(hazardDag, hazardRun, "control_task", 2, "running"),
		), nil)
		cfg := e.config(s.URL, v, func(c *fixture.Config) { c.Namespace = e.ns + ", " + otherNS })

		e.judgeWithStaleTryControl(cfg, []string{e.ns, otherNS}, reattached, elsewhere, stale, current)
	})
}

// TestAlreadyCheckedPodIsNoStaleTryEvidence: a run deleted and
// re-triggered with the same run_id. The old run's try-2 pod (marked
// already_checked=True when that try finished) is still there; the new
// run's try 2 runs in its reattached try-1 pod and has no XCom yet. A pod
// the operator marked done with is no evidence of the current try's pod.
// Control: the same with an unmarked try-2 pod is a stale try.
func TestAlreadyCheckedPodIsNoStaleTryEvidence(t *testing.T) {
	t.Parallel()
	forEachVersion(t, func(t *testing.T, v airflowVersion) {
		e := newEnv(t)
		reattached := e.createPod(kpo("rerun-reattached-pod", "rerun_task", 1).Pod(e.ns))
		stale := e.createPod(kpo("control-try1-pod", "control_task", 1).Pod(e.ns))
		// Created after the reattached pod, so that only the mark
		// disqualifies it (in Airflow it would be older still).
		createdAfter(reattached, stale)
		checked := e.createPod(withAlreadyChecked(kpo("old-run-try2-pod", "rerun_task", 2)).Pod(e.ns))
		current := e.createPod(kpo("control-try2-pod", "control_task", 2).Pod(e.ns))
		s := e.startSim(hazardScenario(v, tiSpec(hazardDag, hazardRun, "control_task", 2, "running")), nil)
		// The re-trigger: the run is deleted with its task instances and
		// created again under the same run_id; its task is on try 2.
		if err := s.RemoveDagRun(hazardDag, hazardRun); err != nil {
			t.Fatal(err)
		}
		if err := s.PutDagRun(airflowsim.DagRunSpec{DagID: hazardDag, RunID: hazardRun, StartDate: "-30m"}); err != nil {
			t.Fatal(err)
		}
		for _, ti := range []airflowsim.TaskInstanceSpec{
			tiSpec(hazardDag, hazardRun, "rerun_task", 2, "running"),
			tiSpec(hazardDag, hazardRun, "control_task", 2, "running"),
		} {
			if err := s.PutTaskInstance(ti); err != nil {
				t.Fatal(err)
			}
		}
		cfg := e.config(s.URL, v, nil)

		e.judgeWithStaleTryControl(cfg, []string{e.ns}, reattached, checked, stale, current)
	})
}

// startWithOrphanControl adds to sc a DAG with a run, creates a pod of that
// run, serves sc and then deletes the run in Airflow: the pod is an orphan
// that a reaper with reaper.reapOrphans must still delete, the control of a
// case judged with it on (judgeWithReapOrphans).
func (e *env) startWithOrphanControl(sc *airflowsim.Scenario) (*sim, *corev1.Pod) {
	e.t.Helper()
	const dag, run = "orphan_dag", "manual__2026-11-26T06:00:00+00:00"
	sc.DAGs = append(sc.DAGs, airflowsim.DAGSpec{DagID: dag})
	sc.Runs = append(sc.Runs, airflowsim.DagRunSpec{DagID: dag, RunID: run, StartDate: "-24h", EndDate: "-23h", State: "success"})
	sc.TaskInstances = append(sc.TaskInstances, tiSpec(dag, run, "t", 1, "success"))
	orphan := e.createPod(fixture.PodSpec{Name: "real-orphan-pod", DagID: dag, RunID: run, TaskID: "t", MapIndex: -1, Try: 1}.Pod(e.ns))
	s := e.startSim(sc, nil)
	if err := s.RemoveDagRun(dag, run); err != nil {
		e.t.Fatal(err)
	}
	return s, orphan
}

// judgeWithReapOrphans plans and runs one real cycle with
// reaper.reapOrphans on: live is neither reaped nor deleted, the orphan
// control is reaped as an orphan and is the only pod deleted.
func (e *env) judgeWithReapOrphans(cfg string, live, orphan *corev1.Pod) {
	e.t.Helper()
	env := []string{reapOrphansEnv}
	plan := e.planAll(env, cfg)
	e.expectNotReaped(plan, nsName(live), "")
	e.expectReaped(plan, nsName(orphan), "orphan")

	e.reaperEnv(0, env, nil, "run", "--once", "--dry-run=false", "--config", cfg)
	e.expectPresent(live)
	e.expectDeletes([]string{e.ns}, nsName(orphan))
}

// TestDagMissingFromBagIsNoOrphan: Airflow 3, the DAG fails to import
// after a deploy, so it is missing from the serialized DAG bag while still
// listed: its run listing answers, the per-run task instance listing
// answers 404 "The Dag with ID: `ghost_dag` was not found". That 404 is
// about the DAG, not the run or the task instance. The pod is a new try's:
// the API still shows the previous try finished, so the active listing
// does not match it and only the per-run lookups could tell. Its task id
// has a hashed label (a leading and trailing '_'), so the reaper has to
// list the run's task instances to learn the id: the 404 is met. Judged
// with reaper.reapOrphans on; control: a real orphan.
func TestDagMissingFromBagIsNoOrphan(t *testing.T) {
	t.Parallel()
	v := airflowVersions[1]
	if v.api != 2 {
		t.Fatalf("airflowVersions[1] is %s, want an Airflow 3", v.version)
	}
	e := newEnv(t)
	const ghostDag, ghostRun, ghostTask = "ghost_dag", "manual__2026-11-27T08:00:00+00:00", "_ghost_task_"
	sc := &airflowsim.Scenario{
		AirflowVersion: v.version,
		Auth:           airflowsim.AuthSpec{Username: "admin", Password: "admin"},
		DAGs:           []airflowsim.DAGSpec{{DagID: ghostDag, NotInBag: true}},
		Runs:           []airflowsim.DagRunSpec{{DagID: ghostDag, RunID: ghostRun, StartDate: "-1h"}},
		TaskInstances:  []airflowsim.TaskInstanceSpec{tiSpec(ghostDag, ghostRun, ghostTask, 1, "success")},
	}
	live := e.createPod(fixture.PodSpec{Name: "ghost-dag-pod", DagID: ghostDag, RunID: ghostRun, TaskID: ghostTask,
		MapIndex: -1, Try: 2}.Pod(e.ns))
	s, orphan := e.startWithOrphanControl(sc)
	e.judgeWithReapOrphans(e.config(s.URL, v, nil), live, orphan)
	notInBag := false
	for _, r := range s.Requests() {
		notInBag = notInBag || (r.Path == "/api/v2/dags/"+ghostDag+"/dagRuns/"+ghostRun+"/taskInstances" && r.Status == 404)
	}
	if !notInBag {
		t.Errorf("the reaper never met the 404 of the per-run listing of %s/%s: the case is not exercised", ghostDag, ghostRun)
	}
}

// TestContradictingRunAnswersAreNoOrphan: the run listing shows the run (it
// has no task instance listed), then GET of that run answers 404 in the
// same cycle. Two answers that contradict each other are not "the run was
// deleted". Judged with reaper.reapOrphans on; control: a real orphan.
//
// The run id is a custom one (allowed by Airflow's default
// allowed_run_id_pattern) whose hashed label cannot be turned back into
// the id, so the reaper has to list the DAG's runs to resolve it: the
// listing half of the contradiction is not optional.
func TestContradictingRunAnswersAreNoOrphan(t *testing.T) {
	t.Parallel()
	forEachVersion(t, func(t *testing.T, v airflowVersion) {
		e := newEnv(t)
		const run = "rerun:2026-11-27+7"
		sc := &airflowsim.Scenario{
			AirflowVersion: v.version,
			Auth:           airflowsim.AuthSpec{Username: "admin", Password: "admin"},
			DAGs:           []airflowsim.DAGSpec{{DagID: hazardDag}},
			Runs:           []airflowsim.DagRunSpec{{DagID: hazardDag, RunID: run, StartDate: "-1h"}},
		}
		live := e.createPod(fixture.PodSpec{Name: "contradicted-pod", DagID: hazardDag, RunID: run, TaskID: "t",
			MapIndex: -1, Try: 1}.Pod(e.ns))
		s, orphan := e.startWithOrphanControl(sc)
		s.SetRunGetNotFound(hazardDag, run, true)
		e.judgeWithReapOrphans(e.config(s.URL, v, nil), live, orphan)

		listed, got404 := false, false
		for _, r := range s.Requests() {
			listed = listed || (r.Method == "GET" && r.Path == s.BasePath()+"/dags/"+hazardDag+"/dagRuns" && r.Status == 200)
			got404 = got404 || (r.Method == "GET" && r.Path == s.BasePath()+"/dags/"+hazardDag+"/dagRuns/"+run && r.Status == 404)
		}
		if !listed {
			t.Errorf("the reaper never listed the runs of %s: the case is not exercised", hazardDag)
		}
		t.Logf("the reaper listed the runs of %s; GET of run %s answered 404: %t", hazardDag, run, got404)
	})
}

// annotations reads a pod's confirmation annotations, as admin.
func (e *env) annotations(name string) map[string]string {
	e.t.Helper()
	p, err := cluster.Admin().CoreV1().Pods(e.ns).Get(e.ctx, name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatalf("pod %s: %v", name, err)
	}
	return p.Annotations
}

// TestConfirmationsAreSpaced: with reaper.confirmations 2, two runs
// back to back are one sighting, not two (confirmationSpacing defaults to
// reaper.interval, 1m here); a sighting after the spacing confirms. The
// earlier spaced sighting is simulated by moving the pod's annotations an
// hour back, as an hour-old first run would have left them.
func TestConfirmationsAreSpaced(t *testing.T) {
	t.Parallel()
	forEachVersion(t, func(t *testing.T, v airflowVersion) {
		e, s := newSeedEnv(t, v)
		cfg := e.config(s.URL, v, func(c *fixture.Config) { c.Confirmations = 2 })

		e.runOnce(cfg, 0)
		first := map[string]string{}
		for _, name := range fixture.SeedZombies {
			a := e.annotations(name)
			if a[annCount] != "1" {
				t.Errorf("after the first run, %s has %s=%q, want 1", name, annCount, a[annCount])
			}
			if _, err := time.Parse(time.RFC3339, a[annLastSeen]); err != nil {
				t.Errorf("after the first run, %s has %s=%q, want an RFC 3339 time: %v", name, annLastSeen, a[annLastSeen], err)
			}
			first[name] = a[annLastSeen]
		}

		e.runOnce(cfg, 0)
		e.expectGone(nil)
		if got := e.podDeletes(e.ns); len(got) != 0 {
			t.Errorf("two back-to-back runs deleted %q; a sighting within reaper.confirmationSpacing must not count", got)
		}
		for _, name := range fixture.SeedZombies {
			a := e.annotations(name)
			if a[annCount] != "1" {
				t.Errorf("after the second run, %s has %s=%q, want still 1", name, annCount, a[annCount])
			}
			if a[annLastSeen] != first[name] {
				t.Errorf("after the second run, %s has %s=%q, want the counted sighting's %q", name, annLastSeen, a[annLastSeen], first[name])
			}
		}

		hourAgo := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
			annFirstSeen: hourAgo, annLastSeen: hourAgo}}})
		for _, name := range fixture.SeedZombies {
			if _, err := cluster.Admin().CoreV1().Pods(e.ns).Patch(e.ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
		}

		e.runOnce(cfg, 0)
		e.expectGone(fixture.SeedZombies)
		e.expectDeletes([]string{e.ns}, e.ns+"/"+fixture.ZombiePod, e.ns+"/"+fixture.Mapped0Pod)
	})
}

// podLines returns every JSON log line about the pod (its "pod" field is
// namespace/name), whatever its message.
func podLines(t *testing.T, stderr, nsName string) []logLine {
	t.Helper()
	var out []logLine
	for _, l := range jsonLogLines(t, stderr) {
		if l["pod"] == nsName {
			out = append(out, l)
		}
	}
	return out
}

func hasLine(lines []logLine, match func(logLine) bool) bool {
	for _, l := range lines {
		if match(l) {
			return true
		}
	}
	return false
}

// TestDryRunTellsTheTruth: a dry run says what a real run would do.
// With reaper.confirmations 2 a zombie is awaiting confirmation (1/2) and
// the log says it "would delete once confirmed"; with 1 the action is
// dry-run and the log says it "would delete". Live pods get neither line,
// and nothing is written to the cluster.
func TestDryRunTellsTheTruth(t *testing.T) {
	t.Parallel()
	forEachVersion(t, func(t *testing.T, v airflowVersion) {
		e, s := newSeedEnv(t, v)
		for _, tc := range []struct {
			confirmations int
			action, msg   string
			seen          string // "" when any
		}{
			{2, "awaiting-confirmation", "would delete once confirmed", "1/2"},
			{1, "dry-run", "would delete", ""},
		} {
			cfg := e.config(s.URL, v, func(c *fixture.Config) { c.Confirmations = tc.confirmations })
			res := e.reaper(0, "run", "--once", "--dry-run", "--log-format", "json", "--config", cfg)
			for _, name := range fixture.SeedZombies {
				lines := podLines(t, res.Stderr, e.ns+"/"+name)
				if !hasLine(lines, func(l logLine) bool { return l["msg"] == tc.msg && l["level"] == "INFO" }) {
					t.Errorf("confirmations %d: no INFO line %q about %s; its lines: %v", tc.confirmations, tc.msg, name, lines)
				}
				if !hasLine(lines, func(l logLine) bool {
					return l["action"] == tc.action && (tc.seen == "" || l["confirmations"] == tc.seen)
				}) {
					t.Errorf("confirmations %d: no line about %s with action %s and confirmations %q; its lines: %v", tc.confirmations, name, tc.action, tc.seen, lines)
				}
				other := "would delete"
				if tc.msg == other {
					other = "would delete once confirmed"
				}
				if hasLine(lines, func(l logLine) bool { return l["msg"] == other }) {
					t.Errorf("confirmations %d: a line %q about %s; its lines: %v", tc.confirmations, other, name, lines)
				}
			}
			for _, name := range fixture.SeedLive {
				for _, l := range podLines(t, res.Stderr, e.ns+"/"+name) {
					if msg, _ := l["msg"].(string); strings.HasPrefix(msg, "would delete") {
						t.Errorf("confirmations %d: live pod %s: %v", tc.confirmations, name, l)
					}
				}
			}
		}
		e.expectGone(nil)
		e.expectNoWrites(true)
	})
}
