// Package cli is the command line: run, plan, selector and version.
package cli

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"
	"sigs.k8s.io/yaml"

	"github.com/kpo-reaper/kpo-reaper/internal/buildinfo"
	"github.com/kpo-reaper/kpo-reaper/internal/config"
	"github.com/kpo-reaper/kpo-reaper/internal/daemon"
	"github.com/kpo-reaper/kpo-reaper/internal/decision"
	"github.com/kpo-reaper/kpo-reaper/internal/labels"
	"github.com/kpo-reaper/kpo-reaper/internal/reaper"
)

// Exit codes.
const (
	ExitOK          = 0
	ExitCycleFailed = 1 // could not be evaluated safely; nothing was deleted
	ExitUsage       = 2 // bad flags or configuration
	// ExitFailedAfterDeletes: the cycle deleted pods, then failed closed;
	// the error names the pods it deleted.
	ExitFailedAfterDeletes = 3
)

// usageError marks errors that are the user's input, not the cycle's.
type usageError struct{ error }

// app is one invocation: its output streams, and the logger once the
// configuration chose one, which then reports the final error too.
type app struct {
	stdout, stderr io.Writer
	log            *slog.Logger
}

// Main runs the command line and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr}
	root := a.newRoot()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return ExitOK
	}
	code := exitCode(err)
	a.reportError(err, code)
	return code
}

func exitCode(err error) int {
	var u usageError
	var ce daemon.ConfigError
	switch {
	case errors.As(err, &u), errors.As(err, &ce),
		// cobra's own: an unknown command, or arguments to one that takes none.
		strings.HasPrefix(err.Error(), "unknown command "):
		return ExitUsage
	case errors.Is(err, reaper.ErrFailedAfterDeletes):
		return ExitFailedAfterDeletes
	}
	return ExitCycleFailed
}

// reportError prints the final error: through the logger when the run
// logs JSON (one JSON line, as every other line of the run), else as
// text, each problem of a multi-line error on its own indented line.
func (a *app) reportError(err error, code int) {
	if a.log != nil {
		a.log.Error("exiting", "error", err.Error(), "exitCode", code)
		return
	}
	lines := strings.Split(err.Error(), "\n")
	fmt.Fprintln(a.stderr, "error:", lines[0])
	for _, l := range lines[1:] {
		if l = strings.TrimSpace(l); l != "" {
			fmt.Fprintln(a.stderr, "  "+l)
		}
	}
}

func (a *app) newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "kpo-reaper",
		Short: "Delete zombie KubernetesPodOperator pods whose Airflow task instance is over",
		// --version prints "kpo-reaper version <this>". No version
		// template: a template links text/template, which keeps every
		// method of every linked type (+8 MB binary, +6 MiB resident).
		Version:       strings.TrimPrefix(buildinfo.String(), "kpo-reaper "),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(a.newRun(), a.newPlan(), newSelector(a.stdout), &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run:   func(*cobra.Command, []string) { fmt.Fprintln(a.stdout, buildinfo.String()) },
	})
	return root
}

func loadConfig(cmd *cobra.Command) (*config.Config, error) {
	file, _ := cmd.Flags().GetString("config")
	c, err := config.Load(file, cmd.Flags())
	if err != nil {
		return nil, usageError{err}
	}
	return c, nil
}

// newLogger is a logger for the configured level and format.
func newLogger(c *config.Config, w io.Writer, quiet bool) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Log.Level))
	if quiet && level < slog.LevelWarn {
		level = slog.LevelWarn
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// useLogger makes log the run's logger: Kubernetes' own libraries (the
// informer, the event recorder) log through klog, which is sent to it, and
// in JSON mode the final error is one of its lines.
func (a *app) useLogger(c *config.Config, log *slog.Logger) {
	klog.SetSlogLogger(log)
	if c.Log.Format == "json" {
		a.log = log
	}
}

func (a *app) newRun() *cobra.Command {
	var once bool
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Reap zombie pods every reaper.interval (or once with --once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			log := newLogger(c, a.stderr, false)
			a.useLogger(c, log)
			log.Info("starting", "version", buildinfo.Version, "once", once, "config", c)
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return daemon.Run(ctx, daemon.Options{Config: c, Once: once, Log: log, Self: daemon.SelfFromEnv()})
		},
	}
	cmd.Flags().String("config", "", "YAML configuration file")
	cmd.Flags().BoolVar(&once, "once", false, "run one cycle and exit: 0 when it was evaluated, non-zero when it could not be (CronJob mode)")
	config.AddFlags(cmd.Flags())
	return cmd
}

