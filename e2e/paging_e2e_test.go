package e2e_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kpo-reaper/kpo-reaper/e2e/airflowsim"
	"github.com/kpo-reaper/kpo-reaper/e2e/fixture"
)

// TestPagingChurn: airflowsim's churn faults move rows between the pages
// of a task instance listing while a client pages through it (a listed
// task instance finishes, is retried, or finishes while a new one starts,
// right after the first page). Every task instance has a pod, the finished
// ones too. One real cycle must either succeed or fail closed (exit 1,
// nothing deleted), and must never delete the pod of a task instance that
// is still active afterwards.
//
// The reaper lists the run of its pods (never Airflow's backlog), and the
// sizes make that listing span pages (v1's task instance limit is 100 and
// uncapped, so that case has more than 100 task instances; v2 caps limit
// at pageLimitCap, 5 here), so the churn fault meets it. A listing only
// narrows: each row is as good as a single GET at that moment, a row it
// misses is read with its own GET, and the re-check before a delete is one
// GET. The test asserts that no backlog listing was made and that every
// pod's task instance was read.
func TestPagingChurn(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		version string
		api     int
		live    int // running task instances
		cap     int // pageLimitCap
	}{
		{"v1-2.10", "2.10.5", 1, 103, 100},
		{"v2-3.2", "3.2.1", 2, 12, 5},
		{"v2-3.3-cursor", "3.3.0", 2, 12, 5},
	}
	const finished = 3 // task instances finished before the cycle: zombies
	for _, fault := range []airflowsim.Fault{airflowsim.FaultChurnFinish, airflowsim.FaultChurnRetry, airflowsim.FaultChurnSwap} {
		for _, tc := range cases {
			t.Run(string(fault)+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				const dag, run = "paging_dag", "manual__2026-11-27T06:00:00+00:00"
				v := airflowVersions[tc.api-1]
				e := newEnv(t)
				var specs []fixture.PodSpec
				var tis []airflowsim.TaskInstanceSpec
				podOf := map[string]airflowsim.TIKey{}
				var zombies []string
				for i := 0; i < tc.live+finished; i++ {
					task, state := fmt.Sprintf("live_task_%03d", i), "running"
					if i >= tc.live {
						task, state = fmt.Sprintf("done_task_%d", i-tc.live), "success"
					}
					name := strings.ReplaceAll(task, "_", "-") + "-pod"
					specs = append(specs, fixture.PodSpec{Name: name, DagID: dag, RunID: run, TaskID: task, MapIndex: -1, Try: 1})
					// tiSpec ends a finished one now: after its pod was created.
					tis = append(tis, tiSpec(dag, run, task, 1, state))
					podOf[name] = airflowsim.TIKey{DagID: dag, RunID: run, TaskID: task, MapIndex: -1}
					if state == "success" {
						zombies = append(zombies, name)
					}
				}
				e.createPodsConcurrently(specs)
				s := e.startSim(&airflowsim.Scenario{
					AirflowVersion: tc.version,
					Auth:           airflowsim.AuthSpec{Username: "admin", Password: "admin"},
					PageLimitCap:   tc.cap,
					DAGs:           []airflowsim.DAGSpec{{DagID: dag}},
					Runs:           []airflowsim.DagRunSpec{{DagID: dag, RunID: run, StartDate: "-1h"}},
					TaskInstances:  tis,
				}, nil)
				s.SetFault(fault)
				cfg := e.config(s.URL, v, nil)

				ctx, cancel := context.WithTimeout(e.ctx, 2*time.Minute)
				defer cancel()
				res, err := fixture.Run(ctx, reaperBin, "run", "--once", "--dry-run=false", "--config", cfg)
				if err != nil {
					t.Fatal(err)
				}

				reqs := s.Requests()
				expectNoBacklogListing(t, s.BasePath(), reqs)
				expectEveryPodRead(t, s.BasePath(), reqs, specs)
				var deleted []string
				for _, ev := range writes(e.syncAudit()) {
					if ev.Verb == "delete" && ev.Resource == "pods" && ev.Subresource == "" {
						deleted = append(deleted, ev.Name)
					}
				}
				for _, name := range deleted {
					key, ok := podOf[name]
					if !ok {
						t.Errorf("deleted pod %s the test did not create", name)
						continue
					}
					if ti, ok := s.TaskInstance(key); ok && active(ti.State) {
						t.Errorf("deleted pod %s of %s, which is %s: a live pod", name, key, stateName(ti.State))
					}
				}
				e.expectGone(deleted)
				switch res.ExitCode {
				case 0:
					// The cycle succeeded: the zombies of before are gone.
					for _, z := range zombies {
						if !contains(deleted, z) {
							t.Errorf("the cycle succeeded but kept the zombie %s", z)
						}
					}
				case 1:
					if len(deleted) > 0 {
						t.Errorf("the cycle failed closed (exit 1) but deleted %q", deleted)
					}
				default:
					t.Errorf("exit code %d, want 0 or 1\nstderr:\n%s", res.ExitCode, res.Stderr)
				}
				t.Logf("%s on %s: exit %d, deleted %d pods", fault, tc.version, res.ExitCode, len(deleted))
			})
		}
	}
}

// active reports whether a task instance state is unfinished (nil is no
// status), as the reaper's decision table counts it.
func active(state *string) bool {
	if state == nil {
		return true
	}
	switch *state {
	case "success", "failed", "skipped", "upstream_failed", "removed":
		return false
	}
	return true
}

func stateName(state *string) string {
	if state == nil {
		return "no status"
	}
	return *state
}
