package production_test

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/kpo-reaper/kpo-reaper/e2e/chart"
)

// rendered is the chart rendered for one test's namespace.
type rendered struct {
	files map[string][]byte
}

// renderChart renders deploy/helm/kpo-reaper (release chart.ReleaseName)
// into the namespace and applies its RBAC (ServiceAccount, Roles,
// RoleBindings) to the apiserver, as `helm install` would.
func (e *env) renderChart(values map[string]any) *rendered {
	e.t.Helper()
	files, err := chart.Render(values, e.ns)
	if err != nil {
		e.t.Fatalf("rendering the chart: %v", err)
	}
	rbac, err := chart.RenderRBAC(values, e.ns)
	if err != nil {
		e.t.Fatalf("rendering the chart's RBAC: %v", err)
	}
	if err := cluster.Apply(e.ctx, rbac, e.ns); err != nil {
		e.t.Fatalf("applying the chart's RBAC: %v\n%s", err, rbac)
	}
	return &rendered{files: files}
}

// object decodes the one object of a rendered template.
func (r *rendered) object(t testing.TB, template string, into any) {
	t.Helper()
	docs, err := chart.SplitDocuments(r.files[template])
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 1 {
		t.Fatalf("%s renders %d objects, want 1", template, len(docs))
	}
	if err := yaml.UnmarshalStrict(docs[0], into); err != nil {
		t.Fatalf("%s: %v\n%s", template, err, docs[0])
	}
}

func (r *rendered) configMap(t testing.TB) *corev1.ConfigMap {
	var cm corev1.ConfigMap
	r.object(t, "templates/configmap.yaml", &cm)
	return &cm
}

func (r *rendered) deployment(t testing.TB) *appsv1.Deployment {
	var d appsv1.Deployment
	r.object(t, "templates/deployment.yaml", &d)
	return &d
}

func (r *rendered) cronJob(t testing.TB) *batchv1.CronJob {
	var c batchv1.CronJob
	r.object(t, "templates/cronjob.yaml", &c)
	return &c
}

// podRun is what a kubelet would run for one container of a pod: the
// container's args with its ConfigMap volumes mounted (as directories of
// files under the test's temp dir) and its environment resolved.
type podRun struct {
	args []string
	env  []string
}

