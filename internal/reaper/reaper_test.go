package reaper

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
	"github.com/kpo-reaper/kpo-reaper/internal/airflow/airflowtest"
	"github.com/kpo-reaper/kpo-reaper/internal/decision"
	"github.com/kpo-reaper/kpo-reaper/internal/deleter"
	"github.com/kpo-reaper/kpo-reaper/internal/labels"
	"github.com/kpo-reaper/kpo-reaper/internal/resolve"
)

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

const (
	dag = "kpo_zombie_dag"
	run = "manual__2026-11-27T06:00:00+00:00"
)

// cluster is a pod store that the recording deleter writes to.
type cluster struct {
	mu      sync.Mutex
	pods    map[string]decision.Pod
	deleted []string
	writes  int
	fail    error
	// refused pods' deletes fail, as a policy webhook refusing them would.
	refused map[string]bool
}

func (c *cluster) List(context.Context) ([]decision.Pod, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return nil, c.fail
	}
	var out []decision.Pod
	for _, p := range c.pods {
		out = append(out, p)
	}
	return out, nil
}

func (c *cluster) Delete(_ context.Context, p decision.Pod) (deleter.Result, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	if _, ok := c.pods[p.Name]; !ok {
		return deleter.Gone, nil
	}
	if c.refused[p.Name] {
		return deleter.Failed, fmt.Errorf("deleting pod %s: admission webhook denied the request", p.Name)
	}
	delete(c.pods, p.Name)
	c.deleted = append(c.deleted, p.Name)
	return deleter.Deleted, nil
}

func (c *cluster) Mark(_ context.Context, p decision.Pod, s deleter.Sighting) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	q := c.pods[p.Name]
	q.Annotations = map[string]string{
		deleter.AnnotationCount:     strconv.Itoa(s.Count),
		deleter.AnnotationFirstSeen: s.FirstSeen.Format(time.RFC3339),
		deleter.AnnotationLastSeen:  s.LastSeen.Format(time.RFC3339),
		deleter.AnnotationReason:    string(s.Reason),
	}
	c.pods[p.Name] = q
	return nil
}

func (c *cluster) Sighting(p decision.Pod) deleter.Sighting {
	c.mu.Lock()
	defer c.mu.Unlock()
	return deleter.ReadSighting(c.pods[p.Name].Annotations)
}

func (*cluster) Forget(func(string) bool) {}

func (c *cluster) Unmark(_ context.Context, p decision.Pod) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	q := c.pods[p.Name]
	q.Annotations = nil
	c.pods[p.Name] = q
	return nil
}

// pod is a running pod of try 1 of the task instance.
func pod(name, task string, mapIndex int, created time.Time) decision.Pod {
	try := 1
	return decision.Pod{
		Namespace: "airflow", Name: name, UID: "uid-" + name, Phase: "Running", Created: created,
		Labels: labels.ForTaskInstance(dag, task, run, mapIndex, &try),
	}
}

func ti(task string, mapIndex int, state string) airflow.TaskInstance {
	t := airflow.TaskInstance{TIKey: airflow.TIKey{DagID: dag, RunID: run, TaskID: task, MapIndex: mapIndex}, TryNumber: 1, State: state}
	if airflow.IsFinished(state) {
		end := now.Add(-time.Hour)
		t.EndDate = &end
	}
	return t
}

func seed() (*airflowtest.Fake, *cluster) {
	af := &airflowtest.Fake{TIs: []airflow.TaskInstance{
		ti("zombie_kpo_task", -1, "success"),
		ti("healthy_kpo_task", -1, "running"),
		ti("mapped_kpo_task", 0, "success"),
		ti("mapped_kpo_task", 1, "running"),
	}}
	old := now.Add(-2 * time.Hour)
	c := &cluster{pods: map[string]decision.Pod{}}
	for _, p := range []decision.Pod{
		pod("zombie", "zombie_kpo_task", -1, old),
		pod("healthy", "healthy_kpo_task", -1, old),
		pod("mapped-0", "mapped_kpo_task", 0, old.Add(time.Minute)),
		pod("mapped-1", "mapped_kpo_task", 1, old),
	} {
		c.pods[p.Name] = p
	}
	return af, c
}

