// The end-to-end suite: the built kpo-reaper binary against a real
// kube-apiserver + etcd (one cluster for the whole suite, started in
// TestMain) and the Airflow REST API simulator (one per test). Every test
// works in its own namespace, where the shipped RBAC is applied and the
// reaper runs as its ServiceAccount, so missing permissions fail the suite.
//
// The audit log is shared by all tests: assertions filter it by namespace
// and by the reaper's user. "Nothing was written" is only asserted after a
// marker request, made after the reaper exited, is in the log.
package e2e_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kpo-reaper/kpo-reaper/e2e/airflowsim"
	"github.com/kpo-reaper/kpo-reaper/e2e/fixture"
	"github.com/kpo-reaper/kpo-reaper/e2e/harness"
)

var (
	cluster   *harness.Cluster
	reaperBin string
	nsSeq     atomic.Int64
)

// TestMain starts the one cluster of the suite. A missing reaper binary or
// a cluster that does not start fails the run: an e2e suite that silently
// tests nothing must not look like a pass.
func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	// The tests mostly wait (on the reaper's subprocess, its client-side
	// rate limit, the apiserver), so more of them than GOMAXPROCS can run
	// at once. An explicit -parallel wins.
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		if err := flag.Set("test.parallel", strconv.Itoa(max(runtime.GOMAXPROCS(0), 6))); err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
	}
	return fixture.RunWithCluster(m, "e2e", func(c *harness.Cluster, bin string) { cluster, reaperBin = c, bin })
}

// airflowVersion is one simulated Airflow: every scenario runs on both.
type airflowVersion struct {
	name    string // subtest name
	version string // the scenario's airflowVersion
	api     int    // 1: /api/v1, 2: /api/v2
	seed    string // the seed scenario file under scenarios/
}

var airflowVersions = []airflowVersion{
	{name: "v1", version: "2.10.5", api: 1, seed: "seed-v1.yaml"},
	{name: "v2", version: "3.2.1", api: 2, seed: "seed-v2.yaml"},
}

// forEachVersion runs f as a parallel subtest per Airflow version.
func forEachVersion(t *testing.T, f func(t *testing.T, v airflowVersion)) {
	t.Helper()
	for _, v := range airflowVersions {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			f(t, v)
		})
	}
}

// env is one test's namespace with the shipped RBAC applied.
type env struct {
	t          *testing.T
	ctx        context.Context
	ns         string
	kubeconfig string // authenticates as the reaper's ServiceAccount
	user       string // system:serviceaccount:<ns>:kpo-reaper
	uids       map[string]types.UID
	created    []string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	t.Cleanup(cancel)
	ns := fixture.Namespace(fmt.Sprintf("e2e-%03d", nsSeq.Add(1)), t.Name())
	kc, err := fixture.ApplyShippedRBAC(ctx, cluster, ns)
	if err != nil {
		t.Fatalf("applying the shipped RBAC to %s: %v", ns, err)
	}
	t.Logf("namespace %s", ns)
	return &env{t: t, ctx: ctx, ns: ns, kubeconfig: kc, user: "system:serviceaccount:" + ns + ":kpo-reaper",
		uids: map[string]types.UID{}}
}

// createPods creates KPO pods (with their status) in the namespace.
func (e *env) createPods(specs ...fixture.PodSpec) {
	e.t.Helper()
	for _, s := range specs {
		e.createPod(s.Pod(e.ns))
	}
}

func (e *env) createPod(p *corev1.Pod) *corev1.Pod {
	e.t.Helper()
	p.Namespace = e.ns
	created, err := cluster.CreatePod(e.ctx, p)
	if err != nil {
		e.t.Fatal(err)
	}
	e.uids[created.Name] = created.UID
	e.created = append(e.created, created.Name)
	return created
}

// createPodsConcurrently creates many pods with a few workers and returns
// them in the order of specs.
func (e *env) createPodsConcurrently(specs []fixture.PodSpec) []*corev1.Pod {
	e.t.Helper()
	out := make([]*corev1.Pod, len(specs))
	errs := make([]error, len(specs))
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i], errs[i] = cluster.CreatePod(e.ctx, specs[i].Pod(e.ns))
			}
		}()
	}
	for i := range specs {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, p := range out {
		if errs[i] != nil {
			e.t.Fatal(errs[i])
		}
		e.uids[p.Name] = p.UID
		e.created = append(e.created, p.Name)
	}
	return out
}

// sim is a running Airflow simulator.
type sim struct {
	*airflowsim.Server
	srv *httptest.Server
	URL string
}

