// Package image builds the kpo-reaper container image with
// go-containerregistry alone (no Docker engine, no base image): the static
// binaries, one per platform, each in a single layer, gathered in one OCI
// index, written as an OCI image layout and as an oci-archive, and pushed.
// The same binaries and metadata give the same digests.
package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// What every image holds, whatever its platform.
const (
	// BinaryPath is the one file in the image, and its entrypoint.
	BinaryPath = "/kpo-reaper"
	// User is the non-root user and group the binary runs as (the
	// distroless "nonroot" ids the chart's securityContext also names).
	User = "65532:65532"

	LabelSource   = "org.opencontainers.image.source"
	LabelVersion  = "org.opencontainers.image.version"
	LabelRevision = "org.opencontainers.image.revision"
	// RefName names the index in the layout's index.json (skopeo's
	// oci:DIR:TAG, podman load), set to the version.
	RefName = "org.opencontainers.image.ref.name"
)

// DefaultArgs is the image's CMD: the daemon; the chart and the manifests
// pass their own args.
var DefaultArgs = []string{"run"}

// Spec is everything an image build depends on: the same Spec (same
// binaries, same metadata) gives the same digests, byte for byte.
type Spec struct {
	// Binaries maps "os/arch" to the path of the static binary for it.
	Binaries map[string]string
	Version  string
	Revision string
	Source   string
	// Created stamps the config, the history and the layer's file
	// (SOURCE_DATE_EPOCH: the commit's time, so that a rebuild matches).
	Created time.Time
}

// Platform parses "os/arch" into the platform an index entry and a config
// carry. arm64 gets the variant v8, as the official multi-arch images have.
func Platform(osArch string) (v1.Platform, error) {
	goos, arch, ok := strings.Cut(osArch, "/")
	if !ok || goos == "" || arch == "" || strings.Contains(arch, "/") {
		return v1.Platform{}, fmt.Errorf("platform %q: want os/arch", osArch)
	}
	p := v1.Platform{OS: goos, Architecture: arch}
	if arch == "arm64" {
		p.Variant = "v8"
	}
	return p, nil
}

// Build assembles the multi-platform index, in memory.
func Build(spec Spec) (v1.ImageIndex, error) {
	if len(spec.Binaries) == 0 {
		return nil, errors.New("no binaries")
	}
	if spec.Version == "" || spec.Revision == "" || spec.Source == "" {
		return nil, errors.New("version, revision and source are required")
	}
	labels := map[string]string{
		LabelSource:   spec.Source,
		LabelVersion:  spec.Version,
		LabelRevision: spec.Revision,
	}
	created := spec.Created.UTC()
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	// Sorted, so the index lists the platforms in the same order every time.
	platforms := make([]string, 0, len(spec.Binaries))
	for p := range spec.Binaries {
		platforms = append(platforms, p)
	}
	sort.Strings(platforms)
	for _, osArch := range platforms {
		plat, err := Platform(osArch)
		if err != nil {
			return nil, err
		}
		bin, err := os.ReadFile(spec.Binaries[osArch])
		if err != nil {
			return nil, err
		}
		img, err := platformImage(bin, plat, labels, created)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", osArch, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &plat},
		})
	}
	annotated, ok := mutate.Annotations(idx, labels).(v1.ImageIndex)
	if !ok {
		return nil, errors.New("annotating the index")
	}
	return annotated, nil
}

// platformImage is one platform's image: a single layer holding the binary,
// on no base at all.
func platformImage(bin []byte, plat v1.Platform, labels map[string]string, created time.Time) (v1.Image, error) {
	layerTar, err := binaryTar(bin, created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(
		func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerTar)), nil },
		tarball.WithMediaType(types.OCILayer),
		tarball.WithCompressionLevel(gzip.BestCompression),
		tarball.WithCompressedCaching,
	)
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   v1.Time{Time: created},
			CreatedBy: "make image: COPY kpo-reaper " + BinaryPath,
			Comment:   "static binary (CGO_ENABLED=0, -trimpath), no base image",
		},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = plat.OS, plat.Architecture, plat.Variant
	cf.Created = v1.Time{Time: created}
	cf.Author = ""
	cf.Config = v1.Config{
		User:       User,
		Entrypoint: []string{BinaryPath},
		Cmd:        DefaultArgs,
		WorkingDir: "/",
		Labels:     labels,
	}
	return mutate.ConfigFile(img, cf)
}

