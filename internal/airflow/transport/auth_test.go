package transport

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow/authtype"
)

const (
	testUser     = "reaper"
	testPassword = "s3cr3t-PASSWORD-4711"
	testToken    = "static-TOKEN-0815"
	jwtMarker    = "SIGNATURE-JWT-SECRET"
)

// jwtStore is what the fake Airflow 3 servers share: the JWTs they issued
// and still accept, the statuses to answer the next logins with, and
// counts of logins and API calls.
type jwtStore struct {
	mu          sync.Mutex
	valid       map[string]bool
	loginStatus []int // statuses to answer logins with before the login proper

	logins   atomic.Int32 // login attempts
	apiCalls atomic.Int32
}

// nextLoginStatus takes the status to answer this login with, if any.
// The caller holds mu.
func (s *jwtStore) nextLoginStatus() (int, bool) {
	if len(s.loginStatus) == 0 {
		return 0, false
	}
	st := s.loginStatus[0]
	s.loginStatus = s.loginStatus[1:]
	return st, true
}

// issue answers a login with a new JWT (201), valid until revokeAll. The
// caller holds mu.
func (s *jwtStore) issue(w http.ResponseWriter, iat time.Time, life time.Duration, n int) {
	tok := makeJWT(iat, life, n)
	s.valid[tok] = true
	writeJSON(w, 201, fmt.Sprintf(`{"access_token":%q}`, tok))
}

func (s *jwtStore) revokeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.valid = map[string]bool{}
}

// fakeAirflow3 is an Airflow 3 API server with the simple auth manager's
// POST /auth/token: it issues JWTs and accepts only tokens it still
// considers valid.
type fakeAirflow3 struct {
	jwtStore
	rejectAll bool          // every API call gets 401, as with a jwt_secret mismatch
	forbidBad bool          // an unknown token gets Airflow 3's 403 "Invalid JWT token"
	forbidAll bool          // every call gets a 403 for a missing permission
	lifetime  time.Duration // exp - iat of issued tokens
	clock     func() time.Time

	api401 atomic.Int32
}

func newFakeAirflow3(t *testing.T) (*fakeAirflow3, *httptest.Server) {
	f := &fakeAirflow3{jwtStore: jwtStore{valid: map[string]bool{}}, lifetime: 24 * time.Hour, clock: time.Now}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /auth/token", f.login)
	mux.HandleFunc("/api/v2/", f.api)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeAirflow3) login(w http.ResponseWriter, r *http.Request) {
	n := f.logins.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if st, ok := f.nextLoginStatus(); ok {
		// Echo the credentials like a careless proxy or FastAPI's 422 would.
		writeJSON(w, st, fmt.Sprintf(`{"detail":[{"loc":["body"],"msg":"rejected","input":{"username":%q,"password":%q}}]}`, testUser, testPassword))
		return
	}
	var body struct{ Username, Password string }
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || r.Header.Get("Content-Type") != "application/json" {
		writeJSON(w, 422, `{"detail":"bad body"}`)
		return
	}
	if body.Username != testUser || body.Password != testPassword {
		writeJSON(w, 401, fmt.Sprintf(`{"detail":"Invalid credentials","input":%q}`, body.Password))
		return
	}
	f.issue(w, f.clock(), f.lifetime, int(n))
}

func (f *fakeAirflow3) api(w http.ResponseWriter, r *http.Request) {
	f.apiCalls.Add(1)
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	f.mu.Lock()
	ok := f.valid[tok] && !f.rejectAll
	forbidBad, forbidAll := f.forbidBad, f.forbidAll
	f.mu.Unlock()
	if forbidAll {
		writeJSON(w, 403, `{"detail":"Forbidden"}`)
		return
	}
	if !ok && forbidBad {
		f.api401.Add(1)
		writeJSON(w, 403, `{"detail":"Invalid JWT token"}`)
		return
	}
	if !ok {
		f.api401.Add(1)
		writeJSON(w, 401, `{"detail":"Could not validate credentials"}`)
		return
	}
	writeJSON(w, 200, `{"version":"3.2.1","git_version":null}`)
}

func makeJWT(iat time.Time, life time.Duration, n int) string {
	enc := base64.RawURLEncoding.EncodeToString
	header := enc([]byte(`{"alg":"HS512","typ":"JWT"}`))
	payload := enc(fmt.Appendf(nil, `{"sub":"1","iat":%d,"nbf":%d,"exp":%d,"jti":"%d"}`, iat.Unix(), iat.Unix(), iat.Add(life).Unix(), n))
	return header + "." + payload + "." + enc([]byte(fmt.Sprintf("%s-%d", jwtMarker, n)))
}

