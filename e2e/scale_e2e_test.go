package e2e_test

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/kpo-reaper/kpo-reaper/e2e/airflowsim"
	"github.com/kpo-reaper/kpo-reaper/e2e/fixture"
)

// TestManyPods: 126 map indexes of one task, every sixth finished. The
// reaper reads them with the listing of their run (narrowed to the task),
// never Airflow's backlog, and no verdict rests on a listing's absence (a
// client that judged from a truncated listing would reap a live pod as an
// orphan). maxDeletesPerCycle is 20: the first cycle deletes the 20
// oldest zombies and marks the 21st, the second deletes it.
func TestManyPods(t *testing.T) {
	t.Parallel()
	const (
		dag        = "wide_dag"
		run        = "manual__2026-11-27T06:00:00+00:00"
		task       = "wide_kpo_task"
		n          = 126
		every      = 6
		maxDeletes = 20 // fixture.Config's maxDeletesPerCycle
	)
	forEachVersion(t, func(t *testing.T, v airflowVersion) {
		e := newEnv(t)
		type created struct {
			name string
			at   time.Time
		}
		var specs []fixture.PodSpec
		for i := 0; i < n; i++ {
			specs = append(specs, fixture.PodSpec{Name: fmt.Sprintf("wide-kpo-task-%03d-pod", i), DagID: dag, RunID: run, TaskID: task, MapIndex: i, Try: 1})
		}
		pods := e.createPodsConcurrently(specs)
		var zombies []created
		var tis []airflowsim.TaskInstanceSpec
		for i, p := range pods {
			state := "running"
			if i%every == 0 {
				state = "success"
				zombies = append(zombies, created{p.Name, p.CreationTimestamp.Time})
			}
			tis = append(tis, tiSpec(dag, run, task, 1, state, mapIndex(i)))
		}
		// Oldest first, ties by name: the order the cap takes them in.
		sort.SliceStable(zombies, func(i, j int) bool {
			if !zombies[i].at.Equal(zombies[j].at) {
				return zombies[i].at.Before(zombies[j].at)
			}
			return zombies[i].name < zombies[j].name
		})
		var first, second []string
		for i, z := range zombies {
			if i < maxDeletes {
				first = append(first, z.name)
			} else {
				second = append(second, z.name)
			}
		}
		s := e.startSim(&airflowsim.Scenario{
			AirflowVersion: v.version,
			Auth:           airflowsim.AuthSpec{Username: "admin", Password: "admin"},
			PageLimitCap:   100,
			DAGs:           []airflowsim.DAGSpec{{DagID: dag}},
			Runs:           []airflowsim.DagRunSpec{{DagID: dag, RunID: run, StartDate: "-1h"}},
			TaskInstances:  tis,
		}, nil)
		cfg := e.config(s.URL, v, nil)

		e.runOnce(cfg, 0)
		reqs := s.Requests()
		expectNoBacklogListing(t, s.BasePath(), reqs)
		expectEveryPodRead(t, s.BasePath(), reqs, specs)

		e.expectGone(first)
		e.expectWrites(first, second)
		marks := map[string]int{}
		for _, name := range second {
			marks[name] = 1
		}
		e.expectMarks(marks)

		e.runOnce(cfg, 0)

		e.expectGone(append(append([]string(nil), first...), second...))
		e.expectWrites(append(append([]string(nil), first...), second...), second)
	})
}
