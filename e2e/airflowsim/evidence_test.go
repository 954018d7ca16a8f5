package airflowsim

import (
	"fmt"
	"testing"
)

// TestDAGNotInBag: on Airflow 3 a DAG missing from the serialized bag is
// still listed and readable, its runs and its single task instance GET
// answer, the '~' listing shows its task instances, and only the per-run
// task instance listing answers 404 about the DAG. Airflow 2 is unaffected.
func TestDAGNotInBag(t *testing.T) {
	for _, version := range []string{"2.10.5", "3.2.1"} {
		t.Run(version, func(t *testing.T) {
			c := newClient(t, mustParse(t, fmt.Sprintf(`airflowVersion: %q
auth: {username: u, password: p}
dags: [{dagId: ghost, notInBag: true}, {dagId: fine}]
runs: [{dagId: ghost, runId: r}, {dagId: fine, runId: r}]
taskInstances:
  - {dagId: ghost, runId: r, taskId: t, state: running}
  - {dagId: fine, runId: r, taskId: t, state: running}
`, version)))
			v2 := c.sim.APIVersion() == 2
			if v2 {
				c.login()
			}
			b := c.sim.BasePath()
			var dags struct {
				Dags []map[string]any `json:"dags"`
			}
			c.expect(c.get(b+"/dags", ""), 200).decode(t, &dags)
			if len(dags.Dags) != 2 {
				t.Fatalf("/dags: %v, want both DAGs", dags)
			}
			if d := c.expect(c.get(b+"/dags/ghost", ""), 200).obj(t); d["dag_id"] != "ghost" {
				t.Fatalf("GET /dags/ghost: %v", d)
			}
			if r := c.expect(c.get(b+"/dags/ghost/dagRuns", ""), 200).obj(t); r["total_entries"] != 1.0 {
				t.Fatalf("runs of ghost: %v", r)
			}
			c.expect(c.get(b+"/dags/ghost/dagRuns/r", ""), 200)
			c.expect(c.get(b+"/dags/ghost/dagRuns/r/taskInstances/t", ""), 200)
			if p := c.tiPage(c.expect(c.get(b+"/dags/~/dagRuns/~/taskInstances", ""), 200)); p.TotalEntries != 2 {
				t.Fatalf("~ listing: %+v, want both task instances", p)
			}
			if p := c.tiPage(c.expect(c.get(b+"/dags/fine/dagRuns/r/taskInstances", ""), 200)); p.TotalEntries != 1 {
				t.Fatalf("listing of fine/r: %+v", p)
			}
			per := c.get(b+"/dags/ghost/dagRuns/r/taskInstances", "")
			if !v2 {
				if p := c.tiPage(c.expect(per, 200)); p.TotalEntries != 1 {
					t.Fatalf("Airflow 2 listing of ghost/r: %+v", p)
				}
				return
			}
			if d := c.expect(per, 404).obj(t); d["detail"] != "The Dag with ID: `ghost` was not found" {
				t.Fatalf("listing of ghost/r: %v", d)
			}
			c.sim.SetDAGNotInBag("ghost", false)
			c.expect(c.get(b+"/dags/ghost/dagRuns/r/taskInstances", ""), 200)
			c.sim.SetDAGNotInBag("fine", true)
			c.expect(c.get(b+"/dags/fine/dagRuns/r/taskInstances", ""), 404)
		})
	}
}

// TestRunGetNotFound: GET of one run answers the version's 404 while the
// run listing, the per-run task instance listing and the other runs' GETs
// still answer.
func TestRunGetNotFound(t *testing.T) {
	for _, tc := range []struct{ version, field, want string }{
		{"2.10.5", "title", "DAGRun not found"},
		{"3.2.1", "detail", "The DagRun with dag_id: `d` and run_id: `r1` was not found"},
	} {
		t.Run(tc.version, func(t *testing.T) {
			c := signedInTo(t, tc.version, `dags: [{dagId: d}]
runs: [{dagId: d, runId: r1}, {dagId: d, runId: r2}]
taskInstances: [{dagId: d, runId: r2, taskId: t, state: running}]
`)
			b := c.sim.BasePath()
			c.sim.SetRunGetNotFound("d", "r1", true)
			if r := c.expect(c.get(b+"/dags/d/dagRuns", ""), 200).obj(t); r["total_entries"] != 2.0 {
				t.Fatalf("runs of d: %v, want both", r)
			}
			if e := c.expect(c.get(b+"/dags/d/dagRuns/r1", ""), 404).obj(t); e[tc.field] != tc.want {
				t.Fatalf("GET d/r1: %v, want %s %q", e, tc.field, tc.want)
			}
			c.expect(c.get(b+"/dags/d/dagRuns/r2", ""), 200)
			c.expect(c.get(b+"/dags/d/dagRuns/r1/taskInstances", ""), 200)
			c.sim.SetRunGetNotFound("d", "r1", false)
			c.expect(c.get(b+"/dags/d/dagRuns/r1", ""), 200)
		})
	}
}
