// Package airflowsim is an Airflow REST API simulator for kpo-reaper's
// end-to-end tests and demo. It serves a scenario (DAGs, runs, task
// instances) through API v1 (Airflow 2.x) or v2 (Airflow 3.x), with the
// validation, authentication, paging and ordering quirks of the real
// servers, and can be switched into fault modes at run time.
//
// "API down" is not a fault mode: tests stop the HTTP server instead.
package airflowsim

import (
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Fault is a failure mode of the simulated API.
type Fault string

// Fault modes. "Data routes" are every route except the version and health
// endpoints (and /auth/token, which only FaultUnauthorized touches), so that
// version detection and login keep working and the fault hits the listing.
const (
	// FaultNone serves normally.
	FaultNone Fault = "none"
	// FaultError500 answers data routes with 500, in the API's own 500
	// shape (problem+json for v1, Starlette's text/plain for v2).
	FaultError500 Fault = "error500"
	// FaultHTMLLogin answers data routes with 200 text/html, as an auth
	// proxy or a session-only Airflow 2 webserver does.
	FaultHTMLLogin Fault = "html-login"
	// FaultHang never answers data routes until the client gives up or
	// Server.Close is called.
	FaultHang Fault = "hang"
	// FaultUnauthorized answers 401 on every authenticated route and on
	// /auth/token, as after a password or secret rotation.
	FaultUnauthorized Fault = "unauthorized"
	// FaultShortListing makes the task instance list endpoints report a
	// total_entries one larger than the rows paging can return, as when a
	// row leaves the result set during a paged scan.
	FaultShortListing Fault = "short-listing"

	// The churn faults move rows between the pages of a task instance
	// listing while a client pages through it. Each fires once, right
	// after the simulator served the first page (offset 0, or the first
	// cursor page) of a task instance listing that has more pages, on an
	// active task instance of that page; then the fault is none again, so
	// a rescan sees a stable store.

	// FaultChurnFinish: the task instance finishes (success, end_date
	// now). A listing filtered on unfinished states loses a row before the
	// offset already read, so offset paging skips one later row, and
	// total_entries changes between pages.
	FaultChurnFinish Fault = "churn-finish"
	// FaultChurnRetry: the task instance gets a new try (try_number+1, a
	// new v2 id that sorts after every other, as a fresh UUIDv7 does);
	// its state stays. Under order_by=id it leaves its place, so a later
	// row is skipped and it shows up again at the end.
	FaultChurnRetry Fault = "churn-retry"
	// FaultChurnSwap: the task instance finishes and a new running task
	// instance appears in the same run, sorting after every other row (in
	// v1's hash order too). total_entries stays the same while a row is
	// skipped: the case a count check cannot catch.
	FaultChurnSwap Fault = "churn-swap"
)

// Faults lists every fault mode.
var Faults = []Fault{FaultNone, FaultError500, FaultHTMLLogin, FaultHang, FaultUnauthorized, FaultShortListing,
	FaultChurnFinish, FaultChurnRetry, FaultChurnSwap}

func (f Fault) churn() bool {
	return f == FaultChurnFinish || f == FaultChurnRetry || f == FaultChurnSwap
}

// ParseFault checks a fault name; the empty string is FaultNone.
func ParseFault(s string) (Fault, error) {
	if s == "" {
		return FaultNone, nil
	}
	for _, f := range Faults {
		if string(f) == s {
			return f, nil
		}
	}
	names := make([]string, len(Faults))
	for i, f := range Faults {
		names[i] = string(f)
	}
	return "", fmt.Errorf("unknown fault %q (want one of %s)", s, strings.Join(names, ", "))
}

// RecordedRequest is one request the simulator received.
type RecordedRequest struct {
	Time     time.Time
	Method   string
	Path     string // decoded, e.g. /api/v1/dags/~/dagRuns/~/taskInstances
	RawQuery string
	Body     string
	// Status is the status answered, or 0 while unanswered and when no
	// answer was sent (FaultHang, client gone).
	Status int
	// AuthOK reports whether the request carried valid credentials: basic
	// auth for v1, an unexpired token of this simulator for v2, an
	// externally issued bearer token (auth.bearerTokens,
	// WithBearerValidator) for either, and the right username and password
	// in the body for /auth/token.
	AuthOK bool
	// Ignored lists the query parameters the server ignored because the
	// simulated version does not declare them (v2 only: v1 answers 400).
	Ignored []string
}

// Option configures a Server.
type Option func(*Server)

// WithClock replaces time.Now, for relative scenario times and JWT expiry.
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// WithBearerValidator accepts, besides the scenario's auth.bearerTokens,
// every bearer token for which valid returns true: tokens an external
// issuer minted (a Composer or Astronomer stand-in). It is called
// concurrently.
func WithBearerValidator(valid func(token string) bool) Option {
	return func(s *Server) { s.bearerValid = valid }
}

// WithLogf logs one line per answered request.
func WithLogf(logf func(format string, args ...any)) Option {
	return func(s *Server) { s.logf = logf }
}

// Server simulates one Airflow API server. It is an http.Handler and safe
// for concurrent use.
type Server struct {
	api      int
	base     string
	version  string
	rel      release
	user     string
	password string
	ttl      time.Duration
	leeway   time.Duration
	pageCap  int
	now      func() time.Time
	logf     func(format string, args ...any)
	key      []byte
	start    time.Time
	routes   []*route
	// bearer holds the scenario's static tokens; bearerValid is
	// WithBearerValidator's function.
	bearer      map[string]bool
	bearerValid func(string) bool
	alog        actionLog

	mu     sync.RWMutex
	dags   map[string]*dagRec
	runs   map[[2]string]*runRec
	runSeq int
	tis    map[TIKey]*tiRec
	// idSeq numbers the v2 ids of tries made at run time by churn faults,
	// so that each sorts after every earlier id (as UUIDv7s do).
	idSeq int

	fmu       sync.Mutex
	fault     Fault
	closed    chan struct{}
	closeOnce sync.Once

	rmu  sync.Mutex
	reqs []RecordedRequest

	// busy is continuous churn (WithBusy), stats what was served (busy.go).
	busy  *busyState
	stats statCounters

	// hangHook, if set before serving, runs when a request starts to hang;
	// tests use it to know the hang is in place without sleeping.
	hangHook func()

	// ev holds the DAG-bag and run-GET 404s of evidence.go.
	ev evidenceState
}

// New builds a simulator for a scenario. Relative times in the scenario are
// resolved against the clock at this moment. New panics on a scenario that
// ParseScenario would reject: building one in Go code wrongly is a bug in
// the test.
func New(sc *Scenario, opts ...Option) *Server {
	if err := sc.validate(); err != nil {
		panic("airflowsim: invalid scenario: " + err.Error())
	}
	rel, _ := parseRelease(sc.AirflowVersion) // checked by validate
	s := &Server{api: sc.apiVersion(), version: sc.AirflowVersion, rel: rel, bearer: map[string]bool{}, user: sc.Auth.Username,
		password: sc.Auth.Password, ttl: time.Duration(sc.Auth.TokenTTL), leeway: time.Duration(sc.Auth.TokenLeeway),
		pageCap: sc.PageLimitCap, now: time.Now, fault: FaultNone, closed: make(chan struct{}),
		dags: map[string]*dagRec{}, runs: map[[2]string]*runRec{}, tis: map[TIKey]*tiRec{}}
	for _, tok := range sc.Auth.BearerTokens {
		s.bearer[tok] = true
	}
	for _, o := range opts {
		o(s)
	}
	if s.ttl == 0 {
		s.ttl = 24 * time.Hour
	}
	if s.pageCap == 0 {
		s.pageCap = 100
	}
	s.key = make([]byte, 32)
	if _, err := rand.Read(s.key); err != nil {
		panic(err)
	}
	s.start = s.clock()
	if s.api == 1 {
		s.base, s.routes = "/api/v1", v1Routes(s.rel)
	} else {
		s.base, s.routes = "/api/v2", v2Routes(s.rel)
	}
	for _, d := range sc.DAGs {
		s.dags[d.DagID] = buildDAG(d)
	}
	s.initEvidence(sc)
	for _, r := range sc.Runs {
		rec, err := buildRun(r, s.start, s.api)
		if err != nil {
			panic("airflowsim: " + err.Error())
		}
		s.runSeq++
		rec.seq = s.runSeq
		s.runs[[2]string{r.DagID, r.RunID}] = rec
	}
	for _, t := range sc.TaskInstances {
		rec, err := buildTI(t, s.start)
		if err != nil {
			panic("airflowsim: " + err.Error())
		}
		s.tis[rec.key] = rec
	}
	s.initBusy(sc.TaskInstances)
	return s
}

func (s *Server) clock() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

// Profile is the behaviour profile of the simulated version.
func (s *Server) Profile() Profile {
	p, _ := ProfileOf(s.version)
	return p
}

// APIVersion is 1 (Airflow 2.x, /api/v1) or 2 (Airflow 3.x, /api/v2).
func (s *Server) APIVersion() int { return s.api }

// BasePath is "/api/v1" or "/api/v2".
func (s *Server) BasePath() string { return s.base }

// SetFault switches the fault mode. It panics on a value not in Faults.
func (s *Server) SetFault(f Fault) {
	if _, err := ParseFault(string(f)); err != nil {
		panic("airflowsim: " + err.Error())
	}
	s.fmu.Lock()
	defer s.fmu.Unlock()
	s.fault = f
}

// Fault returns the current fault mode.
func (s *Server) Fault() Fault {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	return s.fault
}

// Close ends every request held by FaultHang by aborting its connection,
// and makes later hung requests abort at once. Call it before shutting down
// an http.Server or httptest.Server, whose shutdown waits for handlers.
func (s *Server) Close() { s.closeOnce.Do(func() { close(s.closed) }) }

// Requests returns a copy of every request received so far, oldest first.
func (s *Server) Requests() []RecordedRequest {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	return append([]RecordedRequest(nil), s.reqs...)
}

// ResetRequests forgets the recorded requests.
func (s *Server) ResetRequests() {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	s.reqs = nil
}

// IssueToken mints a v2 access token as POST /auth/token would, without a
// request; useful to tests that are not about login.
func (s *Server) IssueToken() string { return s.issueToken(s.clock()) }

// SetTaskState changes a task instance as the scheduler would between two
// polls: state "" (or "none") is "no status"; tryNumber <= 0 keeps the
// current try, a new try also changes the v2 id; endDate nil clears the end
// date. updated_at becomes now.
func (s *Server) SetTaskState(key TIKey, state string, tryNumber int, endDate *time.Time) error {
	var st *string
	if state != "" {
		st = &state
	}
	norm, err := normState(st)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ti := s.tis[key]
	if ti == nil {
		return fmt.Errorf("airflowsim: no task instance %s", key)
	}
	ti.state = norm
	if tryNumber > 0 && tryNumber != ti.try {
		ti.try = tryNumber
		ti.id = "" // derived from the try again
	}
	ti.end = nil
	if endDate != nil {
		t := endDate.UTC().Truncate(time.Microsecond)
		ti.end = &t
	}
	ti.updated = s.clock()
	return nil
}

// PutTaskInstance adds or replaces a task instance; its run must exist.
// Relative times are relative to now.
func (s *Server) PutTaskInstance(ti TaskInstanceSpec) error {
	now := s.clock()
	rec, err := buildTI(ti, now)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.runs[[2]string{ti.DagID, ti.RunID}] == nil {
		return fmt.Errorf("airflowsim: run %s/%s does not exist", ti.DagID, ti.RunID)
	}
	s.tis[rec.key] = rec
	return nil
}

// RemoveTaskInstance deletes a task instance.
func (s *Server) RemoveTaskInstance(key TIKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tis[key] == nil {
		return fmt.Errorf("airflowsim: no task instance %s", key)
	}
	delete(s.tis, key)
	return nil
}

// TaskInstance returns the current state of a task instance, with times
// in RFC 3339.
func (s *Server) TaskInstance(key TIKey) (TaskInstanceSpec, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ti := s.tis[key]
	if ti == nil {
		return TaskInstanceSpec{}, false
	}
	return ti.spec(), true
}

// PutDagRun adds or replaces a DAG run; its DAG must exist. A replaced run
// keeps its task instances and its place in the default order.
func (s *Server) PutDagRun(run DagRunSpec) error {
	rec, err := buildRun(run, s.clock(), s.api)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dags[run.DagID] == nil {
		return fmt.Errorf("airflowsim: dag %s does not exist", run.DagID)
	}
	k := [2]string{run.DagID, run.RunID}
	if old := s.runs[k]; old != nil {
		rec.seq = old.seq
	} else {
		s.runSeq++
		rec.seq = s.runSeq
	}
	s.runs[k] = rec
	return nil
}

// RemoveDagRun deletes a DAG run and its task instances, as deleting a run
// in Airflow does.
func (s *Server) RemoveDagRun(dagID, runID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := [2]string{dagID, runID}
	if s.runs[k] == nil {
		return fmt.Errorf("airflowsim: no run %s/%s", dagID, runID)
	}
	delete(s.runs, k)
	for key := range s.tis {
		if key.DagID == dagID && key.RunID == runID {
			delete(s.tis, key)
		}
	}
	return nil
}

// PutDAG adds or replaces a DAG (e.g. to make it unreadable or stale).
func (s *Server) PutDAG(dag DAGSpec) error {
	if err := dag.check(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dags[dag.DagID] = buildDAG(dag)
	return nil
}

// call is one routed request.
type call struct {
	r    *http.Request
	path map[string]string
	q    qvals
	body []byte
	now  time.Time
	// firstPage is set by a task instance listing that served its first
	// page while more rows follow: what a churn fault acts on.
	firstPage *servedPage
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// ServeHTTP serves the simulated API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	idx := s.record(r, body)
	s.stats.requests.Add(1)
	sw := &statusWriter{ResponseWriter: w}
	defer func() { s.finish(idx, sw.status, r) }()
	s.serve(sw, r, body, idx)
}

func (s *Server) record(r *http.Request, body []byte) int {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	s.reqs = append(s.reqs, RecordedRequest{Time: s.now(), Method: r.Method, Path: r.URL.Path,
		RawQuery: r.URL.RawQuery, Body: string(body)})
	return len(s.reqs) - 1
}

func (s *Server) setIgnored(idx int, names []string) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if idx < len(s.reqs) {
		s.reqs[idx].Ignored = names
	}
}

func (s *Server) setAuthOK(idx int, ok bool) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if idx < len(s.reqs) {
		s.reqs[idx].AuthOK = ok
	}
}

