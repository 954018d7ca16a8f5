package e2e_test

// Managed-platform authentication, TLS and proxies, end to end: the built
// binary authenticates as it would on Cloud Composer (Google access tokens
// from a service account key), Airflow 3 with the Keycloak auth manager
// (client_credentials), Astronomer (an API token file), through mutual TLS
// and through an HTTP forward proxy, and reaps the seed DAG's zombies. The
// platforms' token endpoints are stand-ins (e2e/oauthstub); the simulator
// admits the tokens they mint as the platforms' auth layers do.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kpo-reaper/kpo-reaper/e2e/airflowsim"
	"github.com/kpo-reaper/kpo-reaper/e2e/fixture"
	"github.com/kpo-reaper/kpo-reaper/e2e/oauthstub"
)

// reaperEnv runs the binary like env.reaper, with extra environment
// variables (fixture.Run passes the test's own environment only), and
// fails the test unless it exits with want or if its output contains any
// of secrets. Proxy and Google variables of the test's environment are
// dropped so that only what the test sets applies.
func (e *env) reaperEnv(want int, extra []string, secrets []string, args ...string) fixture.Result {
	e.t.Helper()
	var environ []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "GOOGLE_APPLICATION_CREDENTIALS":
			continue
		}
		if strings.HasPrefix(k, "KPO_REAPER_") {
			continue
		}
		environ = append(environ, kv)
	}
	res := e.reaperWithEnv(want, append(environ, extra...), args...)
	expectNoSecrets(e.t, strings.Join(args, " "), res, secrets)
	return res
}

// expectNoSecrets fails the test when a credential appears in the output.
func expectNoSecrets(t *testing.T, what string, res fixture.Result, secrets []string) {
	t.Helper()
	for _, s := range secrets {
		if len(s) < 8 {
			t.Fatalf("secret %q is too short to look for", s)
		}
		if strings.Contains(res.Stdout, s) || strings.Contains(res.Stderr, s) {
			t.Errorf("kpo-reaper %s printed a credential (%.6s...)", what, s)
		}
	}
}

// runEnv is runOnce with extra environment and a secrets check; planEnv is
// plan -o json likewise. Both log at debug level, so that every line the
// reaper could print is searched for credentials.
func (e *env) runEnv(cfg string, want int, extra, secrets []string) fixture.Result {
	e.t.Helper()
	return e.reaperEnv(want, extra, secrets, "run", "--once", "--dry-run=false", "--log-level", "debug", "--config", cfg)
}

func (e *env) planEnv(cfg string, extra, secrets []string) map[string]planPod {
	e.t.Helper()
	res := e.reaperEnv(0, extra, secrets, "plan", "--config", cfg, "-o", "json", "--log-level", "debug")
	var out struct {
		Pods []planPod `json:"pods"`
	}
	if err := json.Unmarshal([]byte(res.Stdout), &out); err != nil {
		e.t.Fatalf("plan -o json is not JSON: %v\n%s", err, res.Stdout)
	}
	m := map[string]planPod{}
	for _, p := range out.Pods {
		m[p.Name] = p
	}
	return m
}

// expectSeedPlan checks the seed DAG's verdicts.
func (e *env) expectSeedPlan(plan map[string]planPod) {
	e.t.Helper()
	for _, name := range fixture.SeedZombies {
		e.expectVerdict(plan, name, "reap", "ti-finished")
	}
	for _, name := range fixture.SeedLive {
		e.expectVerdict(plan, name, "keep", "ti-active")
	}
}

// expectAllAuthenticated checks that the simulator saw requests and that
// every one of them to its API carried valid credentials.
func expectAllAuthenticated(t *testing.T, s *sim) []airflowsim.RecordedRequest {
	t.Helper()
	reqs := s.Requests()
	if len(reqs) == 0 {
		t.Fatal("the simulator saw no request")
	}
	for _, r := range reqs {
		if !strings.HasPrefix(r.Path, s.BasePath()+"/") && r.Status == http.StatusNotFound {
			continue // version detection asking an Airflow 2 for /api/v2: no such route, no auth
		}
		if !r.AuthOK || r.Status == http.StatusUnauthorized {
			t.Errorf("%s %s: answered %d without valid credentials", r.Method, r.Path, r.Status)
		}
	}
	return reqs
}

