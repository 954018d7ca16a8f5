package airflowsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// v1Page is the limit/offset pair of the v1 list endpoints.
var v1Page = []qparam{p("limit", qInt), pIntMin("offset", 0)}

// v1Routes are the operations and query parameters of the version,
// transcribed from v1-2.10.0.yaml (where the task instance filters are
// declared on the path item) and v1-2.5.0.yaml.
func v1Routes(rel release) []*route {
	since26 := rel.has(capV1ParamsSince26)
	// when keeps params only if the version has them.
	when := func(ok bool, params ...qparam) []qparam {
		if ok {
			return params
		}
		return nil
	}
	tiFilters := concat(
		ranges(qTime, v1Bounds, "execution_date", "start_date", "end_date"),
		when(since26, ranges(qTime, v1Bounds, "updated_at")...),
		ranges(qNum, v1Bounds, "duration"),
		[]qparam{p("state", qStrs), p("pool", qStrs), p("queue", qStrs)},
		when(rel.has(capV1Executor), p("executor", qStrs)))
	ti := "dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances"
	version := newRoute(http.MethodGet, "version", "get_version", nil, (*Server).getVersion)
	health := newRoute(http.MethodGet, "health", "get_health", nil, (*Server).v1Health)
	for _, rt := range []*route{version, health} {
		// Neither handler has an auth decorator in Airflow 2.
		rt.auth, rt.data = false, false
	}
	routes := []*route{
		version, health,
		newRoute(http.MethodGet, "dags", "get_dags", concat(v1Page,
			[]qparam{p("order_by", qStr), p("tags", qStrs), p("only_active", qBool)},
			when(since26, p("paused", qBool), p("fields", qStrs)),
			[]qparam{p("dag_id_pattern", qStr)}), (*Server).v1ListDAGs),
		newRoute(http.MethodGet, "dags/{dag_id}", "get_dag", when(since26, p("fields", qStrs)), (*Server).v1GetDAG),
		newRoute(http.MethodGet, "dags/{dag_id}/dagRuns", "get_dag_runs", concat(v1Page,
			ranges(qTime, v1Bounds, "execution_date", "start_date", "end_date"),
			when(since26, ranges(qTime, v1Bounds, "updated_at")...),
			[]qparam{p("state", qStrs), p("order_by", qStr)},
			when(since26, p("fields", qStrs))), (*Server).v1ListRuns),
		newRoute(http.MethodGet, "dags/{dag_id}/dagRuns/{dag_run_id}", "get_dag_run", when(since26, p("fields", qStrs)), (*Server).v1GetRun),
		newRoute(http.MethodGet, ti, "get_task_instances", concat(v1Page, tiFilters), (*Server).v1ListTIs),
		newRoute(http.MethodPost, "dags/~/dagRuns/~/taskInstances/list", "get_task_instances_batch", nil, (*Server).v1BatchTIs),
		newRoute(http.MethodGet, ti+"/{task_id}", "get_task_instance", nil, (*Server).v1GetTI),
		newRoute(http.MethodGet, ti+"/{task_id}/{map_index:int}", "get_mapped_task_instance", nil, (*Server).v1GetMappedTI),
		newRoute(http.MethodGet, ti+"/{task_id}/xcomEntries", "get_xcom_entries", concat(v1Page,
			when(since26, p("map_index", qInt), p("xcom_key", qStr))), (*Server).v1ListXComs),
		newRoute(http.MethodGet, ti+"/{task_id}/xcomEntries/{xcom_key}", "get_xcom_entry", concat(
			when(since26, p("map_index", qInt)), []qparam{p("deserialize", qBool)},
			when(since26, p("stringify", qBool))), (*Server).v1GetXCom),
		stub(newRoute(http.MethodGet, ti+"/{task_id}/listMapped", "get_mapped_task_instances", nil, unimplemented)),
		stub(newRoute(http.MethodGet, ti+"/{task_id}/links", "get_extra_links", nil, unimplemented)),
	}
	if since26 {
		routes = append(routes,
			stub(newRoute(http.MethodGet, ti+"/{task_id}/tries", "get_task_instance_tries", nil, unimplemented)),
			stub(newRoute(http.MethodGet, ti+"/{task_id}/dependencies", "get_task_instance_dependencies", nil, unimplemented)))
	}
	return routes
}

