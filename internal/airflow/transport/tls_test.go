package transport

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testPKI is a CA with a server certificate for airflow.test and 127.0.0.1
// and a client certificate, written as PEM files.
type testPKI struct {
	caFile, certFile, keyFile string // CA; client certificate and key
	pool                      *x509.CertPool
	server                    tls.Certificate
	keyPEM                    []byte // the client key, to look for leaks
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey := newKey(t)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kpo-reaper test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, usage x509.ExtKeyUsage, dns []string, ips []net.IP) ([]byte, []byte) {
		key := newKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "kpo-reaper test"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			DNSNames: dns, IPAddresses: ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	}
	p := &testPKI{pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	scert, skey := issue(2, x509.ExtKeyUsageServerAuth, []string{"airflow.test"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if p.server, err = tls.X509KeyPair(scert, skey); err != nil {
		t.Fatal(err)
	}
	ccert, ckey := issue(3, x509.ExtKeyUsageClientAuth, nil, nil)
	p.keyPEM = ckey
	p.caFile, p.certFile, p.keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	for f, b := range map[string][]byte{
		p.caFile:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		p.certFile: ccert, p.keyFile: ckey,
	} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// tlsServer serves 200 JSON over TLS with the PKI's server certificate;
// with mutual, only to clients presenting a certificate of the PKI.
func (p *testPKI) tlsServer(t *testing.T, mutual bool, calls *atomic.Int32) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		writeJSON(w, 200, `{"version":"3.2.1"}`)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{p.server}}
	if mutual {
		srv.TLS.ClientAuth, srv.TLS.ClientCAs = tls.RequireAndVerifyClientCert, p.pool
	}
	// The handshake failures the tests provoke are expected; keep them out
	// of the test output.
	srv.Config.ErrorLog = slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func TestTLSCAFileAndClientCertificate(t *testing.T) {
	p := newTestPKI(t)
	var calls atomic.Int32
	srv := p.tlsServer(t, true, &calls)
	o := fastOptions()
	o.TLS = TLS{CAFile: p.caFile, CertFile: p.certFile, KeyFile: p.keyFile}
	resp, err := get(t, mustNew(t, o), srv.URL+"/api/v2/version")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("mutual TLS with caFile, certFile and keyFile: %v", err)
	}
	if calls.Load() != 1 {
		t.Fatalf("%d calls", calls.Load())
	}
}

func TestTLSWithoutClientCertificateNamesTheKeys(t *testing.T) {
	p := newTestPKI(t)
	var calls atomic.Int32
	srv := p.tlsServer(t, true, &calls)
	var sent atomic.Int32
	o := fastOptions()
	o.TLS = TLS{CAFile: p.caFile}
	o.Observer = func(string, string, int, time.Duration) { sent.Add(1) }
	_, err := get(t, mustNew(t, o), srv.URL+"/api/v2/version")
	if err == nil || !strings.Contains(err.Error(), "airflow.tls.certFile") || !strings.Contains(err.Error(), "certificate required") {
		t.Fatalf("without a client certificate: %v, want an error naming airflow.tls.certFile", err)
	}
	if sent.Load() != 1 {
		t.Errorf("a refused handshake was sent %d times, want once: it fails the same way every time", sent.Load())
	}
	if calls.Load() != 0 {
		t.Errorf("the handler ran %d times without a client certificate", calls.Load())
	}
}

func TestTLSUnknownCANamesCAFile(t *testing.T) {
	p, other := newTestPKI(t), newTestPKI(t)
	var calls atomic.Int32
	srv := p.tlsServer(t, false, &calls)
	var sent atomic.Int32
	for name, c := range map[string]TLS{"system roots": {}, "another CA": {CAFile: other.caFile}} {
		sent.Store(0)
		o := fastOptions()
		o.TLS = c
		o.Observer = func(string, string, int, time.Duration) { sent.Add(1) }
		_, err := get(t, mustNew(t, o), srv.URL+"/api/v2/version")
		if err == nil || !strings.Contains(err.Error(), "airflow.tls.caFile") || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("%s: %v, want a certificate error naming airflow.tls.caFile", name, err)
		}
		if sent.Load() != 1 {
			t.Errorf("%s: sent %d times, want once", name, sent.Load())
		}
	}
}

