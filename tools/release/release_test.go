package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"debug/buildinfo"
	"encoding/base64"
	"encoding/hex"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	helmregistry "helm.sh/helm/v4/pkg/registry"

	"github.com/kpo-reaper/kpo-reaper/tools/release/chart"
	"github.com/kpo-reaper/kpo-reaper/tools/release/image"
	"github.com/kpo-reaper/kpo-reaper/tools/release/internal/checkout"
	"github.com/kpo-reaper/kpo-reaper/tools/release/sbom"
)

// The tests read the folder `make release` wrote: $KPO_REAPER_RELEASE
// (`make test-release` sets it), else they run `make release` once
// themselves, so that `go test` here checks exactly what the Makefile builds.

var (
	releaseOnce sync.Once
	releaseDir  string
	releaseErr  error
)

var wantPlatforms = []string{"linux/amd64", "linux/arm64"}

// makeRelease runs `make release` into dir and returns its output.
func makeRelease(t *testing.T, dir string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command("make", "-C", checkout.Root(t), "release", "RELEASE_DIR="+dir)
	return cmd.CombinedOutput()
}

func builtRelease(t *testing.T) string {
	t.Helper()
	root := checkout.Root(t)
	releaseOnce.Do(func() {
		if d := os.Getenv("KPO_REAPER_RELEASE"); d != "" {
			releaseDir = d
			return
		}
		releaseDir = filepath.Join(root, "bin", "release")
		if out, err := makeRelease(t, releaseDir); err != nil {
			releaseErr = err
			log.Printf("make release:\n%s", out)
		}
	})
	if releaseErr != nil {
		t.Fatalf("make release: %v", releaseErr)
	}
	return releaseDir
}

// releaseVersion is the version the folder's names carry: the image's.
func releaseVersion(t *testing.T, dir string) string {
	t.Helper()
	return strings.TrimSuffix(strings.TrimPrefix(filepath.Base(releaseFiles(t, dir).ImageArchive), "kpo-reaper-"), imageArchiveSuffix)
}

