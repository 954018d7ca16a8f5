// Package oauthstub stands in for the OAuth2 token endpoints the reaper
// talks to on managed Airflow platforms, so that the end-to-end suite can
// run the real binary's authentication without a cloud account:
//
//   - Google's token endpoint for service accounts (Cloud Composer): the
//     stub writes an Application Default Credentials file of type
//     service_account whose token_uri points at itself, verifies the
//     JWT-bearer assertion that golang.org/x/oauth2/google signs with the
//     file's key, and mints access tokens with a chosen lifetime.
//   - The Keycloak auth manager's client_credentials login at Airflow 3's
//     POST /auth/token (Keycloak, a handler in front of the simulator).
//
// It records every call so that tests can count logins and check that the
// Airflow API only ever saw tokens it issued, while they were valid.
package oauthstub

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
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Google OAuth2 constants of the JWT-bearer grant (RFC 7523).
const (
	JWTBearerGrant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	CloudPlatform  = "https://www.googleapis.com/auth/cloud-platform"
)

// Issued is one access token the stub minted.
type Issued struct {
	Token  string
	At     time.Time
	Expiry time.Time
}

// TokenCall is one request to the token endpoint.
type TokenCall struct {
	Time   time.Time
	Status int
	// Err is why the stub refused the request; empty when it answered 200.
	Err string
}

// tokenCall is a token request answered at at with status; err is why it
// was refused.
func tokenCall(at time.Time, status int, err error) TokenCall {
	call := TokenCall{Time: at, Status: status}
	if err != nil {
		call.Err = err.Error()
	}
	return call
}

// Google is a stand-in for Google's OAuth2 token endpoint.
type Google struct {
	srv   *httptest.Server
	key   *rsa.PrivateKey
	keyID string
	email string
	scope string // the space-separated scopes an assertion must ask for
	now   func() time.Time

	mu        sync.Mutex
	expiresIn time.Duration
	issued    map[string]Issued
	order     []string
	calls     []TokenCall
	checks    int // Valid calls
	badChecks []string
}

// NewGoogle starts a token endpoint for one service account that must ask
// for exactly scopes. Close it when done.
func NewGoogle(scopes ...string) (*Google, error) {
	if len(scopes) == 0 {
		scopes = []string{CloudPlatform}
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	g := &Google{key: key, keyID: randomHex(8), email: "kpo-reaper@stub-project.iam.gserviceaccount.com",
		scope: strings.Join(scopes, " "), now: time.Now, expiresIn: time.Hour, issued: map[string]Issued{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/token", g.token)
	g.srv = httptest.NewServer(mux)
	return g, nil
}

// Close stops the endpoint.
func (g *Google) Close() { g.srv.Close() }

// TokenURL is the endpoint's token URL, as written into token_uri.
func (g *Google) TokenURL() string { return g.srv.URL + "/token" }

// SetExpiresIn sets the lifetime of the tokens minted from now on; it is
// sent as expires_in in whole seconds.
func (g *Google) SetExpiresIn(d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.expiresIn = d
}

// WriteCredentials writes the service account key file, as the Cloud
// console downloads it (an ADC file for GOOGLE_APPLICATION_CREDENTIALS or
// airflow.auth.credentialsFile), into dir and returns its path.
func (g *Google) WriteCredentials(dir string) (string, error) {
	b, err := json.MarshalIndent(map[string]string{
		"type":                        "service_account",
		"project_id":                  "stub-project",
		"private_key_id":              g.keyID,
		"private_key":                 g.PrivateKeyPEM(),
		"client_email":                g.email,
		"client_id":                   "100000000000000000001",
		"auth_uri":                    "https://accounts.google.com/o/oauth2/auth",
		"token_uri":                   g.TokenURL(),
		"auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
		"universe_domain":             "googleapis.com",
	}, "", "  ")
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "application_default_credentials.json")
	return p, os.WriteFile(p, b, 0o600)
}

// PrivateKeyPEM is the service account's private key, PKCS #8 PEM.
func (g *Google) PrivateKeyPEM() string {
	der, err := x509.MarshalPKCS8PrivateKey(g.key)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// Secrets are strings that must never appear in the reaper's output: the
// private key's PEM lines and every access token minted so far.
func (g *Google) Secrets() []string {
	var out []string
	for _, l := range strings.Split(g.PrivateKeyPEM(), "\n") {
		if l != "" && !strings.HasPrefix(l, "-----") {
			out = append(out, l)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return append(out, g.order...)
}

// Issued returns the tokens minted so far, oldest first.
func (g *Google) Issued() []Issued {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]Issued, len(g.order))
	for i, t := range g.order {
		out[i] = g.issued[t]
	}
	return out
}

// Calls returns the token endpoint's requests, oldest first.
func (g *Google) Calls() []TokenCall {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]TokenCall(nil), g.calls...)
}

// Valid reports whether tok is a token this stub minted and has not
// expired; it is what the Composer stand-in in front of the Airflow API
// checks (airflowsim.WithBearerValidator). It remembers the tokens it
// refused, for Refused.
func (g *Google) Valid(tok string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.checks++
	t, ok := g.issued[tok]
	if ok && g.now().Before(t.Expiry) {
		return true
	}
	g.badChecks = append(g.badChecks, tok)
	return false
}

// Checks is how many tokens Valid was asked about, and those it refused.
func (g *Google) Checks() (n int, refused []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.checks, append([]string(nil), g.badChecks...)
}

func (g *Google) token(w http.ResponseWriter, r *http.Request) {
	status, tok, err := g.grant(r)
	g.mu.Lock()
	g.calls = append(g.calls, tokenCall(g.now(), status, err))
	g.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err != nil {
		// Google's answer shape: an RFC 6749 error code and description.
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant", "error_description": err.Error()})
		return
	}
	_ = json.NewEncoder(w).Encode(tok)
}

type tokenAnswer struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
	TokenType   string `json:"token_type"`
}

