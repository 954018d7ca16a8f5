package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
)

// fastOptions keeps backoff tiny so that retry tests finish at once.
func fastOptions() Options {
	return Options{
		Timeout:      5 * time.Second,
		MaxRetries:   3,
		RetryWaitMin: time.Millisecond,
		RetryWaitMax: 2 * time.Millisecond,
	}
}

// authOptions is fastOptions with a.
func authOptions(a Auth) Options {
	o := fastOptions()
	o.Auth = a
	return o
}

func mustNew(t *testing.T, o Options) *http.Client {
	t.Helper()
	hc, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return hc
}

func get(t *testing.T, hc *http.Client, u string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err == nil {
		t.Cleanup(func() { resp.Body.Close() })
	}
	return resp, err
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func TestRetriesA500ThenSucceeds(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if n.Add(1) == 1 {
			writeJSON(w, 500, `{"detail":"boom"}`)
			return
		}
		writeJSON(w, 200, `{"ok":true}`)
	}))
	defer srv.Close()
	var mu sync.Mutex
	var seen []string
	o := fastOptions()
	o.Observer = func(ep, method string, status int, _ time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, fmt.Sprintf("%s %s %d", method, ep, status))
	}
	resp, err := get(t, mustNew(t, o), srv.URL+"/api/v1/dags/my_dag/dagRuns")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || n.Load() != 2 {
		t.Fatalf("status %d after %d requests, want 200 after 2", resp.StatusCode, n.Load())
	}
	want := []string{"GET /api/v1/dags/{dag_id}/dagRuns 500", "GET /api/v1/dags/{dag_id}/dagRuns 200"}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Fatalf("observer saw %v, want %v", seen, want)
	}
}

// countingServer answers every request with status and body, and counts
// them. It is closed when the test ends.
func countingServer(t *testing.T, status int, body string) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n.Add(1)
		writeJSON(w, status, body)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestGivesUpAfterBoundedRetries(t *testing.T) {
	srv, n := countingServer(t, 503, `{"detail":"down"}`)
	o := fastOptions()
	o.MaxRetries = 2
	_, err := get(t, mustNew(t, o), srv.URL+"/api/v1/dags/~/dagRuns/~/taskInstances")
	if err == nil {
		t.Fatal("want an error")
	}
	if n.Load() != 3 {
		t.Fatalf("%d requests, want 3 (1 + 2 retries)", n.Load())
	}
	for _, s := range []string{"GET /api/v1/dags/~/dagRuns/~/taskInstances", "giving up after 3 attempt(s)", "last status 503"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q lacks %q", err, s)
		}
	}
	if strings.Contains(err.Error(), "retryablehttp") || strings.Contains(err.Error(), "giving up after 3 attempt(s):") {
		t.Errorf("error %q still carries retryablehttp's wording", err)
	}
}

func TestZeroRetries(t *testing.T) {
	srv, n := countingServer(t, 500, `{}`)
	o := fastOptions()
	o.MaxRetries = 0
	if _, err := get(t, mustNew(t, o), srv.URL+"/api/v2/version"); err == nil || n.Load() != 1 {
		t.Fatalf("err %v after %d requests, want an error after 1", err, n.Load())
	}
}

func TestNoRetryOn4xx(t *testing.T) {
	for _, code := range []int{400, 401, 403, 404, 422} {
		srv, n := countingServer(t, code, `{"detail":"no"}`)
		resp, err := get(t, mustNew(t, fastOptions()), srv.URL+"/api/v2/dags")
		srv.Close()
		if err != nil {
			t.Fatalf("%d: %v", code, err)
		}
		if resp.StatusCode != code || n.Load() != 1 {
			t.Fatalf("%d: got %d after %d requests", code, resp.StatusCode, n.Load())
		}
	}
}