func newReaper(af *airflowtest.Fake, c *cluster, confirmations int, d Writer) *Reaper {
	if d == nil {
		d = c
	}
	return &Reaper{
		Pods: c, Resolver: &resolve.Resolver{Client: af}, Deleter: d,
		Policy: decision.Policy{MinPodAge: 5 * time.Minute, TerminalGracePeriod: 2 * time.Minute, OrphanMinAge: time.Hour},
		Plan:   PlanPolicy{Confirmations: confirmations, MaxDeletes: 20},
		Log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:    func() time.Time { return now },
	}
}

func TestSeedCycleDeletesExactlyTheZombies(t *testing.T) {
	af, c := seed()
	rep, err := newReaper(af, c, 1, nil).Cycle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(c.deleted) != 2 || c.deleted[0] != "zombie" || c.deleted[1] != "mapped-0" {
		t.Fatalf("deleted %v, want [zombie mapped-0] oldest first", c.deleted)
	}
	if rep.Deleted != 2 || rep.Count()[decision.Keep] != 2 {
		t.Fatalf("report %+v", rep.Count())
	}
	calls := af.Calls()
	gets, runGets := calls["GetTaskInstance"], calls["GetDagRun"]
	if gets != 4+2 {
		t.Fatalf("each pod's TI must be fetched once, and each deleted pod's exactly once more: got %d fetches", gets)
	}
	// The run's pods share one narrowing listing (which this fake answers
	// empty, so every fetch stays exact).
	runListings := calls["ListTaskInstances"]
	if other := af.Total() - gets - runGets - runListings; other != 0 || runGets > 4 || runListings != 1 {
		t.Fatalf("%d other listings, %d run GETs and %d run listings besides the exact fetches: label-safe ids and generated run ids need no listing, a run one", other, runGets, runListings)
	}
}

func TestConfirmationsSurviveAcrossRuns(t *testing.T) {
	af, c := seed()
	if _, err := newReaper(af, c, 2, nil).Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(c.deleted) != 0 {
		t.Fatalf("first evaluation deleted %v", c.deleted)
	}
	if got := deleter.ReadSighting(c.pods["zombie"].Annotations).Count; got != 1 {
		t.Fatalf("zombie not marked: %d", got)
	}
	// A fresh Reaper, as a CronJob's next --once run would be.
	if _, err := newReaper(af, c, 2, nil).Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(c.deleted) != 2 {
		t.Fatalf("second evaluation deleted %v", c.deleted)
	}
}

func TestMarkClearedWhenNoLongerAZombie(t *testing.T) {
	af, c := seed()
	if _, err := newReaper(af, c, 3, nil).Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	af.Set("zombie_kpo_task", -1, "running") // cleared and rerun on the same pod
	if _, err := newReaper(af, c, 3, nil).Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := deleter.ReadSighting(c.pods["zombie"].Annotations); s.Count != 0 {
		t.Fatalf("count must restart when a pod stops looking like a zombie: %+v", s)
	}
}

func TestFailsClosed(t *testing.T) {
	cases := map[string]func(*airflowtest.Fake, *cluster){
		"airflow unreachable":  func(af *airflowtest.Fake, _ *cluster) { af.GetErr = errors.New("connection refused") },
		"every lookup failing": func(af *airflowtest.Fake, _ *cluster) { af.GetErr = scopedErr{} },
		"kubernetes error":     func(_ *airflowtest.Fake, c *cluster) { c.fail = errors.New("connection refused") },
	}
	for name, breakIt := range cases {
		t.Run(name, func(t *testing.T) {
			af, c := seed()
			breakIt(af, c)
			_, err := newReaper(af, c, 1, nil).Cycle(context.Background())
			if !errors.Is(err, ErrCycleFailed) {
				t.Fatalf("got %v", err)
			}
			if c.writes != 0 {
				t.Fatalf("%d writes in a failed cycle", c.writes)
			}
		})
	}
}

