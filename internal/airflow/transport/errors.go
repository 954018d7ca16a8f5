package transport

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
)

// StatusError is a non-2xx answer. It matches airflow.ErrNotFound under
// errors.Is only for a definitive 404: see ResponseError.
type StatusError struct {
	Method     string
	Endpoint   string // templated, see Endpoint
	StatusCode int
	Status     string // "404 Not Found"
	// Detail is what Airflow's JSON error body says, shortened; empty when
	// the body is not JSON (a proxy's page is not worth quoting).
	Detail      string
	ContentType string

	definitive404 bool
	// about is what a definitive 404's words name.
	about airflow.Entity
}

func (e *StatusError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: answered %s", e.Method, e.Endpoint, e.Status)
	switch {
	case e.Detail != "":
		fmt.Fprintf(&b, ": %s", e.Detail)
	case e.ContentType != "" && !isJSON(e.ContentType):
		fmt.Fprintf(&b, " with a %s body", mediaType(e.ContentType))
	}
	if h := e.hint(); h != "" {
		fmt.Fprintf(&b, " (%s)", h)
	}
	return b.String()
}

// Is makes errors.Is(err, airflow.ErrNotFound) true for a definitive 404.
func (e *StatusError) Is(target error) bool {
	return target == airflow.ErrNotFound && e.definitive404
}

// NotFoundAbout names the entity a definitive 404 was about (see
// airflow.NotFoundAbout).
func (e *StatusError) NotFoundAbout() airflow.Entity {
	if !e.definitive404 {
		return ""
	}
	return e.about
}

// Forbidden: Airflow's own JSON 403 (not a proxy's page).
func (e *StatusError) Forbidden() bool {
	return e.StatusCode == http.StatusForbidden && isJSON(e.ContentType)
}

// RequestScoped: Airflow's own JSON answer that refused or failed this one
// request (5xx, 429, 400, 409, 422) says nothing about the others; a 401,
// 403, a 404 of a missing route or any page that is not Airflow's JSON does.
func (e *StatusError) RequestScoped() bool {
	if !isJSON(e.ContentType) {
		return false
	}
	switch {
	case e.StatusCode >= 500, e.StatusCode == http.StatusTooManyRequests,
		e.StatusCode == http.StatusBadRequest, e.StatusCode == http.StatusConflict,
		e.StatusCode == http.StatusUnprocessableEntity:
		return true
	}
	return e.definitive404
}

func (e *StatusError) hint() string {
	switch {
	case e.StatusCode == http.StatusUnauthorized:
		return "check airflow.auth"
	case e.StatusCode == http.StatusForbidden:
		return "the Airflow user needs read access to DAGs, DAG Runs and Task Instances, e.g. the Viewer role"
	case e.StatusCode == http.StatusNotFound && !e.definitive404:
		if isJSON(e.ContentType) {
			return "no such route: check airflow.url and airflow.apiVersion"
		}
		return "not an answer from the Airflow API: check airflow.url"
	case e.StatusCode == http.StatusBadRequest || e.StatusCode == http.StatusUnprocessableEntity:
		return "the server rejected the request: is this Airflow version supported?"
	case e.StatusCode == http.StatusTooManyRequests || e.StatusCode >= 500:
		return "Airflow or a proxy in front of it is failing or overloaded"
	}
	return ""
}

// IsStatus reports whether err is a StatusError with that code.
func IsStatus(err error, code int) bool {
	var se *StatusError
	return errors.As(err, &se) && se.StatusCode == code
}

