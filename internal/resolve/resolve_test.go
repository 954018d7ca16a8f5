package resolve

import (
	"context"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
	"github.com/kpo-reaper/kpo-reaper/internal/airflow/airflowtest"
	"github.com/kpo-reaper/kpo-reaper/internal/decision"
	"github.com/kpo-reaper/kpo-reaper/internal/labels"
)

const (
	run    = "scheduled__2026-11-26T00:00:00+00:00" // hashed label, rebuilt
	oddRun = "manual run #7"                        // hashed label, listed
)

func identity(dag, run, task string, mapIndex int) labels.Identity {
	return labels.Identity{Key: labels.KeyOf(dag, run, task, mapIndex), TryNumber: 1}
}

func tiOf(dag, run, task string, mapIndex int, state string) airflow.TaskInstance {
	return airflow.TaskInstance{TIKey: airflow.TIKey{DagID: dag, RunID: run, TaskID: task, MapIndex: mapIndex}, State: state}
}

func stub() *airflowtest.Fake {
	return &airflowtest.Fake{
		DAGs: []string{"etl", "dag*", "dag?"},
		Runs: map[string][]string{"etl": {run, oddRun, "manual__x"}, "dag*": {run}},
		TIs: []airflow.TaskInstance{
			tiOf("etl", run, "load", -1, "success"),
			tiOf("etl", run, "map", 0, "failed"),
			tiOf("etl", run, "_private", -1, "running"),
			tiOf("etl", oddRun, "load", -1, "running"),
			tiOf("dag*", run, "load", -1, "running"),
		},
	}
}

func TestResolve(t *testing.T) {
	cases := []struct {
		name   string
		id     labels.Identity
		status decision.LookupStatus
	}{
		{"found unmapped, rebuilt run id", identity("etl", run, "load", -1), decision.Found},
		{"found mapped", identity("etl", run, "map", 0), decision.Found},
		{"found by a hashed task label", identity("etl", run, "_private", -1), decision.Found},
		{"found by a hashed DAG label", identity("dag*", run, "load", -1), decision.Found},
		{"found by a run label that cannot be rebuilt", identity("etl", oddRun, "load", -1), decision.Found},
		{"map index absent from an existing run", identity("etl", run, "map", 1), decision.Gone},
		{"task absent from an existing run", identity("etl", run, "other", -1), decision.Gone},
		{"run absent, DAG known", identity("etl", "manual__2026-11-27T09:00:00+00:00", "load", -1), decision.Gone},
		{"run absent from a complete listing", identity("etl", "manual run #8", "load", -1), decision.Gone},
		{"DAG not visible", identity("secret*", run, "load", -1), decision.Unresolved},
		{"DAG unknown to GET /dags/{id}: deleted with its runs", identity("ghost_dag", run, "load", -1), decision.Gone},
		{"DAG unknown, by a run label that needs a listing", identity("ghost_dag", oddRun, "load", -1), decision.Gone},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			expectReconciled(t, stub(), nil, tc.id, tc.status)
		})
	}
}

// Label-safe DAG and task ids and generated run ids cost one GET per task
// instance: nothing is listed. A run label is checked once (could the label
// itself be a run id?), then remembered.
func TestExactLabelsCostOneGet(t *testing.T) {
	s := stub()
	r := &Resolver{Client: s}
	for i, want := range []map[string]int{{"GetTaskInstance": 1, "GetDagRun": 1}, {"GetTaskInstance": 2, "GetDagRun": 1}} {
		l, _, err := r.NewSession().Resolve(context.Background(), identity("etl", run, "load", -1))
		if err != nil || l.Status != decision.Found {
			t.Fatal(l, err)
		}
		if calls := s.Calls(); !maps.Equal(calls, want) {
			t.Fatalf("evaluation %d: calls %v, want %v", i+1, calls, want)
		}
	}
}

