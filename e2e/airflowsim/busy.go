package airflowsim

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Busy is continuous churn: an Airflow whose scheduler keeps working while
// a client pages through it. Unlike the one-shot churn faults it never
// switches itself off.
//
// After every task instance listing page served (v1 and v2 GET lists, the
// batch POSTs, cursor pages), PerPage task instances picked at random move
// one state forward: no status -> scheduled -> queued -> running ->
// success (with an end date). A task instance that finishes is replaced by
// a new no-status one of the same DAG, task and map index in a newer
// queued run of that DAG, so the backlog keeps its size; on v1 the new row
// lands at a random place of the unordered listing (hash order), on v2 its
// id sorts after every other, as a UUIDv7 minted now does. After every
// DAG run listing page, RunsPerPage new queued runs appear (round robin
// over the DAGs of the churned task instances); later replacements fill
// them. After every other data read answered 200 (a single task instance,
// DAG run or XCom), PerRead task instances move: a client that looks up
// each pod's task instance alone meets a scheduler as busy as one that
// pages.
//
// Only task instances the scenario declares in one of those four states,
// and the ones the churn itself creates, ever move; Protect excludes
// declared ones (the pods' own task instances of a benchmark, whose
// verdicts must not change). Task instances added later with
// PutTaskInstance never move. The choice is a function of Seed and of the
// order in which pages are served.
type Busy struct {
	PerPage     int
	RunsPerPage int
	PerRead     int
	Seed        uint64
	// Protect, when set, is asked once per declared task instance; true
	// keeps that task instance as it is.
	Protect func(TaskInstanceSpec) bool
}

// WithBusy turns on continuous churn (see Busy). PerPage, RunsPerPage and
// PerRead of 0 leave the respective requests alone.
func WithBusy(b Busy) Option {
	return func(s *Server) {
		cfg := b
		s.busy = &busyState{cfg: cfg, rng: rand.New(rand.NewPCG(b.Seed, b.Seed^0x9e3779b97f4a7c15)),
			open: map[string][2]string{}}
	}
}

// busyStates are the states continuous churn moves forward, in order; nil
// (no status) comes before the first.
var busyStates = []string{"scheduled", "queued", "running", "success"}

type busyState struct {
	cfg Busy
	// mu guards the fields below; it is taken inside s.mu.
	mu   sync.Mutex
	rng  *rand.Rand
	keys []TIKey // the task instances that may move, in a fixed order
	dags []string
	next int // round robin over dags for new runs
	// open is, per DAG, the newest run the churn created: replacements go
	// there until it has the task.
	open   map[string][2]string
	runSeq int
}

// initBusy picks the task instances that may move, once the store is
// built. Callers hold no lock (New).
func (s *Server) initBusy(declared []TaskInstanceSpec) {
	b := s.busy
	if b == nil {
		return
	}
	dags := map[string]bool{}
	for _, t := range declared {
		st, _ := normState(t.State)
		if st != nil && !contains(busyStates[:3], *st) {
			continue
		}
		if b.cfg.Protect != nil && b.cfg.Protect(t) {
			continue
		}
		b.keys = append(b.keys, t.Key())
		dags[t.DagID] = true
	}
	sort.Slice(b.keys, func(i, j int) bool { return b.keys[i].String() < b.keys[j].String() })
	for d := range dags {
		b.dags = append(b.dags, d)
	}
	sort.Strings(b.dags)
}

// busyMoves moves count task instances (PerPage after a task instance
// listing page, PerRead after another read).
func (s *Server) busyMoves(count func(Busy) int, now time.Time) {
	b := s.busy
	if b == nil || count(b.cfg) <= 0 {
		return
	}
	moves := count(b.cfg)
	s.mu.Lock()
	defer s.mu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	for n := 0; n < moves && len(b.keys) > 0; n++ {
		i := b.rng.IntN(len(b.keys))
		ti := s.tis[b.keys[i]]
		if ti == nil || !busyMovable(ti) {
			// Removed or changed by a test meanwhile: forget it.
			b.drop(i)
			n--
			continue
		}
		s.stats.moves.Add(1)
		switch {
		case ti.state == nil:
			ti.state = strp("scheduled")
		case *ti.state == "scheduled":
			ti.state = strp("queued")
		case *ti.state == "queued":
			ti.state = strp("running")
			start := now
			ti.start = &start
		default: // running
			finish(ti, now)
			b.drop(i)
			s.busyReplace(ti, now)
		}
		ti.updated = now
	}
}

func busyMovable(ti *tiRec) bool { return ti.state == nil || contains(busyStates[:3], *ti.state) }

// drop forgets keys[i]; the order of the rest stays a function of the
// seed.
func (b *busyState) drop(i int) {
	last := len(b.keys) - 1
	b.keys[i] = b.keys[last]
	b.keys = b.keys[:last]
}

// busyReplace adds the no-status successor of a finished task instance.
// Callers hold s.mu and b.mu.
func (s *Server) busyReplace(old *tiRec, now time.Time) {
	b := s.busy
	key := old.key
	for {
		run, ok := b.open[key.DagID]
		if ok {
			key.RunID = run[1]
			if s.tis[key] == nil && s.runs[run] != nil {
				break
			}
		}
		s.busyNewRun(key.DagID, now)
	}
	s.tis[key] = &tiRec{key: key, try: 1, maxTries: old.maxTries, operator: cloneStr(old.operator),
		operatorName: cloneStr(old.operatorName), executor: cloneStr(old.executor), pool: old.pool,
		queue: old.queue, updated: now, id: s.newID()}
	b.keys = append(b.keys, key)
	s.stats.newTIs.Add(1)
}

