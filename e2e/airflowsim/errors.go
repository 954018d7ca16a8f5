package airflowsim

import (
	"encoding/json"
	"net/http"
)

// apiError is a complete error answer, already in the dialect of one API
// version.
type apiError struct {
	status int
	v1     bool // RFC 7807 problem+json, else FastAPI {"detail": …}
	title  string
	typ    string
	detail any
	header http.Header
}

// validationItem is one entry of a FastAPI/pydantic 422 "detail" list.
type validationItem struct {
	Type  string         `json:"type"`
	Loc   []any          `json:"loc"`
	Msg   string         `json:"msg"`
	Input any            `json:"input"`
	Ctx   map[string]any `json:"ctx,omitempty"`
}

// v1ErrType is Airflow 2's EXCEPTIONS_LINK_MAP entry for a status, used as
// the problem "type" of errors Airflow itself raises. Errors raised by
// Connexion's validation use "about:blank" instead.
func v1ErrType(status int) string {
	name := map[int]string{400: "BadRequest", 401: "Unauthenticated", 403: "PermissionDenied",
		404: "NotFound", 409: "AlreadyExists", 500: "Unknown"}[status]
	if name == "" {
		return "about:blank"
	}
	return "https://airflow.apache.org/docs/apache-airflow/stable/stable-rest-api-ref.html#section/Errors/" + name
}

func v1Problem(status int, typ, title, detail string) *apiError {
	return &apiError{status: status, v1: true, typ: typ, title: title, detail: detail}
}

func v1BadRequest(typ, title, detail string) *apiError { return v1Problem(400, typ, title, detail) }

func v1NotFound(title, detail string) *apiError {
	return v1Problem(404, v1ErrType(404), title, detail)
}

func v1Forbidden(detail string) *apiError {
	return v1Problem(403, v1ErrType(403), "Forbidden", detail)
}

func v2Detail(status int, detail any) *apiError { return &apiError{status: status, detail: detail} }

func v2Invalid(items ...validationItem) *apiError {
	return &apiError{status: http.StatusUnprocessableEntity, detail: items}
}

// notImplemented answers for parts of the real API the simulator does not
// model, with a status no real Airflow endpoint uses for them, so a test
// that strays there fails with an obvious message.
func notImplemented(api int, what string) *apiError {
	msg := "airflow-sim does not implement " + what
	if api == 1 {
		return v1Problem(http.StatusNotImplemented, "about:blank", "Not Implemented", msg)
	}
	return v2Detail(http.StatusNotImplemented, msg)
}

func (e *apiError) write(w http.ResponseWriter, r *http.Request) {
	for k, vs := range e.header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	if e.v1 {
		body := map[string]any{"type": e.typ, "title": e.title, "status": e.status, "instance": r.URL.Path}
		if e.detail != nil {
			body["detail"] = e.detail
		}
		writeJSON(w, "application/problem+json", e.status, body)
		return
	}
	writeJSON(w, "application/json", e.status, map[string]any{"detail": e.detail})
}

func writeJSON(w http.ResponseWriter, contentType string, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "airflow-sim: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
