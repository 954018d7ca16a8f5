package airflowsim

import (
	"cmp"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
)

// tiView is a task instance joined with its run and DAG, as the SQL of
// both APIs joins them.
type tiView struct {
	ti  *tiRec
	run *runRec
	dag *dagRec
}

// views returns every task instance with its run and DAG. Callers hold s.mu.
func (s *Server) views() []tiView {
	out := make([]tiView, 0, len(s.tis))
	for _, ti := range s.tis {
		run := s.runs[[2]string{ti.key.DagID, ti.key.RunID}]
		dag := s.dags[ti.key.DagID]
		if run == nil || dag == nil {
			continue
		}
		out = append(out, tiView{ti: ti, run: run, dag: dag})
	}
	return out
}

type tiPred func(v tiView) bool

func filterViews(vs []tiView, preds []tiPred) []tiView {
	out := vs[:0:0]
next:
	for _, v := range vs {
		for _, p := range preds {
			if !p(v) {
				continue next
			}
		}
		out = append(out, v)
	}
	return out
}

// hashOrder sorts v1 results. Airflow 2 pages with OFFSET/LIMIT and no
// ORDER BY, so the database returns rows in whatever order it likes. A hash
// of the key gives an order that is neither insertion nor key order (so a
// client cannot lean on either), yet is the same on every request, as a
// table that is not being written to would be.
func hashOrder(vs []tiView) {
	// The hashes are computed once, not per comparison: listings of tens
	// of thousands of rows (the scale benchmark) are sorted on every page.
	type hashed struct {
		h uint64
		v tiView
	}
	hs := make([]hashed, len(vs))
	for i, v := range vs {
		hs[i] = hashed{keyHash(v.ti.key), v}
	}
	sort.Slice(hs, func(i, j int) bool {
		if hs[i].h != hs[j].h {
			return hs[i].h < hs[j].h
		}
		return hs[i].v.ti.key.String() < hs[j].v.ti.key.String()
	})
	for i := range hs {
		vs[i] = hs[i].v
	}
}

func page[T any](rows []T, offset, limit int) []T {
	if offset >= len(rows) {
		return rows[:0]
	}
	rows = rows[offset:]
	if limit < len(rows) {
		rows = rows[:limit]
	}
	return rows
}

// inStrings builds an OR-of-equals filter; an empty list filters nothing.
func inStrings(vals []string, get func(tiView) *string) tiPred {
	if len(vals) == 0 {
		return nil
	}
	return func(v tiView) bool {
		got := get(v)
		if got == nil {
			return false
		}
		return contains(vals, *got)
	}
}

func inInts(vals []int, get func(tiView) int) tiPred {
	if len(vals) == 0 {
		return nil
	}
	return func(v tiView) bool {
		g := get(v)
		for _, x := range vals {
			if x == g {
				return true
			}
		}
		return false
	}
}

// inStates matches a list of states where nil means "no status" (SQL IS
// NULL, which both APIs emit for 'none').
func inStates(states []*string) tiPred {
	if states == nil {
		return nil
	}
	return func(v tiView) bool {
		for _, st := range states {
			if st == nil && v.ti.state == nil {
				return true
			}
			if st != nil && v.ti.state != nil && *st == *v.ti.state {
				return true
			}
		}
		return false
	}
}

type bound struct {
	op string // gte, gt, lte, lt
	t  *time.Time
	f  *float64
}

func (b bound) holds(t *time.Time, f *float64) bool {
	// SQL comparisons with NULL are never true.
	var c int
	switch {
	case b.t != nil:
		if t == nil {
			return false
		}
		c = t.Compare(*b.t)
	case b.f != nil:
		if f == nil {
			return false
		}
		switch {
		case *f < *b.f:
			c = -1
		case *f > *b.f:
			c = 1
		}
	default:
		return true
	}
	switch b.op {
	case "gte":
		return c >= 0
	case "gt":
		return c > 0
	case "lte":
		return c <= 0
	case "lt":
		return c < 0
	}
	return true
}

// timeRange matches a time column against the query's bounds on it.
func timeRange(bounds []bound, get func(tiView) *time.Time) tiPred {
	return inRange(bounds, func(v tiView) (*time.Time, *float64) { return get(v), nil })
}

