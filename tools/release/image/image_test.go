package image

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kpo-reaper/kpo-reaper/tools/release/internal/checkout"
)

// The tests read the image `make image` built: $KPO_REAPER_IMAGE (the OCI
// layout; `make test-image` sets it), else they run `make image` once
// themselves, so `go test` here checks exactly what the Makefile builds.

var (
	imageOnce sync.Once
	imageDir  string
	imageErr  error
)

// builtImage returns the layout's directory and its multi-platform index.
func builtImage(t *testing.T) (string, v1.ImageIndex) {
	t.Helper()
	root := checkout.Root(t)
	imageOnce.Do(func() {
		if d := os.Getenv("KPO_REAPER_IMAGE"); d != "" {
			imageDir = d
			return
		}
		cmd := exec.Command("make", "-C", root, "image")
		out, err := cmd.CombinedOutput()
		if err != nil {
			imageErr = err
			log.Printf("make image:\n%s", out)
			return
		}
		imageDir = filepath.Join(root, "bin", "image", "oci")
	})
	if imageErr != nil {
		t.Fatalf("make image: %v", imageErr)
	}
	idx, err := ReadLayout(imageDir)
	if err != nil {
		t.Fatalf("reading the image layout (run make image, or set KPO_REAPER_IMAGE): %v", err)
	}
	return imageDir, idx
}

// platformImages returns the index's images keyed by "os/arch".
func platformImages(t *testing.T, idx v1.ImageIndex) map[string]v1.Image {
	t.Helper()
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]v1.Image{}
	for _, d := range m.Manifests {
		if d.Platform == nil {
			t.Fatalf("index entry %s has no platform", d.Digest)
		}
		if d.MediaType != types.OCIManifestSchema1 {
			t.Errorf("%s: media type %s, want %s", d.Platform, d.MediaType, types.OCIManifestSchema1)
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		out[d.Platform.OS+"/"+d.Platform.Architecture] = img
	}
	return out
}

func configOf(t *testing.T, img v1.Image) *v1.ConfigFile {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return cf
}

// layerFiles returns the image's only layer as its tar headers and the
// contents of its regular files.
func layerFiles(t *testing.T, img v1.Image) ([]*tar.Header, map[string][]byte) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("%d layers, want exactly one (the binary)", len(layers))
	}
	mt, err := layers[0].MediaType()
	if err != nil || mt != types.OCILayer {
		t.Errorf("layer media type %s (%v), want %s", mt, err, types.OCILayer)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var hdrs []*tar.Header
	files := map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		hdrs = append(hdrs, h)
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = b
		}
	}
	return hdrs, files
}

