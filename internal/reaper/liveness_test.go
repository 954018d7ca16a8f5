package reaper

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
	"github.com/kpo-reaper/kpo-reaper/internal/airflow/airflowtest"
	"github.com/kpo-reaper/kpo-reaper/internal/decision"
	"github.com/kpo-reaper/kpo-reaper/internal/labels"
	"github.com/kpo-reaper/kpo-reaper/internal/resolve"
)

// An XCom pod_name that is no pod name (an object-storage reference, null,
// a number, an object) keeps that stale-try pod with its own reason; the
// cycle goes on and the other zombies are reaped.
func TestUnusablePodNameKeepsOnlyThatPod(t *testing.T) {
	for name, value := range map[string]any{
		"object-storage reference": "xcom_s3://bucket/dag/run/task/5f0c.json",
		"null":                     nil,
		"a number":                 42.0,
		"an object":                map[string]any{"pod_name": "healthy"},
	} {
		t.Run(name, func(t *testing.T) {
			af, c, retried := seedStaleTry()
			af.XComs = map[airflow.TIKey]any{retried.TIKey: value}
			rep, err := newReaper(af, c, 1, nil).Cycle(context.Background())
			if err != nil {
				t.Fatalf("one pod's XCom failed the cycle: %v", err)
			}
			if p := reportOf(rep, "healthy"); p.Verdict != decision.Skip || p.Reason != decision.ReasonPodNameUnusable {
				t.Fatalf("healthy: %s/%s action %s (%s)", p.Verdict, p.Reason, p.Action, p.Detail)
			}
			if _, ok := c.pods["healthy"]; !ok {
				t.Fatal("deleted a stale-try pod whose current pod could not be read")
			}
			if len(c.deleted) != 2 {
				t.Fatalf("deleted %v, want the two other zombies", c.deleted)
			}
		})
	}
}

// The cap counts deletes that happen: older candidates whose delete is
// refused, or that the re-check keeps, hold no slot, and a younger zombie
// is deleted in the same cycle.
func TestCapCountsOnlyDeletesThatHappen(t *testing.T) {
	af, c, retried := seedStaleTry()
	af.XComs = map[airflow.TIKey]any{retried.TIKey: "xcom_s3://bucket/5f0c.json"}
	old := now.Add(-5 * time.Hour)
	for i := range 3 {
		name := fmt.Sprintf("refused-%d", i)
		c.pods[name] = pod(name, "zombie_kpo_task", -1, old.Add(time.Duration(i)*time.Minute))
	}
	c.refused = map[string]bool{"refused-0": true, "refused-1": true, "refused-2": true}
	r := newReaper(af, c, 1, nil)
	r.Plan.MaxDeletes = 1
	rep, err := r.Cycle(context.Background())
	if err == nil || errors.Is(err, ErrCycleFailed) {
		t.Fatalf("want the refused deletes reported as failed writes, got %v", err)
	}
	if len(c.deleted) != 1 || c.deleted[0] != "zombie" {
		t.Fatalf("deleted %v, want the oldest deletable zombie", c.deleted)
	}
	if p := reportOf(rep, "mapped-0"); p.Action != ActionCapped {
		t.Fatalf("mapped-0: action %q, want capped once one delete happened", p.Action)
	}
}

// A finished task instance without end_date is reaped once the pod has been
// seen a zombie for reaper.terminalGracePeriod, by the first recorded
// sighting.
func TestFinishedWithoutEndDateWaitsFromFirstSighting(t *testing.T) {
	af, c := seed()
	skipped := ti("zombie_kpo_task", -1, "skipped")
	skipped.EndDate = nil
	af.TIs[0] = skipped
	at := now
	r := newReaper(af, c, 1, nil)
	r.Now = func() time.Time { return at }
	rep, err := r.Cycle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if p := reportOf(rep, "zombie"); p.Verdict != decision.Reap || p.Reason != decision.ReasonFinishedNoEndDate || p.Action != ActionWaiting {
		t.Fatalf("zombie: %s/%s action %q", p.Verdict, p.Reason, p.Action)
	}
	if _, ok := c.pods["zombie"]; !ok {
		t.Fatal("deleted before reaper.terminalGracePeriod since the first sighting")
	}
	at = now.Add(r.Policy.TerminalGracePeriod)
	if _, err := r.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.pods["zombie"]; ok {
		t.Fatal("not reaped once seen finished for reaper.terminalGracePeriod")
	}
}

