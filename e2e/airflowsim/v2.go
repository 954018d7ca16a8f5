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

// Query parameters per operation, transcribed from v2-3.2.1.yaml.
var (
	v2Page = []qparam{pIntMin("limit", 0), pIntMin("offset", 0)}
)

// v2TIParams are the task instance list's parameters in the version:
// 3.2.1's, less the filters older versions lack (capV2TIFilters31), plus
// cursor (capV2Cursor). Other parameters new after 3.0 are kept in every
// version: the simulator does not model their absence.
func v2TIParams(rel release) []qparam {
	f31 := rel.has(capV2TIFilters31)
	out := concat(
		[]qparam{p("task_id", qStr)},
		ranges(qTime, v2Bounds, "run_after", "logical_date", "start_date", "end_date", "updated_at"),
		ranges(qNum, v2Bounds, "duration"),
		[]qparam{
			p("task_display_name_pattern", qStr), pUnimpl("task_group_id", qStr), p("dag_id_pattern", qStr),
			p("run_id_pattern", qStr), p("state", qStrs), p("pool", qStrs), p("pool_name_pattern", qStr),
			p("queue", qStrs), p("queue_name_pattern", qStr), p("executor", qStrs),
			pUnimpl("version_number", qInts),
		})
	if f31 {
		out = append(out, p("try_number", qInts), p("operator", qStrs))
	}
	out = append(out, p("operator_name_pattern", qStr))
	if f31 {
		out = append(out, p("map_index", qInts))
	}
	out = concat(out, v2Page, []qparam{p("order_by", qStrs)})
	if rel.has(capV2Cursor) {
		out = append(out, p("cursor", qStr))
	}
	return out
}

var (
	v2TIOrderAttrs = []string{"id", "state", "duration", "start_date", "end_date", "map_index", "try_number",
		"logical_date", "run_after", "data_interval_start", "data_interval_end", "rendered_map_index", "operator"}
	v2BatchOrderAttrs = []string{"id", "state", "duration", "start_date", "end_date", "map_index"}
)

