package chart

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// knownConfigKeys are the leaf keys of config/kpo-reaper.yaml plus the
// server and leaderElection keys.
func knownConfigKeys(t *testing.T) map[string]bool {
	t.Helper()
	var example map[string]any
	if err := yaml.Unmarshal(repoFile(t, "config/kpo-reaper.yaml"), &example); err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, p := range leafPaths("", example) {
		known[p] = true
	}
	for _, p := range []string{"server.address", "leaderElection.enabled", "leaderElection.leaseName", "leaderElection.leaseNamespace",
		"leaderElection.leaseDuration", "leaderElection.renewDeadline", "leaderElection.retryPeriod"} {
		known[p] = true
	}
	return known
}

func checkConfigKeys(t *testing.T, where string, cfg map[string]any) {
	t.Helper()
	known := knownConfigKeys(t)
	for _, p := range leafPaths("", cfg) {
		if !known[p] {
			t.Errorf("%s: config key %q is not a kpo-reaper config key", where, p)
		}
	}
}

func configOf(t *testing.T, cm *unstructured.Unstructured) map[string]any {
	t.Helper()
	data, _, _ := unstructured.NestedString(cm.Object, "data", "kpo-reaper.yaml")
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(data), &cfg); err != nil || cfg == nil {
		t.Fatalf("ConfigMap %s: kpo-reaper.yaml: %v\n%s", cm.GetName(), err, data)
	}
	return cfg
}

// TestManifestsParse: every YAML file under deploy/manifests and
// deploy/airflow-chart-sidecar parses, and each document is an object.
func TestManifestsParse(t *testing.T) {
	for _, dir := range []string{"deploy/manifests", "deploy/airflow-chart-sidecar"} {
		root := repoPath(t, dir)
		var n int
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
				return err
			}
			rel, _ := filepath.Rel(repoPath(t, ""), path)
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			n++
			if filepath.Base(path) == "kustomization.yaml" || filepath.Base(path) == "values-snippet.yaml" {
				var m map[string]any
				if err := yaml.Unmarshal(b, &m); err != nil || len(m) == 0 {
					t.Errorf("%s: %v", rel, err)
				}
				return nil
			}
			if _, err := parseStream(b); err != nil {
				t.Errorf("%s: %v", rel, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Errorf("no YAML under %s", dir)
		}
	}
	// The e2e applies these by name.
	for _, f := range []string{"serviceaccount.yaml", "role.yaml", "rolebinding.yaml"} {
		repoFile(t, "deploy/manifests/"+f)
	}
}

// build runs kustomize on an in-memory copy of deploy/manifests, through an
// overlay outside it using the given components, as the docs tell users to.
func build(t *testing.T, components ...string) *rendered {
	t.Helper()
	fsys := filesys.MakeFsInMemory()
	src := repoPath(t, "deploy/manifests")
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return fsys.WriteFile(filepath.Join("/repo/deploy/manifests", rel), b)
	})
	if err != nil {
		t.Fatal(err)
	}
	target := "/repo/deploy/manifests"
	if len(components) > 0 {
		var comps []string
		for _, c := range components {
			comps = append(comps, "../../deploy/manifests/"+c)
		}
		overlay := fmt.Sprintf("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [../../deploy/manifests]\ncomponents: [%s]\n", strings.Join(comps, ", "))
		if err := fsys.WriteFile("/repo/overlays/x/kustomization.yaml", []byte(overlay)); err != nil {
			t.Fatal(err)
		}
		target = "/repo/overlays/x"
	}
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fsys, target)
	if err != nil {
		t.Fatalf("kustomize build %v: %v", components, err)
	}
	out, err := m.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	return parseTemplates(t, map[string][]byte{"all.yaml": out})
}

func checkRoles(t *testing.T, r *rendered, want map[string]map[rule]bool) {
	t.Helper()
	got := map[string]bool{}
	for _, role := range r.all("Role") {
		got[role.GetName()] = true
		w, ok := want[role.GetName()]
		if !ok {
			t.Errorf("unexpected Role %s", role.GetName())
			continue
		}
		if g := rulesOf(t, role); fmt.Sprint(sortedRules(g)) != fmt.Sprint(sortedRules(w)) {
			t.Errorf("Role %s rules:\n got  %v\n want %v", role.GetName(), sortedRules(g), sortedRules(w))
		}
	}
	for name := range want {
		if !got[name] {
			t.Errorf("no Role %s", name)
		}
	}
	if n := len(r.all("ClusterRole")); n != 0 {
		t.Errorf("%d ClusterRoles", n)
	}
}

