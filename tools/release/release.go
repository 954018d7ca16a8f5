package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"helm.sh/helm/v4/pkg/registry"

	"github.com/kpo-reaper/kpo-reaper/tools/release/chart"
	"github.com/kpo-reaper/kpo-reaper/tools/release/image"
	"github.com/kpo-reaper/kpo-reaper/tools/release/sbom"
)

// SumsFile lists the SHA-256 of every other file in a release folder, in
// the format of sha256sum (`sha256sum -c SHA256SUMS` checks it).
const SumsFile = "SHA256SUMS"

// dirtySuffix marks a version built from uncommitted changes (the Makefile
// adds it).
const dirtySuffix = "-dirty"

// ReleaseSpec is what a release folder is made of.
type ReleaseSpec struct {
	// Out is the release folder, replaced if it holds a previous release.
	Out string
	// Layout is the OCI image layout `make image` wrote; its ref name is the
	// release's version.
	Layout string
	// Binaries maps "os/arch" to the static binary the image holds for it.
	Binaries map[string]string
	// Chart is the Helm chart's directory.
	Chart string
	// Created is the commit's time: every timestamp in the release.
	Created time.Time
}

// Names of the files in a release folder of a version.
func binaryName(version, osArch string) string {
	return "kpo-reaper-" + version + "-" + strings.ReplaceAll(osArch, "/", "-")
}

func sbomName(version, osArch string) string { return binaryName(version, osArch) + ".cdx.json" }

func imageArchiveName(version string) string { return "kpo-reaper-" + version + "-image.oci.tar" }

const imageArchiveSuffix = "-image.oci.tar"

// chartVersions gives the packaged chart's version and appVersion: the
// appVersion is the image's version, so that the chart installs the image
// released beside it; a build from uncommitted changes marks the chart's
// version too, so that it can never pass for the released chart.
func chartVersions(chartVersion, imageVersion string) (version, appVersion string) {
	if strings.HasSuffix(imageVersion, dirtySuffix) && !strings.HasSuffix(chartVersion, dirtySuffix) {
		chartVersion += dirtySuffix
	}
	return chartVersion, imageVersion
}

// Assemble writes the release folder: each platform's binary and its SBOM,
// the image as one oci-archive, the packaged chart and SHA256SUMS. It
// returns the files' names. The folder is built beside Out and moved into
// place at the end, so a failed run leaves the previous release whole.
func Assemble(spec ReleaseSpec) ([]string, error) {
	top, err := image.ReadLayoutTop(spec.Layout)
	if err != nil {
		return nil, fmt.Errorf("reading the image layout %s (run make image): %w", spec.Layout, err)
	}
	version := top.Annotations[image.RefName]
	if version == "" {
		return nil, fmt.Errorf("image layout %s: the index has no %s (the version)", spec.Layout, image.RefName)
	}
	if len(spec.Binaries) == 0 {
		return nil, errors.New("no binaries")
	}
	if err := checkReplaceable(spec.Out); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(spec.Out), 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(spec.Out), ".release-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}

	platforms := make([]string, 0, len(spec.Binaries))
	for p := range spec.Binaries {
		platforms = append(platforms, p)
	}
	sort.Strings(platforms)
	for _, p := range platforms {
		bin := filepath.Join(tmp, binaryName(version, p))
		if err := copyFile(spec.Binaries[p], bin, 0o755); err != nil {
			return nil, err
		}
		doc, err := sbom.FromBinary(bin, version, spec.Created)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(tmp, sbomName(version, p)), doc, 0o644); err != nil {
			return nil, err
		}
	}
	if err := image.WriteArchive(spec.Layout, filepath.Join(tmp, imageArchiveName(version)), spec.Created); err != nil {
		return nil, fmt.Errorf("writing the image archive: %w", err)
	}
	meta, err := chart.Metadata(spec.Chart)
	if err != nil {
		return nil, err
	}
	chartVersion, appVersion := chartVersions(meta.Version, version)
	if _, err := chart.Package(spec.Chart, tmp, chartVersion, appVersion, spec.Created); err != nil {
		return nil, err
	}
	names, err := WriteSums(tmp)
	if err != nil {
		return nil, err
	}
	if err := os.RemoveAll(spec.Out); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, spec.Out); err != nil {
		return nil, err
	}
	return names, nil
}

// checkReplaceable refuses to replace anything but a release folder (one
// holding SHA256SUMS) or an empty one, so that a mistyped -out never wipes
// unrelated files.
func checkReplaceable(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, SumsFile)); err != nil {
		return fmt.Errorf("%s exists and is not a release folder (no %s): not replacing it", dir, SumsFile)
	}
	return nil
}

func copyFile(from, to string, mode os.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(to, mode)
}