// Orphans that are most of a cycle's candidates mean the wrong Airflow:
// the cycle fails closed and names what to check; one orphan among healthy
// pods is still reaped.
func TestOrphanBreaker(t *testing.T) {
	af, c := seed()
	for i := range OrphanBreakerMin {
		name := fmt.Sprintf("orphan-%d", i)
		p := pod(name, "gone_task", -1, now.Add(-3*time.Hour))
		p.Labels = labels.ForTaskInstance(dag, "gone_task", "manual__2026-11-27T01:00:00+00:00", -1, ptr(1))
		c.pods[name] = p
	}
	r := newReaper(af, c, 1, nil)
	r.Policy.ReapOrphans = true
	_, err := r.Cycle(context.Background())
	if !errors.Is(err, ErrCycleFailed) || !strings.Contains(err.Error(), "airflow.url") {
		t.Fatalf("got %v, want the cycle failed closed naming airflow.url", err)
	}
	if c.writes != 0 {
		t.Fatalf("%d writes in a cycle the breaker stopped", c.writes)
	}
	for i := 1; i < OrphanBreakerMin; i++ {
		delete(c.pods, fmt.Sprintf("orphan-%d", i))
	}
	if _, err := r.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.pods["orphan-0"]; ok {
		t.Fatal("a single orphan among healthy pods was not reaped")
	}
}

func ptr[T any](v T) *T { return &v }

func reportOf(rep *Report, name string) PodReport {
	for _, p := range rep.Pods {
		if p.Pod.Name == name {
			return p
		}
	}
	return PodReport{}
}

// neighbour is how one other pod of a cycle behaves.
type neighbour int

const (
	refusedDelete  neighbour = iota // a zombie whose delete a webhook refuses
	unusableXCom                    // a stale try whose current pod_name is no pod name
	unknowableXCom                  // a stale try on an Airflow that cannot read its XCom
	changing                        // a zombie whose re-check finds it running again
	live                            // a running task instance's pod
	plainZombie                     // another zombie, deletable: it competes for the cap
	neighbourKinds
)

// churning is the Airflow of the liveness histories: the Fake, with
// task instances that change between a cycle's lookups and its re-checks,
// and XCom answers per task.
type churning struct {
	*airflowtest.Fake
	mu       sync.Mutex
	gets     int // GETs of a task instance this cycle
	gathered int // how many of them the lookups make
	changing map[string]bool
	xcomErr  map[string]error
}

func (c *churning) cycle(lookups int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gets, c.gathered = 0, lookups
}

func (c *churning) GetTaskInstance(ctx context.Context, k airflow.TIKey) (airflow.TaskInstance, error) {
	c.mu.Lock()
	c.gets++
	rechecking := c.gets > c.gathered
	c.mu.Unlock()
	ti, err := c.Fake.GetTaskInstance(ctx, k)
	if err == nil && rechecking && c.changing[k.TaskID] {
		ti.State, ti.EndDate = "running", nil
	}
	return ti, err
}

func (c *churning) PodNameXCom(ctx context.Context, k airflow.TIKey) (string, error) {
	if err := c.xcomErr[k.TaskID]; err != nil {
		return "", err
	}
	return c.Fake.PodNameXCom(ctx, k)
}

