package airflowsim

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

const runID = "manual__2026-11-27T06:00:00+00:00"

// run is runID as it goes in a URL path.
var run = url.PathEscape(runID)

func seed(t *testing.T, api int) *client {
	t.Helper()
	sc, err := LoadScenario(filepath.Join("..", "scenarios", fmt.Sprintf("seed-v%d.yaml", api)))
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, sc)
	if api == 2 {
		c.login()
	}
	return c
}

func keysOf(rows []tiRow) []TIKey {
	out := make([]TIKey, len(rows))
	for i, r := range rows {
		out[i] = r.key()
	}
	return out
}

func TestSeedScenariosLoad(t *testing.T) {
	for api, version := range map[int]string{1: "2.10.5", 2: "3.2.1"} {
		sc, err := LoadScenario(filepath.Join("..", "scenarios", fmt.Sprintf("seed-v%d.yaml", api)))
		if err != nil {
			t.Fatal(err)
		}
		if sc.AirflowVersion != version || len(sc.DAGs) != 1 || len(sc.Runs) != 1 || len(sc.TaskInstances) != 4 {
			t.Fatalf("seed-v%d: unexpected content %+v", api, sc)
		}
		s := New(sc)
		if s.APIVersion() != api || s.BasePath() != fmt.Sprintf("/api/v%d", api) {
			t.Fatalf("seed-v%d serves API v%d at %s", api, s.APIVersion(), s.BasePath())
		}
		zombie, ok := s.TaskInstance(TIKey{DagID: "kpo_zombie_dag", RunID: runID, TaskID: "zombie_kpo_task", MapIndex: -1})
		if !ok || *zombie.State != "success" || zombie.EndDate == "" || *zombie.TryNumber != 1 {
			t.Fatalf("seed-v%d zombie task: %+v", api, zombie)
		}
		for mi, state := range map[int]string{0: "success", 1: "running"} {
			ti, ok := s.TaskInstance(TIKey{DagID: "kpo_zombie_dag", RunID: runID, TaskID: "mapped_kpo_task", MapIndex: mi})
			if !ok || *ti.State != state {
				t.Fatalf("seed-v%d mapped task %d: %+v", api, mi, ti)
			}
		}
	}
}