// releaseFiles finds the release files in dir, or fails the test.
func releaseFiles(t *testing.T, dir string) ReleaseFiles {
	t.Helper()
	files, err := FindReleaseFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestReleaseFolderHoldsEveryArtifactWithItsChecksum(t *testing.T) {
	dir := builtRelease(t)
	if err := VerifySums(dir); err != nil {
		t.Fatal(err)
	}
	v := releaseVersion(t, dir)
	chartVersion := regexp.MustCompile(`^v`).ReplaceAllString(strings.TrimSuffix(v, dirtySuffix), "")
	if strings.HasSuffix(v, dirtySuffix) {
		chartVersion += dirtySuffix
	}
	want := []string{SumsFile, "kpo-reaper-" + chartVersion + ".tgz", imageArchiveName(v)}
	for _, p := range wantPlatforms {
		want = append(want, binaryName(v, p), sbomName(v, p))
	}
	slices.Sort(want)
	sums, err := ReadSums(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := []string{SumsFile}
	for n := range sums {
		got = append(got, n)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("release folder lists %v, want %v", got, want)
	}
	for _, p := range wantPlatforms {
		bi, err := buildinfo.ReadFile(filepath.Join(dir, binaryName(v, p)))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if bi.Main.Path != "github.com/kpo-reaper/kpo-reaper" {
			t.Errorf("%s: main module %s", p, bi.Main.Path)
		}
	}
}

// TestReleaseIsReproducible builds the release a second time, into another
// folder, and gets the same checksums for every file.
func TestReleaseIsReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the release again")
	}
	dir := builtRelease(t)
	first, err := os.ReadFile(filepath.Join(dir, SumsFile))
	if err != nil {
		t.Fatal(err)
	}
	again := filepath.Join(t.TempDir(), "release")
	if out, err := makeRelease(t, again); err != nil {
		t.Fatalf("make release again: %v\n%s", err, out)
	}
	second, err := os.ReadFile(filepath.Join(again, SumsFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Fatalf("a second build differs:\nfirst:\n%s\nsecond:\n%s", first, second)
	}
	t.Logf("two builds, same checksums:\n%s", first)
}

func TestReleaseSBOMListsTheBinarysModules(t *testing.T) {
	dir := builtRelease(t)
	v := releaseVersion(t, dir)
	created := checkout.CommitTime(t)
	sums, err := ReadSums(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range wantPlatforms {
		bin := filepath.Join(dir, binaryName(v, p))
		data, err := os.ReadFile(filepath.Join(dir, sbomName(v, p)))
		if err != nil {
			t.Fatal(err)
		}
		bom, err := sbom.Decode(data)
		if err != nil {
			t.Fatalf("%s: the SBOM is not CycloneDX JSON: %v", p, err)
		}
		if bom.BOMFormat != cdx.BOMFormat || bom.SpecVersion != sbom.SpecVersion || !strings.HasPrefix(bom.SerialNumber, "urn:uuid:") {
			t.Errorf("%s: format %q spec %v serial %q", p, bom.BOMFormat, bom.SpecVersion, bom.SerialNumber)
		}
		if bom.Metadata == nil || bom.Metadata.Component == nil {
			t.Fatalf("%s: no metadata component", p)
		}
		if ts := bom.Metadata.Timestamp; ts != created.Format(time.RFC3339) {
			t.Errorf("%s: timestamp %s, want the commit's time %s", p, ts, created.Format(time.RFC3339))
		}
		main := bom.Metadata.Component
		if main.Name != "github.com/kpo-reaper/kpo-reaper" || main.Version != v || main.Type != cdx.ComponentTypeApplication {
			t.Errorf("%s: main component %s %s (%s), want github.com/kpo-reaper/kpo-reaper %s application", p, main.Name, main.Version, main.Type, v)
		}
		props := map[string]string{}
		if bom.Metadata.Properties != nil {
			for _, pr := range *bom.Metadata.Properties {
				props[pr.Name] = pr.Value
			}
		}
		goos, goarch, _ := strings.Cut(p, "/")
		if props["cdx:gomod:build:env:GOOS"] != goos || props["cdx:gomod:build:env:GOARCH"] != goarch {
			t.Errorf("%s: SBOM says GOOS %q GOARCH %q", p, props["cdx:gomod:build:env:GOOS"], props["cdx:gomod:build:env:GOARCH"])
		}
		if got := props["cdx:gomod:binary:hash:SHA-256"]; got != sums[binaryName(v, p)] {
			t.Errorf("%s: SBOM's binary SHA-256 %s, SHA256SUMS %s", p, got, sums[binaryName(v, p)])
		}

		// Every module the binary links, at its version and go.sum hash,
		// and the standard library; nothing else.
		bi, err := buildinfo.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"std@" + bi.GoVersion: ""}
		for _, d := range bi.Deps {
			m := d
			if d.Replace != nil {
				m = d.Replace
			}
			want[m.Path+"@"+m.Version] = m.Sum
		}
		got := map[string]cdx.Component{}
		if bom.Components != nil {
			for _, c := range *bom.Components {
				got[c.Name+"@"+c.Version] = c
			}
		}
		for mod, sum := range want {
			c, ok := got[mod]
			if !ok {
				t.Errorf("%s: the SBOM lacks %s", p, mod)
				continue
			}
			if !strings.HasPrefix(c.PackageURL, "pkg:golang/") {
				t.Errorf("%s: %s has purl %q", p, mod, c.PackageURL)
			}
			if sum != "" && !hasHash(c, sum) {
				t.Errorf("%s: %s lacks the go.sum hash %s", p, mod, sum)
			}
		}
		for mod := range got {
			if _, ok := want[mod]; !ok {
				t.Errorf("%s: the SBOM lists %s, which the binary does not link", p, mod)
			}
		}
		for _, mod := range []string{"k8s.io/client-go", "github.com/prometheus/client_golang"} {
			if !slices.ContainsFunc(*bom.Components, func(c cdx.Component) bool { return c.Name == mod }) {
				t.Errorf("%s: the SBOM lacks %s, which the reaper links", p, mod)
			}
		}
		t.Logf("%s: %d components", p, len(got))
	}
}

// hasHash tells whether c carries the SHA-256 that a go.sum "h1:" hash
// (base64) holds, in hex.
func hasHash(c cdx.Component, goSum string) bool {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(goSum, "h1:"))
	if err != nil || c.Hashes == nil {
		return false
	}
	for _, h := range *c.Hashes {
		if h.Algorithm == cdx.HashAlgoSHA256 && h.Value == hex.EncodeToString(raw) {
			return true
		}
	}
	return false
}

