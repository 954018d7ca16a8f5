package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// The system roots are read once per process, so each case runs this test
// binary again with SSL_CERT_FILE and SSL_CERT_DIR pointing where it says.
const rootsChildEnv = "KPO_REAPER_ROOTS_CHILD"

// TestRootsChild is the child's side: it prints what x509.SystemCertPool
// holds, "fallback" or "system", and whether the CA in $KPO_REAPER_ROOTS_CA
// (if any) verifies the leaf in $KPO_REAPER_ROOTS_LEAF.
func TestRootsChild(t *testing.T) {
	if os.Getenv(rootsChildEnv) != "1" {
		t.Skip("run by TestCARoots")
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		t.Fatalf("SystemCertPool: %v", err)
	}
	kind := "system"
	if pool.Equal(fallbackPool(t)) {
		kind = "fallback"
	}
	verified := "no-leaf"
	if leafPEM := os.Getenv("KPO_REAPER_ROOTS_LEAF"); leafPEM != "" {
		b, _ := pem.Decode([]byte(leafPEM))
		leaf, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		verified = "verified"
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool}); err != nil {
			verified = "unverified"
		}
	}
	os.Stdout.WriteString("roots=" + kind + " leaf=" + verified + "\n")
}

// fallbackPool builds the pool golang.org/x/crypto/x509roots/fallback
// installs, from the same bundle.
func fallbackPool(t *testing.T) *x509.CertPool {
	p := x509.NewCertPool()
	for c := range bundle.Roots() {
		cert, err := x509.ParseCertificate(c.Certificate)
		if err != nil {
			t.Fatal(err)
		}
		if c.Constraint == nil {
			p.AddCert(cert)
		} else {
			p.AddCertWithConstraint(cert, c.Constraint)
		}
	}
	return p
}

// TestCARoots: on an image with no CA roots (the container image has no
// base) the binary trusts the bundled Mozilla roots; where the system has
// roots, those are used and the bundle is not.
func TestCARoots(t *testing.T) {
	dir := t.TempDir()
	caPEM, leafPEM := testChain(t)
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	emptyDir := filepath.Join(dir, "empty")
	if err := os.Mkdir(emptyDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, certFile, certDir, want string
	}{
		// No file, no directory: what the container image looks like.
		{"no system roots", filepath.Join(dir, "missing.pem"), emptyDir, "roots=fallback leaf=unverified"},
		{"system roots", caFile, emptyDir, "roots=system leaf=verified"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestRootsChild$", "-test.v")
			cmd.Env = append(os.Environ(),
				rootsChildEnv+"=1",
				"SSL_CERT_FILE="+tc.certFile,
				"SSL_CERT_DIR="+tc.certDir,
				"KPO_REAPER_ROOTS_LEAF="+string(leafPEM),
			)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), tc.want+"\n") {
				t.Fatalf("child printed\n%s\nwant a line %q", out, tc.want)
			}
		})
	}
}

// testChain returns a fresh CA and a leaf it signed, as PEM.
func testChain(t *testing.T) (caPEM, leafPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kpo-reaper test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "airflow.example"},
		DNSNames:     []string{"airflow.example"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER})
}