// busyNewRun adds a queued run of the DAG, newer than every run the churn
// made before, and makes it the DAG's open run. Callers hold s.mu and b.mu.
func (s *Server) busyNewRun(dagID string, now time.Time) {
	b := s.busy
	for {
		b.runSeq++
		logical := s.start.Truncate(time.Hour).Add(time.Duration(b.runSeq) * time.Minute)
		k := [2]string{dagID, "scheduled__" + logical.Format("2006-01-02T15:04:05") + "+00:00"}
		if s.runs[k] != nil {
			continue
		}
		s.runSeq++
		s.runs[k] = &runRec{seq: s.runSeq, dagID: dagID, runID: k[1], state: "queued", runType: "scheduled",
			logical: &logical, runAfter: logical, updated: now}
		b.open[dagID] = k
		s.stats.newRuns.Add(1)
		return
	}
}

// busyRunPage adds RunsPerPage runs after a DAG run listing page.
func (s *Server) busyRunPage(now time.Time) {
	b := s.busy
	if b == nil || b.cfg.RunsPerPage <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	dags := b.dags
	if len(dags) == 0 {
		for d := range s.dags {
			dags = append(dags, d)
		}
		sort.Strings(dags)
	}
	if len(dags) == 0 {
		return
	}
	for n := 0; n < b.cfg.RunsPerPage; n++ {
		if s.dags[dags[b.next%len(dags)]] != nil {
			s.busyNewRun(dags[b.next%len(dags)], now)
		}
		b.next++
	}
}

// Stats counts what the simulator served since it started or since the
// last ResetStats: enough to tell what one client run cost.
type Stats struct {
	// Requests is every request received, whatever the answer.
	Requests int64
	// TIPages are task instance listing pages answered 200 (GET lists,
	// batch POSTs, cursor pages); TIRows the rows in them.
	TIPages int64
	TIRows  int64
	// TIGets are single task instance GETs answered 200 (one row each).
	TIGets int64
	// RunPages are DAG run listing pages answered 200, RunRows the runs in
	// them; RunGets single DAG run GETs answered 200.
	RunPages int64
	RunRows  int64
	RunGets  int64
	// XComGets are XCom list and entry requests answered 200.
	XComGets int64
	// Moves, NewTIs and NewRuns are what continuous churn (WithBusy) did.
	Moves   int64
	NewTIs  int64
	NewRuns int64
}

// TIRowsRead is every task instance row the client was sent: listing rows
// plus single GETs.
func (st Stats) TIRowsRead() int64 { return st.TIRows + st.TIGets }

func (st Stats) String() string {
	return fmt.Sprintf("%d requests, %d task instance rows (%d pages, %d gets), %d run rows (%d pages, %d gets), %d xcom gets; churn: %d moves, %d new task instances, %d new runs",
		st.Requests, st.TIRowsRead(), st.TIPages, st.TIGets, st.RunRows, st.RunPages, st.RunGets, st.XComGets,
		st.Moves, st.NewTIs, st.NewRuns)
}

type statCounters struct {
	requests, tiPages, tiRows, tiGets, runPages, runRows, runGets, xcomGets, moves, newTIs, newRuns atomic.Int64
}

func (c *statCounters) all() []*atomic.Int64 {
	return []*atomic.Int64{&c.requests, &c.tiPages, &c.tiRows, &c.tiGets, &c.runPages, &c.runRows, &c.runGets,
		&c.xcomGets, &c.moves, &c.newTIs, &c.newRuns}
}

// Stats returns the counts so far.
func (s *Server) Stats() Stats {
	c := &s.stats
	return Stats{Requests: c.requests.Load(), TIPages: c.tiPages.Load(), TIRows: c.tiRows.Load(),
		TIGets: c.tiGets.Load(), RunPages: c.runPages.Load(), RunRows: c.runRows.Load(), RunGets: c.runGets.Load(),
		XComGets: c.xcomGets.Load(), Moves: c.moves.Load(), NewTIs: c.newTIs.Load(), NewRuns: c.newRuns.Load()}
}

// ResetStats sets every count back to zero.
func (s *Server) ResetStats() {
	for _, c := range s.stats.all() {
		c.Store(0)
	}
}

// answered counts a 200 answer by what it holds and runs continuous churn
// after listing pages. It runs after the handler, without s.mu held, before
// the answer is written: the client's next page sees the change.
func (s *Server) answered(c *call, out any) {
	st := &s.stats
	switch v := out.(type) {
	case v1TICollection:
		st.tiPages.Add(1)
		st.tiRows.Add(int64(len(v.TaskInstances)))
		s.busyMoves(perPage, c.now)
	case v2TICollection:
		st.tiPages.Add(1)
		st.tiRows.Add(int64(len(v.TaskInstances)))
		s.busyMoves(perPage, c.now)
	case v2TICursorCollection:
		st.tiPages.Add(1)
		st.tiRows.Add(int64(len(v.TaskInstances)))
		s.busyMoves(perPage, c.now)
	case v1TI, v2TI:
		st.tiGets.Add(1)
		s.busyMoves(perRead, c.now)
	case map[string]any:
		switch {
		case v["dag_runs"] != nil:
			runs, _ := v["dag_runs"].([]map[string]any)
			st.runPages.Add(1)
			st.runRows.Add(int64(len(runs)))
			s.busyRunPage(c.now)
		case v["dag_run_id"] != nil:
			st.runGets.Add(1)
			s.busyMoves(perRead, c.now)
		case v["xcom_entries"] != nil, v["key"] != nil && v["value"] != nil:
			st.xcomGets.Add(1)
			s.busyMoves(perRead, c.now)
		}
	}
}

func perPage(b Busy) int { return b.PerPage }
func perRead(b Busy) int { return b.PerRead }
