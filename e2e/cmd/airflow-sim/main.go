// Command airflow-sim serves a simulated Airflow REST API from a scenario
// file, for the demo and for tests that want the simulator in a separate
// process.
//
//	go run ./cmd/airflow-sim --scenario scenarios/seed-v2.yaml [--listen 127.0.0.1:0] [--fault MODE] [--port-file F]
//
// It prints the base URL (http://host:port, without /api/vN) on stdout once
// it accepts connections, writes the same line to --port-file if given, and
// logs one line per request on stderr. SIGINT or SIGTERM stops it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kpo-reaper/kpo-reaper/e2e/airflowsim"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "airflow-sim:", err)
		os.Exit(1)
	}
}

func run() error {
	scenario := flag.String("scenario", "", "scenario YAML file (required)")
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on; port 0 picks a free port")
	faultNames := make([]string, len(airflowsim.Faults))
	for i, f := range airflowsim.Faults {
		faultNames[i] = string(f)
	}
	faultName := flag.String("fault", "none", "initial fault mode: "+strings.Join(faultNames, ", ")+
		" (the churn modes fire once, after the first page of a multi-page task instance listing)")
	portFile := flag.String("port-file", "", "write the base URL to this file once listening")
	quiet := flag.Bool("quiet", false, "do not log requests")
	busy := flag.Int("busy", 0, "continuous churn: task instances moved one state forward after every task instance listing page (finished ones are replaced by new no-status ones)")
	busyRuns := flag.Int("busy-runs", 0, "continuous churn: new queued DAG runs after every DAG run listing page")
	busyReads := flag.Int("busy-reads", 0, "continuous churn: task instances moved after every other read (a single task instance, run or XCom)")
	busySeed := flag.Uint64("busy-seed", 1, "seed of the continuous churn")
	busyProtect := flag.String("busy-protect-dags", "", "comma-separated DAG ids whose declared task instances the churn never moves")
	flag.Parse()
	if *scenario == "" || flag.NArg() > 0 {
		flag.Usage()
		return errors.New("--scenario is required and no arguments are taken")
	}
	fault, err := airflowsim.ParseFault(*faultName)
	if err != nil {
		return err
	}
	sc, err := airflowsim.LoadScenario(*scenario)
	if err != nil {
		return err
	}
	logger := log.New(os.Stderr, "airflow-sim: ", log.LstdFlags|log.Lmicroseconds)
	var opts []airflowsim.Option
	if !*quiet {
		opts = append(opts, airflowsim.WithLogf(logger.Printf))
	}
	if *busy > 0 || *busyRuns > 0 || *busyReads > 0 {
		protect := map[string]bool{}
		for _, d := range strings.Split(*busyProtect, ",") {
			if d = strings.TrimSpace(d); d != "" {
				protect[d] = true
			}
		}
		opts = append(opts, airflowsim.WithBusy(airflowsim.Busy{PerPage: *busy, RunsPerPage: *busyRuns, PerRead: *busyReads, Seed: *busySeed,
			Protect: func(t airflowsim.TaskInstanceSpec) bool { return protect[t.DagID] }}))
	}
	sim := airflowsim.New(sc, opts...)
	sim.SetFault(fault)

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	url := "http://" + ln.Addr().String()
	if *portFile != "" {
		if err := writeAtomically(*portFile, url+"\n"); err != nil {
			_ = ln.Close()
			return err
		}
	}
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	fmt.Println(url)
	logger.Printf("serving Airflow %s (profile %s, API v%d under %s) at %s, fault %s", sc.AirflowVersion, sim.Profile().Name, sim.APIVersion(), sim.BasePath(), url, fault)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	// Release requests held by the hang fault first: Shutdown waits for
	// every handler to return.
	sim.Close()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	logger.Printf("stopped")
	return nil
}

// writeAtomically makes the file appear complete or not at all, so a
// process polling for it never reads half a URL.
func writeAtomically(path, content string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".airflow-sim-*")
	if err != nil {
		return err
	}
	if _, err := tmp.WriteString(content); err != nil {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