func TestTLSFileErrors(t *testing.T) {
	p := newTestPKI(t)
	dir := t.TempDir()
	noCert := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(noCert, []byte("# no certificate here\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		tls  TLS
		want string
	}{
		{TLS{CAFile: noCert}, "airflow.tls.caFile"},
		{TLS{CAFile: filepath.Join(dir, "absent.pem")}, "airflow.tls.caFile"},
		{TLS{CertFile: p.certFile}, "airflow.tls.keyFile"},
		{TLS{CertFile: filepath.Join(dir, "absent.pem"), KeyFile: p.keyFile}, "airflow.tls.certFile"},
		{TLS{CertFile: p.certFile, KeyFile: p.caFile}, "airflow.tls.keyFile"}, // a certificate where the key should be
	} {
		o := fastOptions()
		o.TLS = c.tls
		_, err := New(o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error naming %s", c.tls, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), strings.Split(string(p.keyPEM), "\n")[1]) {
			t.Errorf("%+v: the error quotes the private key: %v", c.tls, err)
		}
	}
}

func TestTLSInsecureSkipVerifyWarnsAtEveryStart(t *testing.T) {
	p := newTestPKI(t)
	var calls atomic.Int32
	srv := p.tlsServer(t, false, &calls)
	for i := 0; i < 2; i++ {
		var logs bytes.Buffer
		o := fastOptions()
		o.TLS = TLS{InsecureSkipVerify: true}
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		hc := mustNew(t, o)
		if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "airflow.tls.insecureSkipVerify is true: the Airflow server's identity is not checked") {
			t.Fatalf("start %d: no warning in the log:\n%s", i, logs.String())
		}
		if resp, err := get(t, hc, srv.URL+"/api/v2/version"); err != nil || resp.StatusCode != 200 {
			t.Fatalf("insecureSkipVerify against an unknown CA: %v", err)
		}
	}
}

// TestTLSClientCertificateRotation: a rotated certificate is presented on
// the next connection without a restart.
func TestTLSClientCertificateRotation(t *testing.T) {
	p := newTestPKI(t)
	second := newTestPKI(t)
	var seen []string
	var mu sync.Mutex
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, string(r.TLS.PeerCertificates[0].Raw))
		mu.Unlock()
		writeJSON(w, 200, `{}`)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{p.server}, ClientAuth: tls.RequireAnyClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	install := func(from *testPKI, mtime time.Time) {
		for src, dst := range map[string]string{from.certFile: cert, from.keyFile: key} {
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, b, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(dst, mtime, mtime); err != nil {
				t.Fatal(err)
			}
		}
	}
	t0 := time.Now().Add(-time.Hour)
	install(p, t0)
	o := fastOptions()
	o.TLS = TLS{CAFile: p.caFile, CertFile: cert, KeyFile: key}
	hc := mustNew(t, o)
	if _, err := get(t, hc, srv.URL+"/"); err != nil {
		t.Fatal(err)
	}
	install(second, t0.Add(time.Second))
	hc.CloseIdleConnections() // a new handshake, as after the server closed an idle connection
	if _, err := get(t, hc, srv.URL+"/"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0] == seen[1] {
		t.Fatalf("%d client certificates presented (the same twice: %v), want the first, then the rotated one", len(seen), len(seen) == 2 && seen[0] == seen[1])
	}
}

// forwardProxy is an HTTP forward proxy that resolves every host name to
// 127.0.0.1 itself, so that a test can use a name (airflow.test) that the
// client cannot resolve and ProxyFromEnvironment does not exempt as
// localhost. It records the requests it forwarded and the CONNECT tunnels
// it opened.
type forwardProxy struct {
	mu   sync.Mutex
	seen []string // "GET http://airflow.test:1234/path" or "CONNECT airflow.test:1234"
}

