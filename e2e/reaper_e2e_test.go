package e2e_test

import (
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kpo-reaper/kpo-reaper/e2e/airflowsim"
	"github.com/kpo-reaper/kpo-reaper/e2e/fixture"
)

// TestSeed is apache/airflow#58968's seed DAG: one real cycle force-deletes
// exactly the two pods whose task instances finished and keeps the two whose
// task instances run, acting as the shipped ServiceAccount.
func TestSeed(t *testing.T) {
	t.Parallel()
	forEachVersion(t, func(t *testing.T, v airflowVersion) {
		e, s := newSeedEnv(t, v)
		// The API version named, not detected (the other tests use auto).
		cfg := e.config(s.URL, v, func(c *fixture.Config) { c.APIVersion = "v" + strconv.Itoa(v.api) })

		e.runOnce(cfg, 0)

		e.expectGone(fixture.SeedZombies)
		e.expectWrites(fixture.SeedZombies, nil)
		// Exactly two pod DELETEs in the namespace, whoever sent them.
		evs, err := cluster.AuditEvents()
		if err != nil {
			t.Fatal(err)
		}
		var deletes []string
		for _, ev := range evs {
			if ev.Namespace == e.ns && ev.Resource == "pods" && (ev.Verb == "delete" || ev.Verb == "deletecollection") {
				deletes = append(deletes, ev.Name+" by "+ev.User)
			}
		}
		if want := []string{fixture.Mapped0Pod + " by " + e.user, fixture.ZombiePod + " by " + e.user}; !sameSet(deletes, want) {
			t.Errorf("pod deletes in %s: %q, want %q", e.ns, sorted(deletes), want)
		}
		for _, r := range s.Requests() {
			if !strings.HasPrefix(r.Path, s.BasePath()+"/") && r.Path != "/auth/token" {
				t.Errorf("request outside the %s API: %s %s", s.BasePath(), r.Method, r.Path)
			}
		}
	})
}

// TestDryRun: the default configuration (no dryRun key), plan in both
// formats, and --dry-run=true over dryRun: false in the file neither delete
// nor annotate anything; the plan names the zombies and the live pods.
func TestDryRun(t *testing.T) {
	t.Parallel()
	forEachVersion(t, func(t *testing.T, v airflowVersion) {
		e, s := newSeedEnv(t, v)
		defaults := e.config(s.URL, v, nil) // reaper.dryRun absent: the default, true
		wantsDeletes := e.config(s.URL, v, func(c *fixture.Config) { c.DryRun = ptr(false) })

		e.reaper(0, "run", "--once", "--config", defaults)

		table := e.reaper(0, "plan", "--config", defaults).Stdout
		for name, want := range map[string][2]string{
			fixture.ZombiePod: {"reap", "ti-finished"}, fixture.Mapped0Pod: {"reap", "ti-finished"},
			fixture.HealthyPod: {"keep", "ti-active"}, fixture.Mapped1Pod: {"keep", "ti-active"},
		} {
			if !tableHas(table, e.ns+"/"+name, want[0], want[1]) {
				t.Errorf("plan table has no line for %s with %s %s:\n%s", name, want[0], want[1], table)
			}
		}

		plan := e.plan(defaults)
		if len(plan) != 4 {
			t.Errorf("plan lists %d pods, want the 4 seed pods: %v", len(plan), plan)
		}
		for _, name := range fixture.SeedZombies {
			e.expectVerdict(plan, name, "reap", "ti-finished")
		}
		for _, name := range fixture.SeedLive {
			e.expectVerdict(plan, name, "keep", "ti-active")
		}
		if p := plan[fixture.ZombiePod]; p.TIState != "success" || p.DagID != fixture.SeedDag || p.RunID != fixture.SeedRun || p.TaskID != "zombie_kpo_task" {
			t.Errorf("plan: %s names task %s/%s/%s in state %q, want %s/%s/zombie_kpo_task in success",
				fixture.ZombiePod, p.DagID, p.RunID, p.TaskID, p.TIState, fixture.SeedDag, fixture.SeedRun)
		}
		if p := plan[fixture.Mapped1Pod]; p.MapIndex == nil || *p.MapIndex != 1 || p.TIState != "running" {
			t.Errorf("plan: %s has map index %v and state %q, want 1 and running", fixture.Mapped1Pod, p.MapIndex, p.TIState)
		}

		e.reaper(0, "run", "--once", "--dry-run=true", "--config", wantsDeletes)

		e.expectGone(nil)
		e.expectNoWrites(false) // "sends no request at all": not even an Event

		// The same setup, for real: the dry runs above had something to delete.
		e.runOnce(defaults, 0)
		e.expectGone(fixture.SeedZombies)
		e.expectWrites(fixture.SeedZombies, nil)
	})
}

