package chart

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// modes are the installs the chart supports, each with what it must render.
var modes = []struct {
	name   string
	values map[string]any
	// kinds rendered, exactly (count per kind).
	kinds map[string]int
}{
	{
		name:   "deployment",
		values: baseValues(),
		kinds:  map[string]int{"ServiceAccount": 1, "ConfigMap": 1, "Role": 1, "RoleBinding": 1, "Deployment": 1, "Service": 1},
	},
	{
		name:   "cronjob",
		values: with(baseValues(), "mode", "cronjob"),
		kinds:  map[string]int{"ServiceAccount": 1, "ConfigMap": 1, "Role": 1, "RoleBinding": 1, "CronJob": 1},
	},
	{
		name:   "deployment-leader-election-2-replicas",
		values: withAll(baseValues(), "replicaCount", 2, "leaderElection.enabled", true),
		kinds:  map[string]int{"ServiceAccount": 1, "ConfigMap": 1, "Role": 2, "RoleBinding": 2, "Deployment": 1, "Service": 1, "PodDisruptionBudget": 1},
	},
	{
		name:   "all-namespaces",
		values: with(baseValues(), "kubernetes.allNamespaces", true),
		kinds:  map[string]int{"ServiceAccount": 1, "ConfigMap": 1, "ClusterRole": 1, "ClusterRoleBinding": 1, "Deployment": 1, "Service": 1},
	},
	{
		name:   "two-namespaces-not-the-release-one",
		values: with(baseValues(), "kubernetes.namespaces", []any{"team-a", "team-b"}),
		// a Role per watched namespace + one for Events in the reaper's own namespace
		kinds: map[string]int{"ServiceAccount": 1, "ConfigMap": 1, "Role": 3, "RoleBinding": 3, "Deployment": 1, "Service": 1},
	},
	{
		name:   "monitoring",
		values: withAll(baseValues(), "serviceMonitor.enabled", true, "prometheusRule.enabled", true),
		kinds:  map[string]int{"ServiceAccount": 1, "ConfigMap": 1, "Role": 1, "RoleBinding": 1, "Deployment": 1, "Service": 1, "ServiceMonitor": 1, "PrometheusRule": 1},
	},
	{
		name:   "cronjob-monitoring",
		values: withAll(baseValues(), "mode", "cronjob", "prometheusRule.enabled", true),
		kinds:  map[string]int{"ServiceAccount": 1, "ConfigMap": 1, "Role": 1, "RoleBinding": 1, "CronJob": 1, "PrometheusRule": 1},
	},
	{
		name: "cronjob-reap-orphans-confirmation-spacing",
		values: withAll(baseValues(), "mode", "cronjob", "reaper.reapOrphans", true, "reaper.confirmationSpacing", "5m",
			"kubernetes.labelSelector", "airflow-instance=prod"),
		kinds: map[string]int{"ServiceAccount": 1, "ConfigMap": 1, "Role": 1, "RoleBinding": 1, "CronJob": 1},
	},
	{
		name: "bearer-all-namespaces-leader-election",
		values: withAll(baseValues(), "airflow.auth", map[string]any{"type": "bearer", "existingSecret": "astro-token"},
			"kubernetes.allNamespaces", true, "leaderElection.enabled", true, "replicaCount", 3),
		kinds: map[string]int{"ServiceAccount": 1, "ConfigMap": 1, "ClusterRole": 1, "ClusterRoleBinding": 1, "Role": 1, "RoleBinding": 1, "Deployment": 1, "Service": 1, "PodDisruptionBudget": 1},
	},
	{
		name:   "network-policy-dashboard",
		values: withAll(baseValues(), "networkPolicy.enabled", true, "grafanaDashboard.enabled", true),
		kinds:  map[string]int{"ServiceAccount": 1, "ConfigMap": 2, "Role": 1, "RoleBinding": 1, "Deployment": 1, "Service": 1, "NetworkPolicy": 1},
	},
	{
		name:   "cronjob-network-policy",
		values: withAll(baseValues(), "mode", "cronjob", "networkPolicy.enabled", true),
		kinds:  map[string]int{"ServiceAccount": 1, "ConfigMap": 1, "Role": 1, "RoleBinding": 1, "CronJob": 1, "NetworkPolicy": 1},
	},
}

func TestRenderModesKinds(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			r := renderObjects(t, m.values)
			got := r.kinds()
			if fmt.Sprint(got) != fmt.Sprint(m.kinds) {
				t.Fatalf("kinds = %v, want %v", got, m.kinds)
			}
			for _, o := range r.objs {
				switch o.GetKind() {
				case "ClusterRole", "ClusterRoleBinding":
					if o.GetNamespace() != "" {
						t.Errorf("%s/%s is cluster-scoped but has namespace %q", o.GetKind(), o.GetName(), o.GetNamespace())
					}
				default:
					if o.GetNamespace() == "" {
						t.Errorf("%s/%s has no namespace", o.GetKind(), o.GetName())
					}
				}
				if o.GetLabels()["app.kubernetes.io/name"] != "kpo-reaper" || o.GetLabels()["app.kubernetes.io/instance"] != ReleaseName {
					t.Errorf("%s/%s lacks the standard labels: %v", o.GetKind(), o.GetName(), o.GetLabels())
				}
			}
		})
	}
}

