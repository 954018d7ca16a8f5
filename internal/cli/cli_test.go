package cli

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	os.WriteFile(kc, []byte("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://"+addr+"'}}]\n"+
		"contexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\nusers: [{name: u, user: {}}]\n"), 0o600)
	os.WriteFile(p, []byte("airflow:\n  url: http://"+addr+"\n  maxRetries: 0\n  timeout: 2s\nkubernetes:\n  namespaces: [a]\n  kubeconfig: "+kc+"\n"), 0o600)
	code, _, errOut := run("run", "--once", "--config", p)
	if code != ExitCycleFailed || !strings.Contains(errOut, "nothing deleted") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

