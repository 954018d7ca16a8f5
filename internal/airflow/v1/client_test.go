package v1

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
	"github.com/kpo-reaper/kpo-reaper/internal/airflow/airflowtest"
	"github.com/kpo-reaper/kpo-reaper/internal/airflow/transport"
)

// allowedParams are the query parameters the Airflow 2.10 spec declares per
// route (api/airflow/v1-2.10.0.yaml). Connexion answers 400 to any other.
var allowedParams = map[string][]string{
	"version":  {},
	"dags":     {"limit", "offset", "order_by", "tags", "only_active", "paused", "fields", "dag_id_pattern"},
	"dag":      {"fields"},
	"dagRuns":  {"limit", "offset", "execution_date_gte", "execution_date_lte", "start_date_gte", "start_date_lte", "end_date_gte", "end_date_lte", "updated_at_gte", "updated_at_lte", "state", "order_by", "fields"},
	"dagRun":   {"fields"},
	"tis":      {"execution_date_gte", "execution_date_lte", "start_date_gte", "start_date_lte", "end_date_gte", "end_date_lte", "updated_at_gte", "updated_at_lte", "duration_gte", "duration_lte", "state", "pool", "queue", "executor", "limit", "offset"},
	"ti":       {},
	"mappedTI": {},
	"xcom":     {"map_index", "deserialize", "stringify"},
}

// allowedXComParamsBefore27 are get_xcom_entry's parameters before Airflow
// 2.7 added map_index (v1-2.5.0.yaml).
var allowedXComParamsBefore27 = []string{"deserialize"}

var knownStates = []string{"success", "running", "failed", "upstream_failed", "skipped", "up_for_retry", "up_for_reschedule", "queued", "none", "scheduled", "deferred", "removed", "restarting"}

type dagRow struct {
	id     string
	active bool
	sched  string // raw JSON for schedule_interval
}

type tiRow struct {
	dag, run, task string
	mapIndex, try  int
	state          any // nil is null
	start          any
	operator       string
}

// fakeV1 behaves like an Airflow 2.10 webserver's /api/v1 as far as the
// reaper can tell: strict query parameters, problem+json errors, unordered
// offset paging when asked, and the 2.x habit of listing an unknown run or
// DAG as empty instead of 404.
type fakeV1 struct {
	t  *testing.T
	mu sync.Mutex

	dags []dagRow
	runs map[string][]string
	tis  []tiRow
	// xcoms holds the pod_name XCom values as the stringified API
	// renders them; nil is a null value.
	xcoms map[airflow.TIKey]any

	unstableListings int  // this many TI listing calls see a reshuffled table
	totalExtra       int  // added to total_entries, as if rows were hidden
	before27         bool // get_xcom_entry as before Airflow 2.7: no map_index at all

	calls    map[string]int
	rawPaths []string
	queries  []url.Values
}

func newFake(t *testing.T) *fakeV1 {
	return &fakeV1{t: t, runs: map[string][]string{}, xcoms: map[airflow.TIKey]any{}, calls: map[string]int{}}
}