func TestDeploymentDefaults(t *testing.T) {
	r := renderObjects(t, baseValues())
	d := r.deployment(t, "1", "Recreate") // never two reapers at once
	c := r.container(t)
	if got := strings.Join(strs(c["args"]), " "); got != "run --config=/etc/kpo-reaper/kpo-reaper.yaml" {
		t.Errorf("args = %q", got)
	}
	if img := fmt.Sprint(c["image"]); !regexp.MustCompile(`^ghcr\.io/kpo-reaper/kpo-reaper:v?[0-9]+\.[0-9]+\.[0-9]+`).MatchString(img) {
		t.Errorf("image = %q, want ghcr.io/kpo-reaper/kpo-reaper:<appVersion>", img)
	}

	// Probes on the server port, which the config serves on.
	ports, _ := c["ports"].([]any)
	if len(ports) != 1 {
		t.Fatalf("ports = %v", ports)
	}
	port := ports[0].(map[string]any)
	if port["name"] != "http-metrics" || fmt.Sprint(port["containerPort"]) != "8080" {
		t.Errorf("port = %v", port)
	}
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		p, _ := c[probe].(map[string]any)
		if p == nil {
			t.Errorf("no %s", probe)
			continue
		}
		if got := str(p, "httpGet", "path"); got != path {
			t.Errorf("%s path = %q, want %q", probe, got, path)
		}
		if got := str(p, "httpGet", "port"); got != "http-metrics" {
			t.Errorf("%s port = %q, want http-metrics", probe, got)
		}
	}
	cfg := r.config(t)
	if got := str(cfg, "server", "address"); got != ":8080" {
		t.Errorf("server.address = %q, want :8080", got)
	}
	if got := str(cfg, "reaper", "dryRun"); got != "true" {
		t.Errorf("reaper.dryRun = %q, want true by default", got)
	}
	if got := fmt.Sprint(cfg["kubernetes"].(map[string]any)["namespaces"]); got != "[airflow]" {
		t.Errorf("kubernetes.namespaces = %s, want the release namespace", got)
	}
	if got := str(cfg, "leaderElection", "enabled"); got != "false" {
		t.Errorf("leaderElection.enabled = %q", got)
	}

	// Downward API identity for leader election and events.
	env := envByName(c)
	for name, field := range map[string]string{"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"} {
		if got := str(env[name], "valueFrom", "fieldRef", "fieldPath"); got != field {
			t.Errorf("env %s fieldPath = %q, want %q", name, got, field)
		}
	}

	// Config mounted from the ConfigMap, with a checksum that rolls the pods.
	mounts, _ := c["volumeMounts"].([]any)
	var mounted bool
	for _, m := range mounts {
		mm := m.(map[string]any)
		if mm["name"] == "config" && mm["mountPath"] == "/etc/kpo-reaper" && mm["readOnly"] == true {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("config not mounted read-only at /etc/kpo-reaper: %v", mounts)
	}
	tpl := r.podTemplate(t)
	cm := r.one(t, "ConfigMap")
	data, _, _ := unstructured.NestedString(cm.Object, "data", "kpo-reaper.yaml")
	sum := sha256.Sum256([]byte(strings.TrimSuffix(data, "\n")))
	if got := str(tpl, "metadata", "annotations", "checksum/config"); got != hex.EncodeToString(sum[:]) {
		t.Errorf("checksum/config = %q, want sha256 of the config %s", got, hex.EncodeToString(sum[:]))
	}
	vols, _, _ := unstructured.NestedSlice(tpl, "spec", "volumes")
	if got := str(vols[0].(map[string]any), "configMap", "name"); got != cm.GetName() {
		t.Errorf("config volume names ConfigMap %q, want %q", got, cm.GetName())
	}

	// The Service exposes the metrics port to the pods, even unready ones.
	svc := r.one(t, "Service")
	sel, _, _ := unstructured.NestedStringMap(svc.Object, "spec", "selector")
	podLabels, _, _ := unstructured.NestedStringMap(tpl, "metadata", "labels")
	for k, v := range sel {
		if podLabels[k] != v {
			t.Errorf("Service selector %s=%s does not match the pod labels %v", k, v, podLabels)
		}
	}
	depSel, _, _ := unstructured.NestedStringMap(d.Object, "spec", "selector", "matchLabels")
	for k, v := range depSel {
		if podLabels[k] != v {
			t.Errorf("Deployment selector %s=%s does not match the pod labels %v", k, v, podLabels)
		}
	}
	svcPorts, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	if got := str(svcPorts[0].(map[string]any), "targetPort"); got != "http-metrics" {
		t.Errorf("Service targetPort = %q", got)
	}
	if v, _, _ := unstructured.NestedBool(svc.Object, "spec", "publishNotReadyAddresses"); !v {
		t.Errorf("Service must publish not-ready addresses: a failing /readyz must not hide the metrics that explain it")
	}
}

