package e2e_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kpo-reaper/kpo-reaper/e2e/airflowsim"
	"github.com/kpo-reaper/kpo-reaper/e2e/fixture"
)

const (
	groupDag   = "grouped_dag"
	groupRun   = "scheduled__2026-11-27T06:00:00+00:00"
	singleRun  = "scheduled__2026-11-27T07:00:00+00:00"
	groupTasks = 6 // KPO tasks of groupRun; the even ones finished
)

// groupScenario is one DAG with a run of groupTasks KPO pods (the even
// tasks finished: zombies) next to a run with one finished KPO pod, and
// other tasks without pods in both runs.
func groupScenario(version string) (*airflowsim.Scenario, []fixture.PodSpec, []string) {
	sc := &airflowsim.Scenario{AirflowVersion: version, PageLimitCap: 100,
		Auth: airflowsim.AuthSpec{Username: "admin", Password: "admin"},
		DAGs: []airflowsim.DAGSpec{{DagID: groupDag}},
		Runs: []airflowsim.DagRunSpec{{DagID: groupDag, RunID: groupRun, StartDate: "-1h"}, {DagID: groupDag, RunID: singleRun, StartDate: "-1h"}}}
	var pods []fixture.PodSpec
	var zombies []string
	for i := 0; i < groupTasks; i++ {
		task, state := fmt.Sprintf("kpo_task_%d", i), "running"
		name := fmt.Sprintf("grouped-kpo-task-%d-pod", i)
		if i%2 == 0 {
			state = "success"
			zombies = append(zombies, name)
		}
		pods = append(pods, fixture.PodSpec{Name: name, DagID: groupDag, RunID: groupRun, TaskID: task, MapIndex: -1, Try: 1})
		sc.TaskInstances = append(sc.TaskInstances, tiSpec(groupDag, groupRun, task, 1, state))
	}
	pods = append(pods, fixture.PodSpec{Name: "single-kpo-task-pod", DagID: groupDag, RunID: singleRun, TaskID: "kpo_task_0", MapIndex: -1, Try: 1})
	zombies = append(zombies, "single-kpo-task-pod")
	sc.TaskInstances = append(sc.TaskInstances, tiSpec(groupDag, singleRun, "kpo_task_0", 1, "success"),
		tiSpec(groupDag, groupRun, "report", 1, "", operator("PythonOperator")),
		tiSpec(groupDag, singleRun, "report", 1, "", operator("PythonOperator")))
	return sc, pods, zombies
}

// TestRunsPodsInOneRequest: on every simulated Airflow release, the pods of
// a run are read with one request (the run's listing; on Airflow 2.7.1+ the
// batch POST of that DAG's run and tasks), a run with one pod keeps its
// single GET, the verdicts are those of exact lookups, and nothing is
// written into Airflow's log table (Airflow 3's batch POST would).
func TestRunsPodsInOneRequest(t *testing.T) {
	t.Parallel()
	forEveryRelease(t, func(t *testing.T, ev simRelease, v airflowVersion, e *env) {
		sc, pods, zombies := groupScenario(ev.version)
		e.createPods(pods...)
		s := e.startSim(sc, nil)
		cfg := e.config(s.URL, v, nil)

		plan := e.plan(cfg)
		for _, p := range pods {
			if contains(zombies, p.Name) {
				e.expectVerdict(plan, p.Name, "reap", "ti-finished")
			} else {
				e.expectVerdict(plan, p.Name, "keep", "ti-active")
			}
		}
		reqs := s.Requests()
		checkRequests(t, s, ev.api)
		expectNoBacklogListing(t, s.BasePath(), reqs)
		expectEveryPodRead(t, s.BasePath(), reqs, pods)
		var listings int
		for _, r := range reqs {
			if listedBy(s.BasePath(), r, airflowsim.TIKey{DagID: groupDag, RunID: groupRun, TaskID: "kpo_task_1", MapIndex: -1}) {
				listings++
			}
		}
		if listings != 1 {
			t.Errorf("%d listings of the run's task instances, want 1", listings)
		}
		// plan re-checks what it would delete, with one single GET each:
		// a zombie of the listed run is read once, a live pod not at
		// all; the run with one pod is read with a GET, and re-checked.
		gets := exactLookups(s.BasePath(), reqs)
		listed := map[string]int{}
		for i := 0; i < groupTasks; i++ {
			listed[fmt.Sprintf("kpo_task_%d", i)] = 1 - i%2
		}
		expectSingleGets(t, gets, groupRun, listed, "its run's listing showed it")
		expectSingleGets(t, gets, singleRun, map[string]int{"kpo_task_0": 2}, "the run with one pod: its lookup and the re-check")

		e.runOnce(cfg, 0)
		e.expectGone(zombies)
		e.expectWrites(zombies, nil)
		if rows := s.ActionLog(); len(rows) != 0 {
			t.Errorf("the reaper made Airflow write %d log rows, e.g. %+v", len(rows), rows[0])
		}
	})
}