func (f *forwardProxy) record(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = append(f.seen, s)
}

func (f *forwardProxy) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.seen...)
}

func localAddr(hostport string) string {
	_, port, _ := net.SplitHostPort(hostport)
	return net.JoinHostPort("127.0.0.1", port)
}

func (f *forwardProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		f.record("CONNECT " + r.Host)
		up, err := net.Dial("tcp", localAddr(r.Host))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusOK)
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			up.Close()
			return
		}
		go func() {
			defer up.Close()
			_, _ = io.Copy(up, buf)
		}()
		_, _ = io.Copy(conn, up)
		conn.Close()
		return
	}
	if !r.URL.IsAbs() {
		http.Error(w, "not a proxy request", http.StatusBadRequest)
		return
	}
	f.record(r.Method + " " + r.URL.String())
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Host = localAddr(r.URL.Host)
	out.Host = r.URL.Host
	resp, err := http.DefaultTransport.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// TestProxyFromEnvironment: HTTP_PROXY and HTTPS_PROXY are honoured (https
// through a CONNECT tunnel, with airflow.tls applied end to end) and
// NO_PROXY exempts a host. net/http reads the proxy variables once per
// process, so the requests are made by a child process of this test binary
// that starts with them set (TestProxyChild).
func TestProxyFromEnvironment(t *testing.T) {
	p := newTestPKI(t)
	var calls atomic.Int32
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		writeJSON(w, 200, `{"via":"plain"}`)
	}))
	t.Cleanup(plain.Close)
	secure := p.tlsServer(t, true, &calls)
	direct := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		writeJSON(w, 200, `{"via":"direct"}`)
	}))
	t.Cleanup(direct.Close)
	fp := &forwardProxy{}
	proxy := httptest.NewServer(fp)
	t.Cleanup(proxy.Close)

	port := func(s *httptest.Server) string { u, _ := url.Parse(s.URL); return u.Port() }
	urls := []string{
		"http://airflow.test:" + port(plain) + "/api/v2/version",
		"https://airflow.test:" + port(secure) + "/api/v2/version",
		"http://127.0.0.1:" + port(direct) + "/api/v2/version", // never proxied: localhost
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestProxyChild$", "-test.v")
	cmd.Env = append(os.Environ(),
		"KPO_REAPER_PROXY_CHILD_URLS="+strings.Join(urls, " "),
		"KPO_REAPER_PROXY_CHILD_TLS="+strings.Join([]string{p.caFile, p.certFile, p.keyFile}, " "),
		"HTTP_PROXY="+proxy.URL, "HTTPS_PROXY="+proxy.URL, "NO_PROXY=", "http_proxy=", "https_proxy=", "no_proxy=")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "proxy child: 3 ok") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	want := []string{"GET " + urls[0], "CONNECT airflow.test:" + port(secure)}
	if got := fp.requests(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("the proxy saw %q, want %q", got, want)
	}
	if calls.Load() != 3 {
		t.Fatalf("the servers answered %d requests, want 3", calls.Load())
	}
}

// TestProxyChild is TestProxyFromEnvironment's child: it does nothing when
// run by itself.
func TestProxyChild(t *testing.T) {
	urls := os.Getenv("KPO_REAPER_PROXY_CHILD_URLS")
	if urls == "" {
		t.Skip("run by TestProxyFromEnvironment")
	}
	files := strings.Fields(os.Getenv("KPO_REAPER_PROXY_CHILD_TLS"))
	o := fastOptions()
	o.MaxRetries = 0
	o.TLS = TLS{CAFile: files[0], CertFile: files[1], KeyFile: files[2]}
	hc := mustNew(t, o)
	n := 0
	for _, u := range strings.Fields(urls) {
		resp, err := get(t, hc, u)
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		line, _ := bufio.NewReader(resp.Body).ReadString('\n')
		t.Logf("%s: %d %s", u, resp.StatusCode, line)
		n++
	}
	t.Logf("proxy child: %d ok", n)
}
