package v1

import (
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"testing"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
	"github.com/kpo-reaper/kpo-reaper/internal/airflow/airflowtest"
)

func TestContract(t *testing.T) { airflowtest.RunContract(t, adapter{}) }

// adapter serves the contract's fixtures from fakeV1, in the /api/v1
// shapes.
type adapter struct{}

func (adapter) APIVersion() string    { return "v1" }
func (adapter) ServerVersion() string { return "2.10.5" }

func (adapter) Fake(t *testing.T, fx airflowtest.Fixture) http.Handler {
	f := newFake(t)
	for _, d := range fx.DAGs {
		f.dags = append(f.dags, dagRow{id: d.ID, active: !d.Stale})
	}
	maps.Copy(f.runs, fx.Runs)
	for _, ti := range fx.TIs {
		f.tis = append(f.tis, rowOf(ti))
	}
	maps.Copy(f.xcoms, fx.XComs)
	return f
}

func (adapter) NewClient(_ *testing.T, baseURL string, hc *http.Client) airflow.Client {
	return New(baseURL, hc, airflow.Paging{})
}

func (adapter) DAG(id string) map[string]any                        { return dagJSON(dagRow{id: id, active: true}) }
func (adapter) Run(dagID, runID string) map[string]any              { return runJSON(dagID, runID) }
func (adapter) TaskInstance(ti airflow.TaskInstance) map[string]any { return tiJSON(rowOf(ti)) }

func (adapter) XCom(key airflow.TIKey, value any) map[string]any {
	return xcomJSON(key, value)
}

// XComQuery: unmapped, no map_index, which every 2.x accepts; mapped,
// exactly map_index (2.7+).
func (adapter) XComQuery(key airflow.TIKey) url.Values {
	if key.MapIndex < 0 {
		return nil
	}
	return url.Values{"map_index": {strconv.Itoa(key.MapIndex)}}
}

// NotFound writes the titles of Airflow 2.10's handlers.
func (adapter) NotFound(w http.ResponseWriter, about airflow.Entity) {
	notFound(w, map[airflow.Entity]string{
		airflow.EntityDAG:          "DAG not found",
		airflow.EntityRun:          "DAGRun not found",
		airflow.EntityTaskInstance: "Task instance not found",
		airflow.EntityXCom:         "XCom entry not found",
	}[about])
}

func (adapter) NoRoute(w http.ResponseWriter) {
	problem(w, 404, "about:blank", "Not Found", "The requested URL was not found on the server.")
}

func (adapter) ServerError(w http.ResponseWriter) {
	problem(w, 500, "about:blank", "Internal Server Error", "")
}

// rowOf is ti as fakeV1 holds it; dates in the +00:00 form Airflow 2 writes.
func rowOf(ti airflow.TaskInstance) tiRow {
	r := tiRow{dag: ti.DagID, run: ti.RunID, task: ti.TaskID, mapIndex: ti.MapIndex, try: ti.TryNumber, operator: ti.Operator}
	if ti.State != "" {
		r.state = ti.State
	}
	if ti.StartDate != nil {
		r.start = ti.StartDate.UTC().Format("2006-01-02T15:04:05.999999-07:00")
	}
	return r
}
