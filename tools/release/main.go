// Command release builds what a kpo-reaper release is, without Docker and
// without the helm command, and pushes it:
//
//   - image: the container image from the static binaries `make image`
//     compiled, one per platform, each in a single layer on no base image,
//     gathered in one OCI index, written as an OCI image layout (a
//     directory) and an oci-archive (one tar of it);
//   - image-push: that layout to a registry;
//   - release: the release folder (binaries, their CycloneDX SBOMs, the
//     image's oci-archive, the packaged Helm chart, SHA256SUMS);
//   - release-push: that folder's image and chart to a registry.
//
// The same commit, binaries and flags give the same bytes and digests.
//
//	go run . image -out ../../bin/image/oci -archive ../../bin/kpo-reaper-image.tar \
//	    -platform linux/amd64=PATH -platform linux/arm64=PATH \
//	    -version v0.1.0 -revision $(git rev-parse HEAD) -created $(git log -1 --format=%ct) \
//	    -source https://github.com/kpo-reaper/kpo-reaper
//	go run . image-push -layout ../../bin/image/oci -ref ghcr.io/kpo-reaper/kpo-reaper:v0.1.0
//	go run . release -out ../../bin/release -layout ../../bin/image/oci \
//	    -platform linux/amd64=PATH -platform linux/arm64=PATH \
//	    -chart ../../deploy/helm/kpo-reaper -created $(git log -1 --format=%ct)
//	go run . release-push -dir ../../bin/release -image ghcr.io/kpo-reaper/kpo-reaper \
//	    -chart-repo ghcr.io/kpo-reaper/charts -created $(git log -1 --format=%ct)
//
// `make image`, `make image-push`, `make release` and `make release-push`
// run these.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kpo-reaper/kpo-reaper/tools/release/image"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// platformFlags collects repeated -platform os/arch=PATH flags.
type platformFlags map[string]string

func (p platformFlags) String() string { return fmt.Sprint(map[string]string(p)) }

func (p platformFlags) Set(v string) error {
	plat, path, ok := strings.Cut(v, "=")
	if !ok || path == "" {
		return fmt.Errorf("%q: want os/arch=PATH", v)
	}
	if _, err := image.Platform(plat); err != nil {
		return err
	}
	if _, dup := p[plat]; dup {
		return fmt.Errorf("platform %s given twice", plat)
	}
	p[plat] = path
	return nil
}

const usage = "usage: release image -out DIR [-archive FILE] -platform os/arch=PATH... -version V -revision SHA -source URL -created EPOCH\n" +
	"       release image-push -layout DIR -ref REGISTRY/REPOSITORY:TAG\n" +
	"       release release -out DIR -layout DIR -platform os/arch=PATH... -chart DIR -created EPOCH\n" +
	"       release release-push -dir DIR -image REGISTRY/REPOSITORY -chart-repo REGISTRY/PATH -created EPOCH\n"

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "image":
		return runImage(args[1:], stdout, stderr)
	case "image-push":
		return runImagePush(args[1:], stdout, stderr)
	case "release":
		return runRelease(args[1:], stdout, stderr)
	case "release-push":
		return runReleasePush(args[1:], stdout, stderr)
	default:
		fmt.Fprint(stderr, usage)
		return 2
	}
}

// epochFlag is a -created flag: Unix seconds (SOURCE_DATE_EPOCH, the
// commit's time: git log -1 --format=%ct).
type epochFlag struct {
	t   time.Time
	set bool
}

func (e *epochFlag) String() string {
	if e == nil || !e.set {
		return ""
	}
	return strconv.FormatInt(e.t.Unix(), 10)
}

func (e *epochFlag) Set(v string) error {
	epoch, err := strconv.ParseInt(v, 10, 64)
	if err != nil || epoch < 0 {
		return fmt.Errorf("%q: want Unix seconds (git log -1 --format=%%ct)", v)
	}
	e.t, e.set = time.Unix(epoch, 0).UTC(), true
	return nil
}

// newFlags is a subcommand's flag set with its -created flag.
func newFlags(name, createdUsage string, stderr io.Writer) (*flag.FlagSet, *epochFlag) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	created := &epochFlag{}
	fs.Var(created, "created", createdUsage)
	return fs, created
}