func concat(parts ...[]qparam) []qparam {
	var out []qparam
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func v2Routes(rel release) []*route {
	ti := "dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances"
	version := newRoute(http.MethodGet, "version", "get_version", nil, (*Server).getVersion)
	health := newRoute(http.MethodGet, "monitor/health", "get_health", nil, (*Server).v2Health)
	for _, rt := range []*route{version, health} {
		// Mounted outside the authenticated router in Airflow 3.
		rt.auth, rt.data = false, false
	}
	return []*route{
		version, health,
		newRoute(http.MethodGet, "dags", "get_dags", concat(v2Page, []qparam{
			p("tags", qStrs), p("tags_match_mode", qStr), p("owners", qStrs), p("dag_id_pattern", qStr),
			p("dag_display_name_pattern", qStr), p("exclude_stale", qBool), p("paused", qBool),
			p("has_import_errors", qBool), pUnimpl("last_dag_run_state", qStr), pUnimpl("bundle_name", qStr),
			pUnimpl("bundle_version", qStr), pUnimpl("has_asset_schedule", qBool), pUnimpl("asset_dependency", qStr),
		}, unimplRanges("dag_run_start_date", "dag_run_end_date"), []qparam{
			pUnimpl("dag_run_state", qStrs), p("order_by", qStrs), pUnimpl("is_favorite", qBool),
			pUnimpl("timetable_type", qStrs),
		}), (*Server).v2ListDAGs),
		newRoute(http.MethodGet, "dags/{dag_id}", "get_dag", nil, (*Server).v2GetDAG),
		newRoute(http.MethodGet, "dags/{dag_id}/dagRuns", "get_dag_runs", concat(v2Page,
			ranges(qTime, v2Bounds, "run_after", "logical_date", "start_date", "end_date"),
			ranges(qNum, v2Bounds, "duration"),
			ranges(qTime, v2Bounds, "updated_at"),
			[]qparam{
				pUnimpl("conf_contains", qStr), p("run_type", qStrs), p("state", qStrs), pUnimpl("dag_version", qInts),
				pUnimpl("bundle_version", qStr), p("order_by", qStrs), p("run_id_pattern", qStr),
				pUnimpl("triggering_user_name_pattern", qStr), p("dag_id_pattern", qStr),
				pUnimpl("partition_key_pattern", qStr),
			}), (*Server).v2ListRuns),
		newRoute(http.MethodGet, "dags/{dag_id}/dagRuns/{dag_run_id}", "get_dag_run", nil, (*Server).v2GetRun),
		newRoute(http.MethodGet, ti, "get_task_instances", v2TIParams(rel), (*Server).v2ListTIs),
		newRoute(http.MethodPost, ti+"/list", "get_task_instances_batch", nil, (*Server).v2BatchTIs),
		newRoute(http.MethodGet, ti+"/{task_id}", "get_task_instance", nil, (*Server).v2GetTI),
		newRoute(http.MethodGet, ti+"/{task_id}/{map_index}", "get_mapped_task_instance", nil, (*Server).v2GetMappedTI),
		newRoute(http.MethodGet, ti+"/{task_id}/xcomEntries", "get_xcom_entries", concat([]qparam{
			p("xcom_key", qStr), pIntMin("map_index", -1)}, v2Page, []qparam{
			p("xcom_key_pattern", qStr), p("dag_display_name_pattern", qStr), p("run_id_pattern", qStr),
			p("task_id_pattern", qStr), p("map_index_filter", qInt)},
			ranges(qTime, v2Bounds, "logical_date", "run_after")), (*Server).v2ListXComs),
		newRoute(http.MethodGet, ti+"/{task_id}/xcomEntries/{xcom_key}", "get_xcom_entry", []qparam{
			pIntMin("map_index", -1), p("deserialize", qBool), p("stringify", qBool)}, (*Server).v2GetXCom),
		stub(newRoute(http.MethodGet, ti+"/{task_id}/listMapped", "get_mapped_task_instances", nil, unimplemented)),
		stub(newRoute(http.MethodGet, ti+"/{task_id}/tries", "get_task_instance_tries", nil, unimplemented)),
		stub(newRoute(http.MethodGet, ti+"/{task_id}/dependencies", "get_task_instance_dependencies", nil, unimplemented)),
	}
}

func unimplRanges(bases ...string) []qparam {
	out := ranges(qTime, v2Bounds, bases...)
	for i := range out {
		out[i].unimpl = true
	}
	return out
}

type v2TI struct {
	ID               string         `json:"id"`
	TaskID           string         `json:"task_id"`
	DagID            string         `json:"dag_id"`
	DagRunID         string         `json:"dag_run_id"`
	MapIndex         int            `json:"map_index"`
	LogicalDate      *string        `json:"logical_date"`
	RunAfter         string         `json:"run_after"`
	StartDate        *string        `json:"start_date"`
	EndDate          *string        `json:"end_date"`
	Duration         *float64       `json:"duration"`
	State            *string        `json:"state"`
	TryNumber        int            `json:"try_number"`
	MaxTries         int            `json:"max_tries"`
	TaskDisplayName  string         `json:"task_display_name"`
	DagDisplayName   string         `json:"dag_display_name"`
	Hostname         *string        `json:"hostname"`
	Unixname         *string        `json:"unixname"`
	Pool             string         `json:"pool"`
	PoolSlots        int            `json:"pool_slots"`
	Queue            *string        `json:"queue"`
	PriorityWeight   *int           `json:"priority_weight"`
	Operator         *string        `json:"operator"`
	OperatorName     *string        `json:"operator_name"`
	QueuedWhen       *string        `json:"queued_when"`
	ScheduledWhen    *string        `json:"scheduled_when"`
	PID              *int           `json:"pid"`
	Executor         *string        `json:"executor"`
	ExecutorConfig   string         `json:"executor_config"`
	Note             *string        `json:"note"`
	RenderedMapIndex *string        `json:"rendered_map_index"`
	RenderedFields   map[string]any `json:"rendered_fields"`
	Trigger          any            `json:"trigger"`
	TriggererJob     any            `json:"triggerer_job"`
	DagVersion       any            `json:"dag_version"`
}

func renderV2TI(v tiView) v2TI {
	weight := 1
	var host *string
	if v.ti.hostname != "" {
		host = strp(v.ti.hostname)
	}
	return v2TI{ID: v.ti.uuid(), TaskID: v.ti.key.TaskID, DagID: v.ti.key.DagID, DagRunID: v.ti.key.RunID,
		MapIndex: v.ti.key.MapIndex, LogicalDate: optTime(v.run.logical, v2Time), RunAfter: v2Time(v.run.runAfter),
		StartDate: optTime(v.ti.start, v2Time), EndDate: optTime(v.ti.end, v2Time), Duration: v.ti.duration(),
		State: cloneStr(v.ti.state), TryNumber: v.ti.try, MaxTries: v.ti.maxTries, TaskDisplayName: v.ti.key.TaskID,
		DagDisplayName: v.ti.key.DagID, Hostname: host, Unixname: strp("airflow"), Pool: v.ti.pool, PoolSlots: 1,
		Queue: strp(v.ti.queue), PriorityWeight: &weight, Operator: cloneStr(v.ti.operator),
		OperatorName: cloneStr(v.ti.operatorName), QueuedWhen: optTime(v.ti.start, v2Time),
		ScheduledWhen: optTime(v.ti.start, v2Time), Executor: cloneStr(v.ti.executor), ExecutorConfig: "{}",
		RenderedFields: map[string]any{}}
}

type v2TICollection struct {
	TaskInstances []v2TI `json:"task_instances"`
	TotalEntries  int    `json:"total_entries"`
}

func (s *Server) v2TICollection(c *call, vs []tiView, keys []sortKey, offset, limit int) v2TICollection {
	total := len(vs)
	sortViewsV2(vs, keys)
	rows := page(vs, offset, limit)
	if offset == 0 && len(rows) < total {
		c.markFirstPage(rows)
	}
	out := v2TICollection{TaskInstances: make([]v2TI, 0, len(rows)), TotalEntries: total}
	for _, v := range rows {
		out.TaskInstances = append(out.TaskInstances, renderV2TI(v))
	}
	if s.Fault() == FaultShortListing {
		out.TotalEntries++
	}
	return out
}

// v2States is Airflow 3's _transform_ti_states. Its 422 carries a plain
// string detail, not the list the spec's HTTPValidationError declares; the
// real server does this, so clients must cope with it.
func (s *Server) v2States(vals []string) ([]*string, *apiError) {
	if len(vals) == 0 {
		return nil, nil
	}
	out := []*string{}
	for _, v := range vals {
		if v == "none" || (v == "no_status" && s.has(capV2NoStatus)) {
			out = append(out, nil)
			continue
		}
		if !contains(taskStates, v) {
			return nil, v2Detail(http.StatusUnprocessableEntity, "Invalid value for state. Valid values are "+strings.Join(taskStates, ", "))
		}
		out = append(out, strp(v))
	}
	return out, nil
}

func (s *Server) v2Limit(c *call) int {
	limit := c.q.intOr("limit", 50)
	if limit > s.pageCap && s.has(capV2LimitCap) {
		return s.pageCap
	}
	return limit
}

// truthyBounds drops numeric bounds of zero: Airflow 3's RangeFilter tests
// each bound for truthiness, so duration_gte=0 filters nothing.
func truthyBounds(bs []bound) []bound {
	out := bs[:0:0]
	for _, b := range bs {
		if b.f != nil && *b.f == 0 {
			continue
		}
		out = append(out, b)
	}
	return out
}

// coalesceNow is the COALESCE(col, now()) Airflow 3 applies to start_date
// and end_date in GET range filters, so an unfinished task instance counts
// as ending now.
func coalesceNow(now time.Time, get func(tiView) *time.Time) func(tiView) *time.Time {
	return func(v tiView) *time.Time {
		if t := get(v); t != nil {
			return t
		}
		return &now
	}
}

func (s *Server) v2ListTIs(c *call) (any, *apiError) {
	dagID, runID := c.path["dag_id"], c.path["dag_run_id"]
	states, aerr := s.v2States(c.q.strs("state"))
	if aerr != nil {
		return nil, aerr
	}
	if runID != "~" {
		found := false
		for _, r := range s.runs {
			found = found || r.runID == runID
		}
		if !found {
			return nil, v2Detail(404, fmt.Sprintf("DagRun with run_id: `%s` was not found", runID))
		}
	}
	if dagID != "~" && (s.dags[dagID] == nil || s.dagNotInBag(dagID)) {
		return nil, v2Detail(404, fmt.Sprintf("The Dag with ID: `%s` was not found", dagID))
	}
	order := c.q.strs("order_by")
	if order == nil {
		order = []string{"map_index"}
	}
	keys, aerr := parseSort(order, v2TIOrderAttrs)
	if aerr != nil {
		return nil, aerr
	}
	taskID, hasTaskID := c.q.str("task_id")
	preds := compact(
		func(v tiView) bool { return v.dag.readable },
		func(v tiView) bool { return dagID == "~" || v.ti.key.DagID == dagID },
		func(v tiView) bool { return runID == "~" || v.ti.key.RunID == runID },
		func(v tiView) bool { return !hasTaskID || v.ti.key.TaskID == taskID },
		timeRange(queryBounds(c.q, "run_after", v2Bounds), func(v tiView) *time.Time { return &v.run.runAfter }),
		timeRange(queryBounds(c.q, "logical_date", v2Bounds), func(v tiView) *time.Time { return v.run.logical }),
		timeRange(queryBounds(c.q, "start_date", v2Bounds), coalesceNow(c.now, func(v tiView) *time.Time { return v.ti.start })),
		timeRange(queryBounds(c.q, "end_date", v2Bounds), coalesceNow(c.now, func(v tiView) *time.Time { return v.ti.end })),
		timeRange(queryBounds(c.q, "updated_at", v2Bounds), func(v tiView) *time.Time { return &v.ti.updated }),
		numRange(truthyBounds(queryBounds(c.q, "duration", v2Bounds)), func(v tiView) *float64 { return v.ti.duration() }),
		likeFilter(c.q, "task_display_name_pattern", func(v tiView) *string { return &v.ti.key.TaskID }),
		likeFilter(c.q, "dag_id_pattern", func(v tiView) *string { return &v.ti.key.DagID }),
		likeFilter(c.q, "run_id_pattern", func(v tiView) *string { return &v.ti.key.RunID }),
		inStates(states),
		inStrings(c.q.strs("pool"), func(v tiView) *string { return &v.ti.pool }),
		likeFilter(c.q, "pool_name_pattern", func(v tiView) *string { return &v.ti.pool }),
		inStrings(c.q.strs("queue"), func(v tiView) *string { return &v.ti.queue }),
		likeFilter(c.q, "queue_name_pattern", func(v tiView) *string { return &v.ti.queue }),
		inStrings(c.q.strs("executor"), func(v tiView) *string { return v.ti.executor }),
		inInts(c.q.ints("try_number"), func(v tiView) int { return v.ti.try }),
		inStrings(c.q.strs("operator"), func(v tiView) *string { return v.ti.operator }),
		likeFilter(c.q, "operator_name_pattern", func(v tiView) *string { return v.ti.operatorName }),
		inInts(c.q.ints("map_index"), func(v tiView) int { return v.ti.key.MapIndex }),
	)
	vs := filterViews(s.views(), preds)
	if cursor, ok := c.q.str("cursor"); ok {
		return s.v2CursorPage(c, vs, keys, cursor, s.v2Limit(c))
	}
	return s.v2TICollection(c, vs, keys, c.q.intOr("offset", 0), s.v2Limit(c)), nil
}

// v2BatchField types of TaskInstancesBatchBody (additionalProperties: false).
func v2BatchFieldKind(name string) string {
	switch name {
	case "dag_ids", "dag_run_ids", "task_ids", "pool", "queue", "executor":
		return "strs"
	case "state":
		return "states"
	case "page_offset", "page_limit":
		return "int"
	case "order_by":
		return "str"
	}
	base, op, ok := strings.Cut(strings.Replace(name, "_date_", "_date.", 1), ".")
	if !ok {
		base, op, ok = strings.Cut(strings.Replace(name, "run_after_", "run_after.", 1), ".")
	}
	if !ok {
		base, op, ok = strings.Cut(strings.Replace(name, "duration_", "duration.", 1), ".")
	}
	if !ok || !contains(v2Bounds, op) {
		return ""
	}
	switch base {
	case "logical_date", "start_date", "end_date", "run_after":
		return "time"
	case "duration":
		return "num"
	}
	return ""
}

type v2Batch struct {
	strs   map[string][]string
	times  map[string]*time.Time
	nums   map[string]*float64
	states []*string
	offset int
	limit  int
	order  string
}

func parseV2Batch(body []byte) (*v2Batch, []validationItem) {
	b := &v2Batch{strs: map[string][]string{}, times: map[string]*time.Time{}, nums: map[string]*float64{}, limit: 100}
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil, []validationItem{{Type: "missing", Loc: []any{"body"}, Msg: "Field required"}}
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil || m == nil {
		var input any
		if json.Unmarshal(body, &input) == nil {
			return nil, []validationItem{{Type: "model_attributes_type", Loc: []any{"body"},
				Msg: "Input should be a valid dictionary or object to extract fields from", Input: input}}
		}
		return nil, []validationItem{{Type: "json_invalid", Loc: []any{"body", 0}, Msg: "JSON decode error",
			Input: map[string]any{}, Ctx: map[string]any{"error": "Expecting value"}}}
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	var errs []validationItem
	for _, k := range names {
		raw := m[k]
		loc := []any{"body", k}
		var input any
		_ = json.Unmarshal(raw, &input)
		kind := v2BatchFieldKind(k)
		if kind == "" {
			errs = append(errs, validationItem{Type: "extra_forbidden", Loc: loc, Msg: "Extra inputs are not permitted", Input: input})
			continue
		}
		if string(raw) == "null" && kind != "int" {
			continue
		}
		switch kind {
		case "strs":
			var v []string
			if err := json.Unmarshal(raw, &v); err != nil {
				errs = append(errs, validationItem{Type: "list_type", Loc: loc, Msg: "Input should be a valid list", Input: input})
				continue
			}
			b.strs[k] = v
		case "str":
			var v string
			if err := json.Unmarshal(raw, &v); err != nil {
				errs = append(errs, validationItem{Type: "string_type", Loc: loc, Msg: "Input should be a valid string", Input: input})
				continue
			}
			b.order = v
		case "time":
			var v string
			t, err := time.Time{}, json.Unmarshal(raw, &v)
			if err == nil {
				t, err = parseAPITime(v)
			}
			if err != nil {
				errs = append(errs, validationItem{Type: "datetime_from_date_parsing", Loc: loc,
					Msg: "Input should be a valid datetime or date", Input: input})
				continue
			}
			b.times[k] = &t
		case "num":
			var v float64
			if err := json.Unmarshal(raw, &v); err != nil {
				errs = append(errs, validationItem{Type: "float_type", Loc: loc, Msg: "Input should be a valid number", Input: input})
				continue
			}
			b.nums[k] = &v
		case "int":
			var v int
			if err := json.Unmarshal(raw, &v); err != nil || string(raw) == "null" {
				errs = append(errs, validationItem{Type: "int_type", Loc: loc, Msg: "Input should be a valid integer", Input: input})
				continue
			}
			if v < 0 {
				errs = append(errs, validationItem{Type: "greater_than_equal", Loc: loc,
					Msg: "Input should be greater than or equal to 0", Input: input, Ctx: map[string]any{"ge": 0}})
				continue
			}
			if k == "page_offset" {
				b.offset = v
			} else {
				b.limit = v
			}
		case "states":
			var v []json.RawMessage
			if err := json.Unmarshal(raw, &v); err != nil {
				errs = append(errs, validationItem{Type: "list_type", Loc: loc, Msg: "Input should be a valid list", Input: input})
				continue
			}
			b.states = []*string{}
			for i, item := range v {
				if string(item) == "null" {
					b.states = append(b.states, nil)
					continue
				}
				var st string
				if json.Unmarshal(item, &st) != nil || !contains(taskStates, st) {
					var in any
					_ = json.Unmarshal(item, &in)
					errs = append(errs, validationItem{Type: "enum", Loc: []any{"body", k, i},
						Msg: "Input should be " + pyEnum(taskStates), Input: in, Ctx: map[string]any{"expected": pyEnum(taskStates)}})
					continue
				}
				b.states = append(b.states, strp(st))
			}
		}
	}
	return b, errs
}

func pyEnum(vals []string) string {
	q := make([]string, len(vals))
	for i, v := range vals {
		q[i] = "'" + v + "'"
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

func (s *Server) v2BatchTIs(c *call) (any, *apiError) {
	s.auditBatch(c)
	var errs []validationItem
	for _, name := range []string{"dag_id", "dag_run_id"} {
		if v := c.path[name]; v != "~" {
			errs = append(errs, validationItem{Type: "literal_error", Loc: []any{"path", name}, Msg: "Input should be '~'",
				Input: v, Ctx: map[string]any{"expected": "'~'"}})
		}
	}
	b, bodyErrs := parseV2Batch(c.body)
	errs = append(errs, bodyErrs...)
	if len(errs) > 0 {
		return nil, v2Invalid(errs...)
	}
	var order []string
	if b.order != "" {
		order = []string{b.order}
	}
	keys, aerr := parseSort(order, v2BatchOrderAttrs)
	if aerr != nil {
		return nil, aerr
	}
	bounds := func(name string) []bound {
		var out []bound
		for _, op := range v2Bounds {
			if t := b.times[name+"_"+op]; t != nil {
				out = append(out, bound{op: op, t: t})
			}
			if f := b.nums[name+"_"+op]; f != nil && *f != 0 {
				out = append(out, bound{op: op, f: f})
			}
		}
		return out
	}
	preds := compact(
		func(v tiView) bool { return v.dag.readable },
		inStrings(b.strs["dag_ids"], func(v tiView) *string { return &v.ti.key.DagID }),
		inStrings(b.strs["dag_run_ids"], func(v tiView) *string { return &v.ti.key.RunID }),
		inStrings(b.strs["task_ids"], func(v tiView) *string { return &v.ti.key.TaskID }),
		timeRange(bounds("run_after"), func(v tiView) *time.Time { return &v.run.runAfter }),
		timeRange(bounds("logical_date"), func(v tiView) *time.Time { return v.run.logical }),
		timeRange(bounds("start_date"), func(v tiView) *time.Time { return v.ti.start }),
		timeRange(bounds("end_date"), func(v tiView) *time.Time { return v.ti.end }),
		numRange(bounds("duration"), func(v tiView) *float64 { return v.ti.duration() }),
		inStates(b.states),
		inStrings(b.strs["pool"], func(v tiView) *string { return &v.ti.pool }),
		inStrings(b.strs["queue"], func(v tiView) *string { return &v.ti.queue }),
		inStrings(b.strs["executor"], func(v tiView) *string { return v.ti.executor }),
	)
	// page_limit is a bare LimitFilter here: not capped by maximum_page_limit.
	return s.v2TICollection(c, filterViews(s.views(), preds), keys, b.offset, b.limit), nil
}

func (s *Server) v2GetTI(c *call) (any, *apiError) {
	if v, ok := s.lookupTI(c, -1); ok {
		return renderV2TI(v), nil
	}
	if s.hasMapped(c) {
		return nil, v2Detail(404, "Task instance is mapped, add the map_index value to the URL")
	}
	return nil, v2Detail(404, fmt.Sprintf("The Task Instance with dag_id: `%s`, run_id: `%s` and task_id: `%s` was not found",
		c.path["dag_id"], c.path["dag_run_id"], c.path["task_id"]))
}

func (s *Server) v2GetMappedTI(c *call) (any, *apiError) {
	raw := c.path["map_index"]
	mi, err := strconv.Atoi(raw)
	if err != nil {
		return nil, v2Invalid(validationItem{Type: "int_parsing", Loc: []any{"path", "map_index"},
			Msg: "Input should be a valid integer, unable to parse string as an integer", Input: raw})
	}
	if v, ok := s.lookupTI(c, mi); ok {
		return renderV2TI(v), nil
	}
	return nil, v2Detail(404, fmt.Sprintf("The Mapped Task Instance with dag_id: `%s`, run_id: `%s`, task_id: `%s`, and map_index: `%d` was not found",
		c.path["dag_id"], c.path["dag_run_id"], c.path["task_id"], mi))
}

func (s *Server) v2DAG(d *dagRec) map[string]any {
	return map[string]any{
		"dag_id": d.id, "dag_display_name": d.id, "is_paused": d.paused, "is_stale": d.stale,
		"last_parsed_time": v2Time(s.start), "last_parse_duration": 0.05, "last_expired": nil,
		"bundle_name": "dags-folder", "bundle_version": nil, "relative_fileloc": d.id + ".py",
		"fileloc": "/opt/airflow/dags/" + d.id + ".py", "timetable_summary": nil,
		"timetable_description": "Never, external triggers only", "timetable_partitioned": false, "tags": []any{},
		"max_active_tasks": 16, "max_active_runs": 16, "max_consecutive_failed_dag_runs": 0,
		"has_task_concurrency_limits": false, "has_import_errors": false,
		"next_dagrun_logical_date": nil, "next_dagrun_data_interval_start": nil,
		"next_dagrun_data_interval_end": nil, "next_dagrun_run_after": nil, "owners": []string{"airflow"},
		"file_token": fileToken(d.id), "allowed_run_types": nil,
	}
}

func (s *Server) v2ListDAGs(c *call) (any, *apiError) {
	mode, hasMode := c.q.str("tags_match_mode")
	if hasMode && mode != "any" && mode != "all" {
		return nil, v2Invalid(validationItem{Type: "literal_error", Loc: []any{"query", "tags_match_mode"},
			Msg: "Input should be 'any' or 'all'", Input: mode, Ctx: map[string]any{"expected": "'any' or 'all'"}})
	}
	excludeStale := c.q.boolp("exclude_stale")
	paused := c.q.boolp("paused")
	importErrs := c.q.boolp("has_import_errors")
	var dags []*dagRec
	for _, d := range s.dags {
		id := d.id
		v := tiView{dag: d, ti: &tiRec{key: TIKey{DagID: id}}}
		switch {
		case !d.readable:
		case (excludeStale == nil || *excludeStale) && d.stale:
		case paused != nil && d.paused != *paused:
		case importErrs != nil && *importErrs:
		case len(c.q.strs("tags")) > 0:
		case !ownersMatch(c.q.strs("owners")):
		case !matches(likeFilter(c.q, "dag_id_pattern", func(tiView) *string { return &id }), v):
		case !matches(likeFilter(c.q, "dag_display_name_pattern", func(tiView) *string { return &id }), v):
		default:
			dags = append(dags, d)
		}
	}
	order := c.q.strs("order_by")
	if order == nil {
		order = []string{"dag_id"}
	}
	desc := false
	for i, o := range order {
		attr := strings.TrimLeft(o, "-")
		if attr != "dag_id" && attr != "dag_display_name" {
			return nil, notImplemented(2, "order_by="+o+" on /dags")
		}
		if i == 0 {
			desc = strings.HasPrefix(o, "-")
		}
	}
	sort.Slice(dags, func(i, j int) bool { return (dags[i].id < dags[j].id) != desc })
	total := len(dags)
	out := []map[string]any{}
	for _, d := range page(dags, c.q.intOr("offset", 0), s.v2Limit(c)) {
		out = append(out, s.v2DAG(d))
	}
	return map[string]any{"dags": out, "total_entries": total}, nil
}

func ownersMatch(owners []string) bool {
	if len(owners) == 0 {
		return true
	}
	for _, o := range owners {
		if likePattern(o).MatchString("airflow") {
			return true
		}
	}
	return false
}

func matches(p tiPred, v tiView) bool { return p == nil || p(v) }

func (s *Server) v2GetDAG(c *call) (any, *apiError) {
	d := s.dags[c.path["dag_id"]]
	if d == nil {
		return nil, v2Detail(404, fmt.Sprintf("Dag with id %s was not found", c.path["dag_id"]))
	}
	return s.v2DAG(d), nil
}

func (s *Server) v2Run(r *runRec) map[string]any {
	var dur *float64
	if r.start != nil && r.end != nil {
		d := r.end.Sub(*r.start).Seconds()
		dur = &d
	}
	triggered := "rest_api"
	if r.runType == "scheduled" {
		triggered = "timetable"
	}
	return map[string]any{
		"dag_run_id": r.runID, "dag_id": r.dagID, "logical_date": optTime(r.logical, v2Time),
		"queued_at": optTime(r.start, v2Time), "start_date": optTime(r.start, v2Time), "end_date": optTime(r.end, v2Time),
		"duration": dur, "data_interval_start": optTime(r.logical, v2Time), "data_interval_end": optTime(r.logical, v2Time),
		"run_after": v2Time(r.runAfter), "last_scheduling_decision": nil, "run_type": r.runType, "state": r.state,
		"triggered_by": triggered, "triggering_user_name": nil, "conf": map[string]any{}, "note": nil,
		"dag_versions": []any{}, "bundle_version": nil, "dag_display_name": r.dagID, "partition_key": nil,
	}
}

func (s *Server) v2ListRuns(c *call) (any, *apiError) {
	dagID := c.path["dag_id"]
	if dagID != "~" && s.dags[dagID] == nil {
		return nil, v2Detail(404, fmt.Sprintf("The DAG with dag_id: `%s` was not found", dagID))
	}
	for _, st := range c.q.strs("state") {
		if st != "none" && !contains(dagRunStates, st) {
			return nil, v2Detail(http.StatusUnprocessableEntity, "Invalid value for state. Valid values are "+strings.Join(dagRunStates, ", "))
		}
	}
	for _, rt := range c.q.strs("run_type") {
		if rt != "none" && !contains(v2RunTypes, rt) {
			return nil, v2Detail(http.StatusUnprocessableEntity, "Invalid value for run type. Valid values are "+strings.Join(v2RunTypes, ", "))
		}
	}
	var runs []*runRec
	for _, r := range s.runs {
		d := s.dags[r.dagID]
		if d == nil || !d.readable || (dagID != "~" && r.dagID != dagID) {
			continue
		}
		if st := c.q.strs("state"); len(st) > 0 && !contains(st, r.state) {
			continue
		}
		if rt := c.q.strs("run_type"); len(rt) > 0 && !contains(rt, r.runType) {
			continue
		}
		runID, rDag := r.runID, r.dagID
		v := tiView{}
		if !matches(likeFilter(c.q, "run_id_pattern", func(tiView) *string { return &runID }), v) ||
			!matches(likeFilter(c.q, "dag_id_pattern", func(tiView) *string { return &rDag }), v) {
			continue
		}
		var dur *float64
		if r.start != nil && r.end != nil {
			d := r.end.Sub(*r.start).Seconds()
			dur = &d
		}
		ok := true
		for _, f := range []struct {
			name string
			t    *time.Time
		}{{"run_after", &r.runAfter}, {"logical_date", r.logical}, {"start_date", r.start}, {"end_date", r.end}, {"updated_at", &r.updated}} {
			for _, b := range queryBounds(c.q, f.name, v2Bounds) {
				ok = ok && b.holds(f.t, nil)
			}
		}
		for _, b := range truthyBounds(queryBounds(c.q, "duration", v2Bounds)) {
			ok = ok && b.holds(nil, dur)
		}
		if ok {
			runs = append(runs, r)
		}
	}
	if aerr := sortRuns(runs, c.q, true); aerr != nil {
		return nil, aerr
	}
	total := len(runs)
	out := []map[string]any{}
	for _, r := range page(runs, c.q.intOr("offset", 0), s.v2Limit(c)) {
		out = append(out, s.v2Run(r))
	}
	return map[string]any{"dag_runs": out, "total_entries": total}, nil
}

func (s *Server) v2GetRun(c *call) (any, *apiError) {
	r := s.runs[[2]string{c.path["dag_id"], c.path["dag_run_id"]}]
	if r == nil || s.runGetNotFound(c.path["dag_id"], c.path["dag_run_id"]) {
		return nil, v2Detail(404, fmt.Sprintf("The DagRun with dag_id: `%s` and run_id: `%s` was not found", c.path["dag_id"], c.path["dag_run_id"]))
	}
	return s.v2Run(r), nil
}

func (s *Server) v2XComItem(x xcomRow) map[string]any {
	return map[string]any{"key": x.key, "timestamp": v2Time(x.v.ti.xcomTime(s.start)),
		"logical_date": optTime(x.v.run.logical, v2Time), "map_index": x.v.ti.key.MapIndex,
		"task_id": x.v.ti.key.TaskID, "dag_id": x.v.ti.key.DagID, "run_id": x.v.ti.key.RunID,
		"dag_display_name": x.v.ti.key.DagID, "task_display_name": x.v.ti.key.TaskID,
		"run_after": v2Time(x.v.run.runAfter)}
}

func (s *Server) v2ListXComs(c *call) (any, *apiError) {
	var rows []xcomRow
	for _, x := range s.xcomRows(c) {
		v := x.v
		key := x.key
		switch {
		case c.q["map_index"] != nil && c.q.intOr("map_index", 0) != v.ti.key.MapIndex:
		case c.q["map_index_filter"] != nil && c.q.intOr("map_index_filter", 0) != v.ti.key.MapIndex:
		case c.q["xcom_key"] != nil && c.q["xcom_key"] != key:
		case !matches(likeFilter(c.q, "xcom_key_pattern", func(tiView) *string { return &key }), v):
		case !matches(likeFilter(c.q, "dag_display_name_pattern", func(v tiView) *string { return &v.ti.key.DagID }), v):
		case !matches(likeFilter(c.q, "run_id_pattern", func(v tiView) *string { return &v.ti.key.RunID }), v):
		case !matches(likeFilter(c.q, "task_id_pattern", func(v tiView) *string { return &v.ti.key.TaskID }), v):
		case !matches(timeRange(queryBounds(c.q, "logical_date", v2Bounds), func(v tiView) *time.Time { return v.run.logical }), v):
		case !matches(timeRange(queryBounds(c.q, "run_after", v2Bounds), func(v tiView) *time.Time { return &v.run.runAfter }), v):
		default:
			rows = append(rows, x)
		}
	}
	return xcomPage(rows, c.q.intOr("offset", 0), s.v2Limit(c), s.v2XComItem), nil
}

func (s *Server) v2GetXCom(c *call) (any, *apiError) {
	if item := s.xcomEntry(c, s.v2XComItem); item != nil {
		return item, nil
	}
	return nil, v2Detail(404, fmt.Sprintf("XCom entry with key: `%s` not found", c.path["xcom_key"]))
}

func (s *Server) v2Health(c *call) (any, *apiError) {
	return health(c.now, v2Time, nil), nil
}