// appVersion reads the chart's appVersion, the version the image carries.
func appVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(checkout.Root(t), "deploy", "helm", "kpo-reaper", "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^appVersion:\s*"?([^"\s]+)"?\s*$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("Chart.yaml has no appVersion")
	}
	return string(m[1])
}

var wantPlatforms = []string{"linux/amd64", "linux/arm64"}

func TestImagePlatforms(t *testing.T) {
	_, idx := builtImage(t)
	mt, err := idx.MediaType()
	if err != nil || mt != types.OCIImageIndex {
		t.Errorf("index media type %s (%v), want %s", mt, err, types.OCIImageIndex)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range m.Manifests {
		got = append(got, d.Platform.String())
	}
	if want := []string{"linux/amd64", "linux/arm64/v8"}; !slices.Equal(got, want) {
		t.Errorf("index platforms %v, want %v", got, want)
	}
	imgs := platformImages(t, idx)
	for _, p := range wantPlatforms {
		img, ok := imgs[p]
		if !ok {
			t.Errorf("no %s image", p)
			continue
		}
		cf := configOf(t, img)
		if cf.OS+"/"+cf.Architecture != p {
			t.Errorf("%s: config says %s/%s", p, cf.OS, cf.Architecture)
		}
	}
}

func TestImageConfig(t *testing.T) {
	_, idx := builtImage(t)
	version, revision := "", ""
	for p, img := range platformImages(t, idx) {
		cf := configOf(t, img)
		c := cf.Config
		if c.User != "65532:65532" {
			t.Errorf("%s: user %q, want 65532:65532 (non-root)", p, c.User)
		}
		if !slices.Equal(c.Entrypoint, []string{"/kpo-reaper"}) {
			t.Errorf("%s: entrypoint %q, want [/kpo-reaper]", p, c.Entrypoint)
		}
		if !slices.Equal(c.Cmd, []string{"run"}) {
			t.Errorf("%s: default args %q, want [run]", p, c.Cmd)
		}
		if len(c.Env) != 0 || len(c.ExposedPorts) != 0 || len(c.Volumes) != 0 {
			t.Errorf("%s: unexpected env %v, ports %v or volumes %v", p, c.Env, c.ExposedPorts, c.Volumes)
		}
		l := c.Labels
		if l[LabelSource] != "https://github.com/kpo-reaper/kpo-reaper" {
			t.Errorf("%s: %s = %q", p, LabelSource, l[LabelSource])
		}
		if !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(l[LabelRevision]) {
			t.Errorf("%s: %s = %q, want a full commit id", p, LabelRevision, l[LabelRevision])
		}
		if l[LabelVersion] == "" {
			t.Errorf("%s: no %s label", p, LabelVersion)
		}
		if version != "" && (l[LabelVersion] != version || l[LabelRevision] != revision) {
			t.Errorf("platforms disagree on version/revision: %v", l)
		}
		version, revision = l[LabelVersion], l[LabelRevision]
		if len(cf.History) != 1 || !cf.History[0].Created.Equal(cf.Created.Time) {
			t.Errorf("%s: history %+v, want one entry created at %v", p, cf.History, cf.Created)
		}
	}
	if head := checkout.Git(t, "rev-parse", "HEAD"); revision != head {
		t.Errorf("revision label %s, HEAD is %s", revision, head)
	}
	// Created is the commit's time, not the build's: a rebuild matches.
	commit := checkout.CommitTime(t)
	for p, img := range platformImages(t, idx) {
		if got := configOf(t, img).Created.Time; !got.Equal(commit) {
			t.Errorf("%s: created %v, want the commit time %v", p, got, commit)
		}
	}
}

// TestImageLayer: one layer, holding the static binary for its platform and
// nothing else (no shell, no /etc, no CA files: the binary carries its roots).
func TestImageLayer(t *testing.T) {
	_, idx := builtImage(t)
	machines := map[string]elf.Machine{"linux/amd64": elf.EM_X86_64, "linux/arm64": elf.EM_AARCH64}
	for p, img := range platformImages(t, idx) {
		hdrs, files := layerFiles(t, img)
		if len(hdrs) != 1 {
			var names []string
			for _, h := range hdrs {
				names = append(names, h.Name)
			}
			t.Fatalf("%s: layer holds %v, want only kpo-reaper", p, names)
		}
		h := hdrs[0]
		if h.Name != "kpo-reaper" || h.Typeflag != tar.TypeReg || h.Mode != 0o755 || h.Uid != 0 || h.Gid != 0 ||
			h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: layer entry %q type %c mode %o owner %d:%d (%q:%q), want a root-owned 0755 file kpo-reaper",
				p, h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.Uname, h.Gname)
		}
		if created := configOf(t, img).Created.Time; !h.ModTime.Equal(created) {
			t.Errorf("%s: file time %v, config created %v", p, h.ModTime, created)
		}
		f, err := elf.NewFile(bytes.NewReader(files["kpo-reaper"]))
		if err != nil {
			t.Fatalf("%s: the binary is not ELF: %v", p, err)
		}
		if f.Machine != machines[p] {
			t.Errorf("%s: ELF machine %v, want %v", p, f.Machine, machines[p])
		}
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP || prog.Type == elf.PT_DYNAMIC {
				t.Errorf("%s: the binary is dynamically linked (%v): it needs CGO_ENABLED=0", p, prog.Type)
			}
		}
		if f.Section(".symtab") != nil {
			t.Errorf("%s: the binary has a symbol table: it was not linked with -s", p)
		}
		f.Close()
	}
}

// TestImageBinaryRunsVersion runs the host's platform's binary, taken out of
// the layer, and checks it prints the version and the commit the labels name.
func TestImageBinaryRunsVersion(t *testing.T) {
	host := "linux/" + runtime.GOARCH
	if runtime.GOOS != "linux" || !slices.Contains(wantPlatforms, host) {
		t.Skipf("no image for this host (%s/%s)", runtime.GOOS, runtime.GOARCH)
	}
	_, idx := builtImage(t)
	img := platformImages(t, idx)[host]
	_, files := layerFiles(t, img)
	bin := filepath.Join(t.TempDir(), "kpo-reaper")
	if err := os.WriteFile(bin, files["kpo-reaper"], 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "version")
	// What the container has: nothing but what Kubernetes adds.
	cmd.Env = []string{"HOSTNAME=kpo-reaper"}
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s version: %v\n%s", host, err, out)
	}
	labels := configOf(t, img).Config.Labels
	m := regexp.MustCompile(`^kpo-reaper (\S+) \(commit ([0-9a-f]+), go[0-9.]+\)\n$`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("version printed %q", out)
	}
	if m[1] != labels[LabelVersion] {
		t.Errorf("the binary says version %s, the label %s", m[1], labels[LabelVersion])
	}
	if len(m[2]) < 7 || !strings.HasPrefix(labels[LabelRevision], m[2]) {
		t.Errorf("the binary says commit %s, the label %s", m[2], labels[LabelRevision])
	}
	t.Logf("%s: %s", host, strings.TrimSpace(string(out)))
}

