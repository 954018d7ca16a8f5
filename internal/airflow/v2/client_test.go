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
	"github.com/kpo-reaper/kpo-reaper/internal/airflow/transport"
)

var tiStates = []string{"removed", "scheduled", "queued", "running", "success", "restarting", "failed", "up_for_retry", "up_for_reschedule", "upstream_failed", "skipped", "deferred"}

type tiRow struct {
	id             string
	dag, run, task string
	mapIndex, try  int
	state          any
	drop           string // a field to leave out of the JSON
}

type xcomID struct {
	dag, run, task string
	mapIndex       int
	key            string
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
	// xcoms holds XCom values as stored JSON; nil is null.
	xcoms map[xcomID]any

	pageCap      int
	retryOnPage1 int // after serving this many first pages, give a TI a new id
	retried      int
	html404      bool
	html200      bool
	fail500      int // answer this many requests with 500 first
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

func newFakeV2(t *testing.T) (*fakeV2, *httptest.Server) {
	f := &fakeV2{t: t, runs: map[string][]string{}, xcoms: map[xcomID]any{}, calls: map[string]int{}, pageCap: 100, nextID: 1}
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
	if f.fail500 > 0 {
		f.fail500--
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(500)
		fmt.Fprint(w, "Internal Server Error")
		return
	}
	if f.html200 {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, "<!DOCTYPE html><title>Sign in</title>")
		return
	}
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
		if f.html404 {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(404)
			fmt.Fprint(w, "<center>nginx</center>")
			return
		}
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
	if f.html404 {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(404)
		fmt.Fprint(w, "<center>nginx</center>")
		return
	}
	mi := -1
	if v := q.Get("map_index"); v != "" {
		var err error
		if mi, err = strconv.Atoi(v); err != nil || mi < -1 {
			writeJSON(w, 422, map[string]any{"detail": []map[string]any{{"type": "int_parsing", "loc": []string{"query", "map_index"}, "msg": "Input should be a valid integer", "input": v}}})
			return
		}
	}
	id := xcomID{seg[1], seg[3], seg[5], mi, seg[7]}
	v, ok := f.xcoms[id]
	if !ok {
		detail(w, 404, fmt.Sprintf("XCom entry with key: `%s`, task_id: `%s`, dag_id: `%s`, run_id: `%s` and map_index: `%d` not found", id.key, id.task, id.dag, id.run, id.mapIndex))
		return
	}
	writeJSON(w, 200, map[string]any{
		"key": id.key, "timestamp": "2026-11-27T06:00:03.5Z", "logical_date": "2026-11-27T06:00:00Z",
		"map_index": id.mapIndex, "task_id": id.task, "dag_id": id.dag, "run_id": id.run,
		"dag_display_name": id.dag, "task_display_name": id.task, "run_after": "2026-11-27T06:00:00Z", "value": v,
	})
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
	m := map[string]any{
		"id": ti.id, "task_id": ti.task, "task_display_name": ti.task, "dag_id": ti.dag, "dag_display_name": ti.dag,
		"dag_run_id": ti.run, "map_index": ti.mapIndex, "run_after": "2026-11-27T06:00:00Z",
		"logical_date": "2026-11-27T06:00:00Z", "start_date": "2026-11-27T06:00:02.123456Z", "end_date": nil,
		"duration": nil, "state": ti.state, "try_number": ti.try, "max_tries": 2, "hostname": "worker-0",
		"unixname": "airflow", "pool": "default_pool", "pool_slots": 1, "queue": "default", "priority_weight": 1,
		"operator": "KubernetesPodOperator", "operator_name": "KubernetesPodOperator", "queued_when": nil,
		"scheduled_when": "2026-11-27T06:00:00.5Z", "pid": 7, "executor": nil, "executor_config": "{}", "note": nil,
		"rendered_map_index": nil, "rendered_fields": map[string]any{"image": "busybox"}, "trigger": nil,
		"triggerer_job": nil, "dag_version": nil, "state_reason": "added after 3.2",
	}
	if ti.drop != "" {
		delete(m, ti.drop)
	}
	return m
}

