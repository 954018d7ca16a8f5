package decision

import (
	"strconv"
	"testing"
	"time"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
	"github.com/kpo-reaper/kpo-reaper/internal/labels"
)

var (
	now    = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	policy = Policy{MinPodAge: 5 * time.Minute, TerminalGracePeriod: 2 * time.Minute, OrphanMinAge: time.Hour, ReapOrphans: true}
)

const (
	dag = "kpo_zombie_dag"
	run = "manual__2026-11-27T06:00:00+00:00"
)

func ago(d time.Duration) *time.Time { t := now.Add(-d); return &t }

// kpoPod builds a pod labelled exactly as KubernetesPodOperator labels it.
func kpoPod(name, task string, mapIndex, try int, mutate ...func(*Pod)) Pod {
	l := labels.ForTaskInstance(dag, task, run, mapIndex, &try)
	p := Pod{Namespace: "airflow", Name: name, UID: "uid-" + name, Labels: l, Phase: "Running", Created: now.Add(-3 * time.Hour)}
	for _, m := range mutate {
		m(&p)
	}
	return p
}

func ti(task string, mapIndex, try int, state string, end *time.Time) airflow.TaskInstance {
	return airflow.TaskInstance{
		TIKey:     airflow.TIKey{DagID: dag, RunID: run, TaskID: task, MapIndex: mapIndex},
		TryNumber: try, State: state, EndDate: end, Operator: "KubernetesPodOperator",
	}
}

// evaluate runs the whole pure pipeline the way a cycle does. active stands
// for task instances the exact lookup of a pod's own key finds: one is
// Found, several are Ambiguous; pods matching none ask lookup.
func evaluate(pods []Pod, active []airflow.TaskInstance, lookup func(Candidate) (Lookup, bool)) map[string]Decision {
	return evaluateWith(policy, pods, active, lookup)
}

func evaluateWith(p Policy, pods []Pod, active []airflow.TaskInstance, lookup func(Candidate) (Lookup, bool)) map[string]Decision {
	skipped, candidates, evidence := Screen(pods, now, p)
	lookups := map[string]Lookup{}
	for _, c := range candidates {
		var matches []airflow.TaskInstance
		for _, t := range active {
			if labels.KeyOf(t.DagID, t.RunID, t.TaskID, t.MapIndex) == c.Identity.Key {
				matches = append(matches, t)
			}
		}
		switch {
		case len(matches) == 1:
			lookups[c.Pod.UID] = Lookup{Status: Found, TI: matches[0]}
		case len(matches) > 1:
			lookups[c.Pod.UID] = Lookup{Status: Ambiguous, Detail: "several task instances normalize to these labels"}
		case lookup != nil:
			if l, ok := lookup(c); ok {
				lookups[c.Pod.UID] = l
			}
		}
	}
	out := map[string]Decision{}
	for _, v := range append(skipped, Decide(Input{Now: now, Policy: p, Candidates: candidates, Lookups: lookups, Evidence: evidence})...) {
		out[v.Pod.Name] = v
	}
	return out
}

func found(t airflow.TaskInstance) func(Candidate) (Lookup, bool) {
	return func(Candidate) (Lookup, bool) { return Lookup{Status: Found, TI: t}, true }
}

func status(s LookupStatus) func(Candidate) (Lookup, bool) {
	return func(Candidate) (Lookup, bool) { return Lookup{Status: s, Detail: "test"}, true }
}