func runImage(args []string, stdout, stderr io.Writer) int {
	fs, created := newFlags("image", "creation time in Unix seconds (SOURCE_DATE_EPOCH: the commit time)", stderr)
	platforms := platformFlags{}
	fs.Var(platforms, "platform", "os/arch=PATH of a static binary (repeat per platform)")
	out := fs.String("out", "", "OCI image layout directory to write (replaced if it is one)")
	archive := fs.String("archive", "", "also write the layout as one tar file (oci-archive)")
	version := fs.String("version", "", "image version: label, annotation and the layout's ref name")
	revision := fs.String("revision", "", "the commit built (org.opencontainers.image.revision)")
	source := fs.String("source", "", "the source repository URL (org.opencontainers.image.source)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *out == "" || !created.set || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "image: -out and -created are required, and no positional arguments")
		return 2
	}
	spec := image.Spec{
		Binaries: platforms,
		Version:  *version,
		Revision: *revision,
		Source:   *source,
		Created:  created.t,
	}
	idx, err := image.Build(spec)
	if err != nil {
		fmt.Fprintf(stderr, "image: %v\n", err)
		return 1
	}
	if err := image.WriteLayout(*out, idx, spec.Version); err != nil {
		fmt.Fprintf(stderr, "image: writing %s: %v\n", *out, err)
		return 1
	}
	if *archive != "" {
		if err := image.WriteArchive(*out, *archive, spec.Created); err != nil {
			fmt.Fprintf(stderr, "image: writing %s: %v\n", *archive, err)
			return 1
		}
	}
	d, err := idx.Digest()
	if err != nil {
		fmt.Fprintf(stderr, "image: %v\n", err)
		return 1
	}
	sizes, err := image.Sizes(idx)
	if err != nil {
		fmt.Fprintf(stderr, "image: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "image %s: OCI layout %s", spec.Version, *out)
	if *archive != "" {
		fmt.Fprintf(stdout, ", archive %s", *archive)
	}
	fmt.Fprintf(stdout, "\nindex digest %s\n", d)
	for _, s := range sizes {
		fmt.Fprintf(stdout, "  %-14s %s  pull %s (layer %s + manifest/config %d B), binary %s\n",
			s.Platform, s.Digest, image.MiB(s.Compressed+s.ManifestConfig), image.MiB(s.Compressed), s.ManifestConfig, image.MiB(s.Uncompressed))
	}
	return 0
}

func runImagePush(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("image-push", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("layout", "", "OCI image layout directory written by the image command")
	ref := fs.String("ref", "", "where to push: REGISTRY/REPOSITORY:TAG")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" || *ref == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "image-push: -layout and -ref are required")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	pushed, err := image.Push(ctx, *dir, *ref)
	if err != nil {
		fmt.Fprintf(stderr, "image-push: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "pushed %s\n%s\n", *ref, pushed)
	return 0
}

func runRelease(args []string, stdout, stderr io.Writer) int {
	fs, created := newFlags("release", "the commit's time in Unix seconds (SOURCE_DATE_EPOCH)", stderr)
	platforms := platformFlags{}
	fs.Var(platforms, "platform", "os/arch=PATH of the static binary the image holds (repeat per platform)")
	out := fs.String("out", "", "release folder to write (replaced if it holds a previous release)")
	layout := fs.String("layout", "", "OCI image layout the image command wrote")
	chartDir := fs.String("chart", "", "the Helm chart's directory")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *out == "" || *layout == "" || *chartDir == "" || !created.set || len(platforms) == 0 || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "release: -out, -layout, -chart, -created and at least one -platform are required")
		return 2
	}
	names, err := Assemble(ReleaseSpec{Out: *out, Layout: *layout, Binaries: platforms, Chart: *chartDir, Created: created.t})
	if err != nil {
		fmt.Fprintf(stderr, "release: %v\n", err)
		return 1
	}
	sums, err := os.ReadFile(filepath.Join(*out, SumsFile))
	if err != nil {
		fmt.Fprintf(stderr, "release: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "release in %s: %d files\n%s", *out, len(names), sums)
	return 0
}

func runReleasePush(args []string, stdout, stderr io.Writer) int {
	fs, created := newFlags("release-push", "the commit's time in Unix seconds, stamped on the chart's manifest", stderr)
	dir := fs.String("dir", "", "the release folder the release command wrote")
	imageRepo := fs.String("image", "", "image repository: REGISTRY/REPOSITORY (tagged with the version)")
	chartRepo := fs.String("chart-repo", "", "chart repository: REGISTRY/PATH (the chart goes to PATH/NAME:VERSION)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" || *imageRepo == "" || *chartRepo == "" || !created.set || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "release-push: -dir, -image, -chart-repo and -created are required")
		return 2
	}
	files, err := FindReleaseFiles(*dir)
	if err != nil {
		fmt.Fprintf(stderr, "release-push: %v\n", err)
		return 1
	}
	if strings.HasSuffix(strings.TrimSuffix(filepath.Base(files.ImageArchive), imageArchiveSuffix), dirtySuffix) {
		fmt.Fprintf(stderr, "release-push: %s was built from uncommitted changes: commit them, then make release-push\n", files.ImageArchive)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	pushed, err := PushRelease(ctx, *dir, *imageRepo, *chartRepo, created.t)
	if err != nil {
		fmt.Fprintf(stderr, "release-push: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "pushed image %s\npushed chart %s\n", pushed.Image, pushed.Chart)
	return 0
}
