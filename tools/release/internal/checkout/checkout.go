// Package checkout tells the release tools' tests about the git checkout
// they run in: where its root is, and the last commit's id and time (what
// every release artifact is stamped with).
package checkout

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Root is the repository's root: the nearest directory above the working
// directory that holds cmd/kpo-reaper.
func Root(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if fi, err := os.Stat(filepath.Join(dir, "cmd", "kpo-reaper")); err == nil && fi.IsDir() {
			return dir
		}
		if filepath.Dir(dir) == dir {
			t.Fatalf("repository root (with cmd/kpo-reaper) not found above %s", wd)
		}
	}
}

// Git runs git in the repository and returns its trimmed output, or skips
// the test when there is no git or no commit.
func Git(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = Root(t)
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("git %v: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}

// CommitTime is the last commit's time (SOURCE_DATE_EPOCH), in UTC.
func CommitTime(t testing.TB) time.Time {
	t.Helper()
	epoch, err := strconv.ParseInt(Git(t, "log", "-1", "--format=%ct"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return time.Unix(epoch, 0).UTC()
}