func (s *Server) finish(idx, status int, r *http.Request) {
	s.rmu.Lock()
	if idx < len(s.reqs) {
		s.reqs[idx].Status = status
	}
	s.rmu.Unlock()
	if s.logf != nil {
		q := ""
		if r.URL.RawQuery != "" {
			q = "?" + r.URL.RawQuery
		}
		s.logf("%s %s%s -> %d", r.Method, r.URL.Path, q, status)
	}
}

func (s *Server) notFound() *apiError {
	if s.api == 1 {
		return v1Problem(404, "about:blank", "Not Found",
			"The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.")
	}
	return v2Detail(404, "Not Found")
}

func (s *Server) methodNotAllowed() *apiError {
	if s.api == 1 {
		return v1Problem(405, "about:blank", "Method Not Allowed", "The method is not allowed for the requested URL.")
	}
	return v2Detail(405, "Method Not Allowed")
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, body []byte, idx int) {
	fault := s.Fault()
	if s.api == 2 && r.URL.Path == "/auth/token" {
		if r.Method != http.MethodPost {
			s.methodNotAllowed().write(w, r)
			return
		}
		s.createToken(w, r, body, idx, fault)
		return
	}
	segs, ok := splitPath(r.URL)
	baseSegs := strings.Split(strings.Trim(s.base, "/"), "/")
	if !ok || len(segs) < len(baseSegs) || strings.Join(segs[:len(baseSegs)], "/") != strings.Join(baseSegs, "/") {
		s.notFound().write(w, r)
		return
	}
	rt, params, pathMatched := s.match(r.Method, segs[len(baseSegs):])
	if rt == nil {
		if pathMatched {
			s.methodNotAllowed().write(w, r)
		} else {
			s.notFound().write(w, r)
		}
		return
	}
	authErr := s.authenticate(r)
	s.setAuthOK(idx, authErr == nil)
	if rt.auth && fault == FaultUnauthorized {
		s.unauthorized(w, r)
		return
	}
	if rt.data {
		switch fault {
		case FaultError500:
			s.internalError(w, r)
			return
		case FaultHTMLLogin:
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, loginPage)
			return
		case FaultHang:
			if s.hangHook != nil {
				s.hangHook()
			}
			select {
			case <-r.Context().Done():
				return
			case <-s.closed:
				panic(http.ErrAbortHandler)
			}
		}
	}
	c := &call{r: r, path: params, body: body, now: s.clock()}
	query := r.URL.Query()
	if rt.stub {
		query = nil // a stub has no parameter table; let it say 501
	}
	var aerr *apiError
	if s.api == 1 {
		// Connexion validates the request before Airflow's decorators check
		// credentials and permissions.
		if c.q, aerr = v1Query(rt.params, query); aerr == nil && rt.auth {
			aerr = authErr
		}
		if aerr == nil {
			aerr = s.checkDagAccess(c)
		}
	} else {
		// FastAPI runs the auth and permission dependencies before it
		// reports query validation errors.
		if rt.auth {
			aerr = authErr
		}
		if aerr == nil {
			aerr = s.checkDagAccess(c)
		}
		if aerr == nil {
			c.q, aerr = v2Query(rt.params, query)
			s.setIgnored(idx, undeclared(rt.params, query))
		}
	}
	if aerr != nil {
		aerr.write(w, r)
		return
	}
	var out any
	func() {
		s.mu.RLock()
		defer s.mu.RUnlock()
		out, aerr = rt.handle(s, c)
	}()
	if aerr != nil {
		aerr.write(w, r)
		return
	}
	// The answer is complete; a churn fault changes the store before the
	// client has it, so its next page sees the change.
	if c.firstPage != nil {
		s.churn(c)
	}
	s.answered(c, out)
	writeJSON(w, "application/json", http.StatusOK, out)
}

