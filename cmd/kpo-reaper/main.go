// Command kpo-reaper deletes zombie KubernetesPodOperator pods whose Airflow
// task instance is over, asking Airflow's REST API instead of its database.
package main

import (
	"os"

	"github.com/kpo-reaper/kpo-reaper/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
