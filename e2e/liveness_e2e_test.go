package e2e_test

// Every proven zombie is reaped, whatever the other pods do, and an opt-in
// never turns into a mass delete. Each test below has a control pod in the
// same cycle that must still be deleted (or kept), so that "nothing is ever
// deleted" cannot pass.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kpo-reaper/kpo-reaper/e2e/airflowsim"
	"github.com/kpo-reaper/kpo-reaper/e2e/fixture"
)

// An object-storage XCom backend answers a reference for pod_name. The
// re-check before the delete of an older try's pod cannot read a pod name
// from it: that pod is kept (pod-name-unusable), the cycle goes on and the
// younger zombie of another task is deleted.
func TestUnusableXComKeepsOnlyItsPod(t *testing.T) {
	t.Parallel()
	forEachVersion(t, func(t *testing.T, v airflowVersion) {
		e := newEnv(t)
		stale := e.createPod(withAlreadyChecked(kpo("stale-try-pod", "stale_task", 1)).Pod(e.ns))
		createdAfter(stale)
		zombie := e.createPod(kpo("finished-pod", "finished_task", 1).Pod(e.ns))
		live := e.createPod(kpo("running-pod", "running_task", 1).Pod(e.ns))
		s := e.startSim(hazardScenario(v,
			tiSpec(hazardDag, hazardRun, "stale_task", 2, "running", func(s *airflowsim.TaskInstanceSpec) {
				s.XCom = map[string]string{"pod_name": "xcom_s3://airflow-xcom/hazard_dag/manual/stale_task/5f0c.json"}
			}),
			tiSpec(hazardDag, hazardRun, "finished_task", 1, "success"),
			tiSpec(hazardDag, hazardRun, "running_task", 1, "running"),
		), nil)
		cfg := e.config(s.URL, v, nil)

		e.expectKeptBesideZombie(cfg, stale, "pod-name-unusable", zombie, live)
	})
}

// dagrun_timeout sets an unfinished task instance to skipped, a shrunken map
// removes one, without an end_date. Their pods are reaped once seen a
// zombie for reaper.terminalGracePeriod since the first recorded sighting:
// a first cycle with a grace of an hour marks them and deletes only the
// control zombie (an earlier try's pod, which no grace holds back); a cycle
// with no grace deletes them.
func TestFinishedWithoutEndDateIsReaped(t *testing.T) {
	t.Parallel()
	forEachVersion(t, func(t *testing.T, v airflowVersion) {
		e := newEnv(t)
		skipped := e.createPod(kpo("skipped-pod", "skipped_task", 1).Pod(e.ns))
		removed := e.createPod(kpo("removed-pod", "removed_task", 1).Pod(e.ns))
		zombie := e.createPod(withAlreadyChecked(kpo("stale-try-pod", "stale_task", 1)).Pod(e.ns))
		live := e.createPod(kpo("running-pod", "running_task", 1).Pod(e.ns))
		s := e.startSim(hazardScenario(v,
			tiSpec(hazardDag, hazardRun, "skipped_task", 1, "skipped", endDate("")),
			tiSpec(hazardDag, hazardRun, "removed_task", 1, "removed", endDate("")),
			tiSpec(hazardDag, hazardRun, "stale_task", 2, "running"),
			tiSpec(hazardDag, hazardRun, "running_task", 1, "running"),
		), nil)
		cfg := e.config(s.URL, v, nil)
		anHour := []string{"KPO_REAPER_REAPER_TERMINALGRACEPERIOD=1h"}

		plan := e.planAll(anHour, cfg)
		e.expectReaped(plan, nsName(skipped), "finished-no-end-date")
		e.expectReaped(plan, nsName(removed), "finished-no-end-date")
		e.reaperEnv(0, anHour, nil, "run", "--once", "--dry-run=false", "--config", cfg)
		e.expectMarkedOnceThenDeleted(cfg, live, zombie, skipped, removed)
	})
}