func TestParseScenarioErrors(t *testing.T) {
	base := "airflowVersion: '2.10.5'\nauth: {username: a, password: b}\n"
	for name, tc := range map[string]struct{ yaml, want string }{
		"unknown field":  {base + "dags: [{dagId: d, readible: false}]", "readible"},
		"bad version":    {"airflowVersion: '1.10'\nauth: {username: a, password: b}", "airflowVersion"},
		"no credentials": {"airflowVersion: '3.2.1'", "auth.username"},
		"undeclared dag": {base + "runs: [{dagId: d, runId: r}]", "not declared under dags"},
		"undeclared run": {base + "dags: [{dagId: d}]\ntaskInstances: [{dagId: d, runId: r, taskId: t}]", "not declared under runs"},
		"bad state":      {base + "dags: [{dagId: d}]\nruns: [{dagId: d, runId: r}]\ntaskInstances: [{dagId: d, runId: r, taskId: t, state: done}]", "unknown task instance state"},
		"bad time":       {base + "dags: [{dagId: d}]\nruns: [{dagId: d, runId: r, startDate: yesterday}]", "neither a signed duration"},
		"duplicate ti":   {base + "dags: [{dagId: d}]\nruns: [{dagId: d, runId: r}]\ntaskInstances: [{dagId: d, runId: r, taskId: t}, {dagId: d, runId: r, taskId: t, mapIndex: -1}]", "duplicate task instance"},
		"bad ttl":        {"airflowVersion: '3.2.1'\nauth: {username: a, password: b, tokenTTL: soon}", "soon"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseScenario([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	sc := mustParse(t, base+`dags: [{dagId: d}]
runs: [{dagId: d, runId: "scheduled__2026-01-02T03:04:05+00:00", startDate: "2026-01-02T03:05:00Z"}]
taskInstances: [{dagId: d, runId: "scheduled__2026-01-02T03:04:05+00:00", taskId: t, state: null, startDate: "-90m"}]`)
	clock := newFakeClock()
	s := New(sc, WithClock(clock.Now))
	ti, _ := s.TaskInstance(TIKey{DagID: "d", RunID: "scheduled__2026-01-02T03:04:05+00:00", TaskID: "t", MapIndex: -1})
	if ti.State != nil || ti.StartDate != TimeSpec(clock.Now().Add(-90*time.Minute).Format(time.RFC3339Nano)) {
		t.Fatalf("relative time or null state not applied: %+v", ti)
	}
	r := s.runs[[2]string{"d", "scheduled__2026-01-02T03:04:05+00:00"}]
	if r.runType != "scheduled" || !r.logical.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Fatalf("run type and logical date not derived from the run id: %+v", r)
	}
}

func TestV1Endpoints(t *testing.T) {
	c := seed(t, 1)
	c.expectVersion(t, "/api/v1", "2.10.5")
	c.expect(c.get("/api/v1/health", "", noAuth()), 200)

	dags := c.expect(c.get("/api/v1/dags", "limit=10&only_active=true"), 200).obj(t)
	if dags["total_entries"] != 1.0 {
		t.Fatalf("dags %v", dags)
	}
	c.expect(c.get("/api/v1/dags/kpo_zombie_dag", "fields=dag_id&fields=is_paused"), 200)
	c.expect(c.get("/api/v1/dags/nope", ""), 404)

	c.expectOneRunPerListing(t, "/api/v1", "state=running&order_by=-start_date")
	r := c.expect(c.get("/api/v1/dags/kpo_zombie_dag/dagRuns/"+run, ""), 200).obj(t)
	if r["dag_run_id"] != runID || r["execution_date"] != "2026-11-27T06:00:00+00:00" {
		t.Fatalf("run %v", r)
	}
	c.expect(c.get("/api/v1/dags/kpo_zombie_dag/dagRuns/nope", ""), 404)

	all := c.tiPage(c.expect(c.get("/api/v1/dags/~/dagRuns/~/taskInstances", ""), 200))
	if all.TotalEntries != 4 || len(all.TaskInstances) != 4 {
		t.Fatalf("listing %+v", all)
	}
	byRun := c.tiPage(c.expect(c.get("/api/v1/dags/kpo_zombie_dag/dagRuns/"+run+"/taskInstances",
		"state=running&state=queued&pool=default_pool&start_date_gte=2020-01-01T00:00:00%2B00:00"), 200))
	if byRun.TotalEntries != 2 {
		t.Fatalf("running in run: %+v", byRun)
	}
	// A NULL duration (still running) never satisfies a range.
	short := c.tiPage(c.expect(c.get("/api/v1/dags/~/dagRuns/~/taskInstances", "duration_gte=0&duration_lte=3600"), 200))
	if short.TotalEntries != 2 {
		t.Fatalf("duration range: %+v", short)
	}
	// v1 has no existence check on the run of a task instance listing.
	empty := c.tiPage(c.expect(c.get("/api/v1/dags/kpo_zombie_dag/dagRuns/nope/taskInstances", ""), 200))
	if empty.TotalEntries != 0 {
		t.Fatalf("unknown run listed %+v", empty)
	}

	ti := "/api/v1/dags/kpo_zombie_dag/dagRuns/" + run + "/taskInstances/"
	var zombie tiRow
	c.expect(c.get(ti+"zombie_kpo_task", ""), 200).decode(t, &zombie)
	if *zombie.State != "success" || *zombie.Operator != "KubernetesPodOperator" || zombie.Duration == nil || *zombie.Duration != 3600 {
		t.Fatalf("zombie %+v", zombie)
	}
	mapped := c.expect(c.get(ti+"mapped_kpo_task", ""), 404).obj(t)
	if mapped["detail"] != "Task instance is mapped, add the map_index value to the URL" {
		t.Fatalf("mapped without index: %v", mapped)
	}
	var m1 tiRow
	c.expect(c.get(ti+"mapped_kpo_task/1", ""), 200).decode(t, &m1)
	if m1.MapIndex != 1 || *m1.State != "running" {
		t.Fatalf("mapped 1: %+v", m1)
	}
	c.expect(c.get(ti+"mapped_kpo_task/7", ""), 404)
	c.expect(c.get(ti+"nope", ""), 404)

	xcoms := c.expect(c.get(ti+"zombie_kpo_task/xcomEntries", "limit=10"), 200).obj(t)
	if xcoms["total_entries"] != 2.0 {
		t.Fatalf("xcoms %v", xcoms)
	}
	tilde := c.expect(c.get("/api/v1/dags/~/dagRuns/~/taskInstances/~/xcomEntries", "xcom_key=pod_name"), 200).obj(t)
	if tilde["total_entries"] != 1.0 {
		t.Fatalf("xcoms across everything %v", tilde)
	}
	x := c.expect(c.get(ti+"zombie_kpo_task/xcomEntries/pod_name", "map_index=-1&stringify=true"), 200).obj(t)
	if x["value"] != "zombie-kpo-task-pod" {
		t.Fatalf("xcom %v", x)
	}
	c.expect(c.get(ti+"zombie_kpo_task/xcomEntries/nope", ""), 404)

	batch := c.tiPage(c.expect(c.post("/api/v1/dags/~/dagRuns/~/taskInstances/list",
		jsonBody(map[string]any{"dag_ids": []string{"kpo_zombie_dag"}, "task_ids": []string{"zombie_kpo_task", "healthy_kpo_task"},
			"end_date_lte": "2030-01-01T00:00:00Z"})), 200))
	if batch.TotalEntries != 1 || batch.TaskInstances[0].TaskID != "zombie_kpo_task" {
		t.Fatalf("batch %+v", batch)
	}

	c.expect(c.get("/api/v1/nothing", "", noRoute()), 404)
	c.expect(c.do(http.MethodDelete, "/api/v1/version", "", noRoute()), 405)
	c.expect(c.get(ti+"zombie_kpo_task/listMapped", ""), 501)
}

func TestV2Endpoints(t *testing.T) {
	c := seed(t, 2)
	c.expectVersion(t, "/api/v2", "3.2.1")
	c.expect(c.get("/api/v2/monitor/health", "", noAuth()), 200)

	dags := c.expect(c.get("/api/v2/dags", "limit=10&exclude_stale=true&dag_id_pattern=zombie"), 200).obj(t)
	if dags["total_entries"] != 1.0 {
		t.Fatalf("dags %v", dags)
	}
	c.expect(c.get("/api/v2/dags/kpo_zombie_dag", ""), 200)
	c.expect(c.get("/api/v2/dags/nope", ""), 404)
	c.expectOneRunPerListing(t, "/api/v2", "state=running&order_by=-start_date&order_by=run_id")
	c.expect(c.get("/api/v2/dags/nope/dagRuns", ""), 404)
	r := c.expect(c.get("/api/v2/dags/kpo_zombie_dag/dagRuns/"+run, ""), 200).obj(t)
	if r["dag_run_id"] != runID || r["logical_date"] != "2026-11-27T06:00:00Z" {
		t.Fatalf("run %v", r)
	}
	c.expect(c.get("/api/v2/dags/kpo_zombie_dag/dagRuns/nope", ""), 404)

	all := c.tiPage(c.expect(c.get("/api/v2/dags/~/dagRuns/~/taskInstances", ""), 200))
	if all.TotalEntries != 4 || len(all.TaskInstances) != 4 {
		t.Fatalf("listing %+v", all)
	}
	filtered := c.tiPage(c.expect(c.get("/api/v2/dags/kpo_zombie_dag/dagRuns/"+run+"/taskInstances",
		"state=running&operator=KubernetesPodOperator&operator=GKEStartPodOperator&task_id=mapped_kpo_task&map_index=1&try_number=1"), 200))
	if filtered.TotalEntries != 1 || filtered.TaskInstances[0].MapIndex != 1 {
		t.Fatalf("filtered %+v", filtered)
	}
	none := c.tiPage(c.expect(c.get("/api/v2/dags/~/dagRuns/~/taskInstances", "operator=BashOperator"), 200))
	if none.TotalEntries != 0 {
		t.Fatalf("operator filter %+v", none)
	}
	// v2 checks the run of a listing exists, and the DAG.
	c.expect(c.get("/api/v2/dags/~/dagRuns/nope/taskInstances", ""), 404)
	c.expect(c.get("/api/v2/dags/nope/dagRuns/~/taskInstances", ""), 404)

	ti := "/api/v2/dags/kpo_zombie_dag/dagRuns/" + run + "/taskInstances/"
	var zombie tiRow
	c.expect(c.get(ti+"zombie_kpo_task", ""), 200).decode(t, &zombie)
	if *zombie.State != "success" || zombie.ID == "" || zombie.EndDate == nil {
		t.Fatalf("zombie %+v", zombie)
	}
	mapped := c.expect(c.get(ti+"mapped_kpo_task", ""), 404).obj(t)
	if mapped["detail"] != "Task instance is mapped, add the map_index value to the URL" {
		t.Fatalf("mapped without index: %v", mapped)
	}
	var m0 tiRow
	c.expect(c.get(ti+"mapped_kpo_task/0", ""), 200).decode(t, &m0)
	if m0.MapIndex != 0 || *m0.State != "success" {
		t.Fatalf("mapped 0: %+v", m0)
	}
	c.expect(c.get(ti+"mapped_kpo_task/9", ""), 404)
	c.expect(c.get(ti+"mapped_kpo_task/x", "", invalidRequest("map_index")), 422)
	c.expect(c.get(ti+"nope", ""), 404)

	xcoms := c.expect(c.get(ti+"zombie_kpo_task/xcomEntries", "xcom_key_pattern=pod_%25&limit=1"), 200).obj(t)
	if xcoms["total_entries"] != 2.0 || len(xcoms["xcom_entries"].([]any)) != 1 {
		t.Fatalf("xcoms %v", xcoms)
	}
	x := c.expect(c.get(ti+"zombie_kpo_task/xcomEntries/pod_namespace", "map_index=-1"), 200).obj(t)
	if x["value"] != "airflow" {
		t.Fatalf("xcom %v", x)
	}
	c.expect(c.get(ti+"zombie_kpo_task/xcomEntries/nope", ""), 404)

	batch := c.tiPage(c.expect(c.post("/api/v2/dags/~/dagRuns/~/taskInstances/list",
		jsonBody(map[string]any{"dag_ids": []string{"kpo_zombie_dag"}, "state": []any{"running"}, "order_by": "-map_index",
			"page_limit": 10})), 200))
	if batch.TotalEntries != 2 || batch.TaskInstances[0].MapIndex != 1 {
		t.Fatalf("batch %+v", batch)
	}

	c.expect(c.get("/api/v2/nothing", "", noRoute()), 404)
	c.expect(c.get("/api/v1/version", "", noRoute()), 404)
	c.expect(c.get(ti+"zombie_kpo_task/tries", ""), 501)
}

// pagingScenario has n task instances of one DAG run, with varied start
// dates so that v2 ordering by start_date has ties and nulls.
func pagingScenario(version string, n, pageCap int) *Scenario {
	var b strings.Builder
	fmt.Fprintf(&b, "airflowVersion: %q\nauth: {username: u, password: p}\npageLimitCap: %d\n", version, pageCap)
	b.WriteString("dags: [{dagId: d}]\nruns: [{dagId: d, runId: r, startDate: '-3h'}]\ntaskInstances:\n")
	for i := 0; i < n; i++ {
		start := fmt.Sprintf("'-%dm'", 10*(i%3+1))
		if i%4 == 3 {
			start = "null"
		}
		fmt.Fprintf(&b, "  - {dagId: d, runId: r, taskId: t%02d, state: running, operator: KubernetesPodOperator, startDate: %s}\n", i, start)
	}
	sc, err := ParseScenario([]byte(b.String()))
	if err != nil {
		panic(err)
	}
	return sc
}

func TestV1Paging(t *testing.T) {
	const n = 11
	c := newClient(t, pagingScenario("2.10.5", n, 100))
	var seen []TIKey
	var first []TIKey
	for offset := 0; ; offset += 4 {
		p := c.tiPage(c.expect(c.get("/api/v1/dags/~/dagRuns/~/taskInstances", fmt.Sprintf("limit=4&offset=%d", offset)), 200))
		if p.TotalEntries != n {
			t.Fatalf("total_entries %d at offset %d", p.TotalEntries, offset)
		}
		if len(p.TaskInstances) == 0 {
			break
		}
		seen = append(seen, keysOf(p.TaskInstances)...)
	}
	if len(seen) != n {
		t.Fatalf("paging returned %d rows, want %d", len(seen), n)
	}
	full := keysOf(c.tiPage(c.expect(c.get("/api/v1/dags/~/dagRuns/~/taskInstances", ""), 200)).TaskInstances)
	first = append(first, full...)
	if !slices.Equal(seen, first) {
		t.Fatalf("pages are not slices of one stable order:\n%v\n%v", seen, first)
	}
	sorted := slices.Clone(first)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].TaskID < sorted[j].TaskID })
	if slices.Equal(sorted, first) {
		t.Fatalf("v1 rows come back in key (and insertion) order; the simulator must not offer an order Airflow 2 does not")
	}

	// The task instance list has no check_limit: no cap, and limit=0 is
	// an empty page; the DAG list is capped and maps 0 to the fallback.
	big := newClient(t, pagingScenario("2.10.5", 130, 100))
	if p := big.tiPage(big.expect(big.get("/api/v1/dags/~/dagRuns/~/taskInstances", "limit=1000"), 200)); len(p.TaskInstances) != 130 {
		t.Fatalf("v1 limit capped: %d rows", len(p.TaskInstances))
	}
	if p := big.tiPage(big.expect(big.get("/api/v1/dags/~/dagRuns/~/taskInstances", ""), 200)); len(p.TaskInstances) != 100 {
		t.Fatalf("v1 default limit: %d rows", len(p.TaskInstances))
	}
	if p := big.tiPage(big.expect(big.get("/api/v1/dags/~/dagRuns/~/taskInstances", "limit=0"), 200)); len(p.TaskInstances) != 0 || p.TotalEntries != 130 {
		t.Fatalf("v1 limit=0: %+v", p)
	}
	// From 2.10.3 the batch endpoint pages (page_limit defaults to 100);
	// before, it returns every match whatever the paging fields say.
	if p := big.tiPage(big.expect(big.post("/api/v1/dags/~/dagRuns/~/taskInstances/list", jsonBody(map[string]any{})), 200)); len(p.TaskInstances) != 100 || p.TotalEntries != 130 {
		t.Fatalf("2.10.5 batch: %d rows of %d, want 100 of 130", len(p.TaskInstances), p.TotalEntries)
	}
	if p := big.tiPage(big.expect(big.post("/api/v1/dags/~/dagRuns/~/taskInstances/list", jsonBody(map[string]any{"page_offset": 120, "page_limit": 50})), 200)); len(p.TaskInstances) != 10 {
		t.Fatalf("2.10.5 batch at offset 120: %d rows, want 10", len(p.TaskInstances))
	}
	old := newClient(t, pagingScenario("2.10.2", 130, 100))
	if p := old.tiPage(old.expect(old.post("/api/v1/dags/~/dagRuns/~/taskInstances/list", jsonBody(map[string]any{"page_offset": 120, "page_limit": 5})), 200)); len(p.TaskInstances) != 130 {
		t.Fatalf("2.10.2 batch paginated: %d rows", len(p.TaskInstances))
	}
}