// checkDagAccess is Airflow's requires_access_dag for a dag_id path
// parameter: an unreadable DAG is 403 before anything else is looked at.
func (s *Server) checkDagAccess(c *call) *apiError {
	dagID, ok := c.path["dag_id"]
	if !ok || dagID == "~" {
		return nil
	}
	s.mu.RLock()
	d := s.dags[dagID]
	s.mu.RUnlock()
	if d != nil && !d.readable {
		if s.api == 1 {
			return v1Forbidden("Access is denied")
		}
		return v2Detail(403, "Forbidden")
	}
	return nil
}

func (s *Server) unauthorized(w http.ResponseWriter, r *http.Request) {
	if s.api == 1 {
		e := v1Problem(401, v1ErrType(401), "Unauthorized", "No credentials were provided or the credentials are invalid")
		e.header = http.Header{"Www-Authenticate": {"Basic"}}
		e.write(w, r)
		return
	}
	v2Detail(401, "Not authenticated").write(w, r)
}

func (s *Server) internalError(w http.ResponseWriter, r *http.Request) {
	if s.api == 1 {
		v1Problem(500, "about:blank", "Internal Server Error",
			"The server encountered an internal error and was unable to complete your request. Either the server is overloaded or there is an error in the application.").write(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = io.WriteString(w, "Internal Server Error")
}

const loginPage = `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign In - Airflow</title></head>
<body>
<form method="post" action="/login/">
<input type="text" name="username" placeholder="Username">
<input type="password" name="password" placeholder="Password">
<input type="submit" value="Sign In">
</form>
</body>
</html>
`

// externalBearer reports whether external bearer tokens are configured,
// and whether tok is one of them.
func (s *Server) externalBearer(tok string) (configured, ok bool) {
	configured = len(s.bearer) > 0 || s.bearerValid != nil
	if tok == "" {
		return configured, false
	}
	return configured, s.bearer[tok] || (s.bearerValid != nil && s.bearerValid(tok))
}

// bearerToken is the token of an "Authorization: Bearer" header, or "".
func bearerToken(r *http.Request) string {
	if scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "bearer") {
		return strings.TrimSpace(cred)
	}
	return ""
}

// authenticate checks the request's credentials; nil means valid.
func (s *Server) authenticate(r *http.Request) *apiError {
	configured, external := s.externalBearer(bearerToken(r))
	if external {
		return nil
	}
	if s.api == 1 {
		u, pw, ok := r.BasicAuth()
		if ok && s.user != "" && u == s.user && pw == s.password {
			return nil
		}
		e := v1Problem(401, v1ErrType(401), "Unauthorized", "No credentials were provided or the credentials are invalid")
		e.header = http.Header{"Www-Authenticate": {"Basic"}}
		return e
	}
	tok := ""
	if scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "bearer") {
		tok = strings.TrimSpace(cred)
	} else if ck, err := r.Cookie("_token"); err == nil {
		tok = ck.Value
	}
	if tok == "" {
		return v2Detail(401, "Not authenticated")
	}
	switch s.verifyToken(tok, s.clock()) {
	case tokenOK:
		return nil
	case tokenExpired:
		return v2Detail(401, "Token Expired")
	case tokenInvalid:
		if configured {
			// The platform's own auth layer (Composer, Astronomer) sits in
			// front and answers 401 to a token it does not know.
			return v2Detail(401, "Not authenticated")
		}
		fallthrough
	default:
		// Airflow 3 maps PyJWT's InvalidTokenError (bad signature, a token
		// of another server, garbage) to 403, not 401.
		return v2Detail(403, "Invalid JWT token")
	}
}