// ResponseError builds the error for a non-2xx answer whose body the caller
// has read.
//
// A 404 counts as definitive (airflow.ErrNotFound) only when Airflow's own
// error handler wrote it: a problem+json whose type is not "about:blank"
// (API v1; Connexion uses about:blank for unknown routes) or a JSON detail
// other than Starlette's bare "Not Found" (API v2, same reason). A proxy's
// page, a gateway's {"message": ...} or a missing route is not proof that a
// task instance is gone.
func ResponseError(resp *http.Response, body []byte) error {
	e := &StatusError{
		StatusCode:  resp.StatusCode,
		Status:      resp.Status,
		ContentType: resp.Header.Get("Content-Type"),
	}
	if e.Status == "" {
		e.Status = fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	if req := resp.Request; req != nil {
		e.Method, e.Endpoint = req.Method, Endpoint(req.URL)
	}
	if isJSON(e.ContentType) {
		var definitive bool
		var lead string
		e.Detail, lead, definitive = describe(body)
		e.definitive404 = definitive && resp.StatusCode == http.StatusNotFound
		if e.definitive404 {
			e.about = entityOf(lead)
			if strings.Contains(strings.ToLower(e.Detail), mappedWithoutIndex) {
				// v1 puts this in the detail under the title "Task
				// instance not found": the task instance exists, mapped.
				e.about = airflow.EntityOther
			}
		}
	}
	return e
}

// notFoundWords are how Airflow's handlers begin a 404 (v1 problem titles,
// v2 details), most specific first. Only the start of the message is read:
// the rest quotes ids, and a run id may hold any words.
var notFoundWords = []struct {
	prefix string
	about  airflow.Entity
}{
	// A mapped task instance asked for without its map index exists.
	{mappedWithoutIndex, airflow.EntityOther},
	{"task instance not found", airflow.EntityTaskInstance},
	{"the task instance with", airflow.EntityTaskInstance},
	{"the mapped task instance with", airflow.EntityTaskInstance},
	{"dagrun not found", airflow.EntityRun},
	{"the dagrun with", airflow.EntityRun},
	{"dagrun with", airflow.EntityRun},
	{"dag not found", airflow.EntityDAG},
	{"the dag with", airflow.EntityDAG},
	{"dag with", airflow.EntityDAG},
	{"xcom entry not found", airflow.EntityXCom},
	{"xcom entry with", airflow.EntityXCom},
}

const mappedWithoutIndex = "task instance is mapped"

func entityOf(lead string) airflow.Entity {
	l := strings.ToLower(strings.TrimSpace(lead))
	for _, w := range notFoundWords {
		if strings.HasPrefix(l, w.prefix) {
			return w.about
		}
	}
	return airflow.EntityOther
}

// describe summarises an Airflow JSON error body, returns the words that
// say what it is about (a v1 problem's title, a v2 detail) and tells whether
// Airflow's own handler (rather than its router) produced it.
func describe(body []byte) (summary, lead string, definitive bool) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return "", "", false
	}
	str := func(k string) string {
		var s string
		_ = json.Unmarshal(m[k], &s)
		return strings.TrimSpace(s)
	}
	if _, ok := m["type"]; ok { // RFC 7807, API v1
		title, detail, typ := str("title"), str("detail"), str("type")
		d := detail
		if title != "" && !strings.EqualFold(title, detail) {
			d = strings.TrimSuffix(title+": "+detail, ": ")
		}
		lead := title
		if lead == "" {
			lead = detail
		}
		return shorten(d), lead, typ != "" && typ != "about:blank"
	}
	raw, ok := m["detail"]
	if !ok {
		return "", "", false
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		s = strings.TrimSpace(s)
		return shorten(s), s, s != "" && s != "Not Found"
	}
	// FastAPI validation errors: [{"loc": [...], "msg": ..., "input": ...}].
	// Only loc and msg are quoted: input echoes what was sent.
	var items []struct {
		Loc []any  `json:"loc"`
		Msg string `json:"msg"`
	}
	if json.Unmarshal(raw, &items) == nil {
		parts := make([]string, 0, len(items))
		for _, it := range items {
			loc := make([]string, 0, len(it.Loc))
			for _, l := range it.Loc {
				loc = append(loc, fmt.Sprint(l))
			}
			parts = append(parts, strings.Join(loc, ".")+": "+it.Msg)
		}
		return shorten(strings.Join(parts, "; ")), "", false
	}
	var obj map[string]any
	if json.Unmarshal(raw, &obj) == nil {
		for _, k := range []string{"message", "reason"} {
			if v, ok := obj[k].(string); ok {
				return shorten(v), v, true
			}
		}
		return "", "", true
	}
	return "", "", false
}

func shorten(s string) string {
	const limit = 300
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "…"
}

func mediaType(ct string) string {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.TrimSpace(ct)
}

// Literal path segments of the Airflow API; anything else is an id.
var literalSegments = map[string]bool{
	"api": true, "v1": true, "v2": true, "dags": true, "dagRuns": true,
	"taskInstances": true, "version": true, "health": true, "monitor": true,
	"auth": true, "token": true, "list": true, "~": true, "xcomEntries": true,
}

// idAfter names the id that follows a collection segment.
var idAfter = map[string]string{
	"dags":          "{dag_id}",
	"dagRuns":       "{dag_run_id}",
	"taskInstances": "{task_id}",
	"{task_id}":     "{map_index}",
	"xcomEntries":   "{xcom_key}",
}

// Endpoint turns a request URL into a templated path for errors, logs and
// metrics, e.g. "/api/v1/dags/{dag_id}/dagRuns": ids are user data and
// would explode metric cardinality. A prefix before /api or /auth (Airflow
// behind a path) is dropped.
func Endpoint(u *url.URL) string {
	if u == nil {
		return ""
	}
	segs := strings.Split(u.EscapedPath(), "/")
	start := -1
	for i := 0; i+1 < len(segs); i++ {
		if (segs[i] == "api" && (segs[i+1] == "v1" || segs[i+1] == "v2")) || (segs[i] == "auth" && segs[i+1] == "token") {
			start = i
			break
		}
	}
	if start < 0 {
		return "/{path}"
	}
	var b strings.Builder
	prev := ""
	for _, s := range segs[start:] {
		if s == "" {
			continue
		}
		t := s
		switch {
		case s == "~":
		case idAfter[prev] != "" && (!literalSegments[s] || (prev != "{task_id}" && s != "list")):
			t = idAfter[prev]
		case !literalSegments[s]:
			t = "{id}"
		}
		b.WriteString("/")
		b.WriteString(t)
		prev = t
	}
	return b.String()
}