// unimplemented answers real endpoints the simulator does not model.
func unimplemented(s *Server, c *call) (any, *apiError) {
	return nil, notImplemented(s.api, c.r.Method+" "+c.r.URL.Path)
}

type v1TI struct {
	DagID            string         `json:"dag_id"`
	DagRunID         string         `json:"dag_run_id"`
	Duration         *float64       `json:"duration"`
	EndDate          *string        `json:"end_date"`
	ExecutionDate    string         `json:"execution_date"`
	Executor         *string        `json:"executor"`
	ExecutorConfig   string         `json:"executor_config"`
	Hostname         string         `json:"hostname"`
	MapIndex         int            `json:"map_index"`
	MaxTries         int            `json:"max_tries"`
	Note             *string        `json:"note"`
	Operator         *string        `json:"operator"`
	PID              *int           `json:"pid"`
	Pool             string         `json:"pool"`
	PoolSlots        int            `json:"pool_slots"`
	PriorityWeight   *int           `json:"priority_weight"`
	Queue            *string        `json:"queue"`
	QueuedWhen       *string        `json:"queued_when"`
	RenderedFields   map[string]any `json:"rendered_fields"`
	RenderedMapIndex *string        `json:"rendered_map_index"`
	SLAMiss          any            `json:"sla_miss"`
	StartDate        *string        `json:"start_date"`
	State            *string        `json:"state"`
	TaskDisplayName  string         `json:"task_display_name"`
	TaskID           string         `json:"task_id"`
	Trigger          any            `json:"trigger"`
	TriggererJob     any            `json:"triggerer_job"`
	TryNumber        int            `json:"try_number"`
	Unixname         string         `json:"unixname"`
}

// v1TryNumber is what v1 reports as try_number: before 2.10 the raw
// column, which Airflow decremented on deferral and reschedule and only
// increments when the attempt starts running, so it is one lower than the
// attempt (the pod's try_number label) in these states.
func (s *Server) v1TryNumber(ti *tiRec) int {
	if s.has(capTryNumberIsAttempt) || ti.state == nil {
		return ti.try
	}
	switch *ti.state {
	case "deferred", "up_for_reschedule", "scheduled", "queued":
		return max(ti.try-1, 0)
	}
	return ti.try
}

func (s *Server) renderV1TI(v tiView) v1TI {
	weight := 1
	return v1TI{DagID: v.ti.key.DagID, DagRunID: v.ti.key.RunID, Duration: v.ti.duration(),
		EndDate: optTime(v.ti.end, v1Time), ExecutionDate: v1Time(*v.run.logical), Executor: cloneStr(v.ti.executor),
		ExecutorConfig: "{}", Hostname: v.ti.hostname, MapIndex: v.ti.key.MapIndex, MaxTries: v.ti.maxTries,
		Operator: cloneStr(v.ti.operator), Pool: v.ti.pool, PoolSlots: 1, PriorityWeight: &weight,
		Queue: strp(v.ti.queue), QueuedWhen: optTime(v.ti.start, v1Time), RenderedFields: map[string]any{},
		StartDate: optTime(v.ti.start, v1Time), State: cloneStr(v.ti.state), TaskDisplayName: v.ti.key.TaskID,
		TaskID: v.ti.key.TaskID, TryNumber: s.v1TryNumber(v.ti), Unixname: "airflow"}
}

type v1TICollection struct {
	TaskInstances []v1TI `json:"task_instances"`
	TotalEntries  int    `json:"total_entries"`
}

func (s *Server) v1TICollection(c *call, vs []tiView, offset, limit int) v1TICollection {
	total := len(vs)
	hashOrder(vs)
	rows := page(vs, offset, limit)
	if offset == 0 && len(rows) < total {
		c.markFirstPage(rows)
	}
	out := v1TICollection{TaskInstances: make([]v1TI, 0, len(rows)), TotalEntries: total}
	for _, v := range rows {
		out.TaskInstances = append(out.TaskInstances, s.renderV1TI(v))
	}
	if s.Fault() == FaultShortListing {
		out.TotalEntries++
	}
	return out
}

