package resolve

import (
	"context"
	"errors"
	"testing"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
	"github.com/kpo-reaper/kpo-reaper/internal/decision"
	"github.com/kpo-reaper/kpo-reaper/internal/labels"
)

// stubAirflow answers from fixed data and counts calls per method.
type stubAirflow struct {
	airflow.Client
	dags    []string
	runs    map[string][]string
	tis     map[[2]string][]airflow.TaskInstance
	err     error
	calls   map[string]int
	missing map[string]bool // DAGs that answer 404
}

func (s *stubAirflow) count(m string) {
	if s.calls == nil {
		s.calls = map[string]int{}
	}
	s.calls[m]++
}

func (s *stubAirflow) ListDagIDs(context.Context) ([]string, error) {
	s.count("dags")
	return s.dags, s.err
}

func (s *stubAirflow) ListRunIDs(_ context.Context, dag string) ([]string, error) {
	s.count("runs")
	if s.missing[dag] {
		return nil, airflow.ErrNotFound
	}
	return s.runs[dag], s.err
}

func (s *stubAirflow) ListRunTaskInstances(_ context.Context, dag, run string) ([]airflow.TaskInstance, error) {
	s.count("tis")
	tis, ok := s.tis[[2]string{dag, run}]
	if !ok {
		return nil, airflow.ErrNotFound
	}
	return tis, s.err
}

func (s *stubAirflow) GetTaskInstance(_ context.Context, k airflow.TIKey) (airflow.TaskInstance, error) {
	s.count("get")
	for _, ti := range s.tis[[2]string{k.DagID, k.RunID}] {
		if ti.TIKey == k {
			return ti, nil
		}
	}
	return airflow.TaskInstance{}, airflow.ErrNotFound
}

const run = "scheduled__2026-11-26T00:00:00+00:00"

func identity(dag, run, task string, mapIndex int) labels.Identity {
	return labels.Identity{Key: labels.KeyOf(dag, run, task, mapIndex), TryNumber: 1}
}

func stub() *stubAirflow {
	return &stubAirflow{
		dags: []string{"etl", "dag*", "dag?"},
		runs: map[string][]string{"etl": {run, "manual__x"}},
		tis: map[[2]string][]airflow.TaskInstance{
			{"etl", run}: {
				{TIKey: airflow.TIKey{DagID: "etl", RunID: run, TaskID: "load", MapIndex: -1}, State: "success"},
				{TIKey: airflow.TIKey{DagID: "etl", RunID: run, TaskID: "map", MapIndex: 0}, State: "failed"},
			},
		},
	}
}

func TestResolve(t *testing.T) {
	cases := []struct {
		name   string
		id     labels.Identity
		status decision.LookupStatus
	}{
		{"found unmapped, hashed run id", identity("etl", run, "load", -1), decision.Found},
		{"found mapped", identity("etl", run, "map", 0), decision.Found},
		{"map index absent from the run", identity("etl", run, "map", 1), decision.Gone},
		{"unmapped pod is not map index 0", identity("etl", run, "map", -1), decision.Gone},
		{"task absent from the run", identity("etl", run, "other", -1), decision.Gone},
		{"run absent from the DAG", identity("etl", "manual__deleted", "load", -1), decision.Gone},
		{"DAG not visible", identity("secret_dag", run, "load", -1), decision.Unresolved},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &Resolver{Client: stub()}
			l, _, err := r.NewSession().Resolve(context.Background(), tc.id)
			if err != nil || l.Status != tc.status {
				t.Fatalf("status %v (%s), err %v; want %v", l.Status, l.Detail, err, tc.status)
			}
		})
	}
}

func TestAmbiguousDagLabel(t *testing.T) {
	// "dag*" and "dag?" sanitize to the same prefix but hash differently, so
	// they are not ambiguous; two DAGs that truly share a label would be.
	s := stub()
	s.dags = append(s.dags, "etl")
	r := &Resolver{Client: s}
	l, _, err := r.NewSession().Resolve(context.Background(), identity("etl", run, "load", -1))
	if err != nil || l.Status != decision.Ambiguous {
		t.Fatalf("got %v %v", l.Status, err)
	}
}

func TestDeletedDagIsGone(t *testing.T) {
	s := stub()
	s.missing = map[string]bool{"etl": true}
	r := &Resolver{Client: s}
	l, _, err := r.NewSession().Resolve(context.Background(), identity("etl", run, "load", -1))
	if err != nil || l.Status != decision.Gone {
		t.Fatalf("got %v %v", l.Status, err)
	}
}

func TestAPIErrorIsNotAnAnswer(t *testing.T) {
	s := stub()
	s.err = errors.New("503")
	r := &Resolver{Client: s}
	if _, _, err := r.NewSession().Resolve(context.Background(), identity("etl", run, "load", -1)); err == nil {
		t.Fatal("an API error must fail the resolution")
	}
}

func TestCachesImmutableMappingsAndPerCycleListings(t *testing.T) {
	s := stub()
	r := &Resolver{Client: s}
	sess := r.NewSession()
	for _, task := range []string{"load", "load", "other"} {
		if _, _, err := sess.Resolve(context.Background(), identity("etl", run, task, -1)); err != nil {
			t.Fatal(err)
		}
	}
	if s.calls["dags"] != 1 || s.calls["runs"] != 1 || s.calls["tis"] != 1 {
		t.Fatalf("one cycle: %v", s.calls)
	}
	// A new cycle reuses the label -> id mappings but lists the run again.
	if _, _, err := r.NewSession().Resolve(context.Background(), identity("etl", run, "load", -1)); err != nil {
		t.Fatal(err)
	}
	if s.calls["dags"] != 1 || s.calls["runs"] != 1 || s.calls["tis"] != 2 {
		t.Fatalf("second cycle: %v", s.calls)
	}
}

func TestRecheck(t *testing.T) {
	s := stub()
	r := &Resolver{Client: s}
	id := identity("etl", run, "load", -1)
	l, ref, err := r.NewSession().Resolve(context.Background(), id)
	if err != nil || l.Status != decision.Found {
		t.Fatal(l, err)
	}
	s.calls = nil
	fresh, err := r.Recheck(context.Background(), id, ref, ref.TI)
	if err != nil || fresh.Status != decision.Found || s.calls["get"] != 1 || len(s.calls) != 1 {
		t.Fatalf("a known TI is fetched exactly once: %v %v %v", fresh.Status, err, s.calls)
	}
	// An orphan whose run reappeared is no longer gone.
	gone := identity("etl", "manual__late", "load", -1)
	l, ref, _ = r.NewSession().Resolve(context.Background(), gone)
	if l.Status != decision.Gone {
		t.Fatal(l)
	}
	s.runs["etl"] = append(s.runs["etl"], "manual__late")
	s.tis[[2]string{"etl", "manual__late"}] = []airflow.TaskInstance{{TIKey: airflow.TIKey{DagID: "etl", RunID: "manual__late", TaskID: "load", MapIndex: -1}, State: "running"}}
	fresh, err = r.Recheck(context.Background(), gone, ref, nil)
	if err != nil || fresh.Status != decision.Found {
		t.Fatalf("re-check must list afresh: %v %v", fresh.Status, err)
	}
}