// newGoogle starts a stand-in for Google's token endpoint, issuing tokens
// for scope, until the test ends.
func newGoogle(t *testing.T, scope string) *oauthstub.Google {
	t.Helper()
	g, err := oauthstub.NewGoogle(scope)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

// TestComposer: Cloud Composer's auth, a Google OAuth2 access token from a
// service account key, against both API versions (Composer 2/3 with
// Airflow 2, Composer 3 with Airflow 3). Tokens living 10 s are renewed at
// every use (oauth2 renews 10 s before expiry), so a run fetches one per
// Airflow request; tokens living an hour are fetched once per process.
func TestComposer(t *testing.T) {
	t.Parallel()
	forEachVersion(t, func(t *testing.T, v airflowVersion) {
		for _, c := range []struct {
			name      string
			adc       bool // GOOGLE_APPLICATION_CREDENTIALS instead of credentialsFile
			expiresIn time.Duration
		}{
			{name: "adc-short-lived", adc: true, expiresIn: 10 * time.Second},
			{name: "credentialsFile", expiresIn: time.Hour},
		} {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				g := newGoogle(t, oauthstub.CloudPlatform)
				g.SetExpiresIn(c.expiresIn)
				creds, err := g.WriteCredentials(t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				e, s := newSeedEnv(t, v, airflowsim.WithBearerValidator(g.Valid))
				var extra []string
				cfg := e.config(s.URL, v, func(fc *fixture.Config) {
					fc.AuthType = "google"
					if c.adc {
						extra = []string{"GOOGLE_APPLICATION_CREDENTIALS=" + creds}
					} else {
						fc.AuthExtra = "credentialsFile: " + creds
					}
				})

				e.expectSeedPlan(e.planEnv(cfg, extra, g.Secrets()))
				planCalls := len(g.Calls())
				s.ResetRequests()

				e.runEnv(cfg, 0, extra, g.Secrets())

				e.expectGone(fixture.SeedZombies)
				e.expectWrites(fixture.SeedZombies, nil)
				reqs := expectAllAuthenticated(t, s)
				for _, r := range reqs {
					if r.Path == "/auth/token" {
						t.Errorf("the reaper logged in to Airflow (%s %s): Composer takes the Google token itself", r.Method, r.Path)
					}
				}
				calls := g.Calls()
				for _, call := range calls {
					if call.Status != http.StatusOK {
						t.Errorf("the token endpoint refused a request: %d %s", call.Status, call.Err)
					}
				}
				checks, refused := g.Checks()
				if len(refused) != 0 {
					t.Errorf("the Airflow API was sent %d tokens the stub did not issue or that had expired", len(refused))
				}
				runCalls := len(calls) - planCalls
				if c.expiresIn <= 10*time.Second {
					if runCalls < 2 || runCalls != len(reqs) {
						t.Errorf("short-lived tokens: %d token requests for %d Airflow requests, want one per request (and more than one)", runCalls, len(reqs))
					}
				} else if planCalls != 1 || runCalls != 1 {
					t.Errorf("hour-long tokens: plan fetched %d and run %d tokens for %d Airflow requests, want 1 each", planCalls, runCalls, len(reqs))
				}
				if checks < len(reqs) {
					t.Errorf("%d token checks for %d Airflow requests: a request went without a token", checks, len(reqs))
				}
				if len(reqs) < 2 {
					t.Errorf("only %d Airflow requests: the test proves little", len(reqs))
				}
				// The tokens minted during the run, now known, were not
				// printed either.
				expectNoSecrets(t, "(all runs)", fixture.Result{}, g.Secrets())
			})
		}
	})
}