// v1States is Airflow 2's _convert_ti_states: 'none' is SQL NULL.
func v1States(vals []string, fieldDetail func(string) string) ([]*string, *apiError) {
	if len(vals) == 0 {
		return nil, nil
	}
	out := []*string{}
	for _, v := range vals {
		if v == "none" {
			out = append(out, nil)
			continue
		}
		if !contains(taskStates, v) {
			// Airflow 2.10 lets TaskInstanceState(v) raise, which ends as a
			// 500; a 400 names the mistake and is what Connexion returns
			// for the same value in the batch body.
			return nil, v1BadRequest("about:blank", "Bad Request", fieldDetail(v))
		}
		out = append(out, strp(v))
	}
	return out, nil
}

func (s *Server) v1ListTIs(c *call) (any, *apiError) {
	dagID, runID := c.path["dag_id"], c.path["dag_run_id"]
	limit := c.q.intOr("limit", 100) // get_task_instances has no check_limit: never capped
	if limit < 0 {
		return nil, v1BadRequest(v1ErrType(400), "Bad Request", "Page limit must be a positive integer")
	}
	states, aerr := v1States(c.q.strs("state"), func(v string) string {
		return fmt.Sprintf("'%s' is not a valid TaskInstanceState", v)
	})
	if aerr != nil {
		return nil, aerr
	}
	preds := compact(
		func(v tiView) bool {
			if dagID == "~" {
				return v.dag.readable
			}
			return v.ti.key.DagID == dagID
		},
		func(v tiView) bool { return runID == "~" || v.ti.key.RunID == runID },
		timeRange(queryBounds(c.q, "execution_date", v1Bounds), func(v tiView) *time.Time { return v.run.logical }),
		timeRange(queryBounds(c.q, "start_date", v1Bounds), func(v tiView) *time.Time { return v.ti.start }),
		timeRange(queryBounds(c.q, "end_date", v1Bounds), func(v tiView) *time.Time { return v.ti.end }),
		timeRange(queryBounds(c.q, "updated_at", v1Bounds), func(v tiView) *time.Time { return &v.ti.updated }),
		numRange(queryBounds(c.q, "duration", v1Bounds), func(v tiView) *float64 { return v.ti.duration() }),
		inStates(states),
		inStrings(c.q.strs("pool"), func(v tiView) *string { return &v.ti.pool }),
		inStrings(c.q.strs("queue"), func(v tiView) *string { return &v.ti.queue }),
		inStrings(c.q.strs("executor"), func(v tiView) *string { return v.ti.executor }),
	)
	return s.v1TICollection(c, filterViews(s.views(), preds), c.q.intOr("offset", 0), limit), nil
}

// v1BatchFields is ListTaskInstanceForm as marshmallow loads it, in its
// newest form; v1BatchField drops what the version lacks. page_offset and
// page_limit are always accepted (the schema had them long before they
// were applied) but applied only with capV1BatchPaging.
var v1BatchFields = map[string]string{
	"dag_ids": "strs", "dag_run_ids": "strs", "task_ids": "strs", "pool": "strs", "queue": "strs", "executor": "strs",
	"execution_date_gte": "time", "execution_date_lte": "time", "start_date_gte": "time", "start_date_lte": "time",
	"end_date_gte": "time", "end_date_lte": "time", "duration_gte": "num", "duration_lte": "num",
	"state": "states", "page_offset": "int", "page_limit": "int",
}

