// Package resolve ties a pod's labels to its own task instance through exact
// API lookups, for the pods the active listing did not match. Labels are
// hashed one way, so it lists real ids and normalizes them, never the
// reverse.
package resolve

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
	"github.com/kpo-reaper/kpo-reaper/internal/decision"
	"github.com/kpo-reaper/kpo-reaper/internal/labels"
)

// Resolver caches what never changes: which real DAG id and run id a label
// value stands for. It is safe for concurrent use.
type Resolver struct {
	Client airflow.Client

	mu         sync.Mutex
	dagByLabel map[string]string
	runByLabel map[[2]string]string
}

// Ref is what a resolution learned about where the pod's TI is (or was).
type Ref struct {
	DagID string
	RunID string // "" when the run itself was not found
	TI    *airflow.TIKey
}

// Session holds one cycle's listings, so that pods of the same DAG or run
// cost one listing between them. Listings change, so a session must not
// outlive its cycle.
type Session struct {
	r      *Resolver
	dags   []string
	runs   map[string][]string
	runTIs map[[2]string]map[labels.Key][]airflow.TaskInstance
}

// NewSession starts a cycle's resolution.
func (r *Resolver) NewSession() *Session {
	r.mu.Lock()
	if r.dagByLabel == nil {
		r.dagByLabel = map[string]string{}
		r.runByLabel = map[[2]string]string{}
	}
	r.mu.Unlock()
	return &Session{r: r, runs: map[string][]string{}, runTIs: map[[2]string]map[labels.Key][]airflow.TaskInstance{}}
}

// Resolve finds the pod's own task instance. An error means the API could
// not answer definitively; the cycle must then fail closed.
func (s *Session) Resolve(ctx context.Context, id labels.Identity) (decision.Lookup, Ref, error) {
	dagID, lookup, err := s.dag(ctx, id.DagID)
	if err != nil || dagID == "" {
		return lookup, Ref{}, err
	}
	ref := Ref{DagID: dagID}
	runID, lookup, err := s.run(ctx, dagID, id.RunID)
	if err != nil || runID == "" {
		return lookup, ref, err
	}
	ref.RunID = runID
	lookup, err = s.taskInstance(ctx, dagID, runID, id)
	if lookup.Status == decision.Found {
		k := lookup.TI.TIKey
		ref.TI = &k
	}
	return lookup, ref, err
}

func (s *Session) dag(ctx context.Context, label string) (string, decision.Lookup, error) {
	s.r.mu.Lock()
	dagID, ok := s.r.dagByLabel[label]
	s.r.mu.Unlock()
	if ok {
		return dagID, decision.Lookup{}, nil
	}
	if s.dags == nil {
		dags, err := s.r.Client.ListDagIDs(ctx)
		if err != nil {
			return "", decision.Lookup{}, fmt.Errorf("listing DAGs: %w", err)
		}
		s.dags = dags
	}
	var matches []string
	for _, d := range s.dags {
		if labels.SafeValue(d) == label {
			matches = append(matches, d)
		}
	}
	switch len(matches) {
	case 0:
		return "", decision.Lookup{Status: decision.Unresolved, Detail: fmt.Sprintf("no DAG the API user can read has dag_id label %q (a DAG hidden from this user, or another Airflow's pod)", label)}, nil
	case 1:
		s.r.mu.Lock()
		s.r.dagByLabel[label] = matches[0]
		s.r.mu.Unlock()
		return matches[0], decision.Lookup{}, nil
	default:
		return "", decision.Lookup{Status: decision.Ambiguous, Detail: fmt.Sprintf("DAGs %q all have dag_id label %q", matches, label)}, nil
	}
}

