// Package metrics defines the reaper's Prometheus metrics. The names are a
// contract (dashboards, the chart's PrometheusRule, docs/operations.md).
package metrics

import (
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/kpo-reaper/kpo-reaper/internal/buildinfo"
	"github.com/kpo-reaper/kpo-reaper/internal/decision"
	"github.com/kpo-reaper/kpo-reaper/internal/reaper"
)

// deletionReasons are the reasons a pod can be deleted for: only a reap
// verdict leads to a delete. deletionResults are the deleter's outcomes the
// deletions counter records (a dry run deletes nothing).
var (
	deletionReasons = []decision.Reason{decision.ReasonTIFinished, decision.ReasonFinishedNoEndDate, decision.ReasonStaleTry, decision.ReasonOrphan}
	deletionResults = []reaper.Action{reaper.ActionDeleted, reaper.ActionGone, reaper.ActionReplaced, reaper.ActionFailed}
)

// Metrics holds every collector, registered on its own registry so tests
// can build as many as they like.
type Metrics struct {
	Registry *prometheus.Registry

	cycles        *prometheus.CounterVec
	cycleDuration prometheus.Histogram
	lastSuccess   prometheus.Gauge
	pods          *prometheus.GaugeVec
	deletions     *prometheus.CounterVec
	apiRequests   *prometheus.CounterVec
	apiLatency    *prometheus.HistogramVec
	awaiting      prometheus.Gauge
	wouldDelete   prometheus.Gauge
	leader        prometheus.Gauge
	buildInfo     *prometheus.GaugeVec
}

func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		cycles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kpo_reaper_cycles_total", Help: "Evaluation cycles by result (success; failure: failed closed, nothing deleted unless the error says it deleted pods first, see kpo_reaper_deletions_total).",
		}, []string{"result"}),
		cycleDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "kpo_reaper_cycle_duration_seconds", Help: "Duration of evaluation cycles.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120},
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kpo_reaper_last_successful_cycle_timestamp_seconds", Help: "Unix time of the last cycle that was evaluated without failing closed.",
		}),
		pods: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kpo_reaper_pods", Help: "Pods seen by the last successful cycle, by verdict and reason.",
		}, []string{"verdict", "reason"}),
		deletions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kpo_reaper_deletions_total", Help: "Force deletes by reason and result (deleted, gone, replaced, failed).",
		}, []string{"reason", "result"}),
		apiRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kpo_reaper_airflow_requests_total", Help: "Requests sent to the Airflow REST API by templated endpoint, method and status code (0: no response).",
		}, []string{"endpoint", "method", "code"}),
		apiLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kpo_reaper_airflow_request_duration_seconds", Help: "Latency of Airflow REST API requests by templated endpoint.",
			Buckets: prometheus.DefBuckets,
		}, []string{"endpoint"}),
		awaiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kpo_reaper_pods_awaiting_confirmation", Help: "Zombie pods found by the last cycle that still need more consecutive confirmations.",
		}),
		wouldDelete: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kpo_reaper_dry_run_would_delete", Help: "Pods the last dry-run cycle would have deleted (confirmed zombies within reaper.maxDeletesPerCycle); 0 when not in dry run.",
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kpo_reaper_leader", Help: "1 while this replica may delete (leader, or leader election off), else 0.",
		}),
		buildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kpo_reaper_build_info", Help: "Always 1; the labels say which build runs.",
		}, []string{"version", "commit", "goversion"}),
	}
	m.Registry.MustRegister(m.cycles, m.cycleDuration, m.lastSuccess, m.pods, m.deletions, m.apiRequests, m.apiLatency,
		m.awaiting, m.wouldDelete, m.leader, m.buildInfo,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.buildInfo.WithLabelValues(buildinfo.Version, buildinfo.Commit, runtime.Version()).Set(1)
	// Pre-create the series alerts divide by, so they exist from the start.
	m.cycles.WithLabelValues("success")
	m.cycles.WithLabelValues("failure")
	// Every deletions series from 0, so increase() and rate() see the first
	// delete and the alerts on result="failed" have a series to evaluate.
	for _, reason := range deletionReasons {
		for _, result := range deletionResults {
			m.deletions.WithLabelValues(string(reason), string(result))
		}
	}
	return m
}

// ObserveRequest is the Airflow transport's observer.
func (m *Metrics) ObserveRequest(endpoint, method string, status int, d time.Duration) {
	m.apiRequests.WithLabelValues(endpoint, method, strconv.Itoa(status)).Inc()
	m.apiLatency.WithLabelValues(endpoint).Observe(d.Seconds())
}

// SetLeader records whether this replica may delete.
func (m *Metrics) SetLeader(leading bool) {
	if leading {
		m.leader.Set(1)
	} else {
		m.leader.Set(0)
	}
}

// ObserveCycle records one cycle's report.
func (m *Metrics) ObserveCycle(rep *reaper.Report, err error, finished time.Time) {
	m.cycleDuration.Observe(rep.Duration.Seconds())
	for _, p := range rep.Pods {
		if slices.Contains(deletionResults, p.Action) {
			m.deletions.WithLabelValues(string(p.Reason), string(p.Action)).Inc()
		}
	}
	if err != nil {
		m.cycles.WithLabelValues("failure").Inc()
	} else {
		m.cycles.WithLabelValues("success").Inc()
		m.lastSuccess.Set(float64(finished.Unix()))
	}
	if len(rep.Pods) == 0 && err != nil {
		return // failed before judging anything: keep the last picture
	}
	m.pods.Reset()
	awaiting := 0
	for _, p := range rep.Pods {
		m.pods.WithLabelValues(string(p.Verdict), string(p.Reason)).Inc()
		if p.Verdict == decision.Reap && p.Action == reaper.ActionWaiting {
			awaiting++
		}
	}
	m.awaiting.Set(float64(awaiting))
	m.wouldDelete.Set(float64(rep.WouldDelete()))
}
