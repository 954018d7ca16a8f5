package mwaa

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
	"github.com/kpo-reaper/kpo-reaper/internal/airflow/connect"
	"github.com/kpo-reaper/kpo-reaper/internal/airflow/transport"
)

// Test credentials. The secret and the token are long, distinctive
// strings, so that finding them in an error string cannot be chance.
const (
	testKeyID  = "AKIDKPOREAPERTEST01"
	testSecret = "kpoReaperTestSecretKey/DoNotLeak+0123456789abcdef"
	testToken  = "kpoReaperTestSessionToken/DoNotLeak+fedcba9876543210"
	testEnv    = "my-env"
	testRegion = "eu-west-1"
)

// awsEnv makes the default credential chain find static credentials in
// the environment and nothing else: no shared files, no IMDS, no
// container endpoint, no endpoint override, one attempt per call unless
// the test asks for more.
func awsEnv(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID":                      testKeyID,
		"AWS_SECRET_ACCESS_KEY":                  testSecret,
		"AWS_SESSION_TOKEN":                      testToken,
		"AWS_EC2_METADATA_DISABLED":              "true",
		"AWS_CONFIG_FILE":                        filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE":            filepath.Join(dir, "credentials"),
		"AWS_PROFILE":                            "",
		"AWS_REGION":                             "",
		"AWS_DEFAULT_REGION":                     "",
		"AWS_ROLE_ARN":                           "",
		"AWS_WEB_IDENTITY_TOKEN_FILE":            "",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI":     "",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "",
		"AWS_ENDPOINT_URL":                       "",
		"AWS_ENDPOINT_URL_MWAA":                  "",
		"AWS_MAX_ATTEMPTS":                       "1",
	} {
		t.Setenv(k, v)
	}
}

// invocation is one InvokeRestApi call as the stand-in received it.
type invocation struct {
	Host          string
	URLPath       string
	Authorization string
	Token         string // X-Amz-Security-Token
	Input         struct {
		Method          string
		Path            string
		QueryParameters json.RawMessage
		Body            json.RawMessage
	}
}

// standIn is MWAA's InvokeRestApi endpoint as far as this package needs
// it: answer decides what it says to each call.
type standIn struct {
	srv    *httptest.Server
	mu     sync.Mutex
	calls  []invocation
	answer func(invocation) (status int, errType string, body string)
}

