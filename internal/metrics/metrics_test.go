package metrics

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kpo-reaper/kpo-reaper/internal/decision"
	"github.com/kpo-reaper/kpo-reaper/internal/reaper"
)

func pr(verdict decision.Verdict, reason decision.Reason, action reaper.Action) reaper.PodReport {
	return reaper.PodReport{Decision: decision.Decision{Verdict: verdict, Reason: reason}, Action: action}
}

func TestObserveCycle(t *testing.T) {
	m := New()
	rep := &reaper.Report{Duration: time.Second, Pods: []reaper.PodReport{
		pr(decision.Reap, decision.ReasonTIFinished, reaper.ActionDeleted),
		pr(decision.Reap, decision.ReasonOrphan, reaper.ActionWaiting),
		pr(decision.Keep, decision.ReasonTIActive, ""),
		pr(decision.Keep, decision.ReasonTIActive, ""),
	}}
	at := time.Unix(1800000000, 0)
	m.ObserveCycle(rep, nil, at)
	m.ObserveCycle(&reaper.Report{}, errors.New("airflow down"), at.Add(time.Minute))
	m.ObserveRequest("/api/v2/version", "GET", 200, 10*time.Millisecond)
	m.SetLeader(true)

	expect := `
# HELP kpo_reaper_cycles_total Evaluation cycles by result (success; failure: failed closed, nothing deleted unless the error says it deleted pods first, see kpo_reaper_deletions_total).
# TYPE kpo_reaper_cycles_total counter
kpo_reaper_cycles_total{result="failure"} 1
kpo_reaper_cycles_total{result="success"} 1
# HELP kpo_reaper_deletions_total Force deletes by reason and result (deleted, gone, replaced, failed).
# TYPE kpo_reaper_deletions_total counter
kpo_reaper_deletions_total{reason="finished-no-end-date",result="deleted"} 0
kpo_reaper_deletions_total{reason="finished-no-end-date",result="failed"} 0
kpo_reaper_deletions_total{reason="finished-no-end-date",result="gone"} 0
kpo_reaper_deletions_total{reason="finished-no-end-date",result="replaced"} 0
kpo_reaper_deletions_total{reason="orphan",result="deleted"} 0
kpo_reaper_deletions_total{reason="orphan",result="failed"} 0
kpo_reaper_deletions_total{reason="orphan",result="gone"} 0
kpo_reaper_deletions_total{reason="orphan",result="replaced"} 0
kpo_reaper_deletions_total{reason="stale-try",result="deleted"} 0
kpo_reaper_deletions_total{reason="stale-try",result="failed"} 0
kpo_reaper_deletions_total{reason="stale-try",result="gone"} 0
kpo_reaper_deletions_total{reason="stale-try",result="replaced"} 0
kpo_reaper_deletions_total{reason="ti-finished",result="deleted"} 1
kpo_reaper_deletions_total{reason="ti-finished",result="failed"} 0
kpo_reaper_deletions_total{reason="ti-finished",result="gone"} 0
kpo_reaper_deletions_total{reason="ti-finished",result="replaced"} 0
# HELP kpo_reaper_last_successful_cycle_timestamp_seconds Unix time of the last cycle that was evaluated without failing closed.
# TYPE kpo_reaper_last_successful_cycle_timestamp_seconds gauge
kpo_reaper_last_successful_cycle_timestamp_seconds 1.8e+09
# HELP kpo_reaper_leader 1 while this replica may delete (leader, or leader election off), else 0.
# TYPE kpo_reaper_leader gauge
kpo_reaper_leader 1
# HELP kpo_reaper_pods Pods seen by the last successful cycle, by verdict and reason.
# TYPE kpo_reaper_pods gauge
kpo_reaper_pods{reason="orphan",verdict="reap"} 1
kpo_reaper_pods{reason="ti-active",verdict="keep"} 2
kpo_reaper_pods{reason="ti-finished",verdict="reap"} 1
# HELP kpo_reaper_pods_awaiting_confirmation Zombie pods found by the last cycle that still need more consecutive confirmations.
# TYPE kpo_reaper_pods_awaiting_confirmation gauge
kpo_reaper_pods_awaiting_confirmation 1
# HELP kpo_reaper_airflow_requests_total Requests sent to the Airflow REST API by templated endpoint, method and status code (0: no response).
# TYPE kpo_reaper_airflow_requests_total counter
kpo_reaper_airflow_requests_total{code="200",endpoint="/api/v2/version",method="GET"} 1
`
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(expect),
		"kpo_reaper_cycles_total", "kpo_reaper_deletions_total", "kpo_reaper_last_successful_cycle_timestamp_seconds",
		"kpo_reaper_leader", "kpo_reaper_pods", "kpo_reaper_pods_awaiting_confirmation", "kpo_reaper_airflow_requests_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(m.buildInfo); n != 1 {
		t.Fatalf("build info series: %d", n)
	}
}

