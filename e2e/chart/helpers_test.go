package chart

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

const testNamespace = "airflow"

// baseValues are the least a user must set: where Airflow is and how to log in.
func baseValues() map[string]any {
	return map[string]any{
		"airflow": map[string]any{
			"url": "http://airflow-webserver.airflow:8080",
			"auth": map[string]any{
				"type":           "basic",
				"username":       "kpo-reaper",
				"existingSecret": "kpo-reaper-airflow",
			},
		},
	}
}

// with returns a deep copy of base with the dotted path set to value.
func with(base map[string]any, path string, value any) map[string]any {
	out := deepCopy(base)
	m := out
	parts := strings.Split(path, ".")
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[parts[len(parts)-1]] = value
	return out
}

// withAll applies with for each path/value pair.
func withAll(base map[string]any, kv ...any) map[string]any {
	out := base
	for i := 0; i < len(kv); i += 2 {
		out = with(out, kv[i].(string), kv[i+1])
	}
	return out
}

func deepCopy(in map[string]any) map[string]any {
	out := make(map[string]any, len(in))
	for k, v := range in {
		if m, ok := v.(map[string]any); ok {
			out[k] = deepCopy(m)
		} else {
			out[k] = v
		}
	}
	return out
}

// rendered is one render's objects, in template then document order.
type rendered struct {
	templates map[string][]byte
	objs      []*unstructured.Unstructured
}

func renderObjects(t *testing.T, values map[string]any) *rendered {
	t.Helper()
	out, err := Render(values, testNamespace)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return parseTemplates(t, out)
}

func parseTemplates(t *testing.T, out map[string][]byte) *rendered {
	t.Helper()
	r := &rendered{templates: out}
	names := make([]string, 0, len(out))
	for n := range out {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		objs, err := parseStream(out[n])
		if err != nil {
			t.Fatalf("%s: %v\n%s", n, err, out[n])
		}
		r.objs = append(r.objs, objs...)
	}
	return r
}

// parseStream parses every document of a YAML stream into an object that
// must have apiVersion, kind and metadata.name.
func parseStream(stream []byte) ([]*unstructured.Unstructured, error) {
	docs, err := SplitDocuments(stream)
	if err != nil {
		return nil, err
	}
	var objs []*unstructured.Unstructured
	for _, d := range docs {
		var m map[string]any
		if err := yaml.Unmarshal(d, &m); err != nil {
			return nil, err
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetAPIVersion() == "" || u.GetKind() == "" || u.GetName() == "" {
			return nil, fmt.Errorf("document without apiVersion, kind or metadata.name:\n%s", d)
		}
		objs = append(objs, u)
	}
	return objs, nil
}

func (r *rendered) kinds() map[string]int {
	k := map[string]int{}
	for _, o := range r.objs {
		k[o.GetKind()]++
	}
	return k
}

func (r *rendered) all(kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range r.objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// deployment is the one Deployment, checked for its replicas and update
// strategy.
func (r *rendered) deployment(t *testing.T, replicas, strategy string) *unstructured.Unstructured {
	t.Helper()
	d := r.one(t, "Deployment")
	if n, s := str(d.Object, "spec", "replicas"), str(d.Object, "spec", "strategy", "type"); n != replicas || s != strategy {
		t.Errorf("Deployment replicas %s, strategy %q; want %s, %q", n, s, replicas, strategy)
	}
	return d
}

func (r *rendered) one(t *testing.T, kind string) *unstructured.Unstructured {
	t.Helper()
	all := r.all(kind)
	if len(all) != 1 {
		t.Fatalf("want exactly one %s, got %d (kinds %v)", kind, len(all), r.kinds())
	}
	return all[0]
}

// configMap returns the one ConfigMap holding kpo-reaper.yaml (the
// dashboard's ConfigMap is another).
func (r *rendered) configMap(t *testing.T) *unstructured.Unstructured {
	t.Helper()
	var found *unstructured.Unstructured
	for _, cm := range r.all("ConfigMap") {
		if _, ok, _ := unstructured.NestedString(cm.Object, "data", "kpo-reaper.yaml"); ok {
			if found != nil {
				t.Fatalf("two ConfigMaps hold kpo-reaper.yaml")
			}
			found = cm
		}
	}
	if found == nil {
		t.Fatalf("no ConfigMap holds kpo-reaper.yaml")
	}
	return found
}

// config parses the ConfigMap's kpo-reaper.yaml.
func (r *rendered) config(t *testing.T) map[string]any {
	t.Helper()
	data, _, _ := unstructured.NestedString(r.configMap(t).Object, "data", "kpo-reaper.yaml")
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(data), &cfg); err != nil {
		t.Fatalf("kpo-reaper.yaml: %v\n%s", err, data)
	}
	return cfg
}

// podSpec returns the pod template spec of the Deployment or CronJob.
func (r *rendered) podTemplate(t *testing.T) map[string]any {
	t.Helper()
	var path []string
	var obj *unstructured.Unstructured
	switch {
	case len(r.all("Deployment")) == 1 && len(r.all("CronJob")) == 0:
		obj, path = r.one(t, "Deployment"), []string{"spec", "template"}
	case len(r.all("CronJob")) == 1 && len(r.all("Deployment")) == 0:
		obj, path = r.one(t, "CronJob"), []string{"spec", "jobTemplate", "spec", "template"}
	default:
		t.Fatalf("want one Deployment or one CronJob, got kinds %v", r.kinds())
	}
	tpl, ok, _ := unstructured.NestedMap(obj.Object, path...)
	if !ok {
		t.Fatalf("%s has no pod template", obj.GetKind())
	}
	return tpl
}

func (r *rendered) container(t *testing.T) map[string]any {
	t.Helper()
	tpl := r.podTemplate(t)
	cs, _, _ := unstructured.NestedSlice(tpl, "spec", "containers")
	for _, c := range cs {
		cm := c.(map[string]any)
		if cm["name"] == "kpo-reaper" {
			return cm
		}
	}
	t.Fatalf("no kpo-reaper container")
	return nil
}

func str(m map[string]any, path ...string) string {
	s, _, _ := unstructured.NestedFieldNoCopy(m, path...)
	if s == nil {
		return ""
	}
	return fmt.Sprint(s)
}

func strs(v any) []string {
	var out []string
	if l, ok := v.([]any); ok {
		for _, x := range l {
			out = append(out, fmt.Sprint(x))
		}
	}
	return out
}

func envByName(c map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	env, _ := c["env"].([]any)
	for _, e := range env {
		em := e.(map[string]any)
		out[fmt.Sprint(em["name"])] = em
	}
	return out
}

func renderErr(t *testing.T, values map[string]any) error {
	t.Helper()
	_, err := Render(values, testNamespace)
	return err
}

// repoFile reads a file relative to the repository root.
func repoFile(t *testing.T, rel string) []byte {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func repoPath(t *testing.T, rel string) string {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, filepath.FromSlash(rel))
}
