package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kpo-reaper/kpo-reaper/internal/config"
	"github.com/kpo-reaper/kpo-reaper/internal/reaper"
)

// unreachable is a loopback address nothing listens on.
func unreachable(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// kubeconfig writes a kubeconfig for an apiserver at addr.
func kubeconfig(t *testing.T, addr string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubeconfig")
	kc := "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://" + addr + "'}}]\n" +
		"contexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\nusers: [{name: u, user: {}}]\n"
	if err := os.WriteFile(p, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestStartupErrorKeepsItsCause: a start-up failure of --once is
// ErrStartup, not a cycle failure, reads as one always has, and its cause
// stays reachable.
func TestStartupErrorKeepsItsCause(t *testing.T) {
	c := config.Default()
	c.Airflow.URL, c.Airflow.MaxRetries, c.Airflow.Timeout = "http://"+unreachable(t), 0, 2*time.Second
	c.Kubernetes.Namespaces, c.Kubernetes.Kubeconfig = []string{"a"}, kubeconfig(t, unreachable(t))
	err := Run(context.Background(), Options{Config: &c, Once: true, Log: slog.New(slog.DiscardHandler)})
	var op *net.OpError
	if !errors.Is(err, ErrStartup) || errors.Is(err, reaper.ErrCycleFailed) || !errors.As(err, &op) {
		t.Fatalf("want ErrStartup wrapping a *net.OpError, got %v", err)
	}
	if !strings.HasPrefix(err.Error(), "cycle failed closed, nothing deleted: airflow: ") {
		t.Errorf("message: %v", err)
	}
}

// TestBadKubeconfigIsAConfigError: what is wrong before anything is asked
// over the network is the configuration's, and the daemon does not wait
// for it to change.
func TestBadKubeconfigIsAConfigError(t *testing.T) {
	c := config.Default()
	c.Airflow.URL = "http://" + unreachable(t)
	c.Kubernetes.Namespaces, c.Kubernetes.Kubeconfig = []string{"a"}, filepath.Join(t.TempDir(), "missing")
	c.Server.Address = "127.0.0.1:0"
	err := Run(t.Context(), Options{Config: &c, Log: slog.New(slog.DiscardHandler)})
	var ce ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "kubernetes.kubeconfig") {
		t.Fatalf("want a ConfigError naming kubernetes.kubeconfig, got %v", err)
	}
}

func TestSelfFromEnv(t *testing.T) {
	t.Setenv("POD_NAME", "kpo-reaper-0")
	t.Setenv("POD_NAMESPACE", "ops")
	t.Setenv("POD_UID", "u0")
	if got := SelfFromEnv(); got != (Self{Name: "kpo-reaper-0", Namespace: "ops", UID: "u0"}) {
		t.Fatalf("%+v", got)
	}
}