func (s *Server) v1BatchTIs(c *call) (any, *apiError) {
	var body map[string]json.RawMessage
	if err := json.Unmarshal(c.body, &body); err != nil || body == nil {
		return nil, v1BadRequest("about:blank", "Bad Request", "Request body must be a JSON object")
	}
	// Connexion checks types and the TaskState enum against the spec first;
	// marshmallow then rejects fields it does not know.
	strs := map[string][]string{}
	ints := map[string]int{}
	times := map[string]*time.Time{}
	nums := map[string]*float64{}
	var states []*string
	var unknown []string
	names := make([]string, 0, len(body))
	for k := range body {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		raw := body[k]
		kind, ok := v1BatchFields[k]
		switch k {
		case "dag_run_ids", "task_ids":
			ok = ok && s.has(capV1BatchRunTaskIDs)
		case "executor":
			ok = ok && s.has(capV1Executor)
		}
		if !ok {
			unknown = append(unknown, k)
			continue
		}
		if string(raw) == "null" {
			continue
		}
		switch kind {
		case "strs":
			var v []string
			if err := json.Unmarshal(raw, &v); err != nil {
				return nil, v1BadRequest("about:blank", "Bad Request", fmt.Sprintf("%s is not of type 'array' - '%s'", raw, k))
			}
			strs[k] = v
		case "time":
			var v string
			if err := json.Unmarshal(raw, &v); err != nil {
				return nil, v1BadRequest("about:blank", "Bad Request", fmt.Sprintf("%s is not of type 'string' - '%s'", raw, k))
			}
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				if _, naiveErr := parseAPITime(v); naiveErr == nil {
					return nil, v1BadRequest(v1ErrType(400), "Bad Request", fmt.Sprintf("{'%s': ['Naive datetime is disallowed']}", k))
				}
				return nil, v1BadRequest("about:blank", "Bad Request", fmt.Sprintf("'%s' is not a 'date-time' - '%s'", v, k))
			}
			t = t.UTC()
			times[k] = &t
		case "num":
			var v float64
			if err := json.Unmarshal(raw, &v); err != nil {
				return nil, v1BadRequest("about:blank", "Bad Request", fmt.Sprintf("%s is not of type 'number' - '%s'", raw, k))
			}
			nums[k] = &v
		case "int":
			var v int
			if err := json.Unmarshal(raw, &v); err != nil {
				return nil, v1BadRequest(v1ErrType(400), "Bad Request", fmt.Sprintf("{'%s': ['Not a valid integer.']}", k))
			}
			if least := map[string]int{"page_offset": 0, "page_limit": 1}[k]; v < least {
				return nil, v1BadRequest(v1ErrType(400), "Bad Request", fmt.Sprintf("{'%s': ['Must be greater than or equal to %d.']}", k, least))
			}
			ints[k] = v
		case "states":
			var v []*string
			if err := json.Unmarshal(raw, &v); err != nil {
				return nil, v1BadRequest("about:blank", "Bad Request", fmt.Sprintf("%s is not of type 'array' - 'state'", raw))
			}
			states = []*string{}
			for i, st := range v {
				switch {
				case st == nil || *st == "none":
					states = append(states, nil)
				case contains(taskStates, *st):
					states = append(states, st)
				default:
					return nil, v1BadRequest("about:blank", "Bad Request",
						fmt.Sprintf("'%s' is not one of [None, 'success', 'running', 'failed', 'upstream_failed', 'skipped', 'up_for_retry', 'up_for_reschedule', 'queued', 'none', 'scheduled', 'deferred', 'removed', 'restarting'] - 'state.%d'", *st, i))
				}
			}
		}
	}
	if len(unknown) > 0 {
		parts := make([]string, len(unknown))
		for i, k := range unknown {
			parts[i] = fmt.Sprintf("'%s': ['Unknown field.']", k)
		}
		return nil, v1BadRequest(v1ErrType(400), "Bad Request", "{"+strings.Join(parts, ", ")+"}")
	}
	dagIDs := strs["dag_ids"]
	if len(dagIDs) > 0 {
		for _, id := range dagIDs {
			if d := s.dags[id]; d != nil && !d.readable {
				return nil, v1Forbidden(fmt.Sprintf("User not allowed to access some of these DAGs: %s", pyList(dagIDs)))
			}
		}
	}
	b := func(name string) []bound {
		var out []bound
		for _, op := range v1Bounds {
			if t := times[name+"_"+op]; t != nil {
				out = append(out, bound{op: op, t: t})
			}
			if f := nums[name+"_"+op]; f != nil {
				out = append(out, bound{op: op, f: f})
			}
		}
		return out
	}
	preds := compact(
		func(v tiView) bool { return v.dag.readable },
		inStrings(dagIDs, func(v tiView) *string { return &v.ti.key.DagID }),
		inStrings(strs["dag_run_ids"], func(v tiView) *string { return &v.ti.key.RunID }),
		inStrings(strs["task_ids"], func(v tiView) *string { return &v.ti.key.TaskID }),
		timeRange(b("execution_date"), func(v tiView) *time.Time { return v.run.logical }),
		timeRange(b("start_date"), func(v tiView) *time.Time { return v.ti.start }),
		timeRange(b("end_date"), func(v tiView) *time.Time { return v.ti.end }),
		numRange(b("duration"), func(v tiView) *float64 { return v.ti.duration() }),
		inStates(states),
		inStrings(strs["pool"], func(v tiView) *string { return &v.ti.pool }),
		inStrings(strs["queue"], func(v tiView) *string { return &v.ti.queue }),
		inStrings(strs["executor"], func(v tiView) *string { return v.ti.executor }),
	)
	vs := filterViews(s.views(), preds)
	if !s.has(capV1BatchPaging) {
		return s.v1TICollection(c, vs, 0, len(vs)), nil
	}
	limit, ok := ints["page_limit"]
	if !ok {
		limit = 100
	}
	return s.v1TICollection(c, vs, ints["page_offset"], limit), nil
}

