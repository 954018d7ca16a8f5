package v2

import (
	"bytes"
	"context"
	"encoding/base64"
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

var tiStates = []string{"removed", "scheduled", "queued", "running", "success", "restarting", "failed", "up_for_retry", "up_for_reschedule", "upstream_failed", "skipped", "deferred"}

type tiRow struct {
	id             string
	dag, run, task string
	mapIndex, try  int
	state          any
	start          string // "" is the default start_date
	operator       string // "" is KubernetesPodOperator
	drop           string // a field to leave out of the JSON
}

type dagRow struct {
	id    string
	stale bool
}

// fakeV2 behaves like an Airflow 3.2 API server for what the reaper uses:
// FastAPI ignores unknown query parameters, rejects unknown states and
// unknown batch-body fields with 422, orders by order_by plus id, caps the
// page size, and answers 404 {"detail": ...} for missing objects.
type fakeV2 struct {
	t  *testing.T
	mu sync.Mutex

	dags []dagRow
	runs map[string][]string
	tis  []tiRow
	// xcoms holds the pod_name XCom values as stored JSON; nil is null.
	xcoms map[airflow.TIKey]any

	pageCap      int
	retryOnPage1 int // after serving this many first pages, give a TI a new id
	retried      int
	allowPost    bool
	nextID       int
	// cursor makes the task instance lists page by keyset cursor when asked
	// (3.2.2+); cursorNullAtEnd is 3.3's null next_cursor on the last page.
	cursor          bool
	cursorNullAtEnd bool
	afterPage1      func() // runs once, after the first page of a scan

	calls   map[string]int
	queries []url.Values
	raw     []string
}

func newFake(t *testing.T) *fakeV2 {
	return &fakeV2{t: t, runs: map[string][]string{}, xcoms: map[airflow.TIKey]any{}, calls: map[string]int{}, pageCap: 100, nextID: 1}
}

func newFakeV2(t *testing.T) (*fakeV2, *httptest.Server) {
	f := newFake(t)
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func uuid(n int) string { return fmt.Sprintf("019ac5e0-0000-7000-8000-%012d", n) }

// uuid7ish returns ids that sort in creation order, like UUIDv7.
func (f *fakeV2) uuid7ish() string {
	f.nextID++
	return uuid(f.nextID)
}

func (f *fakeV2) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.raw = append(f.raw, r.URL.EscapedPath())
	f.queries = append(f.queries, r.URL.Query())
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), "/api/v2/")
	if !ok {
		detail(w, 404, "Not Found")
		return
	}
	var seg []string
	for _, s := range strings.Split(rest, "/") {
		u, _ := url.PathUnescape(s)
		seg = append(seg, u)
	}
	if r.Method == http.MethodPost && len(seg) == 6 && seg[5] == "list" {
		if !f.allowPost {
			f.t.Error("the reaper must poll with GET: the batch POST writes an audit log row per call")
		}
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		for k := range body {
			if !slices.Contains([]string{"dag_ids", "dag_run_ids", "task_ids", "state", "pool", "queue", "executor", "page_offset", "page_limit", "order_by"}, k) {
				writeJSON(w, 422, map[string]any{"detail": []map[string]any{{"type": "extra_forbidden", "loc": []string{"body", k}, "msg": "Extra inputs are not permitted"}}})
				return
			}
		}
		writeJSON(w, 200, map[string]any{"task_instances": []any{}, "total_entries": 0})
		return
	}
	q := r.URL.Query()
	limit, offset := 50, 0
	if v := q.Get("limit"); v != "" {
		limit, _ = strconv.Atoi(v)
	}
	limit = min(limit, f.pageCap)
	if v := q.Get("offset"); v != "" {
		offset, _ = strconv.Atoi(v)
	}
	switch {
	case len(seg) == 1 && seg[0] == "version":
		writeJSON(w, 200, map[string]any{"version": "3.2.1", "git_version": nil})
	case len(seg) == 1 && seg[0] == "dags":
		f.calls["dags"]++
		var list []any
		for _, d := range f.dags {
			if !d.stale || q.Get("exclude_stale") == "false" {
				list = append(list, dagJSON(d))
			}
		}
		writeJSON(w, 200, map[string]any{"dags": window(list, offset, limit), "total_entries": len(list)})
	case len(seg) == 2 && seg[0] == "dags":
		for _, d := range f.dags {
			if d.id == seg[1] {
				writeJSON(w, 200, dagJSON(d))
				return
			}
		}
		detail(w, 404, fmt.Sprintf("Dag with id %s was not found", seg[1]))
	case len(seg) == 3 && seg[0] == "dags" && seg[2] == "dagRuns":
		if !f.hasDag(seg[1]) {
			detail(w, 404, fmt.Sprintf("The Dag with ID: `%s` was not found", seg[1]))
			return
		}
		var list []any
		for _, id := range f.runs[seg[1]] {
			list = append(list, runJSON(seg[1], id))
		}
		writeJSON(w, 200, map[string]any{"dag_runs": window(list, offset, limit), "total_entries": len(list)})
	case len(seg) == 4 && seg[0] == "dags" && seg[2] == "dagRuns":
		if slices.Contains(f.runs[seg[1]], seg[3]) {
			writeJSON(w, 200, runJSON(seg[1], seg[3]))
			return
		}
		detail(w, 404, fmt.Sprintf("The DagRun with dag_id: `%s` and run_id: `%s` was not found", seg[1], seg[3]))
	case len(seg) == 5 && seg[0] == "dags" && seg[2] == "dagRuns" && seg[4] == "taskInstances":
		f.listTIs(w, seg, q, offset, limit)
	case (len(seg) == 6 || len(seg) == 7) && seg[0] == "dags" && seg[2] == "dagRuns" && seg[4] == "taskInstances":
		mi := -1
		if len(seg) == 7 {
			mi, _ = strconv.Atoi(seg[6])
		}
		for _, ti := range f.tis {
			if ti.dag == seg[1] && ti.run == seg[3] && ti.task == seg[5] && ti.mapIndex == mi {
				writeJSON(w, 200, tiJSON(ti))
				return
			}
		}
		detail(w, 404, fmt.Sprintf("The Task Instance with dag_id: `%s`, dag_run_id: `%s`, task_id: `%s` and map_index: `%d` was not found", seg[1], seg[3], seg[5], mi))
	case len(seg) == 8 && seg[0] == "dags" && seg[2] == "dagRuns" && seg[4] == "taskInstances" && seg[6] == "xcomEntries":
		f.getXCom(w, seg, q)
	default:
		detail(w, 404, "Not Found")
	}
}