func TestManifestsKustomize(t *testing.T) {
	chartRole := func(values map[string]any) map[string]map[rule]bool {
		out := map[string]map[rule]bool{}
		for _, role := range renderObjects(t, values).all("Role") {
			out[role.GetName()] = rulesOf(t, role)
		}
		return out
	}

	t.Run("base", func(t *testing.T) {
		r := build(t)
		if got := fmt.Sprint(r.kinds()); got != "map[ConfigMap:1 Deployment:1 Role:1 RoleBinding:1 Service:1 ServiceAccount:1]" {
			t.Errorf("kinds = %s", got)
		}
		// Same least privilege as the chart.
		checkRoles(t, r, chartRole(baseValues()))
		r.deployment(t, "1", "Recreate")
		c := r.container(t)
		if str(c, "livenessProbe", "httpGet", "path") != "/healthz" || str(c, "readinessProbe", "httpGet", "path") != "/readyz" {
			t.Errorf("probes: %v / %v", c["livenessProbe"], c["readinessProbe"])
		}
		env := envByName(c)
		if str(env["POD_NAME"], "valueFrom", "fieldRef", "fieldPath") != "metadata.name" || str(env["POD_NAMESPACE"], "valueFrom", "fieldRef", "fieldPath") != "metadata.namespace" {
			t.Errorf("POD_NAME/POD_NAMESPACE not from the downward API: %v", env)
		}
		if str(env["KPO_REAPER_AIRFLOW_AUTH_PASSWORD"], "valueFrom", "secretKeyRef", "name") != "kpo-reaper-airflow" {
			t.Errorf("password not from the Secret: %v", env["KPO_REAPER_AIRFLOW_AUTH_PASSWORD"])
		}
		checkRestricted(t, "deploy/manifests", r.podTemplate(t))
		cfg := configOf(t, r.one(t, "ConfigMap"))
		checkConfigKeys(t, "deploy/manifests", cfg)
		if str(cfg, "server", "address") != ":8080" || str(cfg, "reaper", "dryRun") != "true" || str(cfg, "leaderElection", "enabled") != "false" {
			t.Errorf("config = %v", cfg)
		}
		svc := r.one(t, "Service")
		if v, _, _ := unstructured.NestedBool(svc.Object, "spec", "publishNotReadyAddresses"); !v {
			t.Errorf("Service does not publish not-ready addresses")
		}
		if n := len(r.all("Secret")); n != 0 {
			t.Errorf("manifests contain %d Secrets", n)
		}
		// The image follows the chart's appVersion.
		ch, err := Load()
		if err != nil {
			t.Fatal(err)
		}
		if want := "ghcr.io/kpo-reaper/kpo-reaper:" + ch.Metadata.AppVersion; c["image"] != want {
			t.Errorf("image = %v, want %s (the chart's appVersion)", c["image"], want)
		}
	})

	t.Run("leader-election", func(t *testing.T) {
		r := build(t, "leader-election")
		checkRoles(t, r, chartRole(withAll(baseValues(), "leaderElection.enabled", true, "replicaCount", 2)))
		d := r.deployment(t, "2", "RollingUpdate")
		if _, ok, _ := unstructured.NestedFieldNoCopy(d.Object, "spec", "strategy", "rollingUpdate"); !ok {
			t.Errorf("no rollingUpdate")
		}
		env := envByName(r.container(t))
		if str(env["KPO_REAPER_LEADERELECTION_ENABLED"], "value") != "true" {
			t.Errorf("leader election not enabled: %v", env)
		}
		if _, ok := env["KPO_REAPER_AIRFLOW_AUTH_PASSWORD"]; !ok {
			t.Errorf("the patch dropped the base env")
		}
	})

	t.Run("cronjob", func(t *testing.T) {
		r := build(t, "cronjob")
		if got := fmt.Sprint(r.kinds()); got != "map[ConfigMap:1 CronJob:1 Role:1 RoleBinding:1 ServiceAccount:1]" {
			t.Errorf("kinds = %s", got)
		}
		checkRoles(t, r, chartRole(with(baseValues(), "mode", "cronjob")))
		cj := r.one(t, "CronJob")
		if str(cj.Object, "spec", "concurrencyPolicy") != "Forbid" || str(cj.Object, "spec", "schedule") != "*/5 * * * *" {
			t.Errorf("CronJob spec = %v", cj.Object["spec"])
		}
		c := r.container(t)
		if !strings.Contains(fmt.Sprint(c["args"]), "--once") {
			t.Errorf("args = %v", c["args"])
		}
		checkRestricted(t, "cronjob", r.podTemplate(t))
		cfg := configOf(t, r.one(t, "ConfigMap"))
		checkConfigKeys(t, "cronjob", cfg)
		if got, ok := cfg["server"].(map[string]any)["address"]; !ok || got != "" {
			t.Errorf("server.address = %v, want \"\"", got)
		}
		// Otherwise the same configuration as the base.
		base := configOf(t, build(t).one(t, "ConfigMap"))
		base["server"] = cfg["server"]
		if fmt.Sprint(base) != fmt.Sprint(cfg) {
			t.Errorf("cronjob config drifted from the base:\n base    %v\n cronjob %v", base, cfg)
		}
	})
}

