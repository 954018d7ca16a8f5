package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// configureTLS applies airflow.tls to the network transport: extra trusted
// CAs, a client certificate for mutual TLS, or (loudly) no verification.
func configureTLS(t *http.Transport, c TLS, log *slog.Logger) error {
	if c == (TLS{}) {
		return nil
	}
	cfg := t.TLSClientConfig
	if cfg == nil {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return fmt.Errorf("airflow.tls.caFile: %w", err)
		}
		// Added to the system roots, not instead of them: a private CA
		// for Airflow must not stop a public one from working through a
		// proxy that re-signs, and the other way round.
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("airflow.tls.caFile %s holds no PEM certificate", c.CAFile)
		}
		cfg.RootCAs = pool
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return errors.New("airflow.tls: a client certificate needs both airflow.tls.certFile and airflow.tls.keyFile")
	}
	if c.CertFile != "" {
		kp := &keyPair{certFile: c.CertFile, keyFile: c.KeyFile}
		if _, err := kp.get(); err != nil {
			return err
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return kp.get() }
	}
	if c.InsecureSkipVerify {
		cfg.InsecureSkipVerify = true
		log.Warn("airflow.tls.insecureSkipVerify is true: the Airflow server's identity is not checked, so anyone on the network path can read the credentials sent and forge the answers the reaper deletes pods on; trust its CA with airflow.tls.caFile instead")
	}
	t.TLSClientConfig = cfg
	return nil
}

// keyPair is the client certificate, re-read when either file changes:
// cert-manager and mounted Secrets rotate certificates in place, and a
// daemon must not keep presenting an expired one.
type keyPair struct {
	certFile, keyFile string

	mu      sync.Mutex
	certMod time.Time
	keyMod  time.Time
	loaded  *tls.Certificate
}

func (k *keyPair) get() (*tls.Certificate, error) {
	cs, err := os.Stat(k.certFile)
	if err != nil {
		return nil, fmt.Errorf("airflow.tls.certFile: %w", err)
	}
	ks, err := os.Stat(k.keyFile)
	if err != nil {
		return nil, fmt.Errorf("airflow.tls.keyFile: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.loaded != nil && cs.ModTime().Equal(k.certMod) && ks.ModTime().Equal(k.keyMod) {
		return k.loaded, nil
	}
	// LoadX509KeyPair's errors describe the PEM blocks found, never their
	// content.
	c, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		err = fmt.Errorf("airflow.tls.certFile %s and airflow.tls.keyFile %s: %w", k.certFile, k.keyFile, err)
		if k.loaded != nil {
			// Half-way through a rotation (the certificate written, the
			// key not yet): keep the previous pair until both match.
			return k.loaded, nil
		}
		return nil, err
	}
	k.loaded, k.certMod, k.keyMod = &c, cs.ModTime(), ks.ModTime()
	return k.loaded, nil
}

// tlsErrorRT turns TLS failures into errors that name airflow.tls and are
// not retried: a handshake that failed on trust or on a client certificate
// fails the same way every time.
type tlsErrorRT struct {
	next       http.RoundTripper
	clientCert bool // airflow.tls.certFile is set
}

func (t *tlsErrorRT) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err == nil {
		return resp, nil
	}
	if hint := tlsHint(err, t.clientCert); hint != "" {
		return nil, &permanent{fmt.Errorf("TLS with Airflow at %s failed: %w: %s", req.URL.Host, err, hint)}
	}
	return nil, err
}

// tlsHint names the airflow.tls key that fixes a TLS error, or returns ""
// when err is not one that a configuration change fixes.
func tlsHint(err error, clientCert bool) string {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	var rec tls.RecordHeaderError
	switch {
	case errors.As(err, &unknown):
		return "the server's certificate is not signed by a trusted CA: trust its CA with airflow.tls.caFile"
	case errors.As(err, &host):
		return "the server's certificate does not name the host of airflow.url: use a name it is valid for"
	case errors.As(err, &invalid):
		return "the server's certificate is invalid (expired, or not for serving TLS): check it and airflow.tls.caFile"
	case errors.As(err, &verify):
		return "the server's certificate did not verify: check airflow.tls.caFile"
	case errors.As(err, &rec):
		return "the server did not answer TLS: does airflow.url need http:// instead of https://?"
	}
	// A TLS alert from the server arrives as a *net.OpError "remote error"
	// wrapping an unexported alert type, so only its text tells which.
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" {
		return ""
	}
	msg := op.Err.Error()
	for _, alert := range []string{"certificate required", "handshake failure", "bad certificate",
		"unknown certificate authority", "certificate expired", "certificate revoked", "unsupported certificate",
		"access denied"} {
		if !strings.Contains(msg, alert) {
			continue
		}
		// TLS 1.3 says "certificate required" for a missing client
		// certificate; TLS 1.2 servers often just fail the handshake.
		if clientCert {
			return "the server refused the client certificate: check airflow.tls.certFile and airflow.tls.keyFile"
		}
		return "the server wants a client certificate: set airflow.tls.certFile and airflow.tls.keyFile"
	}
	return ""
}