func (s *Server) lookupTI(c *call, mapIndex int) (tiView, bool) {
	key := TIKey{DagID: c.path["dag_id"], RunID: c.path["dag_run_id"], TaskID: c.path["task_id"], MapIndex: mapIndex}
	ti := s.tis[key]
	if ti == nil {
		return tiView{}, false
	}
	run := s.runs[[2]string{key.DagID, key.RunID}]
	dag := s.dags[key.DagID]
	if run == nil || dag == nil {
		return tiView{}, false
	}
	return tiView{ti: ti, run: run, dag: dag}, true
}

// hasMapped reports whether the task has mapped instances in the run: a
// plain GET of such a task is a 404 in both APIs.
func (s *Server) hasMapped(c *call) bool {
	for k := range s.tis {
		if k.DagID == c.path["dag_id"] && k.RunID == c.path["dag_run_id"] && k.TaskID == c.path["task_id"] && k.MapIndex >= 0 {
			return true
		}
	}
	return false
}

func (s *Server) v1GetTI(c *call) (any, *apiError) {
	if v, ok := s.lookupTI(c, -1); ok {
		return s.renderV1TI(v), nil
	}
	if s.hasMapped(c) {
		return nil, v1NotFound("Task instance not found", "Task instance is mapped, add the map_index value to the URL")
	}
	return nil, v1NotFound("Task instance not found", "")
}

func (s *Server) v1GetMappedTI(c *call) (any, *apiError) {
	mi, _ := strconv.Atoi(c.path["map_index"])
	if v, ok := s.lookupTI(c, mi); ok {
		return s.renderV1TI(v), nil
	}
	return nil, v1NotFound("Task instance not found", "")
}

// v1CheckLimit is Airflow 2's check_limit, used by most v1 list endpoints
// but not by the task instance list.
func (s *Server) v1CheckLimit(c *call) (int, *apiError) {
	limit := c.q.intOr("limit", 100)
	switch {
	case limit > s.pageCap:
		return s.pageCap, nil
	case limit == 0:
		return 100, nil
	case limit < 0:
		return 0, v1BadRequest(v1ErrType(400), "Bad Request", "Page limit must be a positive integer")
	}
	return limit, nil
}

func (s *Server) v1DAG(d *dagRec) map[string]any {
	return map[string]any{
		"dag_id": d.id, "dag_display_name": d.id, "root_dag_id": nil, "is_paused": d.paused, "is_active": !d.stale,
		"is_subdag": false, "last_parsed_time": v1Time(s.start), "last_pickled": nil, "last_expired": nil,
		"scheduler_lock": nil, "pickle_id": nil, "default_view": "grid", "fileloc": "/opt/airflow/dags/" + d.id + ".py",
		"file_token": fileToken(d.id), "owners": []string{"airflow"}, "description": nil, "schedule_interval": nil,
		"timetable_description": "Never, external triggers only", "tags": []any{}, "max_active_tasks": 16,
		"max_active_runs": 16, "max_consecutive_failed_dag_runs": 0, "has_task_concurrency_limits": false,
		"has_import_errors": false, "next_dagrun": nil, "next_dagrun_data_interval_start": nil,
		"next_dagrun_data_interval_end": nil, "next_dagrun_create_after": nil,
	}
}