// bigDag and bigRun hold the task instances addTIs adds.
const (
	bigDag = "etl"
	bigRun = "scheduled__2026-11-27T06:00:00+00:00"
)

func (f *fakeV2) addTIs(n int, state any) {
	if !f.hasDag(bigDag) {
		f.dags = append(f.dags, dagRow{id: bigDag})
		f.runs[bigDag] = append(f.runs[bigDag], bigRun)
	}
	for i := 0; i < n; i++ {
		k := len(f.tis)
		f.tis = append(f.tis, tiRow{id: f.uuid7ish(), dag: bigDag, run: bigRun, task: fmt.Sprintf("task_%03d", k), mapIndex: -1, try: 1, state: state})
	}
}

func listBigRun(c airflow.Client) ([]airflow.TaskInstance, error) {
	return c.ListRunTaskInstances(context.Background(), bigDag, bigRun)
}

func newClient(t *testing.T, srv *httptest.Server) airflow.Client {
	hc, err := transport.New(transport.Options{MaxRetries: 2, RetryWaitMin: time.Millisecond, RetryWaitMax: 2 * time.Millisecond, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(srv.URL, hc, airflow.Paging{})
	if err != nil {
		t.Fatal(err)
	}
	return c
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
	tis, err := listBigRun(newClient(t, srv))
	if err != nil {
		t.Fatal(err)
	}
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
	if f.raw[0] != "/api/v2/dags/etl/dagRuns/scheduled__2026-11-27T06:00:00+00:00/taskInstances" {
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
	tis, err := listBigRun(newClient(t, srv))
	if err != nil {
		t.Fatal(err)
	}
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
			tis, err := listBigRun(newCursorClient(t, srv))
			if err != nil {
				t.Fatal(err)
			}
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
	tis, err := listBigRun(newCursorClient(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	if len(tis) != 250 || f.calls["tis"] != 4 {
		t.Fatalf("%d rows in %d calls, want all 250 (the finished one as first seen) in one scan of 4 calls", len(tis), f.calls["tis"])
	}
}

func TestCursorClientFallsBackToOffsets(t *testing.T) {
	f, srv := newFakeV2(t) // a server without cursor paging ignores the parameter
	f.addTIs(150, "running")
	tis, err := listBigRun(newCursorClient(t, srv))
	if err != nil {
		t.Fatal(err)
	}
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
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, body)
			}))
			t.Cleanup(srv.Close)
			if _, err := listBigRun(newCursorClient(t, srv)); err == nil {
				t.Fatal("a malformed cursor page was accepted")
			}
		})
	}
}

func TestPersistentChurnFails(t *testing.T) {
	f, srv := newFakeV2(t)
	f.addTIs(150, "running")
	f.retryOnPage1 = 1000
	_, err := listBigRun(newClient(t, srv))
	if !errors.Is(err, transport.ErrInconsistentListing) || f.calls["tis"] != 2*transport.ListScans {
		t.Fatalf("err %v after %d calls", err, f.calls["tis"])
	}
}

func TestMissingKeyFieldFails(t *testing.T) {
	for _, field := range []string{"map_index", "dag_run_id", "try_number"} {
		f, srv := newFakeV2(t)
		f.addTIs(3, "running")
		f.tis[1].drop = field
		_, err := listBigRun(newClient(t, srv))
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
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, body)
		}))
		if _, err := listBigRun(newClient(t, srv)); err == nil {
			t.Errorf("%s: no error", name)
		}
		srv.Close()
	}
}