func TestV2Paging(t *testing.T) {
	const n = 11
	c := newClient(t, pagingScenario("3.2.1", n, 5))
	c.login()
	get := func(q string) tiPage {
		t.Helper()
		return c.tiPage(c.expect(c.get("/api/v2/dags/~/dagRuns/~/taskInstances", q), 200))
	}
	// limit is capped at pageLimitCap (5), so ask for more and advance by
	// what came back.
	var seen []tiRow
	for offset := 0; ; {
		p := get(fmt.Sprintf("order_by=id&limit=50&offset=%d", offset))
		if p.TotalEntries != n || len(p.TaskInstances) > 5 {
			t.Fatalf("page at %d: total %d, %d rows", offset, p.TotalEntries, len(p.TaskInstances))
		}
		if len(p.TaskInstances) == 0 {
			break
		}
		seen = append(seen, p.TaskInstances...)
		offset += len(p.TaskInstances)
	}
	if len(seen) != n {
		t.Fatalf("paging returned %d rows", len(seen))
	}
	if !slices.IsSortedFunc(seen, func(a, b tiRow) int { return strings.Compare(a.ID, b.ID) }) {
		t.Fatalf("order_by=id not ascending by id")
	}

	// Several keys, NULLs last in both directions, id as tie-breaker in
	// the direction of the first key.
	uncapped := newClient(t, pagingScenario("3.2.1", n, 100))
	uncapped.login()
	for _, dir := range []string{"", "-"} {
		p := uncapped.tiPage(uncapped.expect(uncapped.get("/api/v2/dags/~/dagRuns/~/taskInstances", "order_by="+dir+"start_date&order_by=map_index"), 200))
		rows := p.TaskInstances
		nulls := 0
		for i, r := range rows {
			if r.StartDate == nil {
				nulls++
				continue
			}
			if nulls > 0 {
				t.Fatalf("%sstart_date: non-null after null at %d", dir, i)
			}
			if i > 0 {
				prev := rows[i-1]
				c := strings.Compare(*prev.StartDate, *r.StartDate)
				if dir == "-" {
					c = -c
				}
				if c > 0 || (c == 0 && (strings.Compare(prev.ID, r.ID) > 0) != (dir == "-")) {
					t.Fatalf("%sstart_date: rows %d and %d out of order", dir, i-1, i)
				}
			}
		}
		if nulls != n/4 {
			t.Fatalf("%d null start dates, want %d", nulls, n/4)
		}
	}
	if p := get(""); len(p.TaskInstances) != 5 {
		t.Fatalf("default limit with cap 5: %d rows", len(p.TaskInstances))
	}
	if p := uncapped.tiPage(uncapped.expect(uncapped.post("/api/v2/dags/~/dagRuns/~/taskInstances/list",
		jsonBody(map[string]any{"page_offset": 3, "page_limit": 4, "order_by": "id"})), 200)); len(p.TaskInstances) != 4 || p.TotalEntries != n {
		t.Fatalf("batch page: %+v", p)
	}
	// page_limit is not capped.
	if p := c.tiPage(c.expect(c.post("/api/v2/dags/~/dagRuns/~/taskInstances/list", jsonBody(map[string]any{"page_limit": 50})), 200)); len(p.TaskInstances) != n {
		t.Fatalf("batch page_limit capped: %d rows", len(p.TaskInstances))
	}
	bad := c.expect(c.get("/api/v2/dags/~/dagRuns/~/taskInstances", "order_by=hostname"), 400).obj(t)
	if !strings.Contains(bad["detail"].(string), "Ordering with 'hostname' is disallowed") {
		t.Fatalf("bad order_by: %v", bad)
	}
	c.expect(c.post("/api/v2/dags/~/dagRuns/~/taskInstances/list", jsonBody(map[string]any{"order_by": "operator"})), 400)
}

