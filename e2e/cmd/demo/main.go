// Command demo shows kpo-reaper on real parts: it starts etcd and
// kube-apiserver, an Airflow REST API simulator serving the seed DAG of
// apache/airflow#58968, creates the DAG's four KPO pods, prints the reaper's
// plan, runs one real cycle and shows what was deleted and what was kept,
// then tears everything down.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http/httptest"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kpo-reaper/kpo-reaper/e2e/airflowsim"
	"github.com/kpo-reaper/kpo-reaper/e2e/fixture"
	"github.com/kpo-reaper/kpo-reaper/e2e/harness"
)

const namespace = "airflow"

func main() {
	reaper := flag.String("reaper", "", "path of the kpo-reaper binary (default: bin/kpo-reaper)")
	api := flag.String("api", "v2", "Airflow API to simulate: v1 (Airflow 2.10) or v2 (Airflow 3.2)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *reaper, *api); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) {
	fmt.Printf("\n==> "+format+"\n", args...)
}

func run(ctx context.Context, bin, api string) (err error) {
	if bin == "" {
		if bin, err = fixture.ReaperBinary(); err != nil {
			return err
		}
	}
	scenarioFile := map[string]string{"v1": "seed-v1.yaml", "v2": "seed-v2.yaml"}[api]
	if scenarioFile == "" {
		return fmt.Errorf("--api %q: use v1 or v2", api)
	}

	step("Starting etcd and kube-apiserver v1.37 (real binaries built from the Go module proxy; no kubelet, so only a force delete removes a pod)")
	cluster, err := harness.Start(ctx, harness.Options{})
	if err != nil {
		return err
	}
	defer func() {
		step("Tearing down: stopping kube-apiserver, etcd and the Airflow simulator")
		if stopErr := cluster.Stop(); stopErr != nil && err == nil {
			err = stopErr
		}
	}()
	fmt.Println("    kube-apiserver at", cluster.ServerURL())

	step("Applying the shipped RBAC (deploy/manifests) to namespace %q; the reaper runs as its ServiceAccount", namespace)
	kubeconfig, err := fixture.ApplyShippedRBAC(ctx, cluster, namespace)
	if err != nil {
		return err
	}

	step("Creating the seed DAG's KubernetesPodOperator pods (each Running: base container done, sidecar `sleep infinity`)")
	if err := fixture.CreatePods(ctx, cluster, namespace, fixture.SeedPods()); err != nil {
		return err
	}
	for _, p := range fixture.SeedPods() {
		fmt.Printf("    %s  (dag %s, task %s, map_index %d)\n", p.Name, p.DagID, p.TaskID, p.MapIndex)
	}

	step("Starting the Airflow %s REST API simulator with DAG %s, run %s", api, fixture.SeedDag, fixture.SeedRun)
	// The pods were created a moment ago; the finished task instances end
	// now, so the pods are older than their end and the reaper may judge them.
	scenario, err := fixture.SeedScenario(scenarioFile)
	if err != nil {
		return err
	}
	sim := airflowsim.New(scenario)
	srv := httptest.NewServer(sim)
	defer func() { sim.Close(); srv.Close() }()
	fmt.Println("    Airflow API at", srv.URL+sim.BasePath())
	fmt.Println("    zombie_kpo_task: success        healthy_kpo_task: running")
	fmt.Println("    mapped_kpo_task[0]: success     mapped_kpo_task[1]: running")

	dir, err := os.MkdirTemp("", "kpo-reaper-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg, err := fixture.Config{
		AirflowURL: srv.URL, AuthType: fixture.AuthFor(sim.APIVersion()),
		Kubeconfig: kubeconfig, Namespace: namespace, Confirmations: 1,
	}.Write(dir)
	if err != nil {
		return err
	}

	step("kpo-reaper plan  (never deletes anything)")
	res, err := fixture.Run(ctx, bin, "plan", "--config", cfg)
	if err != nil {
		return err
	}
	fmt.Print(indent(res.Stdout))
	if res.ExitCode != 0 {
		return fmt.Errorf("plan exited %d: %s", res.ExitCode, res.Stderr)
	}
	planJSON, err := fixture.Run(ctx, bin, "plan", "--config", cfg, "-o", "json")
	if err != nil || planJSON.ExitCode != 0 {
		return fmt.Errorf("plan -o json: %w %s", err, planJSON.Stderr)
	}

	step("kpo-reaper run --once --dry-run=false  (one real cycle)")
	res, err = fixture.Run(ctx, bin, "run", "--once", "--dry-run=false", "--config", cfg)
	if err != nil {
		return err
	}
	for _, line := range strings.Split(strings.TrimSpace(res.Stderr), "\n") {
		if strings.Contains(line, "msg=pod") || strings.Contains(line, "msg=cycle") {
			fmt.Println("    " + line)
		}
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("run --once exited %d:\n%s", res.ExitCode, res.Stderr)
	}

	step("What is left in namespace %q", namespace)
	return report(ctx, cluster, planJSON.Stdout)
}

type planPod struct {
	Name, Verdict, Reason, Task, TIState string
}

func report(ctx context.Context, cluster *harness.Cluster, planOut string) error {
	var plan struct {
		Pods []planPod `json:"pods"`
	}
	if err := json.Unmarshal([]byte(planOut), &plan); err != nil {
		return fmt.Errorf("reading plan -o json: %w", err)
	}
	list, err := cluster.Admin().CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	present := map[string]bool{}
	for _, p := range list.Items {
		present[p.Name] = p.DeletionTimestamp == nil
	}
	sort.Slice(plan.Pods, func(i, j int) bool { return plan.Pods[i].Name < plan.Pods[j].Name })
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "    POD\tTASK STATE\tVERDICT\tREASON\tNOW")
	var wrong []string
	for _, p := range plan.Pods {
		now := "kept (still Running)"
		if !present[p.Name] {
			now = "DELETED"
		}
		fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\t%s\n", p.Name, p.TIState, p.Verdict, p.Reason, now)
		if (p.Verdict == "reap") == present[p.Name] {
			wrong = append(wrong, p.Name)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(wrong) > 0 {
		return errors.New("pods whose outcome does not match the plan: " + strings.Join(wrong, ", "))
	}
	fmt.Println("\n    The two zombies were force-deleted at once; the two pods whose task instances are running were kept.")
	return nil
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return "    " + strings.Join(lines, "\n    ") + "\n"
}