// grant checks a JWT-bearer token request as Google does for a service
// account: the assertion is signed RS256 with the account's key (kid names
// it), issued by its email, for this token URL as audience, asking for the
// expected scopes, and current.
func (g *Google) grant(r *http.Request) (int, *tokenAnswer, error) {
	if r.Method != http.MethodPost {
		return http.StatusMethodNotAllowed, nil, fmt.Errorf("method %s", r.Method)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		return http.StatusBadRequest, nil, fmt.Errorf("content type %q", ct)
	}
	if err := r.ParseForm(); err != nil {
		return http.StatusBadRequest, nil, errors.New("unparsable form")
	}
	if gt := r.PostForm.Get("grant_type"); gt != JWTBearerGrant {
		return http.StatusBadRequest, nil, fmt.Errorf("grant_type %q", gt)
	}
	header, claims, err := VerifyRS256(r.PostForm.Get("assertion"), &g.key.PublicKey)
	if err != nil {
		return http.StatusBadRequest, nil, fmt.Errorf("assertion: %w", err)
	}
	if header.Kid != g.keyID {
		return http.StatusBadRequest, nil, fmt.Errorf("kid %q, want the key's id", header.Kid)
	}
	now := g.now()
	switch {
	case claims.Iss != g.email:
		return http.StatusBadRequest, nil, fmt.Errorf("iss %q", claims.Iss)
	case claims.Aud != g.TokenURL():
		return http.StatusBadRequest, nil, fmt.Errorf("aud %q, want the token URL", claims.Aud)
	case claims.Scope != g.scope:
		return http.StatusBadRequest, nil, fmt.Errorf("scope %q, want %q", claims.Scope, g.scope)
	case claims.Exp == 0 || time.Unix(claims.Exp, 0).Before(now):
		return http.StatusBadRequest, nil, fmt.Errorf("exp %d is not in the future", claims.Exp)
	case claims.Iat == 0 || claims.Exp-claims.Iat > 3600:
		return http.StatusBadRequest, nil, fmt.Errorf("iat %d, exp %d: at most an hour apart", claims.Iat, claims.Exp)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	tok := "ya29.stub-" + randomHex(24)
	g.issued[tok] = Issued{Token: tok, At: now, Expiry: now.Add(g.expiresIn)}
	g.order = append(g.order, tok)
	return http.StatusOK, &tokenAnswer{AccessToken: tok, ExpiresIn: int64(g.expiresIn / time.Second), TokenType: "Bearer"}, nil
}

// JWTHeader and JWTClaims are the parts of a Google service account
// assertion the stub checks.
type JWTHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
}

