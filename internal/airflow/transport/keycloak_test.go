package transport

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow/authtype"
)

const (
	testClientID     = "kpo-reaper-client"
	testClientSecret = "kc-CLIENT-secret-9f3e"
)

// fakeKeycloakAirflow is Airflow 3 with the Keycloak auth manager: POST
// /auth/token takes the client_credentials body of
// apache-airflow-providers-keycloak (TokenClientCredentialsBody, a strict
// model: other fields are a 422) and answers 201 with an Airflow JWT.
type fakeKeycloakAirflow struct {
	jwtStore
	t *testing.T
}

func newFakeKeycloakAirflow(t *testing.T) (*fakeKeycloakAirflow, *httptest.Server) {
	f := &fakeKeycloakAirflow{jwtStore: jwtStore{valid: map[string]bool{}}, t: t}
	mux := http.NewServeMux()
	mux.HandleFunc("/auth/token", f.login)
	mux.HandleFunc("/api/v2/", func(w http.ResponseWriter, r *http.Request) {
		f.apiCalls.Add(1)
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		f.mu.Lock()
		ok := f.valid[tok]
		f.mu.Unlock()
		if !ok {
			writeJSON(w, 401, `{"detail":"Could not validate credentials"}`)
			return
		}
		writeJSON(w, 200, `{"version":"3.2.1"}`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeKeycloakAirflow) login(w http.ResponseWriter, r *http.Request) {
	n := f.logins.Add(1)
	if r.Method != http.MethodPost {
		f.t.Errorf("login with %s, want POST", r.Method)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		f.t.Errorf("login Content-Type %q, want application/json", ct)
	}
	var body struct {
		GrantType    *string `json:"grant_type"`
		ClientID     *string `json:"client_id"`
		ClientSecret *string `json:"client_secret"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || body.GrantType == nil || body.ClientID == nil || body.ClientSecret == nil {
		f.t.Errorf("login body: %v, want exactly grant_type, client_id and client_secret", err)
		writeJSON(w, 422, `{"detail":[{"type":"extra_forbidden","loc":["body"],"msg":"Extra inputs are not permitted"}]}`)
		return
	}
	if *body.GrantType != "client_credentials" {
		f.t.Errorf("grant_type %q", *body.GrantType)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if st, ok := f.nextLoginStatus(); ok {
		writeJSON(w, st, fmt.Sprintf(`{"detail":"rejected","input":{"client_secret":%q}}`, *body.ClientSecret))
		return
	}
	if *body.ClientID != testClientID || *body.ClientSecret != testClientSecret {
		writeJSON(w, 401, `{"detail":"Client credentials authentication failed"}`)
		return
	}
	f.issue(w, time.Now(), time.Hour, int(n))
}

func clientCredentialsOptions(baseURL string) Options {
	return authOptions(Auth{Type: authtype.AirflowJWT, ClientID: testClientID, ClientSecret: testClientSecret, BaseURL: baseURL})
}

func TestJWTClientCredentials(t *testing.T) {
	f, srv := newFakeKeycloakAirflow(t)
	hc := mustNew(t, clientCredentialsOptions(srv.URL))
	for i := 0; i < 3; i++ {
		if resp, err := get(t, hc, srv.URL+"/api/v2/version"); err != nil || resp.StatusCode != 200 {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if n := f.logins.Load(); n != 1 {
		t.Fatalf("%d logins for 3 calls, want 1", n)
	}
	// A revoked token: one new client_credentials login, same body.
	f.revokeAll()
	if resp, err := get(t, hc, srv.URL+"/api/v2/version"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("after a revocation: %v", err)
	}
	if n := f.logins.Load(); n != 2 {
		t.Fatalf("%d logins, want 2", n)
	}
}

func TestJWTClientCredentialsRejected(t *testing.T) {
	f, srv := newFakeKeycloakAirflow(t)
	for _, c := range []struct {
		status int
		want   string
	}{
		{401, "airflow.auth.clientID and airflow.auth.clientSecret"},
		{422, "Keycloak auth manager"}, // an auth manager without client_credentials
	} {
		f.mu.Lock()
		f.loginStatus = []int{c.status}
		f.mu.Unlock()
		f.logins.Store(0)
		_, err := get(t, mustNew(t, clientCredentialsOptions(srv.URL)), srv.URL+"/api/v2/version")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("login answered %d: %v, want an error naming %q", c.status, err, c.want)
			continue
		}
		if strings.Contains(fmt.Sprintf("%v %+v %#v", err, err, err), testClientSecret) {
			t.Errorf("login answered %d: the error contains the client secret: %v", c.status, err)
		}
		if n := f.logins.Load(); n != 1 {
			t.Errorf("login answered %d: %d logins, want 1 (not retried)", c.status, n)
		}
	}
	if f.apiCalls.Load() != 0 {
		t.Error("an API call went out without a token")
	}
}

func TestJWTNeedsOneKindOfCredentials(t *testing.T) {
	for _, a := range []Auth{
		{Type: authtype.AirflowJWT, Username: testUser, Password: testPassword, ClientID: testClientID, ClientSecret: testClientSecret},
		{Type: authtype.AirflowJWT, ClientID: testClientID},
		{Type: authtype.AirflowJWT, ClientSecret: testClientSecret},
		{Type: authtype.AirflowJWT},
	} {
		a.BaseURL = "http://airflow.test"
		o := authOptions(a)
		_, err := New(o)
		if err == nil || !strings.Contains(err.Error(), "airflow-jwt") {
			t.Errorf("%+v: %v", a.ClientID+"/"+a.Username, err)
		}
		if err != nil && (strings.Contains(err.Error(), testClientSecret) || strings.Contains(err.Error(), testPassword)) {
			t.Errorf("the error contains a secret: %v", err)
		}
	}
}

// TestBearerTokenFileRotatedAndRejected: a rotated file is used from the
// next request on; a 401 re-reads the file once (a rotation may land
// between reading it and the answer), and a token the server keeps
// rejecting is an error that names the file, without the token.
func TestBearerTokenFileRotatedAndRejected(t *testing.T) {
	var mu sync.Mutex
	accepted := map[string]bool{"token-OLD": true}
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		mu.Lock()
		seen = append(seen, tok)
		ok := accepted[tok]
		mu.Unlock()
		if !ok {
			writeJSON(w, 401, `{"detail":"Unauthorized"}`)
			return
		}
		writeJSON(w, 200, `{}`)
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	path := dir + "/token"
	t0 := time.Now().Add(-time.Hour)
	write := func(tok string, mtime time.Time) {
		t.Helper()
		writeFileAt(t, path, tok+"\n", mtime)
	}
	write("token-OLD", t0)
	o := authOptions(Auth{Type: authtype.Bearer, TokenFile: path})
	var logs bytes.Buffer
	o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	hc := mustNew(t, o)
	if _, err := get(t, hc, srv.URL+"/api/v2/version"); err != nil {
		t.Fatal(err)
	}

	// Rotated: the new token is sent on the next request.
	mu.Lock()
	accepted = map[string]bool{"token-NEW": true}
	mu.Unlock()
	write("token-NEW", t0.Add(time.Second))
	if resp, err := get(t, hc, srv.URL+"/api/v2/version"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("after rotation: %v", err)
	}

	// Rotated to a token the server does not accept: a clear error.
	write("token-BAD", t0.Add(2*time.Second))
	_, err := get(t, hc, srv.URL+"/api/v2/version")
	if err == nil || !strings.Contains(err.Error(), "airflow.auth.tokenFile "+path) || !strings.Contains(err.Error(), "401") {
		t.Fatalf("a rejected rotated token: %v, want an error naming airflow.auth.tokenFile", err)
	}
	if strings.Contains(err.Error(), "token-BAD") || strings.Contains(logs.String(), "token-BAD") {
		t.Fatalf("the error quotes the token: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"token-OLD", "token-NEW", "token-BAD"}; strings.Join(seen, " ") != strings.Join(want, " ") {
		t.Fatalf("tokens sent: %q, want %q (an unchanged file is not retried)", seen, want)
	}
}

// TestBearerTokenFileRotatedDuringRequest: the file changed between the
// read and the 401, so the request is sent once more with the new token.
func TestBearerTokenFileRotatedDuringRequest(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/token"
	t0 := time.Now().Add(-time.Hour)
	writeFileAt(t, path, "token-OLD", t0)
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		seen = append(seen, tok)
		if tok != "token-NEW" {
			// The old token was revoked and the Secret rotated while this
			// request was on its way.
			writeFileAt(t, path, "token-NEW", t0.Add(time.Second))
			writeJSON(w, 401, `{"detail":"Unauthorized"}`)
			return
		}
		writeJSON(w, 200, `{}`)
	}))
	t.Cleanup(srv.Close)
	o := authOptions(Auth{Type: authtype.Bearer, TokenFile: path})
	if resp, err := get(t, mustNew(t, o), srv.URL+"/api/v2/version"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v", err)
	}
	if strings.Join(seen, " ") != "token-OLD token-NEW" {
		t.Fatalf("tokens sent: %q", seen)
	}
}

func writeFileAt(t *testing.T, path, content string, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}