// Liveness: whatever the other pods of its cycles do (refused deletes,
// unusable or unknowable XComs, re-checks that change, live pods, other
// zombies competing for the cap), a proven zombie is deleted within
// confirmations + (other deletable zombies older than it) / maxDeletes
// quiet cycles, and no pod that may be in use is deleted.
func TestEveryProvenZombieIsReapedWithinBoundedCycles(t *testing.T) {
	rng := rand.New(rand.NewSource(20261207))
	for h := 0; h < 300; h++ {
		af := &churning{Fake: &airflowtest.Fake{XComs: map[airflow.TIKey]any{}}, changing: map[string]bool{}, xcomErr: map[string]error{}}
		c := &cluster{pods: map[string]decision.Pod{}, refused: map[string]bool{}}
		mayUse := map[string]bool{}
		confirmations, maxDeletes := 1+rng.Intn(3), 1+rng.Intn(3)
		zombieAge := time.Duration(1+rng.Intn(10)) * time.Hour
		olderDeletable := 0
		add := func(name, task string, st string, try int, created time.Time) decision.Pod {
			ti := ti(task, -1, st)
			ti.TryNumber = try
			af.TIs = append(af.TIs, ti)
			p := pod(name, task, -1, created)
			c.pods[name] = p
			return p
		}
		add("proven", "proven_task", "success", 1, now.Add(-zombieAge))
		for i := range rng.Intn(12) {
			name, task := fmt.Sprintf("n%d", i), fmt.Sprintf("t%d", i)
			created := now.Add(-time.Duration(1+rng.Intn(10)) * time.Hour)
			switch neighbour(rng.Intn(int(neighbourKinds))) {
			case refusedDelete:
				add(name, task, "success", 1, created)
				c.refused[name] = true
			case unusableXCom, unknowableXCom:
				p := add(name, task, "running", 2, created)
				p.Labels[labels.AlreadyChecked] = "True"
				mayUse[name] = true
				key := airflow.TIKey{DagID: dag, RunID: run, TaskID: task, MapIndex: -1}
				if rng.Intn(2) == 0 {
					af.XComs[key] = []any{"xcom_s3://b/k.json", nil, 7.0, map[string]any{}}[rng.Intn(4)]
				} else {
					af.xcomErr[task] = fmt.Errorf("map_index: 400 (%w)", airflow.ErrUnsupported)
				}
			case changing:
				add(name, task, "success", 1, created)
				af.changing[task] = true
				mayUse[name] = true
			case live:
				add(name, task, "running", 1, created)
				mayUse[name] = true
			default:
				add(name, task, "success", 1, created)
				if !created.After(now.Add(-zombieAge)) {
					olderDeletable++
				}
			}
		}
		bound := confirmations + (olderDeletable+maxDeletes-1)/maxDeletes
		r := newReaper(af.Fake, c, confirmations, nil)
		r.Resolver = &resolve.Resolver{Client: af}
		r.Plan.MaxDeletes = maxDeletes
		at := now
		r.Now = func() time.Time { return at }
		reaped := false
		for cycle := 1; cycle <= bound; cycle++ {
			af.cycle(len(c.pods))
			rep, err := r.Cycle(context.Background())
			if errors.Is(err, ErrCycleFailed) || rep == nil {
				t.Fatalf("history %d, cycle %d: %v", h, cycle, err)
			}
			for _, p := range rep.Pods {
				if p.Action == ActionDeleted && mayUse[p.Pod.Name] {
					t.Fatalf("history %d, cycle %d: deleted %s, which may be in use: %s/%s %s", h, cycle, p.Pod.Name, p.Verdict, p.Reason, p.Detail)
				}
			}
			at = at.Add(time.Minute)
			if _, ok := c.pods["proven"]; !ok {
				reaped = true
				break
			}
		}
		if !reaped {
			t.Fatalf("history %d: the proven zombie is not deleted after %d cycles (confirmations %d, maxDeletes %d, %d older deletable zombies)", h, bound, confirmations, maxDeletes, olderDeletable)
		}
	}
}