func newStandIn(t *testing.T, answer func(invocation) (int, string, string)) *standIn {
	t.Helper()
	s := &standIn{answer: answer}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inv := invocation{Host: r.Host, URLPath: r.URL.Path, Authorization: r.Header.Get("Authorization"), Token: r.Header.Get("X-Amz-Security-Token")}
		b, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || json.Unmarshal(b, &inv.Input) != nil {
			w.Header().Set("X-Amzn-ErrorType", "ValidationException")
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"message":"not an InvokeRestApi call"}`)
			return
		}
		s.mu.Lock()
		s.calls = append(s.calls, inv)
		s.mu.Unlock()
		status, errType, body := s.answer(inv)
		w.Header().Set("Content-Type", "application/json")
		if errType != "" {
			w.Header().Set("X-Amzn-ErrorType", errType)
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *standIn) invocations() []invocation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]invocation(nil), s.calls...)
}

// airflowAnswer is a successful InvokeRestApi answer carrying Airflow's 200
// with body.
func airflowAnswer(body string) (int, string, string) {
	return http.StatusOK, "", `{"RestApiStatusCode":200,"RestApiResponse":` + body + `}`
}

// airflowError is Airflow's 4xx (RestApiClientException) or 5xx
// (RestApiServerException) as MWAA reports it: an AWS error whose fields
// carry Airflow's status and body. The outer HTTP status 400 is the
// model's for both exceptions.
func airflowError(status int, body string) (int, string, string) {
	typ := "RestApiClientException"
	if status >= 500 {
		typ = "RestApiServerException"
	}
	return http.StatusBadRequest, typ, `{"RestApiStatusCode":` + itoa(status) + `,"RestApiResponse":` + body + `}`
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func newRT(t *testing.T, s *standIn) http.RoundTripper {
	t.Helper()
	rt, err := NewTransport(context.Background(), Options{Environment: testEnv, Region: testRegion, Endpoint: s.srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

func roundTrip(t *testing.T, rt http.RoundTripper, method, path, body string) (*http.Response, error) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, BaseURL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		noSecrets(t, err.Error())
		return nil, err
	}
	if resp.Request != req {
		t.Errorf("response.Request is not the request sent")
	}
	return resp, nil
}

// noSecrets fails the test if s carries a credential or a signature.
func noSecrets(t *testing.T, s string) {
	t.Helper()
	for _, secret := range []string{testSecret, testToken, "AWS4-HMAC-SHA256", "Signature="} {
		if strings.Contains(s, secret) {
			t.Errorf("%q appears in %q", secret, s)
		}
	}
}

// sameJSON compares JSON values, object key order aside; numbers are
// compared as written, so a big integer that lost digits on the way
// differs.
func sameJSON(t *testing.T, what string, got []byte, want string) {
	t.Helper()
	norm := func(b []byte) ([]byte, error) {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		return json.Marshal(v)
	}
	g, err := norm(got)
	if err != nil {
		t.Errorf("%s: %s is not JSON: %v", what, got, err)
		return
	}
	w, err := norm([]byte(want))
	if err != nil {
		t.Fatalf("%s: the wanted %s is not JSON: %v", what, want, err)
	}
	if !bytes.Equal(g, w) {
		t.Errorf("%s: got %s, want %s", what, got, want)
	}
}

func TestTranslatesRequests(t *testing.T) {
	awsEnv(t)
	s := newStandIn(t, func(invocation) (int, string, string) { return airflowAnswer(`{}`) })
	rt := newRT(t, s)
	cases := []struct {
		name, method, path, body string
		wantPath, wantQuery      string // wantQuery "" means absent
		wantBody                 string
	}{
		{name: "v1 listing, repeated state", method: "GET",
			path:     "/api/v1/dags/~/dagRuns/~/taskInstances?state=running&state=queued&limit=25&offset=0",
			wantPath: "/dags/~/dagRuns/~/taskInstances", wantQuery: `{"state":["running","queued"],"limit":"25","offset":"0"}`},
		{name: "v2 lookup, run id with an escaped plus", method: "GET",
			path:     "/api/v2/dags/kpo_dag/dagRuns/manual__2026-11-27T06:00:00%2B00:00/taskInstances/t1/3",
			wantPath: "/dags/kpo_dag/dagRuns/manual__2026-11-27T06:00:00+00:00/taskInstances/t1/3"},
		{name: "version", method: "GET", path: "/api/v2/version", wantPath: "/version"},
		{name: "v1 batch POST, numbers kept exact", method: "POST",
			path: "/api/v1/dags/~/dagRuns/~/taskInstances/list", body: `{"dag_ids":["a","b"],"page_limit":25,"page_offset":12345678901234567890}`,
			wantPath: "/dags/~/dagRuns/~/taskInstances/list", wantBody: `{"dag_ids":["a","b"],"page_limit":25,"page_offset":12345678901234567890}`},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, err := roundTrip(t, rt, c.method, c.path, c.body)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			calls := s.invocations()
			if len(calls) != i+1 {
				t.Fatalf("%d calls reached the stand-in, want %d", len(calls), i+1)
			}
			inv := calls[i]
			if inv.URLPath != "/restapi/"+testEnv {
				t.Errorf("URL path %q, want /restapi/%s", inv.URLPath, testEnv)
			}
			// The modelled "env." host prefix must be off with an endpoint
			// override, or the SDK would have dialled env.127.0.0.1.
			if want := strings.TrimPrefix(s.srv.URL, "http://"); inv.Host != want {
				t.Errorf("Host %q, want %q", inv.Host, want)
			}
			wantCred := "AWS4-HMAC-SHA256 Credential=" + testKeyID + "/"
			if !strings.HasPrefix(inv.Authorization, wantCred) || !strings.Contains(inv.Authorization, "/"+testRegion+"/airflow/aws4_request") {
				t.Errorf("Authorization %q is not SigV4 for airflow in %s with the test key", inv.Authorization, testRegion)
			}
			if inv.Token != testToken {
				t.Errorf("X-Amz-Security-Token is not the session token")
			}
			if inv.Input.Method != c.method || inv.Input.Path != c.wantPath {
				t.Errorf("Method %q Path %q, want %q %q", inv.Input.Method, inv.Input.Path, c.method, c.wantPath)
			}
			if c.wantQuery == "" {
				if inv.Input.QueryParameters != nil {
					t.Errorf("QueryParameters %s, want none", inv.Input.QueryParameters)
				}
			} else {
				sameJSON(t, "QueryParameters", inv.Input.QueryParameters, c.wantQuery)
			}
			if c.wantBody == "" {
				if inv.Input.Body != nil {
					t.Errorf("Body %s, want none", inv.Input.Body)
				}
			} else if string(inv.Input.Body) != c.wantBody {
				// Compared as text: a number must not become a string or
				// lose digits on the way.
				t.Errorf("Body %s, want %s", inv.Input.Body, c.wantBody)
			}
		})
	}
}

func TestRefusesWhatItCannotTranslate(t *testing.T) {
	awsEnv(t)
	s := newStandIn(t, func(invocation) (int, string, string) { return airflowAnswer(`{}`) })
	rt := newRT(t, s)
	for _, c := range []struct{ name, method, path, body string }{
		{"not the REST API", "GET", "/auth/token", ""},
		{"HEAD", "HEAD", "/api/v1/version", ""},
		{"slash inside an id", "GET", "/api/v1/dags/d/dagRuns/a%2Fb/taskInstances", ""},
		{"percent inside an id", "GET", "/api/v1/dags/d/dagRuns/a%2541/taskInstances", ""},
		{"body not JSON", "POST", "/api/v1/dags/~/dagRuns/~/taskInstances/list", "dag_ids=a"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, err := roundTrip(t, rt, c.method, c.path, c.body)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("got %s, want an error", resp.Status)
			}
			var e *Error
			if !errors.As(err, &e) || !e.Permanent() {
				t.Errorf("%v: want a permanent *Error", err)
			}
		})
	}
	if n := len(s.invocations()); n != 0 {
		t.Errorf("%d calls reached MWAA, want none", n)
	}
}

func TestAirflowAnswersBecomeResponses(t *testing.T) {
	awsEnv(t)
	const (
		v1Missing    = `{"detail":"DAGRun with DAG ID: 'd' and DagRun ID: 'r' not found","status":404,"title":"DAGRun not found","type":"https://airflow.apache.org/docs/apache-airflow/2.10.5/stable-rest-api-ref.html#section/Errors/NotFound"}`
		v2Missing    = `{"detail":"The DagRun with dag_id: ` + "`d`" + ` and run_id: ` + "`r`" + ` was not found"}`
		unauthorized = `{"detail":null,"status":401,"title":"Unauthorized","type":"https://airflow.apache.org/docs/apache-airflow/2.10.5/stable-rest-api-ref.html#section/Errors/Unauthenticated"}`
		forbidden    = `{"detail":"Forbidden"}`
		serverError  = `{"detail":"Internal Server Error"}`
		listing      = `{"task_instances":[{"task_id":"t","try_number":1,"state":"running","big":12345678901234567890}],"total_entries":1}`
	)
	for _, c := range []struct {
		name       string
		answer     func() (int, string, string)
		status     int
		body       string
		definitive bool // errors.Is(ResponseError, airflow.ErrNotFound)
	}{
		{"200", func() (int, string, string) { return airflowAnswer(listing) }, 200, listing, false},
		{"Airflow 2 404 stays definitive", func() (int, string, string) { return airflowError(404, v1Missing) }, 404, v1Missing, true},
		{"Airflow 3 404 stays definitive", func() (int, string, string) { return airflowError(404, v2Missing) }, 404, v2Missing, true},
		{"401", func() (int, string, string) { return airflowError(401, unauthorized) }, 401, unauthorized, false},
		{"403", func() (int, string, string) { return airflowError(403, forbidden) }, 403, forbidden, false},
		{"500 from Airflow", func() (int, string, string) { return airflowError(500, serverError) }, 500, serverError, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newStandIn(t, func(invocation) (int, string, string) { return c.answer() })
			resp, err := roundTrip(t, newRT(t, s), "GET", "/api/v1/dags/d/dagRuns/r/taskInstances", "")
			if err != nil {
				t.Fatalf("got error %v, want Airflow's %d as a response", err, c.status)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != c.status || resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("got %s %q, want %d application/json", resp.Status, resp.Header.Get("Content-Type"), c.status)
			}
			// Airflow's answer survives the trip, big numbers included
			// (the SDK re-encodes it, so key order may differ).
			sameJSON(t, "body", body, c.body)
			if c.status >= 300 {
				rerr := transport.ResponseError(resp, body)
				if got := errors.Is(rerr, airflow.ErrNotFound); got != c.definitive {
					t.Errorf("%v: errors.Is(ErrNotFound) = %t, want %t", rerr, got, c.definitive)
				}
			}
		})
	}
}

func TestAWSFailuresAreErrorsNotResponses(t *testing.T) {
	for _, c := range []struct {
		name      string
		status    int
		errType   string
		message   string
		attempts  string
		want      []string
		permanent bool
	}{
		{"access denied", 403, "AccessDeniedException", "User: arn:aws:sts::123456789012:assumed-role/reaper/x is not authorized to perform: airflow:InvokeRestApi", "1",
			[]string{"airflow:InvokeRestApi", "arn:aws:airflow:" + testRegion + ":<account>:role/" + testEnv + "/Viewer", "not authorized"}, true},
		{"environment not found", 404, "ResourceNotFoundException", "Environment my-env not found", "1",
			[]string{"no such environment", "airflow.mwaa.environment", "airflow.mwaa.region", `"my-env"`}, true},
		{"environment too old", 400, "ValidationException", "Update your environment to use InvokeRestApi.", "1",
			[]string{"too old", "update it"}, true},
		{"throttled after the SDK's retries", 400, "ThrottlingException", "Rate exceeded", "2",
			[]string{"throttled", "reaper.interval"}, false},
		{"MWAA internal error", 500, "InternalServerException", "oops", "1",
			[]string{"InternalServerException", "transient"}, false},
		{"rejected credentials echoing them", 403, "UnrecognizedClientException",
			"The security token included in the request is invalid. x-amz-security-token:" + testToken + " secret " + testSecret, "1",
			[]string{"rejected the credentials", "[redacted]"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			awsEnv(t)
			t.Setenv("AWS_MAX_ATTEMPTS", c.attempts)
			s := newStandIn(t, func(invocation) (int, string, string) {
				b, _ := json.Marshal(map[string]string{"message": c.message})
				return c.status, c.errType, string(b)
			})
			resp, err := roundTrip(t, newRT(t, s), "GET", "/api/v1/dags/d/dagRuns/r/taskInstances", "")
			if err == nil {
				resp.Body.Close()
				t.Fatalf("got a %s response, want an error: an AWS failure must never look like Airflow's answer", resp.Status)
			}
			t.Log(err)
			if errors.Is(err, airflow.ErrNotFound) {
				t.Errorf("%v matches airflow.ErrNotFound", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			var e *Error
			if !errors.As(err, &e) || e.Code != c.errType || e.Permanent() != c.permanent {
				t.Errorf("%#v: want *Error code %s, permanent %t", err, c.errType, c.permanent)
			}
			if got := len(s.invocations()); itoa(got) != c.attempts {
				t.Errorf("MWAA saw %d attempts, want %s", got, c.attempts)
			}
		})
	}
}

func TestNoCredentialsIsAnErrorAndNothingIsSent(t *testing.T) {
	awsEnv(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("AWS_SESSION_TOKEN", "")
	s := newStandIn(t, func(invocation) (int, string, string) { return airflowAnswer(`{}`) })
	_, err := roundTrip(t, newRT(t, s), "GET", "/api/v1/version", "")
	if err == nil {
		t.Fatal("no error without credentials")
	}
	t.Log(err)
	var e *Error
	if !errors.As(err, &e) || !e.Permanent() || !strings.Contains(err.Error(), "no AWS credentials") {
		t.Errorf("%v: want a permanent error saying there are no AWS credentials", err)
	}
	if n := len(s.invocations()); n != 0 {
		t.Errorf("%d unsigned calls reached MWAA", n)
	}
}

func TestTimeoutIsAnError(t *testing.T) {
	awsEnv(t)
	release := make(chan struct{})
	s := newStandIn(t, func(invocation) (int, string, string) {
		<-release // never answers while the client waits
		return airflowAnswer(`{}`)
	})
	// Registered after the stand-in's Close, so it runs first (cleanups
	// run last-in first-out) and Close need not wait for the handler.
	t.Cleanup(func() { close(release) })
	rt := newRT(t, s)
	// The caller's deadline (airflow.timeout) ends the call; what matters
	// is the kind of outcome, not how long it took.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, BaseURL+"/api/v1/version", nil)
	resp, err := rt.RoundTrip(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got %s, want a timeout error", resp.Status)
	}
	var e *Error
	if !errors.As(err, &e) || e.Code != "Timeout" || e.Permanent() {
		t.Errorf("%v: want a retryable Timeout error", err)
	}
	noSecrets(t, err.Error())
}

// The transport drops /api/vN, so /api/v2/version reaches an Airflow 2
// environment too; connect must then settle on v1 from the version.
func TestConnectPicksV1ForAnAirflow2Environment(t *testing.T) {
	awsEnv(t)
	s := newStandIn(t, func(inv invocation) (int, string, string) {
		if inv.Input.Path == "/version" {
			return airflowAnswer(`{"version":"2.10.5","git_version":null}`)
		}
		return airflowError(404, `{"detail":null,"status":404,"title":"Not Found","type":"about:blank"}`)
	})
	hc, err := transport.New(transport.Options{Timeout: 5 * time.Second, Base: newRT(t, s)})
	if err != nil {
		t.Fatal(err)
	}
	c, ver, err := connect.Connect(context.Background(), connect.Options{BaseURL: BaseURL, Shown: "mwaa:" + testRegion + "/" + testEnv, HTTPClient: hc, PageSize: PageSize})
	if err != nil {
		t.Fatal(err)
	}
	if ver != "2.10.5" || c.APIVersion() != "v1" {
		t.Errorf("connected to %s over %s, want 2.10.5 over v1", ver, c.APIVersion())
	}
}
