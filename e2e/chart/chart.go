// Package chart renders the kpo-reaper Helm chart (deploy/helm/kpo-reaper)
// with Helm's own Go packages, the way `helm template` does, so tests can
// inspect what an install would apply and the end-to-end suite can apply the
// chart's RBAC to a real apiserver.
//
// Rendering validates the values against the chart's values.schema.json and
// runs the chart's own checks (its `fail` calls), so a value Helm would refuse
// is an error here too.
package chart

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"sigs.k8s.io/yaml"
)

// ReleaseName is the Helm release name Render uses. The chart's full name
// (and so its objects' names) is then "kpo-reaper".
const ReleaseName = "kpo-reaper"

// PlaceholderAirflowURL is the airflow.url RenderRBAC fills in when the values
// set none: the chart requires one, and RBAC does not depend on it.
const PlaceholderAirflowURL = "http://airflow-webserver.invalid:8080"

// chartRelDir is the chart's directory relative to the repository root.
const chartRelDir = "deploy/helm/kpo-reaper"

// Dir returns the chart's directory: $KPO_REAPER_CHART_DIR if set, else
// deploy/helm/kpo-reaper found from this source file's location or by
// walking up from the working directory.
func Dir() (string, error) {
	if d := os.Getenv("KPO_REAPER_CHART_DIR"); d != "" {
		return d, nil
	}
	var starts []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	for _, start := range starts {
		for dir := start; ; dir = filepath.Dir(dir) {
			candidate := filepath.Join(dir, chartRelDir)
			if fi, err := os.Stat(filepath.Join(candidate, "Chart.yaml")); err == nil && !fi.IsDir() {
				return candidate, nil
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	return "", errors.New("chart: cannot find " + chartRelDir + " (set KPO_REAPER_CHART_DIR)")
}

// RepoRoot returns the repository root (the directory that holds deploy/).
func RepoRoot() (string, error) {
	d, err := Dir()
	if err != nil {
		return "", err
	}
	return filepath.Clean(filepath.Join(d, "..", "..", "..")), nil
}

// Load loads the chart from Dir.
func Load() (*chart.Chart, error) {
	d, err := Dir()
	if err != nil {
		return nil, err
	}
	return loader.Load(d)
}

// Render renders the chart for release ReleaseName in namespace with values
// (merged over the chart's values.yaml, as `helm template --set`/`-f` would)
// and returns each template's output by template path ("templates/rbac.yaml"),
// leaving out templates that render to nothing, the helpers and NOTES.txt.
// A value the schema rejects or a chart check that fails is an error.
func Render(values map[string]any, namespace string) (map[string][]byte, error) {
	out, _, err := render(ReleaseName, namespace, values)
	return out, err
}

// RenderRelease is Render with a release name of the caller's choosing.
func RenderRelease(releaseName, namespace string, values map[string]any) (map[string][]byte, error) {
	out, _, err := render(releaseName, namespace, values)
	return out, err
}

// Notes renders NOTES.txt, the text `helm install` prints.
func Notes(values map[string]any, namespace string) (string, error) {
	_, notes, err := render(ReleaseName, namespace, values)
	return notes, err
}

// RenderRBAC renders the chart and returns, as one multi-document YAML stream,
// the objects that make up its access: the ServiceAccount, Roles, RoleBindings
// and, with kubernetes.allNamespaces, the ClusterRole and ClusterRoleBinding
// (including the leader-election Role when leaderElection.enabled). Every
// namespaced object carries its namespace. When values set no airflow.url
// (and airflow.auth.type is not mwaa), PlaceholderAirflowURL is used.
func RenderRBAC(values map[string]any, namespace string) ([]byte, error) {
	v := copyValues(values)
	airflow, _ := v["airflow"].(map[string]any)
	if airflow == nil {
		airflow = map[string]any{}
	}
	airflow = copyValues(airflow)
	authType := ""
	if auth, ok := airflow["auth"].(map[string]any); ok {
		authType, _ = auth["type"].(string)
	}
	// MWAA is named by airflow.mwaa, and the chart refuses a URL with it.
	if u, _ := airflow["url"].(string); u == "" && authType != "mwaa" {
		airflow["url"] = PlaceholderAirflowURL
	}
	v["airflow"] = airflow
	out, err := Render(v, namespace)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	for _, name := range []string{"templates/serviceaccount.yaml", "templates/rbac.yaml"} {
		docs, err := SplitDocuments(out[name])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		for _, d := range docs {
			buf.WriteString("---\n")
			buf.Write(d)
			if !bytes.HasSuffix(d, []byte("\n")) {
				buf.WriteByte('\n')
			}
		}
	}
	return buf.Bytes(), nil
}

// SplitDocuments splits a YAML stream at "---" lines and returns its
// non-empty documents (a document holding only comments counts as empty).
func SplitDocuments(stream []byte) ([][]byte, error) {
	var docs [][]byte
	var cur []string
	flush := func() {
		doc := strings.Join(cur, "\n")
		cur = nil
		if hasContent(doc) {
			docs = append(docs, []byte(strings.TrimLeft(doc, "\n")+"\n"))
		}
	}
	for _, line := range strings.Split(string(stream), "\n") {
		if strings.TrimRight(line, " \t\r") == "---" {
			flush()
			continue
		}
		cur = append(cur, line)
	}
	flush()
	for i, d := range docs {
		var probe map[string]any
		if err := yaml.Unmarshal(d, &probe); err != nil {
			return nil, fmt.Errorf("document %d: %w\n%s", i, err, d)
		}
	}
	return docs, nil
}

func hasContent(doc string) bool {
	for _, line := range strings.Split(doc, "\n") {
		t := strings.TrimSpace(line)
		if t != "" && !strings.HasPrefix(t, "#") {
			return true
		}
	}
	return false
}

func render(releaseName, namespace string, values map[string]any) (map[string][]byte, string, error) {
	if namespace == "" {
		namespace = "default"
	}
	ch, err := Load()
	if err != nil {
		return nil, "", err
	}
	// Round-trip the values through YAML so they have the types Helm sees
	// when it reads -f files and --set flags (numbers as float64, etc.).
	raw, err := yaml.Marshal(values)
	if err != nil {
		return nil, "", fmt.Errorf("chart: values: %w", err)
	}
	vals, err := chartutil.ReadValues(raw)
	if err != nil {
		return nil, "", fmt.Errorf("chart: values: %w", err)
	}
	top, err := chartutil.ToRenderValues(ch, vals.AsMap(), chartutil.ReleaseOptions{
		Name:      releaseName,
		Namespace: namespace,
		Revision:  1,
		IsInstall: true,
	}, chartutil.DefaultCapabilities.Copy())
	if err != nil {
		return nil, "", err
	}
	rendered, err := engine.Render(ch, top)
	if err != nil {
		return nil, "", err
	}
	out := make(map[string][]byte)
	var notes string
	prefix := ch.Name() + "/"
	names := make([]string, 0, len(rendered))
	for name := range rendered {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		content := rendered[name]
		short := strings.TrimPrefix(name, prefix)
		switch {
		case strings.HasSuffix(short, "NOTES.txt"):
			notes = content
			continue
		case strings.HasPrefix(filepath.Base(short), "_"):
			continue
		case !hasContent(content):
			continue
		}
		out[short] = []byte(content)
	}
	return out, notes, nil
}

func copyValues(in map[string]any) map[string]any {
	out := make(map[string]any, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}
