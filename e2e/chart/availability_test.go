package chart

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

func TestPodDisruptionBudgetOnWhenMoreThanOneReplica(t *testing.T) {
	ha := withAll(baseValues(), "replicaCount", 2, "leaderElection.enabled", true)
	for _, tc := range []struct {
		name   string
		values map[string]any
		want   string // "" for no PDB, else the budget's field=value
	}{
		{"one replica", baseValues(), ""},
		{"two replicas", ha, "maxUnavailable=1"},
		{"two replicas, turned off", with(ha, "podDisruptionBudget.enabled", false), ""},
		{"one replica, turned on", with(baseValues(), "podDisruptionBudget.enabled", true), "maxUnavailable=1"},
		{"minAvailable 50%", with(ha, "podDisruptionBudget.minAvailable", "50%"), "minAvailable=50%"},
		{"cronjob, turned on", withAll(baseValues(), "mode", "cronjob", "podDisruptionBudget.enabled", true), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := renderObjects(t, tc.values)
			pdbs := r.all("PodDisruptionBudget")
			if tc.want == "" {
				if len(pdbs) != 0 {
					t.Fatalf("rendered a PodDisruptionBudget: %v", pdbs[0].Object)
				}
				return
			}
			if len(pdbs) != 1 {
				t.Fatalf("want one PodDisruptionBudget, kinds %v", r.kinds())
			}
			spec := pdbs[0].Object["spec"].(map[string]any)
			field, value, _ := strings.Cut(tc.want, "=")
			if fmt.Sprint(spec[field]) != value {
				t.Errorf("spec.%s = %v, want %s (spec %v)", field, spec[field], value, spec)
			}
			if _, both := spec["minAvailable"]; both && spec["maxUnavailable"] != nil {
				t.Errorf("both minAvailable and maxUnavailable: %v", spec)
			}
			sel, _, _ := unstructured.NestedStringMap(spec, "selector", "matchLabels")
			labels, _, _ := unstructured.NestedStringMap(r.podTemplate(t), "metadata", "labels")
			if len(sel) == 0 {
				t.Fatalf("no selector")
			}
			for k, v := range sel {
				if labels[k] != v {
					t.Errorf("selector %s=%s does not select the pods (%v)", k, v, labels)
				}
			}
		})
	}
	// The plain manifests' HA component brings one too.
	if n := len(build(t, "leader-election").all("PodDisruptionBudget")); n != 1 {
		t.Errorf("deploy/manifests leader-election: %d PodDisruptionBudgets, want 1", n)
	}
	if n := len(build(t).all("PodDisruptionBudget")); n != 0 {
		t.Errorf("deploy/manifests (one replica): %d PodDisruptionBudgets, want 0", n)
	}
}

// checkPodUID: the container gets its pod's uid from the downward API, which
// the CycleFailedClosed Warning needs to name the pod (kubectl describe pod).
func checkPodUID(t *testing.T, where string, c map[string]any) {
	t.Helper()
	if got := str(envByName(c)["POD_UID"], "valueFrom", "fieldRef", "fieldPath"); got != "metadata.uid" {
		t.Errorf("%s: env POD_UID fieldPath = %q, want metadata.uid", where, got)
	}
}

func TestPodUIDFromTheDownwardAPI(t *testing.T) {
	for _, mode := range []string{"deployment", "cronjob"} {
		checkPodUID(t, "chart "+mode, renderObjects(t, with(baseValues(), "mode", mode)).container(t))
	}
	for _, comps := range [][]string{nil, {"leader-election"}, {"cronjob"}} {
		checkPodUID(t, fmt.Sprintf("deploy/manifests %v", comps), build(t, comps...).container(t))
	}
	checkPodUID(t, "airflow-chart-sidecar", sidecarContainer(t))
}