// A run whose id is literally another run's hashed label: a pod with that
// label could be either run's.
func TestLiteralLabelRunIsAmbiguous(t *testing.T) {
	s := stub()
	lit := labels.SafeValue(run)
	s.Runs["etl"] = append(s.Runs["etl"], lit)
	r := &Resolver{Client: s}
	l, _, err := r.NewSession().Resolve(context.Background(), identity("etl", run, "load", -1))
	if err != nil || l.Status != decision.Ambiguous {
		t.Fatalf("got %v (%s) %v, want Ambiguous", l.Status, l.Detail, err)
	}
}

// Airflow 3 answers a run's listing with a 404 about the DAG when the DAG
// is missing from its bag; that proves nothing about the run.
func TestDagMissingFromTheBagIsNotGone(t *testing.T) {
	s := stub()
	s.NotInBag = map[string]bool{"etl": true}
	// A hashed task label needs the run's listing, which the bag refuses.
	expectReconciled(t, s, nil, identity("etl", run, "_gone", -1), decision.DagUnavailable)
}

// A DAG that GET /dags/{id} still knows, but whose task instance's GET
// answers 404 about the DAG (missing from Airflow 3's DAG bag), is
// unavailable, never gone: its runs may be running.
func TestDagKnownButAnswering404IsNotGone(t *testing.T) {
	s := stub()
	s.NotInBag = map[string]bool{"etl": true}
	expectReconciled(t, &dagless{Fake: s}, nil, identity("etl", run, "load", -1), decision.DagUnavailable)
}

// dagless answers every task instance's GET with a 404 about the DAG, as
// Airflow 3 does for a DAG missing from its DAG bag.
type dagless struct{ *airflowtest.Fake }

func (d *dagless) GetTaskInstance(_ context.Context, k airflow.TIKey) (airflow.TaskInstance, error) {
	return airflow.TaskInstance{}, &airflow.NotFoundError{About: airflow.EntityDAG, What: k.DagID}
}

// The run was listed, then its GET answered 404: two answers that
// contradict each other are not "the run was deleted".
func TestListedRunThen404IsContradictory(t *testing.T) {
	s := stub()
	s.RunGet404 = map[[2]string]bool{{"etl", oddRun}: true}
	s.TIs = slices.DeleteFunc(s.TIs, func(ti airflow.TaskInstance) bool { return ti.RunID == oddRun }) // the TI GET answers 404 too
	expectReconciled(t, s, nil, identity("etl", oddRun, "load", -1), decision.Contradictory)
}

// A doubtful answer about a DAG (a failed lookup) makes every "gone" of the
// same DAG in that evaluation contradictory.
func TestTroubledDagMakesGoneContradictory(t *testing.T) {
	troubled := func(sess *Session) { sess.trouble("etl", "listing timed out") }
	expectReconciled(t, stub(), troubled, identity("etl", "manual__2026-11-27T09:00:00+00:00", "load", -1), decision.Contradictory)
}