func TestNullStateRoundTrip(t *testing.T) {
	for _, version := range []string{"2.10.5", "3.2.1"} {
		t.Run(version, func(t *testing.T) {
			c := signedInTo(t, version, `dags: [{dagId: d}]
runs: [{dagId: d, runId: r}]
taskInstances:
  - {dagId: d, runId: r, taskId: nostatus}
  - {dagId: d, runId: r, taskId: running, state: running}
`)
			base := c.sim.BasePath() + "/dags/~/dagRuns/~/taskInstances"
			p := c.tiPage(c.expect(c.get(base, "state=none"), 200))
			if p.TotalEntries != 1 || p.TaskInstances[0].TaskID != "nostatus" || p.TaskInstances[0].State != nil {
				t.Fatalf("state=none: %+v", p)
			}
			if !strings.Contains(string(c.expect(c.get(c.sim.BasePath()+"/dags/d/dagRuns/r/taskInstances/nostatus", ""), 200).body), `"state":null`) {
				t.Fatalf("null state not sent as JSON null")
			}
			p = c.tiPage(c.expect(c.post(c.sim.BasePath()+"/dags/~/dagRuns/~/taskInstances/list", jsonBody(`{"state":[null]}`)), 200))
			if p.TotalEntries != 1 || p.TaskInstances[0].State != nil {
				t.Fatalf("batch state [null]: %+v", p)
			}
			if c.sim.APIVersion() == 2 {
				p = c.tiPage(c.expect(c.get(base, "state=no_status&state=running"), 200))
				if p.TotalEntries != 2 {
					t.Fatalf("state=no_status&state=running: %+v", p)
				}
			}
			key := TIKey{DagID: "d", RunID: "r", TaskID: "running", MapIndex: -1}
			if err := c.sim.SetTaskState(key, "", 0, nil); err != nil {
				t.Fatal(err)
			}
			if p := c.tiPage(c.expect(c.get(base, "state=none"), 200)); p.TotalEntries != 2 {
				t.Fatalf("after SetTaskState to no status: %+v", p)
			}
		})
	}
}

