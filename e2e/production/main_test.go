// Package production_test runs the built kpo-reaper binary the way it runs
// in production: as a long-running daemon with its watch cache, metrics
// server, health endpoints, Events and leader election, configured from the
// shipped install artefacts (the Helm chart's rendered ConfigMap, RBAC and
// container args; the scheduler-sidecar files), against a real
// kube-apiserver + etcd (one for the package, started in TestMain, with the
// audit log on) and the Airflow REST API simulator (one per test).
//
// Outside a cluster a few things must change, and only those: the Airflow
// URL when a file names a real Service, the kubeconfig (there is no
// in-cluster config), and the metrics server's address (a free loopback
// port instead of :8080, so that replicas on one host do not clash). Each
// test says how it changes them. The downward API and Secret-backed
// environment variables of the rendered containers are resolved the way a
// kubelet would: fieldRefs from the pod the process stands for, secretKeyRefs
// from the Secret read back from the apiserver.
//
// Synchronisation is by polling observable state with bounded deadlines;
// the audit log is read only after a marker request of the test's own is in
// it (see syncAudit).
package production_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kpo-reaper/kpo-reaper/e2e/airflowsim"
	"github.com/kpo-reaper/kpo-reaper/e2e/fixture"
	"github.com/kpo-reaper/kpo-reaper/e2e/harness"
)

var (
	cluster   *harness.Cluster
	reaperBin string
	nsSeq     atomic.Int64
)

// TestMain starts the package's cluster. A missing reaper binary or a
// cluster that does not start fails the run: a suite that silently tests
// nothing must not look like a pass.
func TestMain(m *testing.M) {
	os.Exit(fixture.RunWithCluster(m, "production e2e", func(c *harness.Cluster, bin string) { cluster, reaperBin = c, bin }))
}

// seedTask is the task instance each seed zombie belongs to, as the reaper
// names it in Events (dag/run/task[map index]).
var seedTask = map[string]string{
	fixture.ZombiePod:  fixture.SeedDag + "/" + fixture.SeedRun + "/zombie_kpo_task",
	fixture.Mapped0Pod: fixture.SeedDag + "/" + fixture.SeedRun + "/mapped_kpo_task[0]",
}

// env is one test's namespace.
type env struct {
	t    *testing.T
	ctx  context.Context
	ns   string
	uids map[string]types.UID
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	t.Cleanup(cancel)
	ns := fixture.Namespace(fmt.Sprintf("prod-%02d", nsSeq.Add(1)), t.Name())
	if err := cluster.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	t.Logf("namespace %s", ns)
	return &env{t: t, ctx: ctx, ns: ns, uids: map[string]types.UID{}}
}

// createPods creates KPO pods, with their status, and remembers their UIDs.
func (e *env) createPods(specs ...fixture.PodSpec) {
	e.t.Helper()
	for _, s := range specs {
		created, err := cluster.CreatePod(e.ctx, s.Pod(e.ns))
		if err != nil {
			e.t.Fatal(err)
		}
		e.uids[created.Name] = created.UID
	}
}

