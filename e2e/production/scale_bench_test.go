package production_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kpo-reaper/kpo-reaper/e2e/airflowsim"
	"github.com/kpo-reaper/kpo-reaper/e2e/fixture"
)

// Continuous churn of the busy runs: a few task instances change state
// after every task instance listing page (of 100 rows), one after every
// other read (a single task instance, run or XCom), a run appears after
// every run listing page.
const (
	busyPerPage     = 5
	busyPerRead     = 1
	busyRunsPerPage = 1
)

// scaleResult is one evaluation's cost, for the table.
type scaleResult struct {
	version, mode     string
	rows, requests    int64
	runRows, allRows  int64
	seconds           float64
	exitCode          int
	reap, keep, other int
	// skipped counts the task instances unfinished before and after the
	// evaluation that no listing page served; -1 when nothing was listed.
	skipped int
}

// BenchmarkScalePlan runs one evaluation (`plan -o json`) of large
// installations (runLayouts: 2,000 and 10,000 KPO pods, half of them
// zombies, in runs of 10 or of 1 KPO task, next to 20,000 unfinished task
// instances without pods) against Airflow 2.5.3 (no run or task filter in
// the batch listing), 2.10.5, 3.2.1 and 3.3.0, quiet and busy (continuous
// churn, WithBusy: busyPerPage task instances move one state forward after
// every task instance listing page and busyPerRead after every single
// read, finished ones replaced by new no-status ones). It reports per
// evaluation the task instance rows the reaper read (listing rows plus
// single GETs), rows per pod, every Airflow row read (task instances,
// runs, XComs), requests and requests per pod, wall seconds (the
// simulator's share included), whether the evaluation completed (exit
// code 0) and the pods judged reap, and prints them as a table with the
// goals (<= 2 rows and, for runs of 10, <= 0.25 requests per pod). An
// evaluation that fails closed is a result, not a benchmark failure; a
// live pod judged reap is. Select layouts and versions by name:
//
//	make bench-scale
//	cd e2e && KPO_REAPER_BIN=/path/to/kpo-reaper go test -run '^$' -bench 'BenchmarkScalePlan/pods=2000/' -benchtime 1x -timeout 60m ./production/
func BenchmarkScalePlan(b *testing.B) {
	for _, sh := range runLayouts {
		b.Run(sh.name(), func(b *testing.B) { benchScalePlan(b, sh) })
	}
}

