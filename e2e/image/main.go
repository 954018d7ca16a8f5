// Command image builds the kpo-reaper container image without Docker: the
// static binaries `make image` compiled, one per platform, each in a single
// layer on no base image, gathered in one OCI index and written as an OCI
// image layout (a directory) and an oci-archive (one tar of it). The same
// binaries and flags give the same digests. It also pushes that layout.
//
//	go run . build -out ../../bin/image/oci -archive ../../bin/kpo-reaper-image.tar \
//	    -platform linux/amd64=PATH -platform linux/arm64=PATH \
//	    -version v0.1.0 -revision $(git rev-parse HEAD) -created $(git log -1 --format=%ct) \
//	    -source https://github.com/kpo-reaper/kpo-reaper
//	go run . push -layout ../../bin/image/oci -ref ghcr.io/kpo-reaper/kpo-reaper:v0.1.0
//
// `make image` and `make image-push REGISTRY=...` run these.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
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
	if _, err := Platform(plat); err != nil {
		return err
	}
	if _, dup := p[plat]; dup {
		return fmt.Errorf("platform %s given twice", plat)
	}
	p[plat] = path
	return nil
}

func run(args []string, stdout, stderr io.Writer) int {
	usage := "usage: image build -out DIR [-archive FILE] -platform os/arch=PATH... -version V -revision SHA -source URL -created EPOCH\n" +
		"       image push -layout DIR -ref REGISTRY/REPOSITORY:TAG\n"
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "build":
		return runBuild(args[1:], stdout, stderr)
	case "push":
		return runPush(args[1:], stdout, stderr)
	default:
		fmt.Fprint(stderr, usage)
		return 2
	}
}

func runBuild(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	platforms := platformFlags{}
	fs.Var(platforms, "platform", "os/arch=PATH of a static binary (repeat per platform)")
	out := fs.String("out", "", "OCI image layout directory to write (replaced if it is one)")
	archive := fs.String("archive", "", "also write the layout as one tar file (oci-archive)")
	version := fs.String("version", "", "image version: label, annotation and the layout's ref name")
	revision := fs.String("revision", "", "the commit built (org.opencontainers.image.revision)")
	source := fs.String("source", "", "the source repository URL (org.opencontainers.image.source)")
	created := fs.String("created", "", "creation time in Unix seconds (SOURCE_DATE_EPOCH: the commit time)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *out == "" || *created == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "build: -out and -created are required, and no positional arguments")
		return 2
	}
	epoch, err := strconv.ParseInt(*created, 10, 64)
	if err != nil || epoch < 0 {
		fmt.Fprintf(stderr, "build: -created %q: want Unix seconds\n", *created)
		return 2
	}
	spec := Spec{
		Binaries: platforms,
		Version:  *version,
		Revision: *revision,
		Source:   *source,
		Created:  time.Unix(epoch, 0).UTC(),
	}
	idx, err := Build(spec)
	if err != nil {
		fmt.Fprintf(stderr, "build: %v\n", err)
		return 1
	}
	if err := WriteLayout(*out, idx, spec.Version); err != nil {
		fmt.Fprintf(stderr, "build: writing %s: %v\n", *out, err)
		return 1
	}
	if *archive != "" {
		if err := WriteArchive(*out, *archive, spec.Created); err != nil {
			fmt.Fprintf(stderr, "build: writing %s: %v\n", *archive, err)
			return 1
		}
	}
	d, err := idx.Digest()
	if err != nil {
		fmt.Fprintf(stderr, "build: %v\n", err)
		return 1
	}
	sizes, err := Sizes(idx)
	if err != nil {
		fmt.Fprintf(stderr, "build: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "image %s: OCI layout %s", spec.Version, *out)
	if *archive != "" {
		fmt.Fprintf(stdout, ", archive %s", *archive)
	}
	fmt.Fprintf(stdout, "\nindex digest %s\n", d)
	for _, s := range sizes {
		fmt.Fprintf(stdout, "  %-14s %s  pull %s (layer %s + manifest/config %d B), binary %s\n",
			s.Platform, s.Digest, mib(s.Compressed+s.ManifestConfig), mib(s.Compressed), s.ManifestConfig, mib(s.Uncompressed))
	}
	return 0
}

func runPush(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("push", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("layout", "", "OCI image layout directory written by build")
	ref := fs.String("ref", "", "where to push: REGISTRY/REPOSITORY:TAG")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" || *ref == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "push: -layout and -ref are required")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	pushed, err := Push(ctx, *dir, *ref)
	if err != nil {
		fmt.Fprintf(stderr, "push: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "pushed %s\n%s\n", *ref, pushed)
	return 0
}

func mib(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
