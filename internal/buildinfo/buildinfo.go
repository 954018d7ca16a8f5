// Package buildinfo carries the version stamped in at link time
// (-ldflags "-X github.com/kpo-reaper/kpo-reaper/internal/buildinfo.Version=v1.2.3").
package buildinfo

import "runtime"

var (
	Version = "dev"
	Commit  = "unknown"
)

// String is what `kpo-reaper version` prints.
func String() string {
	return "kpo-reaper " + Version + " (commit " + Commit + ", " + runtime.Version() + ")"
}