func jwtOptions(baseURL string) Options {
	return authOptions(Auth{Type: authtype.AirflowJWT, Username: testUser, Password: testPassword, BaseURL: baseURL})
}

func TestJWTLogsInOnceForConcurrentRequests(t *testing.T) {
	f, srv := newFakeAirflow3(t)
	var loginsSeen atomic.Int32
	o := jwtOptions(srv.URL)
	o.Observer = func(ep, method string, status int, _ time.Duration) {
		if ep == "/auth/token" && method == http.MethodPost && status == 201 {
			loginsSeen.Add(1)
		}
	}
	hc := mustNew(t, o)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v2/version", nil)
			resp, err := hc.Do(req)
			if err != nil {
				errs <- err
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				errs <- fmt.Errorf("status %d", resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if f.logins.Load() != 1 || loginsSeen.Load() != 1 {
		t.Fatalf("%d logins (%d observed), want 1", f.logins.Load(), loginsSeen.Load())
	}
}

func TestJWTRelogsInOnceOn401(t *testing.T) {
	f, srv := newFakeAirflow3(t)
	hc := mustNew(t, jwtOptions(srv.URL))
	if resp, err := get(t, hc, srv.URL+"/api/v2/version"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("first call: %v", err)
	}
	f.revokeAll() // e.g. the API server restarted with another secret
	if resp, err := get(t, hc, srv.URL+"/api/v2/version"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("second call: %v", err)
	}
	if f.logins.Load() != 2 || f.apiCalls.Load() != 3 || f.api401.Load() != 1 {
		t.Fatalf("logins %d, api calls %d, 401s %d; want 2, 3, 1", f.logins.Load(), f.apiCalls.Load(), f.api401.Load())
	}
}

// Airflow 3 answers 403 "Invalid JWT token" for a token signed with another
// secret (an API server restarted with a new jwt_secret): log in again.
func TestJWTRelogsInOnInvalidTokenForbidden(t *testing.T) {
	f, srv := newFakeAirflow3(t)
	f.forbidBad = true
	hc := mustNew(t, jwtOptions(srv.URL))
	if resp, err := get(t, hc, srv.URL+"/api/v2/version"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("first call: %v", err)
	}
	f.revokeAll()
	if resp, err := get(t, hc, srv.URL+"/api/v2/version"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("second call: %v", err)
	}
	if f.logins.Load() != 2 {
		t.Fatalf("logins %d, want 2", f.logins.Load())
	}
}

// A 403 for a missing permission is not a token problem: no second login.
func TestJWTPermission403IsNotARelogin(t *testing.T) {
	f, srv := newFakeAirflow3(t)
	f.forbidAll = true
	hc := mustNew(t, jwtOptions(srv.URL))
	resp, err := get(t, hc, srv.URL+"/api/v2/version")
	if err == nil && resp.StatusCode != 403 {
		t.Fatalf("want the 403, got %v", resp.StatusCode)
	}
	if f.logins.Load() != 1 {
		t.Fatalf("logins %d, want 1", f.logins.Load())
	}
}

func TestJWTConcurrent401sCauseOneRelogin(t *testing.T) {
	f, srv := newFakeAirflow3(t)
	hc := mustNew(t, jwtOptions(srv.URL))
	if _, err := get(t, hc, srv.URL+"/api/v2/version"); err != nil {
		t.Fatal(err)
	}
	f.revokeAll()
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := hc.Get(srv.URL + "/api/v2/version")
			if err != nil || resp.StatusCode != 200 {
				failed.Add(1)
				return
			}
			resp.Body.Close()
		}()
	}
	wg.Wait()
	if failed.Load() != 0 || f.logins.Load() != 2 {
		t.Fatalf("%d failed, %d logins; want 0 and 2", failed.Load(), f.logins.Load())
	}
}

func TestJWTPersistent401FailsAfterOneRelogin(t *testing.T) {
	f, srv := newFakeAirflow3(t)
	f.rejectAll = true
	o := jwtOptions(srv.URL)
	o.MaxRetries = 3
	_, err := get(t, mustNew(t, o), srv.URL+"/api/v2/dags/~/dagRuns/~/taskInstances")
	if err == nil {
		t.Fatal("want an error")
	}
	if f.logins.Load() != 2 || f.apiCalls.Load() != 2 {
		t.Fatalf("logins %d, api calls %d; want exactly 2 and 2 (one re-login, no retries)", f.logins.Load(), f.apiCalls.Load())
	}
	for _, s := range []string{"401", "/api/v2/dags/~/dagRuns/~/taskInstances", "jwt_secret"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q lacks %q", err, s)
		}
	}
}