func checkRestricted(t *testing.T, where string, tpl map[string]any) {
	t.Helper()
	pod := tpl["spec"].(map[string]any)
	psc, _ := pod["securityContext"].(map[string]any)
	if psc["runAsNonRoot"] != true || str(psc, "seccompProfile", "type") != "RuntimeDefault" {
		t.Errorf("%s: pod securityContext = %v", where, psc)
	}
	for _, c := range pod["containers"].([]any) {
		checkContainerRestricted(t, where, c.(map[string]any))
	}
}

func checkContainerRestricted(t *testing.T, where string, c map[string]any) {
	t.Helper()
	sc, _ := c["securityContext"].(map[string]any)
	if sc == nil || sc["runAsNonRoot"] != true || fmt.Sprint(sc["runAsUser"]) != "65532" || sc["readOnlyRootFilesystem"] != true ||
		sc["allowPrivilegeEscalation"] != false || fmt.Sprint(strs(sc["capabilities"].(map[string]any)["drop"])) != "[ALL]" ||
		str(sc, "seccompProfile", "type") != "RuntimeDefault" {
		t.Errorf("%s: container %v securityContext not restricted: %v", where, c["name"], sc)
	}
}

func TestAirflowChartSidecar(t *testing.T) {
	var snippet map[string]any
	if err := yaml.Unmarshal(repoFile(t, "deploy/airflow-chart-sidecar/values-snippet.yaml"), &snippet); err != nil {
		t.Fatal(err)
	}
	sched := snippet["scheduler"].(map[string]any)
	containers := sched["extraContainers"].([]any)
	if len(containers) != 1 {
		t.Fatalf("extraContainers = %v", containers)
	}
	c := containers[0].(map[string]any)
	checkContainerRestricted(t, "sidecar", c)
	if _, ok := c["readinessProbe"]; ok {
		t.Errorf("the sidecar must not have a readiness probe (it would make the scheduler pod unready)")
	}
	if str(c, "livenessProbe", "httpGet", "path") != "/healthz" {
		t.Errorf("livenessProbe = %v", c["livenessProbe"])
	}
	env := envByName(c)
	if str(env["POD_NAME"], "valueFrom", "fieldRef", "fieldPath") != "metadata.name" || str(env["POD_NAMESPACE"], "valueFrom", "fieldRef", "fieldPath") != "metadata.namespace" {
		t.Errorf("POD_NAME/POD_NAMESPACE: %v", env)
	}
	for name, e := range env {
		if strings.HasPrefix(name, "KPO_REAPER_AIRFLOW_AUTH_") && e["value"] != nil {
			t.Errorf("%s inlined", name)
		}
	}
	if strings.Contains(fmt.Sprint(snippet), "{{") {
		t.Errorf("the snippet must not rely on the Airflow chart's tpl")
	}
	// The volume the container mounts names the ConfigMap we ship.
	objs, err := parseStream(repoFile(t, "deploy/airflow-chart-sidecar/configmap.yaml"))
	if err != nil || len(objs) != 1 {
		t.Fatalf("configmap.yaml: %v", err)
	}
	cm := objs[0]
	vols := sched["extraVolumes"].([]any)
	if str(vols[0].(map[string]any), "configMap", "name") != cm.GetName() {
		t.Errorf("extraVolumes = %v, ConfigMap %s", vols, cm.GetName())
	}
	cfg := configOf(t, cm)
	checkConfigKeys(t, "sidecar", cfg)
	if str(cfg, "leaderElection", "enabled") != "true" || str(cfg, "reaper", "dryRun") != "true" {
		t.Errorf("sidecar config = %v", cfg)
	}
	port := strings.TrimPrefix(str(cfg, "server", "address"), ":")
	if ports := c["ports"].([]any); str(ports[0].(map[string]any), "containerPort") != port {
		t.Errorf("containerPort %v, server.address %q", ports, str(cfg, "server", "address"))
	}

	// RBAC: the chart's least privilege, bound to the scheduler's ServiceAccount.
	objs, err = parseStream(repoFile(t, "deploy/airflow-chart-sidecar/rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	r := &rendered{objs: objs}
	checkRoles(t, r, map[string]map[rule]bool{"kpo-reaper": reaperRules, "kpo-reaper-leader-election": leaseRules(str(cfg, "leaderElection", "leaseName"))})
	for _, b := range r.all("RoleBinding") {
		subjects, _, _ := unstructured.NestedSlice(b.Object, "subjects")
		s := subjects[0].(map[string]any)
		if s["kind"] != "ServiceAccount" || s["name"] != "airflow-scheduler" {
			t.Errorf("RoleBinding %s subject = %v", b.GetName(), s)
		}
	}
}
