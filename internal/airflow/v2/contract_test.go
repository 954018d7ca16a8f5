package v2

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
	"github.com/kpo-reaper/kpo-reaper/internal/airflow/airflowtest"
)

func TestContract(t *testing.T) { airflowtest.RunContract(t, adapter{}) }

// adapter serves the contract's fixtures from fakeV2, in the /api/v2
// shapes.
type adapter struct{}

func (adapter) APIVersion() string    { return "v2" }
func (adapter) ServerVersion() string { return "3.2.1" }

func (adapter) Fake(t *testing.T, fx airflowtest.Fixture) http.Handler {
	f := newFake(t)
	for _, d := range fx.DAGs {
		f.dags = append(f.dags, dagRow{id: d.ID, stale: d.Stale})
	}
	maps.Copy(f.runs, fx.Runs)
	for _, ti := range fx.TIs {
		r := rowOf(ti)
		r.id = f.uuid7ish()
		f.tis = append(f.tis, r)
	}
	maps.Copy(f.xcoms, fx.XComs)
	return f
}

func (adapter) NewClient(t *testing.T, baseURL string, hc *http.Client) airflow.Client {
	c, err := New(baseURL, hc, airflow.Paging{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (adapter) DAG(id string) map[string]any           { return dagJSON(dagRow{id: id}) }
func (adapter) Run(dagID, runID string) map[string]any { return runJSON(dagID, runID) }

func (adapter) TaskInstance(ti airflow.TaskInstance) map[string]any {
	r := rowOf(ti)
	r.id = uuid(1)
	return tiJSON(r)
}

func (adapter) XCom(key airflow.TIKey, value any) map[string]any {
	return xcomJSON(key, value)
}

// XComQuery: map_index goes out for unmapped tasks too (-1), so that the
// answer never rests on a server-side default.
func (adapter) XComQuery(key airflow.TIKey) url.Values {
	return url.Values{"map_index": {strconv.Itoa(key.MapIndex)}}
}

// NotFound writes the details of Airflow 3.2's handlers.
func (adapter) NotFound(w http.ResponseWriter, about airflow.Entity) {
	detail(w, 404, map[airflow.Entity]string{
		airflow.EntityDAG:          "The Dag with ID: `d` was not found",
		airflow.EntityRun:          "The DagRun with dag_id: `d` and run_id: `r` was not found",
		airflow.EntityTaskInstance: "The Task Instance with dag_id: `d`, dag_run_id: `r`, task_id: `t` and map_index: `-1` was not found",
		airflow.EntityXCom:         "XCom entry with key: `pod_name`, task_id: `t`, dag_id: `d`, run_id: `r` and map_index: `-1` not found",
	}[about])
}

// NoRoute writes Starlette's answer for a path it has no route for.
func (adapter) NoRoute(w http.ResponseWriter) { detail(w, 404, "Not Found") }

func (adapter) ServerError(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(500)
	fmt.Fprint(w, "Internal Server Error")
}

// rowOf is ti as fakeV2 holds it, without an id.
func rowOf(ti airflow.TaskInstance) tiRow {
	r := tiRow{dag: ti.DagID, run: ti.RunID, task: ti.TaskID, mapIndex: ti.MapIndex, try: ti.TryNumber, operator: ti.Operator}
	if ti.State != "" {
		r.state = ti.State
	}
	if ti.StartDate != nil {
		r.start = ti.StartDate.UTC().Format(time.RFC3339Nano)
	}
	return r
}