// planOutputs are plan's -o formats; the first is the default.
var planOutputs = []string{"table", "wide", "json", "yaml"}

func (a *app) newPlan() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Evaluate once and print every pod's verdict; never deletes or writes anything",
		Long: "Evaluate once and print every pod's verdict, reap first, then skip, then keep, each by\n" +
			"namespace/name. plan never deletes or writes anything, whatever reaper.dryRun says.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !slices.Contains(planOutputs, output) {
				return usageError{fmt.Errorf("-o %q: use one of %s", output, strings.Join(planOutputs, ", "))}
			}
			c, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			// Only warnings, and the progress of a slow Airflow, reach stderr.
			log := newLogger(c, a.stderr, true)
			a.useLogger(c, log)
			e, err := daemon.Build(ctx, c, daemon.SelfFromEnv(), log, nil)
			if err != nil {
				return err
			}
			t := time.NewTicker(daemon.ProgressInterval)
			defer t.Stop()
			stopProgress := daemon.Progress(newLogger(c, a.stderr, false), t.C, e.APICalls)
			if err := e.Connect(ctx, log); err != nil {
				stopProgress()
				return fmt.Errorf("%w: %w", daemon.ErrStartup, err)
			}
			rep, err := daemon.NewReaper(c, e, daemon.ListPods(c, e), true, log).Cycle(ctx)
			stopProgress()
			if err != nil {
				return err
			}
			return writePlan(a.stdout, output, rep)
		},
	}
	cmd.Flags().String("config", "", "YAML configuration file")
	cmd.Flags().StringVarP(&output, "output", "o", planOutputs[0], "output format: "+strings.Join(planOutputs, ", ")+" (wide adds DETAIL)")
	// plan never deletes and runs once: no --dry-run, no --interval.
	config.AddFlags(cmd.Flags(), "dry-run", "interval")
	return cmd
}

// PlanPod is one pod in `plan -o json`; the field names are a contract.
type PlanPod struct {
	Namespace           string           `json:"namespace"`
	Name                string           `json:"name"`
	UID                 string           `json:"uid"`
	Verdict             decision.Verdict `json:"verdict"`
	Reason              decision.Reason  `json:"reason"`
	Detail              string           `json:"detail,omitempty"`
	Task                string           `json:"task,omitempty"`
	DagID               string           `json:"dagId,omitempty"`
	RunID               string           `json:"runId,omitempty"`
	TaskID              string           `json:"taskId,omitempty"`
	MapIndex            *int             `json:"mapIndex,omitempty"`
	PodTryNumber        *int             `json:"podTryNumber,omitempty"`
	TIState             string           `json:"tiState,omitempty"`
	TITryNumber         *int             `json:"tiTryNumber,omitempty"`
	Confirmations       int              `json:"confirmations,omitempty"`
	ConfirmationsNeeded int              `json:"confirmationsNeeded,omitempty"`
	// Action is what a run would do now: dry-run (delete), awaiting-
	// confirmation, capped; empty for pods kept or skipped.
	Action reaper.Action `json:"action,omitempty"`
}

func planPods(rep *reaper.Report) []PlanPod {
	out := make([]PlanPod, 0, len(rep.Pods))
	for _, p := range rep.Pods {
		pp := PlanPod{Namespace: p.Pod.Namespace, Name: p.Pod.Name, UID: p.Pod.UID, Verdict: p.Verdict, Reason: p.Reason, Detail: p.Detail, Task: reaper.TaskOf(p.Decision)}
		if p.Identity != nil {
			try, mi := p.Identity.TryNumber, p.Identity.MapIndex
			pp.PodTryNumber, pp.MapIndex = &try, &mi
			pp.DagID, pp.RunID, pp.TaskID = p.Identity.DagID, p.Identity.RunID, p.Identity.TaskID
		}
		if p.TI != nil {
			try := p.TI.TryNumber
			pp.DagID, pp.RunID, pp.TaskID, pp.TITryNumber = p.TI.DagID, p.TI.RunID, p.TI.TaskID, &try
			pp.TIState = decision.StateName(p.TI.State)
		}
		if p.Verdict == decision.Reap {
			pp.Confirmations, pp.ConfirmationsNeeded = p.Seen, p.Needed
		}
		pp.Action = p.Action
		out = append(out, pp)
	}
	return out
}

// verdictOrder sorts plan's rows: what a run would delete first, then
// what it cannot judge, then what it keeps.
var verdictOrder = map[decision.Verdict]int{decision.Reap: 0, decision.Skip: 1, decision.Keep: 2}