// refuseDeletes makes the API server refuse every pod DELETE in namespace
// (a policy, as a webhook of a real cluster would), and waits until a
// dry-run delete of probe is refused.
func (e *env) refuseDeletes(namespace string, probe *corev1.Pod) {
	e.t.Helper()
	name := "refuse-pod-deletes-" + namespace
	docs := fmt.Sprintf(`apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: %[1]s
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - apiGroups: [""]
        apiVersions: ["v1"]
        operations: ["DELETE"]
        resources: ["pods"]
  validations:
    - expression: "false"
      message: "pod deletes are refused in this namespace"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: %[1]s
spec:
  policyName: %[1]s
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels:
        kubernetes.io/metadata.name: %[2]s
`, name, namespace)
	if err := cluster.Apply(e.ctx, []byte(docs), namespace); err != nil {
		e.t.Fatalf("refusing deletes in %s: %v", namespace, err)
	}
	e.t.Cleanup(func() {
		ctx := e.ctx
		_ = cluster.Admin().AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Delete(ctx, name, metav1.DeleteOptions{})
		_ = cluster.Admin().AdmissionregistrationV1().ValidatingAdmissionPolicies().Delete(ctx, name, metav1.DeleteOptions{})
	})
	// The policy takes effect when the API server's informer sees it.
	for {
		err := cluster.Admin().CoreV1().Pods(namespace).Delete(e.ctx, probe.Name, metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
		if apierrors.IsForbidden(err) || apierrors.IsInvalid(err) {
			return
		}
		if e.ctx.Err() != nil {
			e.t.Fatalf("pod deletes in %s are still allowed: %v", namespace, err)
		}
		time.Sleep(50 * time.Millisecond) // polling the condition, not a synchronisation
	}
}

// Older zombies in a namespace whose deletes a policy refuses do not hold
// reaper.maxDeletesPerCycle: the younger zombie of another namespace is
// deleted in the same cycle.
func TestRefusedDeletesDoNotHoldTheCap(t *testing.T) {
	t.Parallel()
	v := airflowVersions[1]
	e := newEnv(t)
	refusedNS := e.otherNamespace()
	refused := []*corev1.Pod{
		e.createIn(refusedNS, kpo("refused-pod-1", "refused_task_1", 1)),
		e.createIn(refusedNS, kpo("refused-pod-2", "refused_task_2", 1)),
	}
	e.refuseDeletes(refusedNS, refused[0])
	createdAfter(refused...)
	young := e.createPod(kpo("young-zombie-pod", "young_task", 1).Pod(e.ns))
	live := e.createPod(kpo("running-pod", "running_task", 1).Pod(e.ns))
	s := e.startSim(hazardScenario(v,
		tiSpec(hazardDag, hazardRun, "refused_task_1", 1, "success"),
		tiSpec(hazardDag, hazardRun, "refused_task_2", 1, "success"),
		tiSpec(hazardDag, hazardRun, "young_task", 1, "success"),
		tiSpec(hazardDag, hazardRun, "running_task", 1, "running"),
	), nil)
	cfg := e.config(s.URL, v, func(c *fixture.Config) { c.Namespace = e.ns + ", " + refusedNS })

	// The refused deletes are failed writes: the cycle reports them (exit 1).
	res := e.reaperEnv(1, []string{"KPO_REAPER_REAPER_MAXDELETESPERCYCLE=1"}, nil, "run", "--once", "--dry-run=false", "--config", cfg)
	if !strings.Contains(res.Stderr, "refused") {
		t.Errorf("the refused deletes are not reported:\n%s", res.Stderr)
	}
	e.expectPresent(append(refused, live)...)
	e.expectDeletes([]string{e.ns}, nsName(young))
}

// A DAG deleted in Airflow takes its runs and task instances with it: GET
// /dags/{dag_id} answers 404. Under reaper.reapOrphans its pods are orphans.
// Controls: a live pod is kept and, on Airflow 3, a pod of a DAG that is
// missing from the DAG bag (GET /dags/{dag_id} still answers) stays
// dag-unavailable.
func TestDeletedDagPodsAreOrphans(t *testing.T) {
	t.Parallel()
	forEachVersion(t, func(t *testing.T, v airflowVersion) {
		e := newEnv(t)
		const deletedDag, ghostDag, ghostTask = "deleted_dag", "ghost_dag", "_ghost_task_"
		orphan := e.createPod(fixture.PodSpec{Name: "deleted-dag-pod", DagID: deletedDag, RunID: hazardRun, TaskID: "t",
			MapIndex: -1, Try: 1}.Pod(e.ns))
		live := e.createPod(kpo("running-pod", "running_task", 1).Pod(e.ns))
		sc := hazardScenario(v, tiSpec(hazardDag, hazardRun, "running_task", 1, "running"))
		kept := []*corev1.Pod{live}
		if v.api == 2 {
			sc.DAGs = append(sc.DAGs, airflowsim.DAGSpec{DagID: ghostDag, NotInBag: true})
			sc.Runs = append(sc.Runs, airflowsim.DagRunSpec{DagID: ghostDag, RunID: hazardRun, StartDate: "-1h"})
			sc.TaskInstances = append(sc.TaskInstances, tiSpec(ghostDag, hazardRun, ghostTask, 1, "success"))
			kept = append(kept, e.createPod(fixture.PodSpec{Name: "not-in-bag-pod", DagID: ghostDag, RunID: hazardRun,
				TaskID: ghostTask, MapIndex: -1, Try: 2}.Pod(e.ns)))
		}
		s := e.startSim(sc, nil)
		cfg := e.config(s.URL, v, nil)

		env := []string{reapOrphansEnv}
		plan := e.planAll(env, cfg)
		e.expectReaped(plan, nsName(orphan), "orphan")
		if v.api == 2 {
			e.expectNotReaped(plan, nsName(kept[1]), "dag-unavailable")
		}
		e.reaperEnv(0, env, nil, "run", "--once", "--dry-run=false", "--config", cfg)
		e.expectPresent(kept...)
		e.expectDeletes([]string{e.ns}, nsName(orphan))
	})
}

// airflow.url pointing at another Airflow (a staging one) with the same DAG
// ids and none of the runs: every pod looks like an orphan. The orphan
// breaker fails the cycle closed, deletes nothing and names airflow.url.
// Control: one orphan among healthy pods is still deleted.
func TestWrongAirflowDeletesNothing(t *testing.T) {
	t.Parallel()
	forEachVersion(t, func(t *testing.T, v airflowVersion) {
		e := newEnv(t)
		var pods []*corev1.Pod
		for i := range 6 {
			pods = append(pods, e.createPod(kpo(fmt.Sprintf("production-pod-%d", i), fmt.Sprintf("task_%d", i), 1).Pod(e.ns)))
		}
		staging := &airflowsim.Scenario{
			AirflowVersion: v.version,
			Auth:           airflowsim.AuthSpec{Username: "admin", Password: "admin"},
			DAGs:           []airflowsim.DAGSpec{{DagID: hazardDag}},
		}
		s := e.startSim(staging, nil)
		cfg := e.config(s.URL, v, nil)
		res := e.reaperEnv(1, []string{reapOrphansEnv}, nil, "run", "--once", "--dry-run=false", "--config", cfg)
		if !strings.Contains(res.Stderr, "airflow.url") {
			t.Errorf("the failed cycle does not name airflow.url:\n%s", res.Stderr)
		}
		e.expectPresent(pods...)
		e.expectDeletes([]string{e.ns})

		control := newEnv(t)
		live1 := control.createPod(kpo("running-pod-1", "running_task_1", 1).Pod(control.ns))
		live2 := control.createPod(kpo("running-pod-2", "running_task_2", 1).Pod(control.ns))
		cs, orphan := control.startWithOrphanControl(hazardScenario(v,
			tiSpec(hazardDag, hazardRun, "running_task_1", 1, "running"),
			tiSpec(hazardDag, hazardRun, "running_task_2", 1, "running"),
		))
		control.judgeWithReapOrphans(control.config(cs.URL, v, nil), live1, orphan)
		control.expectPresent(live2)
	})
}

// Confirmation marks this reaper could not have written are a fresh start:
// a count above reaper.confirmations does not let a first sighting delete,
// and a last sighting dated in the future does not hold confirmations back.
// Control: a pod with a mark this reaper wrote is deleted at its second
// sighting.
func TestImplausibleMarksAreAFreshStart(t *testing.T) {
	t.Parallel()
	forEachVersion(t, func(t *testing.T, v airflowVersion) {
		e := newEnv(t)
		at := time.Now().UTC().Format(time.RFC3339)
		future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
		marked := func(name, task, count, lastSeen string) *corev1.Pod {
			p := kpo(name, task, 1).Pod(e.ns)
			p.Annotations = map[string]string{annCount: count, annFirstSeen: at, annLastSeen: lastSeen,
				"kpo-reaper.io/zombie-reason": "ti-finished"}
			return e.createPod(p)
		}
		inflated := marked("inflated-count-pod", "inflated_task", "5", at)
		ahead := marked("future-mark-pod", "future_task", "1", future)
		control := marked("marked-once-pod", "control_task", "1", at)
		live := e.createPod(kpo("running-pod", "running_task", 1).Pod(e.ns))
		s := e.startSim(hazardScenario(v,
			tiSpec(hazardDag, hazardRun, "inflated_task", 1, "success"),
			tiSpec(hazardDag, hazardRun, "future_task", 1, "success"),
			tiSpec(hazardDag, hazardRun, "control_task", 1, "success"),
			tiSpec(hazardDag, hazardRun, "running_task", 1, "running"),
		), nil)
		cfg := e.config(s.URL, v, twoQuickConfirmations)

		e.runOnce(cfg, 0)
		e.expectMarkedOnceThenDeleted(cfg, live, control, inflated, ahead)
	})
}

// expectMarkedOnceThenDeleted checks that the cycle just run deleted first
// alone and marked each of marked once, then runs a cycle that deletes them
// too; live stays throughout.
func (e *env) expectMarkedOnceThenDeleted(cfg string, live, first *corev1.Pod, marked ...*corev1.Pod) {
	e.t.Helper()
	counts := map[string]int{}
	deleted := []string{nsName(first)}
	for _, p := range marked {
		counts[p.Name] = 1
		deleted = append(deleted, nsName(p))
	}
	e.expectPresent(append(append([]*corev1.Pod(nil), marked...), live)...)
	e.expectDeletes([]string{e.ns}, nsName(first))
	e.expectCounts(counts)

	e.runOnce(cfg, 0)
	e.expectPresent(live)
	e.expectDeletes([]string{e.ns}, deleted...)
}

// expectCounts checks the zombie-count mark of the named pods.
func (e *env) expectCounts(want map[string]int) {
	e.t.Helper()
	pods := e.pods()
	for name, n := range want {
		if got := pods[name].Annotations[annCount]; got != fmt.Sprint(n) {
			e.t.Errorf("pod %s: %s=%q, want %d", name, annCount, got, n)
		}
	}
}