// numRange matches a number column against the query's bounds on it.
func numRange(bounds []bound, get func(tiView) *float64) tiPred {
	return inRange(bounds, func(v tiView) (*time.Time, *float64) { return nil, get(v) })
}

// inRange matches the value get reads (a time or a number) against every
// bound; no bounds is no predicate.
func inRange(bounds []bound, get func(tiView) (*time.Time, *float64)) tiPred {
	if len(bounds) == 0 {
		return nil
	}
	return func(v tiView) bool {
		t, f := get(v)
		for _, b := range bounds {
			if !b.holds(t, f) {
				return false
			}
		}
		return true
	}
}

// queryBounds collects the <name>_<op> bounds present in a parsed query.
func queryBounds(q qvals, name string, ops []string) []bound {
	var out []bound
	for _, op := range ops {
		key := name + "_" + op
		if t := q.timep(key); t != nil {
			out = append(out, bound{op: op, t: t})
		}
		if f := q.nump(key); f != nil {
			out = append(out, bound{op: op, f: f})
		}
	}
	return out
}

// likePattern is Airflow 3's _SearchParam: an ILIKE '%value%' where the
// value may use % and _ wildcards, '|' separates alternatives (3.2), and
// '~' means everything.
func likePattern(pattern string) *regexp.Regexp {
	if pattern == "~" {
		pattern = "%"
	}
	var alts []string
	for _, term := range strings.Split(pattern, "|") {
		term = strings.TrimSpace(term)
		var b strings.Builder
		esc := false
		for _, r := range term {
			switch {
			case esc:
				b.WriteString(regexp.QuoteMeta(string(r)))
				esc = false
			case r == '\\':
				esc = true
			case r == '%':
				b.WriteString(".*")
			case r == '_':
				b.WriteString(".")
			default:
				b.WriteString(regexp.QuoteMeta(string(r)))
			}
		}
		alts = append(alts, b.String())
	}
	return regexp.MustCompile("(?is)^.*(?:" + strings.Join(alts, "|") + ").*$")
}

func likeFilter(q qvals, name string, get func(tiView) *string) tiPred {
	pat, ok := q.str(name)
	if !ok {
		return nil
	}
	re := likePattern(pat)
	return func(v tiView) bool {
		s := get(v)
		return s != nil && re.MatchString(*s)
	}
}

func compact(preds ...tiPred) []tiPred {
	out := preds[:0:0]
	for _, p := range preds {
		if p != nil {
			out = append(out, p)
		}
	}
	return out
}

func strp(s string) *string { return &s }

// v1Time formats like Python's datetime.isoformat() on an aware UTC value,
// which is what Airflow 2's marshmallow schemas emit.
func v1Time(t time.Time) string {
	t = t.UTC()
	if us := t.Nanosecond() / 1000; us != 0 {
		return t.Format("2006-01-02T15:04:05") + fmt.Sprintf(".%06d", us) + "+00:00"
	}
	return t.Format("2006-01-02T15:04:05") + "+00:00"
}

// v2Time formats like pydantic v2 serialises an aware UTC datetime.
func v2Time(t time.Time) string {
	t = t.UTC()
	if us := t.Nanosecond() / 1000; us != 0 {
		return t.Format("2006-01-02T15:04:05") + fmt.Sprintf(".%06d", us) + "Z"
	}
	return t.Format("2006-01-02T15:04:05") + "Z"
}

func optTime(t *time.Time, f func(time.Time) string) *string {
	if t == nil {
		return nil
	}
	s := f(*t)
	return &s
}

// sortKey is one parsed order_by entry of Airflow 3's SortParam.
type sortKey struct {
	attr string
	desc bool
}