// splitPath splits the escaped path so that an encoded '/' inside a run id
// stays inside its segment.
func splitPath(u *url.URL) ([]string, bool) {
	raw := strings.Trim(u.EscapedPath(), "/")
	if raw == "" {
		return nil, true
	}
	parts := strings.Split(raw, "/")
	for i, p := range parts {
		v, err := url.PathUnescape(p)
		if err != nil {
			return nil, false
		}
		parts[i] = v
	}
	return parts, true
}

// route is one operation of the simulated API.
type route struct {
	method string
	// pattern segments: literals, "{name}", or "{name:int}" which only
	// matches an integer (Flask's int converter in v1).
	pattern []string
	op      string // operationId in the official spec
	params  []qparam
	auth    bool
	data    bool
	// stub marks a real endpoint answered with 501.
	stub   bool
	handle func(s *Server, c *call) (any, *apiError)
}

func newRoute(method, path, op string, params []qparam, h func(*Server, *call) (any, *apiError)) *route {
	return &route{method: method, pattern: strings.Split(strings.Trim(path, "/"), "/"), op: op, params: params,
		auth: true, data: true, handle: h}
}

func stub(rt *route) *route {
	rt.stub = true
	return rt
}

func (rt *route) literals() int {
	n := 0
	for _, p := range rt.pattern {
		if !strings.HasPrefix(p, "{") {
			n++
		}
	}
	return n
}

