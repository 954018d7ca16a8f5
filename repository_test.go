// Package repository_test checks what git tracks: sources only, no built
// binaries, no archives, no large files but the vendored API specs.
package repository_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"path"
	"strconv"
	"strings"
	"testing"
)

// maxFileSize is the largest file git may track outside largeFileAllowed.
const maxFileSize = 1 << 20

// largeFileAllowed are the vendored OpenAPI specs of Airflow, copied whole
// so that they can be compared with their upstream.
var largeFileAllowed = []string{"api/airflow/*.yaml", "e2e/airflowsim/testdata/*.yaml"}

// magics are the first bytes of a built binary or a generated archive.
var magics = []struct {
	prefix, kind string
}{
	{"\x7fELF", "an ELF binary"},
	{"\xfe\xed\xfa\xce", "a Mach-O binary"},
	{"\xfe\xed\xfa\xcf", "a Mach-O binary"},
	{"\xce\xfa\xed\xfe", "a Mach-O binary"},
	{"\xcf\xfa\xed\xfe", "a Mach-O binary"},
	{"\xca\xfe\xba\xbe", "a universal Mach-O binary"},
	{"MZ", "a PE (Windows) binary"},
	{"PK\x03\x04", "a zip archive"},
	{"\x1f\x8b", "a gzip archive"},
}

type tracked struct {
	mode, object, path string
}

func TestGitTracksNoBinaryAndNoLargeFile(t *testing.T) {
	files := trackedFiles(t)
	if len(files) == 0 {
		t.Fatal("git ls-files listed no file")
	}
	readBlobs(t, files, func(f tracked, size int64, head []byte) {
		if kind := binaryKind(head); kind != "" {
			t.Errorf("%s is %s: git holds sources only (build it, ignore it in .gitignore)", f.path, kind)
		}
		if f.mode == "100755" && !bytes.HasPrefix(head, []byte("#!")) {
			t.Errorf("%s is executable but no script (no #!): git update-index --chmod=-x %s", f.path, f.path)
		}
		if size > maxFileSize && !allowedLarge(f.path) {
			t.Errorf("%s is %d bytes, more than %d: generate it or keep it out of git", f.path, size, maxFileSize)
		}
	})
}

func binaryKind(head []byte) string {
	for _, m := range magics {
		if bytes.HasPrefix(head, []byte(m.prefix)) {
			return m.kind
		}
	}
	return ""
}

func allowedLarge(p string) bool {
	for _, pattern := range largeFileAllowed {
		if ok, _ := path.Match(pattern, p); ok {
			return true
		}
	}
	return false
}

// trackedFiles lists the index's regular files (not symlinks, not
// submodules), so that a staged binary fails before it is committed.
func trackedFiles(t *testing.T) []tracked {
	t.Helper()
	if err := exec.Command("git", "rev-parse", "--is-inside-work-tree").Run(); err != nil {
		t.Skipf("not in a git work tree (%v): nothing tracked to check", err)
	}
	out, err := exec.Command("git", "ls-files", "--stage", "-z").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	var files []tracked
	for _, entry := range strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00") {
		// <mode> <object> <stage>\t<path>
		meta, p, ok := strings.Cut(entry, "\t")
		fields := strings.Fields(meta)
		if !ok || len(fields) != 3 {
			t.Fatalf("git ls-files: unexpected entry %q", entry)
		}
		if strings.HasPrefix(fields[0], "100") {
			files = append(files, tracked{mode: fields[0], object: fields[1], path: p})
		}
	}
	return files
}

// readBlobs hands each file's size and first bytes, as the index holds
// them, to check; one git cat-file reads them all.
func readBlobs(t *testing.T, files []tracked, check func(f tracked, size int64, head []byte)) {
	t.Helper()
	var in bytes.Buffer
	for _, f := range files {
		fmt.Fprintln(&in, f.object)
	}
	cmd := exec.Command("git", "cat-file", "--batch")
	cmd.Stdin = &in
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("git cat-file: %v", err)
	}
	r := bufio.NewReader(stdout)
	for _, f := range files {
		// <object> blob <size>\n<content>\n
		header, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("git cat-file, %s: %v", f.path, err)
		}
		fields := strings.Fields(header)
		if len(fields) != 3 || fields[1] != "blob" {
			t.Fatalf("git cat-file, %s: unexpected header %q", f.path, header)
		}
		size, err := strconv.ParseInt(fields[2], 10, 64)
		if err != nil {
			t.Fatalf("git cat-file, %s: size in %q: %v", f.path, header, err)
		}
		head := make([]byte, min(size, 8))
		if _, err := io.ReadFull(r, head); err != nil {
			t.Fatalf("git cat-file, %s: %v", f.path, err)
		}
		// The rest of the content and its closing newline.
		if _, err := io.CopyN(io.Discard, r, size-int64(len(head))+1); err != nil {
			t.Fatalf("git cat-file, %s: %v", f.path, err)
		}
		check(f, size, head)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("git cat-file: %v", err)
	}
}