func TestV1StrictQuery(t *testing.T) {
	c := seed(t, 1)
	list := "/api/v1/dags/~/dagRuns/~/taskInstances"
	for _, tc := range []struct{ query, detail string }{
		{"operator=KubernetesPodOperator", "Extra query parameter(s) operator not in spec"},
		{"order_by=start_date", "Extra query parameter(s) order_by not in spec"},
		{"state=running&page_limit=5&cursor=", "Extra query parameter(s) cursor, page_limit not in spec"},
	} {
		e := c.expect(c.get(list, tc.query), 400).obj(t)
		if e["detail"] != tc.detail || e["title"] != "Bad Request" {
			t.Fatalf("%s: %v", tc.query, e)
		}
	}
	// Unauthenticated, the query is still checked first, as Connexion does.
	c.expect(c.get(list, "operator=x", noAuth()), 400)
	c.expect(c.get(list, "limit=ten", invalidRequest("limit")), 400)
	c.expect(c.get(list, "offset=-1", invalidRequest("offset")), 400)
	c.expect(c.get(list, "start_date_gte=yesterday", invalidRequest("start_date_gte")), 400)
	bad := c.expect(c.get(list, "state=bogus"), 400).obj(t)
	if !strings.Contains(bad["detail"].(string), "bogus") {
		t.Fatalf("bad state: %v", bad)
	}
	c.expect(c.post("/api/v1/dags/~/dagRuns/~/taskInstances/list", jsonBody(`{"state":["bogus"]}`), invalidRequest("state")), 400)
	// The 2.10.0 form does not forbid extra fields, but marshmallow does.
	unknown := c.expect(c.post("/api/v1/dags/~/dagRuns/~/taskInstances/list", jsonBody(`{"operator":["KubernetesPodOperator"]}`)), 400).obj(t)
	if unknown["detail"] != "{'operator': ['Unknown field.']}" {
		t.Fatalf("unknown batch field: %v", unknown)
	}
	c.expect(c.post("/api/v1/dags/~/dagRuns/~/taskInstances/list", jsonBody(`{"start_date_gte":"2026-01-01T00:00:00"}`), invalidRequest("start_date_gte")), 400)
}

func TestV2QueryHandling(t *testing.T) {
	c := seed(t, 2)
	list := "/api/v2/dags/~/dagRuns/~/taskInstances"
	// Undeclared parameters are ignored; declared ones filter.
	p := c.tiPage(c.expect(c.get(list, "foo=bar&page_limit=1&state=running"), 200))
	if p.TotalEntries != 2 {
		t.Fatalf("unknown params not ignored: %+v", p)
	}
	c.expect(c.get(list, "limit=ten&offset=-1", invalidRequest("limit")), 422)
	bad := c.expect(c.get(list, "state=bogus", deviation("HTTPExceptionResponse")), 422).obj(t)
	if !strings.HasPrefix(bad["detail"].(string), "Invalid value for state. Valid values are") {
		t.Fatalf("bad state: %v", bad)
	}
	c.expect(c.get(list, "task_group_id=g"), 501)
	patterns := c.tiPage(c.expect(c.get(list, "dag_id_pattern=kpo_%25&task_display_name_pattern=healthy%7Czombie&run_id_pattern=~"), 200))
	if patterns.TotalEntries != 2 {
		t.Fatalf("patterns: %+v", patterns)
	}
	// end_date filters see an unfinished task instance as ending now.
	open := c.tiPage(c.expect(c.get(list, "end_date_gte=2000-01-01T00:00:00Z"), 200))
	if open.TotalEntries != 4 {
		t.Fatalf("end_date coalesce: %+v", open)
	}
}