func TestGetTaskInstance(t *testing.T) {
	f, srv := newFakeV2(t)
	run := "manual__2026-11-27T06:00:00+00:00"
	f.tis = []tiRow{
		{id: uuid(1), dag: "etl", run: run, task: "pod", mapIndex: -1, try: 3, state: "up_for_retry"},
		{id: uuid(2), dag: "etl", run: run, task: "pod", mapIndex: 2, try: 1, state: nil},
		{id: uuid(3), dag: "etl", run: "run with space/and slash", task: "pod", mapIndex: -1, try: 1, state: "running"},
	}
	c := newClient(t, srv)
	for _, key := range []airflow.TIKey{
		{DagID: "etl", RunID: run, TaskID: "pod", MapIndex: -1},
		{DagID: "etl", RunID: run, TaskID: "pod", MapIndex: 2},
		{DagID: "etl", RunID: "run with space/and slash", TaskID: "pod", MapIndex: -1},
	} {
		ti, err := c.GetTaskInstance(context.Background(), key)
		if err != nil || ti.TIKey != key {
			t.Fatalf("%s: %+v %v", key, ti, err)
		}
	}
	raw := strings.Join(f.raw, "\n") + "\n"
	for _, want := range []string{"/dagRuns/manual__2026-11-27T06:00:00+00:00/taskInstances/pod\n", "/taskInstances/pod/2\n", "/dagRuns/run%20with%20space%2Fand%20slash/"} {
		if !strings.Contains(raw, want) {
			t.Errorf("no request path contains %q:\n%s", want, raw)
		}
	}
}