func fileToken(dagID string) string {
	return strings.TrimRight(strings.NewReplacer("+", "-", "/", "_").Replace(
		fmt.Sprintf("%x", []byte("/opt/airflow/dags/"+dagID+".py"))), "=")
}

// v1Fields applies the ReturnFields parameter: keep only the named keys.
func v1Fields(obj map[string]any, fields []string) (map[string]any, *apiError) {
	if len(fields) == 0 {
		return obj, nil
	}
	out := map[string]any{}
	for _, f := range fields {
		v, ok := obj[f]
		if !ok {
			return nil, v1BadRequest(v1ErrType(400), "Bad Request", fmt.Sprintf("Invalid fields: {'%s'}", f))
		}
		out[f] = v
	}
	return out, nil
}

func (s *Server) v1ListDAGs(c *call) (any, *apiError) {
	limit, aerr := s.v1CheckLimit(c)
	if aerr != nil {
		return nil, aerr
	}
	onlyActive := c.q.boolp("only_active")
	paused := c.q.boolp("paused")
	pattern, hasPattern := c.q.str("dag_id_pattern")
	var dags []*dagRec
	for _, d := range s.dags {
		switch {
		case !d.readable:
		case (onlyActive == nil || *onlyActive) && d.stale:
		case paused != nil && d.paused != *paused:
		case hasPattern && !likePattern(pattern).MatchString(d.id):
		case len(c.q.strs("tags")) > 0: // simulated DAGs have no tags
		default:
			dags = append(dags, d)
		}
	}
	desc := false
	switch ob, _ := c.q.str("order_by"); ob {
	case "", "dag_id":
	case "-dag_id":
		desc = true
	default:
		return nil, v1BadRequest(v1ErrType(400), "Bad Request",
			fmt.Sprintf("Ordering with '%s' is disallowed or the attribute does not exist on the model", strings.TrimLeft(ob, "-")))
	}
	sort.Slice(dags, func(i, j int) bool { return (dags[i].id < dags[j].id) != desc })
	return v1FieldsPage(c, "dags", dags, limit, s.v1DAG)
}

// v1FieldsPage answers the page of all that ?offset and limit ask for, each
// row as view shows it narrowed to ?fields, in a collection named key.
func v1FieldsPage[T any](c *call, key string, all []T, limit int, view func(T) map[string]any) (any, *apiError) {
	rows := page(all, c.q.intOr("offset", 0), limit)
	out := make([]map[string]any, 0, len(rows))
	for _, r := range rows {
		obj, aerr := v1Fields(view(r), c.q.strs("fields"))
		if aerr != nil {
			return nil, aerr
		}
		out = append(out, obj)
	}
	return map[string]any{key: out, "total_entries": len(all)}, nil
}

func (s *Server) v1GetDAG(c *call) (any, *apiError) {
	d := s.dags[c.path["dag_id"]]
	if d == nil {
		return nil, v1NotFound("DAG not found", fmt.Sprintf("The DAG with dag_id: %s was not found", c.path["dag_id"]))
	}
	return v1Fields(s.v1DAG(d), c.q.strs("fields"))
}

func (s *Server) v1Run(r *runRec) map[string]any {
	return map[string]any{
		"dag_run_id": r.runID, "dag_id": r.dagID, "logical_date": optTime(r.logical, v1Time),
		"execution_date": optTime(r.logical, v1Time), "start_date": optTime(r.start, v1Time),
		"end_date": optTime(r.end, v1Time), "data_interval_start": optTime(r.logical, v1Time),
		"data_interval_end": optTime(r.logical, v1Time), "last_scheduling_decision": nil,
		"run_type": r.runType, "state": r.state, "external_trigger": r.runType == "manual", "conf": map[string]any{},
		"note": nil,
	}
}