func TestReleaseChartIsPackagedForTheImage(t *testing.T) {
	dir := builtRelease(t)
	files := releaseFiles(t, dir)
	v := releaseVersion(t, dir)
	data, err := os.ReadFile(files.Chart)
	if err != nil {
		t.Fatal(err)
	}
	c, err := chart.Load(data)
	if err != nil {
		t.Fatalf("helm cannot load the packaged chart: %v", err)
	}
	if c.Name() != "kpo-reaper" || c.Metadata.AppVersion != v {
		t.Errorf("chart %s appVersion %s, want kpo-reaper appVersion %s (the image's version)", c.Name(), c.Metadata.AppVersion, v)
	}
	if len(c.Templates) == 0 || len(c.Values) == 0 || len(c.Schema) == 0 {
		t.Errorf("packaged chart: %d templates, %d values, schema %d bytes", len(c.Templates), len(c.Values), len(c.Schema))
	}
	// Every entry carries the commit's time, whatever the files' mtimes.
	created := checkout.CommitTime(t)
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if !zr.ModTime.IsZero() {
		t.Errorf("gzip header time %v, want none", zr.ModTime)
	}
	tr := tar.NewReader(zr)
	n := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
		if !h.ModTime.Equal(created) {
			t.Errorf("%s: time %v, want the commit's %v", h.Name, h.ModTime, created)
		}
		if !strings.HasPrefix(h.Name, "kpo-reaper/") {
			t.Errorf("entry %s outside kpo-reaper/", h.Name)
		}
	}
	t.Logf("%s: %d files", filepath.Base(files.Chart), n)
}

// TestReleasePushedAndPulledBack pushes the release, the code path of
// `make release-push`, to an in-process registry, then pulls the image back
// by its tag with go-containerregistry and the chart with Helm's registry
// client, and compares both with the folder's files.
func TestReleasePushedAndPulledBack(t *testing.T) {
	dir := builtRelease(t)
	files := releaseFiles(t, dir)
	v := releaseVersion(t, dir)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	creds := helmregistry.ClientOptCredentialsFile(filepath.Join(t.TempDir(), "config.json"))

	pushed, err := PushRelease(context.Background(), dir, host+"/kpo-reaper/kpo-reaper", host+"/kpo-reaper/charts", checkout.CommitTime(t), creds)
	if err != nil {
		t.Fatal(err)
	}

	// The image: the index in the archive, under the version's tag.
	layout := filepath.Join(t.TempDir(), "oci")
	if err := image.ExtractArchive(files.ImageArchive, layout); err != nil {
		t.Fatal(err)
	}
	idx, err := image.ReadLayout(layout)
	if err != nil {
		t.Fatal(err)
	}
	want, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(host + "/kpo-reaper/kpo-reaper:" + v)
	if err != nil {
		t.Fatal(err)
	}
	if pushed.Image != tag.Context().Digest(want.String()).String() {
		t.Errorf("pushed image %s, want %s@%s", pushed.Image, tag.Context(), want)
	}
	remoteIdx, err := remote.Index(tag)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := remoteIdx.Digest(); got != want {
		t.Errorf("the registry serves %s for %s, the archive holds %s", got, tag, want)
	}
	for _, p := range wantPlatforms {
		plat, _ := image.Platform(p)
		img, err := remote.Image(tag, remote.WithPlatform(plat))
		if err != nil {
			t.Errorf("pulling %s: %v", p, err)
			continue
		}
		if cf, err := img.ConfigFile(); err != nil || cf.Architecture != plat.Architecture {
			t.Errorf("pulled %s, got %+v (%v)", p, cf, err)
		}
	}

	// The chart: pulled by Helm, the same bytes as the folder's .tgz.
	data, err := os.ReadFile(files.Chart)
	if err != nil {
		t.Fatal(err)
	}
	local, err := chart.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	ref := host + "/kpo-reaper/charts/kpo-reaper:" + local.Metadata.Version
	if !strings.HasPrefix(pushed.Chart, ref+"@sha256:") {
		t.Errorf("pushed chart %s, want %s@sha256:...", pushed.Chart, ref)
	}
	client, err := chart.NewClient(host, creds)
	if err != nil {
		t.Fatal(err)
	}
	pulled, err := chart.Pull(client, "oci://"+ref)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pulled, data) {
		t.Errorf("pulled chart (%d bytes) differs from %s (%d bytes)", len(pulled), files.Chart, len(data))
	}
	c, err := chart.Load(pulled)
	if err != nil {
		t.Fatal(err)
	}
	if c.Metadata.AppVersion != v {
		t.Errorf("pulled chart's appVersion %s, want %s", c.Metadata.AppVersion, v)
	}
	// The chart's manifest is Helm's: its config and layer media types.
	cref, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	m, err := remote.Get(cref)
	if err != nil {
		t.Fatal(err)
	}
	mf, err := v1.ParseManifest(bytes.NewReader(m.Manifest))
	if err != nil {
		t.Fatal(err)
	}
	if string(mf.Config.MediaType) != helmregistry.ConfigMediaType || len(mf.Layers) != 1 ||
		string(mf.Layers[0].MediaType) != helmregistry.ChartLayerMediaType {
		t.Errorf("chart manifest config %s, layers %+v", mf.Config.MediaType, mf.Layers)
	}
	t.Logf("pushed %s and %s", pushed.Image, pushed.Chart)
}

