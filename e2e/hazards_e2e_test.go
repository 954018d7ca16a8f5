package e2e_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kpo-reaper/kpo-reaper/e2e/airflowsim"
	"github.com/kpo-reaper/kpo-reaper/e2e/fixture"
)

const (
	hazardDag = "hazard_dag"
	hazardRun = "manual__2026-11-27T06:00:00+00:00"
	orphanRun = "manual__2026-11-26T06:00:00+00:00"
	hiddenDag = "hidden_dag"
	// oddDag is longer than a label value may be, so its label is hashed;
	// oddRun has ':' and '+', and the odd task ids '*', '.' and leading
	// or trailing '_', so every label of those pods is hashed.
	oddDag         = "etl.customer_events.daily_ingest_and_normalize_with_an_identifier_over_63_chars"
	oddRun         = "scheduled__2026-11-27T05:00:00+00:00"
	oddFinished    = "transform*finished"
	oddRunningTask = "_transform.running_"
	staleDag       = "stale_dag"
	pausedDag      = "paused_dag"
	ambiguousDag   = "ambiguous_dag"
)

// ambiguousRun is a run id that is literally the label hazardRun
// normalizes to (a label-safe id is its own label), so pods of both runs
// of ambiguousDag carry the same run_id label.
var ambiguousRun = fixture.SafeLabel(hazardRun)

// hazard is one pod of TestHazards and what must become of it.
type hazard struct {
	pod fixture.PodSpec
	// prepare adjusts the pod object before it is created.
	prepare func(*corev1.Pod)
	// want is what plan -o json may say, as "verdict/reason" ("" for not
	// listed at all); any of them.
	want   []string
	reaped bool
	// later: created in a later second than every other pod, as a new
	// try's pod is (creation timestamps are whole seconds).
	later bool
}

func kpo(name, task string, try int) fixture.PodSpec {
	return fixture.PodSpec{Name: name, DagID: hazardDag, RunID: hazardRun, TaskID: task, MapIndex: -1, Try: try}
}

// tiSpec builds a task instance of a KubernetesPodOperator task; a finished
// one ends now, after its pod was created.
func tiSpec(dag, run, task string, try int, state string, opts ...func(*airflowsim.TaskInstanceSpec)) airflowsim.TaskInstanceSpec {
	s := airflowsim.TaskInstanceSpec{DagID: dag, RunID: run, TaskID: task, TryNumber: ptr(try),
		Operator: ptr("KubernetesPodOperator"), StartDate: "-10m"}
	if state != "" {
		s.State = ptr(state)
	}
	switch state {
	case "success", "failed", "skipped", "upstream_failed", "removed", "up_for_retry":
		s.EndDate = "-0s"
	}
	for _, o := range opts {
		o(&s)
	}
	return s
}

func endDate(ts airflowsim.TimeSpec) func(*airflowsim.TaskInstanceSpec) {
	return func(s *airflowsim.TaskInstanceSpec) { s.EndDate = ts }
}

func mapIndex(i int) func(*airflowsim.TaskInstanceSpec) {
	return func(s *airflowsim.TaskInstanceSpec) { s.MapIndex = ptr(i) }
}

func operator(name string) func(*airflowsim.TaskInstanceSpec) {
	return func(s *airflowsim.TaskInstanceSpec) { s.Operator = ptr(name) }
}

func podNameXCom(pod, namespace string) func(*airflowsim.TaskInstanceSpec) {
	return func(s *airflowsim.TaskInstanceSpec) {
		s.XCom = map[string]string{"pod_name": pod, "pod_namespace": namespace}
	}
}