func TestPostIsNotRetried(t *testing.T) {
	srv, n := countingServer(t, 500, `{}`)
	hc := mustNew(t, fastOptions())
	resp, err := hc.Post(srv.URL+"/api/v2/dags/~/dagRuns/~/taskInstances/list", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n.Load() != 1 || resp.StatusCode != 500 {
		t.Fatalf("%d requests, status %d; want 1 and 500", n.Load(), resp.StatusCode)
	}
}

func TestRetryAfter(t *testing.T) {
	past := time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)
	cases := []struct {
		name, header string
		waitMax      time.Duration
		want         func(time.Duration) bool
	}{
		{"zero seconds honoured", "0", time.Second, func(d time.Duration) bool { return d == 0 }},
		{"capped at RetryWaitMax", "7", 3 * time.Millisecond, func(d time.Duration) bool { return d == 3*time.Millisecond }},
		{"date in the past", past, time.Second, func(d time.Duration) bool { return d == 0 }},
		// Without Retry-After the first backoff is jittered in [min/2, min].
		{"absent", "", time.Second, func(d time.Duration) bool { return d >= 500*time.Microsecond && d <= time.Millisecond }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				if n.Add(1) == 1 {
					if tc.header != "" {
						w.Header().Set("Retry-After", tc.header)
					}
					writeJSON(w, 429, `{"detail":"slow down"}`)
					return
				}
				writeJSON(w, 200, `{}`)
			}))
			defer srv.Close()
			var waits []time.Duration
			o := fastOptions()
			o.RetryWaitMin, o.RetryWaitMax = time.Millisecond, tc.waitMax
			o.waitObserver = func(d time.Duration) { waits = append(waits, d) }
			resp, err := get(t, mustNew(t, o), srv.URL+"/api/v1/version")
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("err %v", err)
			}
			if len(waits) != 1 || !tc.want(waits[0]) {
				t.Fatalf("waits %v", waits)
			}
		})
	}
}

func TestContextCancelStopsRetrying(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n.Add(1)
		cancel()
		w.Header().Set("Retry-After", "3600")
		writeJSON(w, 503, `{}`)
	}))
	defer srv.Close()
	o := fastOptions()
	o.RetryWaitMax = time.Hour // a retry would hang the test
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/v2/version", nil)
	_, err := mustNew(t, o).Do(req)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	if n.Load() != 1 {
		t.Fatalf("%d requests", n.Load())
	}
}

func TestPerAttemptTimeoutIsRetried(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			<-r.Context().Done() // hang until the client gives up on this attempt
			return
		}
		writeJSON(w, 200, `{}`)
	}))
	defer srv.Close()
	o := fastOptions()
	o.Timeout = 50 * time.Millisecond
	resp, err := get(t, mustNew(t, o), srv.URL+"/api/v2/version")
	if err != nil || resp.StatusCode != 200 || n.Load() != 2 {
		t.Fatalf("err %v after %d requests", err, n.Load())
	}
}

func TestHTMLAnswerIsAnError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, "<html><form action=/login>Sign in</form></html>")
	}))
	defer srv.Close()
	_, err := get(t, mustNew(t, fastOptions()), srv.URL+"/api/v1/dags/~/dagRuns/~/taskInstances")
	if err == nil {
		t.Fatal("a 200 HTML page must be an error")
	}
	for _, s := range []string{"got text/html", "/api/v1/dags/~/dagRuns/~/taskInstances", "a login page or proxy? check airflow.url and airflow.auth"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q lacks %q", err, s)
		}
	}
}

func TestMissingContentTypeIsAnError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header()["Content-Type"] = nil
		w.WriteHeader(200)
	}))
	defer srv.Close()
	if _, err := get(t, mustNew(t, fastOptions()), srv.URL+"/api/v2/version"); err == nil {
		t.Fatal("want an error")
	}
}

func TestRedirectIsNotFollowed(t *testing.T) {
	var login atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/version", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/login/?next=%2Fapi%2Fv1%2Fversion", http.StatusFound)
	})
	mux.HandleFunc("/login/", func(w http.ResponseWriter, _ *http.Request) {
		login.Add(1)
		writeJSON(w, 200, `{}`)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	_, err := get(t, mustNew(t, fastOptions()), srv.URL+"/api/v1/version")
	if err == nil || !strings.Contains(err.Error(), "redirected (302 Found) to") || !strings.Contains(err.Error(), "/login/") {
		t.Fatalf("err %v", err)
	}
	if strings.Contains(err.Error(), "next=") {
		t.Errorf("the redirect's query leaked into %q", err)
	}
	if login.Load() != 0 {
		t.Fatal("the redirect was followed")
	}
}

func TestStatusErrorsAndNotFound(t *testing.T) {
	cases := []struct {
		name, ct, body string
		status         int
		notFound       bool
		contains       string
	}{
		{"v1 problem from a handler", "application/problem+json", `{"type":"https://airflow.apache.org/docs/apache-airflow/2.10.5/stable-rest-api-ref.html#section/Errors/NotFound","title":"Task instance not found","status":404,"detail":null}`, 404, true, "Task instance not found"},
		{"v1 unknown route", "application/problem+json", `{"type":"about:blank","title":"Not Found","status":404,"detail":"The requested URL was not found on the server."}`, 404, false, "check airflow.url"},
		{"v2 handler", "application/json", `{"detail":"The Task Instance with dag_id: ` + "`d`" + ` was not found"}`, 404, true, "was not found"},
		{"v2 unknown route", "application/json", `{"detail":"Not Found"}`, 404, false, "no such route"},
		{"proxy html", "text/html", `<h1>404</h1>`, 404, false, "with a text/html body"},
		{"gateway json", "application/json", `{"message":"no Route matched"}`, 404, false, "check airflow.url"},
		{"forbidden", "application/json", `{"detail":"Forbidden"}`, 403, false, "Viewer role"},
		{"validation", "application/json", `{"detail":[{"loc":["query","state"],"msg":"Invalid value","input":"SECRET"}]}`, 422, false, "query.state: Invalid value"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "http://airflow/api/v1/dags/d/dagRuns/r/taskInstances/t", nil)
			resp := &http.Response{StatusCode: tc.status, Status: fmt.Sprintf("%d %s", tc.status, http.StatusText(tc.status)), Header: http.Header{"Content-Type": {tc.ct}}, Request: req}
			err := ResponseError(resp, []byte(tc.body))
			if got := errors.Is(err, airflow.ErrNotFound); got != tc.notFound {
				t.Errorf("errors.Is(ErrNotFound) = %v, want %v (%v)", got, tc.notFound, err)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("error %q lacks %q", err, tc.contains)
			}
			if !strings.Contains(err.Error(), "GET /api/v1/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}") {
				t.Errorf("error %q does not name the endpoint", err)
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Errorf("error %q quotes the validation input", err)
			}
		})
	}
}

