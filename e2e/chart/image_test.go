package chart

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestImageFollowsAppVersion: the chart's appVersion is the release. The
// chart's default image.tag (empty: the appVersion), the plain manifests, the
// Airflow-chart sidecar snippet, the image Chart.yaml lists for Artifact Hub
// and the binary `make` builds (`make image` tags the image with the same
// version) must all name it.
func TestImageFollowsAppVersion(t *testing.T) {
	ch, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	app := ch.Metadata.AppVersion
	if !regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+$`).MatchString(app) {
		t.Fatalf("appVersion %q, want vX.Y.Z", app)
	}
	want := "ghcr.io/kpo-reaper/kpo-reaper:" + app

	img, _ := ch.Values["image"].(map[string]any)
	if img["repository"] != "ghcr.io/kpo-reaper/kpo-reaper" || img["tag"] != "" || img["digest"] != "" {
		t.Errorf("values.yaml image = %v, want ghcr.io/kpo-reaper/kpo-reaper with tag and digest empty (the appVersion)", img)
	}
	for _, mode := range []string{"deployment", "cronjob"} {
		if got := renderObjects(t, with(baseValues(), "mode", mode)).container(t)["image"]; got != want {
			t.Errorf("chart (%s): image %v, want %s", mode, got, want)
		}
	}

	for _, file := range []string{"deploy/manifests/deployment.yaml", "deploy/manifests/cronjob/cronjob.yaml"} {
		objs, err := parseStream(repoFile(t, file))
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		r := &rendered{objs: objs}
		if got := r.container(t)["image"]; got != want {
			t.Errorf("%s: image %v, want %s", file, got, want)
		}
	}

	// Artifact Hub lists the image the chart installs.
	var listed []struct {
		Name      string   `json:"name"`
		Image     string   `json:"image"`
		Platforms []string `json:"platforms"`
	}
	if err := yaml.UnmarshalStrict([]byte(ch.Metadata.Annotations["artifacthub.io/images"]), &listed); err != nil {
		t.Errorf("Chart.yaml artifacthub.io/images: %v", err)
	}
	if len(listed) != 1 || listed[0].Image != want {
		t.Errorf("Chart.yaml artifacthub.io/images = %+v, want one: %s", listed, want)
	}

	snippet := repoFile(t, "deploy/airflow-chart-sidecar/values-snippet.yaml")
	images := regexp.MustCompile(`(?m)^\s*image:\s*(\S+)\s*$`).FindAllSubmatch(snippet, -1)
	if len(images) != 1 || string(images[0][1]) != want {
		t.Errorf("airflow-chart-sidecar/values-snippet.yaml images %q, want one: %s", images, want)
	}

	// The binary: `make build` stamps the appVersion ("-dirty" from a
	// work tree with changes).
	bin := os.Getenv("KPO_REAPER_BIN")
	if bin == "" {
		bin = repoPath(t, filepath.Join("bin", "kpo-reaper"))
		if _, err := os.Stat(bin); err != nil {
			t.Skipf("no binary to check (make build, or set KPO_REAPER_BIN): %v", err)
		}
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s version: %v\n%s", bin, err, out)
	}
	re := regexp.MustCompile(fmt.Sprintf(`^kpo-reaper %s(-dirty)? \(commit [0-9a-f]{7,}, go\S+\)\n$`, regexp.QuoteMeta(app)))
	if !re.Match(out) {
		t.Errorf("%s version printed %q, want the appVersion %s", bin, out, app)
	}
}
