// Command chart-readme regenerates the values table of the chart's README
// (deploy/helm/kpo-reaper/README.md) from values.yaml's "# --" comments.
// Run it from the e2e module: go run ./chart/cmd/chart-readme
package main

import (
	"fmt"
	"os"

	"github.com/kpo-reaper/kpo-reaper/e2e/chart"
)

func main() {
	if err := chart.WriteReadmeValuesTable(); err != nil {
		fmt.Fprintln(os.Stderr, "chart-readme:", err)
		os.Exit(1)
	}
}
