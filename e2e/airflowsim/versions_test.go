package airflowsim

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// representative is one version per profile (two for the cursor profile,
// whose end-of-listing behaviour differs between 3.2.x and 3.3).
var representative = []struct{ version, profile string }{
	{"2.5.3", "2.5"},
	{"2.9.3", "2.6-2.9"},
	{"2.10.2", "2.10.0-2.10.2"},
	{"2.10.5", "2.10.3+"},
	{"3.0.6", "3.0"},
	{"3.1.8", "3.1"},
	{"3.2.1", "3.2.0-3.2.1"},
	{"3.2.2", "3.2.2+ (cursor)"},
	{"3.3.0", "3.2.2+ (cursor)"},
}

func TestProfileOf(t *testing.T) {
	for _, r := range representative {
		p, err := ProfileOf(r.version)
		if err != nil || p.Name != r.profile {
			t.Errorf("ProfileOf(%s) = %q, %v; want %q", r.version, p.Name, err, r.profile)
		}
	}
	for v, want := range map[string]string{"2.11.0": "2.10.3+", "2.7.0": "2.6-2.9", "3.3.0rc1": "3.2.2+ (cursor)",
		"2.10.5+astro.1": "2.10.3+", "3.2": "3.2.0-3.2.1", "3.4.1": "3.2.2+ (cursor)"} {
		if p, err := ProfileOf(v); err != nil || p.Name != want {
			t.Errorf("ProfileOf(%s) = %q, %v; want %q", v, p.Name, err, want)
		}
	}
	for _, v := range []string{"1.10.15", "2.4.3", "4.0.0", "3", "three.one", ""} {
		if _, err := ProfileOf(v); err == nil {
			t.Errorf("ProfileOf(%q) accepted", v)
		}
	}
	// Capabilities that straddle profiles are switched at their own
	// release, not the profile's.
	for v, want := range map[string]bool{"2.7.0": false, "2.7.1": true} {
		r, _ := parseRelease(v)
		if r.has(capV1BatchRunTaskIDs) != want {
			t.Errorf("%s: dag_run_ids in the batch body = %v, want %v", v, !want, want)
		}
	}
}

// versionScenario has task instances in every state whose try_number
// Airflow 2.0-2.9 reports differently, a finished one with an XCom, a
// mapped task and a null state; pageLimitCap 3 makes the cap visible.
func versionScenario(t *testing.T, version string) *Scenario {
	t.Helper()
	return mustParse(t, fmt.Sprintf(`airflowVersion: %q
auth: {username: admin, password: admin}
pageLimitCap: 3
dags: [{dagId: d}]
runs: [{dagId: d, runId: r, startDate: "-3h"}]
taskInstances:
  - {dagId: d, runId: r, taskId: t_running, tryNumber: 2, state: running, operator: KubernetesPodOperator, startDate: "-1h"}
  - {dagId: d, runId: r, taskId: t_deferred, tryNumber: 2, state: deferred, operator: KubernetesPodOperator, startDate: "-1h"}
  - {dagId: d, runId: r, taskId: t_resched, tryNumber: 3, state: up_for_reschedule, operator: KubernetesPodOperator, startDate: "-1h"}
  - {dagId: d, runId: r, taskId: t_sched, tryNumber: 2, state: scheduled, operator: KubernetesPodOperator}
  - {dagId: d, runId: r, taskId: t_queued, tryNumber: 2, state: queued, operator: KubernetesPodOperator}
  - {dagId: d, runId: r, taskId: t_zero, tryNumber: 0, state: scheduled, operator: KubernetesPodOperator}
  - {dagId: d, runId: r, taskId: t_done, tryNumber: 1, state: success, operator: BashOperator, startDate: "-2h", endDate: "-1h", xcom: {pod_name: p}}
  - {dagId: d, runId: r, taskId: m, mapIndex: 0, state: success, operator: KubernetesPodOperator, startDate: "-2h", endDate: "-1h"}
  - {dagId: d, runId: r, taskId: m, mapIndex: 1, state: running, operator: KubernetesPodOperator, startDate: "-1h"}
  - {dagId: d, runId: r, taskId: t_null, tryNumber: 0}
`, version))
}