// tableHas reports whether a plan table has a line for pod with the verdict
// and reason columns.
// reaperLookupConcurrency is reaper.DefaultLookupConcurrency.
const reaperLookupConcurrency = 8

// twoQuickConfirmations asks for two confirmations a nanosecond apart, so
// that two runs count twice without a wait.
func twoQuickConfirmations(c *fixture.Config) {
	c.Confirmations, c.ConfirmationSpacing = 2, time.Nanosecond
}

func tableHas(table, pod, verdict, reason string) bool {
	for _, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && f[0] == pod && f[4] == verdict && f[5] == reason {
			return true
		}
	}
	return false
}

// TestConfirmations: with confirmations: 2 the first cycle only marks the
// zombies (kpo-reaper.io/zombie-count=1), the second deletes them. The
// spacing is a nanosecond here, so that two runs count twice without a
// wait; TestConfirmationsAreSpaced covers the default spacing.
func TestConfirmations(t *testing.T) {
	t.Parallel()
	forEachVersion(t, func(t *testing.T, v airflowVersion) {
		e, s := newSeedEnv(t, v)
		cfg := e.config(s.URL, v, twoQuickConfirmations)

		e.runOnce(cfg, 0)

		e.expectGone(nil)
		e.expectWrites(nil, fixture.SeedZombies)
		e.expectMarks(map[string]int{fixture.ZombiePod: 1, fixture.Mapped0Pod: 1})

		plan := e.plan(cfg)
		for _, name := range fixture.SeedZombies {
			e.expectVerdict(plan, name, "reap", "ti-finished")
			if p := plan[name]; p.Confirmations != 2 || p.ConfirmationsNeeded != 2 {
				t.Errorf("plan after one marking cycle: %s has confirmations %d/%d, want 2/2", name, p.Confirmations, p.ConfirmationsNeeded)
			}
		}

		e.runOnce(cfg, 0)

		e.expectGone(fixture.SeedZombies)
		e.expectWrites(fixture.SeedZombies, fixture.SeedZombies)
		e.expectMarks(map[string]int{})
	})
}

// TestConfirmationsReset: a marked pod whose task instance becomes active
// again (cleared and re-run) loses its marks and is not deleted.
func TestConfirmationsReset(t *testing.T) {
	t.Parallel()
	forEachVersion(t, func(t *testing.T, v airflowVersion) {
		e, s := newSeedEnv(t, v)
		cfg := e.config(s.URL, v, twoQuickConfirmations)

		e.runOnce(cfg, 0)
		e.expectMarks(map[string]int{fixture.ZombiePod: 1, fixture.Mapped0Pod: 1})

		// mapped_kpo_task[0] is cleared and runs again, as its second try.
		key := airflowsim.TIKey{DagID: fixture.SeedDag, RunID: fixture.SeedRun, TaskID: "mapped_kpo_task", MapIndex: 0}
		if err := s.SetTaskState(key, "running", 2, nil); err != nil {
			t.Fatal(err)
		}

		e.runOnce(cfg, 0)

		e.expectGone([]string{fixture.ZombiePod})
		// fixture.Mapped0Pod: marked once, then unmarked.
		e.expectWrites([]string{fixture.ZombiePod}, []string{fixture.ZombiePod, fixture.Mapped0Pod, fixture.Mapped0Pod})
		e.expectMarks(map[string]int{})

		e.runOnce(cfg, 0)
		e.expectGone([]string{fixture.ZombiePod})
		e.expectWrites([]string{fixture.ZombiePod}, []string{fixture.ZombiePod, fixture.Mapped0Pod, fixture.Mapped0Pod})
	})
}

// expectMarks checks the confirmation annotations of every pod still there:
// exactly the pods in want carry them, with that count.
func (e *env) expectMarks(want map[string]int) {
	e.t.Helper()
	for name, p := range e.pods() {
		a := p.Annotations
		n, marked := want[name]
		count, has := a["kpo-reaper.io/zombie-count"]
		if !marked {
			for k := range a {
				if strings.HasPrefix(k, "kpo-reaper.io/") {
					e.t.Errorf("pod %s carries %s=%s, want no mark", name, k, a[k])
				}
			}
			continue
		}
		if !has || count != strconv.Itoa(n) {
			e.t.Errorf("pod %s: kpo-reaper.io/zombie-count=%q (present %v), want %d", name, count, has, n)
		}
		if _, err := time.Parse(time.RFC3339, a["kpo-reaper.io/zombie-first-seen"]); err != nil {
			e.t.Errorf("pod %s: kpo-reaper.io/zombie-first-seen=%q: %v", name, a["kpo-reaper.io/zombie-first-seen"], err)
		}
		if r := a["kpo-reaper.io/zombie-reason"]; r != "ti-finished" {
			e.t.Errorf("pod %s: kpo-reaper.io/zombie-reason=%q, want ti-finished", name, r)
		}
	}
}