func sidecarContainer(t *testing.T) map[string]any {
	t.Helper()
	var snippet map[string]any
	if err := yaml.Unmarshal(repoFile(t, "deploy/airflow-chart-sidecar/values-snippet.yaml"), &snippet); err != nil {
		t.Fatal(err)
	}
	cs, _, _ := unstructured.NestedSlice(snippet, "scheduler", "extraContainers")
	if len(cs) != 1 {
		t.Fatalf("sidecar snippet: extraContainers = %v", cs)
	}
	return cs[0].(map[string]any)
}

// The memory request is the measured footprint (docs/operations.md, "Memory
// and CPU") in every shape, so the scheduler places the reaper where it fits.
func TestMemoryRequestIsTheMeasuredFootprint(t *testing.T) {
	const want = "64Mi"
	check := func(where string, c map[string]any) {
		t.Helper()
		if got := str(c, "resources", "requests", "memory"); got != want {
			t.Errorf("%s: memory request %q, want %s", where, got, want)
		}
	}
	for _, mode := range []string{"deployment", "cronjob"} {
		check("chart "+mode, renderObjects(t, with(baseValues(), "mode", mode)).container(t))
	}
	for _, comps := range [][]string{nil, {"cronjob"}} {
		check(fmt.Sprintf("deploy/manifests %v", comps), build(t, comps...).container(t))
	}
	check("airflow-chart-sidecar", sidecarContainer(t))
	if doc := string(repoFile(t, "docs/operations.md")); !strings.Contains(doc, "The chart asks for "+want) {
		t.Errorf("docs/operations.md does not say the chart asks for %s", want)
	}
}

func TestNetworkPolicy(t *testing.T) {
	if n := len(renderObjects(t, baseValues()).all("NetworkPolicy")); n != 0 {
		t.Fatalf("a NetworkPolicy by default")
	}
	type port struct{ Port, Protocol string }
	policy := func(t *testing.T, values map[string]any) (*rendered, []port, []any) {
		t.Helper()
		r := renderObjects(t, with(values, "networkPolicy.enabled", true))
		np := r.one(t, "NetworkPolicy")
		sel, _, _ := unstructured.NestedStringMap(np.Object, "spec", "podSelector", "matchLabels")
		labels, _, _ := unstructured.NestedStringMap(r.podTemplate(t), "metadata", "labels")
		for k, v := range sel {
			if labels[k] != v {
				t.Errorf("podSelector %s=%s does not select the pods (%v)", k, v, labels)
			}
		}
		if len(sel) == 0 {
			t.Errorf("empty podSelector would select every pod of the namespace")
		}
		if got := fmt.Sprint(strs(np.Object["spec"].(map[string]any)["policyTypes"])); got != "[Ingress Egress]" {
			t.Errorf("policyTypes = %s", got)
		}
		var ports []port
		egress, _, _ := unstructured.NestedSlice(np.Object, "spec", "egress")
		for _, e := range egress {
			ps, _ := e.(map[string]any)["ports"].([]any)
			for _, p := range ps {
				ports = append(ports, port{str(p.(map[string]any), "port"), str(p.(map[string]any), "protocol")})
			}
		}
		ingress, _, _ := unstructured.NestedSlice(np.Object, "spec", "ingress")
		return r, ports, ingress
	}
	has := func(ports []port, p port) bool {
		for _, q := range ports {
			if q == p {
				return true
			}
		}
		return false
	}

	_, ports, ingress := policy(t, baseValues())
	for _, p := range []port{{"53", "UDP"}, {"53", "TCP"}, {"443", "TCP"}, {"6443", "TCP"}, {"8080", "TCP"}} {
		if !has(ports, p) {
			t.Errorf("egress lacks %v: %v", p, ports)
		}
	}
	if len(ports) != 5 {
		t.Errorf("egress ports %v, want DNS, the Kubernetes API and Airflow only", ports)
	}
	if len(ingress) != 1 || fmt.Sprint(ingress[0]) != "map[ports:[map[port:http-metrics protocol:TCP]]]" {
		t.Errorf("ingress = %v, want the metrics port from anywhere", ingress)
	}

	// Airflow's port follows airflow.url, its scheme, MWAA, or the override.
	for _, tc := range []struct {
		name   string
		values map[string]any
		port   string
	}{
		{"https without a port", with(baseValues(), "airflow.url", "https://airflow.example.com/prefix"), "443"},
		{"http without a port", with(baseValues(), "airflow.url", "http://airflow.example.com"), "80"},
		{"IPv6 with a port", with(baseValues(), "airflow.url", "http://[fd00::1]:8081"), "8081"},
		{"mwaa", withAll(baseValues(), "airflow.url", "", "airflow.auth", map[string]any{"type": "mwaa"},
			"airflow.mwaa", map[string]any{"environment": "e", "region": "eu-west-1"}), "443"},
		{"override", with(baseValues(), "networkPolicy.airflowPort", 8443), "8443"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ports, _ := policy(t, tc.values)
			if !has(ports, port{tc.port, "TCP"}) {
				t.Errorf("egress %v lacks Airflow's port %s", ports, tc.port)
			}
		})
	}

	// Who may scrape, extra egress, and the CronJob, which serves nothing.
	peer := map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{"kubernetes.io/metadata.name": "monitoring"}}}
	extra := map[string]any{"to": []any{map[string]any{"ipBlock": map[string]any{"cidr": "169.254.169.254/32"}}}, "ports": []any{map[string]any{"port": 80, "protocol": "TCP"}}}
	_, ports, ingress = policy(t, withAll(baseValues(), "networkPolicy.metricsFrom", []any{peer}, "networkPolicy.extraEgress", []any{extra}))
	if len(ingress) != 1 || !strings.Contains(fmt.Sprint(ingress[0]), "from:[map[namespaceSelector:map[matchLabels:map[kubernetes.io/metadata.name:monitoring]]]]") {
		t.Errorf("ingress = %v, want from the monitoring namespace", ingress)
	}
	if !has(ports, port{"80", "TCP"}) {
		t.Errorf("extraEgress not applied: %v", ports)
	}
	r, _, ingress := policy(t, with(baseValues(), "mode", "cronjob"))
	if len(ingress) != 0 {
		t.Errorf("cronjob ingress = %v, want none", ingress)
	}
	checkStrict(t, "cronjob NetworkPolicy", r.objs)
}