func newFakeV1(t *testing.T) (*fakeV1, *httptest.Server) {
	f := newFake(t)
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeV1) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Method != http.MethodGet {
		f.t.Errorf("unexpected %s %s", r.Method, r.URL)
	}
	f.rawPaths = append(f.rawPaths, r.URL.EscapedPath())
	f.queries = append(f.queries, r.URL.Query())
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), "/api/v1/")
	if !ok {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(404)
		fmt.Fprint(w, "<h1>Not Found</h1>")
		return
	}
	var seg []string
	for _, s := range strings.Split(rest, "/") {
		u, err := url.PathUnescape(s) // werkzeug's decoding: %2B and + both stay +
		if err != nil {
			problem(w, 400, "about:blank", "Bad Request", "bad path")
			return
		}
		seg = append(seg, u)
	}
	route := ""
	switch {
	case len(seg) == 1 && seg[0] == "version":
		route = "version"
	case len(seg) == 1 && seg[0] == "dags":
		route = "dags"
	case len(seg) == 2 && seg[0] == "dags":
		route = "dag"
	case len(seg) == 3 && seg[0] == "dags" && seg[2] == "dagRuns":
		route = "dagRuns"
	case len(seg) == 4 && seg[0] == "dags" && seg[2] == "dagRuns":
		route = "dagRun"
	case len(seg) == 5 && seg[0] == "dags" && seg[2] == "dagRuns" && seg[4] == "taskInstances":
		route = "tis"
	case len(seg) == 6 && seg[0] == "dags" && seg[2] == "dagRuns" && seg[4] == "taskInstances":
		route = "ti"
	case len(seg) == 7 && seg[0] == "dags" && seg[2] == "dagRuns" && seg[4] == "taskInstances":
		route = "mappedTI"
	case len(seg) == 8 && seg[0] == "dags" && seg[2] == "dagRuns" && seg[4] == "taskInstances" && seg[6] == "xcomEntries":
		route = "xcom"
	default:
		// Airflow 2 turns unknown /api/v1 routes into about:blank problems.
		problem(w, 404, "about:blank", "Not Found", "The requested URL was not found on the server.")
		return
	}
	f.calls[route]++
	q := r.URL.Query()
	allowed := allowedParams[route]
	if route == "xcom" && f.before27 {
		allowed = allowedXComParamsBefore27
	}
	var extra []string
	for k := range q {
		if !slices.Contains(allowed, k) {
			extra = append(extra, k)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		problem(w, 400, "about:blank", "Bad Request", fmt.Sprintf("Extra query parameter(s) %s not in spec", strings.Join(extra, ", ")))
		return
	}
	limit, offset := 100, 0
	if v := q.Get("limit"); v != "" {
		limit, _ = strconv.Atoi(v)
	}
	if v := q.Get("offset"); v != "" {
		offset, _ = strconv.Atoi(v)
	}
	switch route {
	case "version":
		writeJSON(w, map[string]any{"version": "2.10.5", "git_version": ".release:abc"})
	case "dags":
		var list []any
		for _, d := range f.dags {
			if d.active || q.Get("only_active") == "false" {
				list = append(list, dagJSON(d))
			}
		}
		writeJSON(w, map[string]any{"dags": window(list, offset, limit), "total_entries": len(list)})
	case "dag":
		for _, d := range f.dags {
			if d.id == seg[1] {
				writeJSON(w, dagJSON(d))
				return
			}
		}
		notFound(w, fmt.Sprintf("DAG with dag_id: '%s' not found", seg[1]))
	case "dagRuns":
		var list []any
		for _, id := range f.runs[seg[1]] { // unknown DAG: empty, like 2.x
			list = append(list, runJSON(seg[1], id))
		}
		writeJSON(w, map[string]any{"dag_runs": window(list, offset, limit), "total_entries": len(list)})
	case "dagRun":
		if slices.Contains(f.runs[seg[1]], seg[3]) {
			writeJSON(w, runJSON(seg[1], seg[3]))
			return
		}
		notFound(w, fmt.Sprintf("DAGRun with DAG ID: '%s' and DagRun ID: '%s' not found", seg[1], seg[3]))
	case "tis":
		for _, s := range q["state"] {
			if !slices.Contains(knownStates, s) {
				problem(w, 500, "about:blank", "Internal Server Error", "bad state")
				return
			}
		}
		var rows []tiRow
		for _, ti := range f.tis {
			if (seg[1] == "~" || ti.dag == seg[1]) && (seg[3] == "~" || ti.run == seg[3]) && stateMatches(ti.state, q["state"]) {
				rows = append(rows, ti)
			}
		}
		if f.unstableListings > 0 {
			// No ORDER BY: each query may return the rows in another order.
			f.unstableListings--
			k := f.calls["tis"] % max(len(rows), 1)
			rows = append(rows[k:len(rows):len(rows)], rows[:k]...)
		}
		var list []any
		for _, ti := range rows {
			list = append(list, tiJSON(ti))
		}
		writeJSON(w, map[string]any{"task_instances": window(list, offset, limit), "total_entries": len(list) + f.totalExtra})
	case "ti", "mappedTI":
		mi := -1
		if route == "mappedTI" {
			mi, _ = strconv.Atoi(seg[6])
		}
		for _, ti := range f.tis {
			if ti.dag == seg[1] && ti.run == seg[3] && ti.task == seg[5] && ti.mapIndex == mi {
				writeJSON(w, tiJSON(ti))
				return
			}
		}
		notFound(w, "Task instance not found")
	case "xcom":
		mi := -1 // the handler's default since 2.7
		if v := q.Get("map_index"); v != "" {
			mi, _ = strconv.Atoi(v)
		}
		for k, v := range f.xcoms {
			// Before 2.7 the query has no map_index filter at all.
			if k.DagID == seg[1] && k.RunID == seg[3] && k.TaskID == seg[5] && seg[7] == "pod_name" && (f.before27 || k.MapIndex == mi) {
				m := xcomJSON(k, v)
				if f.before27 {
					delete(m, "map_index")
				}
				writeJSON(w, m)
				return
			}
		}
		notFound(w, "XCom entry not found")
	}
}