// TestComposerRefusedKey: a key the token endpoint refuses, even after the
// credentials are read again, fails the cycle (exit 1), deletes nothing and
// names airflow.auth, without the key.
func TestComposerRefusedKey(t *testing.T) {
	t.Parallel()
	v := airflowVersions[1]
	g := newGoogle(t, oauthstub.CloudPlatform)
	other := newGoogle(t, "https://www.googleapis.com/auth/devstorage.read_only")
	creds, err := g.WriteCredentials(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e, s := newSeedEnv(t, v, airflowsim.WithBearerValidator(g.Valid))
	// other's endpoint expects another scope and another key: it refuses.
	cfg := e.config(s.URL, v, func(fc *fixture.Config) { fc.AuthType = "google"; fc.APIVersion = "v2" })
	refused := strings.Replace(mustRead(t, creds), g.TokenURL(), other.TokenURL(), 1)
	if err := os.WriteFile(creds, []byte(refused), 0o600); err != nil {
		t.Fatal(err)
	}
	res := e.runEnv(cfg, 1, []string{"GOOGLE_APPLICATION_CREDENTIALS=" + creds}, g.Secrets())
	t.Logf("refused key: %s", lastLine(res.Stderr))
	if !strings.Contains(res.Stderr, "airflow.auth") || !strings.Contains(res.Stderr, "invalid_grant") {
		t.Errorf("the error does not name airflow.auth and the endpoint's error code:\n%s", res.Stderr)
	}
	// Once, and once more after reloading the file (a rotated key would
	// be in it by then); a refusal is not retried beyond that.
	if n := len(other.Calls()); n != 2 {
		t.Errorf("the refusing token endpoint was asked %d times, want twice", n)
	}
	if reqs := s.Requests(); len(reqs) != 0 {
		t.Errorf("%d requests reached Airflow without a token", len(reqs))
	}
	e.expectGone(nil)
	e.expectNoWrites(false)
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestKeycloak: Airflow 3 with the Keycloak auth manager, logging in with
// the client_credentials grant at POST /auth/token: one login per process,
// the seed reaped; a wrong secret fails the cycle and names the keys.
func TestKeycloak(t *testing.T) {
	t.Parallel()
	v := airflowVersions[1]
	kc := &oauthstub.Keycloak{ClientID: "kpo-reaper", ClientSecret: "kc-secret-" + randomString(t)}
	e := newEnv(t)
	e.createPods(fixture.SeedPods()...)
	s := e.startSim(seedScenario(t, v), func(s *airflowsim.Server) http.Handler { return kc.Wrap(s, s.IssueToken) })
	cfg := e.config(s.URL, v, func(fc *fixture.Config) {
		fc.AuthType = "airflow-jwt"
		fc.AuthExtra = "clientID: kpo-reaper\nclientSecret: " + kc.ClientSecret
	})
	wrong := e.config(s.URL, v, func(fc *fixture.Config) {
		fc.AuthType = "airflow-jwt"
		fc.AuthExtra = "clientID: kpo-reaper\nclientSecret: wrong-" + kc.ClientSecret
	})

	res := e.runEnv(wrong, 1, nil, append(kc.Secrets(), "wrong-"+kc.ClientSecret))
	t.Logf("wrong secret: %s", lastLine(res.Stderr))
	if !strings.Contains(res.Stderr, "airflow.auth.clientID") || !strings.Contains(res.Stderr, "airflow.auth.clientSecret") {
		t.Errorf("a refused client_credentials login does not name the keys:\n%s", res.Stderr)
	}
	e.expectGone(nil)
	e.expectNoWrites(false)

	e.expectSeedPlan(e.planEnv(cfg, nil, kc.Secrets()))
	s.ResetRequests()
	e.runEnv(cfg, 0, nil, kc.Secrets())

	e.expectGone(fixture.SeedZombies)
	e.expectWrites(fixture.SeedZombies, nil)
	reqs := expectAllAuthenticated(t, s)
	logins := kc.Logins()
	ok := 0
	for _, l := range logins {
		if l.Status == http.StatusCreated {
			ok++
		}
	}
	// The wrong secret's one refused login, then one login per process.
	if len(logins) != 3 || ok != 2 {
		t.Errorf("client_credentials logins: %+v, want one refused, then one per process", logins)
	}
	for _, r := range reqs {
		if r.Path == "/auth/token" {
			t.Errorf("a login reached the simulator's password login: %s", r.Body)
		}
	}
	expectNoSecrets(t, "(all runs)", fixture.Result{}, kc.Secrets())
}

// TestAstronomer: an Astro API token in a file (a mounted Secret): the
// token is read from the file, a rotated file is used by the next process
// (the transport re-reads it on change within one), and a token the
// Deployment no longer accepts fails the cycle naming the file.
func TestAstronomer(t *testing.T) {
	t.Parallel()
	forEachVersion(t, func(t *testing.T, v airflowVersion) {
		var mu sync.Mutex
		current := "astro-api-token-" + randomString(t)
		first := current
		valid := func(tok string) bool {
			mu.Lock()
			defer mu.Unlock()
			return tok == current
		}
		e, s := newSeedEnv(t, v, airflowsim.WithBearerValidator(valid))
		tokenFile := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(tokenFile, []byte(current+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := e.config(s.URL, v, func(fc *fixture.Config) {
			fc.AuthType = "bearer"
			fc.AuthExtra = "tokenFile: " + tokenFile
		})
		secrets := []string{first}

		e.expectSeedPlan(e.planEnv(cfg, nil, secrets))

		// Rotated: the Deployment accepts only the new token now.
		mu.Lock()
		current = "astro-api-token-" + randomString(t)
		second := current
		mu.Unlock()
		secrets = append(secrets, second)
		if err := os.WriteFile(tokenFile, []byte(second+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		s.ResetRequests()
		e.runEnv(cfg, 0, nil, secrets)
		e.expectGone(fixture.SeedZombies)
		e.expectWrites(fixture.SeedZombies, nil)
		expectAllAuthenticated(t, s)

		// Revoked: the file still holds the old token.
		mu.Lock()
		current = "astro-api-token-" + randomString(t)
		secrets = append(secrets, current)
		mu.Unlock()
		res := e.runEnv(cfg, 1, nil, secrets)
		t.Logf("revoked token: %s", lastLine(res.Stderr))
		if !strings.Contains(res.Stderr, "airflow.auth.tokenFile") || !strings.Contains(res.Stderr, "401") {
			t.Errorf("a rejected token file is not named in the error:\n%s", res.Stderr)
		}
	})
}

// TestTLS: the simulator behind TLS that requires a client certificate of
// its CA. Without the certificate or with the wrong CA the cycle fails
// (exit 1), nothing is written, and the error says what to set; with
// insecureSkipVerify it works and warns; with caFile, certFile and keyFile
// it reaps.
func TestTLS(t *testing.T) {
	t.Parallel()
	forEachVersion(t, func(t *testing.T, v airflowVersion) {
		pki, other := newE2EPKI(t), newE2EPKI(t)
		e := newEnv(t)
		e.createPods(fixture.SeedPods()...)
		s := e.startTLSSim(seedScenario(t, v), &tls.Config{
			Certificates: []tls.Certificate{pki.server},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    pki.pool,
		})
		if !strings.HasPrefix(s.URL, "https://127.0.0.1:") {
			t.Fatalf("TLS simulator at %s", s.URL)
		}
		withTLS := func(yaml string) string {
			return e.config(s.URL, v, func(fc *fixture.Config) { fc.AirflowExtra = "tls:\n" + yaml })
		}
		secrets := append(pki.secrets(), basicAdmin)

		res := e.runEnv(withTLS("  caFile: "+pki.caFile), 1, nil, secrets)
		t.Logf("no client certificate: %s", lastLine(res.Stderr))
		if !strings.Contains(res.Stderr, "airflow.tls.certFile") {
			t.Errorf("without a client certificate: the error does not name airflow.tls.certFile:\n%s", res.Stderr)
		}
		res = e.runEnv(withTLS("  caFile: "+other.caFile+"\n  certFile: "+pki.certFile+"\n  keyFile: "+pki.keyFile), 1, nil, secrets)
		t.Logf("wrong CA: %s", lastLine(res.Stderr))
		if !strings.Contains(res.Stderr, "certificate") || !strings.Contains(res.Stderr, "airflow.tls.caFile") {
			t.Errorf("with the wrong CA: the error is not about the certificate and airflow.tls.caFile:\n%s", res.Stderr)
		}
		e.expectGone(nil)
		e.expectNoWrites(false)
		for _, r := range s.Requests() {
			t.Errorf("a request got through TLS without the right certificate or CA: %s %s", r.Method, r.Path)
		}

		insecure := withTLS("  insecureSkipVerify: true\n  certFile: " + pki.certFile + "\n  keyFile: " + pki.keyFile)
		res = e.reaperEnv(0, nil, secrets, "plan", "--config", insecure, "-o", "json")
		if !strings.Contains(res.Stderr, "airflow.tls.insecureSkipVerify is true: the Airflow server's identity is not checked") {
			t.Errorf("insecureSkipVerify: no warning in the log:\n%s", res.Stderr)
		}
		var plan struct{ Pods []planPod }
		if err := json.Unmarshal([]byte(res.Stdout), &plan); err != nil || len(plan.Pods) != 4 {
			t.Errorf("insecureSkipVerify: plan %v:\n%s", err, res.Stdout)
		}

		e.runEnv(withTLS("  caFile: "+pki.caFile+"\n  certFile: "+pki.certFile+"\n  keyFile: "+pki.keyFile), 0, nil, secrets)
		e.expectGone(fixture.SeedZombies)
		e.expectWrites(fixture.SeedZombies, nil)
		expectAllAuthenticated(t, s)
	})
}

// startTLSSim is startSim over HTTPS with the given server configuration.
func (e *env) startTLSSim(sc *airflowsim.Scenario, cfg *tls.Config) *sim {
	e.t.Helper()
	s := airflowsim.New(sc)
	srv := httptest.NewUnstartedServer(s)
	srv.TLS = cfg
	// The refused handshakes are the test's point; keep them out of its
	// output.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	e.t.Cleanup(func() {
		s.Close()
		srv.Close()
	})
	return &sim{Server: s, srv: srv, URL: srv.URL}
}

// e2ePKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate, as PEM files.
type e2ePKI struct {
	caFile, certFile, keyFile string
	pool                      *x509.CertPool
	server                    tls.Certificate
	clientKey                 []byte
}

func newE2EPKI(t *testing.T) *e2ePKI {
	t.Helper()
	dir := t.TempDir()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	now := time.Now()
	caKey := key()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kpo-reaper e2e CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, usage x509.ExtKeyUsage, ips []net.IP) (certPEM, keyPEM []byte) {
		k := key()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "kpo-reaper e2e"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	}
	p := &e2ePKI{pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	scert, skey := issue(2, x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	if p.server, err = tls.X509KeyPair(scert, skey); err != nil {
		t.Fatal(err)
	}
	ccert, ckey := issue(3, x509.ExtKeyUsageClientAuth, nil)
	p.clientKey = ckey
	p.caFile, p.certFile, p.keyFile = filepath.Join(dir, "ca.crt"), filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	for f, b := range map[string][]byte{p.caFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), p.certFile: ccert, p.keyFile: ckey} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// secrets are the client key's PEM body lines.
func (p *e2ePKI) secrets() []string {
	var out []string
	for _, l := range strings.Split(string(p.clientKey), "\n") {
		if l != "" && !strings.HasPrefix(l, "-----") {
			out = append(out, l)
		}
	}
	return out
}

// TestProxy: with HTTP_PROXY set, every Airflow request goes through the
// proxy. airflow.url names airflow.test, which only the proxy resolves
// (net/http never proxies localhost, and the reaper cannot resolve the
// name), so a request that bypassed the proxy would fail the run.
func TestProxy(t *testing.T) {
	t.Parallel()
	forEachVersion(t, func(t *testing.T, v airflowVersion) {
		e, s := newSeedEnv(t, v)
		fp := &recordingProxy{}
		proxy := httptest.NewServer(fp)
		t.Cleanup(proxy.Close)
		u, err := url.Parse(s.URL)
		if err != nil {
			t.Fatal(err)
		}
		cfg := e.config("http://airflow.test:"+u.Port(), v, nil)
		extra := []string{"HTTP_PROXY=" + proxy.URL, "http_proxy=" + proxy.URL}

		e.runEnv(cfg, 0, extra, []string{basicAdmin})

		e.expectGone(fixture.SeedZombies)
		e.expectWrites(fixture.SeedZombies, nil)
		reqs := expectAllAuthenticated(t, s)
		proxied := fp.requests()
		if len(proxied) != len(reqs) {
			t.Errorf("the proxy forwarded %d requests, the simulator saw %d: some bypassed it", len(proxied), len(reqs))
		}
		for _, p := range proxied {
			if !strings.Contains(p, "http://airflow.test:"+u.Port()+"/") {
				t.Errorf("the proxy forwarded %s, not a request for airflow.test", p)
			}
		}
	})
}

// recordingProxy is an HTTP forward proxy that resolves every host to
// 127.0.0.1 and records what it forwarded.
type recordingProxy struct {
	mu   sync.Mutex
	seen []string
}

func (p *recordingProxy) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.seen...)
}

func (p *recordingProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !r.URL.IsAbs() {
		http.Error(w, "not a proxy request", http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	p.seen = append(p.seen, r.Method+" "+r.URL.String())
	p.mu.Unlock()
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.Host = r.URL.Host
	out.URL.Host = net.JoinHostPort("127.0.0.1", r.URL.Port())
	resp, err := http.DefaultTransport.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

func randomString(t *testing.T) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", b)
}

// basicAdmin is the simulator's basic-auth credential as sent on the wire.
const basicAdmin = "YWRtaW46YWRtaW4=" // base64("admin:admin")

// lastLine is the last non-empty line of a log: the reaper's final error.
func lastLine(log string) string {
	lines := strings.Split(strings.TrimSpace(log), "\n")
	return lines[len(lines)-1]
}
