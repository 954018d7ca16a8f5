// Package chart packages the Helm chart and moves it through an OCI
// registry with Helm's own Go packages, so that neither the release nor its
// tests need the helm command: what `helm package`, `helm push` and
// `helm pull` do, byte for byte.
package chart

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"helm.sh/helm/v4/pkg/registry"
)

// Package writes the chart in dir as NAME-VERSION.tgz into outDir, as
// `helm package --app-version` would, and returns the file's path. Every
// file in the archive is stamped with created (the commit's time), so the
// same sources give the same bytes.
func Package(dir, outDir, version, appVersion string, created time.Time) (string, error) {
	c, err := loader.LoadDir(dir)
	if err != nil {
		return "", fmt.Errorf("loading the chart %s: %w", dir, err)
	}
	if version != "" {
		c.Metadata.Version = version
	}
	if appVersion != "" {
		c.Metadata.AppVersion = appVersion
	}
	c.StampModTimes(created)
	path, err := chartutil.Save(c, outDir)
	if err != nil {
		return "", fmt.Errorf("packaging the chart %s: %w", dir, err)
	}
	return path, nil
}

// Metadata reads the chart's Chart.yaml (and checks the chart loads).
func Metadata(dir string) (*chart.Metadata, error) {
	c, err := loader.LoadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("loading the chart %s: %w", dir, err)
	}
	return c.Metadata, nil
}

// Load reads a packaged chart, as `helm install` would.
func Load(data []byte) (*chart.Chart, error) {
	return loader.LoadArchive(bytes.NewReader(data))
}

// Ref is where a chart goes in an OCI repository: REPO/NAME:VERSION, the
// reference `helm push CHART oci://REPO` builds.
func Ref(repo string, c *chart.Chart) string {
	return strings.TrimSuffix(strings.TrimPrefix(repo, "oci://"), "/") + "/" + c.Name() + ":" + c.Metadata.Version
}

// NewClient is Helm's registry client with the credentials `helm registry
// login` (or, failing that, `docker login`) stored. Plain HTTP is used
// exactly where go-containerregistry uses it for the image (localhost and
// other local registries), so both pushes reach the same registry alike.
func NewClient(repo string, opts ...registry.ClientOption) (*registry.Client, error) {
	host, _, _ := strings.Cut(strings.TrimPrefix(repo, "oci://"), "/")
	reg, err := name.NewRegistry(host, name.StrictValidation)
	if err != nil {
		return nil, fmt.Errorf("chart repository %q: %w (want REGISTRY/PATH)", repo, err)
	}
	if reg.Scheme() == "http" {
		opts = append([]registry.ClientOption{registry.ClientOptPlainHTTP()}, opts...)
	}
	return registry.NewClient(opts...)
}

// Push uploads the packaged chart in file to repo as REPO/NAME:VERSION, with
// created as the manifest's creation time (so that a rebuild pushes the same
// manifest), and returns the reference and the manifest's digest.
func Push(client *registry.Client, file, repo string, created time.Time) (ref, digest string, err error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return "", "", err
	}
	c, err := Load(data)
	if err != nil {
		return "", "", fmt.Errorf("%s: %w", file, err)
	}
	ref = Ref(repo, c)
	res, err := client.Push(data, ref, registry.PushOptCreationTime(created.UTC().Format(time.RFC3339)))
	if err != nil {
		return "", "", fmt.Errorf("pushing the chart to %s: %w", ref, err)
	}
	return ref, res.Manifest.Digest, nil
}

// Pull fetches the packaged chart at ref (REPO/NAME:VERSION), as
// `helm pull oci://REPO/NAME --version VERSION` would.
func Pull(client *registry.Client, ref string) ([]byte, error) {
	res, err := client.Pull(strings.TrimPrefix(ref, "oci://"), registry.PullOptWithChart(true))
	if err != nil {
		return nil, fmt.Errorf("pulling the chart %s: %w", ref, err)
	}
	if res.Chart == nil || len(res.Chart.Data) == 0 {
		return nil, errors.New("pulling the chart " + ref + ": the registry returned no chart layer")
	}
	return res.Chart.Data, nil
}