// createPlaceholderPod creates a plain (non-KPO) pod standing for the
// reaper's own pod, which carries its Warning events.
func (e *env) createPlaceholderPod(name string) *corev1.Pod {
	e.t.Helper()
	p, err := cluster.CreatePod(e.ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: name, Namespace: e.ns, Labels: map[string]string{"app.kubernetes.io/name": "kpo-reaper"},
	}})
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// createSecret creates a Secret as admin (what `kubectl create secret` does
// before an install).
func (e *env) createSecret(name string, data map[string]string) {
	e.t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns}, StringData: data}
	if _, err := cluster.Admin().CoreV1().Secrets(e.ns).Create(e.ctx, s, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// pods lists the namespace's pods by name, as admin.
func (e *env) pods() map[string]corev1.Pod {
	e.t.Helper()
	m, err := cluster.PodsByName(e.ctx, e.ns)
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

// waitGone polls until every named pod is gone (NotFound, not Terminating).
// expectSeedUntouched checks that every seed pod is still there and that
// user wrote no pod (when says when).
func (e *env) expectSeedUntouched(user, when string) {
	e.t.Helper()
	e.expectPresent(append(append([]string(nil), fixture.SeedZombies...), fixture.SeedLive...)...)
	for _, ev := range byUser(e.syncAudit(), user) {
		if ev.Resource == "pods" && ev.IsWrite() {
			e.t.Errorf("pod write %s: %s", when, ev)
		}
	}
}

// expectSeedReaped waits up to timeout for the seed zombies to go and
// checks that the live seed pods stay.
func (e *env) expectSeedReaped(timeout time.Duration) {
	e.t.Helper()
	e.waitGone(timeout, fixture.SeedZombies...)
	e.expectPresent(fixture.SeedLive...)
}

// expectReady waits for d's /readyz to answer 200 (when says when).
func (e *env) expectReady(d *proc, when string) {
	e.t.Helper()
	e.eventually(30*time.Second, "/readyz 200 "+when, func() (bool, string) {
		code, body, err := d.get("/readyz")
		return err == nil && code == http.StatusOK, fmt.Sprintf("%d %q %v", code, body, err)
	})
}

func (e *env) waitGone(timeout time.Duration, names ...string) {
	e.t.Helper()
	e.eventually(timeout, fmt.Sprintf("pods %q deleted", names), func() (bool, string) {
		var left []string
		for _, n := range names {
			_, err := cluster.Admin().CoreV1().Pods(e.ns).Get(e.ctx, n, metav1.GetOptions{})
			if !apierrors.IsNotFound(err) {
				left = append(left, n)
			}
		}
		return len(left) == 0, fmt.Sprintf("still there: %q", left)
	})
}

// expectPresent checks that each named pod is still there, with the UID it
// was created with and not being deleted.
func (e *env) expectPresent(names ...string) {
	e.t.Helper()
	have := e.pods()
	for _, n := range names {
		p, ok := have[n]
		switch {
		case !ok:
			e.t.Errorf("pod %s was deleted, but must have been kept", n)
		case p.UID != e.uids[n]:
			e.t.Errorf("pod %s was replaced (uid %s, created %s)", n, p.UID, e.uids[n])
		case p.DeletionTimestamp != nil:
			e.t.Errorf("pod %s must have been kept, but is Terminating", n)
		}
	}
}

// eventually polls cond every 100ms until it reports done, and fails the
// test with cond's last status when timeout passes first.
func (e *env) eventually(timeout time.Duration, what string, cond func() (bool, string)) {
	e.t.Helper()
	eventually(e.ctx, e.t, timeout, what, cond)
}

func eventually(ctx context.Context, t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		done, status := cond()
		last = status
		return done, nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v (last: %s)", what, err, last)
	}
}

// startSim serves a scenario on a loopback port until the test ends.
func (e *env) startSim(sc *airflowsim.Scenario) (*airflowsim.Server, string) {
	e.t.Helper()
	return startSim(e.t, sc)
}

// seedScenario is e2e/scenarios/<file> with the finished task instances
// ending now, i.e. after the test created the pods (fixture.SeedScenario).
func seedScenario(t testing.TB, file string) *airflowsim.Scenario {
	t.Helper()
	sc, err := fixture.SeedScenario(file)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// syncAudit makes sure every request made before this call is in the audit
// log and returns the namespace's events (every user), oldest first
// (harness.Cluster.SyncAudit).
func (e *env) syncAudit() []harness.AuditEvent {
	e.t.Helper()
	evs, err := cluster.SyncAudit(e.ctx, e.ns)
	if err != nil {
		e.t.Fatal(err)
	}
	return evs
}

// podDeletes are the DELETEs of pods (not of a subresource) among evs.
func podDeletes(evs []harness.AuditEvent) []harness.AuditEvent {
	var out []harness.AuditEvent
	for _, ev := range evs {
		if ev.Verb == "delete" && ev.Resource == "pods" && ev.Subresource == "" && ev.APIGroup == "" {
			out = append(out, ev)
		}
	}
	return out
}

// byUser keeps the events of one user.
func byUser(evs []harness.AuditEvent, user string) []harness.AuditEvent {
	var out []harness.AuditEvent
	for _, ev := range evs {
		if ev.User == user {
			out = append(out, ev)
		}
	}
	return out
}

func names(evs []harness.AuditEvent) []string {
	out := make([]string, 0, len(evs))
	for _, ev := range evs {
		out = append(out, ev.Name)
	}
	return out
}

// eventsByReason lists the namespace's core/v1 Events with a reason, by the
// name of the object they are about.
func (e *env) eventsByReason(reason string) map[string][]corev1.Event {
	e.t.Helper()
	list, err := cluster.Admin().CoreV1().Events(e.ns).List(e.ctx, metav1.ListOptions{FieldSelector: "reason=" + reason})
	if err != nil {
		e.t.Fatal(err)
	}
	m := map[string][]corev1.Event{}
	for _, ev := range list.Items {
		m[ev.InvolvedObject.Name] = append(m[ev.InvolvedObject.Name], ev)
	}
	return m
}

// expectReapedEvents waits for one ZombiePodReaped Event on each reaped pod
// and checks what it says: the task instance, its state and the reason
// code, on the pod with the UID it was created with.
func (e *env) expectReapedEvents(tasks map[string]string, state, reason string) {
	e.t.Helper()
	var got map[string][]corev1.Event
	e.eventually(30*time.Second, "ZombiePodReaped events", func() (bool, string) {
		got = e.eventsByReason("ZombiePodReaped")
		var missing []string
		for pod := range tasks {
			if len(got[pod]) == 0 {
				missing = append(missing, pod)
			}
		}
		return len(missing) == 0, fmt.Sprintf("none yet on %q", missing)
	})
	for pod, evs := range got {
		task, ok := tasks[pod]
		if !ok {
			e.t.Errorf("ZombiePodReaped event on pod %s, which was not reaped: %q", pod, evs[0].Message)
			continue
		}
		if len(evs) != 1 {
			e.t.Errorf("%d ZombiePodReaped events on pod %s, want 1", len(evs), pod)
		}
		ev := evs[0]
		if ev.Type != corev1.EventTypeNormal || ev.InvolvedObject.Kind != "Pod" || ev.InvolvedObject.UID != e.uids[pod] {
			e.t.Errorf("event on %s: type %s, object %s uid %s; want Normal on Pod uid %s", pod, ev.Type, ev.InvolvedObject.Kind, ev.InvolvedObject.UID, e.uids[pod])
		}
		if ev.Source.Component != "kpo-reaper" {
			e.t.Errorf("event on %s: source component %q, want kpo-reaper", pod, ev.Source.Component)
		}
		for _, want := range []string{"task instance " + task + " ", "(state " + state + ")", "reason " + reason} {
			if !strings.Contains(ev.Message, want) {
				e.t.Errorf("event on %s: message %q does not contain %q", pod, ev.Message, want)
			}
		}
	}
}