// attempts are versionScenario's try numbers as the pods label them.
var attempts = map[string]int{"t_running": 2, "t_deferred": 2, "t_resched": 3, "t_sched": 2, "t_queued": 2,
	"t_zero": 0, "t_done": 1, "m": 1, "t_null": 0}

// TestEveryProfileAgainstItsSpec runs the endpoints the reaper uses on a
// simulator of every profile, each exchange validated against the
// profile's spec, and checks each version-dependent behaviour on both
// sides of its release.
func TestEveryProfileAgainstItsSpec(t *testing.T) {
	for _, r := range representative {
		t.Run(r.version, func(t *testing.T) {
			rel, _ := parseRelease(r.version)
			c := newClient(t, versionScenario(t, r.version))
			if c.sim.Profile().Name != r.profile {
				t.Fatalf("profile %q, want %q", c.sim.Profile().Name, r.profile)
			}
			if rel[0] == 2 {
				checkV1Profile(t, c, rel)
			} else {
				checkV2Profile(t, c, rel)
			}
		})
	}
}

// expectVersion checks that prefix/version answers want without auth.
func (c *client) expectVersion(t *testing.T, prefix, want string) {
	t.Helper()
	if v := c.expect(c.get(prefix+"/version", "", noAuth()), 200).obj(t); v["version"] != want {
		t.Fatalf("version %v, want %s", v, want)
	}
}

// expectOneRunPerListing checks that the run listing with query answers one
// run, of the DAG and of every DAG (~).
func (c *client) expectOneRunPerListing(t *testing.T, prefix, query string) {
	t.Helper()
	for _, dag := range []string{"kpo_zombie_dag", "~"} {
		runs := c.expect(c.get(prefix+"/dags/"+dag+"/dagRuns", query), 200).obj(t)
		if runs["total_entries"] != 1.0 {
			t.Fatalf("runs of %s: %v", dag, runs)
		}
	}
}

// expectTaskReads checks the reads of DAG d, run r and their task instances
// that both API versions answer under prefix; the listings' and the XCom's
// queries are the version's.
func (c *client) expectTaskReads(prefix, dagsQuery, runsQuery, xcomQuery string) {
	base := prefix + "/dags/d/dagRuns/r/taskInstances"
	c.expect(c.get(prefix+"/dags", dagsQuery), 200)
	c.expect(c.get(prefix+"/dags/d", ""), 200)
	c.expect(c.get(prefix+"/dags/d/dagRuns", runsQuery), 200)
	c.expect(c.get(prefix+"/dags/d/dagRuns/r", ""), 200)
	c.expect(c.get(base+"/t_done", ""), 200)
	c.expect(c.get(base+"/m/1", ""), 200)
	c.expect(c.get(base+"/t_done/xcomEntries", "limit=10"), 200)
	c.expect(c.get(base+"/t_done/xcomEntries/pod_name", xcomQuery), 200)
}

