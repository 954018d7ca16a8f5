package chart

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// typed returns an empty typed object for the built-in kinds the chart and
// the manifests render, nil for the Prometheus Operator's.
func typed(kind string) any {
	switch kind {
	case "Deployment":
		return &appsv1.Deployment{}
	case "CronJob":
		return &batchv1.CronJob{}
	case "Service":
		return &corev1.Service{}
	case "ServiceAccount":
		return &corev1.ServiceAccount{}
	case "ConfigMap":
		return &corev1.ConfigMap{}
	case "Secret":
		return &corev1.Secret{}
	case "Role":
		return &rbacv1.Role{}
	case "RoleBinding":
		return &rbacv1.RoleBinding{}
	case "ClusterRole":
		return &rbacv1.ClusterRole{}
	case "ClusterRoleBinding":
		return &rbacv1.ClusterRoleBinding{}
	case "PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "NetworkPolicy":
		return &networkingv1.NetworkPolicy{}
	}
	return nil
}

// checkStrict decodes each object into its Kubernetes type, refusing unknown
// fields, so a misspelt field (readOnlyRootFileSystem) cannot pass unnoticed.
func checkStrict(t *testing.T, where string, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, o := range objs {
		into := typed(o.GetKind())
		if into == nil {
			if o.GetAPIVersion() != "monitoring.coreos.com/v1" {
				t.Errorf("%s: unexpected kind %s", where, o.GetKind())
			}
			continue
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, into, true); err != nil {
			t.Errorf("%s: %s/%s: %v", where, o.GetKind(), o.GetName(), err)
		}
	}
}

func TestStrictDecode(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			checkStrict(t, m.name, renderObjects(t, m.values).objs)
		})
	}
	t.Run("inline-secret", func(t *testing.T) {
		v := with(baseValues(), "airflow.auth", map[string]any{"type": "bearer", "createSecret": true, "token": "x"})
		checkStrict(t, "inline-secret", renderObjects(t, v).objs)
	})
	for _, comps := range [][]string{nil, {"leader-election"}, {"cronjob"}} {
		checkStrict(t, "manifests", build(t, comps...).objs)
	}
	for _, f := range []string{"rbac.yaml", "configmap.yaml"} {
		objs, err := parseStream(repoFile(t, "deploy/airflow-chart-sidecar/"+f))
		if err != nil {
			t.Fatal(err)
		}
		checkStrict(t, f, objs)
	}
	var snippet struct {
		Scheduler struct {
			ExtraContainers []map[string]any `json:"extraContainers"`
			ExtraVolumes    []map[string]any `json:"extraVolumes"`
		} `json:"scheduler"`
	}
	if err := yaml.Unmarshal(repoFile(t, "deploy/airflow-chart-sidecar/values-snippet.yaml"), &snippet); err != nil {
		t.Fatal(err)
	}
	for _, c := range snippet.Scheduler.ExtraContainers {
		if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(c, &corev1.Container{}, true); err != nil {
			t.Errorf("values-snippet extraContainers: %v", err)
		}
	}
	for _, v := range snippet.Scheduler.ExtraVolumes {
		if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(v, &corev1.Volume{}, true); err != nil {
			t.Errorf("values-snippet extraVolumes: %v", err)
		}
	}
}