// hideFromListings answers every task instance listing without the rows of
// the tasks in hidden (total_entries unchanged), as a listing whose rows
// moved between pages would.
func hideFromListings(hidden ...string) func(*airflowsim.Server) http.Handler {
	return func(sim *airflowsim.Server) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasSuffix(r.URL.Path, "/taskInstances") && !strings.HasSuffix(r.URL.Path, "/taskInstances/list") {
				sim.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			sim.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			var page map[string]json.RawMessage
			if rec.Code == http.StatusOK && json.Unmarshal(body, &page) == nil {
				var rows []map[string]any
				if json.Unmarshal(page["task_instances"], &rows) == nil {
					var kept []map[string]any
					for _, row := range rows {
						if !contains(hidden, fmt.Sprint(row["task_id"])) {
							kept = append(kept, row)
						}
					}
					if kept == nil {
						kept = []map[string]any{}
					}
					page["task_instances"], _ = json.Marshal(kept)
					body, _ = json.Marshal(page)
				}
			}
			for k, vs := range rec.Header() {
				if k != "Content-Length" {
					w.Header()[k] = vs
				}
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(body)
		})
	}
}

// expectSingleGets checks how many single GETs read each task of run in the
// group DAG (gets as exactLookups counts them); why says why that many.
func expectSingleGets(t *testing.T, gets map[airflowsim.TIKey]int, run string, want map[string]int, why string) {
	t.Helper()
	for task, n := range want {
		if k := (airflowsim.TIKey{DagID: groupDag, RunID: run, TaskID: task, MapIndex: -1}); gets[k] != n {
			t.Errorf("%s read with %d single GET(s), want %d: %s", k, gets[k], n, why)
		}
	}
}

// TestTaskInstanceMissingFromAListingIsAskedExactly: a listing only
// narrows. A zombie's and a live pod's task instances missing from their
// run's listing are each read with a single GET, and the verdicts are what
// those say: the zombie is deleted, the live pod kept.
func TestTaskInstanceMissingFromAListingIsAskedExactly(t *testing.T) {
	t.Parallel()
	forEachVersion(t, func(t *testing.T, v airflowVersion) {
		e := newEnv(t)
		sc, pods, zombies := groupScenario(v.version)
		e.createPods(pods...)
		hidden := []string{"kpo_task_2", "kpo_task_3"} // a zombie's and a live pod's
		s := e.startSim(sc, hideFromListings(hidden...))
		cfg := e.config(s.URL, v, nil)

		plan := e.plan(cfg)
		e.expectVerdict(plan, "grouped-kpo-task-2-pod", "reap", "ti-finished")
		e.expectVerdict(plan, "grouped-kpo-task-3-pod", "keep", "ti-active")
		// The zombie's is read twice: its lookup and the re-check before
		// plan's would-be delete.
		gets := exactLookups(s.BasePath(), s.Requests())
		expectSingleGets(t, gets, groupRun, map[string]int{"kpo_task_2": 2, "kpo_task_3": 1}, "missing from its run's listing")
		expectSingleGets(t, gets, groupRun, map[string]int{"kpo_task_1": 0}, "shown by its run's listing")

		e.runOnce(cfg, 0)
		e.expectGone(zombies)
		e.expectWrites(zombies, nil)
	})
}