func TestReleasePushRefusesTamperedFiles(t *testing.T) {
	dir := builtRelease(t)
	copyDir := filepath.Join(t.TempDir(), "release")
	if err := os.Mkdir(copyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := copyFile(filepath.Join(dir, e.Name()), filepath.Join(copyDir, e.Name()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files, err := FindReleaseFiles(copyDir)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(files.Chart, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("x"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = PushRelease(context.Background(), copyDir, "127.0.0.1:1/kpo-reaper", "127.0.0.1:1/charts", time.Unix(0, 0))
	if err == nil || !strings.Contains(err.Error(), filepath.Base(files.Chart)+": checksum differs") {
		t.Fatalf("push of a tampered release: %v, want the chart's checksum named", err)
	}
}

func TestChartVersionsFollowTheImage(t *testing.T) {
	for _, tc := range []struct {
		chart, image, wantVersion, wantApp string
	}{
		{"0.1.0", "v0.1.0", "0.1.0", "v0.1.0"},
		{"0.1.0", "v0.1.0-dirty", "0.1.0-dirty", "v0.1.0-dirty"},
		{"0.2.0-dirty", "v0.2.0-dirty", "0.2.0-dirty", "v0.2.0-dirty"},
		{"1.0.0", "v1.0.1", "1.0.0", "v1.0.1"},
	} {
		v, app := chartVersions(tc.chart, tc.image)
		if v != tc.wantVersion || app != tc.wantApp {
			t.Errorf("chartVersions(%q, %q) = %q, %q; want %q, %q", tc.chart, tc.image, v, app, tc.wantVersion, tc.wantApp)
		}
	}
}

func TestReleaseNeverReplacesAnUnrelatedFolder(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Assemble(ReleaseSpec{Out: dir, Layout: filepath.Join(t.TempDir(), "none"), Binaries: map[string]string{"linux/amd64": "x"}})
	if err == nil {
		t.Fatal("Assemble accepted a missing layout")
	}
	if err := checkReplaceable(dir); err == nil || !strings.Contains(err.Error(), "not a release folder") {
		t.Errorf("checkReplaceable(folder with notes.txt) = %v, want a refusal", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "notes.txt")); err != nil {
		t.Errorf("notes.txt gone: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, SumsFile), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkReplaceable(dir); err != nil {
		t.Errorf("a previous release folder is refused: %v", err)
	}
}