func TestRecheckErrorStopsDeletes(t *testing.T) {
	af, c := seed()
	af.GetErr = errors.New("503")
	_, err := newReaper(af, c, 1, nil).Cycle(context.Background())
	if !errors.Is(err, ErrCycleFailed) || len(c.deleted) != 0 {
		t.Fatalf("err %v, deleted %v", err, c.deleted)
	}
}

func TestRecheckSeesAChangedTaskInstance(t *testing.T) {
	af, c := seed()
	// Between the listing and the delete, both finished TIs are cleared and
	// rerun: the re-check must see it and keep the pods.
	af.OnGet = func() {
		if af.Calls()["GetTaskInstance"] >= 4 { // the evaluation's own fetches are done
			af.Set("zombie_kpo_task", -1, "")
			af.Set("mapped_kpo_task", 0, "queued")
		}
	}
	rep, err := newReaper(af, c, 1, nil).Cycle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(c.deleted) != 0 {
		t.Fatalf("deleted %v after the TI changed", c.deleted)
	}
	changed := 0
	for _, p := range rep.Pods {
		if p.Reason == decision.ReasonChangedOnRecheck {
			changed++
		}
	}
	if changed != 2 {
		t.Fatalf("want 2 changed-on-recheck, got %d", changed)
	}
}

func TestMaxDeletesOldestFirst(t *testing.T) {
	af, c := seed()
	r := newReaper(af, c, 1, nil)
	r.Plan.MaxDeletes = 1
	rep, err := r.Cycle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(c.deleted) != 1 || c.deleted[0] != "zombie" {
		t.Fatalf("deleted %v", c.deleted)
	}
	for _, p := range rep.Pods {
		if p.Pod.Name == "mapped-0" && p.Action != ActionCapped {
			t.Fatalf("mapped-0 action %q", p.Action)
		}
	}
}

func TestMayWriteFalseWritesNothing(t *testing.T) {
	for _, confirmations := range []int{1, 2} {
		af, c := seed()
		r := newReaper(af, c, confirmations, nil)
		r.MayWrite = func() bool { return false }
		if _, err := r.Cycle(context.Background()); err != nil {
			t.Fatal(err)
		}
		if len(c.deleted) != 0 || c.writes != 0 {
			t.Fatalf("confirmations %d: deleted %v, %d writes without leadership", confirmations, c.deleted, c.writes)
		}
	}
}

// Leadership lost in the middle of a cycle: the delete that was allowed
// happens, and not one write (delete or mark) follows.
func TestLeadershipLostMidCycleStopsEveryWrite(t *testing.T) {
	af, c := seed()
	c.pods["extra"] = pod("extra", "zombie_kpo_task", -1, now.Add(-3*time.Hour))
	r := newReaper(af, c, 1, nil)
	r.MayWrite = func() bool { return len(c.deleted) == 0 }
	rep, err := r.Cycle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c.writes != 1 || len(c.deleted) != 1 {
		t.Fatalf("%d writes, deleted %v: want exactly the one allowed", c.writes, c.deleted)
	}
	stopped := 0
	for _, p := range rep.Pods {
		if p.Action == ActionNotLeader {
			stopped++
		}
	}
	if stopped != 2 {
		t.Fatalf("want the 2 other zombies stopped, got %d", stopped)
	}
}