// TestRecheck: the task instance is cleared and running again at the exact
// moment the reaper fetches it once more before the delete. That pod is
// kept (changed-on-recheck); the other zombie of the cycle is deleted.
func TestRecheck(t *testing.T) {
	t.Parallel()
	forEachVersion(t, func(t *testing.T, v airflowVersion) {
		e := newEnv(t)
		e.createPods(fixture.SeedPods()...)
		key := airflowsim.TIKey{DagID: fixture.SeedDag, RunID: fixture.SeedRun, TaskID: "zombie_kpo_task", MapIndex: -1}
		var rechecks atomic.Int32
		s := e.startSim(seedScenario(t, v), func(sim *airflowsim.Server) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/taskInstances/zombie_kpo_task") && rechecks.Add(1) == 1 {
					// The evaluation read it from its run's listing; the
					// single GET is the re-check right before the delete.
					if err := sim.SetTaskState(key, "running", 2, nil); err != nil {
						t.Errorf("reviving %s: %v", key, err)
					}
				}
				sim.ServeHTTP(w, r)
			})
		})
		cfg := e.config(s.URL, v, nil)

		res := e.reaper(0, "run", "--once", "--dry-run=false", "--log-format", "json", "--config", cfg)

		if rechecks.Load() < 1 {
			t.Fatal("the reaper never fetched zombie_kpo_task's task instance before deleting its pod")
		}
		e.expectGone([]string{fixture.Mapped0Pod})
		e.expectWrites([]string{fixture.Mapped0Pod}, nil)
		logs := podLogs(t, res.Stderr)
		if l := logs[fixture.ZombiePod]; l["verdict"] != "skip" || l["reason"] != "changed-on-recheck" {
			t.Errorf("log line of %s: %v, want verdict skip, reason changed-on-recheck", fixture.ZombiePod, l)
		}
		if l := logs[fixture.Mapped0Pod]; l["reason"] != "ti-finished" || l["action"] != "deleted" {
			t.Errorf("log line of %s: %v, want reason ti-finished, action deleted", fixture.Mapped0Pod, l)
		}
	})
}

// TestJWTExpiry (Airflow 3): the access token expires between the login and
// the first listing; the reaper logs in once more and completes the cycle.
// The simulator's clock jumps past the token's lifetime at that request, so
// nothing waits for real time.
func TestJWTExpiry(t *testing.T) {
	t.Parallel()
	v := airflowVersions[1]
	e := newEnv(t)
	e.createPods(fixture.SeedPods()...)
	sc := seedScenario(t, v)
	sc.Auth.TokenTTL = airflowsim.Duration(time.Minute)
	var offset atomic.Int64
	var jumped atomic.Bool
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	s := e.startSim(sc, func(sim *airflowsim.Server) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/auth/token" && r.Header.Get("Authorization") != "" && jumped.CompareAndSwap(false, true) {
				offset.Store(int64(time.Hour))
			}
			sim.ServeHTTP(w, r)
		})
	}, airflowsim.WithClock(clock))
	cfg := e.config(s.URL, v, nil)

	e.runOnce(cfg, 0)

	e.expectGone(fixture.SeedZombies)
	e.expectWrites(fixture.SeedZombies, nil)
	logins, expired := 0, 0
	for _, r := range s.Requests() {
		if r.Method == http.MethodPost && r.Path == "/auth/token" && r.Status == http.StatusCreated {
			logins++
		}
		if r.Status == http.StatusUnauthorized {
			expired++
		}
	}
	// Lookups run concurrently, so the requests in flight when the token
	// expires may each meet a 401; they share one re-login.
	if !jumped.Load() || expired < 1 || expired > reaperLookupConcurrency || logins != 2 {
		t.Errorf("clock jumped %v; %d answers 401 and %d logins, want 1-%d 401s and two logins", jumped.Load(), expired, logins, reaperLookupConcurrency)
	}
}
