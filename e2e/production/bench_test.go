package production_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kpo-reaper/kpo-reaper/e2e/airflowsim"
	"github.com/kpo-reaper/kpo-reaper/e2e/fixture"
	"github.com/kpo-reaper/kpo-reaper/e2e/harness"
)

const (
	benchDag     = "bench_kpo_dag"
	benchRun     = "scheduled__2026-11-27T00:00:00+00:00"
	userHZ       = 100 // /proc/<pid>/stat clock ticks per second (USER_HZ, 100 on Linux)
	cyclesMetric = "kpo_reaper_cycles_total"
)

// BenchmarkIdleWith1000Pods measures the daemon's steady state with 1,000
// KPO pods in its namespace (500 zombies of finished task instances, 500
// pods of running ones, all in one DAG run, and nothing else in Airflow),
// in dry run with a 1s interval: after the watch cache synced and two
// cycles ran, it reports the process's resident set (VmRSS, and VmHWM, the
// peak) and its CPU time (utime+stime from /proc/<pid>/stat) per cycle over
// windows of 10 cycles, counted with kpo_reaper_cycles_total. Also
// reported: the mean cycle duration, Airflow API calls per cycle, from the
// reaper's own metrics, and the info log lines per cycle.
//
//	go test -run '^$' -bench BenchmarkIdleWith1000Pods -benchtime 1x ./production/
func BenchmarkIdleWith1000Pods(b *testing.B) {
	var specs []fixture.PodSpec
	var tis []airflowsim.TaskInstanceSpec
	for i := 0; i < 1000; i++ {
		task, state, end := fmt.Sprintf("live_task_%04d", i), "running", airflowsim.TimeSpec("")
		if i%2 == 0 {
			task, state, end = fmt.Sprintf("zombie_task_%04d", i), "success", "-0s"
		}
		specs = append(specs, fixture.PodSpec{Name: strings.ReplaceAll(task, "_", "-") + "-pod", DagID: benchDag, RunID: benchRun, TaskID: task, MapIndex: -1})
		tis = append(tis, airflowsim.TaskInstanceSpec{DagID: benchDag, RunID: benchRun, TaskID: task, State: ptr(state),
			Operator: ptr("KubernetesPodOperator"), StartDate: "-1h", EndDate: end})
	}
	sc := &airflowsim.Scenario{
		AirflowVersion: "2.10.5",
		Auth:           airflowsim.AuthSpec{Username: "admin", Password: "admin"},
		DAGs:           []airflowsim.DAGSpec{{DagID: benchDag}},
		Runs:           []airflowsim.DagRunSpec{{DagID: benchDag, RunID: benchRun, State: "running", StartDate: "-2h"}},
		TaskInstances:  tis,
	}
	benchIdle(b, "idle-1000", specs, sc, 10)
}

// BenchmarkIdleWith2000Pods is BenchmarkIdleWith1000Pods on a large
// installation (runLayouts): 2,000 KPO pods (1,000 zombies) over 20 DAGs x
// 10 runs of 10 KPO tasks, next to 20,000 unfinished task instances
// without pods, Airflow 2.10.5, windows of 3 cycles.
//
//	go test -run '^$' -bench BenchmarkIdleWith2000Pods -benchtime 1x -timeout 60m ./production/
func BenchmarkIdleWith2000Pods(b *testing.B) {
	sh := runLayouts[0]
	sc, _ := sh.scenario("2.10.5")
	benchIdle(b, "idle-2000", sh.podSpecs(), sc, 3)
}

// BenchmarkIdleWith10000Pods is BenchmarkIdleWith2000Pods with 50 runs per
// DAG: 10,000 KPO pods (5,000 zombies), the same 20,000 task instances
// without pods.
//
//	go test -run '^$' -bench BenchmarkIdleWith10000Pods -benchtime 1x -timeout 60m ./production/
func BenchmarkIdleWith10000Pods(b *testing.B) {
	sh := runLayouts[2]
	sc, _ := sh.scenario("2.10.5")
	benchIdle(b, "idle-10000", sh.podSpecs(), sc, 3)
}

