package production_test

import (
	"fmt"
	"time"

	"github.com/kpo-reaper/kpo-reaper/e2e/airflowsim"
	"github.com/kpo-reaper/kpo-reaper/e2e/fixture"
)

// scaleShape is a large Airflow installation: KPO pods spread
// over dags x tasks x runs, the older half of the runs finished (their
// pods are zombies) and the newer half running (their pods live), next to
// a backlog of unfinished task instances that have no pod: ownQueued
// queued runs per pod DAG whose task instances (the KPO tasks and as many
// other tasks) have no status, and the rest in DAGs of their own, with no
// status, scheduled or queued in turn.
type scaleShape struct {
	dags, tasks, runs int
	ownQueued         int
	backlog           int
}

// runLayouts are the installations of the request benchmarks: KPO pods in
// runs of 10 (DAG runs with many KPO tasks, one listing per run) and of 1
// (each pod its own run: the exact GET per pod holds), 2,000 and 10,000
// pods, next to the same 20,000 unfinished task instances without pods.
var runLayouts = []scaleShape{
	{dags: 20, tasks: 10, runs: 10, ownQueued: 10, backlog: 20000},
	{dags: 20, tasks: 1, runs: 100, ownQueued: 10, backlog: 20000},
	{dags: 20, tasks: 10, runs: 50, ownQueued: 10, backlog: 20000},
	{dags: 20, tasks: 1, runs: 500, ownQueued: 10, backlog: 20000},
}

func (sh scaleShape) name() string { return fmt.Sprintf("pods=%d/run=%d", sh.pods(), sh.tasks) }

func (sh scaleShape) pods() int    { return sh.dags * sh.tasks * sh.runs }
func (sh scaleShape) zombies() int { return sh.dags * sh.tasks * (sh.runs / 2) }

func scaleDag(d int) string  { return fmt.Sprintf("etl_dag_%02d", d) }
func scaleTask(t int) string { return fmt.Sprintf("kpo_task_%d", t) }

// scaleRun is the run id of a DAG's r-th run, hourly from 2026-11-20.
func scaleRun(r int) string {
	t := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC).Add(time.Duration(r) * time.Hour)
	return "scheduled__" + t.Format("2006-01-02T15:04:05") + "+00:00"
}

func (sh scaleShape) zombieRun(r int) bool { return r < sh.runs/2 }

// podSpecs are the KPO pods, one per DAG, task and run.
func (sh scaleShape) podSpecs() []fixture.PodSpec {
	var out []fixture.PodSpec
	for d := 0; d < sh.dags; d++ {
		for r := 0; r < sh.runs; r++ {
			for t := 0; t < sh.tasks; t++ {
				out = append(out, fixture.PodSpec{Name: fmt.Sprintf("etl-dag-%02d-kpo-task-%d-r%03d", d, t, r),
					DagID: scaleDag(d), RunID: scaleRun(r), TaskID: scaleTask(t), MapIndex: -1})
			}
		}
	}
	return out
}

// scenario is the Airflow side for one version; finished task instances
// end when the simulator starts (after the pods were created). protect
// reports the pods' own task instances, which continuous churn must leave
// alone so that the expected verdicts hold.
func (sh scaleShape) scenario(version string) (sc *airflowsim.Scenario, protect func(airflowsim.TaskInstanceSpec) bool) {
	sc = &airflowsim.Scenario{AirflowVersion: version, PageLimitCap: 100,
		Auth: airflowsim.AuthSpec{Username: "admin", Password: "admin"}}
	kpo := ptr("KubernetesPodOperator")
	own := map[airflowsim.TIKey]bool{}
	for d := 0; d < sh.dags; d++ {
		dag := scaleDag(d)
		sc.DAGs = append(sc.DAGs, airflowsim.DAGSpec{DagID: dag})
		for r := 0; r < sh.runs; r++ {
			run := airflowsim.DagRunSpec{DagID: dag, RunID: scaleRun(r), State: "running", StartDate: "-2h"}
			state, end := "running", airflowsim.TimeSpec("")
			if sh.zombieRun(r) {
				run.State, run.EndDate = "success", "-0s"
				state, end = "success", "-0s"
			}
			sc.Runs = append(sc.Runs, run)
			for t := 0; t < sh.tasks; t++ {
				ti := airflowsim.TaskInstanceSpec{DagID: dag, RunID: run.RunID, TaskID: scaleTask(t), State: ptr(state),
					Operator: kpo, StartDate: "-1h", EndDate: end}
				own[ti.Key()] = true
				sc.TaskInstances = append(sc.TaskInstances, ti)
			}
		}
		// Queued runs of the pods' own DAGs: their KPO tasks (and others)
		// have no status yet.
		for q := 0; q < sh.ownQueued; q++ {
			run := airflowsim.DagRunSpec{DagID: dag, RunID: scaleRun(sh.runs + q), State: "queued"}
			sc.Runs = append(sc.Runs, run)
			for t := 0; t < sh.tasks; t++ {
				sc.TaskInstances = append(sc.TaskInstances,
					airflowsim.TaskInstanceSpec{DagID: dag, RunID: run.RunID, TaskID: scaleTask(t), Operator: kpo},
					airflowsim.TaskInstanceSpec{DagID: dag, RunID: run.RunID, TaskID: fmt.Sprintf("check_%d", t), Operator: ptr("PythonOperator")})
			}
		}
	}
	left := sh.backlog - sh.dags*sh.ownQueued*sh.tasks*2
	const perRun, runsPerDag = 20, 5
	states := []*string{nil, ptr("scheduled"), ptr("queued")}
	for o := 0; left > 0; o++ {
		dag := fmt.Sprintf("other_dag_%03d", o)
		sc.DAGs = append(sc.DAGs, airflowsim.DAGSpec{DagID: dag})
		for r := 0; r < runsPerDag && left > 0; r++ {
			run := airflowsim.DagRunSpec{DagID: dag, RunID: scaleRun(r), State: "running", StartDate: "-30m"}
			sc.Runs = append(sc.Runs, run)
			for t := 0; t < perRun && left > 0; t++ {
				sc.TaskInstances = append(sc.TaskInstances, airflowsim.TaskInstanceSpec{DagID: dag, RunID: run.RunID,
					TaskID: fmt.Sprintf("step_%02d", t), State: states[(r*perRun+t)%3], Operator: ptr("PythonOperator")})
				left--
			}
		}
	}
	return sc, func(t airflowsim.TaskInstanceSpec) bool { return own[t.Key()] }
}