func TestJWTRenewsShortlyBeforeExpiry(t *testing.T) {
	f, srv := newFakeAirflow3(t)
	var mu sync.Mutex
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	f.clock, f.lifetime = clock, 1000*time.Second
	o := jwtOptions(srv.URL)
	o.now = clock
	hc := mustNew(t, o)
	call := func() {
		t.Helper()
		if resp, err := get(t, hc, srv.URL+"/api/v2/version"); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%v", err)
		}
	}
	call()
	mu.Lock()
	now = now.Add(850 * time.Second) // before exp - lifetime/10
	mu.Unlock()
	call()
	if f.logins.Load() != 1 {
		t.Fatalf("%d logins before the renewal point", f.logins.Load())
	}
	mu.Lock()
	now = now.Add(60 * time.Second) // 910 s: inside the last tenth
	mu.Unlock()
	call()
	if f.logins.Load() != 2 || f.api401.Load() != 0 {
		t.Fatalf("logins %d, 401s %d; want a renewal without a 401", f.logins.Load(), f.api401.Load())
	}
}

func TestJWTLoginRejectedIsNotRetried(t *testing.T) {
	f, srv := newFakeAirflow3(t)
	o := jwtOptions(srv.URL)
	o.Auth.Password = "wrong-" + testPassword
	_, err := get(t, mustNew(t, o), srv.URL+"/api/v2/version")
	if err == nil || !strings.Contains(err.Error(), "check airflow.auth.username and airflow.auth.password") {
		t.Fatalf("err %v", err)
	}
	if f.logins.Load() != 1 || f.apiCalls.Load() != 0 {
		t.Fatalf("logins %d, api calls %d; want 1 and 0", f.logins.Load(), f.apiCalls.Load())
	}
}

func TestJWTLoginServerErrorIsRetried(t *testing.T) {
	f, srv := newFakeAirflow3(t)
	f.loginStatus = []int{503}
	resp, err := get(t, mustNew(t, jwtOptions(srv.URL)), srv.URL+"/api/v2/version")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("err %v", err)
	}
	if f.logins.Load() != 2 {
		t.Fatalf("%d login attempts, want 2", f.logins.Load())
	}
}

func TestJWTLoginPageIsAnError(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/auth/token", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(200)
		fmt.Fprint(w, "<html>sign in</html>")
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	_, err := get(t, mustNew(t, jwtOptions(srv.URL)), srv.URL+"/api/v2/version")
	if err == nil || !strings.Contains(err.Error(), "a login page or proxy? check airflow.url and airflow.auth") {
		t.Fatalf("err %v", err)
	}
}

func TestJWTNeedsBaseURL(t *testing.T) {
	o := jwtOptions("")
	if _, err := New(o); err == nil {
		t.Fatal("want an error")
	}
}

func TestBasicAuth(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != testUser || p != testPassword {
			writeJSON(w, 401, `{"type":"about:blank","title":"Unauthorized","status":401}`)
			return
		}
		writeJSON(w, 200, `{}`)
	}))
	defer srv.Close()
	o := authOptions(Auth{Type: authtype.Basic, Username: testUser, Password: testPassword})
	if resp, err := get(t, mustNew(t, o), srv.URL+"/api/v1/version"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("err %v", err)
	}
}

func bearerServer(t *testing.T, seen *[]string, mu *sync.Mutex) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		*seen = append(*seen, r.Header.Get("Authorization"))
		mu.Unlock()
		writeJSON(w, 200, `{}`)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestBearerStaticToken(t *testing.T) {
	var seen []string
	var mu sync.Mutex
	srv := bearerServer(t, &seen, &mu)
	o := authOptions(Auth{Type: authtype.Bearer, Token: testToken})
	if _, err := get(t, mustNew(t, o), srv.URL+"/api/v2/version"); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen[0] != "Bearer "+testToken {
		t.Fatalf("saw %q", seen)
	}
}

func TestBearerTokenFileRotation(t *testing.T) {
	var seen []string
	var mu sync.Mutex
	srv := bearerServer(t, &seen, &mu)
	path := filepath.Join(t.TempDir(), "token")
	write := func(s string, mtime time.Time) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now().Add(-time.Hour)
	write("  token-one\n", t0)
	o := authOptions(Auth{Type: authtype.Bearer, TokenFile: path})
	hc := mustNew(t, o)
	call := func() {
		t.Helper()
		if _, err := get(t, hc, srv.URL+"/api/v2/version"); err != nil {
			t.Fatal(err)
		}
	}
	call()
	write("token-TWO\n", t0.Add(time.Second)) // same size, new mtime, as a Secret rotation
	call()
	write("token-three-longer", t0.Add(time.Second)) // same mtime, new size
	call()
	want := []string{"Bearer token-one", "Bearer token-TWO", "Bearer token-three-longer"}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Fatalf("saw %q, want %q", seen, want)
	}
	write(" \n", t0.Add(2*time.Second))
	if _, err := get(t, hc, srv.URL+"/api/v2/version"); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Fatalf("an empty token file must be an error, got %v", err)
	}
	if len(seen) != 3 {
		t.Fatal("a request went out without a token")
	}
}