func checkV1Profile(t *testing.T, c *client, rel release) {
	base := "/api/v1/dags/d/dagRuns/r/taskInstances"
	list := "/api/v1/dags/~/dagRuns/~/taskInstances"
	c.expectVersion(t, "/api/v1", c.sim.version)
	c.expect(c.get("/api/v1/health", "", noAuth()), 200)
	c.expectTaskReads("/api/v1", "limit=100&only_active=false", "limit=100&offset=0", "")

	all := c.tiPage(c.expect(c.get(list, "limit=100&state=running&state=deferred&state=up_for_reschedule&state=scheduled&state=queued&state=success&state=none"), 200))
	if all.TotalEntries != 10 {
		t.Fatalf("listing: %+v", all)
	}
	// try_number: the raw column before 2.10, the attempt from 2.10.
	for _, row := range all.TaskInstances {
		want := attempts[row.TaskID]
		if rel.atLeast(release{2, 10, 0}) == false && row.State != nil {
			switch *row.State {
			case "deferred", "up_for_reschedule", "scheduled", "queued":
				want = max(want-1, 0)
			}
		}
		if row.TryNumber != want {
			t.Errorf("%s (%v): try_number %d, want %d", row.TaskID, deref(row.State), row.TryNumber, want)
		}
	}
	var single tiRow
	c.expect(c.get(base+"/t_deferred", ""), 200).decode(t, &single)
	if want := map[bool]int{true: 2, false: 1}[rel.atLeast(release{2, 10, 0})]; single.TryNumber != want {
		t.Errorf("GET t_deferred: try_number %d, want %d", single.TryNumber, want)
	}

	// Strict validation: what the version's spec lacks is a 400.
	for _, tc := range []struct {
		path, query string
		since       release
	}{
		{list, "updated_at_gte=2000-01-01T00:00:00%2B00:00", release{2, 6, 0}},
		{list, "executor=KubernetesExecutor", release{2, 10, 0}},
		{"/api/v1/dags", "paused=false", release{2, 6, 0}},
		{base + "/m/xcomEntries/pod_name", "map_index=1", release{2, 6, 0}},
	} {
		if rel.atLeast(tc.since) {
			want := 200
			if strings.Contains(tc.path, "xcom") {
				want = 404 // accepted, and m has no XCom
			}
			c.expect(c.get(tc.path, tc.query), want)
			continue
		}
		name, _, _ := strings.Cut(tc.query, "=")
		bad := c.expect(c.get(tc.path, tc.query), 400).obj(t)
		if bad["detail"] != "Extra query parameter(s) "+name+" not in spec" {
			t.Errorf("%s?%s: %v", tc.path, tc.query, bad)
		}
	}

	batch := "/api/v1/dags/~/dagRuns/~/taskInstances/list"
	if rel.atLeast(release{2, 7, 1}) {
		p := c.tiPage(c.expect(c.post(batch, jsonBody(map[string]any{"dag_run_ids": []string{"r"}, "task_ids": []string{"m"}})), 200))
		if p.TotalEntries != 2 {
			t.Errorf("batch by run and task: %+v", p)
		}
	} else {
		bad := c.expect(c.post(batch, jsonBody(map[string]any{"dag_run_ids": []string{"r"}})), 400).obj(t)
		if !strings.Contains(bad["detail"].(string), "'dag_run_ids': ['Unknown field.']") {
			t.Errorf("batch dag_run_ids before 2.7.1: %v", bad)
		}
	}
	p := c.tiPage(c.expect(c.post(batch, jsonBody(map[string]any{"dag_ids": []string{"d"}, "page_limit": 4, "page_offset": 1})), 200))
	if want := map[bool]int{true: 4, false: 10}[rel.atLeast(release{2, 10, 3})]; len(p.TaskInstances) != want || p.TotalEntries != 10 {
		t.Errorf("batch page_limit 4: %d rows of %d, want %d of 10", len(p.TaskInstances), p.TotalEntries, want)
	}
}