func (f *fakeV2) getXCom(w http.ResponseWriter, seg []string, q url.Values) {
	mi := -1
	if v := q.Get("map_index"); v != "" {
		var err error
		if mi, err = strconv.Atoi(v); err != nil || mi < -1 {
			writeJSON(w, 422, map[string]any{"detail": []map[string]any{{"type": "int_parsing", "loc": []string{"query", "map_index"}, "msg": "Input should be a valid integer", "input": v}}})
			return
		}
	}
	k := airflow.TIKey{DagID: seg[1], RunID: seg[3], TaskID: seg[5], MapIndex: mi}
	v, ok := f.xcoms[k]
	if !ok || seg[7] != "pod_name" {
		detail(w, 404, fmt.Sprintf("XCom entry with key: `%s`, task_id: `%s`, dag_id: `%s`, run_id: `%s` and map_index: `%d` not found", seg[7], k.TaskID, k.DagID, k.RunID, k.MapIndex))
		return
	}
	writeJSON(w, 200, xcomJSON(k, v))
}

// xcomJSON is the pod_name XCom of k.
func xcomJSON(k airflow.TIKey, v any) map[string]any {
	return map[string]any{
		"key": "pod_name", "timestamp": "2026-11-27T06:00:03.5Z", "logical_date": "2026-11-27T06:00:00Z",
		"map_index": k.MapIndex, "task_id": k.TaskID, "dag_id": k.DagID, "run_id": k.RunID,
		"dag_display_name": k.DagID, "task_display_name": k.TaskID, "run_after": "2026-11-27T06:00:00Z", "value": v,
	}
}

func (f *fakeV2) hasDag(id string) bool {
	return slices.ContainsFunc(f.dags, func(d dagRow) bool { return d.id == id })
}