// binaryTar is the layer's tar: the binary and nothing else, owned by root,
// mode 0755, stamped with created, in the ustar format so that no pax
// record with a wall-clock time sneaks in.
func binaryTar(bin []byte, created time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     strings.TrimPrefix(BinaryPath, "/"),
		Mode:     0o755,
		Size:     int64(len(bin)),
		ModTime:  created.Truncate(time.Second),
		Format:   tar.FormatUSTAR,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteLayout writes idx as an OCI image layout in dir, replacing what a
// previous build left there, with the index named by ref (the version).
func WriteLayout(dir string, idx v1.ImageIndex, ref string) error {
	if _, err := os.Stat(dir); err == nil {
		if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
			return fmt.Errorf("%s exists and is not an OCI layout: not replacing it", dir)
		}
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	return p.AppendIndex(idx, layout.WithAnnotations(map[string]string{RefName: ref}))
}

// WriteArchive packs the layout in dir into one tar file (an "oci-archive":
// skopeo copy oci-archive:FILE, podman load -i FILE, docker load -i FILE on
// Docker 25+), sorted, with fixed owners, modes and times.
func WriteArchive(dir, file string, created time.Time) error {
	var names []string
	err := filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != dir {
			names = append(names, path)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(names)
	tmp, err := os.CreateTemp(filepath.Dir(file), ".oci-archive-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	tw := tar.NewWriter(tmp)
	for _, path := range names {
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		hdr := &tar.Header{
			Name:    filepath.ToSlash(rel),
			ModTime: created.Truncate(time.Second),
			Format:  tar.FormatPAX,
		}
		switch {
		case fi.IsDir():
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, hdr.Name+"/", 0o755
		case fi.Mode().IsRegular():
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o644, fi.Size()
		default:
			return fmt.Errorf("%s: not a file or directory", path)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			tmp.Close()
			return err
		}
		if hdr.Typeflag == tar.TypeReg {
			f, err := os.Open(path)
			if err != nil {
				tmp.Close()
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				tmp.Close()
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), file)
}

// ExtractArchive unpacks an oci-archive that WriteArchive wrote into dir
// (which must not exist yet), so that ReadLayout and Push can read it.
// Entries that would land outside dir are refused.
func ExtractArchive(file, dir string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		name := filepath.FromSlash(strings.TrimSuffix(hdr.Name, "/"))
		if !filepath.IsLocal(name) {
			return fmt.Errorf("%s: entry %q points outside the archive", file, hdr.Name)
		}
		path := filepath.Join(dir, name)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			if err := writeFrom(path, tr); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: entry %q is not a file or directory", file, hdr.Name)
		}
	}
}

func writeFrom(path string, r io.Reader) error {
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, r); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// ReadLayoutTop returns the one entry of the layout's index.json: the
// multi-platform index, with its ref name.
func ReadLayoutTop(dir string) (v1.Descriptor, error) {
	_, d, err := readLayout(dir)
	return d, err
}

// ReadLayout opens the index a WriteLayout wrote in dir.
func ReadLayout(dir string) (v1.ImageIndex, error) {
	top, d, err := readLayout(dir)
	if err != nil {
		return nil, err
	}
	return top.ImageIndex(d.Digest)
}

func readLayout(dir string) (v1.ImageIndex, v1.Descriptor, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, v1.Descriptor{}, err
	}
	top, err := p.ImageIndex()
	if err != nil {
		return nil, v1.Descriptor{}, err
	}
	m, err := top.IndexManifest()
	if err != nil {
		return nil, v1.Descriptor{}, err
	}
	if len(m.Manifests) != 1 || m.Manifests[0].MediaType != types.OCIImageIndex {
		return nil, v1.Descriptor{}, fmt.Errorf("%s: index.json should list one image index", dir)
	}
	return top, m.Manifests[0], nil
}

// Push uploads the layout's index, both platforms and their blobs to ref
// (REGISTRY/kpo-reaper:VERSION), with the credentials docker login, podman
// login or a credential helper left in ~/.docker/config.json. It returns
// the pushed reference by digest.
func Push(ctx context.Context, dir, ref string) (string, error) {
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return "", fmt.Errorf("image reference %q: %w (want REGISTRY/REPOSITORY:TAG)", ref, err)
	}
	idx, err := ReadLayout(dir)
	if err != nil {
		return "", err
	}
	if err := remote.WriteIndex(tag, idx, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return "", err
	}
	d, err := idx.Digest()
	if err != nil {
		return "", err
	}
	return tag.Context().Digest(d.String()).String(), nil
}

// MiB formats a byte count in mebibytes, one decimal.
func MiB(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// PlatformSize is what one platform costs: pulled (manifest, config and the
// compressed layer) and unpacked (the binary).
type PlatformSize struct {
	Platform       string
	Digest         v1.Hash
	Compressed     int64
	Uncompressed   int64
	ManifestConfig int64
}

// Sizes lists each platform's digest and sizes, in the index's order.
func Sizes(idx v1.ImageIndex) ([]PlatformSize, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var out []PlatformSize
	for _, d := range m.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			return nil, err
		}
		mf, err := img.Manifest()
		if err != nil {
			return nil, err
		}
		s := PlatformSize{Platform: d.Platform.String(), Digest: d.Digest, ManifestConfig: d.Size + mf.Config.Size}
		layers, err := img.Layers()
		if err != nil {
			return nil, err
		}
		for _, l := range layers {
			n, err := l.Size()
			if err != nil {
				return nil, err
			}
			s.Compressed += n
			rc, err := l.Uncompressed()
			if err != nil {
				return nil, err
			}
			u, err := io.Copy(io.Discard, rc)
			rc.Close()
			if err != nil {
				return nil, err
			}
			s.Uncompressed += u
		}
		out = append(out, s)
	}
	return out, nil
}
