package metrics

import (
	"errors"
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
kpo_reaper_deletions_total{reason="ti-finished",result="deleted"} 1
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