func TestCronJob(t *testing.T) {
	r := renderObjects(t, with(baseValues(), "mode", "cronjob"))
	cj := r.one(t, "CronJob")
	for path, want := range map[string]string{
		"spec.schedule":                                     "*/5 * * * *",
		"spec.concurrencyPolicy":                            "Forbid",
		"spec.successfulJobsHistoryLimit":                   "3",
		"spec.failedJobsHistoryLimit":                       "3",
		"spec.jobTemplate.spec.backoffLimit":                "0",
		"spec.jobTemplate.spec.template.spec.restartPolicy": "Never",
	} {
		if got := str(cj.Object, strings.Split(path, ".")...); got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
	c := r.container(t)
	if got := strings.Join(strs(c["args"]), " "); got != "run --config=/etc/kpo-reaper/kpo-reaper.yaml --once" {
		t.Errorf("args = %q", got)
	}
	for _, k := range []string{"ports", "livenessProbe", "readinessProbe"} {
		if _, ok := c[k]; ok {
			t.Errorf("the CronJob's container has %s, but it serves nothing", k)
		}
	}
	cfg := r.config(t)
	if got, ok := cfg["server"].(map[string]any)["address"]; !ok || got != "" {
		t.Errorf("server.address = %v, want \"\" (disabled) in cronjob mode", got)
	}
	if got := str(cfg, "leaderElection", "enabled"); got != "false" {
		t.Errorf("leaderElection.enabled = %q", got)
	}

	r = renderObjects(t, withAll(baseValues(), "mode", "cronjob", "cronjob.schedule", "0 * * * *", "cronjob.concurrencyPolicy", "Replace", "cronjob.timeZone", "Etc/UTC"))
	cj = r.one(t, "CronJob")
	if str(cj.Object, "spec", "schedule") != "0 * * * *" || str(cj.Object, "spec", "concurrencyPolicy") != "Replace" || str(cj.Object, "spec", "timeZone") != "Etc/UTC" {
		t.Errorf("cronjob values not applied: %v", cj.Object["spec"])
	}
}

func TestLeaderElectionHA(t *testing.T) {
	r := renderObjects(t, withAll(baseValues(), "replicaCount", 2, "leaderElection.enabled", true))
	r.deployment(t, "2", "RollingUpdate")
	cfg := r.config(t)
	le := cfg["leaderElection"].(map[string]any)
	want := map[string]any{"enabled": true, "leaseName": "kpo-reaper", "leaseNamespace": testNamespace, "leaseDuration": "15s", "renewDeadline": "10s", "retryPeriod": "2s"}
	if fmt.Sprint(le) != fmt.Sprint(want) {
		t.Errorf("leaderElection = %v, want %v", le, want)
	}
	// The lease Role lives in the lease namespace and names the lease the config uses.
	var leaseRole *unstructured.Unstructured
	for _, role := range r.all("Role") {
		if strings.HasSuffix(role.GetName(), "-leader-election") {
			leaseRole = role
		}
	}
	if leaseRole == nil || leaseRole.GetNamespace() != testNamespace {
		t.Fatalf("no leader-election Role in %s", testNamespace)
	}
	if !strings.Contains(fmt.Sprint(leaseRole.Object["rules"]), "resourceNames:[kpo-reaper]") {
		t.Errorf("lease Role does not name the lease: %v", leaseRole.Object["rules"])
	}

	// A lease elsewhere moves the lease Role with it.
	r = renderObjects(t, withAll(baseValues(), "leaderElection.enabled", true, "leaderElection.leaseNamespace", "kube-leases", "leaderElection.leaseName", "reaper-lock"))
	cfg = r.config(t)
	if str(cfg, "leaderElection", "leaseNamespace") != "kube-leases" || str(cfg, "leaderElection", "leaseName") != "reaper-lock" {
		t.Errorf("leaderElection = %v", cfg["leaderElection"])
	}
	var found bool
	for _, role := range r.all("Role") {
		if strings.HasSuffix(role.GetName(), "-leader-election") && role.GetNamespace() == "kube-leases" &&
			strings.Contains(fmt.Sprint(role.Object["rules"]), "resourceNames:[reaper-lock]") {
			found = true
		}
	}
	if !found {
		t.Errorf("no lease Role for kube-leases/reaper-lock")
	}
}

func TestAllNamespacesConfig(t *testing.T) {
	r := renderObjects(t, with(baseValues(), "kubernetes.allNamespaces", true))
	k := r.config(t)["kubernetes"].(map[string]any)
	if k["allNamespaces"] != true {
		t.Errorf("kubernetes.allNamespaces = %v", k["allNamespaces"])
	}
	if _, ok := k["namespaces"]; ok {
		t.Errorf("kubernetes.namespaces set together with allNamespaces: %v", k)
	}
	crb := r.one(t, "ClusterRoleBinding")
	subjects, _, _ := unstructured.NestedSlice(crb.Object, "subjects")
	if len(subjects) != 1 || str(subjects[0].(map[string]any), "namespace") != testNamespace || str(subjects[0].(map[string]any), "name") != "kpo-reaper" {
		t.Errorf("ClusterRoleBinding subjects = %v", subjects)
	}
}

// TestConfigKeysKnown keeps the rendered configuration to keys kpo-reaper
// knows (config/kpo-reaper.yaml plus the server and leaderElection keys),
// since an unknown key stops it at start-up.
func TestConfigKeysKnown(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			checkConfigKeys(t, m.name, renderObjects(t, m.values).config(t))
		})
	}
}