func TestV2BatchBody(t *testing.T) {
	c := seed(t, 2)
	batch := "/api/v2/dags/~/dagRuns/~/taskInstances/list"
	e := c.expect(c.post(batch, jsonBody(`{"operator":["KubernetesPodOperator"]}`), invalidRequest("operator")), 422).obj(t)
	item := e["detail"].([]any)[0].(map[string]any)
	if item["type"] != "extra_forbidden" || fmt.Sprint(item["loc"]) != "[body operator]" {
		t.Fatalf("extra field: %v", e)
	}
	c.expect(c.post(batch, jsonBody(`{"state":["bogus"]}`), invalidRequest("state")), 422)
	c.expect(c.post(batch, jsonBody(`{"page_limit":-1}`), invalidRequest("page_limit")), 422)
	c.expect(c.post(batch, jsonBody(`{"dag_ids":"kpo_zombie_dag"}`), invalidRequest("dag_ids")), 422)
	c.expect(c.post("/api/v2/dags/kpo_zombie_dag/dagRuns/~/taskInstances/list", jsonBody(`{}`), invalidRequest("dag_id")), 422)
	c.expect(c.post(batch, invalidRequest("body")), 422)
	p := c.tiPage(c.expect(c.post(batch, jsonBody(`{"state":[null,"running"],"dag_ids":null,"order_by":null,"task_ids":[]}`)), 200))
	if p.TotalEntries != 2 {
		t.Fatalf("nullable batch fields: %+v", p)
	}
}

func unreadableScenario(version string) string {
	return fmt.Sprintf(`airflowVersion: %q
auth: {username: u, password: p}
dags: [{dagId: open}, {dagId: secret, readable: false}]
runs: [{dagId: open, runId: r}, {dagId: secret, runId: r}]
taskInstances:
  - {dagId: open, runId: r, taskId: t, state: running}
  - {dagId: secret, runId: r, taskId: t, state: running}
`, version)
}

func TestUnreadableDAG(t *testing.T) {
	for _, version := range []string{"2.10.5", "3.2.1"} {
		t.Run(version, func(t *testing.T) {
			c := signedIn(t, mustParse(t, unreadableScenario(version)))
			b := c.sim.BasePath()
			p := c.tiPage(c.expect(c.get(b+"/dags/~/dagRuns/~/taskInstances", ""), 200))
			if p.TotalEntries != 1 || p.TaskInstances[0].DagID != "open" {
				t.Fatalf("~ listing shows an unreadable DAG: %+v", p)
			}
			if d := c.expect(c.get(b+"/dags", ""), 200).obj(t); d["total_entries"] != 1.0 {
				t.Fatalf("/dags shows an unreadable DAG: %v", d)
			}
			if r := c.expect(c.get(b+"/dags/~/dagRuns", ""), 200).obj(t); r["total_entries"] != 1.0 {
				t.Fatalf("~ runs show an unreadable DAG: %v", r)
			}
			c.expect(c.get(b+"/dags/secret", ""), 403)
			c.expect(c.get(b+"/dags/secret/dagRuns", ""), 403)
			c.expect(c.get(b+"/dags/secret/dagRuns/r", ""), 403)
			c.expect(c.get(b+"/dags/secret/dagRuns/r/taskInstances", ""), 403)
			c.expect(c.get(b+"/dags/secret/dagRuns/r/taskInstances/t", ""), 403)
			c.expect(c.get(b+"/dags/secret/dagRuns/r/taskInstances/t/0", ""), 403)
			c.expect(c.get(b+"/dags/secret/dagRuns/r/taskInstances/t/xcomEntries", ""), 403)
			batch := jsonBody(map[string]any{"dag_ids": []string{"open", "secret"}})
			if c.sim.APIVersion() == 1 {
				c.expect(c.post(b+"/dags/~/dagRuns/~/taskInstances/list", batch), 403)
			} else {
				// Airflow 3 filters instead of refusing.
				if p := c.tiPage(c.expect(c.post(b+"/dags/~/dagRuns/~/taskInstances/list", batch), 200)); p.TotalEntries != 1 {
					t.Fatalf("v2 batch: %+v", p)
				}
			}
			if err := c.sim.PutDAG(DAGSpec{DagID: "secret"}); err != nil {
				t.Fatal(err)
			}
			if p := c.tiPage(c.expect(c.get(b+"/dags/~/dagRuns/~/taskInstances", ""), 200)); p.TotalEntries != 2 {
				t.Fatalf("DAG made readable still hidden: %+v", p)
			}
		})
	}
}