// TestHazards puts every row of the decision table that must not (or must)
// delete a pod into one namespace and one cycle: plan -o json names each
// pod's verdict and reason, and the real cycle deletes exactly the zombies.
func TestHazards(t *testing.T) {
	t.Parallel()
	if len(oddDag) <= 63 {
		t.Fatalf("oddDag must be longer than 63 characters, is %d", len(oddDag))
	}
	forEachVersion(t, func(t *testing.T, v airflowVersion) {
		e := newEnv(t)
		// Airflow 2.0-2.9 reports a deferred task instance one try lower
		// than the try its pod is labelled with.
		deferredTry := 2
		if v.api == 1 {
			deferredTry = 1
		}
		hazards := []hazard{
			{pod: kpo("running-pod", "running_task", 1), want: []string{"keep/ti-active"}},
			{pod: kpo("deferred-pod", "deferred_task", 2), want: []string{"keep/ti-active"}},
			// A retry that reattached to its previous try's pod.
			{pod: kpo("reattached-pod", "reattach_task", 1), want: []string{"keep/ti-active"}},
			// A previous try's pod the operator marked already_checked.
			{pod: withAlreadyChecked(kpo("stale-checked-pod", "stale_checked_task", 1)), want: []string{"reap/stale-try"}, reaped: true},
			// Both tries' pods exist, the current try's was created later
			// (and after the try started) and its XCom names its own.
			{pod: kpo("stale-pair-try1-pod", "stale_pair_task", 1), want: []string{"reap/stale-try"}, reaped: true},
			{pod: kpo("stale-pair-try2-pod", "stale_pair_task", 2), want: []string{"keep/ti-active"}, later: true},
			// Airflow 3.3's durable reconnect: the current try's XCom names
			// the already_checked pod of the previous try, so it is in use.
			// Caught either in the first pass or by the re-check.
			{pod: withAlreadyChecked(kpo("reconnected-pod", "reconnect_task", 1)), want: []string{"keep/ti-active", "skip/changed-on-recheck"}},
			// The same two for a mapped task: the XCom is read for its map index.
			{pod: mapped(kpo("mapped-stale-try1-pod", "mapped_stale_task", 1), 3), want: []string{"reap/stale-try"}, reaped: true},
			{pod: mapped(kpo("mapped-stale-try2-pod", "mapped_stale_task", 2), 3), want: []string{"keep/ti-active"}, later: true},
			{pod: mapped(withAlreadyChecked(kpo("mapped-reconnected-pod", "mapped_reconnect_task", 1)), 4), want: []string{"keep/ti-active", "skip/changed-on-recheck"}},
			{pod: kpo("custom-operator-pod", "custom_operator_task", 1), want: []string{"reap/ti-finished"}, reaped: true},
			{pod: withJob(kpo("job-owned-pod", "job_owned_task", 1)), want: []string{"skip/owned"}},
			{pod: fixture.PodSpec{Name: "hidden-dag-pod", DagID: hiddenDag, RunID: hazardRun, TaskID: "secret_task", MapIndex: -1},
				want: []string{"skip/unresolved"}},
			{pod: kpo("up-for-retry-pod", "retry_task", 1), want: []string{"keep/ti-active"}},
			{pod: kpo("up-for-reschedule-pod", "reschedule_task", 1), want: []string{"keep/ti-active"}},
			{pod: kpo("null-state-pod", "cleared_task", 1), want: []string{"keep/ti-active"}},
			{pod: fixture.PodSpec{Name: "odd-finished-pod", DagID: oddDag, RunID: oddRun, TaskID: oddFinished, MapIndex: -1},
				want: []string{"reap/ti-finished"}, reaped: true},
			{pod: fixture.PodSpec{Name: "odd-running-pod", DagID: oddDag, RunID: oddRun, TaskID: oddRunningTask, MapIndex: -1},
				want: []string{"keep/ti-active"}},
			{pod: withNoKPOLabel(kpo("not-kpo-pod", "unlabelled_task", 1)), want: []string{"", "skip/not-kpo"}},
			{pod: withLabel(kpo("worker-pod", "worker_task", 1), "airflow-worker", "42"), want: []string{"skip/executor-worker"}},
			{pod: withLabel(kpo("executor-pod", "executor_task", 1), "kubernetes_executor", "True"), want: []string{"skip/executor-worker"}},
			{pod: withPhase(kpo("pending-failed-pod", "pending_task", 1), corev1.PodPending), want: []string{"reap/ti-finished"}, reaped: true},
			{pod: kpo("removed-state-pod", "removed_task", 1), want: []string{"reap/ti-finished"}, reaped: true},
			{pod: fixture.PodSpec{Name: "orphan-pod", DagID: hazardDag, RunID: orphanRun, TaskID: "orphan_task", MapIndex: -1},
				want: []string{"reap/orphan"}, reaped: true},
			// The task instance alone was deleted; its run remains.
			{pod: kpo("ti-deleted-pod", "deleted_task", 1), want: []string{"reap/orphan"}, reaped: true},
			// DAGs whose file is gone (stale) or that are paused still own their pods.
			{pod: fixture.PodSpec{Name: "stale-dag-pod", DagID: staleDag, RunID: hazardRun, TaskID: "t", MapIndex: -1},
				want: []string{"reap/ti-finished"}, reaped: true},
			{pod: fixture.PodSpec{Name: "paused-dag-pod", DagID: pausedDag, RunID: hazardRun, TaskID: "t", MapIndex: -1},
				want: []string{"reap/ti-finished"}, reaped: true},
			// Two runs normalize to this pod's run_id label.
			{pod: fixture.PodSpec{Name: "ambiguous-run-pod", DagID: ambiguousDag, RunID: hazardRun, TaskID: "t", MapIndex: -1},
				want: []string{"skip/ambiguous"}},
			{pod: kpo("newer-than-ti-pod", "newer_task", 1), want: []string{"skip/pod-newer-than-ti"}},
			{pod: kpo("try-ahead-pod", "ahead_task", 2), want: []string{"skip/try-ahead"}},
			{pod: kpo("no-end-date-pod", "no_end_task", 1), want: []string{"reap/finished-no-end-date"}, reaped: true},
			{pod: withPhase(kpo("succeeded-pod", "succeeded_task", 1), corev1.PodSucceeded), want: []string{"skip/completed"}},
			{pod: kpo("terminating-pod", "terminating_task", 1), want: []string{"skip/terminating"}},
			{pod: kpo("unidentifiable-pod", "unidentifiable_task", 1), want: []string{"skip/unidentifiable"},
				prepare: func(p *corev1.Pod) { delete(p.Labels, "try_number") }},
		}
		tis := []airflowsim.TaskInstanceSpec{
			tiSpec(hazardDag, hazardRun, "running_task", 1, "running"),
			tiSpec(hazardDag, hazardRun, "deferred_task", deferredTry, "deferred"),
			tiSpec(hazardDag, hazardRun, "reattach_task", 2, "running"),
			tiSpec(hazardDag, hazardRun, "stale_checked_task", 2, "running"),
			tiSpec(hazardDag, hazardRun, "stale_pair_task", 2, "running", podNameXCom("stale-pair-try2-pod", e.ns)),
			tiSpec(hazardDag, hazardRun, "reconnect_task", 2, "running", podNameXCom("reconnected-pod", e.ns)),
			tiSpec(hazardDag, hazardRun, "mapped_stale_task", 2, "running", mapIndex(3), podNameXCom("mapped-stale-try2-pod", e.ns)),
			// Other map indexes of the same tasks: their XComs must not be read for index 3 or 4.
			tiSpec(hazardDag, hazardRun, "mapped_stale_task", 2, "running", mapIndex(0), podNameXCom("mapped-stale-try1-pod", e.ns)),
			tiSpec(hazardDag, hazardRun, "mapped_reconnect_task", 2, "running", mapIndex(4), podNameXCom("mapped-reconnected-pod", e.ns)),
			tiSpec(hazardDag, hazardRun, "mapped_reconnect_task", 2, "running", mapIndex(0), podNameXCom("some-other-pod", e.ns)),
			tiSpec(hazardDag, hazardRun, "custom_operator_task", 1, "success", operator("MyCompanyPodOperator")),
			tiSpec(hazardDag, hazardRun, "job_owned_task", 1, "success"),
			tiSpec(hiddenDag, hazardRun, "secret_task", 1, "success"),
			tiSpec(hazardDag, hazardRun, "retry_task", 1, "up_for_retry"),
			tiSpec(hazardDag, hazardRun, "reschedule_task", 1, "up_for_reschedule"),
			tiSpec(hazardDag, hazardRun, "cleared_task", 1, ""),
			tiSpec(oddDag, oddRun, oddFinished, 1, "success"),
			tiSpec(oddDag, oddRun, oddRunningTask, 1, "running"),
			tiSpec(hazardDag, hazardRun, "unlabelled_task", 1, "success"),
			tiSpec(hazardDag, hazardRun, "worker_task", 1, "success"),
			tiSpec(hazardDag, hazardRun, "executor_task", 1, "success"),
			tiSpec(hazardDag, hazardRun, "pending_task", 1, "failed"),
			tiSpec(hazardDag, hazardRun, "removed_task", 1, "removed"),
			tiSpec(hazardDag, orphanRun, "orphan_task", 1, "success"),
			tiSpec(hazardDag, hazardRun, "deleted_task", 1, "success"),
			tiSpec(staleDag, hazardRun, "t", 1, "success"),
			tiSpec(pausedDag, hazardRun, "t", 1, "success"),
			tiSpec(ambiguousDag, hazardRun, "t", 1, "success"),
			tiSpec(ambiguousDag, ambiguousRun, "t", 1, "success"),
			tiSpec(hazardDag, hazardRun, "newer_task", 1, "success", endDate("-1h")),
			tiSpec(hazardDag, hazardRun, "ahead_task", 1, "success"),
			tiSpec(hazardDag, hazardRun, "no_end_task", 1, "success", endDate("")),
			tiSpec(hazardDag, hazardRun, "succeeded_task", 1, "success"),
			tiSpec(hazardDag, hazardRun, "terminating_task", 1, "success"),
			tiSpec(hazardDag, hazardRun, "unidentifiable_task", 1, "success"),
		}

		var created []*corev1.Pod
		for _, later := range []bool{false, true} {
			if later {
				createdAfter(created...)
			}
			for _, h := range hazards {
				if h.later != later {
					continue
				}
				p := h.pod.Pod(e.ns)
				if h.prepare != nil {
					h.prepare(p)
				}
				created = append(created, e.createPod(p))
			}
		}
		// Terminating: deleted gracefully; with no kubelet it stays so.
		grace := int64(3600)
		if err := cluster.Admin().CoreV1().Pods(e.ns).Delete(e.ctx, "terminating-pod", metav1.DeleteOptions{GracePeriodSeconds: &grace}); err != nil {
			t.Fatal(err)
		}

		sc := &airflowsim.Scenario{
			AirflowVersion: v.version,
			Auth:           airflowsim.AuthSpec{Username: "admin", Password: "admin"},
			DAGs: []airflowsim.DAGSpec{
				{DagID: hazardDag}, {DagID: oddDag}, {DagID: hiddenDag, Readable: ptr(false)},
				{DagID: staleDag, Stale: true}, {DagID: pausedDag, IsPaused: true}, {DagID: ambiguousDag},
			},
			Runs: []airflowsim.DagRunSpec{
				{DagID: hazardDag, RunID: hazardRun, StartDate: "-1h"},
				{DagID: hazardDag, RunID: orphanRun, StartDate: "-24h", EndDate: "-23h", State: "success"},
				{DagID: hiddenDag, RunID: hazardRun, StartDate: "-1h"},
				{DagID: oddDag, RunID: oddRun, StartDate: "-1h"},
				{DagID: staleDag, RunID: hazardRun, StartDate: "-1h"},
				{DagID: pausedDag, RunID: hazardRun, StartDate: "-1h"},
				{DagID: ambiguousDag, RunID: hazardRun, StartDate: "-1h"},
				{DagID: ambiguousDag, RunID: ambiguousRun, StartDate: "-1h"},
			},
			TaskInstances: tis,
		}
		s := e.startSim(sc, nil)
		// The orphan's run is deleted in Airflow, its pod lingers.
		if err := s.RemoveDagRun(hazardDag, orphanRun); err != nil {
			t.Fatal(err)
		}
		if err := s.RemoveTaskInstance(airflowsim.TIKey{DagID: hazardDag, RunID: hazardRun, TaskID: "deleted_task", MapIndex: -1}); err != nil {
			t.Fatal(err)
		}
		// The hazard namespace holds this Airflow's pods alone, the
		// condition under which reaper.reapOrphans is safe.
		cfg := e.config(s.URL, v, func(c *fixture.Config) { c.ReapOrphans = true })

		plan := e.plan(cfg)
		listed := 0
		for _, h := range hazards {
			p, ok := plan[h.pod.Name]
			if ok {
				listed++
			}
			got := ""
			if ok {
				got = p.Verdict + "/" + p.Reason
			}
			t.Logf("plan: %-22s %-28s %s", h.pod.Name, got, p.Detail)
			if !contains(h.want, got) {
				t.Errorf("plan: pod %s is %q (%s), want one of %q", h.pod.Name, got, p.Detail, h.want)
			}
		}
		if listed != len(plan) {
			t.Errorf("plan lists %d pods, %d of them known to the test", len(plan), listed)
		}

		e.runOnce(cfg, 0)

		var reaped []string
		for _, h := range hazards {
			if h.reaped {
				reaped = append(reaped, h.pod.Name)
			}
		}
		e.expectGone(reaped, "terminating-pod")
		e.expectWrites(reaped, nil)

		// What is left is no zombie.
		for name, p := range e.plan(cfg) {
			if p.Verdict == "reap" {
				t.Errorf("after the cycle, plan still reaps %s (%s)", name, p.Reason)
			}
		}
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func withAlreadyChecked(s fixture.PodSpec) fixture.PodSpec { s.AlreadyChecked = true; return s }
func mapped(s fixture.PodSpec, i int) fixture.PodSpec      { s.MapIndex = i; return s }
func withJob(s fixture.PodSpec) fixture.PodSpec            { s.OwnerJob = s.TaskID + "-job"; return s }
func withNoKPOLabel(s fixture.PodSpec) fixture.PodSpec     { s.NoKPOLabel = true; return s }

func withPhase(s fixture.PodSpec, phase corev1.PodPhase) fixture.PodSpec {
	s.Phase = phase
	return s
}

func withLabel(s fixture.PodSpec, k, v string) fixture.PodSpec {
	s.ExtraLabels = map[string]string{k: v}
	return s
}