func TestBearerTokenFileMissing(t *testing.T) {
	o := authOptions(Auth{Type: authtype.Bearer, TokenFile: filepath.Join(t.TempDir(), "absent")})
	if _, err := New(o); err == nil || !strings.Contains(err.Error(), "airflow.auth.tokenFile") {
		t.Fatalf("err %v", err)
	}
}

// TestSecretsNeverLeak drives every failing auth path and checks that no
// credential appears in any error (in every formatting) or any log line.
func TestSecretsNeverLeak(t *testing.T) {
	basic := base64.StdEncoding.EncodeToString([]byte(testUser + ":" + testPassword))
	secrets := []string{testPassword, testToken, jwtMarker, basic,
		base64.RawURLEncoding.EncodeToString([]byte(jwtMarker))[:12]}

	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, &slog.HandlerOptions{Level: slog.LevelDebug}))

	// echo answers 401 with the request's credentials in the body, as a
	// badly written proxy might.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 401, fmt.Sprintf(`{"type":"about:blank","title":"Unauthorized","status":401,"instance":%q}`, r.Header.Get("Authorization")))
	}))
	defer echo.Close()

	var errs []error
	run := func(o Options, url string) {
		o.Logger = logger
		hc, err := New(o)
		if err != nil {
			errs = append(errs, err)
			return
		}
		resp, err := get(t, hc, url)
		if err == nil {
			err = ResponseError(resp, nil)
		}
		errs = append(errs, err)
	}

	// airflow-jwt: rejected login, login answers echoing the password, a
	// server error on login, and a token the API keeps rejecting.
	f, srv := newFakeAirflow3(t)
	bad := jwtOptions(srv.URL)
	bad.Auth.Password = testPassword + "-wrong"
	run(bad, srv.URL+"/api/v2/version")
	f.mu.Lock()
	f.loginStatus = []int{422}
	f.mu.Unlock()
	run(jwtOptions(srv.URL), srv.URL+"/api/v2/version")
	f.mu.Lock()
	f.loginStatus = []int{500, 500, 500, 500}
	f.mu.Unlock()
	run(jwtOptions(srv.URL), srv.URL+"/api/v2/version")
	f.mu.Lock()
	f.loginStatus = nil
	f.rejectAll = true
	f.mu.Unlock()
	run(jwtOptions(srv.URL), srv.URL+"/api/v2/version")

	// basic and bearer against a server that echoes the Authorization header.
	o := authOptions(Auth{Type: authtype.Basic, Username: testUser, Password: testPassword})
	run(o, echo.URL+"/api/v1/version")
	o.Auth = Auth{Type: authtype.Bearer, Token: testToken}
	run(o, echo.URL+"/api/v2/version")
	o.Auth = Auth{Type: authtype.Bearer, Token: testToken}
	run(o, "http://127.0.0.1:1/api/v2/version") // connection refused
	o.Auth = Auth{Type: "kerberos", Password: testPassword, Token: testToken}
	run(o, echo.URL)

	if len(errs) != 8 {
		t.Fatalf("%d errors", len(errs))
	}
	for i, err := range errs {
		if err == nil {
			t.Fatalf("case %d: no error", i)
		}
		t.Logf("case %d: %v", i, err)
		for _, format := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
			s := fmt.Sprintf(format, err)
			for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(u) {
				s += fmt.Sprintf(format, u)
			}
			for _, secret := range secrets {
				if strings.Contains(s, secret) {
					t.Errorf("case %d: %s of the error contains a secret: %s", i, format, s)
				}
			}
		}
	}
	logMu.Lock()
	defer logMu.Unlock()
	if logs.Len() == 0 {
		t.Fatal("no debug logs were written; the test would prove nothing")
	}
	for _, secret := range secrets {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the logs contain a secret:\n%s", logs.String())
		}
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestJWTTimes(t *testing.T) {
	iat := time.Unix(1_800_000_000, 0)
	exp, gotIat, ok := jwtTimes(makeJWT(iat, time.Hour, 1))
	if !ok || !exp.Equal(iat.Add(time.Hour)) || !gotIat.Equal(iat) {
		t.Fatalf("exp %v iat %v ok %v", exp, gotIat, ok)
	}
	for _, tok := range []string{"opaque", "a.b.c", "a." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"x"}`)) + ".c"} {
		if _, _, ok := jwtTimes(tok); ok {
			t.Errorf("%q parsed", tok)
		}
	}
}