// A fresh reaper exports every deletions series a delete can produce, at 0:
// otherwise the first delete of a reason/result creates its series at 1,
// increase() and rate() miss it, and an alert on result="failed" has
// nothing to evaluate until a delete has failed.
func TestDeletionsStartAtZero(t *testing.T) {
	m := New()
	var want strings.Builder
	want.WriteString("# HELP kpo_reaper_deletions_total Force deletes by reason and result (deleted, gone, replaced, failed).\n# TYPE kpo_reaper_deletions_total counter\n")
	for _, reason := range []string{"finished-no-end-date", "orphan", "stale-try", "ti-finished"} {
		for _, result := range []string{"deleted", "failed", "gone", "replaced"} {
			fmt.Fprintf(&want, "kpo_reaper_deletions_total{reason=%q,result=%q} 0\n", reason, result)
		}
	}
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want.String()), "kpo_reaper_deletions_total"); err != nil {
		t.Fatal(err)
	}
	// A cycle that only keeps pods adds no series.
	m.ObserveCycle(&reaper.Report{Pods: []reaper.PodReport{pr(decision.Keep, decision.ReasonTIActive, ""), pr(decision.Reap, decision.ReasonTIFinished, reaper.ActionDryRun)}}, nil, time.Now())
	if n := testutil.CollectAndCount(m.deletions); n != 16 {
		t.Errorf("deletions series after a keep-only cycle: %d, want 16", n)
	}
}

// The reasons the deletions counter starts at zero are every reason the
// decision table gives a reap verdict for (read from its source, so a new
// reap reason cannot miss its series), and the results every outcome of a
// delete the deleter reports.
func TestDeletionLabelsCoverEveryReapReasonAndResult(t *testing.T) {
	fset := token.NewFileSet()
	sources, err := filepath.Glob("../decision/*.go")
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, name := range sources {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			for i := 0; i+1 < len(call.Args); i++ {
				v, ok1 := call.Args[i].(*ast.Ident)
				r, ok2 := call.Args[i+1].(*ast.Ident)
				if ok1 && ok2 && v.Name == "Reap" && strings.HasPrefix(r.Name, "Reason") {
					found[r.Name] = true
				}
			}
			return true
		})
	}
	byName := map[string]decision.Reason{"ReasonTIFinished": decision.ReasonTIFinished, "ReasonFinishedNoEndDate": decision.ReasonFinishedNoEndDate, "ReasonStaleTry": decision.ReasonStaleTry, "ReasonOrphan": decision.ReasonOrphan}
	if len(found) == 0 {
		t.Fatal("found no reap verdict in internal/decision: the test's reading of it is out of date")
	}
	for name := range found {
		r, ok := byName[name]
		if !ok || !slices.Contains(deletionReasons, r) {
			t.Errorf("decision gives a reap verdict for %s, which the deletions counter does not start at zero", name)
		}
	}
	if len(found) != len(deletionReasons) {
		t.Errorf("reap reasons in internal/decision %v, deletion reasons %v", found, deletionReasons)
	}
	want := []reaper.Action{reaper.ActionDeleted, reaper.ActionGone, reaper.ActionReplaced, reaper.ActionFailed}
	if fmt.Sprint(deletionResults) != fmt.Sprint(want) {
		t.Errorf("deletion results %v, want %v (every deleter result but dry-run)", deletionResults, want)
	}
}

// Counters end in _total and nothing else does: Prometheus naming.
func TestNamingConventions(t *testing.T) {
	m := New()
	m.ObserveRequest("/x", "GET", 200, time.Millisecond)
	m.ObserveCycle(&reaper.Report{Pods: []reaper.PodReport{pr(decision.Reap, "ti-finished", reaper.ActionDeleted)}}, nil, time.Now())
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		name := f.GetName()
		if !strings.HasPrefix(name, "kpo_reaper_") {
			continue
		}
		isCounter := f.GetType().String() == "COUNTER"
		if isCounter != strings.HasSuffix(name, "_total") {
			t.Errorf("%s: type %s", name, f.GetType())
		}
	}
}