func checkV2Profile(t *testing.T, c *client, rel release) {
	list := "/api/v2/dags/~/dagRuns/~/taskInstances"
	base := "/api/v2/dags/d/dagRuns/r/taskInstances"
	c.expectVersion(t, "/api/v2", c.sim.version)
	c.expect(c.get("/api/v2/monitor/health", "", noAuth()), 200)
	c.login()
	c.expectTaskReads("/api/v2", "limit=100&exclude_stale=false", "limit=100&order_by=id", "map_index=-1")
	c.expect(c.post("/api/v2/dags/~/dagRuns/~/taskInstances/list", jsonBody(map[string]any{"page_limit": 100})), 200)

	// limit is capped at pageLimitCap (3) only from 3.2.0.
	capped := rel.atLeast(release{3, 2, 0})
	all := c.tiPage(c.expect(c.get(list, "limit=50&order_by=id"), 200))
	if want := map[bool]int{true: 3, false: 10}[capped]; len(all.TaskInstances) != want || all.TotalEntries != 10 {
		t.Errorf("limit=50 with cap 3: %d rows of %d, want %d", len(all.TaskInstances), all.TotalEntries, want)
	}
	for _, row := range all.TaskInstances {
		if row.TryNumber != attempts[row.TaskID] {
			t.Errorf("%s: try_number %d, want the attempt %d", row.TaskID, row.TryNumber, attempts[row.TaskID])
		}
	}

	// operator, try_number and map_index filter from 3.1; 3.0 ignores them.
	c.sim.ResetRequests()
	op := c.tiPage(c.expect(c.get(base, "operator=BashOperator&try_number=1&map_index=-1&limit=10"), 200))
	ignored := c.sim.Requests()[0].Ignored
	if rel.atLeast(release{3, 1, 0}) {
		if op.TotalEntries != 1 || len(ignored) != 0 {
			t.Errorf("3.1+ operator filter: %+v, ignored %v", op, ignored)
		}
	} else if op.TotalEntries != 10 || !slices.Equal(ignored, []string{"map_index", "operator", "try_number"}) {
		t.Errorf("3.0 must ignore operator, try_number, map_index: %+v, ignored %v", op, ignored)
	}

	// state=no_status is NULL from 3.1; 3.0 knows only none.
	c.expect(c.get(list, "state=none&limit=10"), 200)
	if rel.atLeast(release{3, 1, 0}) {
		if p := c.tiPage(c.expect(c.get(list, "state=no_status&limit=10"), 200)); p.TotalEntries != 1 {
			t.Errorf("no_status: %+v", p)
		}
	} else {
		c.expect(c.get(list, "state=no_status", deviation("HTTPExceptionResponse")), 422)
	}

	// cursor exists from 3.2.2; before it is an ignored parameter.
	c.sim.ResetRequests()
	x := c.expect(c.get(list, "cursor=&limit=2&order_by=id"), 200).obj(t)
	_, hasTotal := x["total_entries"]
	_, hasNext := x["next_cursor"]
	if rel.atLeast(release{3, 2, 2}) {
		if hasTotal || !hasNext {
			t.Errorf("cursor mode answer %v", x)
		}
	} else if !hasTotal || hasNext || !slices.Equal(c.sim.Requests()[0].Ignored, []string{"cursor"}) {
		t.Errorf("cursor before 3.2.2 must be ignored: %v, ignored %v", x, c.sim.Requests()[0].Ignored)
	}
}

func deref(p *string) string {
	if p == nil {
		return "null"
	}
	return *p
}

// cursorPage is a cursor-mode answer.
type cursorPage struct {
	TaskInstances  []tiRow `json:"task_instances"`
	NextCursor     *string `json:"next_cursor"`
	PreviousCursor *string `json:"previous_cursor"`
}

func (c *client) cursorPage(query string) cursorPage {
	c.t.Helper()
	x := c.expect(c.get("/api/v2/dags/~/dagRuns/~/taskInstances", query), 200)
	if _, ok := x.obj(c.t)["total_entries"]; ok {
		c.t.Fatalf("cursor answer with total_entries: %s", x.body)
	}
	var p cursorPage
	x.decode(c.t, &p)
	return p
}

// walkCursor pages through a listing by next_cursor and returns its rows
// and the number of requests made.
func (c *client) walkCursor(query string, limit int) ([]tiRow, int) {
	c.t.Helper()
	var rows []tiRow
	cursor := ""
	for n := 1; ; n++ {
		p := c.cursorPage(fmt.Sprintf("%s&limit=%d&cursor=%s", query, limit, url.QueryEscape(cursor)))
		rows = append(rows, p.TaskInstances...)
		if len(p.TaskInstances) == 0 && p.NextCursor != nil {
			c.t.Fatalf("empty page with next_cursor %q", *p.NextCursor)
		}
		if p.NextCursor == nil {
			return rows, n
		}
		if n > 100 {
			c.t.Fatal("cursor paging does not end")
		}
		cursor = *p.NextCursor
	}
}

// offsetRows pages through the same listing by offset.
func (c *client) offsetRows(query string) []tiRow {
	c.t.Helper()
	var rows []tiRow
	for offset := 0; ; {
		p := c.tiPage(c.expect(c.get("/api/v2/dags/~/dagRuns/~/taskInstances", fmt.Sprintf("%s&offset=%d", query, offset)), 200))
		if len(p.TaskInstances) == 0 {
			return rows
		}
		rows = append(rows, p.TaskInstances...)
		offset += len(p.TaskInstances)
	}
}