func leafPaths(prefix string, m map[string]any) []string {
	var out []string
	for k, v := range m {
		p := k
		if prefix != "" {
			p = prefix + "." + k
		}
		if sub, ok := v.(map[string]any); ok {
			out = append(out, leafPaths(p, sub)...)
			continue
		}
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

func TestSecurityContextRestricted(t *testing.T) {
	for _, mode := range []string{"deployment", "cronjob"} {
		t.Run(mode, func(t *testing.T) {
			r := renderObjects(t, with(baseValues(), "mode", mode))
			pod := r.podTemplate(t)["spec"].(map[string]any)
			psc := pod["securityContext"].(map[string]any)
			if psc["runAsNonRoot"] != true || fmt.Sprint(psc["runAsUser"]) != "65532" || str(psc, "seccompProfile", "type") != "RuntimeDefault" {
				t.Errorf("pod securityContext = %v", psc)
			}
			for _, c := range pod["containers"].([]any) {
				sc := c.(map[string]any)["securityContext"].(map[string]any)
				checks := map[string]bool{
					"runAsNonRoot":             sc["runAsNonRoot"] == true,
					"runAsUser 65532":          fmt.Sprint(sc["runAsUser"]) == "65532",
					"readOnlyRootFilesystem":   sc["readOnlyRootFilesystem"] == true,
					"allowPrivilegeEscalation": sc["allowPrivilegeEscalation"] == false,
					"capabilities drop ALL":    fmt.Sprint(strs(sc["capabilities"].(map[string]any)["drop"])) == "[ALL]",
					"no capabilities added":    sc["capabilities"].(map[string]any)["add"] == nil,
					"seccomp RuntimeDefault":   str(sc, "seccompProfile", "type") == "RuntimeDefault",
					"not privileged":           sc["privileged"] == nil || sc["privileged"] == false,
				}
				for what, ok := range checks {
					if !ok {
						t.Errorf("container securityContext: want %s, got %v", what, sc)
					}
				}
			}
			for _, k := range []string{"hostNetwork", "hostPID", "hostIPC"} {
				if pod[k] == true {
					t.Errorf("pod sets %s", k)
				}
			}
			res := r.container(t)["resources"].(map[string]any)
			if str(res, "limits", "memory") == "" || str(res, "requests", "cpu") == "" {
				t.Errorf("resources = %v", res)
			}
		})
	}
}

// secretLiterals appear in values that a test passes but that must never be
// rendered anywhere except in the opt-in Secret.
const (
	literalPassword = "hunter2-s3cr3t"
	literalToken    = "tok-3xyz-s3cr3t"
)

func TestSecretsNotInlined(t *testing.T) {
	cases := []struct {
		name string
		auth map[string]any
		// env var expected to come from the Secret, key
		secretEnv map[string]string
		tokenFile bool
	}{
		{"basic", map[string]any{"type": "basic", "username": "kpo-reaper", "existingSecret": "af"}, map[string]string{"KPO_REAPER_AIRFLOW_AUTH_PASSWORD": "password"}, false},
		{"basic-username-from-secret", map[string]any{"type": "basic", "existingSecret": "af", "usernameKey": "username"}, map[string]string{"KPO_REAPER_AIRFLOW_AUTH_PASSWORD": "password", "KPO_REAPER_AIRFLOW_AUTH_USERNAME": "username"}, false},
		{"airflow-jwt", map[string]any{"type": "airflow-jwt", "username": "kpo-reaper", "existingSecret": "af", "passwordKey": "pw"}, map[string]string{"KPO_REAPER_AIRFLOW_AUTH_PASSWORD": "pw"}, false},
		{"bearer-file", map[string]any{"type": "bearer", "existingSecret": "af"}, map[string]string{}, true},
		{"bearer-env", map[string]any{"type": "bearer", "existingSecret": "af", "mountToken": false, "tokenKey": "api-token"}, map[string]string{"KPO_REAPER_AIRFLOW_AUTH_TOKEN": "api-token"}, false},
		{"none", map[string]any{"type": "none"}, map[string]string{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := renderObjects(t, with(baseValues(), "airflow.auth", tc.auth))
			if n := len(r.all("Secret")); n != 0 {
				t.Errorf("rendered %d Secrets; credentials must come from an existing Secret", n)
			}
			c := r.container(t)
			env := envByName(c)
			for name, e := range env {
				if strings.HasPrefix(name, "KPO_REAPER_AIRFLOW_AUTH_") {
					if _, literal := e["value"]; literal {
						t.Errorf("env %s has a literal value", name)
					}
				}
			}
			for name, key := range tc.secretEnv {
				e := env[name]
				if e == nil || str(e, "valueFrom", "secretKeyRef", "name") != "af" || str(e, "valueFrom", "secretKeyRef", "key") != key {
					t.Errorf("env %s = %v, want secretKeyRef af/%s", name, e, key)
				}
			}
			for name := range env {
				if strings.HasPrefix(name, "KPO_REAPER_AIRFLOW_AUTH_") && tc.secretEnv[name] == "" {
					t.Errorf("unexpected env %s", name)
				}
			}
			auth := r.config(t)["airflow"].(map[string]any)["auth"].(map[string]any)
			for _, k := range []string{"password", "token"} {
				if _, ok := auth[k]; ok {
					t.Errorf("config has airflow.auth.%s", k)
				}
			}
			tpl := r.podTemplate(t)
			vols, _, _ := unstructured.NestedSlice(tpl, "spec", "volumes")
			var tokenVol map[string]any
			for _, v := range vols {
				if v.(map[string]any)["name"] == "airflow-token" {
					tokenVol = v.(map[string]any)
				}
			}
			if tc.tokenFile {
				if tokenVol == nil || str(tokenVol, "secret", "secretName") != "af" {
					t.Fatalf("no token volume from Secret af: %v", vols)
				}
				if got := auth["tokenFile"]; got != "/var/run/secrets/kpo-reaper/airflow/token" {
					t.Errorf("airflow.auth.tokenFile = %v", got)
				}
				// Not a subPath mount: the kubelet only refreshes whole-volume mounts.
				for _, m := range c["volumeMounts"].([]any) {
					mm := m.(map[string]any)
					if mm["name"] == "airflow-token" && mm["subPath"] != nil {
						t.Errorf("token mounted with subPath: rotations would never reach the file")
					}
				}
			} else if tokenVol != nil {
				t.Errorf("unexpected token volume %v", tokenVol)
			}
		})
	}

	// A tokenFile kept fresh by another container needs no Secret at all.
	r := renderObjects(t, with(baseValues(), "airflow.auth", map[string]any{"type": "bearer", "tokenFile": "/var/run/gcp/token"}))
	if got := str(r.config(t), "airflow", "auth", "tokenFile"); got != "/var/run/gcp/token" {
		t.Errorf("tokenFile = %q", got)
	}

	// Inline credentials without the opt-in are refused, never silently rendered.
	for _, k := range []string{"password", "token"} {
		v := with(baseValues(), "airflow.auth."+k, literalPassword)
		err := renderErr(t, v)
		if err == nil || !strings.Contains(err.Error(), "existingSecret") {
			t.Errorf("inline %s without createSecret: err = %v", k, err)
		}
	}
}

func TestInlineSecretOptIn(t *testing.T) {
	v := with(baseValues(), "airflow.auth", map[string]any{"type": "basic", "username": "u", "createSecret": true, "password": literalPassword})
	r := renderObjects(t, v)
	s := r.one(t, "Secret")
	if s.GetName() != "kpo-reaper-airflow" {
		t.Errorf("Secret name %q", s.GetName())
	}
	env := envByName(r.container(t))
	if str(env["KPO_REAPER_AIRFLOW_AUTH_PASSWORD"], "valueFrom", "secretKeyRef", "name") != s.GetName() {
		t.Errorf("password env does not reference the created Secret: %v", env["KPO_REAPER_AIRFLOW_AUTH_PASSWORD"])
	}
	if str(r.podTemplate(t), "metadata", "annotations", "checksum/secret") == "" {
		t.Errorf("no checksum/secret annotation")
	}
	for name, b := range r.templates {
		if name != "templates/secret.yaml" && strings.Contains(string(b), literalPassword) {
			t.Errorf("%s contains the password", name)
		}
	}
	if err := renderErr(t, with(v, "airflow.auth.existingSecret", "other")); err == nil {
		t.Errorf("createSecret together with existingSecret should fail")
	}
}

// rule is one (apiGroup, resource, verb, resourceName) grant.
type rule struct{ group, resource, verb, name string }

func rulesOf(t *testing.T, o *unstructured.Unstructured) map[rule]bool {
	t.Helper()
	out := map[rule]bool{}
	rules, _, _ := unstructured.NestedSlice(o.Object, "rules")
	for _, r := range rules {
		rm := r.(map[string]any)
		if rm["nonResourceURLs"] != nil {
			t.Errorf("%s/%s grants nonResourceURLs", o.GetKind(), o.GetName())
		}
		names := strs(rm["resourceNames"])
		if len(names) == 0 {
			names = []string{""}
		}
		for _, g := range strs(rm["apiGroups"]) {
			for _, res := range strs(rm["resources"]) {
				for _, v := range strs(rm["verbs"]) {
					for _, n := range names {
						out[rule{g, res, v, n}] = true
					}
				}
			}
		}
	}
	return out
}

func ruleSet(rules ...rule) map[rule]bool {
	out := map[rule]bool{}
	for _, r := range rules {
		out[r] = true
	}
	return out
}

// reaperRules are everything kpo-reaper may do in a watched namespace.
var reaperRules = ruleSet(
	rule{"", "pods", "get", ""}, rule{"", "pods", "list", ""}, rule{"", "pods", "watch", ""},
	rule{"", "pods", "patch", ""}, rule{"", "pods", "delete", ""},
	rule{"", "events", "create", ""}, rule{"", "events", "patch", ""},
	rule{"events.k8s.io", "events", "create", ""}, rule{"events.k8s.io", "events", "patch", ""},
)

var eventRules = ruleSet(
	rule{"", "events", "create", ""}, rule{"", "events", "patch", ""},
	rule{"events.k8s.io", "events", "create", ""}, rule{"events.k8s.io", "events", "patch", ""},
)

func leaseRules(name string) map[rule]bool {
	return ruleSet(
		rule{"coordination.k8s.io", "leases", "create", ""},
		rule{"coordination.k8s.io", "leases", "get", name},
		rule{"coordination.k8s.io", "leases", "update", name},
	)
}

func sortedRules(m map[rule]bool) []string {
	var out []string
	for r := range m {
		out = append(out, fmt.Sprintf("%s/%s:%s[%s]", r.group, r.resource, r.verb, r.name))
	}
	sort.Strings(out)
	return out
}

func TestRBACLeastPrivilege(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			r := renderObjects(t, m.values)
			cfg := r.config(t)
			allNS := str(cfg, "kubernetes", "allNamespaces") == "true"
			le := str(cfg, "leaderElection", "enabled") == "true"
			watched := map[string]bool{}
			for _, ns := range strs(cfg["kubernetes"].(map[string]any)["namespaces"]) {
				watched[ns] = true
			}

			roles := map[string]*unstructured.Unstructured{} // kind/ns/name
			for _, kind := range []string{"Role", "ClusterRole"} {
				for _, o := range r.all(kind) {
					roles[kind+"/"+o.GetNamespace()+"/"+o.GetName()] = o
					for gr := range rulesOf(t, o) {
						if gr.group == "*" || gr.resource == "*" || gr.verb == "*" || strings.Contains(gr.resource, "/") && gr.resource != "pods/eviction" {
							t.Errorf("%s/%s grants a wildcard or subresource: %+v", kind, o.GetName(), gr)
						}
						if gr.resource == "secrets" || gr.resource == "configmaps" {
							t.Errorf("%s/%s grants access to %s", kind, o.GetName(), gr.resource)
						}
						if gr.verb == "escalate" || gr.verb == "bind" || gr.verb == "impersonate" {
							t.Errorf("%s/%s grants %s", kind, o.GetName(), gr.verb)
						}
					}
				}
			}
			if n := len(r.all("ClusterRole")); (n > 0) != allNS {
				t.Errorf("%d ClusterRoles with allNamespaces=%v; a ClusterRole only with allNamespaces", n, allNS)
			}
			if n := len(r.all("ClusterRoleBinding")); (n > 0) != allNS {
				t.Errorf("%d ClusterRoleBindings with allNamespaces=%v", n, allNS)
			}

			var leaseGrants int
			for key, o := range roles {
				got := rulesOf(t, o)
				var want map[rule]bool
				switch {
				case o.GetKind() == "ClusterRole":
					want = reaperRules
				case strings.HasSuffix(o.GetName(), "-leader-election"):
					want = leaseRules(str(cfg, "leaderElection", "leaseName"))
					if o.GetNamespace() != str(cfg, "leaderElection", "leaseNamespace") {
						t.Errorf("lease Role in %q, lease in %q", o.GetNamespace(), str(cfg, "leaderElection", "leaseNamespace"))
					}
					leaseGrants++
				case strings.HasSuffix(o.GetName(), "-events"):
					want = eventRules
					if watched[o.GetNamespace()] || o.GetNamespace() != testNamespace {
						t.Errorf("events-only Role in %q", o.GetNamespace())
					}
				default:
					want = reaperRules
					if !watched[o.GetNamespace()] {
						t.Errorf("pod Role in %q, which is not watched (%v)", o.GetNamespace(), watched)
					}
				}
				if fmt.Sprint(sortedRules(got)) != fmt.Sprint(sortedRules(want)) {
					t.Errorf("%s rules:\n got  %v\n want %v", key, sortedRules(got), sortedRules(want))
				}
			}
			if le != (leaseGrants == 1) {
				t.Errorf("leaderElection=%v but %d lease Roles", le, leaseGrants)
			}
			if !allNS {
				for ns := range watched {
					if roles["Role/"+ns+"/kpo-reaper"] == nil {
						t.Errorf("no Role in watched namespace %s", ns)
					}
				}
			}

			// Every binding binds a rendered role to the reaper's ServiceAccount, and only to it.
			sa := r.one(t, "ServiceAccount")
			podSA := str(r.podTemplate(t), "spec", "serviceAccountName")
			if podSA != sa.GetName() {
				t.Errorf("pod runs as %q, chart creates %q", podSA, sa.GetName())
			}
			for _, kind := range []string{"RoleBinding", "ClusterRoleBinding"} {
				for _, b := range r.all(kind) {
					refKind := str(b.Object, "roleRef", "kind")
					refNS := b.GetNamespace()
					if refKind == "ClusterRole" {
						refNS = ""
					}
					if roles[refKind+"/"+refNS+"/"+str(b.Object, "roleRef", "name")] == nil {
						t.Errorf("%s %s/%s references %s %s, which the chart does not render", kind, b.GetNamespace(), b.GetName(), refKind, str(b.Object, "roleRef", "name"))
					}
					subjects, _, _ := unstructured.NestedSlice(b.Object, "subjects")
					if len(subjects) != 1 {
						t.Errorf("%s %s has %d subjects", kind, b.GetName(), len(subjects))
						continue
					}
					s := subjects[0].(map[string]any)
					if s["kind"] != "ServiceAccount" || s["name"] != sa.GetName() || s["namespace"] != sa.GetNamespace() {
						t.Errorf("%s %s subject = %v, want ServiceAccount %s/%s", kind, b.GetName(), s, sa.GetNamespace(), sa.GetName())
					}
				}
			}
		})
	}
}