func TestNotFound(t *testing.T) {
	f, srv := newFakeV2(t)
	c := newClient(t, srv)
	key := airflow.TIKey{DagID: "d", RunID: "r", TaskID: "t", MapIndex: 1}
	if _, err := c.GetTaskInstance(context.Background(), key); !errors.Is(err, airflow.ErrNotFound) {
		t.Fatalf("a JSON 404 from Airflow must be ErrNotFound: %v", err)
	}
	f.html404 = true
	if _, err := c.GetTaskInstance(context.Background(), key); err == nil || errors.Is(err, airflow.ErrNotFound) {
		t.Fatalf("a proxy's HTML 404 must not be ErrNotFound: %v", err)
	}
	// A route the server does not have (FastAPI's bare "Not Found") proves
	// nothing about the task instance.
	hc, _ := transport.New(transport.Options{})
	wrong, _ := New(srv.URL+"/other-app", hc, airflow.Paging{})
	if _, err := wrong.GetTaskInstance(context.Background(), key); err == nil || errors.Is(err, airflow.ErrNotFound) {
		t.Fatalf("a missing route must not be ErrNotFound: %v", err)
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

func TestListRunIDs(t *testing.T) {
	f, srv := newFakeV2(t)
	f.dags = []dagRow{{id: "a"}, {id: "empty"}}
	for i := 0; i < 120; i++ {
		f.runs["a"] = append(f.runs["a"], fmt.Sprintf("manual__%d", i))
	}
	c := newClient(t, srv)
	if ids, err := c.ListRunIDs(context.Background(), "a"); err != nil || len(ids) != 120 {
		t.Fatalf("%d %v", len(ids), err)
	}
	if ids, err := c.ListRunIDs(context.Background(), "empty"); err != nil || len(ids) != 0 {
		t.Fatalf("%v %v", ids, err)
	}
	if _, err := c.ListRunIDs(context.Background(), "gone"); !errors.Is(err, airflow.ErrNotFound) {
		t.Fatalf("err %v", err)
	}
}

func TestListRunTaskInstances(t *testing.T) {
	f, srv := newFakeV2(t)
	f.dags = []dagRow{{id: "d"}}
	f.runs["d"] = []string{"r", "empty"}
	f.tis = []tiRow{
		{id: uuid(1), dag: "d", run: "r", task: "a", mapIndex: -1, try: 1, state: "success"},
		{id: uuid(2), dag: "d", run: "r", task: "b", mapIndex: 0, try: 1, state: nil},
		{id: uuid(3), dag: "d", run: "r", task: "b", mapIndex: 1, try: 2, state: "running"},
	}
	c := newClient(t, srv)
	tis, err := c.ListRunTaskInstances(context.Background(), "d", "r")
	if err != nil || len(tis) != 3 {
		t.Fatalf("%v %v", tis, err)
	}
	if tis, err := c.ListRunTaskInstances(context.Background(), "d", "empty"); err != nil || len(tis) != 0 {
		t.Fatalf("%v %v", tis, err)
	}
	if _, err := c.ListRunTaskInstances(context.Background(), "d", "gone"); !errors.Is(err, airflow.ErrNotFound) {
		t.Fatalf("err %v", err)
	}
}

func TestServerVersion(t *testing.T) {
	_, srv := newFakeV2(t)
	c := newClient(t, srv)
	if v, err := c.ServerVersion(context.Background()); err != nil || v != "3.2.1" || c.APIVersion() != "v2" {
		t.Fatalf("%q %v", v, err)
	}
}

func TestPodNameXCom(t *testing.T) {
	for _, tc := range []struct {
		name  string
		value any
		want  string // "" wants an error
	}{
		{"string", "etl-pod-task-3f2a9c1d", "etl-pod-task-3f2a9c1d"},
		{"encoded twice", `"etl-pod-task-3f2a9c1d"`, "etl-pod-task-3f2a9c1d"},
		{"empty", "", ""},
		{"not a pod name", "Pod With Spaces", ""},
		{"null", nil, ""},
		{"number", 42, ""},
		{"list", []string{"pod-a"}, ""},
		{"object", map[string]any{"pod_name": "pod-a"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, srv := newFakeV2(t)
			key := airflow.TIKey{DagID: "etl", RunID: "manual__2026-11-27T06:00:00+00:00", TaskID: "pod", MapIndex: -1}
			f.xcoms[xcomID{key.DagID, key.RunID, key.TaskID, -1, "pod_name"}] = tc.value
			got, err := newClient(t, srv).PodNameXCom(context.Background(), key)
			if tc.want == "" {
				if err == nil || errors.Is(err, airflow.ErrNotFound) || !strings.Contains(err.Error(), key.String()) {
					t.Fatalf("got %q, err %v; want an error naming the task instance", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, err %v; want %q", got, err, tc.want)
			}
			if f.raw[0] != "/api/v2/dags/etl/dagRuns/manual__2026-11-27T06:00:00+00:00/taskInstances/pod/xcomEntries/pod_name" {
				t.Errorf("path %s", f.raw[0])
			}
			if !slices.Equal(f.queries[0]["map_index"], []string{"-1"}) {
				t.Errorf("query %v, want map_index=-1", f.queries[0])
			}
		})
	}
}

func TestPodNameXComMapped(t *testing.T) {
	f, srv := newFakeV2(t)
	for mi := -1; mi < 3; mi++ {
		f.xcoms[xcomID{"d", "r", "t", mi, "pod_name"}] = fmt.Sprintf("pod-%d", mi+1)
	}
	got, err := newClient(t, srv).PodNameXCom(context.Background(), airflow.TIKey{DagID: "d", RunID: "r", TaskID: "t", MapIndex: 2})
	if err != nil || got != "pod-3" {
		t.Fatalf("got %q, err %v; want pod-3", got, err)
	}
	if !slices.Equal(f.queries[0]["map_index"], []string{"2"}) {
		t.Errorf("query %v, want map_index=2", f.queries[0])
	}
}

func TestPodNameXComWrongAnswerFails(t *testing.T) {
	const rest = `"timestamp":"2026-11-27T06:00:03Z","dag_display_name":"d","task_display_name":"t","run_after":"2026-11-27T06:00:00Z"`
	for name, body := range map[string]string{
		"other map index": `{"dag_id":"d","run_id":"r","task_id":"t","key":"pod_name","map_index":0,"value":"pod-0",` + rest + `}`,
		"no map index":    `{"dag_id":"d","run_id":"r","task_id":"t","key":"pod_name","value":"pod-0",` + rest + `}`,
		"other run":       `{"dag_id":"d","run_id":"x","task_id":"t","key":"pod_name","map_index":2,"value":"pod-0",` + rest + `}`,
		"other key":       `{"dag_id":"d","run_id":"r","task_id":"t","key":"pod_namespace","map_index":2,"value":"default",` + rest + `}`,
		"no value":        `{"dag_id":"d","run_id":"r","task_id":"t","key":"pod_name","map_index":2,` + rest + `}`,
		"not an object":   `"pod-0"`,
		"empty":           ``,
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, body)
		}))
		got, err := newClient(t, srv).PodNameXCom(context.Background(), airflow.TIKey{DagID: "d", RunID: "r", TaskID: "t", MapIndex: 2})
		if err == nil {
			t.Errorf("%s: got %q, want an error", name, got)
		}
		srv.Close()
	}
}