// An airflow.url that already holds the API path is refused by the schema,
// before anything is installed; a base URL with a path prefix is fine.
func TestSchemaRejectsAirflowURLWithAPIPath(t *testing.T) {
	expectSchemaErrors(t, map[string]map[string]any{
		"/api/v2":          with(baseValues(), "airflow.url", "http://airflow-api-server.airflow:8080/api/v2"),
		"/api/v1/":         with(baseValues(), "airflow.url", "http://airflow-webserver.airflow:8080/api/v1/"),
		"prefix + /api/v2": with(baseValues(), "airflow.url", "https://example.com/airflow/api/v2"),
	})
	for _, ok := range []string{"https://example.com/airflow", "http://airflow-webserver.airflow:8080/"} {
		if err := renderErr(t, with(baseValues(), "airflow.url", ok)); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
}

// The sidecar snippet adds the reaper to the scheduler pods and changes
// nothing else of the user's scheduler: not its replicas.
func TestSidecarSnippetLeavesTheSchedulerAlone(t *testing.T) {
	var snippet map[string]any
	if err := yaml.Unmarshal(repoFile(t, "deploy/airflow-chart-sidecar/values-snippet.yaml"), &snippet); err != nil {
		t.Fatal(err)
	}
	if len(snippet) != 1 || snippet["scheduler"] == nil {
		t.Fatalf("the snippet sets %v, want only scheduler.*", snippet)
	}
	var keys []string
	for k := range snippet["scheduler"].(map[string]any) {
		keys = append(keys, k)
	}
	for _, k := range keys {
		switch k {
		case "extraContainers", "extraVolumes", "serviceAccount":
		default:
			t.Errorf("the snippet sets scheduler.%s", k)
		}
	}
	// serviceAccount: only the token mount the reaper needs, which is the chart's default.
	if sa := fmt.Sprint(snippet["scheduler"].(map[string]any)["serviceAccount"]); sa != "map[automountServiceAccountToken:true]" {
		t.Errorf("scheduler.serviceAccount = %s", sa)
	}
}

func TestGrafanaDashboardConfigMap(t *testing.T) {
	if cms := renderObjects(t, baseValues()).all("ConfigMap"); len(cms) != 1 {
		t.Fatalf("%d ConfigMaps by default, want only the configuration", len(cms))
	}
	r := renderObjects(t, withAll(baseValues(), "grafanaDashboard.enabled", true, "grafanaDashboard.namespace", "monitoring",
		"grafanaDashboard.annotations", map[string]any{"grafana_folder": "Airflow"}))
	var cm *unstructured.Unstructured
	for _, c := range r.all("ConfigMap") {
		if c.GetName() == "kpo-reaper-dashboard" {
			cm = c
		}
	}
	if cm == nil {
		t.Fatalf("no kpo-reaper-dashboard ConfigMap: %v", r.kinds())
	}
	if cm.GetLabels()["grafana_dashboard"] != "1" || cm.GetNamespace() != "monitoring" || cm.GetAnnotations()["grafana_folder"] != "Airflow" {
		t.Errorf("ConfigMap metadata: labels %v, namespace %q, annotations %v", cm.GetLabels(), cm.GetNamespace(), cm.GetAnnotations())
	}
	data, _, _ := unstructured.NestedString(cm.Object, "data", "kpo-reaper.json")
	file := string(repoFile(t, "deploy/helm/kpo-reaper/dashboards/kpo-reaper.json"))
	if data != strings.TrimSuffix(file, "\n") {
		t.Errorf("the ConfigMap does not hold dashboards/kpo-reaper.json as it is")
	}
	checkDashboard(t, []byte(data))
}

// exportedMetrics are the series the binary serves (internal/metrics; the
// docs test keeps docs/operations.md in step with them).
var exportedMetrics = []string{"kpo_reaper_cycles_total", "kpo_reaper_cycle_duration_seconds", "kpo_reaper_last_successful_cycle_timestamp_seconds",
	"kpo_reaper_pods", "kpo_reaper_deletions_total", "kpo_reaper_airflow_requests_total", "kpo_reaper_airflow_request_duration_seconds",
	"kpo_reaper_pods_awaiting_confirmation", "kpo_reaper_dry_run_would_delete", "kpo_reaper_leader", "kpo_reaper_build_info"}

// checkDashboard: the dashboard is JSON Grafana loads, and every query asks
// for series the binary exports.
func checkDashboard(t *testing.T, b []byte) {
	t.Helper()
	var d struct {
		UID    string `json:"uid"`
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	if d.UID == "" || d.Title == "" || len(d.Panels) == 0 {
		t.Fatalf("dashboard without uid, title or panels")
	}
	known := map[string]bool{"process_resident_memory_bytes": true}
	for _, m := range exportedMetrics {
		known[m] = true
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			known[m+s] = true
		}
	}
	used := map[string]bool{}
	name := regexp.MustCompile(`\b(kpo_reaper_[a-z_]+|process_[a-z_]+)\b`)
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			ms := name.FindAllString(tg.Expr, -1)
			if len(ms) == 0 {
				t.Errorf("panel %q queries no kpo-reaper series: %s", p.Title, tg.Expr)
			}
			for _, m := range ms {
				if !known[m] {
					t.Errorf("panel %q queries %s, which kpo-reaper does not export", p.Title, m)
				}
				used[strings.TrimSuffix(m, "_bucket")] = true
			}
			if !strings.Contains(tg.Expr, `namespace=~"$namespace",job=~"$job"`) {
				t.Errorf("panel %q does not filter by the dashboard's variables: %s", p.Title, tg.Expr)
			}
		}
	}
	for _, m := range exportedMetrics {
		if !used[m] {
			t.Errorf("the dashboard shows nothing of %s", m)
		}
	}
}