// containerRun emulates the kubelet for container name of spec, as pod
// podName in the env's namespace: ConfigMap volumes come from configMaps
// (by name), env fieldRefs from the pod, secretKeyRefs from the Secret read
// back from the apiserver. Anything else it cannot emulate (other volume
// kinds mounted into the container, envFrom, other valueFrom sources) fails
// the test rather than being silently dropped.
func (e *env) containerRun(spec corev1.PodSpec, name, podName string, configMaps ...*corev1.ConfigMap) podRun {
	e.t.Helper()
	var c *corev1.Container
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			c = &spec.Containers[i]
		}
	}
	if c == nil {
		e.t.Fatalf("no container %s in the pod spec", name)
	}
	if len(c.Command) > 0 {
		e.t.Fatalf("container %s overrides the image's entrypoint (%q): not emulated", name, c.Command)
	}
	if len(c.EnvFrom) > 0 {
		e.t.Fatalf("container %s has envFrom: not emulated", name)
	}
	cms := map[string]*corev1.ConfigMap{}
	for _, cm := range configMaps {
		cms[cm.Name] = cm
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	// Mount paths, longest first, so a nested mount wins over its parent.
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		v, ok := volumes[m.Name]
		if !ok {
			e.t.Fatalf("container %s mounts undeclared volume %s", name, m.Name)
		}
		if v.ConfigMap == nil {
			e.t.Fatalf("container %s mounts volume %s, which is not a ConfigMap: not emulated", name, m.Name)
		}
		cm := cms[v.ConfigMap.Name]
		if cm == nil {
			e.t.Fatalf("volume %s names ConfigMap %s, which the test does not have", m.Name, v.ConfigMap.Name)
		}
		dir, err := os.MkdirTemp(e.t.TempDir(), "mount-")
		if err != nil {
			e.t.Fatal(err)
		}
		for key, data := range cm.Data {
			if err := os.WriteFile(filepath.Join(dir, key), []byte(data), 0o600); err != nil {
				e.t.Fatal(err)
			}
		}
		mounts[strings.TrimSuffix(m.MountPath, "/")] = dir
	}
	paths := make([]string, 0, len(mounts))
	for p := range mounts {
		paths = append(paths, p)
	}
	sort.Slice(paths, func(i, j int) bool { return len(paths[i]) > len(paths[j]) })
	var args []string
	for _, a := range c.Args {
		for _, p := range paths {
			if i := strings.Index(a, p+"/"); i >= 0 {
				a = a[:i] + mounts[p] + a[i+len(p):]
				break
			}
		}
		args = append(args, a)
	}
	env := baseEnv()
	for _, v := range c.Env {
		switch {
		case v.ValueFrom == nil:
			env = append(env, v.Name+"="+v.Value)
		case v.ValueFrom.FieldRef != nil:
			switch v.ValueFrom.FieldRef.FieldPath {
			case "metadata.name":
				env = append(env, v.Name+"="+podName)
			case "metadata.namespace":
				env = append(env, v.Name+"="+e.ns)
			case "metadata.uid":
				// The emulated pod does not exist in the apiserver: a uid of
				// the UUID form the kubelet would pass, fixed per pod name.
				sum := sha256.Sum256([]byte(podName))
				env = append(env, v.Name+"="+fmt.Sprintf("%x-%x-%x-%x-%x", sum[0:4], sum[4:6], sum[6:8], sum[8:10], sum[10:16]))
			default:
				e.t.Fatalf("env %s: fieldRef %s not emulated", v.Name, v.ValueFrom.FieldRef.FieldPath)
			}
		case v.ValueFrom.SecretKeyRef != nil:
			ref := v.ValueFrom.SecretKeyRef
			s, err := cluster.Admin().CoreV1().Secrets(e.ns).Get(e.ctx, ref.Name, metav1.GetOptions{})
			if err != nil {
				e.t.Fatalf("env %s: Secret %s: %v", v.Name, ref.Name, err)
			}
			val, ok := s.Data[ref.Key]
			if !ok {
				e.t.Fatalf("env %s: Secret %s has no key %s", v.Name, ref.Name, ref.Key)
			}
			env = append(env, v.Name+"="+string(val))
		default:
			e.t.Fatalf("env %s: valueFrom not emulated", v.Name)
		}
	}
	return podRun{args: args, env: env}
}

// probePath is the HTTP path of a probe, which must be an httpGet on the
// container's metrics port.
func probePath(t testing.TB, c corev1.Container, p *corev1.Probe, what string) string {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Fatalf("container %s has no httpGet %s probe", c.Name, what)
	}
	port := p.HTTPGet.Port
	found := false
	for _, cp := range c.Ports {
		if (port.StrVal != "" && cp.Name == port.StrVal) || (port.StrVal == "" && cp.ContainerPort == port.IntVal) {
			found = true
		}
	}
	if !found {
		t.Fatalf("%s probe of %s targets port %s, which the container does not declare", what, c.Name, port.String())
	}
	return p.HTTPGet.Path
}

func containerNamed(t testing.TB, spec corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	for _, c := range spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %s", name)
	return corev1.Container{}
}

// readRepoFile reads a file of the repository (e.g. deploy/...).
func readRepoFile(t testing.TB, rel string) []byte {
	t.Helper()
	root, err := chart.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// replaceOnce replaces old by new in s and fails the test unless old occurs
// exactly once: an edit of a shipped file that silently stops applying
// would test something else.
func replaceOnce(t testing.TB, s, old, repl, what string) string {
	t.Helper()
	if n := strings.Count(s, old); n != 1 {
		t.Fatalf("%s: %q occurs %d times, want exactly 1", what, old, n)
	}
	return strings.Replace(s, old, repl, 1)
}
