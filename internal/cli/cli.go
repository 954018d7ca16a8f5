// Package cli is the command line: run, plan, selector and version.
package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"strconv"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/kpo-reaper/kpo-reaper/internal/buildinfo"
	"github.com/kpo-reaper/kpo-reaper/internal/config"
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

// Main runs the command line and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return ExitOK
	}
	fmt.Fprintln(stderr, "error:", err)
	var u usageError
	if errors.As(err, &u) {
		return ExitUsage
	}
	if errors.Is(err, reaper.ErrFailedAfterDeletes) {
		return ExitFailedAfterDeletes
	}
	return ExitCycleFailed
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "kpo-reaper",
		Short:         "Delete zombie KubernetesPodOperator pods whose Airflow task instance is over",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newRun(stderr), newPlan(stdout, stderr), newSelector(stdout), &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run:   func(*cobra.Command, []string) { fmt.Fprintln(stdout, buildinfo.String()) },
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

func newRun(stderr io.Writer) *cobra.Command {
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
			if once && c.LeaderElection.Enabled {
				return usageError{fmt.Errorf("leaderElection.enabled cannot be combined with --once: run the CronJob with concurrencyPolicy: Forbid instead")}
			}
			log := newLogger(c, stderr, false)
			log.Info("starting", "version", buildinfo.Version, "once", once, "config", c)
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return runReaper(ctx, c, once, log)
		},
	}
	cmd.Flags().String("config", "", "YAML configuration file")
	cmd.Flags().BoolVar(&once, "once", false, "run one cycle and exit: 0 when it was evaluated, non-zero when it could not be (CronJob mode)")
	config.AddFlags(cmd.Flags())
	return cmd
}

func newPlan(stdout, stderr io.Writer) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Evaluate once and print every pod's verdict; never deletes or writes anything",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return usageError{fmt.Errorf("-o %q: use table or json", output)}
			}
			c, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			// plan is always a dry run, whatever the configuration says.
			log := newLogger(c, stderr, true)
			e, err := connectEdges(ctx, c, log, nil)
			if err != nil {
				return err
			}
			r := newReaper(c, e, listPods(c, e), true, log)
			rep, err := r.Cycle(ctx)
			if err != nil {
				return err
			}
			if output == "json" {
				return writePlanJSON(stdout, rep)
			}
			return writePlanTable(stdout, rep)
		},
	}
	cmd.Flags().String("config", "", "YAML configuration file")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	config.AddFlags(cmd.Flags())
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

func writePlanJSON(w io.Writer, rep *reaper.Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]any{"pods": planPods(rep)})
}

func writePlanTable(w io.Writer, rep *reaper.Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POD\tTASK\tSTATE\tTRY\tVERDICT\tREASON\tACTION\tDETAIL")
	for _, p := range planPods(rep) {
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
		fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Namespace, p.Name, task, state, try, verdict, p.Reason, action, p.Detail)
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