func TestRBACDisabled(t *testing.T) {
	r := renderObjects(t, withAll(baseValues(), "rbac.create", false, "serviceAccount.create", false, "serviceAccount.name", "byo"))
	for _, k := range []string{"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "ServiceAccount"} {
		if n := len(r.all(k)); n != 0 {
			t.Errorf("rbac.create=false rendered %d %s", n, k)
		}
	}
	if got := str(r.podTemplate(t), "spec", "serviceAccountName"); got != "byo" {
		t.Errorf("serviceAccountName = %q", got)
	}
}

func TestSchemaRejectsBadValues(t *testing.T) {
	cases := map[string]map[string]any{
		"mode foo":                        with(baseValues(), "mode", "foo"),
		"dryRun \"yes\"":                  with(baseValues(), "dryRun", "yes"),
		"dryRun \"false\" (a string)":     with(baseValues(), "dryRun", "false"),
		"typo dryrun":                     with(baseValues(), "dryrun", false),
		"replicaCount 0":                  with(baseValues(), "replicaCount", 0),
		"replicaCount \"2\"":              with(baseValues(), "replicaCount", "2"),
		"auth.type digest":                with(baseValues(), "airflow.auth.type", "digest"),
		"apiVersion v3":                   with(baseValues(), "airflow.apiVersion", "v3"),
		"url without scheme":              with(baseValues(), "airflow.url", "airflow-webserver:8080"),
		"concurrencyPolicy Allow":         withAll(baseValues(), "mode", "cronjob", "cronjob.concurrencyPolicy", "Allow"),
		"interval \"5 minutes\"":          with(baseValues(), "reaper.interval", "5 minutes"),
		"confirmations 0":                 with(baseValues(), "reaper.confirmations", 0),
		"namespace Bad_NS":                with(baseValues(), "kubernetes.namespaces", []any{"Bad_NS"}),
		"log.level verbose":               with(baseValues(), "log.level", "verbose"),
		"unknown reaper key":              with(baseValues(), "reaper.dryRun", false),
		"leaderElection.enabled \"true\"": with(baseValues(), "leaderElection.enabled", "true"),
		"allNamespaces \"yes\"":           with(baseValues(), "kubernetes.allNamespaces", "yes"),
		"alert ratio 2":                   with(baseValues(), "prometheusRule.cyclesFailing.ratio", 2),
		"reapOrphans \"true\" (a string)": with(baseValues(), "reaper.reapOrphans", "true"),
		"confirmationSpacing -1m":         with(baseValues(), "reaper.confirmationSpacing", "-1m"),
		"confirmationSpacing \"often\"":   with(baseValues(), "reaper.confirmationSpacing", "often"),
		"confirmationSpacing 60 (number)": with(baseValues(), "reaper.confirmationSpacing", 60),
	}
	expectSchemaErrors(t, cases)
}