// sortPlan orders the rows by verdict, then namespace/name.
func sortPlan(pods []PlanPod) {
	slices.SortStableFunc(pods, func(a, b PlanPod) int {
		return cmp.Or(cmp.Compare(verdictOrder[a.Verdict], verdictOrder[b.Verdict]),
			cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
}

func writePlan(w io.Writer, output string, rep *reaper.Report) error {
	pods := planPods(rep)
	sortPlan(pods)
	switch output {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"pods": pods})
	case "yaml":
		b, err := yaml.Marshal(map[string]any{"pods": pods})
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	return writePlanTable(w, rep, pods, output == "wide")
}

func writePlanTable(w io.Writer, rep *reaper.Report, pods []PlanPod, wide bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := "POD\tTASK\tSTATE\tTRY\tVERDICT\tREASON\tACTION"
	if wide {
		header += "\tDETAIL"
	}
	fmt.Fprintln(tw, header)
	for _, p := range pods {
		state, try := "-", "-"
		if p.TIState != "" {
			state = p.TIState
		}
		if p.PodTryNumber != nil {
			try = strconv.Itoa(*p.PodTryNumber)
			if p.TITryNumber != nil {
				try += "/" + strconv.Itoa(*p.TITryNumber)
			}
		}
		verdict := string(p.Verdict)
		if p.ConfirmationsNeeded > 1 {
			verdict = fmt.Sprintf("%s (%d/%d)", verdict, p.Confirmations, p.ConfirmationsNeeded)
		}
		action := "-"
		switch p.Action {
		case reaper.ActionDryRun:
			action = "would-delete"
		case reaper.ActionWaiting:
			action = "would-delete-once-confirmed"
		case reaper.ActionCapped:
			action = "capped"
		}
		task := p.Task
		if task == "" {
			task = "-"
		}
		row := fmt.Sprintf("%s/%s\t%s\t%s\t%s\t%s\t%s\t%s", p.Namespace, p.Name, task, state, try, verdict, p.Reason, action)
		if wide {
			row += "\t" + p.Detail
		}
		fmt.Fprintln(tw, row)
	}
	c := rep.Count()
	fmt.Fprintf(tw, "\n%d pods: %d reap (%d would be deleted now), %d keep, %d skip (%d Airflow API calls)\n", len(rep.Pods), c[decision.Reap], rep.WouldDelete(), c[decision.Keep], c[decision.Skip], rep.APICalls)
	return tw.Flush()
}

func newSelector(stdout io.Writer) *cobra.Command {
	var dagID, taskID, runID, output string
	var mapIndex, tryNumber int
	cmd := &cobra.Command{
		Use:   "selector --dag-id D --task-id T --run-id R [--map-index N] [--try-number N]",
		Short: "Print the labels KubernetesPodOperator puts on a task instance's pod",
		Long: "Print the labels KubernetesPodOperator puts on a task instance's pod, as a selector for\n" +
			"`kubectl get pods -l` (default) or as JSON. Ids are normalized exactly as Airflow does.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for flag, v := range map[string]string{"--dag-id": dagID, "--task-id": taskID, "--run-id": runID} {
				if v == "" {
					return usageError{fmt.Errorf("%s is required", flag)}
				}
			}
			if output != "text" && output != "json" {
				return usageError{fmt.Errorf("-o %q: use text or json", output)}
			}
			if mapIndex < -1 {
				return usageError{fmt.Errorf("--map-index %d: use -1 (unmapped) or a map index >= 0", mapIndex)}
			}
			var try *int
			if cmd.Flags().Changed("try-number") {
				if tryNumber < 0 {
					return usageError{fmt.Errorf("--try-number %d: must be >= 0", tryNumber)}
				}
				try = &tryNumber
			}
			m := labels.ForTaskInstance(dagID, taskID, runID, mapIndex, try)
			if output == "json" {
				return json.NewEncoder(stdout).Encode(m)
			}
			_, err := fmt.Fprintln(stdout, labels.Selector(m))
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&dagID, "dag-id", "", "DAG id (required)")
	f.StringVar(&taskID, "task-id", "", "task id (required)")
	f.StringVar(&runID, "run-id", "", "DAG run id (required)")
	f.IntVar(&mapIndex, "map-index", -1, "map index of a mapped task instance; -1 for unmapped")
	f.IntVar(&tryNumber, "try-number", 0, "add try_number to the selector")
	f.StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}
