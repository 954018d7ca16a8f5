package airflowsim

import (
	"fmt"
	"sort"
	"strings"
	"testing"
)

// busyScenario has a backlog of n unfinished task instances of DAG
// "backlog" (no status, scheduled, queued, in turn) and, in DAG "pods",
// four running task instances and one finished one that stand for pods:
// the ones WithBusy must leave alone.
func busyScenario(version string, n int) *Scenario {
	var b strings.Builder
	fmt.Fprintf(&b, "airflowVersion: %q\nauth: {username: u, password: p}\npageLimitCap: 100\n", version)
	b.WriteString("dags: [{dagId: backlog}, {dagId: pods}]\n")
	b.WriteString("runs: [{dagId: backlog, runId: 'scheduled__2026-11-27T08:00:00+00:00', state: queued}, {dagId: pods, runId: 'scheduled__2026-11-27T07:00:00+00:00', startDate: '-2h'}]\n")
	b.WriteString("taskInstances:\n")
	states := []string{"null", "scheduled", "queued"}
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  - {dagId: backlog, runId: 'scheduled__2026-11-27T08:00:00+00:00', taskId: t%03d, state: %s, operator: KubernetesPodOperator}\n", i, states[i%3])
	}
	for i := 0; i < 4; i++ {
		fmt.Fprintf(&b, "  - {dagId: pods, runId: 'scheduled__2026-11-27T07:00:00+00:00', taskId: live%d, state: running, operator: KubernetesPodOperator, startDate: '-1h'}\n", i)
	}
	b.WriteString("  - {dagId: pods, runId: 'scheduled__2026-11-27T07:00:00+00:00', taskId: done, state: success, operator: KubernetesPodOperator, startDate: '-1h', endDate: '-30m'}\n")
	sc, err := ParseScenario([]byte(b.String()))
	if err != nil {
		panic(err)
	}
	return sc
}

func protectPods(t TaskInstanceSpec) bool { return t.DagID == "pods" }

// snapshot is every task instance of the store, as specs.
func snapshot(s *Server) map[TIKey]TaskInstanceSpec {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := map[TIKey]TaskInstanceSpec{}
	for k, ti := range s.tis {
		out[k] = ti.spec()
	}
	return out
}

func stateOf(t TaskInstanceSpec) string {
	if t.State == nil {
		return "none"
	}
	return *t.State
}

