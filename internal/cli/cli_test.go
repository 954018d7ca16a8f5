package cli

import (
	"bytes"
	"context"
	"encoding/json"
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

func run(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := Main(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestSelectorText(t *testing.T) {
	code, out, _ := run("selector", "--dag-id", "kpo_zombie_dag", "--task-id", "mapped_kpo_task", "--run-id", "manual__2016-01-01T00:00:00+00:00", "--map-index", "0")
	want := "dag_id=kpo_zombie_dag,kubernetes_pod_operator=True,map_index=0,run_id=manual__2016-01-01T0000000000-2b88d1d57,task_id=mapped_kpo_task\n"
	if code != 0 || out != want {
		t.Fatalf("code %d\n got %q\nwant %q", code, out, want)
	}
}

func TestSelectorJSON(t *testing.T) {
	code, out, _ := run("selector", "--dag-id", "d", "--task-id", "t", "--run-id", "r", "--try-number", "3", "-o", "json")
	var m map[string]string
	if code != 0 || json.Unmarshal([]byte(out), &m) != nil {
		t.Fatalf("code %d out %q", code, out)
	}
	if m["try_number"] != "3" || m["kubernetes_pod_operator"] != "True" || len(m) != 5 {
		t.Fatalf("labels %v (map_index must be absent for unmapped)", m)
	}
}

func TestSelectorBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"selector", "--task-id", "t", "--run-id", "r"},
		{"selector", "--dag-id", "d", "--task-id", "t", "--run-id", "r", "-o", "yaml"},
		{"selector", "--dag-id", "d", "--task-id", "t", "--run-id", "r", "--map-index", "-5"},
		{"selector", "--dag-id", "d", "--task-id", "t", "--run-id", "r", "--map-index", "x"},
	} {
		if code, _, errOut := run(args...); code != ExitUsage || !strings.Contains(errOut, "error:") {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
}

func TestVersion(t *testing.T) {
	if code, out, _ := run("version"); code != 0 || !strings.HasPrefix(out, "kpo-reaper ") {
		t.Fatalf("%d %q", code, out)
	}
}

func TestBadConfigIsAUsageError(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(p, []byte("airflow:\n  url: http://x\nkubernetes:\n  namespaces: [a]\nreaper:\n  confirmations: 0\n"), 0o600)
	code, _, errOut := run("run", "--once", "--config", p)
	if code != ExitUsage || !strings.Contains(errOut, "reaper.confirmations") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

func TestUnreachableAirflowFailsTheCycle(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	p := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(p, []byte("airflow:\n  url: http://"+addr+"\n  maxRetries: 0\n  timeout: 2s\nkubernetes:\n  namespaces: [a]\n  kubeconfig: /nonexistent\n"), 0o600)
	code, _, errOut := run("run", "--once", "--config", p)
	if code != ExitCycleFailed || !strings.Contains(errOut, "nothing deleted") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

// TestStartupErrorKeepsItsCause: a start-up failure is ErrStartup, not a
// cycle failure, reads as one always has, and its cause stays reachable.
func TestStartupErrorKeepsItsCause(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := config.Default()
	c.Airflow.URL, c.Airflow.MaxRetries, c.Airflow.Timeout = "http://"+addr, 0, 2*time.Second
	_, err = connectEdges(context.Background(), &c, slog.New(slog.DiscardHandler), nil)
	var op *net.OpError
	if !errors.Is(err, ErrStartup) || errors.Is(err, reaper.ErrCycleFailed) || !errors.As(err, &op) {
		t.Fatalf("want ErrStartup wrapping a *net.OpError, got %v", err)
	}
	if !strings.HasPrefix(err.Error(), "cycle failed closed, nothing deleted: airflow: ") {
		t.Errorf("message: %v", err)
	}
}

func TestSelfFromEnv(t *testing.T) {
	t.Setenv("POD_NAME", "kpo-reaper-0")
	t.Setenv("POD_NAMESPACE", "ops")
	t.Setenv("POD_UID", "u0")
	if got := selfFromEnv(); got != (Self{Name: "kpo-reaper-0", Namespace: "ops", UID: "u0"}) {
		t.Fatalf("%+v", got)
	}
}
