// Package sbom writes a CycloneDX software bill of materials for a Go
// binary from the build information the Go linker stamped into it (its main
// module, every module it links with their go.sum hashes, the standard
// library's version and the build settings), with CycloneDX's own generator
// (cyclonedx-gomod). Only the binary is read: nothing is downloaded, and
// the same binary gives the same document.
package sbom

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/CycloneDX/cyclonedx-gomod/pkg/generate/bin"
	"github.com/google/uuid"
	"github.com/rs/zerolog"
)

// SpecVersion is the CycloneDX version written.
const SpecVersion = cdx.SpecVersion1_6

// generatorModule is the library that reads the build information.
const generatorModule = "github.com/CycloneDX/cyclonedx-gomod"

// FromBinary returns the SBOM of the binary at path, as indented JSON.
// version names the main module's version (the binary, built without VCS
// stamping, says "(devel)"); created is the document's timestamp (the
// commit's time, so that a rebuild gives the same bytes).
func FromBinary(path, version string, created time.Time) ([]byte, error) {
	binary, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	gen, err := bin.NewGenerator(path,
		bin.WithLogger(zerolog.Nop()),
		bin.WithVersionOverride(version),
		bin.WithIncludeStdlib(true),
	)
	if err != nil {
		return nil, err
	}
	bom, err := gen.Generate()
	if err != nil {
		return nil, fmt.Errorf("SBOM of %s: %w", path, err)
	}
	// A serial number derived from the binary and the version: unique per
	// build, yet the same when the same binary is described again.
	sum := sha256.Sum256(append(binary, version...))
	bom.SerialNumber = uuid.NewSHA1(uuid.NameSpaceURL, sum[:]).URN()
	bom.Metadata.Timestamp = created.UTC().Format(time.RFC3339)
	bom.Metadata.Tools = &cdx.ToolsChoice{Components: &[]cdx.Component{{
		Type:    cdx.ComponentTypeApplication,
		Name:    "cyclonedx-gomod",
		Group:   "github.com/CycloneDX",
		Version: moduleVersion(generatorModule),
	}}}
	var buf bytes.Buffer
	enc := cdx.NewBOMEncoder(&buf, cdx.BOMFileFormatJSON)
	enc.SetPretty(true)
	if err := enc.EncodeVersion(bom, SpecVersion); err != nil {
		return nil, fmt.Errorf("SBOM of %s: %w", path, err)
	}
	return buf.Bytes(), nil
}

// Decode reads a document FromBinary wrote.
func Decode(data []byte) (*cdx.BOM, error) {
	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(bytes.NewReader(data), cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		return nil, err
	}
	return &bom, nil
}

// moduleVersion is the version of a module linked into this program.
func moduleVersion(path string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == path {
				return m.Version
			}
		}
	}
	return "unknown"
}