func benchScalePlan(b *testing.B, sh scaleShape) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Minute)
	defer cancel()
	ns := fmt.Sprintf("prod-%02d-bench-scale-plan", nsSeq.Add(1))
	kubeconfig, err := fixture.ApplyShippedRBAC(ctx, cluster, ns)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	createPodsFast(ctx, b, ns, sh.podSpecs())
	b.Logf("created %d pods in %v", sh.pods(), time.Since(start).Round(time.Millisecond))

	var results []scaleResult
	for _, version := range []string{"2.5.3", "2.10.5", "3.2.1", "3.3.0"} {
		for _, busy := range []bool{false, true} {
			mode := "quiet"
			if busy {
				mode = "busy"
			}
			b.Run("airflow="+version+"/"+mode, func(b *testing.B) {
				sc, protect := sh.scenario(version)
				var opts []airflowsim.Option
				if busy {
					opts = append(opts, airflowsim.WithBusy(airflowsim.Busy{PerPage: busyPerPage, PerRead: busyPerRead, RunsPerPage: busyRunsPerPage,
						Seed: 10, Protect: protect}))
				}
				sim := airflowsim.New(sc, opts...)
				watch := &listingWatch{h: sim}
				srv := httptest.NewServer(watch)
				defer func() {
					sim.Close()
					srv.Close()
				}()
				api := 1
				if !strings.HasPrefix(version, "2.") {
					api = 2
				}
				cfg, err := fixture.Config{AirflowURL: srv.URL, AuthType: fixture.AuthFor(api), Kubeconfig: kubeconfig,
					Namespace: ns, MaxRetries: 1, Timeout: 60 * time.Second}.Write(b.TempDir())
				if err != nil {
					b.Fatal(err)
				}
				var sum scaleResult
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					sim.ResetStats()
					watch.reset()
					before := unfinished(sim, sc)
					r := planOnce(ctx, b, cfg, sh)
					st := sim.Stats()
					sum.skipped = -1
					if watch.backlogPages() > 0 {
						sum.skipped = watch.skipped(before, unfinished(sim, sc))
					}
					sum.rows += st.TIRowsRead()
					sum.runRows += st.RunRows
					sum.allRows += st.TIRowsRead() + st.RunRows + st.RunGets + st.XComGets
					sum.requests += st.Requests
					sum.seconds += r.seconds
					sum.exitCode = max(sum.exitCode, r.exitCode)
					sum.reap, sum.keep, sum.other = r.reap, r.keep, r.other
					b.Logf("Airflow %s %s: exit %d, %s, %.1fs", version, mode, r.exitCode, st, r.seconds)
				}
				b.StopTimer()
				n := float64(b.N)
				completed := 0.0
				if sum.exitCode == 0 {
					completed = 1
				}
				b.ReportMetric(float64(sum.rows)/n, "ti-rows/eval")
				b.ReportMetric(float64(sum.rows)/n/float64(sh.pods()), "rows/pod")
				b.ReportMetric(float64(sum.allRows)/n, "airflow-rows/eval")
				b.ReportMetric(float64(sum.requests)/n, "requests/eval")
				b.ReportMetric(float64(sum.requests)/n/float64(sh.pods()), "requests/pod")
				b.ReportMetric(sum.seconds/n, "s/eval")
				b.ReportMetric(completed, "completed")
				b.ReportMetric(float64(sum.reap), "reap-pods")
				b.ReportMetric(0, "ns/op")
				// The function runs again when b.N grows: keep the last.
				if k := len(results); k > 0 && results[k-1].version == version && results[k-1].mode == mode {
					results = results[:k-1]
				}
				results = append(results, scaleResult{version: version, mode: mode, rows: sum.rows / int64(b.N),
					runRows: sum.runRows / int64(b.N), allRows: sum.allRows / int64(b.N), requests: sum.requests / int64(b.N), seconds: sum.seconds / n,
					exitCode: sum.exitCode, reap: sum.reap, keep: sum.keep, other: sum.other, skipped: sum.skipped})
			})
		}
	}
	printScaleTable(sh, results)
}

type planOutcome struct {
	seconds           float64
	exitCode          int
	reap, keep, other int
}