// Sightings count only when spaced: two evaluations a moment apart are one
// sighting, one a spacing later is the second.
func TestConfirmationsAreSpacedInTime(t *testing.T) {
	af, c := seed()
	at := now
	mk := func() *Reaper {
		r := newReaper(af, c, 2, nil)
		r.Plan.Spacing = time.Minute
		r.Now = func() time.Time { return at }
		return r
	}
	for i := 0; i < 3; i++ {
		at = now.Add(time.Duration(i) * 20 * time.Second)
		if _, err := mk().Cycle(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.deleted) != 0 {
		t.Fatalf("deleted %v after sightings 40s apart in all", c.deleted)
	}
	if s := deleter.ReadSighting(c.pods["zombie"].Annotations); s.Count != 1 || !s.LastSeen.Equal(now) {
		t.Fatalf("sighting %+v, want one counted at %v", s, now)
	}
	at = now.Add(time.Minute)
	if _, err := mk().Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(c.deleted) != 2 {
		t.Fatalf("deleted %v after a spaced second sighting", c.deleted)
	}
}

// A dry-run daemon counts confirmations in memory and reports what a real
// run would delete; a --once dry run reports the confirmation it is at.
func TestDryRunTellsWhatARealRunWouldDelete(t *testing.T) {
	af, c := seed()
	d := &deleter.DryRunDeleter{}
	r := newReaper(af, c, 2, d)
	r.DryRun = true
	rep, err := r.Cycle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rep.Pods {
		if p.Verdict == decision.Reap && (p.Action != ActionWaiting || p.Seen != 1 || p.Needed != 2) {
			t.Fatalf("first dry-run cycle: %s action %s %d/%d", p.Pod.Name, p.Action, p.Seen, p.Needed)
		}
	}
	rep, err = r.Cycle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.WouldDelete() != 2 {
		t.Fatalf("second dry-run cycle would delete %d, want 2", rep.WouldDelete())
	}
	if c.writes != 0 {
		t.Fatalf("dry run wrote %d times", c.writes)
	}
}

// One pod whose lookup fails is skipped; the others are still judged and
// reaped.
func TestOneFailingLookupSkipsOnlyItsPod(t *testing.T) {
	af, c := seed()
	af.GetErr, af.GetErrTask = scopedErr{}, "healthy_kpo_task"
	rep, err := newReaper(af, c, 1, nil).Cycle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(c.deleted) != 2 {
		t.Fatalf("deleted %v, want the two zombies", c.deleted)
	}
	for _, p := range rep.Pods {
		if p.Pod.Name == "healthy" && p.Reason != decision.ReasonLookupFailed {
			t.Fatalf("healthy: %s/%s", p.Verdict, p.Reason)
		}
	}
}

// scopedErr is Airflow's own 5xx for one request.
type scopedErr struct{}

func (scopedErr) Error() string       { return "500 Internal Server Error" }
func (scopedErr) RequestScoped() bool { return true }

// A re-check that fails after an earlier delete of the same cycle: the
// error says what was deleted, and is not "nothing deleted".
func TestFailureAfterADeleteNamesIt(t *testing.T) {
	af, c := seed()
	af.GetErr, af.GetErrFrom = errors.New("connection refused"), 4+2
	rep, err := newReaper(af, c, 1, nil).Cycle(context.Background())
	if !errors.Is(err, ErrFailedAfterDeletes) || errors.Is(err, ErrCycleFailed) && !strings.Contains(err.Error(), "airflow/zombie") {
		t.Fatalf("got %v", err)
	}
	if !strings.Contains(err.Error(), "airflow/zombie") || rep.Deleted != 1 || len(c.deleted) != 1 {
		t.Fatalf("err %v, report deleted %d, cluster deleted %v", err, rep.Deleted, c.deleted)
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	af, c := seed()
	rep, err := newReaper(af, c, 1, &deleter.DryRunDeleter{}).Cycle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c.writes != 0 || rep.Count()[decision.Reap] != 2 {
		t.Fatalf("writes %d, counts %v", c.writes, rep.Count())
	}
}

func TestOrphanAfterRunDeleted(t *testing.T) {
	af, c := seed()
	af.TIs = []airflow.TaskInstance{ti("healthy_kpo_task", -1, "running")}
	// zombie, mapped-0 and mapped-1 now belong to no TI (run still exists
	// because healthy_kpo_task is in it): definitive "TI absent".
	if _, err := newReaper(af, c, 1, nil).Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(c.deleted) != 0 {
		t.Fatalf("deleted %v without reaper.reapOrphans", c.deleted)
	}
	r := newReaper(af, c, 1, nil)
	r.Policy.ReapOrphans = true
	if _, err := r.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(c.deleted) != 3 {
		t.Fatalf("deleted %v", c.deleted)
	}
}

// BenchmarkCycle1000Pods: one evaluation of 1,000 KPO pods (half zombies,
// hashed run ids) against an in-memory Airflow, dry run.
func BenchmarkCycle1000Pods(b *testing.B) {
	af := &airflowtest.Fake{}
	c := &cluster{pods: map[string]decision.Pod{}}
	old := now.Add(-2 * time.Hour)
	for i := 0; i < 1000; i++ {
		task := "task_" + strconv.Itoa(i)
		state := "running"
		if i%2 == 0 {
			state = "success"
		}
		af.TIs = append(af.TIs, ti(task, -1, state))
		p := pod("pod-"+strconv.Itoa(i), task, -1, old)
		c.pods[p.Name] = p
	}
	r := newReaper(af, c, 1, &deleter.DryRunDeleter{})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.Resolver = &resolve.Resolver{Client: af}
		rep, err := r.Cycle(context.Background())
		if err != nil || rep.Count()[decision.Reap] != 500 {
			b.Fatalf("%v %v", err, rep.Count())
		}
	}
}

// seedStaleTry is the seed with healthy_kpo_task running its second try and
// its try-1 pod "healthy" marked already_checked: a stale-try pod unless
// the current try's pod_name XCom names it.
func seedStaleTry() (*airflowtest.Fake, *cluster, airflow.TaskInstance) {
	af, c := seed()
	retried := ti("healthy_kpo_task", -1, "running")
	retried.TryNumber = 2
	af.TIs[1] = retried
	old := c.pods["healthy"]
	old.Labels[labels.AlreadyChecked] = "True"
	c.pods["healthy"] = old
	return af, c, retried
}

// Airflow before 2.7 cannot read one map index's XCom: a stale-try pod whose
// current pod is unknowable is kept, and the other deletes of the cycle go
// on instead of failing closed in every cycle.
func TestStaleTryKeptWhenPodNameUnknowable(t *testing.T) {
	af, c, _ := seedStaleTry()
	af.XComErr = fmt.Errorf("pod_name XCom: 400 (%w)", airflow.ErrUnsupported)
	rep, err := newReaper(af, c, 1, nil).Cycle(context.Background())
	if err != nil {
		t.Fatalf("the cycle must go on: %v", err)
	}
	for _, p := range rep.Pods {
		if p.Pod.Name == "healthy" && (p.Verdict != decision.Skip || p.Reason != decision.ReasonPodNameUnknown) {
			t.Fatalf("healthy: %s/%s action %s", p.Verdict, p.Reason, p.Action)
		}
	}
	if _, ok := c.pods["healthy"]; !ok {
		t.Fatal("deleted a stale-try pod whose current pod could not be known")
	}
	if len(c.deleted) == 0 {
		t.Fatal("the other zombies were not reaped")
	}
	// Any other XCom error still fails the cycle closed.
	af.XComErr = errors.New("connection reset")
	if _, err := newReaper(af, c, 1, nil).Cycle(context.Background()); !errors.Is(err, ErrCycleFailed) {
		t.Fatalf("got %v, want ErrCycleFailed", err)
	}
	if _, ok := c.pods["healthy"]; !ok {
		t.Fatal("deleted on an XCom error")
	}
}

// A stale-try pod that the current try's XCom says it uses (Airflow 3.3's
// durable reconnect ignores already_checked) is kept at the re-check.
func TestStaleTryVetoedByXCom(t *testing.T) {
	af, c, retried := seedStaleTry()
	af.XComs = map[airflow.TIKey]any{retried.TIKey: "healthy"}
	rep, err := newReaper(af, c, 1, nil).Cycle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rep.Pods {
		if p.Pod.Name == "healthy" && (p.Action != ActionChanged || p.Reason != decision.ReasonChangedOnRecheck) {
			t.Fatalf("healthy: %s/%s action %s", p.Verdict, p.Reason, p.Action)
		}
	}
	for _, d := range c.deleted {
		if d == "healthy" {
			t.Fatal("deleted the pod the current try uses")
		}
	}
	// Without the XCom it is a stale try and goes.
	af.XComs = nil
	if _, err := newReaper(af, c, 1, nil).Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.pods["healthy"]; ok {
		t.Fatal("stale-try pod not reaped")
	}
}