func (rt *route) matchPath(segs []string) (map[string]string, bool) {
	if len(segs) != len(rt.pattern) {
		return nil, false
	}
	params := map[string]string{}
	for i, p := range rt.pattern {
		if !strings.HasPrefix(p, "{") {
			if segs[i] != p {
				return nil, false
			}
			continue
		}
		name := strings.Trim(p, "{}")
		if n, isInt := strings.CutSuffix(name, ":int"); isInt {
			if !isInteger(segs[i]) {
				return nil, false
			}
			name = n
		}
		if segs[i] == "" {
			return nil, false
		}
		params[name] = segs[i]
	}
	return params, true
}

// match picks the most specific route for the path, preferring literal
// segments over parameters as both frameworks effectively do for the
// routes simulated here.
func (s *Server) match(method string, segs []string) (*route, map[string]string, bool) {
	var best *route
	var bestParams map[string]string
	pathMatched := false
	for _, rt := range s.routes {
		params, ok := rt.matchPath(segs)
		if !ok {
			continue
		}
		pathMatched = true
		if rt.method != method {
			continue
		}
		if best == nil || rt.literals() > best.literals() {
			best, bestParams = rt, params
		}
	}
	return best, bestParams, pathMatched
}

func isInteger(s string) bool {
	if s == "" {
		return false
	}
	if s[0] == '-' || s[0] == '+' {
		s = s[1:]
	}
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