func (s *Session) run(ctx context.Context, dagID, label string) (string, decision.Lookup, error) {
	key := [2]string{dagID, label}
	s.r.mu.Lock()
	runID, ok := s.r.runByLabel[key]
	s.r.mu.Unlock()
	if ok {
		return runID, decision.Lookup{}, nil
	}
	runs, ok := s.runs[dagID]
	if !ok {
		var err error
		runs, err = s.r.Client.ListRunIDs(ctx, dagID)
		if errors.Is(err, airflow.ErrNotFound) {
			return "", decision.Lookup{Status: decision.Gone, Detail: fmt.Sprintf("DAG %s no longer exists", dagID)}, nil
		}
		if err != nil {
			return "", decision.Lookup{}, fmt.Errorf("listing runs of DAG %s: %w", dagID, err)
		}
		s.runs[dagID] = runs
	}
	var matches []string
	for _, r := range runs {
		if labels.SafeValue(r) == label {
			matches = append(matches, r)
		}
	}
	switch len(matches) {
	case 0:
		return "", decision.Lookup{Status: decision.Gone, Detail: fmt.Sprintf("DAG %s has no run with run_id label %q: the run was deleted", dagID, label)}, nil
	case 1:
		s.r.mu.Lock()
		s.r.runByLabel[key] = matches[0]
		s.r.mu.Unlock()
		return matches[0], decision.Lookup{}, nil
	default:
		return "", decision.Lookup{Status: decision.Ambiguous, Detail: fmt.Sprintf("runs %q of DAG %s all have run_id label %q", matches, dagID, label)}, nil
	}
}

func (s *Session) taskInstance(ctx context.Context, dagID, runID string, id labels.Identity) (decision.Lookup, error) {
	key := [2]string{dagID, runID}
	byKey, ok := s.runTIs[key]
	if !ok {
		tis, err := s.r.Client.ListRunTaskInstances(ctx, dagID, runID)
		if errors.Is(err, airflow.ErrNotFound) {
			s.r.mu.Lock()
			delete(s.r.runByLabel, [2]string{dagID, id.RunID})
			s.r.mu.Unlock()
			return decision.Lookup{Status: decision.Gone, Detail: fmt.Sprintf("DAG run %s/%s no longer exists", dagID, runID)}, nil
		}
		if err != nil {
			return decision.Lookup{}, fmt.Errorf("listing task instances of %s/%s: %w", dagID, runID, err)
		}
		// Indexed once per run, so that many pods of one run cost one pass.
		byKey = make(map[labels.Key][]airflow.TaskInstance, len(tis))
		for _, ti := range tis {
			k := labels.Key{TaskID: labels.SafeValue(ti.TaskID), MapIndex: ti.MapIndex}
			byKey[k] = append(byKey[k], ti)
		}
		s.runTIs[key] = byKey
	}
	matches := byKey[labels.Key{TaskID: id.TaskID, MapIndex: id.MapIndex}]
	switch len(matches) {
	case 0:
		return decision.Lookup{Status: decision.Gone, Detail: fmt.Sprintf("run %s/%s has no task instance with task_id label %q and map_index %d", dagID, runID, id.TaskID, id.MapIndex)}, nil
	case 1:
		return decision.Lookup{Status: decision.Found, TI: matches[0]}, nil
	default:
		return decision.Lookup{Status: decision.Ambiguous, Detail: fmt.Sprintf("%d task instances of %s/%s have task_id label %q", len(matches), dagID, runID, id.TaskID)}, nil
	}
}

// Recheck asks again, bypassing every per-cycle listing, right before a
// delete. A TI already known is fetched exactly once more; an orphan's
// absence is confirmed by listing afresh.
func (r *Resolver) Recheck(ctx context.Context, id labels.Identity, ref Ref, knownTI *airflow.TIKey) (decision.Lookup, error) {
	if knownTI != nil {
		ti, err := r.Client.GetTaskInstance(ctx, *knownTI)
		if errors.Is(err, airflow.ErrNotFound) {
			return decision.Lookup{Status: decision.Gone, Detail: "task instance " + knownTI.String() + " no longer exists"}, nil
		}
		if err != nil {
			return decision.Lookup{}, fmt.Errorf("re-fetching task instance %s: %w", knownTI, err)
		}
		return decision.Lookup{Status: decision.Found, TI: ti}, nil
	}
	if ref.DagID == "" {
		return decision.Lookup{Status: decision.Unresolved, Detail: "nothing to re-check"}, nil
	}
	fresh := &Session{r: r, dags: []string{ref.DagID}, runs: map[string][]string{}, runTIs: map[[2]string]map[labels.Key][]airflow.TaskInstance{}}
	r.mu.Lock()
	delete(r.runByLabel, [2]string{ref.DagID, id.RunID})
	r.mu.Unlock()
	l, _, err := fresh.Resolve(ctx, id)
	return l, err
}