func TestDecisionTable(t *testing.T) {
	type row struct {
		name    string
		pods    []Pod
		active  []airflow.TaskInstance
		lookup  func(Candidate) (Lookup, bool)
		verdict Verdict
		reason  Reason
	}
	// pod is the pod under test: "p", of task t, unmapped, try 1, as mutate
	// changes it.
	pod := func(mutate ...func(*Pod)) []Pod { return []Pod{kpoPod("p", "t", -1, 1, mutate...)} }
	label := func(k, v string) func(*Pod) { return func(p *Pod) { p.Labels[k] = v } }
	created := func(d time.Duration) func(*Pod) { return func(p *Pod) { p.Created = now.Add(-d) } }
	// ended finds task t's try 1 in state, ended an hour ago.
	ended := func(state string) func(Candidate) (Lookup, bool) { return found(ti("t", -1, 1, state, ago(time.Hour))) }
	tis := func(t ...airflow.TaskInstance) []airflow.TaskInstance { return t }
	checked := label(labels.AlreadyChecked, "True")
	// current is the current try's (2) pod of task t.
	current := func(mutate ...func(*Pod)) Pod { return kpoPod("current", "t", -1, 2, mutate...) }
	rows := []row{
		{name: "no KPO label", pods: pod(func(p *Pod) { delete(p.Labels, labels.KPO) }), verdict: Skip, reason: ReasonNotKPO},
		{name: "KPO label False", pods: pod(label(labels.KPO, "False")), verdict: Skip, reason: ReasonNotKPO},
		{name: "executor worker by airflow-worker", pods: pod(label(labels.AirflowWorker, "42")), lookup: ended("success"),
			verdict: Skip, reason: ReasonExecutorWorker},
		{name: "executor worker by kubernetes_executor", pods: pod(label(labels.KubernetesExecutor, "True")),
			lookup: ended("success"), verdict: Skip, reason: ReasonExecutorWorker},
		{name: "Job-owned pod", pods: pod(func(p *Pod) { p.OwnerKind = "Job" }), lookup: ended("success"),
			verdict: Skip, reason: ReasonOwned},
		{name: "terminating", pods: pod(func(p *Pod) { p.Terminating = true }), lookup: ended("success"),
			verdict: Skip, reason: ReasonTerminating},
		{name: "missing try_number", pods: pod(func(p *Pod) { delete(p.Labels, labels.TryNumber) }),
			verdict: Skip, reason: ReasonUnidentifiable},
		{name: "execution_date era pod",
			pods:    pod(func(p *Pod) { delete(p.Labels, labels.RunID); p.Labels[labels.ExecutionDate] = "x" }),
			verdict: Skip, reason: ReasonUnidentifiable},
		{name: "bad map_index", pods: pod(label(labels.MapIndex, "zero")), verdict: Skip, reason: ReasonUnidentifiable},
		{name: "too young", pods: pod(created(time.Minute)), lookup: ended("success"), verdict: Skip, reason: ReasonTooYoung},
		{name: "Succeeded pod", pods: pod(func(p *Pod) { p.Phase = "Succeeded" }), lookup: ended("success"),
			verdict: Skip, reason: ReasonCompleted},
		{name: "Failed pod", pods: pod(func(p *Pod) { p.Phase = "Failed" }), lookup: ended("failed"),
			verdict: Skip, reason: ReasonCompleted},

		{name: "running TI", pods: pod(), active: tis(ti("t", -1, 1, "running", nil)), verdict: Keep, reason: ReasonTIActive},
		{name: "null state TI", pods: pod(), active: tis(ti("t", -1, 1, "", nil)), verdict: Keep, reason: ReasonTIActive},
		{name: "deferred TI, Airflow 2.0-2.9 try one lower than pod", pods: []Pod{kpoPod("p", "t", -1, 2)},
			active: tis(ti("t", -1, 1, "deferred", nil)), verdict: Keep, reason: ReasonTIActive},
		{name: "retry reattached to previous try's pod", pods: pod(), active: tis(ti("t", -1, 2, "running", nil)),
			verdict: Keep, reason: ReasonTIActive},
		{name: "up_for_retry keeps the reattach candidate", pods: pod(), active: tis(ti("t", -1, 1, "up_for_retry", nil)),
			verdict: Keep, reason: ReasonTIActive},
		{name: "restarting", pods: pod(), active: tis(ti("t", -1, 1, "restarting", nil)),
			verdict: Keep, reason: ReasonTIActive},
		{name: "unknown state found by lookup is active", pods: pod(), lookup: ended("shutdown"),
			verdict: Keep, reason: ReasonTIActive},
		{name: "Succeeded pod of deferred TI is not touched", pods: pod(func(p *Pod) { p.Phase = "Succeeded" }),
			active: tis(ti("t", -1, 1, "deferred", nil)), verdict: Skip, reason: ReasonCompleted},

		{name: "stale try marked already_checked", pods: pod(checked), active: tis(ti("t", -1, 2, "running", nil)),
			verdict: Reap, reason: ReasonStaleTry},
		{name: "stale try with the current try's pod present", pods: append(pod(), current(created(time.Minute))),
			active: tis(started(ti("t", -1, 2, "running", nil), 10*time.Minute)), verdict: Reap, reason: ReasonStaleTry},
		{name: "a current-try pod in another namespace is no evidence",
			pods:   append(pod(), current(func(p *Pod) { p.Namespace = "other" }, created(time.Minute))),
			active: tis(started(ti("t", -1, 2, "running", nil), 10*time.Minute)), verdict: Keep, reason: ReasonTIActive},
		{name: "an already_checked current-try pod is no evidence",
			pods:   append(pod(), current(checked, created(time.Minute))),
			active: tis(started(ti("t", -1, 2, "running", nil), 10*time.Minute)), verdict: Keep, reason: ReasonTIActive},
		{name: "a current-try pod older than this one is no evidence", pods: append(pod(), current(created(4*time.Hour))),
			active: tis(started(ti("t", -1, 2, "running", nil), 5*time.Hour)), verdict: Keep, reason: ReasonTIActive},
		{name: "a current-try pod created before the try started is no evidence",
			pods:   append(pod(), current(created(time.Hour))),
			active: tis(started(ti("t", -1, 2, "running", nil), 10*time.Minute)), verdict: Keep, reason: ReasonTIActive},
		{name: "without the try's start_date a current-try pod is no evidence",
			pods:   append(pod(), current(created(time.Minute))),
			active: tis(ti("t", -1, 2, "running", nil)), verdict: Keep, reason: ReasonTIActive},
		{name: "a terminating current-try pod is no evidence",
			pods:   append(pod(), current(func(p *Pod) { p.Terminating = true })),
			active: tis(ti("t", -1, 2, "running", nil)), verdict: Keep, reason: ReasonTIActive},
		{name: "already_checked, but the current try's XCom pod_name names it", pods: pod(checked),
			lookup: func(Candidate) (Lookup, bool) {
				return Lookup{Status: Found, TI: ti("t", -1, 2, "running", nil), CurrentPodName: "p"}, true
			},
			verdict: Keep, reason: ReasonTIActive},
		{name: "already_checked, the current try's XCom names another pod", pods: pod(checked),
			lookup: func(Candidate) (Lookup, bool) {
				return Lookup{Status: Found, TI: ti("t", -1, 2, "running", nil), CurrentPodName: "other"}, true
			},
			verdict: Reap, reason: ReasonStaleTry},
		{name: "already_checked but same try as TI is kept", pods: []Pod{kpoPod("p", "t", -1, 2, checked)},
			active: tis(ti("t", -1, 2, "running", nil)), verdict: Keep, reason: ReasonTIActive},

		{name: "finished TI past grace", pods: pod(), lookup: ended("success"), verdict: Reap, reason: ReasonTIFinished},
		{name: "failed TI, pod stuck Pending", pods: pod(func(p *Pod) { p.Phase = "Pending" }), lookup: ended("failed"),
			verdict: Reap, reason: ReasonTIFinished},
		{name: "finished TI, pod of an earlier try", pods: pod(), lookup: found(ti("t", -1, 3, "failed", ago(time.Hour))),
			verdict: Reap, reason: ReasonTIFinished},
		{name: "skipped, upstream_failed and removed are finished", pods: pod(), lookup: ended("removed"),
			verdict: Reap, reason: ReasonTIFinished},
		{name: "finished TI within grace", pods: pod(), lookup: found(ti("t", -1, 1, "success", ago(time.Minute))),
			verdict: Skip, reason: ReasonTerminalGrace},
		{name: "pod try ahead of finished TI", pods: []Pod{kpoPod("p", "t", -1, 2)}, lookup: ended("success"),
			verdict: Skip, reason: ReasonTryAhead},
		{name: "pod newer than TI end", pods: pod(created(30 * time.Minute)), lookup: ended("success"),
			verdict: Skip, reason: ReasonPodNewerThanTI},
		{name: "finished without end_date waits from its first sighting", pods: pod(), lookup: found(ti("t", -1, 1, "skipped", nil)),
			verdict: Reap, reason: ReasonFinishedNoEndDate},

		{name: "orphan", pods: pod(), lookup: status(Gone), verdict: Reap, reason: ReasonOrphan},
		{name: "DAG unavailable", pods: pod(), lookup: status(DagUnavailable), verdict: Skip, reason: ReasonDagUnavailable},
		{name: "contradictory answers", pods: pod(), lookup: status(Contradictory),
			verdict: Skip, reason: ReasonContradictory},
		{name: "lookup failed", pods: pod(), lookup: status(Failed), verdict: Skip, reason: ReasonLookupFailed},
		{name: "orphan younger than orphan age", pods: pod(created(30 * time.Minute)), lookup: status(Gone),
			verdict: Skip, reason: ReasonOrphanTooYoung},
		{name: "unresolved", pods: pod(), lookup: status(Unresolved), verdict: Skip, reason: ReasonUnresolved},
		{name: "not looked up", pods: pod(), verdict: Skip, reason: ReasonUnresolved},
		{name: "ambiguous lookup", pods: pod(), lookup: status(Ambiguous), verdict: Skip, reason: ReasonAmbiguous},
		{name: "two active TIs on one key", pods: pod(),
			active: tis(ti("t", -1, 1, "running", nil), ti("t", -1, 1, "queued", nil)), verdict: Skip, reason: ReasonAmbiguous},

		{name: "mapped: other map index active does not protect", pods: []Pod{kpoPod("p", "m", 0, 1)},
			active: tis(ti("m", 1, 1, "running", nil)), lookup: found(ti("m", 0, 1, "success", ago(time.Hour))),
			verdict: Reap, reason: ReasonTIFinished},
		{name: "mapped: own map index active", pods: []Pod{kpoPod("p", "m", 1, 1)},
			active:  tis(ti("m", 1, 1, "running", nil), ti("m", 0, 1, "success", ago(time.Hour))),
			verdict: Keep, reason: ReasonTIActive},
		{name: "unmapped pod is not the mapped TI 0", pods: []Pod{kpoPod("p", "m", -1, 1)},
			active: tis(ti("m", 0, 1, "running", nil)), lookup: status(Gone), verdict: Reap, reason: ReasonOrphan},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			got := evaluate(r.pods, r.active, r.lookup)["p"]
			if got.Verdict != r.verdict || got.Reason != r.reason {
				t.Fatalf("got %s/%s (%s), want %s/%s", got.Verdict, got.Reason, got.Detail, r.verdict, r.reason)
			}
		})
	}
}