func TestEndpoint(t *testing.T) {
	cases := map[string]string{
		"http://a/api/v1/dags/~/dagRuns/~/taskInstances?state=running":                      "/api/v1/dags/~/dagRuns/~/taskInstances",
		"http://a/api/v1/dags/d/dagRuns":                                                    "/api/v1/dags/{dag_id}/dagRuns",
		"http://a/prefix/api/v2/dags/d/dagRuns/manual__2026-11-27T06:00:00+00:00":           "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}",
		"http://a/api/v2/dags/d/dagRuns/r%2Fx/taskInstances/t/3":                            "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}",
		"http://a/api/v2/dags/version/dagRuns/dags/taskInstances/list":                      "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/list",
		"http://a/api/v2/dags/~/dagRuns/~/taskInstances/list":                               "/api/v2/dags/~/dagRuns/~/taskInstances/list",
		"http://a/api/v1/dags/d/dagRuns/r/taskInstances/t/xcomEntries/pod_name?map_index=1": "/api/v1/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries/{xcom_key}",
		"http://a/auth/token":                                     "/auth/token",
		"http://a/api/v2/version":                                 "/api/v2/version",
		"http://a/somewhere/else":                                 "/{path}",
		"http://a/api/v1/dags/d/dagRuns/r/taskInstances/t/logs/1": "/api/v1/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/{id}",
		"http://a/api/v2/dags/d/dagRuns/r/taskInstances/t/" + url.PathEscape("odd id") + "/x": "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/{id}",
	}
	for in, want := range cases {
		u, err := url.Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := Endpoint(u); got != want {
			t.Errorf("Endpoint(%s) = %s, want %s", in, got, want)
		}
	}
}

type finalErr struct{ permanent bool }

func (e finalErr) Error() string   { return "base transport failed" }
func (e finalErr) Permanent() bool { return e.permanent }

type countingBase struct {
	n   atomic.Int32
	err error
}

func (c *countingBase) RoundTrip(*http.Request) (*http.Response, error) {
	c.n.Add(1)
	return nil, c.err
}

// A Base transport's error that says it is final (MWAA: access denied) is
// not retried; one that does not is, like any connection error.
func TestBaseTransportPermanentErrorsAreNotRetried(t *testing.T) {
	for _, permanent := range []bool{true, false} {
		base := &countingBase{err: finalErr{permanent}}
		o := fastOptions()
		o.Base = base
		if _, err := get(t, mustNew(t, o), "https://mwaa.invalid/api/v1/version"); err == nil {
			t.Fatal("no error")
		}
		want := int32(1)
		if !permanent {
			want = int32(1 + o.MaxRetries)
		}
		if got := base.n.Load(); got != want {
			t.Errorf("permanent=%v: %d attempts, want %d", permanent, got, want)
		}
	}
}