func (f *fakeV2) listTIs(w http.ResponseWriter, seg []string, q url.Values, offset, limit int) {
	f.calls["tis"]++
	if seg[3] != "~" && !slices.Contains(f.runs[seg[1]], seg[3]) {
		detail(w, 404, fmt.Sprintf("DagRun with run_id: `%s` was not found", seg[3]))
		return
	}
	for _, s := range q["state"] {
		if !slices.Contains(tiStates, s) && s != "none" && s != "no_status" {
			writeJSON(w, 422, map[string]any{"detail": []map[string]any{{"type": "value_error", "loc": []string{"query", "state"}, "msg": "Invalid value for state", "input": s}}})
			return
		}
	}
	var rows []tiRow
	for _, ti := range f.tis {
		if (seg[1] == "~" || ti.dag == seg[1]) && (seg[3] == "~" || ti.run == seg[3]) && stateMatches(ti.state, q["state"]) {
			rows = append(rows, ti)
		}
	}
	orderBy := q["order_by"]
	if len(orderBy) == 0 {
		orderBy = []string{"map_index"}
	}
	sort.SliceStable(rows, func(i, j int) bool {
		switch orderBy[0] {
		case "id":
		case "map_index":
			if rows[i].mapIndex != rows[j].mapIndex {
				return rows[i].mapIndex < rows[j].mapIndex
			}
		default:
			f.t.Errorf("unexpected order_by %v", orderBy)
		}
		return rows[i].id < rows[j].id // the server's final tie-breaker
	})
	list := make([]any, 0, len(rows))
	for _, ti := range rows {
		list = append(list, tiJSON(ti))
	}
	if cur, ok := q["cursor"]; ok && f.cursor {
		f.cursorPage(w, rows, cur[0], limit)
		return
	}
	writeJSON(w, 200, map[string]any{"task_instances": window(list, offset, limit), "total_entries": len(list)})
	if offset == 0 && f.afterPage1 != nil {
		f.afterPage1()
		f.afterPage1 = nil
	}
	if offset == 0 && f.retryOnPage1 > 0 {
		// A task is retried while the reaper pages: it gets a new id and
		// moves to the end of the id order.
		f.retryOnPage1--
		k := f.retried % len(f.tis)
		f.retried++
		f.tis[k].id = f.uuid7ish()
		f.tis[k].try++
	}
}

// cursorPage answers a keyset page of rows (sorted by id): the cursor is the
// last id served, base64-wrapped so the client cannot rely on its form.
func (f *fakeV2) cursorPage(w http.ResponseWriter, rows []tiRow, cursor string, limit int) {
	after := ""
	if cursor != "" {
		b, err := base64.StdEncoding.DecodeString(cursor)
		if err != nil {
			detail(w, 400, "Invalid cursor")
			return
		}
		after = string(b)
	}
	var page []any
	more := false
	last := ""
	for _, ti := range rows {
		if ti.id <= after {
			continue
		}
		if len(page) == limit {
			more = true
			break
		}
		page = append(page, tiJSON(ti))
		last = ti.id
	}
	var next, prev any
	if len(page) > 0 && (more || !f.cursorNullAtEnd) {
		next = base64.StdEncoding.EncodeToString([]byte(last))
		prev = next
	}
	if page == nil {
		page = []any{}
	}
	writeJSON(w, 200, map[string]any{"task_instances": page, "next_cursor": next, "previous_cursor": prev})
	if cursor == "" && f.afterPage1 != nil {
		f.afterPage1()
		f.afterPage1 = nil
	}
}

func stateMatches(state any, want []string) bool {
	if len(want) == 0 {
		return true
	}
	if state == nil {
		return slices.Contains(want, "none") || slices.Contains(want, "no_status")
	}
	return slices.Contains(want, state.(string))
}