func TestTokenExpiryAndLogin(t *testing.T) {
	clock := newFakeClock()
	sc := mustParse(t, `airflowVersion: "3.2.1"
auth: {username: admin, password: s3cret, tokenTTL: 1m}
dags: [{dagId: d}]
runs: [{dagId: d, runId: r}]
taskInstances: [{dagId: d, runId: r, taskId: t, state: running}]
`)
	c := newClient(t, sc, WithClock(clock.Now))
	list := "/api/v2/dags/~/dagRuns/~/taskInstances"
	e := c.expect(c.get(list, "", noAuth()), 401).obj(t)
	if e["detail"] != "Not authenticated" {
		t.Fatalf("no token: %v", e)
	}
	c.expect(c.post("/auth/token", jsonBody(map[string]string{"username": "admin", "password": "wrong"}), noAuth()), 401)
	c.expect(c.post("/auth/token", jsonBody(map[string]string{"username": "admin", "password": ""}), noAuth()), 400)
	c.expect(c.post("/auth/token", jsonBody(`{"username":"admin","password":"s3cret","role":"admin"}`), noAuth(), invalidRequest("role")), 422)
	c.expect(c.post("/auth/token", jsonBody(`{"username":"admin"}`), noAuth(), invalidRequest("password")), 422)
	c.login()
	c.expect(c.get(list, ""), 200)
	clock.Advance(59 * time.Second)
	c.expect(c.get(list, ""), 200)
	clock.Advance(time.Second)
	e = c.expect(c.get(list, ""), 401).obj(t)
	if e["detail"] != "Token Expired" {
		t.Fatalf("expired token: %v", e)
	}
	// Health and version stay open with an expired token.
	c.expect(c.get("/api/v2/version", ""), 200)
	c.login()
	c.expect(c.get(list, ""), 200)

	form := c.expect(c.post("/auth/token", formBody("username=admin&password=s3cret"), noAuth()), 201).obj(t)
	c.token = form["access_token"].(string)
	c.expect(c.get(list, ""), 200)

	// A token this simulator did not sign is InvalidTokenError: 403.
	other := New(sc, WithClock(clock.Now)).IssueToken()
	e = c.expect(c.get(list, "", authHeader("Bearer "+other)), 403).obj(t)
	if e["detail"] != "Invalid JWT token" {
		t.Fatalf("foreign token: %v", e)
	}
	c.expect(c.get(list, "", authHeader("Bearer not.a.jwt")), 403)
	c.expect(c.get(list, "", authHeader("Basic YWRtaW46czNjcmV0")), 401)

	reqs := c.sim.Requests()
	last := reqs[len(reqs)-1]
	if last.AuthOK || last.Status != 401 || last.Path != list {
		t.Fatalf("last recorded request %+v", last)
	}
}

func TestV1Auth(t *testing.T) {
	c := seed(t, 1)
	list := "/api/v1/dags/~/dagRuns/~/taskInstances"
	x := c.expect(c.get(list, "", noAuth()), 401)
	if x.header.Get("WWW-Authenticate") != "Basic" {
		t.Fatalf("401 without a Basic challenge: %v", x.header)
	}
	c.expect(c.get(list, "", authHeader("Basic YWRtaW46d3Jvbmc=")), 401) // admin:wrong
	c.expect(c.get("/api/v1/version", "", authHeader("Basic YWRtaW46d3Jvbmc=")), 200)
	reqs := c.sim.Requests()
	if len(reqs) != 3 || reqs[0].AuthOK || reqs[1].AuthOK || reqs[2].AuthOK || reqs[2].Status != 200 {
		t.Fatalf("recorded %+v", reqs)
	}
	c.sim.ResetRequests()
	c.expect(c.get(list, "state=running&state=none"), 200)
	reqs = c.sim.Requests()
	if len(reqs) != 1 || !reqs[0].AuthOK || reqs[0].RawQuery != "state=running&state=none" || reqs[0].Method != "GET" || reqs[0].Path != list {
		t.Fatalf("recorded %+v", reqs)
	}
}