func stateMatches(state any, want []string) bool {
	if len(want) == 0 {
		return true
	}
	s, _ := state.(string)
	if state == nil {
		s = "none"
	}
	return slices.Contains(want, s)
}

func window(list []any, offset, limit int) []any {
	if list == nil || offset >= len(list) {
		return []any{}
	}
	return list[offset:min(offset+limit, len(list))]
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func problem(w http.ResponseWriter, status int, typ, title, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"type": typ, "title": title, "status": status, "detail": detail})
}

func notFound(w http.ResponseWriter, title string) {
	problem(w, 404, "https://airflow.apache.org/docs/apache-airflow/2.10.5/stable-rest-api-ref.html#section/Errors/NotFound", title, "")
}

func dagJSON(d dagRow) map[string]any {
	sched := d.sched
	if sched == "" {
		sched = `{"__type":"CronExpression","value":"0 * * * *"}`
	}
	return map[string]any{
		"dag_id": d.id, "dag_display_name": d.id, "root_dag_id": nil, "is_paused": false, "is_active": d.active,
		"is_subdag": false, "last_parsed_time": "2026-11-27T05:59:12.345678+00:00", "last_pickled": nil,
		"last_expired": nil, "scheduler_lock": nil, "pickle_id": nil, "default_view": "grid",
		"fileloc": "/opt/airflow/dags/x.py", "file_token": "Ii9vcHQi.abc", "owners": []string{"airflow"},
		"description": nil, "schedule_interval": json.RawMessage(sched), "timetable_description": "hourly",
		"tags": []map[string]string{{"name": "k8s"}}, "max_active_tasks": 16, "max_active_runs": 16,
		"has_task_concurrency_limits": false, "has_import_errors": false, "next_dagrun": nil,
		"timetable_summary": "0 * * * *", "dataset_expression": nil, "max_consecutive_failed_dag_runs": 0,
	}
}

func runJSON(dag, run string) map[string]any {
	return map[string]any{
		"dag_run_id": run, "dag_id": dag, "logical_date": "2026-11-27T06:00:00+00:00",
		"execution_date": "2026-11-27T06:00:00+00:00", "start_date": "2026-11-27T06:00:01.5+00:00",
		"end_date": nil, "data_interval_start": "2026-11-27T05:00:00+00:00", "data_interval_end": "2026-11-27T06:00:00+00:00",
		"last_scheduling_decision": nil, "run_type": "scheduled", "state": "running", "external_trigger": false,
		"conf": map[string]any{}, "note": nil,
	}
}

func tiJSON(ti tiRow) map[string]any {
	start := ti.start
	if start == nil {
		start = "2026-11-27T06:00:02.123456+00:00"
	}
	return map[string]any{
		"task_id": ti.task, "task_display_name": ti.task, "dag_id": ti.dag, "dag_run_id": ti.run,
		"execution_date": "2026-11-27T06:00:00+00:00", "start_date": start, "end_date": nil,
		"duration": 12.5, "state": ti.state, "try_number": ti.try, "map_index": ti.mapIndex, "max_tries": 2,
		"hostname": "worker-0", "unixname": "airflow", "pool": "default_pool", "pool_slots": 1,
		"queue": "default", "priority_weight": 1, "operator": ti.operator, "queued_when": "2026-11-27T06:00:01+00:00",
		"pid": 42, "executor": nil, "executor_config": "{}", "sla_miss": nil, "rendered_map_index": nil,
		"rendered_fields": map[string]any{"image": "busybox", "cmds": []string{"sleep", "600"}},
		"trigger":         nil, "triggerer_job": nil, "note": nil,
		"a_field_from_a_later_airflow": map[string]any{"nested": []int{1, 2}},
	}
}