// planOnce runs `plan -o json` once. A non-zero exit (the evaluation failed
// closed) is reported, not fatal; a live pod judged reap is fatal.
func planOnce(ctx context.Context, b *testing.B, cfg string, sh scaleShape) planOutcome {
	b.Helper()
	runCtx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	start := time.Now()
	res, err := fixture.Run(runCtx, reaperBin, "plan", "--config", cfg, "-o", "json")
	out := planOutcome{seconds: time.Since(start).Seconds(), exitCode: res.ExitCode}
	if err != nil {
		b.Fatalf("running %s plan: %v", reaperBin, err)
	}
	if res.ExitCode != 0 {
		b.Logf("plan exit code %d (failed closed): %s", res.ExitCode, lastLines(res.Stderr, 3))
		return out
	}
	var plan struct {
		Pods []struct {
			Name    string `json:"name"`
			Verdict string `json:"verdict"`
			Reason  string `json:"reason"`
			RunID   string `json:"runId"`
		} `json:"pods"`
	}
	if err := json.Unmarshal([]byte(res.Stdout), &plan); err != nil {
		b.Fatalf("plan -o json is not JSON: %v\n%s", err, lastLines(res.Stdout, 5))
	}
	live := map[string]bool{}
	for r := 0; r < sh.runs; r++ {
		live[scaleRun(r)] = !sh.zombieRun(r)
	}
	for _, p := range plan.Pods {
		switch p.Verdict {
		case "reap":
			out.reap++
			if live[p.RunID] {
				b.Errorf("live pod %s judged reap (%s)", p.Name, p.Reason)
			}
		case "keep":
			out.keep++
		default:
			out.other++
		}
	}
	if len(plan.Pods) != sh.pods() {
		b.Errorf("plan judged %d pods, want %d", len(plan.Pods), sh.pods())
	}
	return out
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

func printScaleTable(sh scaleShape, results []scaleResult) {
	w := os.Stdout
	fmt.Fprintf(w, "\nplan of %d KPO pods (%d zombies) next to %d unfinished task instances without pods; reaper %s\n",
		sh.pods(), sh.zombies(), sh.backlog, reaperBin)
	goal := int64(2*sh.pods() + 100)
	fmt.Fprintf(w, "runs of %d KPO tasks; goal: Airflow rows per evaluation <= 2 x pods + one page = %d", sh.tasks, goal)
	if sh.tasks >= 10 {
		fmt.Fprintf(w, ", requests <= 0.25 x pods = %d", sh.pods()/4)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-8s %-6s %10s %9s %9s %8s %9s %11s %5s %9s %10s %6s %6s %8s\n", "airflow", "mode", "ti-rows", "rows/pod", "requests", "req/pod", "run-rows",
		"all-rows", "goal", "seconds", "completed", "reap", "keep", "skipped")
	for _, r := range results {
		done := "yes"
		if r.exitCode != 0 {
			done = fmt.Sprintf("no (%d)", r.exitCode)
		}
		met := "no"
		if r.allRows <= goal && r.exitCode == 0 && (sh.tasks < 10 || r.requests*4 <= int64(sh.pods())) {
			met = "yes"
		}
		skipped := "-"
		if r.skipped >= 0 {
			skipped = fmt.Sprint(r.skipped)
		}
		fmt.Fprintf(w, "%-8s %-6s %10d %9.2f %9d %8.3f %9d %11d %5s %9.1f %10s %6d %6d %8s\n", r.version, r.mode, r.rows,
			float64(r.rows)/float64(sh.pods()), r.requests, float64(r.requests)/float64(sh.pods()), r.runRows, r.allRows, met, r.seconds, done, r.reap, r.keep, skipped)
	}
	fmt.Fprintln(w)
}

// listingWatch sits in front of the simulator and remembers the task
// instances that backlog listing pages (GET .../dags/~/dagRuns/~/
// taskInstances) served; the listings of one run do not count.
type listingWatch struct {
	h      http.Handler
	mu     sync.Mutex
	served map[airflowsim.TIKey]bool
	pages  int
}

func (l *listingWatch) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.served = map[airflowsim.TIKey]bool{}
	l.pages = 0
}

func (l *listingWatch) backlogPages() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pages
}

func (l *listingWatch) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p := r.URL.Path; r.Method != http.MethodGet || !strings.HasSuffix(p, "/dags/~/dagRuns/~/taskInstances") {
		l.h.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	l.h.ServeHTTP(rec, r)
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	body := rec.Body.Bytes()
	_, _ = w.Write(body)
	var page struct {
		TaskInstances []struct {
			DagID    string `json:"dag_id"`
			RunID    string `json:"dag_run_id"`
			TaskID   string `json:"task_id"`
			MapIndex int    `json:"map_index"`
		} `json:"task_instances"`
	}
	if rec.Code != http.StatusOK || json.Unmarshal(body, &page) != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pages++
	for _, t := range page.TaskInstances {
		l.served[airflowsim.TIKey{DagID: t.DagID, RunID: t.RunID, TaskID: t.TaskID, MapIndex: t.MapIndex}] = true
	}
}

// skipped counts the task instances unfinished both before and after that
// no listing page served.
func (l *listingWatch) skipped(before, after map[airflowsim.TIKey]bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for k := range before {
		if after[k] && !l.served[k] {
			n++
		}
	}
	return n
}

// unfinished are the scenario's task instances in an unfinished state now.
func unfinished(sim *airflowsim.Server, sc *airflowsim.Scenario) map[airflowsim.TIKey]bool {
	out := map[airflowsim.TIKey]bool{}
	for _, t := range sc.TaskInstances {
		ti, ok := sim.TaskInstance(t.Key())
		if !ok {
			continue
		}
		switch {
		case ti.State == nil:
		case *ti.State == "success", *ti.State == "failed", *ti.State == "skipped", *ti.State == "upstream_failed", *ti.State == "removed":
			continue
		}
		out[t.Key()] = true
	}
	return out
}
