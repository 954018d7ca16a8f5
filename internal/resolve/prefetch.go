package resolve

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
	"github.com/kpo-reaper/kpo-reaper/internal/labels"
)

// DefaultConcurrency is how many listings Prefetch has in flight.
const DefaultConcurrency = 8

// listed is what the evaluation's listings said about the task instances
// they were asked about.
type listed struct {
	tis map[airflow.TIKey]airflow.TaskInstance
	// twice are task instances a listing showed twice, differently (a
	// retry between two pages): only an exact lookup answers for them.
	twice map[airflow.TIKey]bool
}

// Prefetch reads, before the pods' lookups, the task instances of every run
// that holds two or more of ids' task instances: one listing per run, or per
// DAG where the API version lists several runs at once (see
// airflow.Client.ListTaskInstances). Resolve then answers those pods from
// the listing without a request of its own. A run known only by a hashed
// label is resolved first, as Resolve would; a run with one task instance
// keeps its exact lookup; task labels that are not ids keep theirs.
//
// A listing only narrows: a task instance it does not show is asked for
// exactly, as without Prefetch. The error is one that fails the evaluation
// closed (Airflow unreachable, authentication refused, an HTML page); one
// that concerns only a listing's request (a 5xx, a 403, a 404) just leaves
// its pods to their exact lookups.
func (s *Session) Prefetch(ctx context.Context, ids []labels.Identity) error {
	s.r.init()
	// Group by the labels first: one run label is one run of its DAG, and
	// only runs with two or more task instances are worth resolving.
	type runLabel struct{ dag, run string }
	type at struct {
		task     string
		mapIndex int
	}
	groups := map[runLabel]map[at]bool{}
	var order []runLabel
	for _, id := range ids {
		if !labels.Exact(id.DagID) || !labels.Exact(id.TaskID) {
			continue
		}
		g := runLabel{id.DagID, id.RunID}
		if groups[g] == nil {
			groups[g] = map[at]bool{}
			order = append(order, g)
		}
		groups[g][at{id.TaskID, id.MapIndex}] = true
	}
	order = slices.DeleteFunc(order, func(g runLabel) bool { return len(groups[g]) < 2 })

	// Resolve the runs, as Resolve would (a hashed label may cost a GET,
	// which the Resolver caches for the lookups that follow).
	runIDs := make([]string, len(order))
	err := s.each(ctx, len(order), func(ctx context.Context, i int) error {
		runID, _, err := s.run(ctx, order[i].dag, order[i].run)
		runIDs[i] = runID
		return err
	})
	if err != nil {
		return err
	}
	byDag := map[string][]airflow.TIKey{}
	var dags []string
	for i, g := range order {
		if runIDs[i] == "" {
			continue
		}
		if byDag[g.dag] == nil {
			dags = append(dags, g.dag)
		}
		for a := range groups[g] {
			byDag[g.dag] = append(byDag[g.dag], airflow.TIKey{DagID: g.dag, RunID: runIDs[i], TaskID: a.task, MapIndex: a.mapIndex})
		}
	}
	return s.each(ctx, len(dags), func(ctx context.Context, i int) error {
		keys := byDag[dags[i]]
		tis, err := s.r.Client.ListTaskInstances(ctx, dags[i], keys)
		s.keep(keys, tis)
		return err
	})
}

// keep remembers the rows of a listing that answer one of keys.
func (s *Session) keep(keys []airflow.TIKey, tis []airflow.TaskInstance) {
	asked := make(map[airflow.TIKey]bool, len(keys))
	for _, k := range keys {
		asked[k] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ti := range tis {
		if !asked[ti.TIKey] {
			continue
		}
		// A row of the run shows the run exists.
		s.runsSeen[[2]string{ti.DagID, ti.RunID}] = true
		if s.listed.twice[ti.TIKey] {
			continue
		}
		if prev, ok := s.listed.tis[ti.TIKey]; ok && !sameRow(prev, ti) {
			delete(s.listed.tis, ti.TIKey)
			s.listed.twice[ti.TIKey] = true
			continue
		}
		s.listed.tis[ti.TIKey] = ti
	}
}

func sameRow(a, b airflow.TaskInstance) bool {
	sameTime := func(x, y *time.Time) bool { return x == nil && y == nil || x != nil && y != nil && x.Equal(*y) }
	return a.TIKey == b.TIKey && a.TryNumber == b.TryNumber && a.State == b.State && a.Operator == b.Operator &&
		sameTime(a.StartDate, b.StartDate) && sameTime(a.EndDate, b.EndDate)
}

// fromListing is the listing's row for k, if one answered it.
func (s *Session) fromListing(k airflow.TIKey) (airflow.TaskInstance, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ti, ok := s.listed.tis[k]
	return ti, ok
}

// each runs f for 0..n-1, a few at a time, and returns the first error that
// fails the evaluation closed; errors that concern one request only are
// dropped (the pods concerned are asked exactly later).
func (s *Session) each(ctx context.Context, n int, f func(ctx context.Context, i int) error) error {
	workers := s.r.Concurrency
	if workers <= 0 {
		workers = DefaultConcurrency
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		once  sync.Once
		fatal error
		wg    sync.WaitGroup
	)
	next := make(chan int)
	for w := 0; w < workers && w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				err := f(ctx, i)
				if err != nil && !airflow.RequestScoped(err) && !airflow.Forbidden(err) && ctx.Err() == nil {
					once.Do(func() { fatal = err; cancel() })
				}
			}
		}()
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if fatal != nil {
		return fatal
	}
	return ctx.Err()
}
