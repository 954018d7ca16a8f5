package airflowsim

import (
	"fmt"
	"math"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// qkind is the type of a declared query parameter.
type qkind int

const (
	qStr qkind = iota
	qStrs
	qInt
	qInts
	qNum
	qBool
	qTime
)

// qparam declares one query parameter of an operation, as in the official
// spec. The tests check these tables against the spec files, so strict v1
// validation and v2's "ignore the undeclared" both follow the real servers.
type qparam struct {
	name string
	kind qkind
	// min is enforced for integers when hasMin is set.
	min    int
	hasMin bool
	// unimpl marks a declared parameter the simulator does not model. It is
	// answered with 501 rather than ignored, so a test never silently gets
	// an unfiltered answer the real server would have filtered.
	unimpl bool
}

func p(name string, kind qkind) qparam { return qparam{name: name, kind: kind} }

func pIntMin(name string, least int) qparam {
	return qparam{name: name, kind: qInt, min: least, hasMin: true}
}

func pUnimpl(name string, kind qkind) qparam { return qparam{name: name, kind: kind, unimpl: true} }

// ranges expands a base name into the given bound suffixes.
func ranges(kind qkind, suffixes []string, bases ...string) []qparam {
	var out []qparam
	for _, b := range bases {
		for _, s := range suffixes {
			out = append(out, p(b+"_"+s, kind))
		}
	}
	return out
}

var (
	v1Bounds = []string{"gte", "lte"}
	v2Bounds = []string{"gte", "gt", "lte", "lt"}
)

// qvals holds parsed query values by name: string, []string, int, []int,
// float64, bool or time.Time.
type qvals map[string]any

func (q qvals) str(name string) (string, bool) {
	v, ok := q[name].(string)
	return v, ok
}

func (q qvals) strs(name string) []string {
	v, _ := q[name].([]string)
	return v
}

func (q qvals) ints(name string) []int {
	v, _ := q[name].([]int)
	return v
}

func (q qvals) intOr(name string, def int) int {
	if v, ok := q[name].(int); ok {
		return v
	}
	return def
}

func (q qvals) boolp(name string) *bool {
	if v, ok := q[name].(bool); ok {
		return &v
	}
	return nil
}

func (q qvals) timep(name string) *time.Time {
	if v, ok := q[name].(time.Time); ok {
		return &v
	}
	return nil
}

func (q qvals) nump(name string) *float64 {
	if v, ok := q[name].(float64); ok {
		return &v
	}
	return nil
}

// v1Query parses the query the way Connexion with strict_validation does
// for Airflow 2: any undeclared parameter is a 400, and so is a value of the
// wrong type.
func v1Query(params []qparam, vals url.Values) (qvals, *apiError) {
	declared := map[string]qparam{}
	for _, pr := range params {
		declared[pr.name] = pr
	}
	var extra []string
	for name := range vals {
		if _, ok := declared[name]; !ok {
			extra = append(extra, name)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		return nil, v1BadRequest("about:blank", "Bad Request",
			fmt.Sprintf("Extra query parameter(s) %s not in spec", strings.Join(extra, ", ")))
	}
	out := qvals{}
	for _, pr := range params {
		raw, ok := vals[pr.name]
		if !ok || len(raw) == 0 {
			continue
		}
		if pr.unimpl {
			return nil, notImplemented(1, "query parameter "+pr.name)
		}
		switch pr.kind {
		case qStr:
			out[pr.name] = raw[0]
		case qStrs:
			out[pr.name] = append([]string(nil), raw...)
		case qInt, qInts:
			var ints []int
			for _, s := range raw {
				n, err := strconv.Atoi(s)
				if err != nil {
					return nil, v1BadRequest("about:blank", "Bad Request", fmt.Sprintf("'%s' is not of type 'integer' - '%s'", s, pr.name))
				}
				if pr.hasMin && n < pr.min {
					return nil, v1BadRequest("about:blank", "Bad Request", fmt.Sprintf("%d is less than the minimum of %d - '%s'", n, pr.min, pr.name))
				}
				ints = append(ints, n)
			}
			if pr.kind == qInt {
				out[pr.name] = ints[0]
			} else {
				out[pr.name] = ints
			}
		case qNum:
			f, err := strconv.ParseFloat(raw[0], 64)
			if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, v1BadRequest("about:blank", "Bad Request", fmt.Sprintf("'%s' is not of type 'number' - '%s'", raw[0], pr.name))
			}
			out[pr.name] = f
		case qBool:
			switch strings.ToLower(raw[0]) {
			case "true":
				out[pr.name] = true
			case "false":
				out[pr.name] = false
			default:
				return nil, v1BadRequest("about:blank", "Bad Request", fmt.Sprintf("'%s' is not of type 'boolean' - '%s'", raw[0], pr.name))
			}
		case qTime:
			// Airflow's format_datetime restores a '+' that form decoding
			// turned into a space before the offset.
			s := raw[0]
			if len(s) > 6 && s[len(s)-6] == ' ' {
				s = s[:len(s)-6] + "+" + s[len(s)-5:]
			}
			t, err := parseAPITime(s)
			if err != nil {
				return nil, v1BadRequest(v1ErrType(400), "Incorrect datetime argument", err.Error())
			}
			out[pr.name] = t
		}
	}
	return out, nil
}

// undeclared lists, sorted, the query parameters not in params.
func undeclared(params []qparam, vals url.Values) []string {
	var out []string
	for name := range vals {
		found := false
		for _, pr := range params {
			found = found || pr.name == name
		}
		if !found {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// v2Query parses the query the way FastAPI does: undeclared parameters are
// ignored, every bad value is reported at once as a 422, and a repeated
// scalar takes its last value.
func v2Query(params []qparam, vals url.Values) (qvals, *apiError) {
	out := qvals{}
	var errs []validationItem
	for _, pr := range params {
		raw, ok := vals[pr.name]
		if !ok || len(raw) == 0 {
			continue
		}
		if pr.unimpl {
			return nil, notImplemented(2, "query parameter "+pr.name)
		}
		last := raw[len(raw)-1]
		switch pr.kind {
		case qStr:
			out[pr.name] = last
		case qStrs:
			out[pr.name] = append([]string(nil), raw...)
		case qInt:
			n, e := v2Int(pr, last, []any{"query", pr.name})
			if e != nil {
				errs = append(errs, *e)
				continue
			}
			out[pr.name] = n
		case qInts:
			var ints []int
			for i, s := range raw {
				n, e := v2Int(pr, s, []any{"query", pr.name, i})
				if e != nil {
					errs = append(errs, *e)
					continue
				}
				ints = append(ints, n)
			}
			out[pr.name] = ints
		case qNum:
			f, err := strconv.ParseFloat(last, 64)
			if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				errs = append(errs, validationItem{Type: "float_parsing", Loc: []any{"query", pr.name},
					Msg: "Input should be a valid number, unable to parse string as a number", Input: last})
				continue
			}
			out[pr.name] = f
		case qBool:
			switch strings.ToLower(last) {
			case "true", "1", "yes", "on", "t", "y":
				out[pr.name] = true
			case "false", "0", "no", "off", "f", "n":
				out[pr.name] = false
			default:
				errs = append(errs, validationItem{Type: "bool_parsing", Loc: []any{"query", pr.name},
					Msg: "Input should be a valid boolean, unable to interpret input", Input: last})
			}
		case qTime:
			t, err := parseAPITime(last)
			if err != nil {
				errs = append(errs, validationItem{Type: "datetime_from_date_parsing", Loc: []any{"query", pr.name},
					Msg: "Input should be a valid datetime or date, " + err.Error(), Input: last})
				continue
			}
			out[pr.name] = t
		}
	}
	if len(errs) > 0 {
		return nil, v2Invalid(errs...)
	}
	return out, nil
}

func v2Int(pr qparam, s string, loc []any) (int, *validationItem) {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, &validationItem{Type: "int_parsing", Loc: loc,
			Msg: "Input should be a valid integer, unable to parse string as an integer", Input: s}
	}
	if pr.hasMin && n < pr.min {
		return 0, &validationItem{Type: "greater_than_equal", Loc: loc,
			Msg: fmt.Sprintf("Input should be greater than or equal to %d", pr.min), Input: s,
			Ctx: map[string]any{"ge": pr.min}}
	}
	return n, nil
}

// parseAPITime accepts what both Airflow APIs accept in practice: RFC 3339
// with 'T' or a space, with or without fractional seconds, and naive times,
// which Airflow reads as UTC.
func parseAPITime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if len(s) > 10 && s[10] == ' ' {
		s = s[:10] + "T" + s[11:]
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	if t, err := time.Parse("2006-01-02T15:04:05.999999999Z0700", s); err == nil {
		return t.UTC(), nil
	}
	return time.Time{}, fmt.Errorf("invalid datetime %q", s)
}