func TestPodNameXComNotFound(t *testing.T) {
	f, srv := newFakeV2(t)
	c := newClient(t, srv)
	key := airflow.TIKey{DagID: "d", RunID: "r", TaskID: "t", MapIndex: 1}
	f.xcoms[xcomID{"d", "r", "t", 0, "pod_name"}] = "pod-0" // another map index
	if _, err := c.PodNameXCom(context.Background(), key); !errors.Is(err, airflow.ErrNotFound) || !strings.Contains(err.Error(), "d/r/t[1]") {
		t.Fatalf("a JSON 404 from Airflow must be ErrNotFound: %v", err)
	}
	f.html404 = true
	if _, err := c.PodNameXCom(context.Background(), key); err == nil || errors.Is(err, airflow.ErrNotFound) {
		t.Fatalf("a proxy's HTML 404 must not be ErrNotFound: %v", err)
	}
	hc, _ := transport.New(transport.Options{})
	wrong, _ := New(srv.URL+"/other-app", hc, airflow.Paging{})
	if _, err := wrong.PodNameXCom(context.Background(), key); err == nil || errors.Is(err, airflow.ErrNotFound) {
		t.Fatalf("a missing route must not be ErrNotFound: %v", err)
	}
}

func TestPodNameXComServerError(t *testing.T) {
	f, srv := newFakeV2(t)
	f.xcoms[xcomID{"d", "r", "t", -1, "pod_name"}] = "pod-a"
	f.fail500 = 1000
	_, err := newClient(t, srv).PodNameXCom(context.Background(), airflow.TIKey{DagID: "d", RunID: "r", TaskID: "t", MapIndex: -1})
	if err == nil || errors.Is(err, airflow.ErrNotFound) || !strings.Contains(err.Error(), "giving up after 3 attempt(s), last status 500") {
		t.Fatalf("err %v", err)
	}
	if len(f.raw) != 3 {
		t.Errorf("%d requests, want 3", len(f.raw))
	}
}

func TestPodNameXComHTMLFails(t *testing.T) {
	f, srv := newFakeV2(t)
	f.html200 = true
	_, err := newClient(t, srv).PodNameXCom(context.Background(), airflow.TIKey{DagID: "d", RunID: "r", TaskID: "t", MapIndex: -1})
	if err == nil || errors.Is(err, airflow.ErrNotFound) || !strings.Contains(err.Error(), "got text/html") {
		t.Fatalf("err %v", err)
	}
}

// GetDag and GetDagRun say what exists; their 404s name what is missing,
// so that a missing DAG is never taken for a missing run.
func TestGetDagAndRunName404s(t *testing.T) {
	f, srv := newFakeV2(t)
	f.dags = []dagRow{{id: "etl"}}
	f.runs = map[string][]string{"etl": {"manual__2026-11-27T06:00:00+00:00"}}
	c := newClient(t, srv)
	ctx := context.Background()
	if err := c.GetDag(ctx, "etl"); err != nil {
		t.Fatal(err)
	}
	if err := c.GetDagRun(ctx, "etl", "manual__2026-11-27T06:00:00+00:00"); err != nil {
		t.Fatal(err)
	}
	if err := c.GetDag(ctx, "ghost"); airflow.NotFoundAbout(err) != airflow.EntityDAG {
		t.Fatalf("missing DAG: %v (about %q)", err, airflow.NotFoundAbout(err))
	}
	if err := c.GetDagRun(ctx, "etl", "gone"); airflow.NotFoundAbout(err) != airflow.EntityRun {
		t.Fatalf("missing run: %v (about %q)", err, airflow.NotFoundAbout(err))
	}
	if err := c.ProbeTaskInstances(ctx); err != nil {
		t.Fatalf("probe: %v", err)
	}
}