// startSim serves the scenario; wrap, when not nil, puts a handler in front
// of the simulator (to change its state at an exact request).
func (e *env) startSim(sc *airflowsim.Scenario, wrap func(*airflowsim.Server) http.Handler, opts ...airflowsim.Option) *sim {
	e.t.Helper()
	s := airflowsim.New(sc, opts...)
	var h http.Handler = s
	if wrap != nil {
		h = wrap(s)
	}
	srv := httptest.NewServer(h)
	e.t.Cleanup(func() {
		s.Close() // releases requests held by FaultHang first
		srv.Close()
	})
	return &sim{Server: s, srv: srv, URL: srv.URL}
}

// stop takes the API down: connections are refused from now on.
func (s *sim) stop() {
	s.Close()
	s.srv.Close()
}

// seedScenario is scenarios/seed-vN.yaml with the finished task instances
// ending now, after the pods were created (fixture.SeedScenario).
func seedScenario(t *testing.T, v airflowVersion) *airflowsim.Scenario {
	t.Helper()
	sc, err := fixture.SeedScenario(v.seed)
	if err != nil {
		t.Fatal(err)
	}
	if sc.AirflowVersion != v.version {
		t.Fatalf("%s declares Airflow %s, want %s", v.seed, sc.AirflowVersion, v.version)
	}
	return sc
}

// newSeedEnv is a namespace with the seed DAG's pods (fixture.SeedPods) and
// a simulator serving v's seed scenario, which has them as two zombies and
// two live pods.
func newSeedEnv(t *testing.T, v airflowVersion, opts ...airflowsim.Option) (*env, *sim) {
	t.Helper()
	e := newEnv(t)
	e.createPods(fixture.SeedPods()...)
	return e, e.startSim(seedScenario(t, v), nil, opts...)
}

// config writes a reaper configuration for this namespace and simulator.
// mod may change anything; Kubeconfig, Namespace and AuthType are filled in
// when left empty.
func (e *env) config(url string, v airflowVersion, mod func(*fixture.Config)) string {
	e.t.Helper()
	c := fixture.Config{AirflowURL: url, Confirmations: 1}
	if mod != nil {
		mod(&c)
	}
	if c.Kubeconfig == "" {
		c.Kubeconfig = e.kubeconfig
	}
	if c.Namespace == "" {
		c.Namespace = e.ns
	}
	if c.AuthType == "" {
		c.AuthType = fixture.AuthFor(v.api)
	}
	dir, err := os.MkdirTemp(e.t.TempDir(), "config-")
	if err != nil {
		e.t.Fatal(err)
	}
	p, err := c.Write(dir)
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// reaper runs the binary and fails the test unless it exits with want.
func (e *env) reaper(want int, args ...string) fixture.Result {
	e.t.Helper()
	return e.reaperWithEnv(want, os.Environ(), args...)
}

// reaperWithEnv is reaper with the environment environ.
func (e *env) reaperWithEnv(want int, environ []string, args ...string) fixture.Result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, 2*time.Minute)
	defer cancel()
	res, err := fixture.RunEnv(ctx, reaperBin, environ, args...)
	if err != nil {
		e.t.Fatalf("running %s %q: %v", reaperBin, args, err)
	}
	if res.ExitCode != want {
		e.t.Fatalf("kpo-reaper %s: exit code %d, want %d\nstdout:\n%s\nstderr:\n%s",
			strings.Join(args, " "), res.ExitCode, want, res.Stdout, res.Stderr)
	}
	return res
}

// runOnce is one real cycle: run --once --dry-run=false.
func (e *env) runOnce(cfg string, want int) fixture.Result {
	e.t.Helper()
	return e.reaper(want, "run", "--once", "--dry-run=false", "--config", cfg)
}

// planPod is one pod of `plan -o json`.
type planPod struct {
	Namespace           string `json:"namespace"`
	Name                string `json:"name"`
	UID                 string `json:"uid"`
	Verdict             string `json:"verdict"`
	Reason              string `json:"reason"`
	Detail              string `json:"detail"`
	Task                string `json:"task"`
	DagID               string `json:"dagId"`
	RunID               string `json:"runId"`
	TaskID              string `json:"taskId"`
	MapIndex            *int   `json:"mapIndex"`
	PodTryNumber        *int   `json:"podTryNumber"`
	TIState             string `json:"tiState"`
	TITryNumber         *int   `json:"tiTryNumber"`
	Confirmations       int    `json:"confirmations"`
	ConfirmationsNeeded int    `json:"confirmationsNeeded"`
}

// planPods decodes what `plan -o json` printed.
func (e *env) planPods(stdout string) []planPod {
	e.t.Helper()
	var out struct {
		Pods []planPod `json:"pods"`
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		e.t.Fatalf("plan -o json is not JSON: %v\n%s", err, stdout)
	}
	return out.Pods
}