// benchIdle runs the daemon against the pods (half of them zombies) and
// the scenario, and measures windows of cycles cycles.
func benchIdle(b *testing.B, name string, specs []fixture.PodSpec, sc *airflowsim.Scenario, cycles int) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Minute)
	defer cancel()
	pods := len(specs)
	ns := fmt.Sprintf("prod-%02d-bench-%s", nsSeq.Add(1), name)
	kubeconfig, err := fixture.ApplyShippedRBAC(ctx, cluster, ns)
	if err != nil {
		b.Fatal(err)
	}

	// The pods first, then the simulator, whose finished task instances
	// end when it starts (after the pods were created).
	start := time.Now()
	createPodsFast(ctx, b, ns, specs)
	b.Logf("created %d pods in %v", pods, time.Since(start).Round(time.Millisecond))
	_, url := startSim(b, sc)
	dry := true
	cfg, err := fixture.Config{AirflowURL: url, AuthType: "basic", Kubeconfig: kubeconfig, Namespace: ns, DryRun: &dry, MaxRetries: 1,
		Timeout: 60 * time.Second}.Write(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	d := startDaemon(b, "reaper", daemonArgs(cfg), baseEnv(), "/healthz")

	// Warm: the cache synced (cycles only start after it) and two cycles
	// judged every pod.
	d.waitMetric(ctx, 20*time.Minute, cyclesMetric, map[string]string{"result": "success"}, ">= 2", atLeast(2))
	m := d.metrics()
	for _, c := range []struct{ verdict, reason string }{{"reap", "ti-finished"}, {"keep", "ti-active"}} {
		if v, _ := m.value("kpo_reaper_pods", map[string]string{"verdict": c.verdict, "reason": c.reason}); v != float64(pods/2) {
			b.Fatalf("kpo_reaper_pods{verdict=%q,reason=%q} = %v, want %d: the benchmark would not measure what it says", c.verdict, c.reason, v, pods/2)
		}
	}

	var cpu, counted, dur, calls, info float64
	rss := sampleRSS(b, d.PID())
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m0 := d.metrics()
		cpu0 := cpuSeconds(b, d.PID())
		logged := d.log.cycles.Load()
		info0 := d.log.info.Load()
		// Wait for the cycles by their log lines: polling /metrics would
		// cost the process the CPU being measured.
		eventually(ctx, b, 30*time.Minute, fmt.Sprintf("%d more cycles", cycles), func() (bool, string) {
			n := d.log.cycles.Load() - logged
			return n >= int64(cycles), strconv.FormatInt(n, 10)
		})
		cpu1 := cpuSeconds(b, d.PID())
		info += float64(d.log.info.Load() - info0)
		m1 := d.metrics()
		counted += total(m1, cyclesMetric) - total(m0, cyclesMetric)
		cpu += cpu1 - cpu0
		dur += total(m1, "kpo_reaper_cycle_duration_seconds_sum") - total(m0, "kpo_reaper_cycle_duration_seconds_sum")
		calls += total(m1, "kpo_reaper_airflow_requests_total") - total(m0, "kpo_reaper_airflow_requests_total")
		if f := total(m1, cyclesMetric+`{result="failure"}`); f > 0 {
			b.Fatalf("%v cycles failed", f)
		}
	}
	b.StopTimer()
	if counted < 1 {
		b.Fatalf("no cycle counted by %s during the measurement", cyclesMetric)
	}
	idle, busy := rss.stop()
	hwm, file := peakKB(b, d.PID()), fileKB(b, d.PID())
	b.ReportMetric(float64(idle)/1024, "idleRSS-MB")
	b.ReportMetric(float64(busy)/1024, "cycleRSS-MB")
	b.ReportMetric(float64(hwm)/1024, "peakRSS-MB")
	b.ReportMetric(float64(file)/1024, "fileRSS-MB")
	b.ReportMetric(cpu/counted, "cpu-s/cycle")
	b.ReportMetric(dur/counted, "s/cycle")
	b.ReportMetric(calls/counted, "airflow-calls/cycle")
	b.ReportMetric(info/counted, "info-lines/cycle")
	b.ReportMetric(0, "ns/op") // wall time per op is the interval, not a cost
	b.Logf("%d pods, %v cycles measured: RSS %.1f MiB between cycles, %.1f MiB during them (%.1f MiB of file pages, mostly the binary), peak %.1f MiB, %.4f CPU s/cycle, %.3f s/cycle, %.1f Airflow calls/cycle, %.1f info log lines/cycle",
		pods, counted, float64(idle)/1024, float64(busy)/1024, float64(file)/1024, float64(hwm)/1024, cpu/counted, dur/counted, calls/counted, info/counted)
	fmt.Printf("daemon with %d pods: RSS %.1f MiB between cycles, up to %.1f MiB during them (%.1f MiB of it file pages), peak %.1f MiB since start, %.3f CPU s/cycle, %.2f s/cycle, %.0f Airflow calls/cycle, %.1f info log lines/cycle\n",
		pods, float64(idle)/1024, float64(busy)/1024, float64(file)/1024, float64(hwm)/1024, cpu/counted, dur/counted, calls/counted, info/counted)
}

