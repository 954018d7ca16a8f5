package airflowsim

import (
	"fmt"
	"strings"
	"testing"
)

const twoRunsYAML = `airflowVersion: %q
auth: {username: u, password: p}
dags: [{dagId: d}, {dagId: e}]
runs: [{dagId: d, runId: r1}, {dagId: d, runId: r2}, {dagId: d, runId: r3}, {dagId: e, runId: r1}]
taskInstances:
  - {dagId: d, runId: r1, taskId: a, state: running}
  - {dagId: d, runId: r1, taskId: b, state: running}
  - {dagId: d, runId: r1, taskId: c, state: running}
  - {dagId: d, runId: r2, taskId: a, state: success}
  - {dagId: d, runId: r2, taskId: b, state: success}
  - {dagId: d, runId: r3, taskId: a, state: success}
  - {dagId: e, runId: r1, taskId: a, state: running}
`

// Airflow 3 writes a row into its log table for every batch POST, holding
// the request body; its GET listings write none, and neither does Airflow
// 2's batch POST.
func TestBatchPostWritesAnAuditRowOnAirflow3(t *testing.T) {
	c := newClient(t, mustParse(t, fmt.Sprintf(twoRunsYAML, "3.2.1")))
	c.login()
	c.expect(c.get("/api/v2/dags/d/dagRuns/r1/taskInstances", "task_id=a"), 200)
	if rows := c.sim.ActionLog(); len(rows) != 0 {
		t.Fatalf("a GET listing wrote %v", rows)
	}
	c.expect(c.post("/api/v2/dags/~/dagRuns/~/taskInstances/list",
		jsonBody(map[string]any{"dag_ids": []string{"d"}, "dag_run_ids": []string{"r1"}, "task_ids": []string{"a"}})), 200)
	rows := c.sim.ActionLog()
	if len(rows) != 1 || rows[0].Event != "get_task_instances_batch" || !strings.Contains(rows[0].Extra, `"dag_run_ids":["r1"]`) {
		t.Fatalf("log rows %+v, want one get_task_instances_batch row holding the body", rows)
	}

	v1 := newClient(t, mustParse(t, fmt.Sprintf(twoRunsYAML, "2.10.5")))
	v1.expect(v1.post("/api/v1/dags/~/dagRuns/~/taskInstances/list",
		jsonBody(map[string]any{"dag_ids": []string{"d"}, "dag_run_ids": []string{"r1"}})), 200)
	if rows := v1.sim.ActionLog(); len(rows) != 0 {
		t.Fatalf("Airflow 2's batch POST wrote %v", rows)
	}
}

// The v1 batch filters are a cross product: every listed run with every
// listed task, of the listed DAGs only.
func TestV1BatchIsACrossProduct(t *testing.T) {
	c := newClient(t, mustParse(t, fmt.Sprintf(twoRunsYAML, "2.10.5")))
	p := c.tiPage(c.expect(c.post("/api/v1/dags/~/dagRuns/~/taskInstances/list",
		jsonBody(map[string]any{"dag_ids": []string{"d"}, "dag_run_ids": []string{"r1", "r2"}, "task_ids": []string{"a", "b"}})), 200))
	var got []string
	for _, ti := range p.TaskInstances {
		got = append(got, ti.DagID+"/"+ti.DagRunID+"/"+ti.TaskID)
	}
	if p.TotalEntries != 4 || len(got) != 4 || strings.Contains(strings.Join(got, " "), "/c") || strings.Contains(strings.Join(got, " "), "e/") {
		t.Fatalf("rows %v (total %d), want d/r1/a, d/r1/b, d/r2/a, d/r2/b", got, p.TotalEntries)
	}
}