func started(t airflow.TaskInstance, ago time.Duration) airflow.TaskInstance {
	s := now.Add(-ago)
	t.StartDate = &s
	return t
}

// Orphans are another Airflow's pods as often as deleted runs': without
// reaper.reapOrphans they are never reaped, whatever their age.
func TestOrphansNeedOptIn(t *testing.T) {
	p := policy
	p.ReapOrphans = false
	got := evaluateWith(p, []Pod{kpoPod("p", "t", -1, 1, func(p *Pod) { p.Created = now.Add(-30 * 24 * time.Hour) })}, nil, status(Gone))["p"]
	if got.Verdict != Skip || got.Reason != ReasonOrphanNotEnabled {
		t.Fatalf("got %s/%s, want skip/%s", got.Verdict, got.Reason, ReasonOrphanNotEnabled)
	}
}

// The seed DAG: two zombies reaped, two live pods kept.
func TestSeedScenario(t *testing.T) {
	pods := []Pod{
		kpoPod("zombie", "zombie_kpo_task", -1, 1),
		kpoPod("healthy", "healthy_kpo_task", -1, 1),
		kpoPod("mapped-0", "mapped_kpo_task", 0, 1),
		kpoPod("mapped-1", "mapped_kpo_task", 1, 1),
	}
	active := []airflow.TaskInstance{ti("healthy_kpo_task", -1, 1, "running", nil), ti("mapped_kpo_task", 1, 1, "running", nil)}
	finished := map[string]airflow.TaskInstance{
		"zombie":   ti("zombie_kpo_task", -1, 1, "success", ago(time.Hour)),
		"mapped-0": ti("mapped_kpo_task", 0, 1, "success", ago(time.Hour)),
	}
	got := evaluate(pods, active, func(c Candidate) (Lookup, bool) {
		return Lookup{Status: Found, TI: finished[c.Pod.Name]}, true
	})
	want := map[string]Verdict{"zombie": Reap, "mapped-0": Reap, "healthy": Keep, "mapped-1": Keep}
	for name, v := range want {
		if got[name].Verdict != v {
			t.Errorf("%s: got %s/%s, want %s", name, got[name].Verdict, got[name].Reason, v)
		}
	}
}