// WriteSums writes SumsFile for every other regular file in dir, sorted by
// name, and returns every file's name, SumsFile included.
func WriteSums(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	var names []string
	for _, e := range entries {
		if e.Name() == SumsFile {
			continue
		}
		if !e.Type().IsRegular() {
			return nil, fmt.Errorf("%s: %s is not a regular file", dir, e.Name())
		}
		sum, err := fileSHA256(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&buf, "%s  %s\n", sum, e.Name())
		names = append(names, e.Name())
	}
	if err := os.WriteFile(filepath.Join(dir, SumsFile), buf.Bytes(), 0o644); err != nil {
		return nil, err
	}
	names = append(names, SumsFile)
	sort.Strings(names)
	return names, nil
}

// ReadSums parses SumsFile in dir into name → hex SHA-256.
func ReadSums(dir string) (map[string]string, error) {
	f, err := os.Open(filepath.Join(dir, SumsFile))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sums := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok || len(sum) != sha256.Size*2 || name == "" {
			return nil, fmt.Errorf("%s line %d: want \"<sha256>  <file>\"", SumsFile, n)
		}
		sums[name] = sum
	}
	return sums, sc.Err()
}

// VerifySums checks that SumsFile lists every other file in dir with its
// SHA-256, and nothing else.
func VerifySums(dir string) error {
	sums, err := ReadSums(dir)
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var problems []string
	seen := map[string]bool{}
	for _, e := range entries {
		if e.Name() == SumsFile {
			continue
		}
		seen[e.Name()] = true
		want, ok := sums[e.Name()]
		if !ok {
			problems = append(problems, e.Name()+": not listed")
			continue
		}
		got, err := fileSHA256(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		if got != want {
			problems = append(problems, e.Name()+": checksum differs")
		}
	}
	for name := range sums {
		if !seen[name] {
			problems = append(problems, name+": listed but missing")
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return fmt.Errorf("%s in %s: %s", SumsFile, dir, strings.Join(problems, "; "))
	}
	return nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Pushed is where a release went.
type Pushed struct {
	Image string // REPO:VERSION@DIGEST
	Chart string // REPO/NAME:VERSION@DIGEST
}

// ReleaseFiles are the two files of a release folder that go to a registry.
type ReleaseFiles struct {
	ImageArchive string
	Chart        string
}

// FindReleaseFiles finds the image archive and the packaged chart in a
// release folder whose checksums hold.
func FindReleaseFiles(dir string) (ReleaseFiles, error) {
	if err := VerifySums(dir); err != nil {
		return ReleaseFiles{}, fmt.Errorf("%w (run make release again)", err)
	}
	var f ReleaseFiles
	entries, err := os.ReadDir(dir)
	if err != nil {
		return f, err
	}
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		switch {
		case strings.HasSuffix(e.Name(), imageArchiveSuffix):
			if f.ImageArchive != "" {
				return f, fmt.Errorf("%s: more than one image archive", dir)
			}
			f.ImageArchive = path
		case strings.HasSuffix(e.Name(), ".tgz"):
			if f.Chart != "" {
				return f, fmt.Errorf("%s: more than one packaged chart", dir)
			}
			f.Chart = path
		}
	}
	if f.ImageArchive == "" || f.Chart == "" {
		return f, fmt.Errorf("%s: want one *%s and one chart .tgz (run make release)", dir, imageArchiveSuffix)
	}
	return f, nil
}

// PushRelease pushes the release folder's image to imageRepo:VERSION and its
// chart to chartRepo/NAME:VERSION (what `helm push CHART oci://chartRepo`
// does), after checking SHA256SUMS. created stamps the chart's manifest.
func PushRelease(ctx context.Context, dir, imageRepo, chartRepo string, created time.Time, opts ...registry.ClientOption) (Pushed, error) {
	files, err := FindReleaseFiles(dir)
	if err != nil {
		return Pushed{}, err
	}
	layout, err := os.MkdirTemp("", "release-image-*")
	if err != nil {
		return Pushed{}, err
	}
	defer os.RemoveAll(layout)
	layout = filepath.Join(layout, "oci")
	if err := image.ExtractArchive(files.ImageArchive, layout); err != nil {
		return Pushed{}, err
	}
	top, err := image.ReadLayoutTop(layout)
	if err != nil {
		return Pushed{}, err
	}
	version := top.Annotations[image.RefName]
	if version == "" {
		return Pushed{}, fmt.Errorf("%s: the image index has no %s (the version)", files.ImageArchive, image.RefName)
	}
	imageRef := strings.TrimSuffix(imageRepo, "/") + ":" + version
	pushedImage, err := image.Push(ctx, layout, imageRef)
	if err != nil {
		return Pushed{}, fmt.Errorf("pushing the image to %s: %w", imageRef, err)
	}
	client, err := chart.NewClient(chartRepo, opts...)
	if err != nil {
		return Pushed{}, err
	}
	chartRef, digest, err := chart.Push(client, files.Chart, chartRepo, created)
	if err != nil {
		return Pushed{}, err
	}
	return Pushed{Image: pushedImage, Chart: chartRef + "@" + digest}, nil
}