func window(list []any, offset, limit int) []any {
	if offset >= len(list) {
		return []any{}
	}
	return list[offset:min(offset+limit, len(list))]
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func detail(w http.ResponseWriter, status int, d string) {
	writeJSON(w, status, map[string]any{"detail": d})
}

func dagJSON(d dagRow) map[string]any {
	return map[string]any{
		"dag_id": d.id, "dag_display_name": d.id, "is_paused": false, "is_stale": d.stale,
		"fileloc": "/opt/airflow/dags/x.py", "relative_fileloc": "x.py", "bundle_name": "dags-folder", "bundle_version": nil,
		"timetable_partitioned": false, "tags": []map[string]string{{"name": "k8s", "dag_id": d.id}},
		"max_active_tasks": 16, "max_consecutive_failed_dag_runs": 0, "has_task_concurrency_limits": false,
		"has_import_errors": false, "owners": []string{"airflow"}, "file_token": "abc",
		"last_parsed_time": "2026-11-27T05:59:12.345678Z", "timetable_summary": "@hourly",
		"a_field_from_airflow_3_4": true,
	}
}

func runJSON(dag, run string) map[string]any {
	return map[string]any{
		"dag_run_id": run, "dag_id": dag, "dag_display_name": dag, "run_after": "2026-11-27T06:00:00Z",
		"logical_date": "2026-11-27T06:00:00Z", "run_type": "scheduled", "state": "running",
		"dag_versions": []any{}, "conf": map[string]any{}, "triggered_by": "timetable", "end_date": nil,
	}
}

func tiJSON(ti tiRow) map[string]any {
	start, operator := ti.start, ti.operator
	if start == "" {
		start = "2026-11-27T06:00:02.123456Z"
	}
	if operator == "" {
		operator = "KubernetesPodOperator"
	}
	m := map[string]any{
		"id": ti.id, "task_id": ti.task, "task_display_name": ti.task, "dag_id": ti.dag, "dag_display_name": ti.dag,
		"dag_run_id": ti.run, "map_index": ti.mapIndex, "run_after": "2026-11-27T06:00:00Z",
		"logical_date": "2026-11-27T06:00:00Z", "start_date": start, "end_date": nil,
		"duration": nil, "state": ti.state, "try_number": ti.try, "max_tries": 2, "hostname": "worker-0",
		"unixname": "airflow", "pool": "default_pool", "pool_slots": 1, "queue": "default", "priority_weight": 1,
		"operator": operator, "operator_name": operator, "queued_when": nil,
		"scheduled_when": "2026-11-27T06:00:00.5Z", "pid": 7, "executor": nil, "executor_config": "{}", "note": nil,
		"rendered_map_index": nil, "rendered_fields": map[string]any{"image": "busybox"}, "trigger": nil,
		"triggerer_job": nil, "dag_version": nil, "state_reason": "added after 3.2",
	}
	if ti.drop != "" {
		delete(m, ti.drop)
	}
	return m
}

// addTIs adds n task instances to the run airflowtest.DagID/RunID.
func (f *fakeV2) addTIs(n int, state any) {
	if !f.hasDag(airflowtest.DagID) {
		f.dags = append(f.dags, dagRow{id: airflowtest.DagID})
		f.runs[airflowtest.DagID] = append(f.runs[airflowtest.DagID], airflowtest.RunID)
	}
	for i := 0; i < n; i++ {
		k := len(f.tis)
		f.tis = append(f.tis, tiRow{id: f.uuid7ish(), dag: airflowtest.DagID, run: airflowtest.RunID, task: fmt.Sprintf("task_%03d", k), mapIndex: -1, try: 1, state: state})
	}
}

func listRun(c airflow.Client) ([]airflow.TaskInstance, error) {
	return c.ListRunTaskInstances(context.Background(), airflowtest.DagID, airflowtest.RunID)
}

// mustListRun lists the run's task instances through c, or fails the test.
func mustListRun(t *testing.T, c airflow.Client) []airflow.TaskInstance {
	t.Helper()
	tis, err := listRun(c)
	if err != nil {
		t.Fatal(err)
	}
	return tis
}

func newClient(t *testing.T, srv *httptest.Server) airflow.Client {
	return adapter{}.NewClient(t, srv.URL, airflowtest.HTTPClient(t))
}

func TestFakeBatchRejectsUnknownBodyField(t *testing.T) {
	f, srv := newFakeV2(t)
	f.allowPost = true // this POST is deliberate
	resp, err := http.Post(srv.URL+"/api/v2/dags/~/dagRuns/~/taskInstances/list", "application/json", bytes.NewReader([]byte(`{"operator":["KubernetesPodOperator"]}`)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 422 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestListRunTaskInstancesPages(t *testing.T) {
	f, srv := newFakeV2(t)
	f.pageCap = 50 // [api] maximum_page_limit below the requested 100
	f.addTIs(100, "running")
	f.addTIs(60, nil)
	f.addTIs(20, "deferred")
	f.addTIs(25, "success")
	f.tis[3].mapIndex = 7
	tis := mustListRun(t, newClient(t, srv))
	if len(tis) != 205 || f.calls["tis"] != 5 {
		t.Fatalf("%d TIs in %d calls, want 205 in 5", len(tis), f.calls["tis"])
	}
	q := f.queries[0]
	if _, ok := q["state"]; ok || !slices.Equal(q["order_by"], []string{"id"}) || q.Get("limit") != "100" || q.Get("offset") != "0" {
		t.Errorf("query %v", q)
	}
	if f.queries[1].Get("offset") != "50" {
		t.Errorf("the second page must start after the 50 rows returned, got offset %s", f.queries[1].Get("offset"))
	}
	if f.raw[0] != "/api/v2/dags/etl.daily/dagRuns/manual__2026-11-27T06:00:00+00:00/taskInstances" {
		t.Errorf("path %s", f.raw[0])
	}
	states := map[string]int{}
	for _, ti := range tis {
		states[ti.State]++
	}
	if states[""] != 60 || states["running"] != 100 || states["deferred"] != 20 || states["success"] != 25 || len(states) != 4 {
		t.Errorf("states %v", states)
	}
	got := tis[3]
	if got.MapIndex != 7 || got.Operator != "KubernetesPodOperator" || got.StartDate == nil ||
		!got.StartDate.Equal(time.Date(2026, 11, 27, 6, 0, 2, 123456000, time.UTC)) || got.EndDate != nil {
		t.Errorf("row %+v", got)
	}
}

func TestUnknownStateIsKeptVerbatim(t *testing.T) {
	f, srv := newFakeV2(t)
	f.dags = []dagRow{{id: "d"}}
	f.runs["d"] = []string{"r"}
	f.tis = []tiRow{{id: uuid(1), dag: "d", run: "r", task: "t", mapIndex: -1, try: 1, state: "awaiting_something_new"}}
	tis, err := newClient(t, srv).ListRunTaskInstances(context.Background(), "d", "r")
	if err != nil || len(tis) != 1 || tis[0].State != "awaiting_something_new" {
		t.Fatalf("%+v %v", tis, err)
	}
}

func TestRetriedTaskMidScan(t *testing.T) {
	f, srv := newFakeV2(t)
	f.addTIs(150, "running")
	f.retryOnPage1 = 1
	tis := mustListRun(t, newClient(t, srv))
	if len(tis) != 150 || f.calls["tis"] != 4 {
		t.Fatalf("%d rows in %d calls; want 150 after one rescan (4 calls)", len(tis), f.calls["tis"])
	}
	for _, ti := range tis {
		if ti.TaskID == "task_000" && ti.TryNumber != 2 {
			t.Errorf("retried task %+v", ti)
		}
	}
}

func newCursorClient(t *testing.T, srv *httptest.Server) airflow.Client {
	hc, err := transport.New(transport.Options{MaxRetries: 0, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(srv.URL, hc, airflow.Paging{Cursor: true})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCursorPagingListsEverything(t *testing.T) {
	for _, nullAtEnd := range []bool{false, true} {
		t.Run(fmt.Sprint("nullAtEnd=", nullAtEnd), func(t *testing.T) {
			f, srv := newFakeV2(t)
			f.cursor, f.cursorNullAtEnd = true, nullAtEnd
			f.addTIs(250, "running")
			f.addTIs(30, "success")
			tis := mustListRun(t, newCursorClient(t, srv))
			if len(tis) != 280 {
				t.Fatalf("%d rows, want 280", len(tis))
			}
			// 3.2.2 keeps a next_cursor on the last page: one more, empty, call.
			if want := map[bool]int{true: 3, false: 4}[nullAtEnd]; f.calls["tis"] != want {
				t.Fatalf("%d calls, want %d", f.calls["tis"], want)
			}
			for i, q := range f.queries {
				if _, ok := q["cursor"]; !ok || q.Has("offset") {
					t.Fatalf("request %d: %v, want a cursor and no offset", i, q)
				}
			}
			if first := f.queries[0]; first.Get("cursor") != "" || first.Get("order_by") != "id" {
				t.Fatalf("first page asked %v", first)
			}
		})
	}
}

// A row that leaves the listing while the reaper pages would shift every
// later row under offsets (one skipped, a rescan); a keyset cursor skips
// none and needs no rescan.
func TestCursorPagingRowLeavingMidScan(t *testing.T) {
	f, srv := newFakeV2(t)
	f.cursor = true
	f.addTIs(250, "running")
	f.afterPage1 = func() { f.tis = f.tis[1:] }
	tis := mustListRun(t, newCursorClient(t, srv))
	if len(tis) != 250 || f.calls["tis"] != 4 {
		t.Fatalf("%d rows in %d calls, want all 250 (the one that left as first seen) in one scan of 4 calls", len(tis), f.calls["tis"])
	}
}

func TestCursorClientFallsBackToOffsets(t *testing.T) {
	f, srv := newFakeV2(t) // a server without cursor paging ignores the parameter
	f.addTIs(150, "running")
	tis := mustListRun(t, newCursorClient(t, srv))
	if len(tis) != 150 {
		t.Fatalf("%d rows, want 150", len(tis))
	}
	if last := f.queries[len(f.queries)-1]; last.Get("offset") != "100" {
		t.Fatalf("last request %v, want offset paging", last)
	}
}

func TestCursorMalformedAnswersFail(t *testing.T) {
	for name, body := range map[string]string{
		"cursor not a string": `{"task_instances": [], "next_cursor": 7, "previous_cursor": null}`,
		"empty cursor":        `{"task_instances": [], "next_cursor": "", "previous_cursor": null}`,
		"no list":             `{"next_cursor": null, "previous_cursor": null}`,
		"neither shape":       `{"task_instances": []}`,
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, body)
			}))
			t.Cleanup(srv.Close)
			if _, err := listRun(newCursorClient(t, srv)); err == nil {
				t.Fatal("a malformed cursor page was accepted")
			}
		})
	}
}

func TestPersistentChurnFails(t *testing.T) {
	f, srv := newFakeV2(t)
	f.addTIs(150, "running")
	f.retryOnPage1 = 1000
	_, err := listRun(newClient(t, srv))
	if !errors.Is(err, transport.ErrInconsistentListing) || f.calls["tis"] != 2*transport.ListScans {
		t.Fatalf("err %v after %d calls", err, f.calls["tis"])
	}
}

func TestMissingKeyFieldFails(t *testing.T) {
	for _, field := range []string{"map_index", "dag_run_id", "try_number"} {
		f, srv := newFakeV2(t)
		f.addTIs(3, "running")
		f.tis[1].drop = field
		_, err := listRun(newClient(t, srv))
		if err == nil || !strings.Contains(err.Error(), "lacks "+field) {
			t.Fatalf("%s: err %v", field, err)
		}
	}
}

func TestMalformedAnswersFail(t *testing.T) {
	for name, body := range map[string]string{
		"empty":            ``,
		"no total":         `{"task_instances":[]}`,
		"null list":        `{"task_instances":null,"total_entries":0}`,
		"truncated":        `{"task_instances":[{"id":`,
		"bad date":         `{"task_instances":[{"id":"019ac5e0-0000-7000-8000-000000000001","dag_id":"d","dag_run_id":"r","task_id":"t","map_index":-1,"try_number":1,"start_date":"yesterday"}],"total_entries":1}`,
		"string map_index": `{"task_instances":[{"id":"019ac5e0-0000-7000-8000-000000000001","dag_id":"d","dag_run_id":"r","task_id":"t","map_index":"-1","try_number":1}],"total_entries":1}`,
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, body)
		}))
		if _, err := listRun(newClient(t, srv)); err == nil {
			t.Errorf("%s: no error", name)
		}
		srv.Close()
	}
}

func TestListDagIDsIncludesStale(t *testing.T) {
	f, srv := newFakeV2(t)
	for i := 0; i < 130; i++ {
		f.dags = append(f.dags, dagRow{id: fmt.Sprintf("dag_%03d", i), stale: i%3 == 0})
	}
	ids, err := newClient(t, srv).ListDagIDs(context.Background())
	if err != nil || len(ids) != 130 {
		t.Fatalf("%d ids, %v", len(ids), err)
	}
	if f.queries[0].Get("exclude_stale") != "false" {
		t.Errorf("query %v", f.queries[0])
	}
}