func TestChecksFailWithClearMessage(t *testing.T) {
	cases := []checkCase{
		{"replicas>1 without leader election", with(baseValues(), "replicaCount", 2), []string{"replicaCount is 2", "leaderElection.enabled"}},
		{"RollingUpdate without leader election", with(baseValues(), "strategy", map[string]any{"type": "RollingUpdate"}), []string{"RollingUpdate", "leaderElection.enabled"}},
		{"no airflow.url", with(baseValues(), "airflow.url", ""), []string{"airflow.url is required"}},
		{"cronjob with leader election", withAll(baseValues(), "mode", "cronjob", "leaderElection.enabled", true), []string{"leaderElection.enabled", "cronjob"}},
		{"basic without a secret", with(baseValues(), "airflow.auth", map[string]any{"type": "basic", "username": "u"}), []string{"existingSecret"}},
		{"basic without a username", with(baseValues(), "airflow.auth", map[string]any{"type": "basic", "existingSecret": "s"}), []string{"airflow.auth.username"}},
		{"bearer without a secret", with(baseValues(), "airflow.auth", map[string]any{"type": "bearer"}), []string{"existingSecret", "tokenFile"}},
		{"serviceMonitor in cronjob mode", withAll(baseValues(), "mode", "cronjob", "serviceMonitor.enabled", true), []string{"serviceMonitor.enabled needs mode=deployment"}},
		{"serviceMonitor without service", withAll(baseValues(), "serviceMonitor.enabled", true, "service.enabled", false), []string{"service.enabled"}},
	}
	expectCheckErrors(t, cases)
}

func TestDryRunValue(t *testing.T) {
	r := renderObjects(t, with(baseValues(), "dryRun", false))
	if got := str(r.config(t), "reaper", "dryRun"); got != "false" {
		t.Errorf("reaper.dryRun = %q", got)
	}
	notes, err := Notes(with(baseValues(), "dryRun", false), testNamespace)
	if err != nil || !strings.Contains(notes, "DRY RUN is OFF") {
		t.Errorf("NOTES with dryRun=false: %v\n%s", err, notes)
	}
	for _, mode := range []string{"deployment", "cronjob"} {
		notes, err := Notes(with(baseValues(), "mode", mode), testNamespace)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(notes, "DRY RUN is ON") || !strings.Contains(notes, "kpo-reaper plan") {
			t.Errorf("%s NOTES do not tell to read `kpo-reaper plan` first:\n%s", mode, notes)
		}
	}
}

