package resolve

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
	"github.com/kpo-reaper/kpo-reaper/internal/decision"
	"github.com/kpo-reaper/kpo-reaper/internal/labels"
)

// stubAirflow answers from fixed data, with 404s in Airflow's words, and
// counts calls per method.
type stubAirflow struct {
	airflow.Client
	mu    sync.Mutex
	dags  []string
	runs  map[string][]string // runs per DAG, as listed
	tis   map[[2]string][]airflow.TaskInstance
	err   error
	calls map[string]int
	// notInBag: DAGs missing from Airflow 3's DAG bag; a run's listing
	// answers 404 about the DAG, a single GET still works.
	notInBag map[string]bool
	// runGet404: runs whose GET answers 404 although they are listed.
	runGet404 map[[2]string]bool
}

func (s *stubAirflow) count(m string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.calls == nil {
		s.calls = map[string]int{}
	}
	s.calls[m]++
}

func (s *stubAirflow) hasDag(d string) bool {
	for _, x := range s.dags {
		if x == d {
			return true
		}
	}
	return false
}

func (s *stubAirflow) hasRun(d, r string) bool {
	for _, x := range s.runs[d] {
		if x == r {
			return true
		}
	}
	return false
}

func (s *stubAirflow) ListDagIDs(context.Context) ([]string, error) {
	s.count("dags")
	return s.dags, s.err
}

func (s *stubAirflow) GetDag(_ context.Context, d string) error {
	s.count("dag")
	if s.err != nil {
		return s.err
	}
	if !s.hasDag(d) {
		return &airflow.NotFoundError{About: airflow.EntityDAG, What: d}
	}
	return nil
}

func (s *stubAirflow) ListRunIDs(_ context.Context, d string) ([]string, error) {
	s.count("runs")
	if !s.hasDag(d) {
		return nil, &airflow.NotFoundError{About: airflow.EntityDAG, What: d}
	}
	return s.runs[d], s.err
}

func (s *stubAirflow) GetDagRun(_ context.Context, d, r string) error {
	s.count("run")
	if s.err != nil {
		return s.err
	}
	if !s.hasDag(d) {
		return &airflow.NotFoundError{About: airflow.EntityDAG, What: d}
	}
	if !s.hasRun(d, r) || s.runGet404[[2]string{d, r}] {
		return &airflow.NotFoundError{About: airflow.EntityRun, What: d + "/" + r}
	}
	return nil
}

func (s *stubAirflow) ListRunTaskInstances(_ context.Context, d, r string) ([]airflow.TaskInstance, error) {
	s.count("tis")
	if s.notInBag[d] {
		return nil, &airflow.NotFoundError{About: airflow.EntityDAG, What: d}
	}
	if !s.hasRun(d, r) {
		return nil, &airflow.NotFoundError{About: airflow.EntityRun, What: d + "/" + r}
	}
	return s.tis[[2]string{d, r}], s.err
}

func (s *stubAirflow) GetTaskInstance(_ context.Context, k airflow.TIKey) (airflow.TaskInstance, error) {
	s.count("get")
	if s.err != nil {
		return airflow.TaskInstance{}, s.err
	}
	for _, ti := range s.tis[[2]string{k.DagID, k.RunID}] {
		if ti.TIKey == k {
			return ti, nil
		}
	}
	return airflow.TaskInstance{}, &airflow.NotFoundError{About: airflow.EntityTaskInstance, What: k.String()}
}

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

func stub() *stubAirflow {
	return &stubAirflow{
		dags: []string{"etl", "dag*", "dag?"},
		runs: map[string][]string{"etl": {run, oddRun, "manual__x"}, "dag*": {run}},
		tis: map[[2]string][]airflow.TaskInstance{
			{"etl", run}: {
				tiOf("etl", run, "load", -1, "success"),
				tiOf("etl", run, "map", 0, "failed"),
				tiOf("etl", run, "_private", -1, "running"),
			},
			{"etl", oddRun}:  {tiOf("etl", oddRun, "load", -1, "running")},
			{"dag*", run}:    {tiOf("dag*", run, "load", -1, "running")},
			{"etl", "other"}: nil,
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
		{"DAG unknown: its 404 is about the DAG", identity("ghost_dag", run, "load", -1), decision.DagUnavailable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &Resolver{Client: stub()}
			s := r.NewSession()
			l, ref, err := s.Resolve(context.Background(), tc.id)
			l = s.Reconcile(l, ref)
			if err != nil || l.Status != tc.status {
				t.Fatalf("status %v (%s), err %v; want %v", l.Status, l.Detail, err, tc.status)
			}
		})
	}
}

// Label-safe DAG and task ids and generated run ids cost one GET per task
// instance: nothing is listed. A run label is checked once (could the label
// itself be a run id?), then remembered.
func TestExactLabelsCostOneGet(t *testing.T) {
	s := stub()
	r := &Resolver{Client: s}
	for i, want := range []map[string]int{{"get": 1, "run": 1}, {"get": 2, "run": 1}} {
		l, _, err := r.NewSession().Resolve(context.Background(), identity("etl", run, "load", -1))
		if err != nil || l.Status != decision.Found {
			t.Fatal(l, err)
		}
		if len(s.calls) != len(want) || s.calls["get"] != want["get"] || s.calls["run"] != want["run"] {
			t.Fatalf("evaluation %d: calls %v, want %v", i+1, s.calls, want)
		}
	}
}