// xcomJSON is the pod_name XCom of k.
func xcomJSON(k airflow.TIKey, v any) map[string]any {
	return map[string]any{
		"dag_id": k.DagID, "task_id": k.TaskID, "key": "pod_name", "map_index": k.MapIndex, "value": v,
		"execution_date": "2026-11-27T06:00:00+00:00", "timestamp": "2026-11-27T06:00:03.5+00:00",
	}
}

// addTIs adds n task instances to the run airflowtest.DagID/RunID.
func (f *fakeV1) addTIs(n int, state any) {
	if !slices.Contains(f.runs[airflowtest.DagID], airflowtest.RunID) {
		f.runs[airflowtest.DagID] = append(f.runs[airflowtest.DagID], airflowtest.RunID)
	}
	for i := 0; i < n; i++ {
		k := len(f.tis)
		f.tis = append(f.tis, tiRow{dag: airflowtest.DagID, run: airflowtest.RunID, task: fmt.Sprintf("task_%03d", k), mapIndex: -1, try: 1, state: state, operator: "KubernetesPodOperator"})
	}
}

func listRun(t *testing.T, srv *httptest.Server) ([]airflow.TaskInstance, error) {
	return newClient(t, srv).ListRunTaskInstances(context.Background(), airflowtest.DagID, airflowtest.RunID)
}

func newClient(t *testing.T, srv *httptest.Server) airflow.Client {
	return adapter{}.NewClient(t, srv.URL, airflowtest.HTTPClient(t))
}

func TestFakeRejectsUnknownParameters(t *testing.T) {
	_, srv := newFakeV1(t)
	resp, err := http.Get(srv.URL + "/api/v1/dags/~/dagRuns/~/taskInstances?order_by=id&operator=KubernetesPodOperator")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("the fake must be as strict as Connexion, got %d", resp.StatusCode)
	}
}

func TestListRunTaskInstancesPages(t *testing.T) {
	f, srv := newFakeV1(t)
	f.addTIs(120, "running")
	f.addTIs(90, nil) // no status yet
	f.addTIs(40, "queued")
	f.addTIs(30, "success")
	f.tis[0].mapIndex, f.tis[0].task = 3, "mapped"
	tis, err := listRun(t, srv)
	if err != nil {
		t.Fatal(err)
	}
	if len(tis) != 280 || f.calls["tis"] != 3 {
		t.Fatalf("%d task instances in %d calls, want 280 in 3", len(tis), f.calls["tis"])
	}
	if _, ok := f.queries[0]["state"]; ok {
		t.Error("a run listing must not filter by state")
	}
	if f.queries[0].Get("limit") != "100" || f.queries[1].Get("offset") != "100" {
		t.Errorf("paging %v", f.queries[:2])
	}
	if f.rawPaths[0] != "/api/v1/dags/etl.daily/dagRuns/manual__2026-11-27T06:00:00+00:00/taskInstances" {
		t.Errorf("path %s", f.rawPaths[0])
	}
	counts := map[string]int{}
	for _, ti := range tis {
		counts[ti.State]++
	}
	if counts["running"] != 120 || counts[""] != 90 || counts["queued"] != 40 || counts["success"] != 30 {
		t.Errorf("states %v", counts)
	}
	first := tis[0]
	wantStart := time.Date(2026, 11, 27, 6, 0, 2, 123456000, time.UTC)
	if first.MapIndex != 3 || first.TaskID != "mapped" || first.TryNumber != 1 || first.Operator != "KubernetesPodOperator" ||
		first.StartDate == nil || !first.StartDate.Equal(wantStart) || first.EndDate != nil || first.RunID != airflowtest.RunID {
		t.Errorf("first %+v", first)
	}
}