// expectReconciled resolves and reconciles id in a new session of a
// resolver over c, after prepare (when not nil) has marked the session.
func expectReconciled(t *testing.T, c airflow.Client, prepare func(*Session), id labels.Identity, want decision.LookupStatus) {
	t.Helper()
	sess := (&Resolver{Client: c}).NewSession()
	if prepare != nil {
		prepare(sess)
	}
	l, ref, err := sess.Resolve(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if l = sess.Reconcile(l, ref); l.Status != want {
		t.Fatalf("got %v (%s), want %v", l.Status, l.Detail, want)
	}
}

func TestAmbiguousDagLabel(t *testing.T) {
	s := stub()
	// Two DAGs that truly share a hashed label.
	s.DAGs = append(s.DAGs, "dag*")
	r := &Resolver{Client: s}
	l, _, err := r.NewSession().Resolve(context.Background(), identity("dag*", run, "load", -1))
	if err != nil || l.Status != decision.Ambiguous {
		t.Fatalf("got %v %v", l.Status, err)
	}
}

func TestAPIErrorIsNotAnAnswer(t *testing.T) {
	s := stub()
	s.Err = errors.New("503")
	r := &Resolver{Client: s}
	if _, _, err := r.NewSession().Resolve(context.Background(), identity("etl", run, "load", -1)); err == nil {
		t.Fatal("an API error must fail the resolution")
	}
}

func TestCachesMappingsAcrossEvaluations(t *testing.T) {
	s := stub()
	r := &Resolver{Client: s}
	sess := r.NewSession()
	for _, id := range []labels.Identity{identity("dag*", run, "load", -1), identity("dag*", run, "load", -1), identity("etl", oddRun, "load", -1)} {
		if _, _, err := sess.Resolve(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
	if calls := s.Calls(); calls["ListDagIDs"] != 1 || calls["ListRunIDs"] != 1 {
		t.Fatalf("one evaluation: %v", calls)
	}
	if _, _, err := r.NewSession().Resolve(context.Background(), identity("etl", oddRun, "load", -1)); err != nil {
		t.Fatal(err)
	}
	if calls := s.Calls(); calls["ListDagIDs"] != 1 || calls["ListRunIDs"] != 1 {
		t.Fatalf("second evaluation lists again: %v", calls)
	}
}

// "No DAG has this label" is believed for NegativeTTL, then asked again;
// the re-check before a delete never believes it.
func TestNegativeAnswersExpire(t *testing.T) {
	s := stub()
	at := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	r := &Resolver{Client: s, Now: func() time.Time { return at }, NegativeTTL: time.Minute}
	id := identity("secret*", run, "load", -1)
	for i := 0; i < 3; i++ {
		if l, _, _ := r.NewSession().Resolve(context.Background(), id); l.Status != decision.Unresolved {
			t.Fatal(l)
		}
	}
	if s.Calls()["ListDagIDs"] != 1 {
		t.Fatalf("negative answer not cached: %v", s.Calls())
	}
	at = at.Add(2 * time.Minute)
	_, _, _ = r.NewSession().Resolve(context.Background(), id) // only the listings it sends count
	if s.Calls()["ListDagIDs"] != 2 {
		t.Fatalf("negative answer not expired: %v", s.Calls())
	}
	_, _ = r.Recheck(context.Background(), id)
	if s.Calls()["ListDagIDs"] != 3 {
		t.Fatalf("re-check believed a cached negative answer: %v", s.Calls())
	}
}

func TestCachesAreBounded(t *testing.T) {
	s := stub()
	dags := []string{"a*", "b*", "c*", "d*"}
	s.DAGs = dags
	r := &Resolver{Client: s, CacheSize: 2}
	for _, d := range dags {
		_, _, _ = r.NewSession().Resolve(context.Background(), identity(d, run, "load", -1))
	}
	if n := r.dags.len(); n != 2 {
		t.Fatalf("DAG cache holds %d entries, want 2", n)
	}
}

func TestRecheck(t *testing.T) {
	s := stub()
	r := &Resolver{Client: s}
	id := identity("etl", run, "load", -1)
	if _, _, err := r.NewSession().Resolve(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	s.ResetCalls()
	fresh, err := r.Recheck(context.Background(), id)
	if calls := s.Calls(); err != nil || fresh.Status != decision.Found || calls["GetTaskInstance"] != 1 || len(calls) != 1 {
		t.Fatalf("a known TI is fetched exactly once: %v %v %v", fresh.Status, err, calls)
	}
	// An orphan whose run reappeared is no longer gone.
	late := "manual__2026-11-27T10:00:00+00:00"
	gone := identity("etl", late, "load", -1)
	if l, _, _ := r.NewSession().Resolve(context.Background(), gone); l.Status != decision.Gone {
		t.Fatal(l)
	}
	s.TIs = append(s.TIs, tiOf("etl", late, "load", -1, "running"))
	fresh, err = r.Recheck(context.Background(), gone)
	if err != nil || fresh.Status != decision.Found {
		t.Fatalf("re-check must ask afresh: %v %v", fresh.Status, err)
	}
}
