package production_test

import (
	"bytes"
	"sort"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kpo-reaper/kpo-reaper/e2e/chart"
)

// TestChartObjectsAcceptedByTheAPIServer applies every object the chart
// renders (but the Prometheus Operator's, whose CRDs this cluster lacks) to
// the real kube-apiserver, which validates them as `helm install` would meet
// them: the PodDisruptionBudget, the NetworkPolicy and the dashboard
// ConfigMap included.
func TestChartObjectsAcceptedByTheAPIServer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	base := chartValues("deployment", "http://airflow-webserver.invalid:8080", "basic", true, 2)
	for _, tc := range []struct {
		name   string
		values map[string]any
		pdb    bool
	}{
		{"ha", merge(base, map[string]any{"replicaCount": 2, "leaderElection": map[string]any{"enabled": true},
			"networkPolicy": map[string]any{"enabled": true}, "grafanaDashboard": map[string]any{"enabled": true}}), true},
		{"cronjob", merge(base, map[string]any{"mode": "cronjob", "networkPolicy": map[string]any{"enabled": true}}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files, err := chart.RenderRelease("kpo-reaper-"+tc.name, e.ns, tc.values)
			if err != nil {
				t.Fatal(err)
			}
			names := make([]string, 0, len(files))
			for n := range files {
				names = append(names, n)
			}
			sort.Strings(names)
			var all bytes.Buffer
			for _, n := range names {
				if n == "templates/servicemonitor.yaml" || n == "templates/prometheusrule.yaml" {
					continue
				}
				docs, err := chart.SplitDocuments(files[n])
				if err != nil {
					t.Fatalf("%s: %v", n, err)
				}
				for _, d := range docs {
					all.WriteString("---\n")
					all.Write(d)
				}
			}
			if err := cluster.Apply(e.ctx, all.Bytes(), e.ns); err != nil {
				t.Fatalf("the apiserver refuses the chart's objects: %v", err)
			}
			full := "kpo-reaper-" + tc.name
			if _, err := cluster.Admin().NetworkingV1().NetworkPolicies(e.ns).Get(e.ctx, full, metav1.GetOptions{}); err != nil {
				t.Errorf("NetworkPolicy: %v", err)
			}
			_, err = cluster.Admin().PolicyV1().PodDisruptionBudgets(e.ns).Get(e.ctx, full, metav1.GetOptions{})
			if tc.pdb && err != nil {
				t.Errorf("PodDisruptionBudget: %v", err)
			}
			if !tc.pdb && err == nil {
				t.Errorf("a PodDisruptionBudget in %s mode", tc.name)
			}
		})
	}
}

// merge returns a copy of base with over's top-level keys set.
func merge(base, over map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		out[k] = v
	}
	return out
}