func TestHashedIdsMatch(t *testing.T) {
	longDag := "a_very_long_dag_id_" + string(make([]byte, 0)) + "with_more_than_sixty_three_characters_in_it_for_sure_yes"
	try := 1
	l := labels.ForTaskInstance(longDag, "task*", run, -1, &try)
	pod := Pod{Namespace: "ns", Name: "p", UID: "u", Labels: l, Phase: "Running", Created: now.Add(-time.Hour)}
	active := []airflow.TaskInstance{{TIKey: airflow.TIKey{DagID: longDag, RunID: run, TaskID: "task*", MapIndex: -1}, TryNumber: 1, State: "running"}}
	got := evaluate([]Pod{pod}, active, nil)["p"]
	if got.Verdict != Keep {
		t.Fatalf("hashed ids not matched: %s/%s", got.Verdict, got.Reason)
	}
}

func TestOldestFirst(t *testing.T) {
	var vs []Decision
	for i := 3; i > 0; i-- {
		vs = append(vs, Decision{Pod: Pod{Name: strconv.Itoa(i), Created: now.Add(-time.Duration(i) * time.Hour)}})
	}
	vs = append(vs, Decision{Pod: Pod{Name: "0", Created: now}})
	OldestFirst(vs)
	for i, want := range []string{"3", "2", "1", "0"} {
		if vs[i].Pod.Name != want {
			t.Fatalf("order %v", vs)
		}
	}
}