func TestFaults(t *testing.T) {
	for _, api := range []int{1, 2} {
		t.Run(fmt.Sprintf("v%d", api), func(t *testing.T) {
			c := seed(t, api)
			b := c.sim.BasePath()
			list := b + "/dags/~/dagRuns/~/taskInstances"
			batch := b + "/dags/~/dagRuns/~/taskInstances/list"
			health := b + "/health"
			if api == 2 {
				health = b + "/monitor/health"
			}
			openRoutesWork := func() {
				t.Helper()
				c.expect(c.get(b+"/version", ""), 200)
				c.expect(c.get(health, ""), 200)
			}

			c.sim.SetFault(FaultError500)
			// v1's 500 is a problem+json Error like any other; v2's is
			// Starlette's plain text, outside the spec.
			var plain []opt
			if api == 2 {
				plain = append(plain, nonSpec())
			}
			c.expect(c.get(list, "", plain...), 500)
			c.expect(c.get(b+"/dags", "", plain...), 500)
			openRoutesWork()
			if api == 2 {
				c.login() // login is not a data route
			}

			c.sim.SetFault(FaultHTMLLogin)
			x := c.expect(c.get(list, "", nonSpec()), 200)
			if !strings.HasPrefix(x.header.Get("Content-Type"), "text/html") || !strings.Contains(string(x.body), "<form") {
				t.Fatalf("html-login: %v %s", x.header, x.body)
			}
			openRoutesWork()

			c.sim.SetFault(FaultUnauthorized)
			c.expect(c.get(list, ""), 401)
			c.expect(c.post(batch, jsonBody(map[string]any{})), 401)
			if api == 2 {
				c.expect(c.post("/auth/token", jsonBody(map[string]string{"username": c.user, "password": c.pass}), noAuth()), 401)
			}
			openRoutesWork()

			c.sim.SetFault(FaultShortListing)
			for _, x := range []exchange{c.get(list, ""), c.post(batch, jsonBody(map[string]any{}))} {
				p := c.tiPage(c.expect(x, 200))
				if p.TotalEntries != 5 || len(p.TaskInstances) != 4 {
					t.Fatalf("short-listing: total %d, rows %d", p.TotalEntries, len(p.TaskInstances))
				}
			}
			if p := c.tiPage(c.expect(c.get(list, "offset=4"), 200)); len(p.TaskInstances) != 0 || p.TotalEntries != 5 {
				t.Fatalf("short-listing past the rows: %+v", p)
			}

			// hang: no answer until the client gives up.
			c.sim.SetFault(FaultHang)
			entered := make(chan struct{}, 4)
			c.sim.hangHook = func() {
				select {
				case entered <- struct{}{}:
				default:
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan exchange, 1)
			go func() { done <- c.get(list, "", withCtx(ctx)) }()
			<-entered
			openRoutesWork()
			select {
			case x := <-done:
				t.Fatalf("hang answered: %+v", x)
			default:
			}
			cancel()
			if x := <-done; !errors.Is(x.err, context.Canceled) {
				t.Fatalf("hung request ended with %+v", x)
			}

			c.sim.SetFault(FaultNone)
			c.expect(c.get(list, ""), 200)

			// Close releases hung requests by dropping the connection.
			c.sim.SetFault(FaultHang)
			go func() { done <- c.get(list, "") }()
			<-entered
			c.sim.Close()
			if x := <-done; x.err == nil {
				t.Fatalf("hung request answered after Close: %+v", x)
			}
			reqs := c.sim.Requests()
			var hung int
			for _, r := range reqs {
				if r.Path == list && r.Status == 0 {
					hung++
				}
			}
			// The HTTP client may retry a GET whose reused connection was
			// dropped, so Close can account for more than one.
			if hung < 2 {
				t.Fatalf("%d hung requests recorded without a status, want at least 2", hung)
			}
		})
	}
	if _, err := ParseFault("flaky"); err == nil {
		t.Fatal("ParseFault accepted an unknown fault")
	}
	for _, f := range Faults {
		if g, err := ParseFault(string(f)); err != nil || g != f {
			t.Fatalf("ParseFault(%q) = %q, %v", f, g, err)
		}
	}
}

func TestRuntimeMutation(t *testing.T) {
	for _, api := range []int{1, 2} {
		t.Run(fmt.Sprintf("v%d", api), func(t *testing.T) {
			c := seed(t, api)
			b := c.sim.BasePath()
			healthy := TIKey{DagID: "kpo_zombie_dag", RunID: runID, TaskID: "healthy_kpo_task", MapIndex: -1}
			path := b + "/dags/kpo_zombie_dag/dagRuns/" + run + "/taskInstances/healthy_kpo_task"
			var before, after tiRow
			c.expect(c.get(path, ""), 200).decode(t, &before)
			end := time.Now().Add(-time.Minute)
			if err := c.sim.SetTaskState(healthy, "up_for_retry", 0, &end); err != nil {
				t.Fatal(err)
			}
			if err := c.sim.SetTaskState(healthy, "running", 2, nil); err != nil {
				t.Fatal(err)
			}
			c.expect(c.get(path, ""), 200).decode(t, &after)
			if *after.State != "running" || after.TryNumber != 2 || after.EndDate != nil {
				t.Fatalf("after retry: %+v", after)
			}
			if api == 2 && after.ID == before.ID {
				t.Fatalf("v2 id kept across tries: %s", after.ID)
			}
			if err := c.sim.SetTaskState(healthy, "finished", 0, nil); err == nil {
				t.Fatal("SetTaskState accepted an unknown state")
			}
			if err := c.sim.SetTaskState(TIKey{DagID: "x"}, "running", 0, nil); err == nil {
				t.Fatal("SetTaskState accepted an unknown task instance")
			}

			op := "KubernetesPodOperator"
			st := "running"
			if err := c.sim.PutDagRun(DagRunSpec{DagID: "kpo_zombie_dag", RunID: "manual__2", StartDate: "-1m"}); err != nil {
				t.Fatal(err)
			}
			if err := c.sim.PutTaskInstance(TaskInstanceSpec{DagID: "kpo_zombie_dag", RunID: "manual__2", TaskID: "late", State: &st, Operator: &op, StartDate: "-1m"}); err != nil {
				t.Fatal(err)
			}
			if err := c.sim.PutTaskInstance(TaskInstanceSpec{DagID: "kpo_zombie_dag", RunID: "nope", TaskID: "x"}); err == nil {
				t.Fatal("PutTaskInstance accepted a missing run")
			}
			list := b + "/dags/~/dagRuns/~/taskInstances"
			if p := c.tiPage(c.expect(c.get(list, ""), 200)); p.TotalEntries != 5 {
				t.Fatalf("after put: %d", p.TotalEntries)
			}
			if err := c.sim.RemoveTaskInstance(TIKey{DagID: "kpo_zombie_dag", RunID: runID, TaskID: "zombie_kpo_task", MapIndex: -1}); err != nil {
				t.Fatal(err)
			}
			if err := c.sim.RemoveDagRun("kpo_zombie_dag", "manual__2"); err != nil {
				t.Fatal(err)
			}
			if p := c.tiPage(c.expect(c.get(list, ""), 200)); p.TotalEntries != 3 {
				t.Fatalf("after removals: %d", p.TotalEntries)
			}
		})
	}
}

func TestStaleDAG(t *testing.T) {
	for _, tc := range []struct{ version, hide, show string }{
		{"2.10.5", "", "only_active=false"},
		{"3.2.1", "exclude_stale=true", "exclude_stale=false"},
	} {
		t.Run(tc.version, func(t *testing.T) {
			c := signedInTo(t, tc.version, `dags: [{dagId: live, isPaused: true}, {dagId: gone, stale: true}]
runs: [{dagId: gone, runId: r}]
taskInstances: [{dagId: gone, runId: r, taskId: t, state: running}]
`)
			b := c.sim.BasePath()
			var hidden, shown struct {
				Dags []map[string]any `json:"dags"`
			}
			c.expect(c.get(b+"/dags", tc.hide), 200).decode(t, &hidden)
			c.expect(c.get(b+"/dags", tc.show), 200).decode(t, &shown)
			if len(hidden.Dags) != 1 || hidden.Dags[0]["dag_id"] != "live" || hidden.Dags[0]["is_paused"] != true || len(shown.Dags) != 2 {
				t.Fatalf("stale DAG listing: hidden %v, shown %v", hidden, shown)
			}
			gone := c.expect(c.get(b+"/dags/gone", ""), 200).obj(t)
			if c.sim.APIVersion() == 1 && gone["is_active"] != false || c.sim.APIVersion() == 2 && gone["is_stale"] != true {
				t.Fatalf("stale DAG: %v", gone)
			}
			// Its task instances are still listed: only /dags hides it.
			if p := c.tiPage(c.expect(c.get(b+"/dags/~/dagRuns/~/taskInstances", ""), 200)); p.TotalEntries != 1 {
				t.Fatalf("task instances of a stale DAG: %+v", p)
			}
		})
	}
}
