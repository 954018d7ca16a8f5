package transport

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
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

	"github.com/kpo-reaper/kpo-reaper/internal/airflow/authtype"
)

const (
	cloudPlatform = "https://www.googleapis.com/auth/cloud-platform"
	saEmail       = "kpo-reaper@test-project.iam.gserviceaccount.com"
)

// rsaKey is generated once: RSA key generation is slow under -race.
var rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// fakeGoogle is Google's OAuth2 token endpoint for service accounts (the
// JWT-bearer grant) and a Composer Airflow API that accepts only the
// access tokens it issued.
type fakeGoogle struct {
	t         *testing.T
	srv       *httptest.Server
	expiresIn int // seconds, as the token answer says

	mu         sync.Mutex
	issued     map[string]bool
	tokenErr   []int // statuses to answer token requests with before succeeding
	rejectAll  bool  // the API answers 401 to every token
	assertions []string

	tokenCalls atomic.Int32
	apiCalls   atomic.Int32
}

func newFakeGoogle(t *testing.T) *fakeGoogle {
	f := &fakeGoogle{t: t, expiresIn: 3600, issued: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", f.token)
	mux.HandleFunc("/api/v2/", f.api)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

// credentials writes a service account key file whose token_uri is the fake.
func (f *fakeGoogle) credentials(t *testing.T) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(rsaKey())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]string{
		"type": "service_account", "project_id": "test-project", "private_key_id": "key-1",
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": saEmail, "client_id": "1234567890", "token_uri": f.srv.URL + "/token",
	})
	p := filepath.Join(t.TempDir(), "sa.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// keyLines are the private key's PEM body lines, to look for leaks.
func keyLines(t *testing.T) []string {
	der, err := x509.MarshalPKCS8PrivateKey(rsaKey())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), "\n") {
		if l != "" && !strings.HasPrefix(l, "-----") {
			out = append(out, l)
		}
	}
	return out
}

func (f *fakeGoogle) token(w http.ResponseWriter, r *http.Request) {
	f.tokenCalls.Add(1)
	if err := r.ParseForm(); err != nil {
		writeJSON(w, 400, `{"error":"invalid_request"}`)
		return
	}
	assertion := r.PostForm.Get("assertion")
	f.mu.Lock()
	f.assertions = append(f.assertions, assertion)
	if len(f.tokenErr) > 0 {
		st := f.tokenErr[0]
		f.tokenErr = f.tokenErr[1:]
		f.mu.Unlock()
		// The body echoes the assertion, as no token endpoint should: the
		// error must not pass it on.
		writeJSON(w, st, fmt.Sprintf(`{"error":"invalid_grant","error_description":"Invalid JWT Signature.","assertion":%q}`, assertion))
		return
	}
	f.mu.Unlock()
	if g := r.PostForm.Get("grant_type"); g != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		f.t.Errorf("grant_type %q", g)
	}
	claims, err := verifyRS256(assertion, &rsaKey().PublicKey)
	if err != nil {
		f.t.Errorf("assertion: %v", err)
		writeJSON(w, 400, `{"error":"invalid_grant"}`)
		return
	}
	if claims["iss"] != saEmail || claims["aud"] != f.srv.URL+"/token" || claims["scope"] != cloudPlatform {
		f.t.Errorf("assertion claims %v", claims)
	}
	raw := make([]byte, 24)
	_, _ = rand.Read(raw)
	tok := "ya29.test-" + hex.EncodeToString(raw)
	f.mu.Lock()
	f.issued[tok] = true
	f.mu.Unlock()
	writeJSON(w, 200, fmt.Sprintf(`{"access_token":%q,"expires_in":%d,"token_type":"Bearer"}`, tok, f.expiresIn))
}

func (f *fakeGoogle) api(w http.ResponseWriter, r *http.Request) {
	f.apiCalls.Add(1)
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	f.mu.Lock()
	ok := f.issued[tok] && !f.rejectAll
	f.mu.Unlock()
	if !ok {
		writeJSON(w, 401, `{"detail":"Unauthorized"}`)
		return
	}
	writeJSON(w, 200, `{"version":"3.2.1"}`)
}

func (f *fakeGoogle) revokeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.issued = map[string]bool{}
}