func ids(rows []tiRow) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.ID
	}
	return out
}

func TestCursorPaging(t *testing.T) {
	const n = 11
	for _, version := range []string{"3.2.2", "3.3.0"} {
		t.Run(version, func(t *testing.T) {
			endNull := version == "3.3.0"
			c := newClient(t, pagingScenario(version, n, 5))
			c.login()
			for _, order := range []string{"order_by=id", "order_by=-start_date", "order_by=start_date&order_by=-map_index", "state=running"} {
				// limit 50 is capped at 5, as in offset mode.
				rows, requests := c.walkCursor(order, 50)
				want := c.offsetRows(order)
				if !slices.Equal(ids(rows), ids(want)) {
					t.Errorf("%s: cursor pages\n%v\nwant the offset order\n%v", order, ids(rows), ids(want))
				}
				// 11 rows in pages of 5: 3 pages; 3.2.2 needs a 4th, empty
				// one to learn the listing ended.
				if wantReq := map[bool]int{true: 3, false: 4}[endNull]; requests != wantReq {
					t.Errorf("%s: %d requests, want %d", order, requests, wantReq)
				}
			}
			first := c.cursorPage("order_by=id&limit=5&cursor=")
			if (first.PreviousCursor == nil) != endNull {
				t.Errorf("previous_cursor on the first page: %v", first.PreviousCursor)
			}
			// A listing that fits one page.
			one := c.cursorPage("order_by=id&limit=5&cursor=&task_id=t03")
			if len(one.TaskInstances) != 1 || (one.NextCursor == nil) != endNull {
				t.Errorf("single-row listing: %+v", one)
			}
			// offset is not applied in cursor mode; without cursor the
			// listing is offset-paged with total_entries.
			if p := c.cursorPage("order_by=id&limit=5&offset=3&cursor="); !slices.Equal(ids(p.TaskInstances), ids(first.TaskInstances)) {
				t.Errorf("offset applied in cursor mode")
			}
			if p := c.tiPage(c.expect(c.get("/api/v2/dags/~/dagRuns/~/taskInstances", "order_by=id&limit=5&offset=3"), 200)); p.TotalEntries != n || len(p.TaskInstances) != 5 {
				t.Errorf("offset mode: %+v", p)
			}
			// Tokens are decoded strictly.
			tok := func(v any) string {
				b, _ := json.Marshal(v)
				return url.QueryEscape(encodeB64(b))
			}
			for name, cur := range map[string]string{
				"not base64":   "%21%21%21",
				"not json":     url.QueryEscape(encodeB64([]byte("nope"))),
				"wrong length": tok([]map[string]any{{"type": "str", "value": "x"}}),
				"wrong type":   tok([]map[string]any{{"type": "int", "value": 1}, {"type": "str", "value": "x"}}),
				"extra field":  tok([]map[string]any{{"type": "str", "value": "x", "extra": 1}, {"type": "str", "value": "x"}}),
				"null as str":  tok([]map[string]any{{"type": "str", "value": nil}, {"type": "str", "value": "x"}}),
				"bad time":     tok([]map[string]any{{"type": "datetime", "value": "yesterday"}, {"type": "str", "value": "x"}}),
			} {
				q := "order_by=id&cursor=" + cur
				if name == "bad time" {
					q = "order_by=start_date&cursor=" + cur
				}
				bad := c.expect(c.get("/api/v2/dags/~/dagRuns/~/taskInstances", q), 400).obj(t)
				if bad["detail"] != "Invalid cursor token" {
					t.Errorf("%s: %v", name, bad)
				}
			}
			// A token of another order is refused when its shape differs.
			c.expect(c.get("/api/v2/dags/~/dagRuns/~/taskInstances", "order_by=map_index&cursor="+url.QueryEscape(*first.NextCursor)), 400)
		})
	}
}

func encodeB64(b []byte) string { return base64.URLEncoding.EncodeToString(b) }