func TestUnstableOrderIsRescanned(t *testing.T) {
	f, srv := newFakeV1(t)
	f.addTIs(250, "running")
	f.unstableListings = 3 // the first scan only
	tis, err := listRun(t, srv)
	if err != nil {
		t.Fatal(err)
	}
	if len(tis) != 250 || f.calls["tis"] != 6 {
		t.Fatalf("%d rows in %d calls, want 250 in 6 (two scans)", len(tis), f.calls["tis"])
	}
}

func TestPersistentlyUnstableOrderFails(t *testing.T) {
	f, srv := newFakeV1(t)
	f.addTIs(250, "running")
	f.unstableListings = 1000
	_, err := listRun(t, srv)
	if !errors.Is(err, transport.ErrInconsistentListing) {
		t.Fatalf("err %v", err)
	}
	if f.calls["tis"] != 3*transport.ListScans {
		t.Fatalf("%d calls, want %d", f.calls["tis"], 3*transport.ListScans)
	}
	if !strings.Contains(err.Error(), "inconsistent listing") {
		t.Errorf("err %v", err)
	}
}

func TestTotalAboveRowsFails(t *testing.T) {
	f, srv := newFakeV1(t)
	f.addTIs(130, "running")
	f.totalExtra = 1
	if _, err := listRun(t, srv); !errors.Is(err, transport.ErrInconsistentListing) {
		t.Fatalf("err %v", err)
	}
}

func TestUnknownStateFailsClosed(t *testing.T) {
	f, srv := newFakeV1(t)
	f.addTIs(3, "running")
	f.tis[1].state = "sensing" // removed in 2.4; the 2.5 client rejects it
	_, err := listRun(t, srv)
	if err == nil || !strings.Contains(err.Error(), "sensing") {
		t.Fatalf("err %v", err)
	}
}

func TestUnparsableDateFails(t *testing.T) {
	f, srv := newFakeV1(t)
	f.addTIs(3, "running")
	f.tis[2].start = "27/11/2026 06:00"
	_, err := listRun(t, srv)
	if err == nil || !strings.Contains(err.Error(), "start_date") {
		t.Fatalf("err %v", err)
	}
}

func TestEmptyJSONAnswerFails(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
	}))
	defer srv.Close()
	// The generated client decodes an empty body as an empty collection.
	_, err := listRun(t, srv)
	if err == nil || !strings.Contains(err.Error(), "lacks task_instances or total_entries") {
		t.Fatalf("err %v", err)
	}
}

func TestListDagIDsIncludesInactive(t *testing.T) {
	f, srv := newFakeV1(t)
	for i := 0; i < 150; i++ {
		f.dags = append(f.dags, dagRow{id: fmt.Sprintf("dag_%03d", i), active: i%2 == 0})
	}
	f.dags[1].sched = "null"
	f.dags[3].sched = `{"__type":"TimeDelta","days":1,"seconds":0,"microseconds":0}`
	f.dags[5].sched = `{"__type":"CronExpression","value":"Dataset"}`
	ids, err := newClient(t, srv).ListDagIDs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 150 || f.queries[0].Get("only_active") != "false" {
		t.Fatalf("%d ids, query %v", len(ids), f.queries[0])
	}
}

func TestPodNameXComMappedBefore27Fails(t *testing.T) {
	f, srv := newFakeV1(t)
	f.before27 = true
	f.xcoms[airflow.TIKey{DagID: "d", RunID: "r", TaskID: "t", MapIndex: 0}] = "pod-0"
	f.xcoms[airflow.TIKey{DagID: "d", RunID: "r", TaskID: "u", MapIndex: -1}] = "pod-u"
	c := newClient(t, srv)
	_, err := c.PodNameXCom(context.Background(), airflow.TIKey{DagID: "d", RunID: "r", TaskID: "t", MapIndex: 0})
	if err == nil || errors.Is(err, airflow.ErrNotFound) || !errors.Is(err, airflow.ErrUnsupported) || !strings.Contains(err.Error(), "Airflow before 2.7") || !strings.Contains(err.Error(), "400") {
		t.Fatalf("err %v", err)
	}
	// An unmapped task has only map index -1, so the old query is exact.
	if got, err := c.PodNameXCom(context.Background(), airflow.TIKey{DagID: "d", RunID: "r", TaskID: "u", MapIndex: -1}); err != nil || got != "pod-u" {
		t.Fatalf("got %q, err %v", got, err)
	}
}
