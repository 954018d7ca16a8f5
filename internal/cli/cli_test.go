package cli

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/kpo-reaper/kpo-reaper/internal/decision"
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
	p := tempFile(t, "c.yaml", "airflow:\n  url: http://x\nkubernetes:\n  namespaces: [a]\nreaper:\n  confirmations: 0\n")
	code, _, errOut := run("run", "--once", "--config", p)
	if code != ExitUsage || !strings.Contains(errOut, "reaper.confirmations") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

func TestUnreachableAirflowFailsTheCycle(t *testing.T) {
	addr := unreachable(t) // nothing listens there now
	p := tempFile(t, "c.yaml", "airflow:\n  url: http://"+addr+"\n  maxRetries: 0\n  timeout: 2s\nkubernetes:\n  namespaces: [a]\n  kubeconfig: "+kubeconfig(t, addr)+"\n")
	code, _, errOut := run("run", "--once", "--config", p)
	if code != ExitCycleFailed || !strings.Contains(errOut, "nothing deleted") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

func TestVersionFlag(t *testing.T) {
	if code, out, _ := run("--version"); code != 0 || !strings.HasPrefix(out, "kpo-reaper version ") || strings.Count(out, "\n") != 1 {
		t.Fatalf("%d %q", code, out)
	}
}

func TestUnknownCommandIsAUsageError(t *testing.T) {
	for _, args := range [][]string{{"reap"}, {"run", "extra"}, {"plan", "--no-such-flag"}} {
		if code, _, errOut := run(args...); code != ExitUsage || !strings.Contains(errOut, "error:") {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
}

// TestKubectlFlags: the kubectl spellings map onto the configuration keys;
// plan, which never deletes and runs once, has no --dry-run or --interval.
func TestKubectlFlags(t *testing.T) {
	for _, cmd := range []*cobra.Command{(&app{}).newRun(), (&app{}).newPlan()} {
		for long, short := range map[string]string{"namespace": "n", "all-namespaces": "A", "selector": "l", "context": "", "kubeconfig": ""} {
			f := cmd.Flags().Lookup(long)
			if f == nil || f.Shorthand != short {
				t.Errorf("%s: --%s with shorthand %q missing (%v)", cmd.Name(), long, short, f)
			}
		}
	}
	plan := (&app{}).newPlan()
	for _, name := range []string{"dry-run", "interval"} {
		if plan.Flags().Lookup(name) != nil {
			t.Errorf("plan offers --%s", name)
		}
	}
	if (&app{}).newRun().Flags().Lookup("dry-run") == nil {
		t.Error("run lost --dry-run")
	}

	cmd := (&app{}).newPlan()
	if err := cmd.ParseFlags([]string{"--airflow-url", "http://airflow:8080", "-n", "a", "-n", "b", "-l", "team=data", "--context", "prod"}); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig(cmd)
	if err != nil {
		t.Fatal(err)
	}
	k := c.Kubernetes
	if strings.Join(k.Namespaces, ",") != "a,b" || k.LabelSelector != "team=data" || k.Context != "prod" {
		t.Errorf("kubernetes: %+v", k)
	}
	cmd = (&app{}).newRun()
	if err := cmd.ParseFlags([]string{"--airflow-url", "http://airflow:8080", "-A"}); err != nil {
		t.Fatal(err)
	}
	if c, err := loadConfig(cmd); err != nil || !c.Kubernetes.AllNamespaces {
		t.Errorf("-A: %v %v", c, err)
	}
}

// TestEachConfigProblemOnItsOwnLine: every problem of a configuration is
// printed, each on its own line under the first.
func TestEachConfigProblemOnItsOwnLine(t *testing.T) {
	p := tempFile(t, "c.yaml", "reaper:\n  confirmations: 0\n  maxDeletesPerCycle: 0\n")
	code, _, errOut := run("run", "--once", "--config", p)
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	if code != ExitUsage || len(lines) != 5 || lines[0] != "error: invalid configuration:" {
		t.Fatalf("exit %d:\n%s", code, errOut)
	}
	for _, key := range []string{"airflow.url", "kubernetes.namespaces", "reaper.confirmations", "reaper.maxDeletesPerCycle"} {
		n := 0
		for _, l := range lines[1:] {
			if strings.HasPrefix(l, "  "+key+": ") {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s: %d lines, want 1:\n%s", key, n, errOut)
		}
	}
}

// TestFinalErrorIsAJSONLineInJSONMode: with log.format json, every line
// of stderr is JSON, the final error included.
func TestFinalErrorIsAJSONLineInJSONMode(t *testing.T) {
	addr := unreachable(t)
	p := tempFile(t, "c.yaml", "airflow:\n  url: http://"+addr+"\n  maxRetries: 0\nkubernetes:\n  namespaces: [a]\n  kubeconfig: "+kubeconfig(t, addr)+"\nlog:\n  format: json\n")
	code, _, errOut := run("run", "--once", "--config", p)
	if code != ExitCycleFailed {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	for _, l := range lines {
		if !json.Valid([]byte(l)) {
			t.Errorf("not a JSON line: %s", l)
		}
	}
	var last struct {
		Level, Msg, Error string
		ExitCode          int
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.Level != "ERROR" || last.Msg != "exiting" ||
		!strings.Contains(last.Error, "nothing deleted") || last.ExitCode != ExitCycleFailed {
		t.Errorf("last line %+v (%v)", last, err)
	}
	var start map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &start); err != nil {
		t.Fatal(err)
	}
	cfg, _ := start["config"].(map[string]any)
	reaper, _ := cfg["reaper"].(map[string]any)
	if reaper["interval"] != "1m0s" {
		t.Errorf("the start-up line does not carry the configuration as one group: %v", start)
	}
}

func pp(ns, name string, v decision.Verdict) reaper.PodReport {
	return reaper.PodReport{Decision: decision.Decision{Pod: decision.Pod{Namespace: ns, Name: name}, Verdict: v, Reason: "r", Detail: "detail-of-" + name}}
}

// TestPlanRowsAndFormats: rows sort by verdict (reap, skip, keep), then
// namespace/name; DETAIL shows only in wide; json and yaml carry the same
// sorted pods.
func TestPlanRowsAndFormats(t *testing.T) {
	rep := &reaper.Report{Pods: []reaper.PodReport{
		pp("b", "k1", decision.Keep), pp("a", "z", decision.Reap), pp("b", "s", decision.Skip), pp("a", "k2", decision.Keep), pp("a", "a", decision.Reap),
	}}
	want := []string{"a/a", "a/z", "b/s", "a/k2", "b/k1"}
	var table, wide, js, ym bytes.Buffer
	for w, o := range map[*bytes.Buffer]string{&table: "table", &wide: "wide", &js: "json", &ym: "yaml"} {
		if err := writePlan(w, o, rep); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, l := range strings.Split(table.String(), "\n")[1:6] {
		got = append(got, strings.Fields(l)[0])
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("table rows %v, want %v", got, want)
	}
	if strings.Contains(table.String(), "DETAIL") || strings.Contains(table.String(), "detail-of-") {
		t.Errorf("table shows DETAIL:\n%s", table.String())
	}
	if !strings.Contains(strings.Split(wide.String(), "\n")[0], "DETAIL") || !strings.Contains(wide.String(), "detail-of-z") {
		t.Errorf("wide lacks DETAIL:\n%s", wide.String())
	}
	var doc struct{ Pods []PlanPod }
	for name, b := range map[string][]byte{"json": js.Bytes(), "yaml": ym.Bytes()} {
		doc.Pods = nil
		if err := yaml.UnmarshalStrict(b, &doc); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, b)
		}
		got = got[:0]
		for _, p := range doc.Pods {
			got = append(got, p.Namespace+"/"+p.Name)
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s pods %v, want %v", name, got, want)
		}
	}
}

func unreachable(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func kubeconfig(t *testing.T, addr string) string {
	t.Helper()
	return tempFile(t, "kubeconfig", "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://"+addr+"'}}]\n"+
		"contexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\nusers: [{name: u, user: {}}]\n")
}

// tempFile writes body to a file of that name in a new temporary folder.
func tempFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
