package harness

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// BinDirEnv overrides where the binaries are looked up, for a checkout whose
// binaries live elsewhere (a CI cache, a shared directory).
const BinDirEnv = "KPO_E2E_BIN_DIR"

const (
	e2eModulePath = "github.com/kpo-reaper/kpo-reaper/e2e"
	k8sModulePath = "k8s.io/kubernetes"
	etcdModPath   = "go.etcd.io/etcd/server/v3"
)

// Binary names inside the bin directory.
const (
	EtcdBinary      = "etcd"
	APIServerBinary = "kube-apiserver"
)

// BinDir returns the directory holding the etcd and kube-apiserver binaries:
// $KPO_E2E_BIN_DIR if set, otherwise e2e/bin/k8s-<version>-etcd-<version>
// with the versions read from tools/e2e-bins/go.mod. Keying the folder by version
// means a version bump in go.mod can never run against stale binaries. It
// fails, naming the command that builds them, if either binary is missing.
func BinDir() (string, error) {
	if dir := os.Getenv(BinDirEnv); dir != "" {
		if err := checkBinaries(dir); err != nil {
			return "", fmt.Errorf("%s=%s: %w\nunset it to use the binaries that `make e2e-bins` builds, "+
				"or build into it with `%s=%s tools/e2e-bins/build.sh`", BinDirEnv, dir, err, BinDirEnv, dir)
		}
		return dir, nil
	}
	root, err := e2eRoot()
	if err != nil {
		return "", err
	}
	k8s, etcd, err := toolVersions(toolsGoMod(root))
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, "bin", "k8s-"+k8s+"-etcd-"+etcd)
	if err := checkBinaries(dir); err != nil {
		return "", fmt.Errorf("%w\nrun `make e2e-bins` (or tools/e2e-bins/build.sh) to build kube-apiserver %s and etcd %s "+
			"from the Go module proxy (the first build takes 15-18 minutes on 2 cores), or set %s", err, k8s, etcd, BinDirEnv)
	}
	return dir, nil
}

func checkBinaries(dir string) error {
	var missing []string
	for _, name := range []string{EtcdBinary, APIServerBinary} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("e2e binaries not found: no executable %s in %s", strings.Join(missing, ", "), dir)
	}
	return nil
}

// e2eRoot finds the e2e module's directory. The source file's own path works
// for `go test` in this module; it is not a real path under -trimpath, so the
// working directory (and its parents) are searched too, which covers a test
// binary run from anywhere inside the checkout.
func e2eRoot() (string, error) {
	var starts []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	for _, start := range starts {
		for dir := start; ; dir = filepath.Dir(dir) {
			for _, cand := range []string{dir, filepath.Join(dir, "e2e")} {
				if modulePath(filepath.Join(cand, "go.mod")) == e2eModulePath {
					return cand, nil
				}
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	return "", fmt.Errorf("cannot find the e2e module (go.mod of %s) above %v; set %s to the directory holding etcd and kube-apiserver",
		e2eModulePath, starts, BinDirEnv)
}

func modulePath(gomod string) string {
	f, err := os.Open(gomod)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) == 2 && fields[0] == "module" {
			return strings.Trim(fields[1], `"`)
		}
	}
	return ""
}

// toolsGoMod is the go.mod of the module that builds the binaries
// (tools/e2e-bins, beside e2e/ at the repository's root), given the e2e
// module's directory.
func toolsGoMod(e2eDir string) string {
	return filepath.Join(e2eDir, "..", "tools", "e2e-bins", "go.mod")
}

// toolVersions reads the required versions from the tools module's go.mod.
// A line scan is enough for a file this repository writes itself, and saves
// a dependency on golang.org/x/mod or a `go` binary at test time.
func toolVersions(gomod string) (k8s, etcd string, err error) {
	data, err := os.ReadFile(gomod)
	if err != nil {
		return "", "", fmt.Errorf("reading the module that builds the e2e binaries to learn which to use: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if i := strings.Index(line, "//"); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) > 0 && fields[0] == "require" {
			fields = fields[1:]
		}
		// Replace lines ("a => b v") are skipped: the required version is
		// the one the folder is named after.
		if len(fields) != 2 || !strings.HasPrefix(fields[1], "v") {
			continue
		}
		switch fields[0] {
		case k8sModulePath:
			k8s = fields[1]
		case etcdModPath:
			etcd = fields[1]
		}
	}
	if k8s == "" || etcd == "" {
		return "", "", errors.New(gomod + ": no require line for " + k8sModulePath + " and " + etcdModPath)
	}
	return k8s, etcd, nil
}