// rssSampler reads a process's VmRSS every 10 ms from another goroutine:
// one reading at the end of a window lands between cycles or inside one by
// chance, and the two differ by several MiB. Reading /proc costs the
// process nothing.
type rssSampler struct {
	done     chan struct{}
	finished chan struct{}
	min, max int64
}

func sampleRSS(t testing.TB, pid int) *rssSampler {
	t.Helper()
	s := &rssSampler{done: make(chan struct{}), finished: make(chan struct{})}
	go func() {
		defer close(s.finished)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			if kb := vmRSS(pid); kb > 0 {
				if s.min == 0 || kb < s.min {
					s.min = kb
				}
				s.max = max(s.max, kb)
			}
			select {
			case <-s.done:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the lowest and highest VmRSS seen, in
// kB: between cycles, and during the busiest moment of a cycle.
func (s *rssSampler) stop() (low, high int64) {
	close(s.done)
	<-s.finished
	return s.min, s.max
}

// vmRSS is the VmRSS of a process in kB, 0 if unreadable.
func vmRSS(pid int) int64 {
	m, _ := procKB(pid, "status", "VmRSS")
	return m["VmRSS"]
}

// total sums the series of a metric; name may carry a {label="v"} filter.
func total(m metricSet, name string) float64 {
	labels := map[string]string{}
	if i := strings.IndexByte(name, '{'); i >= 0 {
		if _, err := parseLabels(name[i+1:], labels); err != nil {
			panic(err)
		}
		name = name[:i]
	}
	v, _ := m.value(name, labels)
	return v
}

// cpuSeconds is utime+stime of a process, from /proc/<pid>/stat.
func cpuSeconds(t testing.TB, pid int) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The command name (field 2) is in parentheses and may hold spaces;
	// count fields after its closing one. utime and stime are fields 14
	// and 15, i.e. 12th and 13th after it.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		t.Fatalf("/proc/%d/stat: %q", pid, s)
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("/proc/%d/stat: %q", pid, s)
	}
	return (ut + st) / userHZ
}

// procKB reads "key: n kB" fields of a /proc/<pid> file (status,
// smaps_rollup); a key it lacks is 0.
func procKB(pid int, file string, keys ...string) (map[string]int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(keys))
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		f := strings.Fields(v)
		if !ok || len(f) == 0 || !slices.Contains(keys, k) {
			continue
		}
		out[k], _ = strconv.ParseInt(f[0], 10, 64)
	}
	return out, nil
}

// peakKB is the VmHWM of a process: its largest resident set since start.
func peakKB(t testing.TB, pid int) int64 {
	t.Helper()
	m, err := procKB(pid, "status", "VmHWM")
	if err != nil || m["VmHWM"] == 0 {
		t.Fatalf("/proc/%d/status: no VmHWM (%v)", pid, err)
	}
	return m["VmHWM"]
}

// fileKB is the part of a process's resident set that is file pages
// (mostly the binary's own code), from /proc/<pid>/smaps_rollup: the rest,
// anonymous memory, follows the work, this part the binary's size.
func fileKB(t testing.TB, pid int) int64 {
	t.Helper()
	m, err := procKB(pid, "smaps_rollup", "Rss", "Anonymous")
	if err != nil {
		t.Fatal(err)
	}
	return m["Rss"] - m["Anonymous"]
}

// createPodsFast creates many pods, with their status, through a client
// without the admin client's rate limit, from a few goroutines.
func createPodsFast(ctx context.Context, t testing.TB, ns string, specs []fixture.PodSpec) {
	t.Helper()
	if err := cluster.EnsureNode(ctx, harness.DefaultNode); err != nil {
		t.Fatal(err)
	}
	cfg := cluster.AdminRESTConfig()
	cfg.QPS, cfg.Burst = 2000, 4000
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	work := make(chan fixture.PodSpec)
	errs := make(chan error, len(specs))
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range work {
				pod := s.Pod(ns)
				status := pod.Status
				created, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
				if err == nil {
					created.Status = status
					_, err = cs.CoreV1().Pods(ns).UpdateStatus(ctx, created, metav1.UpdateOptions{})
				}
				if err != nil {
					errs <- fmt.Errorf("pod %s: %w", s.Name, err)
				}
			}
		}()
	}
	for _, s := range specs {
		work <- s
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