func TestMonitoring(t *testing.T) {
	r := renderObjects(t, withAll(baseValues(), "serviceMonitor.enabled", true, "prometheusRule.enabled", true, "reaper.interval", "90s"))
	sm := r.one(t, "ServiceMonitor")
	svc := r.one(t, "Service")
	sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	for k, v := range sel {
		if svc.GetLabels()[k] != v {
			t.Errorf("ServiceMonitor selects %s=%s, Service has %v", k, v, svc.GetLabels())
		}
	}
	eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	if str(eps[0].(map[string]any), "port") != "http-metrics" || str(eps[0].(map[string]any), "path") != "/metrics" {
		t.Errorf("ServiceMonitor endpoint = %v", eps[0])
	}

	alerts := alertsOf(t, r.one(t, "PrometheusRule"))
	names := make([]string, 0, len(alerts))
	for n := range alerts {
		names = append(names, n)
	}
	sort.Strings(names)
	if want := "[KpoReaperCyclesFailing KpoReaperDeletionsFailing KpoReaperDeletionsSpiking KpoReaperNoSuccessfulCycle]"; fmt.Sprint(names) != want {
		t.Errorf("alerts = %v, want %s", names, want)
	}
	wantMetric := map[string]string{
		"KpoReaperCyclesFailing":     `kpo_reaper_cycles_total{namespace="airflow",job="kpo-reaper",result="failure"}`,
		"KpoReaperNoSuccessfulCycle": `kpo_reaper_last_successful_cycle_timestamp_seconds{namespace="airflow",job="kpo-reaper"}`,
		"KpoReaperDeletionsSpiking":  `kpo_reaper_deletions_total{namespace="airflow",job="kpo-reaper",result="deleted"}`,
		"KpoReaperDeletionsFailing":  `kpo_reaper_deletions_total{namespace="airflow",job="kpo-reaper",result="failed"}`,
	}
	for name, metric := range wantMetric {
		if !strings.Contains(alerts[name].expr, metric) {
			t.Errorf("%s expr does not use %s:\n%s", name, metric, alerts[name].expr)
		}
	}
	// 10 intervals of 90s.
	if !strings.Contains(alerts["KpoReaperNoSuccessfulCycle"].expr, "> 900)") {
		t.Errorf("KpoReaperNoSuccessfulCycle threshold: %s", alerts["KpoReaperNoSuccessfulCycle"].expr)
	}
	checkRunbooks(t, alerts)
	// A cleanup tool wakes nobody at night: every alert is a warning by default.
	for name, a := range alerts {
		if a.labels["severity"] != "warning" {
			t.Errorf("%s severity %q by default, want warning", name, a.labels["severity"])
		}
	}

	// CronJob mode alerts through kube-state-metrics, keeping the same names and runbooks.
	r = renderObjects(t, withAll(baseValues(), "mode", "cronjob", "prometheusRule.enabled", true, "prometheusRule.cronjobPeriod", "1h30m"))
	alerts = alertsOf(t, r.one(t, "PrometheusRule"))
	if len(alerts) != 2 || alerts["KpoReaperCyclesFailing"].expr == "" || alerts["KpoReaperNoSuccessfulCycle"].expr == "" {
		t.Errorf("cronjob alerts = %v", alerts)
	}
	if !strings.Contains(alerts["KpoReaperNoSuccessfulCycle"].expr, `kube_cronjob_status_last_successful_time{namespace="airflow",cronjob="kpo-reaper"}) > 54000`) {
		t.Errorf("cronjob KpoReaperNoSuccessfulCycle: %s", alerts["KpoReaperNoSuccessfulCycle"].expr)
	}
	checkRunbooks(t, alerts)
}

type alert struct {
	expr        string
	labels      map[string]string
	annotations map[string]string
}

func alertsOf(t *testing.T, pr *unstructured.Unstructured) map[string]alert {
	t.Helper()
	out := map[string]alert{}
	groups, _, _ := unstructured.NestedSlice(pr.Object, "spec", "groups")
	for _, g := range groups {
		rules, _ := g.(map[string]any)["rules"].([]any)
		for _, r := range rules {
			rm := r.(map[string]any)
			a := alert{expr: fmt.Sprint(rm["expr"]), labels: map[string]string{}, annotations: map[string]string{}}
			for k, v := range rm["labels"].(map[string]any) {
				a.labels[k] = fmt.Sprint(v)
			}
			for k, v := range rm["annotations"].(map[string]any) {
				a.annotations[k] = fmt.Sprint(v)
			}
			out[fmt.Sprint(rm["alert"])] = a
		}
	}
	return out
}

// checkRunbooks: each alert says what it means and links to a section of
// docs/operations.md that exists.
func checkRunbooks(t *testing.T, alerts map[string]alert) {
	t.Helper()
	anchors := markdownAnchors(string(repoFile(t, "docs/operations.md")))
	for name, a := range alerts {
		if a.labels["severity"] == "" {
			t.Errorf("%s has no severity", name)
		}
		if len(a.annotations["summary"]) < 20 || len(a.annotations["description"]) < 80 {
			t.Errorf("%s does not say what it means: %v", name, a.annotations)
		}
		url := a.annotations["runbook_url"]
		const prefix = "https://github.com/kpo-reaper/kpo-reaper/blob/main/docs/operations.md#"
		if !strings.HasPrefix(url, prefix) {
			t.Errorf("%s runbook_url = %q", name, url)
			continue
		}
		anchor := strings.TrimPrefix(url, prefix)
		if anchor != strings.ToLower(name) {
			t.Errorf("%s links to #%s", name, anchor)
		}
		if !anchors[anchor] {
			t.Errorf("%s links to #%s, which docs/operations.md does not have", name, anchor)
		}
	}
}

// markdownAnchors returns the GitHub-style anchors of a Markdown document's
// headings (and of explicit <a id="..."> / <a name="..."> tags).
func markdownAnchors(md string) map[string]bool {
	out := map[string]bool{}
	strip := regexp.MustCompile(`[^\p{L}\p{N} _-]`)
	inFence := false
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inFence = !inFence
			continue
		}
		if inFence {
			continue
		}
		if strings.HasPrefix(line, "#") {
			h := strings.TrimSpace(strings.TrimLeft(line, "#"))
			h = strings.ToLower(strings.ReplaceAll(h, "`", ""))
			h = strip.ReplaceAllString(h, "")
			out[strings.ReplaceAll(h, " ", "-")] = true
		}
		for _, m := range regexp.MustCompile(`<a (?:id|name)="([^"]+)"`).FindAllStringSubmatch(line, -1) {
			out[m[1]] = true
		}
	}
	return out
}