// TestBusyChurn pages the unfinished task instance listing of Airflow
// 2.10.5 while the scheduler churns 7 task instances per page: states only
// move forward, every finished one is replaced by a no-status one in a new
// run of its DAG (the backlog keeps its size), the protected task
// instances do not change, and offset paging no longer reads the listing
// consistently.
func TestBusyChurn(t *testing.T) {
	const n, perPage, pages = 60, 7, 40
	c := newClient(t, busyScenario("2.10.5", n), WithBusy(Busy{PerPage: perPage, Seed: 1, Protect: protectPods}))
	before := snapshot(c.sim)
	list := "/api/v1/dags/~/dagRuns/~/taskInstances"
	query := "state=none&state=scheduled&state=queued&state=running&limit=10"
	inconsistent := 0
	served := 0
	for scan := 0; served < pages; scan++ {
		keys, totals := c.scan(list, query, 10)
		served += len(totals)
		seen := map[TIKey]int{}
		for _, k := range keys {
			seen[k]++
		}
		for _, v := range seen {
			if v > 1 {
				inconsistent++
			}
		}
		if len(seen) != totals[0] {
			inconsistent++
		}
	}
	after := snapshot(c.sim)
	st := c.sim.Stats()
	if st.Moves != int64(served*perPage) {
		t.Errorf("%d moves after %d pages, want %d per page: %s", st.Moves, served, perPage, st)
	}
	if st.TIPages != int64(served) {
		t.Errorf("stats count %d task instance pages, the client read %d", st.TIPages, served)
	}
	order := map[string]int{"none": 0, "scheduled": 1, "queued": 2, "running": 3, "success": 4}
	finished, unfinished := 0, 0
	for k, a := range after {
		if k.DagID == "pods" {
			if b, ok := before[k]; !ok || stateOf(a) != stateOf(b) || a.EndDate != b.EndDate || *a.TryNumber != *b.TryNumber {
				t.Errorf("protected task instance %s changed or appeared: %s -> %s", k, stateOf(b), stateOf(a))
			}
			continue
		}
		if b, ok := before[k]; ok && order[stateOf(a)] < order[stateOf(b)] {
			t.Errorf("%s moved backwards: %s -> %s", k, stateOf(b), stateOf(a))
		}
		if _, ok := before[k]; !ok {
			if !strings.HasPrefix(k.RunID, "scheduled__") || k.RunID == "scheduled__2026-11-27T08:00:00+00:00" {
				t.Errorf("new task instance %s is not in a new run", k)
			}
			if _, ok := c.sim.runs[[2]string{k.DagID, k.RunID}]; !ok {
				t.Errorf("new task instance %s has no run", k)
			}
		}
		switch stateOf(a) {
		case "success":
			finished++
			if a.EndDate == "" {
				t.Errorf("%s finished without an end date", k)
			}
		default:
			unfinished++
		}
	}
	if finished == 0 || int64(finished) != st.NewTIs {
		t.Errorf("%d task instances finished, %d were added: want some, and as many", finished, st.NewTIs)
	}
	if unfinished != n {
		t.Errorf("%d unfinished backlog task instances, want %d: the backlog must keep its size", unfinished, n)
	}
	if inconsistent == 0 {
		t.Errorf("%d offset scans under churn all read the listing consistently", served)
	}
}

// TestBusyDeterministic: the same seed and the same requests give the same
// store; another seed another one.
func TestBusyDeterministic(t *testing.T) {
	run := func(seed uint64) map[TIKey]string {
		c := newClient(t, busyScenario("3.2.1", 30), WithBusy(Busy{PerPage: 5, Seed: seed, Protect: protectPods}))
		c.login()
		for i := 0; i < 12; i++ {
			c.expect(c.get("/api/v2/dags/~/dagRuns/~/taskInstances", "limit=5"), 200)
		}
		out := map[TIKey]string{}
		for k, v := range snapshot(c.sim) {
			out[k] = stateOf(v)
		}
		return out
	}
	a, b, other := run(7), run(7), run(8)
	if fmt.Sprint(sorted(a)) != fmt.Sprint(sorted(b)) {
		t.Errorf("seed 7 twice gave different stores:\n%v\n%v", sorted(a), sorted(b))
	}
	if fmt.Sprint(sorted(a)) == fmt.Sprint(sorted(other)) {
		t.Errorf("seeds 7 and 8 gave the same store")
	}
}

func sorted(m map[TIKey]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k.String()+"="+v)
	}
	sort.Strings(out)
	return out
}