func (s *Server) v1ListRuns(c *call) (any, *apiError) {
	dagID := c.path["dag_id"]
	limit, aerr := s.v1CheckLimit(c)
	if aerr != nil {
		return nil, aerr
	}
	states := c.q.strs("state")
	var runs []*runRec
	for _, r := range s.runs {
		d := s.dags[r.dagID]
		if d == nil || (dagID == "~" && !d.readable) || (dagID != "~" && r.dagID != dagID) {
			continue
		}
		if len(states) > 0 && !contains(states, r.state) {
			continue
		}
		ok := true
		for _, f := range []struct {
			name string
			t    *time.Time
		}{{"execution_date", r.logical}, {"start_date", r.start}, {"end_date", r.end}, {"updated_at", &r.updated}} {
			for _, b := range queryBounds(c.q, f.name, v1Bounds) {
				ok = ok && b.holds(f.t, nil)
			}
		}
		if ok {
			runs = append(runs, r)
		}
	}
	if err := sortRuns(runs, c.q, false); err != nil {
		return nil, err
	}
	return v1FieldsPage(c, "dag_runs", runs, limit, s.v1Run)
}

// sortRuns orders DAG runs by one order_by value (v1) or a list (v2),
// defaulting to the primary key, i.e. creation order.
func sortRuns(runs []*runRec, q qvals, v2 bool) *apiError {
	var values []string
	if v2 {
		values = q.strs("order_by")
	} else if ob, ok := q.str("order_by"); ok {
		values = []string{ob}
	}
	allowed := []string{"id", "state", "dag_id", "execution_date", "logical_date", "run_after", "dag_run_id", "run_id", "start_date", "end_date", "updated_at"}
	var keys []sortKey
	for _, v := range values {
		attr := strings.TrimLeft(v, "-")
		if !contains(allowed, attr) {
			msg := fmt.Sprintf("Ordering with '%s' is disallowed or the attribute does not exist on the model", attr)
			if v2 {
				return v2Detail(400, msg)
			}
			return v1BadRequest(v1ErrType(400), "Bad Request", msg)
		}
		keys = append(keys, sortKey{attr: attr, desc: strings.HasPrefix(v, "-")})
	}
	tieDesc := len(keys) > 0 && keys[0].desc
	keys = append(keys, sortKey{attr: "id", desc: tieDesc})
	val := func(r *runRec, attr string) any {
		switch attr {
		case "state":
			return r.state
		case "dag_id":
			return r.dagID
		case "execution_date", "logical_date":
			return timeOrNil(r.logical)
		case "run_after":
			return r.runAfter
		case "dag_run_id", "run_id":
			return r.runID
		case "start_date":
			return timeOrNil(r.start)
		case "end_date":
			return timeOrNil(r.end)
		case "updated_at":
			return r.updated
		}
		return r.seq
	}
	sortByKeys(runs, keys, val)
	return nil
}

func (s *Server) v1GetRun(c *call) (any, *apiError) {
	r := s.runs[[2]string{c.path["dag_id"], c.path["dag_run_id"]}]
	if r == nil || s.runGetNotFound(c.path["dag_id"], c.path["dag_run_id"]) {
		return nil, v1NotFound("DAGRun not found", fmt.Sprintf("DAGRun with DAG ID: '%s' and DagRun ID: '%s' not found", c.path["dag_id"], c.path["dag_run_id"]))
	}
	return v1Fields(s.v1Run(r), c.q.strs("fields"))
}

type xcomRow struct {
	v   tiView
	key string
	val string
}