// TestImageVersionIsAppVersion: the image is tagged and labelled with the
// chart's appVersion (plus -dirty when built from uncommitted changes), so the
// chart's default image.tag names the image this commit builds.
func TestImageVersionIsAppVersion(t *testing.T) {
	dir, idx := builtImage(t)
	want := appVersion(t)
	for p, img := range platformImages(t, idx) {
		if v := configOf(t, img).Config.Labels[LabelVersion]; v != want && v != want+"-dirty" {
			t.Errorf("%s: version label %q, want the chart's appVersion %q", p, v, want)
		}
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if v := m.Annotations[LabelVersion]; v != want && v != want+"-dirty" {
		t.Errorf("index annotation %s = %q, want %q", LabelVersion, v, want)
	}
	p, err := ReadLayoutTop(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ref := p.Annotations[RefName]; ref != m.Annotations[LabelVersion] {
		t.Errorf("layout ref name %q, want the version %q", ref, m.Annotations[LabelVersion])
	}
}

// TestImageReproducible rebuilds the index from the binaries in the layers,
// in another directory at another time, and gets the same digests and the
// same oci-archive bytes.
func TestImageReproducible(t *testing.T) {
	dir, idx := builtImage(t)
	want, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	var spec Spec
	spec.Binaries = map[string]string{}
	tmp := t.TempDir()
	for p, img := range platformImages(t, idx) {
		cf := configOf(t, img)
		spec.Version, spec.Revision, spec.Source = cf.Config.Labels[LabelVersion], cf.Config.Labels[LabelRevision], cf.Config.Labels[LabelSource]
		spec.Created = cf.Created.Time
		_, files := layerFiles(t, img)
		path := filepath.Join(tmp, strings.ReplaceAll(p, "/", "-"))
		if err := os.WriteFile(path, files["kpo-reaper"], 0o700); err != nil {
			t.Fatal(err)
		}
		spec.Binaries[p] = path
	}
	again, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	got, err := again.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("rebuilt index %s, built %s", got, want)
	}
	out := filepath.Join(tmp, "oci")
	if err := WriteLayout(out, again, spec.Version); err != nil {
		t.Fatal(err)
	}
	a1, a2 := filepath.Join(tmp, "a1.tar"), filepath.Join(tmp, "a2.tar")
	if err := WriteArchive(dir, a1, spec.Created); err != nil {
		t.Fatal(err)
	}
	if err := WriteArchive(out, a2, spec.Created); err != nil {
		t.Fatal(err)
	}
	if h1, h2 := fileSum(t, a1), fileSum(t, a2); h1 != h2 {
		t.Errorf("oci-archive of the rebuilt layout differs: %x vs %x", h1, h2)
	}
	t.Logf("index %s", want)
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestImagePushRefusesReferencesWithoutRegistryOrTag: `make image-push`
// names where the image goes in full. (Pushing and pulling back is tested
// with the release, which pushes through the same Push.)
func TestImagePushRefusesReferencesWithoutRegistryOrTag(t *testing.T) {
	dir, _ := builtImage(t)
	for _, bad := range []string{"", "kpo-reaper", "ghcr.io/kpo-reaper/kpo-reaper"} {
		if _, err := Push(context.Background(), dir, bad); err == nil || !strings.Contains(err.Error(), "REGISTRY/REPOSITORY:TAG") {
			t.Errorf("Push(%q) = %v, want a refusal naming REGISTRY/REPOSITORY:TAG", bad, err)
		}
	}
}

// TestImageSizes logs what each platform weighs and bounds it.
func TestImageSizes(t *testing.T) {
	_, idx := builtImage(t)
	sizes, err := Sizes(idx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sizes {
		t.Logf("%s %s: pull %s (layer %d B), binary %s", s.Platform, s.Digest, MiB(s.Compressed+s.ManifestConfig), s.Compressed, MiB(s.Uncompressed))
		if s.Compressed <= 0 || s.Compressed >= s.Uncompressed || s.Uncompressed > 200<<20 {
			t.Errorf("%s: layer %d B compressed, %d B binary", s.Platform, s.Compressed, s.Uncompressed)
		}
	}
}

func TestExtractArchiveRefusesEntriesOutsideTheFolder(t *testing.T) {
	tmp := t.TempDir()
	file := filepath.Join(tmp, "evil.tar")
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "../escaped", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	tw.Close()
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	err := ExtractArchive(file, filepath.Join(tmp, "out"))
	if err == nil || !strings.Contains(err.Error(), "outside") {
		t.Fatalf("ExtractArchive of ../escaped: %v, want a refusal", err)
	}
	if _, err := os.Stat(filepath.Join(tmp, "escaped")); err == nil {
		t.Error("the entry was written outside the folder")
	}
}
