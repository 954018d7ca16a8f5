// Command kpo-reaper deletes zombie KubernetesPodOperator pods whose Airflow
// task instance is over, asking Airflow's REST API instead of its database.
package main

import (
	"os"
	"runtime/debug"

	"github.com/kpo-reaper/kpo-reaper/internal/cli"
)

// defaultGCPercent replaces Go's GOGC=100 unless GOGC is set. A cycle is a
// burst of short-lived objects (a verdict and a log line per pod) over a
// small live heap (about 10 MiB with 2,000 pods); at 100 the heap grows by
// as much again during a cycle. At 20 the daemon with 2,000 pods peaks near
// 39 MiB instead of 46 MiB, for a few hundredths of a CPU second per cycle
// (docs/operations.md, "Memory and CPU").
const defaultGCPercent = 20

func main() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(defaultGCPercent)
	}
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