// A run whose id is literally another run's hashed label: a pod with that
// label could be either run's.
func TestLiteralLabelRunIsAmbiguous(t *testing.T) {
	s := stub()
	lit := labels.SafeValue(run)
	s.runs["etl"] = append(s.runs["etl"], lit)
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
	s.notInBag = map[string]bool{"etl": true}
	r := &Resolver{Client: s}
	sess := r.NewSession()
	// A hashed task label needs the run's listing, which the bag refuses.
	l, ref, err := sess.Resolve(context.Background(), identity("etl", run, "_gone", -1))
	if err != nil {
		t.Fatal(err)
	}
	if l = sess.Reconcile(l, ref); l.Status != decision.DagUnavailable {
		t.Fatalf("got %v (%s), want DagUnavailable", l.Status, l.Detail)
	}
}

// The run was listed, then its GET answered 404: two answers that
// contradict each other are not "the run was deleted".
func TestListedRunThen404IsContradictory(t *testing.T) {
	s := stub()
	s.runGet404 = map[[2]string]bool{{"etl", oddRun}: true}
	s.tis[[2]string{"etl", oddRun}] = nil // the TI GET answers 404 too
	r := &Resolver{Client: s}
	sess := r.NewSession()
	l, ref, err := sess.Resolve(context.Background(), identity("etl", oddRun, "load", -1))
	if err != nil {
		t.Fatal(err)
	}
	if l = sess.Reconcile(l, ref); l.Status != decision.Contradictory {
		t.Fatalf("got %v (%s), want Contradictory", l.Status, l.Detail)
	}
}

// A doubtful answer about a DAG (a failed lookup) makes every "gone" of the
// same DAG in that evaluation contradictory.
func TestTroubledDagMakesGoneContradictory(t *testing.T) {
	s := stub()
	r := &Resolver{Client: s}
	sess := r.NewSession()
	sess.trouble("etl", "listing timed out")
	l, ref, err := sess.Resolve(context.Background(), identity("etl", "manual__2026-11-27T09:00:00+00:00", "load", -1))
	if err != nil {
		t.Fatal(err)
	}
	if l = sess.Reconcile(l, ref); l.Status != decision.Contradictory {
		t.Fatalf("got %v (%s)", l.Status, l.Detail)
	}
}

func TestAmbiguousDagLabel(t *testing.T) {
	s := stub()
	// Two DAGs that truly share a hashed label.
	s.dags = append(s.dags, "dag*")
	r := &Resolver{Client: s}
	l, _, err := r.NewSession().Resolve(context.Background(), identity("dag*", run, "load", -1))
	if err != nil || l.Status != decision.Ambiguous {
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

func TestCachesMappingsAcrossEvaluations(t *testing.T) {
	s := stub()
	r := &Resolver{Client: s}
	sess := r.NewSession()
	for _, id := range []labels.Identity{identity("dag*", run, "load", -1), identity("dag*", run, "load", -1), identity("etl", oddRun, "load", -1)} {
		if _, _, err := sess.Resolve(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
	if s.calls["dags"] != 1 || s.calls["runs"] != 1 {
		t.Fatalf("one evaluation: %v", s.calls)
	}
	if _, _, err := r.NewSession().Resolve(context.Background(), identity("etl", oddRun, "load", -1)); err != nil {
		t.Fatal(err)
	}
	if s.calls["dags"] != 1 || s.calls["runs"] != 1 {
		t.Fatalf("second evaluation lists again: %v", s.calls)
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
	if s.calls["dags"] != 1 {
		t.Fatalf("negative answer not cached: %v", s.calls)
	}
	at = at.Add(2 * time.Minute)
	r.NewSession().Resolve(context.Background(), id)
	if s.calls["dags"] != 2 {
		t.Fatalf("negative answer not expired: %v", s.calls)
	}
	r.Recheck(context.Background(), id)
	if s.calls["dags"] != 3 {
		t.Fatalf("re-check believed a cached negative answer: %v", s.calls)
	}
}

func TestCachesAreBounded(t *testing.T) {
	s := stub()
	var dags []string
	for _, d := range []string{"a*", "b*", "c*", "d*"} {
		dags = append(dags, d)
	}
	s.dags = dags
	r := &Resolver{Client: s, CacheSize: 2}
	for _, d := range dags {
		r.NewSession().Resolve(context.Background(), identity(d, run, "load", -1))
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
	s.calls = nil
	fresh, err := r.Recheck(context.Background(), id)
	if err != nil || fresh.Status != decision.Found || s.calls["get"] != 1 || len(s.calls) != 1 {
		t.Fatalf("a known TI is fetched exactly once: %v %v %v", fresh.Status, err, s.calls)
	}
	// An orphan whose run reappeared is no longer gone.
	late := "manual__2026-11-27T10:00:00+00:00"
	gone := identity("etl", late, "load", -1)
	if l, _, _ := r.NewSession().Resolve(context.Background(), gone); l.Status != decision.Gone {
		t.Fatal(l)
	}
	s.runs["etl"] = append(s.runs["etl"], late)
	s.tis[[2]string{"etl", late}] = []airflow.TaskInstance{tiOf("etl", late, "load", -1, "running")}
	fresh, err = r.Recheck(context.Background(), gone)
	if err != nil || fresh.Status != decision.Found {
		t.Fatalf("re-check must ask afresh: %v %v", fresh.Status, err)
	}
}