// plan runs `plan -o json` and returns its pods by name.
func (e *env) plan(cfg string) map[string]planPod {
	e.t.Helper()
	res := e.reaper(0, "plan", "--config", cfg, "-o", "json")
	m := map[string]planPod{}
	for _, p := range e.planPods(res.Stdout) {
		if p.Namespace != e.ns {
			e.t.Errorf("plan lists pod %s/%s outside the configured namespace %s", p.Namespace, p.Name, e.ns)
		}
		if _, dup := m[p.Name]; dup {
			e.t.Errorf("plan lists pod %s twice", p.Name)
		}
		if uid := e.uids[p.Name]; uid != "" && p.UID != string(uid) {
			e.t.Errorf("plan: pod %s has uid %s, want %s", p.Name, p.UID, uid)
		}
		m[p.Name] = p
	}
	return m
}

// expectVerdict checks one pod's verdict and reason in a plan.
func (e *env) expectVerdict(plan map[string]planPod, name, verdict, reason string) {
	e.t.Helper()
	p, ok := plan[name]
	if !ok {
		e.t.Errorf("plan has no pod %s", name)
		return
	}
	if p.Verdict != verdict || p.Reason != reason {
		e.t.Errorf("plan: pod %s is %s/%s (%s), want %s/%s", name, p.Verdict, p.Reason, p.Detail, verdict, reason)
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

// expectGone checks that exactly the named pods of those the test created
// are gone (not Terminating: gone) and every other one is still there, with
// its UID and not being deleted (except those in terminating, which the
// test itself put into that state).
func (e *env) expectGone(gone []string, terminating ...string) {
	e.t.Helper()
	want := set(gone...)
	term := set(terminating...)
	have := e.pods()
	for _, name := range e.created {
		p, present := have[name]
		switch {
		case want[name] && present:
			state := "still there"
			if p.DeletionTimestamp != nil {
				state = "Terminating, not gone"
			}
			e.t.Errorf("pod %s should have been deleted, but is %s", name, state)
		case want[name]:
			if _, err := cluster.Admin().CoreV1().Pods(e.ns).Get(e.ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				e.t.Errorf("pod %s: get after delete: %v, want NotFound", name, err)
			}
		case !present:
			e.t.Errorf("pod %s was deleted, but must have been kept", name)
		case p.UID != e.uids[name]:
			e.t.Errorf("pod %s was replaced (uid %s, created %s)", name, p.UID, e.uids[name])
		case p.DeletionTimestamp != nil && !term[name]:
			e.t.Errorf("pod %s must have been kept, but is Terminating", name)
		}
	}
}

// syncAudit makes sure every request the reaper made before this call is in
// the audit log (harness.Cluster.SyncAudit) and returns the namespace's
// events by the reaper's user.
func (e *env) syncAudit() []harness.AuditEvent {
	e.t.Helper()
	evs, err := cluster.SyncAudit(e.ctx, e.ns)
	if err != nil {
		e.t.Fatal(err)
	}
	var mine []harness.AuditEvent
	for _, ev := range evs {
		if ev.User == e.user {
			mine = append(mine, ev)
		}
	}
	return mine
}

// isEvent reports whether an audit event is about a Kubernetes Event, which
// the reaper may report its deletes with.
func isEvent(ev harness.AuditEvent) bool { return ev.Resource == "events" }

func writes(evs []harness.AuditEvent) []harness.AuditEvent {
	var out []harness.AuditEvent
	for _, ev := range evs {
		if ev.IsWrite() {
			out = append(out, ev)
		}
	}
	return out
}

// expectNoWrites checks, after an audit sync, that the reaper wrote nothing
// in the namespace; with allowEvents, creating Events does not count.
func (e *env) expectNoWrites(allowEvents bool) {
	e.t.Helper()
	for _, ev := range writes(e.syncAudit()) {
		if allowEvents && isEvent(ev) {
			continue
		}
		e.t.Errorf("the reaper wrote to the cluster: %s", ev)
	}
}

// expectWrites checks the reaper's writes in the namespace since the start
// of the test: exactly the force deletes of deleted (each with
// gracePeriodSeconds 0 and a precondition on the pod's UID) and merge
// patches of exactly the pods in patched (each with the pod's UID in the
// body), and nothing else but Events. The deletes are waited for first, as an audit line can lag.
func (e *env) expectWrites(deleted, patched []string) {
	e.t.Helper()
	if want := set(deleted...); len(want) > 0 {
		seen := map[string]bool{}
		_, err := cluster.WaitForAuditEvent(e.ctx, 30*time.Second, func(ev harness.AuditEvent) bool {
			if ev.User == e.user && ev.Verb == "delete" && ev.Resource == "pods" && ev.Namespace == e.ns && want[ev.Name] {
				seen[ev.Name] = true
			}
			return len(seen) == len(want)
		})
		if err != nil {
			e.t.Errorf("audited deletes by %s: saw %d of the %d expected: %v", e.user, len(seen), len(want), err)
		}
	}
	var gotDeletes, gotPatches []string
	for _, ev := range writes(e.syncAudit()) {
		switch {
		case isEvent(ev):
			// Reporting, not acting on a pod.
		case ev.Verb == "delete" && ev.Resource == "pods" && ev.Subresource == "":
			gotDeletes = append(gotDeletes, ev.Name)
			e.checkForceDelete(ev)
		case ev.Verb == "patch" && ev.Resource == "pods" && ev.Subresource == "":
			gotPatches = append(gotPatches, ev.Name)
			e.checkMarkPatch(ev)
		default:
			e.t.Errorf("unexpected write by the reaper: %s", ev)
		}
	}
	if !sameSet(gotDeletes, deleted) {
		e.t.Errorf("the reaper's pod DELETEs: %q, want exactly %q", sorted(gotDeletes), sorted(deleted))
	}
	if !sameSet(gotPatches, patched) {
		e.t.Errorf("the reaper's pod PATCHes: %q, want exactly %q", sorted(gotPatches), sorted(patched))
	}
}

func (e *env) checkForceDelete(ev harness.AuditEvent) {
	e.t.Helper()
	if ev.Code != http.StatusOK {
		e.t.Errorf("delete of %s answered %d, want 200", ev.Name, ev.Code)
	}
	if ev.DryRun {
		e.t.Errorf("delete of %s was a server-side dry run", ev.Name)
	}
	var opts struct {
		GracePeriodSeconds *int64 `json:"gracePeriodSeconds"`
		Preconditions      *struct {
			UID *string `json:"uid"`
		} `json:"preconditions"`
		PropagationPolicy *string `json:"propagationPolicy"`
	}
	if err := json.Unmarshal(ev.RequestObject, &opts); err != nil {
		e.t.Errorf("delete of %s: audited options %s: %v", ev.Name, ev.RequestObject, err)
		return
	}
	if opts.GracePeriodSeconds == nil || *opts.GracePeriodSeconds != 0 {
		e.t.Errorf("delete of %s was not a force delete (gracePeriodSeconds 0): %s", ev.Name, ev.RequestObject)
	}
	if opts.Preconditions == nil || opts.Preconditions.UID == nil || *opts.Preconditions.UID != string(e.uids[ev.Name]) {
		e.t.Errorf("delete of %s lacks a precondition on uid %s: %s", ev.Name, e.uids[ev.Name], ev.RequestObject)
	}
}

func (e *env) checkMarkPatch(ev harness.AuditEvent) {
	e.t.Helper()
	if ev.Code != http.StatusOK {
		e.t.Errorf("patch of %s answered %d, want 200", ev.Name, ev.Code)
	}
	var body struct {
		Metadata struct {
			UID         string                     `json:"uid"`
			Annotations map[string]json.RawMessage `json:"annotations"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(ev.RequestObject, &body); err != nil {
		e.t.Errorf("patch of %s: audited body %s: %v", ev.Name, ev.RequestObject, err)
		return
	}
	if body.Metadata.UID != string(e.uids[ev.Name]) {
		e.t.Errorf("patch of %s lacks the uid %s precondition: %s", ev.Name, e.uids[ev.Name], ev.RequestObject)
	}
	for k := range body.Metadata.Annotations {
		if !strings.HasPrefix(k, "kpo-reaper.io/") {
			e.t.Errorf("patch of %s touches annotation %s: %s", ev.Name, k, ev.RequestObject)
		}
	}
	if len(body.Metadata.Annotations) == 0 {
		e.t.Errorf("patch of %s changes no annotation: %s", ev.Name, ev.RequestObject)
	}
}

// logLine is one line of the reaper's JSON log.
type logLine map[string]any

// jsonLogLines parses the JSON lines of a log (--log-format json).
func jsonLogLines(t *testing.T, stderr string) []logLine {
	t.Helper()
	var out []logLine
	for _, line := range strings.Split(stderr, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var l logLine
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Errorf("log line is not JSON: %v: %s", err, line)
			continue
		}
		out = append(out, l)
	}
	return out
}

// podLogs returns the last line about each pod, by pod name: keep and skip
// lines are "pod" at debug, actions have their own message ("deleted",
// "changed on re-check", ...).
func podLogs(t *testing.T, stderr string) map[string]logLine {
	t.Helper()
	out := map[string]logLine{}
	for _, l := range jsonLogLines(t, stderr) {
		pod, ok := l["pod"].(string)
		if !ok || l["msg"] == "delete failed" {
			continue
		}
		_, name, _ := strings.Cut(pod, "/")
		out[name] = l
	}
	return out
}

func set(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// sameSet compares as multisets, so a pod deleted twice is noticed.
func sameSet(a, b []string) bool {
	return strings.Join(sorted(a), "\x00") == strings.Join(sorted(b), "\x00")
}

func sorted(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}

func ptr[T any](v T) *T { return &v }