// A 404 is evidence only about what its words name; every other answer is
// either about this one request (the pod is skipped) or about Airflow as a
// whole (the cycle fails closed).
func TestNotFoundAboutAndRequestScope(t *testing.T) {
	v1 := func(title string) string {
		return `{"type":"https://airflow.apache.org/docs/apache-airflow/2.10.5/stable-rest-api-ref.html#section/Errors/NotFound","title":"` + title + `","status":404,"detail":"x"}`
	}
	v2 := func(detail string) string { return `{"detail":"` + detail + `"}` }
	cases := []struct {
		name, ct, body string
		status         int
		about          airflow.Entity
		scoped         bool
	}{
		{"v1 task instance", "application/problem+json", v1("Task instance not found"), 404, airflow.EntityTaskInstance, true},
		{"v1 run", "application/problem+json", v1("DAGRun not found"), 404, airflow.EntityRun, true},
		{"v1 DAG", "application/problem+json", v1("DAG not found"), 404, airflow.EntityDAG, true},
		{"v1 mapped without index", "application/problem+json", v1("Task instance is mapped, add the map_index value to the URL"), 404, airflow.EntityOther, true},
		{"v1 mapped without index, in the detail", "application/problem+json", `{"type":"https://airflow.apache.org/x","title":"Task instance not found","status":404,"detail":"Task instance is mapped, add the map_index value to the URL"}`, 404, airflow.EntityOther, true},
		{"v2 task instance", "application/json", v2("The Task Instance with dag_id: `d`, run_id: `The DagRun`"), 404, airflow.EntityTaskInstance, true},
		{"v2 mapped task instance", "application/json", v2("The Mapped Task Instance with dag_id: `d`"), 404, airflow.EntityTaskInstance, true},
		{"v2 run", "application/json", v2("The DagRun with dag_id: `d` and run_id: `r` was not found"), 404, airflow.EntityRun, true},
		{"v2 run listing", "application/json", v2("DagRun with run_id: `r` was not found"), 404, airflow.EntityRun, true},
		{"v2 DAG missing from the bag", "application/json", v2("The Dag with ID: `ghost_dag` was not found"), 404, airflow.EntityDAG, true},
		{"v2 DAG, run-like id", "application/json", v2("Dag with id dagrun_task_instance was not found"), 404, airflow.EntityDAG, true},
		{"v2 unknown words", "application/json", v2("Something else was not found"), 404, airflow.EntityOther, true},
		{"route missing", "application/json", v2("Not Found"), 404, "", false},
		{"proxy 404", "text/html", `<h1>404</h1>`, 404, "", false},
		{"airflow 500", "application/json", v2("Internal Server Error"), 500, "", true},
		{"proxy 502", "text/html", `<h1>502</h1>`, 502, "", false},
		{"unauthorized", "application/json", v2("Not authenticated"), 401, "", false},
		{"forbidden", "application/json", v2("Forbidden"), 403, "", false},
		{"validation", "application/json", `{"detail":[{"loc":["path","task_id"],"msg":"bad"}]}`, 422, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "http://airflow/api/v2/dags/d/dagRuns/r/taskInstances/t", nil)
			resp := &http.Response{StatusCode: tc.status, Status: fmt.Sprintf("%d %s", tc.status, http.StatusText(tc.status)), Header: http.Header{"Content-Type": {tc.ct}}, Request: req}
			err := fmt.Errorf("task instance d/r/t: %w", ResponseError(resp, []byte(tc.body)))
			if got := airflow.NotFoundAbout(err); got != tc.about {
				t.Errorf("NotFoundAbout = %q, want %q (%v)", got, tc.about, err)
			}
			if got := airflow.RequestScoped(err); got != tc.scoped {
				t.Errorf("RequestScoped = %v, want %v (%v)", got, tc.scoped, err)
			}
		})
	}
}

func TestSpentRetriesScope(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ct     string
		scoped bool
	}{{"airflow's own 503", "application/json", true}, {"a proxy's 503 page", "text/html", false}} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", tc.ct)
				w.WriteHeader(503)
				fmt.Fprint(w, `{"detail":"down"}`)
			}))
			defer srv.Close()
			o := fastOptions()
			o.MaxRetries = 1
			_, err := get(t, mustNew(t, o), srv.URL+"/api/v2/dags/d/dagRuns/r/taskInstances/t")
			if err == nil || airflow.RequestScoped(err) != tc.scoped {
				t.Fatalf("RequestScoped(%v) = %v, want %v", err, airflow.RequestScoped(err), tc.scoped)
			}
		})
	}
	// Nobody answering: Airflow is unreachable, not one request's problem.
	o := fastOptions()
	o.MaxRetries = 1
	_, err := get(t, mustNew(t, o), "http://127.0.0.1:1/api/v2/dags/d/dagRuns/r/taskInstances/t")
	if err == nil || airflow.RequestScoped(err) {
		t.Fatalf("connection refused: RequestScoped(%v) = true", err)
	}
	if !airflow.RequestScoped(fmt.Errorf("listing: %w", ErrInconsistentListing)) {
		t.Fatal("an inconsistent listing concerns that listing only")
	}
}