// sortByKeys is a stable multi-key sort in which a nil value sorts last
// whatever the key's direction, as the databases behind Airflow's API order
// NULLs.
func sortByKeys[T any](vs []T, keys []sortKey, val func(T, string) any) {
	// Each value is computed once, not per comparison (a v2 id is a
	// SHA-256): listings of tens of thousands of rows are sorted on every
	// page of the scale benchmark.
	// Ties keep their input order (the position is the last key), so an
	// unstable sort of pointers is as stable as SliceStable and much
	// faster on big listings.
	type row struct {
		vals []any
		pos  int
		v    T
	}
	rows := make([]*row, len(vs))
	for i, v := range vs {
		r := &row{vals: make([]any, len(keys)), pos: i, v: v}
		for k, key := range keys {
			r.vals[k] = val(v, key.attr)
		}
		rows[i] = r
	}
	sort.Slice(rows, func(i, j int) bool {
		for k, key := range keys {
			if c := compareSortValues(rows[i].vals[k], rows[j].vals[k], key.desc); c != 0 {
				return c < 0
			}
		}
		return rows[i].pos < rows[j].pos
	})
	for i := range rows {
		vs[i] = rows[i].v
	}
}

// compareSortValues compares two values of one sort key in the order of
// that key: negative when a comes first. nil (SQL NULL) comes last in
// either direction.
func compareSortValues(a, b any, desc bool) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return 1
	case b == nil:
		return -1
	}
	c := compareValues(a, b)
	if desc {
		return -c
	}
	return c
}

// tiSortValue returns a comparable value for an order_by attribute, or nil
// for SQL NULL.
func tiSortValue(v tiView, attr string) any {
	switch attr {
	case "id":
		return v.ti.uuid()
	case "state":
		if v.ti.state == nil {
			return nil
		}
		return *v.ti.state
	case "duration":
		if d := v.ti.duration(); d != nil {
			return *d
		}
		return nil
	case "start_date":
		return timeOrNil(v.ti.start)
	case "end_date":
		return timeOrNil(v.ti.end)
	case "map_index":
		return v.ti.key.MapIndex
	case "try_number":
		return v.ti.try
	case "logical_date", "data_interval_start", "data_interval_end":
		return timeOrNil(v.run.logical)
	case "run_after":
		return v.run.runAfter
	case "rendered_map_index":
		return nil
	case "operator":
		if v.ti.operator == nil {
			return nil
		}
		return *v.ti.operator
	}
	return nil
}

func timeOrNil(t *time.Time) any {
	if t == nil {
		return nil
	}
	return *t
}

func compareValues(a, b any) int {
	switch x := a.(type) {
	case string:
		return strings.Compare(x, b.(string))
	case int:
		return cmp.Compare(x, b.(int))
	case float64:
		return cmp.Compare(x, b.(float64)) // durations: never NaN
	case time.Time:
		return x.Compare(b.(time.Time))
	}
	return 0
}

// parseSort checks order_by entries against the allowed attributes, the
// way SortParam does (400 on an unknown attribute or more than 10 keys).
func parseSort(values, allowed []string) ([]sortKey, *apiError) {
	if len(values) > 10 {
		return nil, v2Detail(400, fmt.Sprintf("Ordering with more than 10 parameters is not allowed. Provided: %s", pyList(values)))
	}
	var keys []sortKey
	for _, v := range values {
		attr := strings.TrimLeft(v, "-")
		if !contains(allowed, attr) {
			return nil, v2Detail(400, fmt.Sprintf("Ordering with '%s' is disallowed or the attribute does not exist on the model", attr))
		}
		keys = append(keys, sortKey{attr: attr, desc: strings.HasPrefix(v, "-")})
	}
	return keys, nil
}

// sortViewsV2 orders like SortParam.to_orm: each key puts NULLs last
// whatever its direction, and the primary key (TaskInstance.id) is always
// appended in the direction of the first key.
func sortViewsV2(vs []tiView, keys []sortKey) {
	sortByKeys(vs, withTieBreaker(keys), tiSortValue)
}

// withTieBreaker appends the primary key in the first key's direction.
func withTieBreaker(keys []sortKey) []sortKey {
	tieDesc := len(keys) > 0 && keys[0].desc
	return append(keys[:len(keys):len(keys)], sortKey{attr: "id", desc: tieDesc})
}

// pyList renders a list of strings like Python's repr.
func pyList(vals []string) string {
	q := make([]string, len(vals))
	for i, v := range vals {
		q[i] = "'" + v + "'"
	}
	return "[" + strings.Join(q, ", ") + "]"
}
