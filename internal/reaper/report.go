package reaper

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/kpo-reaper/kpo-reaper/internal/decision"
	"github.com/kpo-reaper/kpo-reaper/internal/deleter"
)

// Action is what a cycle did about a pod after its verdict. The values are
// a public contract (plan output, logs, the deletions metric's result).
type Action string

// Actions recorded on a pod after the verdict.
const (
	ActionDeleted  Action = "deleted"
	ActionGone     Action = "gone"     // someone else removed it first
	ActionReplaced Action = "replaced" // a new pod has the name
	ActionDryRun   Action = "dry-run"
	ActionFailed   Action = "failed"

	ActionWaiting   Action = "awaiting-confirmation"
	ActionCapped    Action = "capped"
	ActionChanged   Action = "changed-on-recheck"
	ActionNotLeader Action = "stopped"
)

// actionOf is the action a delete's result stands for.
func actionOf(res deleter.Result) Action {
	switch res {
	case deleter.Deleted:
		return ActionDeleted
	case deleter.Gone:
		return ActionGone
	case deleter.Replaced:
		return ActionReplaced
	case deleter.DryRun:
		return ActionDryRun
	}
	return ActionFailed
}

// PodReport is one pod's line in a cycle's report.
type PodReport struct {
	decision.Decision
	Seen   int    // counted sightings as a zombie, this one included when it counted
	Needed int    // confirmations needed
	Action Action // what the cycle did about it
}

// Report is one cycle's outcome.
type Report struct {
	Pods     []PodReport
	Deleted  int
	APICalls int64
	Duration time.Duration
}

// Count tallies pods by verdict.
func (r *Report) Count() map[decision.Verdict]int {
	m := map[decision.Verdict]int{decision.Reap: 0, decision.Keep: 0, decision.Skip: 0}
	for _, p := range r.Pods {
		m[p.Verdict]++
	}
	return m
}

// WouldDelete counts the pods a dry run reports it would delete now.
func (r *Report) WouldDelete() int {
	n := 0
	for _, p := range r.Pods {
		if p.Action == ActionDryRun {
			n++
		}
	}
	return n
}

// TaskOf names the task instance a decision is about: the real ids when
// the API gave them, else the label values.
func TaskOf(v decision.Decision) string {
	if v.TI != nil {
		return v.TI.String()
	}
	if v.Identity != nil {
		return v.Identity.String()
	}
	return ""
}

// actionMessage is the info-level message of an action; "" keeps the pod
// at debug level (keep, skip, nothing done).
func (r *Reaper) actionMessage(p PodReport) string {
	switch p.Action {
	case ActionDeleted:
		return "deleted"
	case ActionGone, ActionReplaced:
		return "already gone"
	case ActionDryRun:
		return "would delete"
	case ActionWaiting:
		if r.DryRun {
			return "would delete once confirmed"
		}
		return "marked"
	case ActionCapped:
		return "capped"
	case ActionChanged:
		return "changed on re-check"
	case ActionFailed:
		return "delete failed"
	case ActionNotLeader:
		return "stopped"
	}
	return ""
}

func (r *Reaper) logPod(p PodReport) {
	msg := r.actionMessage(p)
	level := slog.LevelInfo
	if msg == "" {
		if !r.Log.Enabled(context.Background(), slog.LevelDebug) {
			return
		}
		msg, level = "pod", slog.LevelDebug
	}
	attrs := []any{
		"pod", p.Pod.Namespace + "/" + p.Pod.Name, "uid", p.Pod.UID,
		"verdict", string(p.Verdict), "reason", string(p.Reason),
	}
	if t := TaskOf(p.Decision); t != "" {
		attrs = append(attrs, "ti", t)
	}
	if p.Identity != nil {
		attrs = append(attrs, "podTry", p.Identity.TryNumber)
	}
	if p.TI != nil {
		attrs = append(attrs, "tiState", decision.StateName(p.TI.State), "tiTry", p.TI.TryNumber)
	}
	if p.Verdict == decision.Reap || p.Action == ActionWaiting {
		attrs = append(attrs, "confirmations", fmt.Sprintf("%d/%d", p.Seen, p.Needed))
	}
	if p.Action != "" {
		attrs = append(attrs, "action", string(p.Action))
	}
	attrs = append(attrs, "detail", p.Detail)
	r.Log.Log(context.Background(), level, msg, attrs...)
}

func (r *Reaper) summarize(rep *Report, err error) {
	c := rep.Count()
	attrs := []any{"pods", len(rep.Pods), "reap", c[decision.Reap], "keep", c[decision.Keep], "skip", c[decision.Skip],
		"deleted", rep.Deleted}
	if r.DryRun {
		attrs = append(attrs, "wouldDelete", rep.WouldDelete())
	}
	attrs = append(attrs, "apiCalls", rep.APICalls, "duration", rep.Duration.Round(time.Millisecond).String())
	if err != nil {
		r.Log.Error("cycle failed", append(attrs, "error", err.Error())...)
		return
	}
	r.Log.Info("cycle", attrs...)
}
