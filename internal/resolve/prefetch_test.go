package resolve

import (
	"context"
	"errors"
	"testing"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
	"github.com/kpo-reaper/kpo-reaper/internal/airflow/airflowtest"
	"github.com/kpo-reaper/kpo-reaper/internal/airflow/transport"
	"github.com/kpo-reaper/kpo-reaper/internal/decision"
	"github.com/kpo-reaper/kpo-reaper/internal/labels"
)

// listing is the stub Airflow whose run listings show the rows in shown
// (nil: every row of the run).
func listing(shown map[airflow.TIKey]bool) *airflowtest.Fake {
	s := stub()
	s.Listed = func(ti airflow.TaskInstance) bool { return shown == nil || shown[ti.TIKey] }
	return s
}

// A run's pods are answered by one listing; a task instance the listing
// does not show is asked for exactly, and so is a run with one pod.
func TestPrefetchAsksOncePerRun(t *testing.T) {
	hidden := airflow.TIKey{DagID: "etl", RunID: run, TaskID: "map", MapIndex: 0}
	s := listing(map[airflow.TIKey]bool{
		{DagID: "etl", RunID: run, TaskID: "load", MapIndex: -1}:     true,
		{DagID: "etl", RunID: run, TaskID: "_private", MapIndex: -1}: true,
	})
	r := &Resolver{Client: s}
	ids := []labels.Identity{
		identity("etl", run, "load", -1), identity("etl", run, "map", 0), identity("etl", run, "map", 1),
		identity("dag*", run, "load", -1),   // hashed DAG label: exact lookup
		identity("etl", oddRun, "load", -1), // a run with one pod: exact lookup
	}
	sess := r.NewSession()
	if err := sess.Prefetch(context.Background(), ids); err != nil {
		t.Fatal(err)
	}
	if asked := s.Asked(); len(asked) != 1 || len(asked[0]) != 3 {
		t.Fatalf("listings asked %v, want one of the 3 task instances of etl/%s", asked, run)
	}
	want := map[labels.Identity]decision.LookupStatus{ids[0]: decision.Found, ids[1]: decision.Found, ids[2]: decision.Gone,
		ids[3]: decision.Found, ids[4]: decision.Found}
	for _, id := range ids {
		l, ref, err := sess.Resolve(context.Background(), id)
		if l = sess.Reconcile(l, ref); err != nil || l.Status != want[id] {
			t.Errorf("%s: %v (%s), err %v; want %v", id.Key, l.Status, l.Detail, err, want[id])
		}
	}
	// load came from the listing; map[0] (not shown), map[1] (absent), the
	// hashed DAG's and the single run's pods were asked exactly.
	if got := s.Calls()["GetTaskInstance"]; got != 4 {
		t.Errorf("%d exact GETs, want 4 (calls %v)", got, s.Calls())
	}
	if l, _, _ := sess.Resolve(context.Background(), identity("etl", run, "map", 0)); l.TI.TIKey != hidden {
		t.Errorf("the hidden task instance was not asked for exactly: %+v", l)
	}
}

// A listing that fails only for its request leaves its pods to their exact
// lookups; one that shows Airflow cannot be trusted fails the evaluation.
func TestPrefetchFailures(t *testing.T) {
	ids := []labels.Identity{identity("etl", run, "load", -1), identity("etl", run, "map", 0)}
	for _, tc := range []struct {
		name  string
		err   error
		fatal bool
	}{
		{"a 500", &transport.StatusError{StatusCode: 500, ContentType: "application/json"}, false},
		{"a 403", &transport.StatusError{StatusCode: 403, ContentType: "application/json"}, false},
		{"a 404 about the DAG", &airflow.NotFoundError{About: airflow.EntityDAG, What: "etl"}, false},
		{"unreachable", errors.New("dial tcp: connection refused"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := listing(nil)
			s.ListErr = tc.err
			sess := (&Resolver{Client: s}).NewSession()
			err := sess.Prefetch(context.Background(), ids)
			if (err != nil) != tc.fatal {
				t.Fatalf("err %v, want fatal %v", err, tc.fatal)
			}
			if tc.fatal {
				return
			}
			for _, id := range ids {
				if l, _, err := sess.Resolve(context.Background(), id); err != nil || l.Status != decision.Found {
					t.Errorf("%s: %v, err %v", id.Key, l.Status, err)
				}
			}
			if got := s.Calls()["GetTaskInstance"]; got != 2 {
				t.Errorf("%d exact GETs after a failed listing, want 2", got)
			}
		})
	}
}

// The re-check before a delete never trusts a listing: it is one exact GET.
func TestRecheckIgnoresListings(t *testing.T) {
	s := listing(nil)
	r := &Resolver{Client: s}
	if err := r.NewSession().Prefetch(context.Background(), []labels.Identity{identity("etl", run, "load", -1), identity("etl", run, "map", 0)}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Recheck(context.Background(), identity("etl", run, "load", -1)); err != nil {
		t.Fatal(err)
	}
	if got := s.Calls()["GetTaskInstance"]; got != 1 {
		t.Fatalf("calls %v: the re-check must be one exact GET", s.Calls())
	}
}