func TestDocsAnchorsUsedByChart(t *testing.T) {
	anchors := markdownAnchors(string(repoFile(t, "docs/operations.md")))
	// NOTES.txt and values.yaml point at these.
	for _, a := range []string{"turning-dry-run-off", "metrics", "kporeapercyclesfailing", "kporeapernosuccessfulcycle", "kporeaperdeletionsspiking", "kporeaperdeletionsfailing"} {
		if !anchors[a] {
			t.Errorf("docs/operations.md has no #%s", a)
		}
	}
	// Every metric of the contract is documented.
	doc := string(repoFile(t, "docs/operations.md"))
	for _, m := range exportedMetrics {
		if !strings.Contains(doc, "`"+m+"`") && !strings.Contains(doc, "`"+m+"{") {
			t.Errorf("docs/operations.md does not document %s", m)
		}
	}
}

func TestRenderRBACExport(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values map[string]any
		kinds  string
	}{
		{"deployment", nil, "ServiceAccount Role RoleBinding"},
		{"cronjob", map[string]any{"mode": "cronjob"}, "ServiceAccount Role RoleBinding"},
		{"leader-election", map[string]any{"leaderElection": map[string]any{"enabled": true}, "replicaCount": 2}, "ServiceAccount Role RoleBinding Role RoleBinding"},
		{"all-namespaces", map[string]any{"kubernetes": map[string]any{"allNamespaces": true}}, "ServiceAccount ClusterRole ClusterRoleBinding"},
		{"mwaa", map[string]any{"airflow": map[string]any{"auth": map[string]any{"type": "mwaa"}, "mwaa": map[string]any{"environment": "e", "region": "eu-west-1"}}}, "ServiceAccount Role RoleBinding"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := RenderRBAC(tc.values, "kpo-e2e")
			if err != nil {
				t.Fatal(err)
			}
			objs, err := parseStream(out)
			if err != nil {
				t.Fatal(err)
			}
			var kinds []string
			for _, o := range objs {
				kinds = append(kinds, o.GetKind())
				if !strings.HasPrefix(o.GetKind(), "Cluster") && o.GetNamespace() != "kpo-e2e" {
					t.Errorf("%s/%s in namespace %q", o.GetKind(), o.GetName(), o.GetNamespace())
				}
			}
			if strings.Join(kinds, " ") != tc.kinds {
				t.Errorf("kinds = %v, want %s", kinds, tc.kinds)
			}
		})
	}
	if _, err := RenderRBAC(map[string]any{"mode": "foo"}, "x"); err == nil {
		t.Errorf("RenderRBAC with a bad mode should fail")
	}
}

func TestHelmLint(t *testing.T) {
	dir, err := Dir()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			l := lint.All(dir, m.values, testNamespace, false)
			for _, msg := range l.Messages {
				if msg.Severity >= support.WarningSev {
					t.Errorf("helm lint: %s", msg)
				}
			}
		})
	}
}

func TestValuesOverridesApplied(t *testing.T) {
	v := withAll(baseValues(),
		"image.tag", "v9.9.9",
		"podAnnotations", map[string]any{"sidecar.istio.io/inject": "false"},
		"nodeSelector", map[string]any{"pool": "system"},
		"tolerations", []any{map[string]any{"key": "dedicated", "operator": "Exists"}},
		"extraEnv", []any{map[string]any{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}},
		"serviceAccount.annotations", map[string]any{"iam.gke.io/gcp-service-account": "reaper@p.iam.gserviceaccount.com"},
		"kubernetes.labelSelector", "airflow-deployment=prod",
		"extraConfig", map[string]any{"reaper": map[string]any{"maxDeletesPerCycle": 5}},
	)
	r := renderObjects(t, v)
	c := r.container(t)
	if c["image"] != "ghcr.io/kpo-reaper/kpo-reaper:v9.9.9" {
		t.Errorf("image = %v", c["image"])
	}
	tpl := r.podTemplate(t)
	if str(tpl, "metadata", "annotations", "sidecar.istio.io/inject") != "false" || str(tpl, "spec", "nodeSelector", "pool") != "system" {
		t.Errorf("pod annotations/nodeSelector not applied: %v", tpl)
	}
	if _, ok := envByName(c)["HTTPS_PROXY"]; !ok {
		t.Errorf("extraEnv not applied")
	}
	if r.one(t, "ServiceAccount").GetAnnotations()["iam.gke.io/gcp-service-account"] == "" {
		t.Errorf("ServiceAccount annotations not applied")
	}
	cfg := r.config(t)
	if str(cfg, "kubernetes", "labelSelector") != "airflow-deployment=prod" || str(cfg, "reaper", "maxDeletesPerCycle") != "5" {
		t.Errorf("config = %v", cfg)
	}
	if r2 := renderObjects(t, with(baseValues(), "image.digest", "sha256:"+strings.Repeat("a", 64))); !strings.Contains(fmt.Sprint(r2.container(t)["image"]), "@sha256:") {
		t.Errorf("digest not used")
	}
}

// expectSchemaErrors: every values set fails values.schema.json.
func expectSchemaErrors(t *testing.T, cases map[string]map[string]any) {
	t.Helper()
	for name, v := range cases {
		t.Run(name, func(t *testing.T) {
			err := renderErr(t, v)
			if err == nil {
				t.Fatalf("rendered; want a schema error")
			}
			if !strings.Contains(err.Error(), "schema") {
				t.Errorf("want a schema error, got: %v", err)
			}
		})
	}
}

// checkCase is a values set a template check refuses with a message that
// says every string in want.
type checkCase struct {
	name   string
	values map[string]any
	want   []string
}

func expectCheckErrors(t *testing.T, cases []checkCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := renderErr(t, tc.values)
			if err == nil {
				t.Fatalf("rendered; want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}