// xcomRows lists XComs matching the path, with '~' allowed for DAG, run
// and task, ordered as Airflow orders them.
func (s *Server) xcomRows(c *call) []xcomRow {
	dagID, runID, taskID := c.path["dag_id"], c.path["dag_run_id"], c.path["task_id"]
	var rows []xcomRow
	for _, v := range s.views() {
		switch {
		case dagID == "~" && !v.dag.readable:
		case dagID != "~" && v.ti.key.DagID != dagID:
		case runID != "~" && v.ti.key.RunID != runID:
		case taskID != "~" && v.ti.key.TaskID != taskID:
		default:
			for k, val := range v.ti.xcom {
				rows = append(rows, xcomRow{v: v, key: k, val: val})
			}
		}
	}
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		ka := fmt.Sprintf("%s\x00%s\x00%s\x00%09d\x00%s", a.v.ti.key.DagID, a.v.ti.key.TaskID, a.v.ti.key.RunID, a.v.ti.key.MapIndex+1, a.key)
		kb := fmt.Sprintf("%s\x00%s\x00%s\x00%09d\x00%s", b.v.ti.key.DagID, b.v.ti.key.TaskID, b.v.ti.key.RunID, b.v.ti.key.MapIndex+1, b.key)
		return ka < kb
	})
	return rows
}

// xcomPage is a page of an XCom collection: the rows from offset, each as
// item renders it, and the total.
func xcomPage(rows []xcomRow, offset, limit int, item func(xcomRow) map[string]any) map[string]any {
	items := []map[string]any{}
	for _, x := range page(rows, offset, limit) {
		items = append(items, item(x))
	}
	return map[string]any{"xcom_entries": items, "total_entries": len(rows)}
}

// xcomEntry is the path's XCom at the query's map_index (-1 when absent),
// as item renders it with its value; nil when there is none.
func (s *Server) xcomEntry(c *call, item func(xcomRow) map[string]any) map[string]any {
	mi := c.q.intOr("map_index", -1)
	for _, x := range s.xcomRows(c) {
		if x.v.ti.key.MapIndex == mi && x.key == c.path["xcom_key"] {
			entry := item(x)
			entry["value"] = x.val
			return entry
		}
	}
	return nil
}

func (s *Server) v1XComItem(x xcomRow) map[string]any {
	return map[string]any{"dag_id": x.v.ti.key.DagID, "task_id": x.v.ti.key.TaskID, "key": x.key,
		"map_index": x.v.ti.key.MapIndex, "execution_date": v1Time(*x.v.run.logical),
		"timestamp": v1Time(x.v.ti.xcomTime(s.start))}
}

func (s *Server) v1ListXComs(c *call) (any, *apiError) {
	limit, aerr := s.v1CheckLimit(c)
	if aerr != nil {
		return nil, aerr
	}
	var rows []xcomRow
	for _, x := range s.xcomRows(c) {
		if mi, ok := c.q["map_index"].(int); ok && x.v.ti.key.MapIndex != mi {
			continue
		}
		if k, ok := c.q.str("xcom_key"); ok && x.key != k {
			continue
		}
		rows = append(rows, x)
	}
	return xcomPage(rows, c.q.intOr("offset", 0), limit, s.v1XComItem), nil
}

func (s *Server) v1GetXCom(c *call) (any, *apiError) {
	if item := s.xcomEntry(c, s.v1XComItem); item != nil {
		return item, nil
	}
	return nil, v1NotFound("XCom entry not found", "")
}

// getVersion is GET /version of both APIs.
func (s *Server) getVersion(_ *call) (any, *apiError) {
	return map[string]any{"version": s.version, "git_version": ".release:airflow-sim"}, nil
}

// health is the health endpoint's body at now: the metadatabase, scheduler
// and triggerer healthy, with heartbeats two seconds ago in the API's time
// format; the DAG processor as the API reports one that is not running.
func health(now time.Time, format func(time.Time) string, dagProcessor any) map[string]any {
	beat := format(now.Add(-2 * time.Second))
	return map[string]any{
		"metadatabase":  map[string]any{"status": "healthy"},
		"scheduler":     map[string]any{"status": "healthy", "latest_scheduler_heartbeat": beat},
		"triggerer":     map[string]any{"status": "healthy", "latest_triggerer_heartbeat": beat},
		"dag_processor": dagProcessor,
	}
}

func (s *Server) v1Health(c *call) (any, *apiError) {
	return health(c.now, v1Time, map[string]any{"status": nil, "latest_dag_processor_heartbeat": nil}), nil
}