// TestBusyEveryListing: each kind of task instance listing page churns (v1
// GET and batch POST, v2 GET, batch POST and cursor page); single GETs do
// not unless PerRead is set. DAG run listing pages add runs. Stats count
// rows, pages, gets and every request, and ResetStats clears them.
func TestBusyEveryListing(t *testing.T) {
	v1 := newClient(t, busyScenario("2.10.5", 30), WithBusy(Busy{PerPage: 2, RunsPerPage: 3, Seed: 3, Protect: protectPods}))
	v1.expect(v1.get("/api/v1/dags/~/dagRuns/~/taskInstances", "limit=10"), 200)
	v1.expect(v1.post("/api/v1/dags/~/dagRuns/~/taskInstances/list", jsonBody(map[string]any{"page_limit": 10})), 200)
	v1.expect(v1.get("/api/v1/dags/pods/dagRuns/scheduled__2026-11-27T07:00:00+00:00/taskInstances/live0", ""), 200)
	v1.expect(v1.get("/api/v1/dags/pods/dagRuns/scheduled__2026-11-27T07:00:00+00:00/taskInstances/nope", ""), 404)
	st := v1.sim.Stats()
	want := Stats{Requests: 4, TIPages: 2, TIRows: 20, TIGets: 1, Moves: 4}
	if st.Requests != want.Requests || st.TIPages != want.TIPages || st.TIRows != want.TIRows || st.TIGets != want.TIGets || st.Moves != want.Moves || st.TIRowsRead() != 21 {
		t.Errorf("v1 stats %s, want %s", st, want)
	}
	runs := len(v1.sim.runs)
	v1.expect(v1.get("/api/v1/dags/~/dagRuns", "limit=100"), 200)
	if st := v1.sim.Stats(); st.RunPages != 1 || st.RunRows != int64(runs) || st.NewRuns != 3 || len(v1.sim.runs) != runs+3 {
		t.Errorf("after a run listing page of %d runs: %s, %d runs now; want 3 new ones", runs, st, len(v1.sim.runs))
	}
	v1.sim.ResetStats()
	if st := v1.sim.Stats(); st != (Stats{}) {
		t.Errorf("after ResetStats: %s", st)
	}

	v2 := newClient(t, busyScenario("3.3.0", 30), WithBusy(Busy{PerPage: 3, Seed: 3, Protect: protectPods}))
	v2.login()
	v2.expect(v2.get("/api/v2/dags/~/dagRuns/~/taskInstances", "limit=10"), 200)
	v2.expect(v2.post("/api/v2/dags/~/dagRuns/~/taskInstances/list", jsonBody(map[string]any{"page_limit": 10})), 200)
	v2.expect(v2.get("/api/v2/dags/~/dagRuns/~/taskInstances", "limit=10&order_by=id&cursor="), 200)
	v2.expect(v2.get("/api/v2/dags/pods/dagRuns/scheduled__2026-11-27T07:00:00+00:00/taskInstances/live1", ""), 200)
	if st := v2.sim.Stats(); st.TIPages != 3 || st.TIGets != 1 || st.Moves != 9 || st.Requests != 5 {
		t.Errorf("v2 stats %s, want 3 pages, 1 get, 9 moves, 5 requests (with the login)", st)
	}

	reads := newClient(t, busyScenario("3.2.1", 30), WithBusy(Busy{PerPage: 3, PerRead: 2, Seed: 3, Protect: protectPods}))
	reads.login()
	reads.expect(reads.get("/api/v2/dags/pods/dagRuns/scheduled__2026-11-27T07:00:00+00:00/taskInstances/live1", ""), 200)
	reads.expect(reads.get("/api/v2/dags/pods/dagRuns/scheduled__2026-11-27T07:00:00+00:00", ""), 200)
	reads.expect(reads.get("/api/v2/dags/pods/dagRuns/scheduled__2026-11-27T07:00:00+00:00/taskInstances/nope", ""), 404)
	if st := reads.sim.Stats(); st.TIGets != 1 || st.RunGets != 1 || st.Moves != 4 {
		t.Errorf("PerRead 2 stats %s, want 1 task instance get, 1 run get, 4 moves", st)
	}
}

// TestBusyProtectedOnly: with every declared task instance protected,
// nothing moves, however many pages are served.
func TestBusyProtectedOnly(t *testing.T) {
	c := newClient(t, busyScenario("2.10.5", 10), WithBusy(Busy{PerPage: 5, Seed: 1, Protect: func(TaskInstanceSpec) bool { return true }}))
	states := func() string {
		m := map[TIKey]string{}
		for k, v := range snapshot(c.sim) {
			m[k] = stateOf(v) + " " + string(v.EndDate)
		}
		return fmt.Sprint(sorted(m))
	}
	before := states()
	for i := 0; i < 5; i++ {
		c.expect(c.get("/api/v1/dags/~/dagRuns/~/taskInstances", "limit=3"), 200)
	}
	if after := states(); after != before || c.sim.Stats().Moves != 0 {
		t.Errorf("protected task instances moved: %s", c.sim.Stats())
	}
}