type JWTClaims struct {
	Iss   string `json:"iss"`
	Aud   string `json:"aud"`
	Scope string `json:"scope"`
	Exp   int64  `json:"exp"`
	Iat   int64  `json:"iat"`
}

// VerifyRS256 checks a JWT's RS256 signature with pub and decodes it.
func VerifyRS256(jwt string, pub *rsa.PublicKey) (JWTHeader, JWTClaims, error) {
	var h JWTHeader
	var c JWTClaims
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return h, c, fmt.Errorf("a JWT has 3 parts, this one %d", len(parts))
	}
	if err := decodePart(parts[0], &h); err != nil {
		return h, c, fmt.Errorf("header: %w", err)
	}
	if h.Alg != "RS256" {
		return h, c, fmt.Errorf("alg %q, want RS256", h.Alg)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return h, c, errors.New("signature is not base64url")
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
		return h, c, errors.New("bad signature")
	}
	if err := decodePart(parts[1], &c); err != nil {
		return h, c, fmt.Errorf("claims: %w", err)
	}
	return h, c, nil
}

func decodePart(s string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// Keycloak stands in for Airflow 3's Keycloak auth manager at POST
// /auth/token with the client_credentials grant: a JSON body of exactly
// grant_type "client_credentials", client_id and client_secret (the
// provider's TokenClientCredentialsBody forbids other fields, 422), checked
// against one client, answered 201 {"access_token": <Airflow JWT>}. Other
// requests, password logins included, go to next.
type Keycloak struct {
	ClientID, ClientSecret string

	mu     sync.Mutex
	logins []TokenCall
	tokens []string
}

// Wrap puts the client_credentials login in front of next; issue mints
// the Airflow JWT a successful login returns (airflowsim's IssueToken).
func (k *Keycloak) Wrap(next http.Handler, issue func() string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/auth/token" {
			next.ServeHTTP(w, r)
			return
		}
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		var probe struct {
			GrantType string `json:"grant_type"`
		}
		if json.Unmarshal(body, &probe) != nil || probe.GrantType != "client_credentials" {
			r.Body = io.NopCloser(bytes.NewReader(body))
			next.ServeHTTP(w, r)
			return
		}
		status, answer, err := k.check(r, body, issue)
		k.mu.Lock()
		k.logins = append(k.logins, tokenCall(time.Now(), status, err))
		k.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, answer)
	})
}

func (k *Keycloak) check(r *http.Request, body []byte, issue func() string) (int, string, error) {
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		return http.StatusUnprocessableEntity, `{"detail":"Unsupported content type"}`, fmt.Errorf("content type %q", ct)
	}
	var b struct {
		GrantType    *string `json:"grant_type"`
		ClientID     *string `json:"client_id"`
		ClientSecret *string `json:"client_secret"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil || b.ClientID == nil || b.ClientSecret == nil {
		return http.StatusUnprocessableEntity, `{"detail":[{"type":"extra_forbidden","loc":["body"],"msg":"Invalid body"}]}`, fmt.Errorf("body: %w", err)
	}
	if *b.ClientID != k.ClientID || *b.ClientSecret != k.ClientSecret {
		return http.StatusUnauthorized, `{"detail":"Client credentials authentication failed"}`, errors.New("wrong client credentials")
	}
	tok := issue()
	k.mu.Lock()
	k.tokens = append(k.tokens, tok)
	k.mu.Unlock()
	answer, _ := json.Marshal(map[string]string{"access_token": tok})
	return http.StatusCreated, string(answer), nil
}

// Logins returns the client_credentials logins, oldest first.
func (k *Keycloak) Logins() []TokenCall {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]TokenCall(nil), k.logins...)
}

// Secrets are the client secret and every token issued so far.
func (k *Keycloak) Secrets() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string{k.ClientSecret}, k.tokens...)
}