// verifyRS256 checks a JWT's RS256 signature and returns its claims.
func verifyRS256(jwt string, pub *rsa.PublicKey) (map[string]any, error) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%d parts", len(parts))
	}
	var header struct{ Alg string }
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil || json.Unmarshal(hb, &header) != nil || header.Alg != "RS256" {
		return nil, fmt.Errorf("header %s", hb)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
		return nil, err
	}
	pb, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, err
	}
	var claims map[string]any
	return claims, json.Unmarshal(pb, &claims)
}

func googleOptions(file string) Options {
	return authOptions(Auth{Type: authtype.Google, CredentialsFile: file, Scopes: []string{cloudPlatform}})
}

func TestGoogleCachesTheAccessToken(t *testing.T) {
	f := newFakeGoogle(t)
	hc := mustNew(t, googleOptions(f.credentials(t)))
	if f.tokenCalls.Load() != 0 {
		t.Fatal("New fetched a token: it must not contact anything")
	}
	for i := 0; i < 5; i++ {
		if resp, err := get(t, hc, f.srv.URL+"/api/v2/version"); err != nil || resp.StatusCode != 200 {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if n := f.tokenCalls.Load(); n != 1 {
		t.Fatalf("%d token requests for 5 API calls, want 1", n)
	}
}

// TestGoogleRenewsExpiringTokens: oauth2 renews a token 10 s before its
// expiry, so a token that lives 10 s is renewed at every use.
func TestGoogleRenewsExpiringTokens(t *testing.T) {
	f := newFakeGoogle(t)
	f.expiresIn = 10
	hc := mustNew(t, googleOptions(f.credentials(t)))
	for i := 0; i < 3; i++ {
		if _, err := get(t, hc, f.srv.URL+"/api/v2/version"); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.tokenCalls.Load(); n != 3 {
		t.Fatalf("%d token requests, want 3", n)
	}
}

// TestGoogleApplicationDefaultCredentials: without credentialsFile, the
// file named by GOOGLE_APPLICATION_CREDENTIALS is used.
func TestGoogleApplicationDefaultCredentials(t *testing.T) {
	f := newFakeGoogle(t)
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", f.credentials(t))
	hc := mustNew(t, googleOptions(""))
	if resp, err := get(t, hc, f.srv.URL+"/api/v2/version"); err != nil || resp.StatusCode != 200 {
		t.Fatal(err)
	}
	if f.tokenCalls.Load() != 1 {
		t.Fatalf("%d token requests", f.tokenCalls.Load())
	}
}

func TestGoogle401FetchesOneFreshToken(t *testing.T) {
	f := newFakeGoogle(t)
	hc := mustNew(t, googleOptions(f.credentials(t)))
	if _, err := get(t, hc, f.srv.URL+"/api/v2/version"); err != nil {
		t.Fatal(err)
	}
	f.revokeAll() // the cached token is no longer accepted though unexpired
	if resp, err := get(t, hc, f.srv.URL+"/api/v2/version"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("after a revocation: %v", err)
	}
	if n, a := f.tokenCalls.Load(), f.apiCalls.Load(); n != 2 || a != 3 {
		t.Fatalf("%d token requests and %d API calls, want 2 and 3", n, a)
	}

	f.mu.Lock()
	f.rejectAll = true
	f.mu.Unlock()
	f.tokenCalls.Store(0)
	f.apiCalls.Store(0)
	_, err := get(t, hc, f.srv.URL+"/api/v2/version")
	if err == nil || !strings.Contains(err.Error(), "airflow.auth type google") || !strings.Contains(err.Error(), "401") {
		t.Fatalf("a persistent 401: %v", err)
	}
	if n, a := f.tokenCalls.Load(), f.apiCalls.Load(); n != 1 || a != 2 {
		t.Fatalf("a persistent 401 cost %d token requests and %d API calls, want 1 and 2 (no retries)", n, a)
	}
}

// TestGoogleKeyRotation: the old key is deleted after the mounted file got
// the new one; the refused refresh reloads the file instead of failing for
// good.
func TestGoogleKeyRotation(t *testing.T) {
	f := newFakeGoogle(t)
	f.expiresIn = 10 // renewed at every use
	file := f.credentials(t)
	hc := mustNew(t, googleOptions(file))
	if _, err := get(t, hc, f.srv.URL+"/api/v2/version"); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.tokenErr = []int{400} // the old key, now deleted
	f.mu.Unlock()
	// The rotated file: rewriting it proves it is read again.
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, bytes.Replace(b, []byte(`"key-1"`), []byte(`"key-2"`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	if resp, err := get(t, hc, f.srv.URL+"/api/v2/version"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("after a key rotation: %v", err)
	}
	f.mu.Lock()
	last := f.assertions[len(f.assertions)-1]
	f.mu.Unlock()
	head, _ := base64.RawURLEncoding.DecodeString(strings.Split(last, ".")[0])
	if !strings.Contains(string(head), "key-2") {
		t.Fatalf("the token after the refusal was not signed with the reloaded file's key id: %s", head)
	}
	if n := f.tokenCalls.Load(); n != 3 {
		t.Fatalf("%d token requests, want 3 (first, refused, after reload)", n)
	}
}

func TestGoogleTokenEndpointErrors(t *testing.T) {
	f := newFakeGoogle(t)
	var logs bytes.Buffer
	var mu sync.Mutex
	o := googleOptions(f.credentials(t))
	o.Logger = slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	hc := mustNew(t, o)

	f.tokenErr = []int{400, 400}
	_, err := get(t, hc, f.srv.URL+"/api/v2/version")
	if err == nil || !strings.Contains(err.Error(), "airflow.auth") || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("refused credentials: %v, want an error naming airflow.auth and invalid_grant", err)
	}
	if n := f.tokenCalls.Load(); n != 2 {
		t.Fatalf("refused credentials were asked for %d times, want twice (once more after reloading them)", n)
	}
	if f.apiCalls.Load() != 0 {
		t.Fatal("a request went to Airflow without a token")
	}
	secrets := append(keyLines(t), f.assertions[0], strings.Split(f.assertions[0], ".")[2][:20])

	f.tokenCalls.Store(0)
	f.tokenErr = []int{503, 500}
	if resp, err := get(t, hc, f.srv.URL+"/api/v2/version"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("a token endpoint outage is retried: %v", err)
	}
	if n := f.tokenCalls.Load(); n != 3 {
		t.Fatalf("%d token requests, want 3", n)
	}
	f.mu.Lock()
	for tok := range f.issued {
		secrets = append(secrets, tok)
	}
	f.mu.Unlock()

	f.tokenErr = []int{503, 503, 503, 503}
	hc = mustNew(t, o) // no cached token
	_, spent := get(t, hc, f.srv.URL+"/api/v2/version")
	if spent == nil {
		t.Fatal("a token endpoint that keeps failing must fail the call")
	}
	for _, e := range []error{err, spent} {
		t.Logf("error: %v", e)
		for _, s := range secrets {
			if strings.Contains(fmt.Sprintf("%v %+v %#v", e, e, e), s) {
				t.Errorf("the error contains a secret: %v", e)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, s := range secrets {
		if strings.Contains(logs.String(), s) {
			t.Errorf("the log contains a secret:\n%s", logs.String())
		}
	}
}

func TestGoogleCredentialsFileErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct{ file, want string }{
		{filepath.Join(dir, "absent.json"), "airflow.auth.credentialsFile"},
		{write("text.json", "not json"), "not JSON"},
		{write("web.json", `{"web":{"client_id":"x","client_secret":"SECRET-web-client"}}`), `type ""`},
		{write("sa.json", `{"type":"service_account","private_key":"-----BEGIN PRIVATE KEY-----\nTUFOR0xFRC1LRVk=\n-----END PRIVATE KEY-----\n","client_email":"a@b"}`), ""},
	} {
		hc, err := New(googleOptions(c.file))
		if err == nil {
			// A key that does not parse fails at the first token.
			_, err = get(t, hc, "http://127.0.0.1:1/api/v2/version")
		}
		t.Logf("%s: %v", filepath.Base(c.file), err)
		if err == nil || !strings.Contains(err.Error(), "airflow.auth") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming airflow.auth and %q", filepath.Base(c.file), err, c.want)
		}
		if err != nil && (strings.Contains(err.Error(), "SECRET-web-client") || strings.Contains(err.Error(), "TUFOR0xFRC1LRVk")) {
			t.Errorf("%s: the error quotes the file: %v", filepath.Base(c.file), err)
		}
	}
}
