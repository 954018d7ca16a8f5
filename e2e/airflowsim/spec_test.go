package airflowsim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// The official specs every request and response of these tests is checked
// against: each simulator against the spec closest to its version's
// profile (Profile.Spec). Those in api/airflow are the repository's copies
// (also used for code generation); the older ones and the auth manager
// spec are in testdata.
var specDirs = []string{filepath.Join("..", "..", "api", "airflow"), "testdata"}

const specAuthFile = "v2-simple-auth-manager.yaml"

type spec struct {
	doc    *openapi3.T
	router routers.Router
	opts   []openapi3.SchemaValidationOption
	v1     bool // API v1: errors are problem+json with the Error schema
}

var (
	specsMu sync.Mutex
	// specCache holds loaded specs by file name ("+cursor" for the
	// overlaid 3.2.1 of the cursor profile); a failed load is cached too.
	specCache = map[string]*spec{}
	specErrs  = map[string]error{}
)

// rfc3339 is what the non-standard v1 "format: datetime" fields carry;
// registering it makes those fields checked instead of silently accepted.
const rfc3339 = `^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$`

func loadSpec(path string, v31 bool, overlay func(*openapi3.T)) (*spec, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	// The files' top-level security names schemes they do not define.
	doc.Security = nil
	if v31 {
		restoreNullable(doc)
	}
	if overlay != nil {
		overlay(doc)
	}
	if err := doc.Validate(context.Background(), openapi3.DisableExamplesValidation()); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	opts := []openapi3.SchemaValidationOption{
		openapi3.WithStringFormatValidator("datetime", openapi3.NewRegexpFormatValidator(rfc3339)),
		openapi3.WithStringFormatValidator("uuid", openapi3.NewRegexpFormatValidator(
			`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)),
	}
	return &spec{doc: doc, router: router, opts: opts, v1: !v31}, nil
}

// nullableTriggerAndJob fixes bugs of the 2.5.0 spec that later specs
// fixed (2.10.0 has all three): TaskInstance's trigger and triggerer_job
// are null for every task instance that never deferred (marshmallow dumps a
// missing Nested as null), and state is null for a task instance with no
// status (since 2.0, apache/airflow#12453), but Trigger, Job and TaskState
// were declared nullable only later (TaskState "Changed in version 2.7.0:
// Field becomes nullable").
func nullableTriggerAndJob(doc *openapi3.T) {
	for _, name := range []string{"Trigger", "Job", "TaskState"} {
		s := doc.Components.Schemas[name].Value
		s.Nullable = true
		if len(s.Enum) > 0 && !containsNil(s.Enum) {
			s.Enum = append(s.Enum, nil)
		}
	}
}

// cursorOverlay turns 3.2.1's get_task_instances into 3.2.2's, for which
// no official spec could be obtained (apache/airflow#64845, backport
// #65405): a cursor query parameter, and an answer that may carry
// next_cursor and previous_cursor (nullable strings) instead of
// total_entries, now optional. Only that operation changes: its 200
// schema becomes a copy of TaskInstanceCollectionResponse, so the batch
// and mapped listings keep the original.
func cursorOverlay(doc *openapi3.T) {
	op := doc.Paths.Value("/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances").Get
	op.Parameters = append(op.Parameters, &openapi3.ParameterRef{
		Value: openapi3.NewQueryParameter("cursor").WithSchema(openapi3.NewStringSchema())})
	orig := doc.Components.Schemas["TaskInstanceCollectionResponse"].Value
	s := openapi3.NewObjectSchema()
	s.Title = "TaskInstanceCollectionResponse (3.2.2 cursor overlay)"
	s.Properties = openapi3.Schemas{}
	for k, v := range orig.Properties {
		s.Properties[k] = v
	}
	nullableString := func() *openapi3.SchemaRef {
		t := openapi3.Types{"string", "null"}
		return &openapi3.SchemaRef{Value: &openapi3.Schema{Type: &t}}
	}
	s.Properties["next_cursor"] = nullableString()
	s.Properties["previous_cursor"] = nullableString()
	s.Required = []string{"task_instances"}
	doc.Components.Schemas["TaskInstanceCursorOverlayResponse"] = &openapi3.SchemaRef{Value: s}
	op.Responses.Status(http.StatusOK).Value.Content["application/json"].Schema =
		&openapi3.SchemaRef{Ref: "#/components/schemas/TaskInstanceCursorOverlayResponse", Value: s}
}

// restoreNullable undoes a rewrite in the python-client copy of the v2
// spec: FastAPI's "anyOf: [X, {type: null}]" became "nullable: true", a
// keyword OpenAPI 3.1 (JSON Schema 2020-12, which kin-openapi applies to
// 3.1 documents) ignores. Without this every null the real server sends in
// a nullable field would fail validation. Adding "null" to the type (and to
// a closed enum) restores the original meaning and nothing more.
func restoreNullable(doc *openapi3.T) {
	seen := map[*openapi3.Schema]bool{}
	var walk func(r *openapi3.SchemaRef)
	walk = func(r *openapi3.SchemaRef) {
		if r == nil || r.Value == nil || seen[r.Value] {
			return
		}
		s := r.Value
		seen[s] = true
		if isAnySchema(s) {
			t := openapi3.Types{"array", "boolean", "integer", "null", "number", "object", "string"}
			s.Type = &t
		}
		if s.Nullable {
			if s.Type != nil && !s.Type.IsEmpty() && !s.Type.Includes("null") {
				t := append(s.Type.Clone(), "null")
				s.Type = &t
			}
			if len(s.Enum) > 0 && !containsNil(s.Enum) {
				s.Enum = append(s.Enum, nil)
			}
		}
		for _, x := range s.OneOf {
			walk(x)
		}
		for _, x := range s.AnyOf {
			walk(x)
		}
		for _, x := range s.AllOf {
			walk(x)
		}
		walk(s.Not)
		walk(s.Items)
		for _, x := range s.Properties {
			walk(x)
		}
		walk(s.AdditionalProperties.Schema)
	}
	for _, r := range doc.Components.Schemas {
		walk(r)
	}
	for _, pi := range doc.Paths.Map() {
		for _, pr := range pi.Parameters {
			walk(pr.Value.Schema)
		}
		for _, op := range pi.Operations() {
			for _, pr := range op.Parameters {
				walk(pr.Value.Schema)
			}
			if op.RequestBody != nil {
				for _, c := range op.RequestBody.Value.Content {
					walk(c.Schema)
				}
			}
			for _, rr := range op.Responses.Map() {
				for _, c := range rr.Value.Content {
					walk(c.Schema)
				}
			}
		}
	}
}

// isAnySchema reports a schema with no constraint at all, such as
// ValidationError.input. JSON Schema 2020-12 lets it match null, but
// kin-openapi's fallback validator for 3.1 documents rejects null unless
// "null" is among the types, so the tests spell the types out.
func isAnySchema(s *openapi3.Schema) bool {
	return (s.Type == nil || s.Type.IsEmpty()) && len(s.OneOf) == 0 && len(s.AnyOf) == 0 && len(s.AllOf) == 0 &&
		s.Not == nil && s.Items == nil && len(s.Properties) == 0 && len(s.Enum) == 0 && s.Const == nil &&
		s.AdditionalProperties.Schema == nil && s.AdditionalProperties.Has == nil
}

func containsNil(vals []any) bool {
	for _, v := range vals {
		if v == nil {
			return true
		}
	}
	return false
}

// specFile loads a spec by file name, once; "name+cursor" is the file
// with cursorOverlay applied.
func specFile(t *testing.T, name string) *spec {
	t.Helper()
	specsMu.Lock()
	defer specsMu.Unlock()
	if sp, ok := specCache[name]; ok {
		return sp
	}
	if err, ok := specErrs[name]; ok {
		t.Fatalf("loading spec %s: %v", name, err)
	}
	file, overlay := name, func(*openapi3.T) {}
	if f, ok := strings.CutSuffix(name, "+cursor"); ok {
		file, overlay = f, cursorOverlay
	}
	if file == "v1-2.5.0.yaml" {
		overlay = nullableTriggerAndJob
	}
	path := ""
	for _, dir := range specDirs {
		if _, err := os.Stat(filepath.Join(dir, file)); err == nil {
			path = filepath.Join(dir, file)
			break
		}
	}
	var sp *spec
	err := fmt.Errorf("%s is in none of %v", file, specDirs)
	if path != "" {
		sp, err = loadSpec(path, !strings.HasPrefix(file, "v1-"), overlay)
	}
	if err != nil {
		specErrs[name] = err
		t.Fatalf("loading spec %s: %v", name, err)
	}
	specCache[name] = sp
	return sp
}

// specFor is the spec a simulator of the profile is validated against.
func specFor(t *testing.T, p Profile) *spec {
	t.Helper()
	if p.From == "3.2.2" {
		return specFile(t, p.Spec+"+cursor")
	}
	return specFile(t, p.Spec)
}

// specs returns the newest v1 and v2 specs and the auth manager's.
func specs(t *testing.T) (v1, v2, auth *spec) {
	t.Helper()
	return specFile(t, "v1-2.10.0.yaml"), specFile(t, "v2-3.2.1.yaml"), specFile(t, specAuthFile)
}

// recordOps, when set, sees every simulator's requests at the end of a
// test; TestEveryServedOperationIsExercised uses it.
var recordOps func(*Server, []RecordedRequest)

// fakeClock is a settable clock for JWT expiry and relative times.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// client talks to a simulator over HTTP and checks every exchange against
// the official spec.
type client struct {
	t     *testing.T
	sim   *Server
	srv   *httptest.Server
	api   *spec
	auth  *spec
	user  string
	pass  string
	token string
}

func newClient(t *testing.T, sc *Scenario, opts ...Option) *client {
	t.Helper()
	_, _, auth := specs(t)
	sim := New(sc, opts...)
	srv := httptest.NewServer(sim)
	t.Cleanup(func() {
		if recordOps != nil {
			recordOps(sim, sim.Requests())
		}
		sim.Close()
		srv.Close()
	})
	return &client{t: t, sim: sim, srv: srv, api: specFor(t, sim.Profile()), auth: auth, user: sc.Auth.Username, pass: sc.Auth.Password}
}

func mustParse(t *testing.T, yamlText string) *Scenario {
	t.Helper()
	sc, err := ParseScenario([]byte(yamlText))
	if err != nil {
		t.Fatalf("ParseScenario: %v", err)
	}
	return sc
}

type reqConf struct {
	body           []byte
	contentType    string
	authHeader     *string // nil: the client's credentials
	noAuth         bool
	invalidRequest string // the request is meant to break the spec; this must appear in the error
	noRoute        bool   // the path is not in the spec
	deviation      string // the response is known not to match the spec: the schema it does match
	nonSpec        bool   // the response is deliberately not an API answer (faults)
	ctx            context.Context
}

type opt func(*reqConf)

func jsonBody(v any) opt {
	return func(r *reqConf) {
		if s, ok := v.(string); ok {
			r.body = []byte(s)
		} else {
			r.body, _ = json.Marshal(v)
		}
		r.contentType = "application/json"
	}
}

func formBody(s string) opt {
	return func(r *reqConf) { r.body, r.contentType = []byte(s), "application/x-www-form-urlencoded" }
}

func noAuth() opt                 { return func(r *reqConf) { r.noAuth = true } }
func authHeader(h string) opt     { return func(r *reqConf) { r.authHeader = &h } }
func invalidRequest(s string) opt { return func(r *reqConf) { r.invalidRequest = s } }
func noRoute() opt                { return func(r *reqConf) { r.noRoute = true } }
func nonSpec() opt                { return func(r *reqConf) { r.nonSpec = true } }
func withCtx(ctx context.Context) opt {
	return func(r *reqConf) { r.ctx = ctx }
}

// deviation marks a response the real server sends although the spec says
// otherwise; it must fail the spec and match the named component schema.
func deviation(schema string) opt { return func(r *reqConf) { r.deviation = schema } }

type exchange struct {
	status int
	header http.Header
	body   []byte
	err    error
}

func (x exchange) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(x.body, v); err != nil {
		t.Fatalf("decoding %s: %v", x.body, err)
	}
}

func (x exchange) obj(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	x.decode(t, &m)
	return m
}

func (c *client) get(path, query string, opts ...opt) exchange {
	c.t.Helper()
	return c.do(http.MethodGet, path, query, opts...)
}

func (c *client) post(path string, opts ...opt) exchange {
	c.t.Helper()
	return c.do(http.MethodPost, path, "", opts...)
}

func (c *client) build(ctx context.Context, method, url string, rc *reqConf) *http.Request {
	c.t.Helper()
	var body io.Reader
	if rc.body != nil {
		body = bytes.NewReader(rc.body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if rc.contentType != "" {
		req.Header.Set("Content-Type", rc.contentType)
	}
	switch {
	case rc.authHeader != nil:
		req.Header.Set("Authorization", *rc.authHeader)
	case rc.noAuth:
	case c.sim.APIVersion() == 1:
		req.SetBasicAuth(c.user, c.pass)
	case c.token != "":
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req
}

func (c *client) do(method, path, query string, opts ...opt) exchange {
	c.t.Helper()
	rc := &reqConf{ctx: context.Background()}
	for _, o := range opts {
		o(rc)
	}
	url := c.srv.URL + path
	if query != "" {
		url += "?" + query
	}
	sp := c.api
	if path == "/auth/token" {
		sp = c.auth
	}
	// Validate a twin of the request: validation reads its body.
	vreq := c.build(rc.ctx, method, url, rc)
	route, pathParams, err := sp.router.FindRoute(vreq)
	switch {
	case err != nil && !rc.noRoute:
		c.t.Fatalf("%s %s: not in the spec: %v", method, path, err)
	case err == nil && rc.noRoute:
		c.t.Fatalf("%s %s: expected no spec route, found %s", method, path, route.Operation.OperationID)
	}
	var in *openapi3filter.RequestValidationInput
	if route != nil {
		in = &openapi3filter.RequestValidationInput{Request: vreq, PathParams: pathParams, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
				SchemaValidationOptions: sp.opts, MultiError: true}}
		err := openapi3filter.ValidateRequest(context.Background(), in)
		switch {
		case err != nil && rc.invalidRequest == "":
			c.t.Fatalf("%s %s?%s: request breaks the spec: %v", method, path, query, err)
		case err == nil && rc.invalidRequest != "":
			c.t.Fatalf("%s %s?%s: request was meant to break the spec (%s) but is valid", method, path, query, rc.invalidRequest)
		case err != nil && !strings.Contains(err.Error(), rc.invalidRequest):
			c.t.Fatalf("%s %s?%s: request breaks the spec differently than meant (%q): %v", method, path, query, rc.invalidRequest, err)
		}
	}

	resp, err := c.srv.Client().Do(c.build(rc.ctx, method, url, rc))
	if err != nil {
		return exchange{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	x := exchange{status: resp.StatusCode, header: resp.Header, body: body}
	c.checkResponse(sp, in, rc, x, method+" "+path+"?"+query)
	return x
}

// checkResponse validates a response against the operation's declared
// response, or, for a status the operation does not declare (Airflow
// answers more than it documents), against the API's error schema. Nothing
// goes unchecked.
func (c *client) checkResponse(sp *spec, in *openapi3filter.RequestValidationInput, rc *reqConf, x exchange, what string) {
	c.t.Helper()
	err := c.validateResponse(sp, in, x)
	switch {
	case rc.nonSpec:
		if err == nil {
			c.t.Fatalf("%s: fault response %d %s unexpectedly matches the spec", what, x.status, x.body)
		}
	case rc.deviation != "":
		if err == nil {
			c.t.Fatalf("%s: known deviation no longer deviates; drop the deviation marker: %s", what, x.body)
		}
		if err := c.validateAgainst(sp, rc.deviation, x.body); err != nil {
			c.t.Fatalf("%s: deviating response does not match %s either: %v", what, rc.deviation, err)
		}
	case err != nil:
		c.t.Fatalf("%s: response %d breaks the spec: %v\nbody: %s", what, x.status, err, x.body)
	}
}

func (c *client) validateResponse(sp *spec, in *openapi3filter.RequestValidationInput, x exchange) error {
	ct := x.header.Get("Content-Type")
	if sp.v1 && strings.HasPrefix(ct, "application/problem+json") {
		// Connexion serves RFC 7807 errors as application/problem+json
		// while the spec declares them as application/json; only the
		// media type differs, the body is checked against Error.
		if x.status < 400 {
			return fmt.Errorf("problem+json on a %d", x.status)
		}
		ct = "application/json"
	}
	if in != nil && in.Route.Operation.Responses.Status(x.status) != nil {
		h := http.Header{}
		h.Set("Content-Type", ct)
		return openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
			RequestValidationInput: in, Status: x.status, Header: h, Body: io.NopCloser(bytes.NewReader(x.body)),
			Options: &openapi3filter.Options{IncludeResponseStatus: true, SchemaValidationOptions: sp.opts, MultiError: true},
		})
	}
	if !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("undeclared status %d with Content-Type %q", x.status, ct)
	}
	schema := "Error"
	if !sp.v1 {
		schema = "HTTPExceptionResponse"
		if x.status == http.StatusUnprocessableEntity {
			schema = "HTTPValidationError"
		}
	}
	return c.validateAgainst(sp, schema, x.body)
}

func (c *client) validateAgainst(sp *spec, schema string, body []byte) error {
	ref := sp.doc.Components.Schemas[schema]
	if ref == nil {
		c.t.Fatalf("no schema %s in spec", schema)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return err
	}
	opts := append([]openapi3.SchemaValidationOption{openapi3.VisitAsResponse(), openapi3.MultiErrors()}, sp.opts...)
	if sp.doc.IsOpenAPI31OrLater() {
		opts = append(opts, openapi3.EnableJSONSchema2020())
	}
	return ref.Value.VisitJSON(v, opts...)
}

// login gets a token through POST /auth/token and keeps it.
// signedInTo is signedIn to a scenario of that Airflow version, with basic
// auth u/p, and the rest of its YAML.
func signedInTo(t *testing.T, version, rest string) *client {
	t.Helper()
	return signedIn(t, mustParse(t, fmt.Sprintf("airflowVersion: %q\nauth: {username: u, password: p}\n", version)+rest))
}

// signedIn is a client of a simulator of sc, logged in where its API
// version wants a token.
func signedIn(t *testing.T, sc *Scenario) *client {
	t.Helper()
	c := newClient(t, sc)
	if c.sim.APIVersion() == 2 {
		c.login()
	}
	return c
}

func (c *client) login() {
	c.t.Helper()
	x := c.post("/auth/token", jsonBody(map[string]string{"username": c.user, "password": c.pass}), noAuth())
	if x.status != http.StatusCreated {
		c.t.Fatalf("login: %d %s", x.status, x.body)
	}
	var out struct {
		AccessToken string `json:"access_token"`
	}
	x.decode(c.t, &out)
	c.token = out.AccessToken
}

func (c *client) expect(x exchange, status int) exchange {
	c.t.Helper()
	if x.err != nil {
		c.t.Fatalf("request failed: %v", x.err)
	}
	if x.status != status {
		c.t.Fatalf("status %d, want %d: %s", x.status, status, x.body)
	}
	return x
}

// tiRow is the part of a task instance both API versions share.
type tiRow struct {
	ID        string   `json:"id"`
	DagID     string   `json:"dag_id"`
	DagRunID  string   `json:"dag_run_id"`
	TaskID    string   `json:"task_id"`
	MapIndex  int      `json:"map_index"`
	TryNumber int      `json:"try_number"`
	State     *string  `json:"state"`
	Operator  *string  `json:"operator"`
	StartDate *string  `json:"start_date"`
	EndDate   *string  `json:"end_date"`
	Duration  *float64 `json:"duration"`
}

func (r tiRow) key() TIKey {
	return TIKey{DagID: r.DagID, RunID: r.DagRunID, TaskID: r.TaskID, MapIndex: r.MapIndex}
}

type tiPage struct {
	TaskInstances []tiRow `json:"task_instances"`
	TotalEntries  int     `json:"total_entries"`
}

func (c *client) tiPage(x exchange) tiPage {
	c.t.Helper()
	var p tiPage
	x.decode(c.t, &p)
	return p
}
