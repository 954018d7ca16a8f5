// Package reaper runs one evaluation cycle: list pods, ask Airflow, decide,
// count confirmations, re-check and delete. Any doubt about the listing or
// the API fails the whole cycle before anything is written.
package reaper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
	"github.com/kpo-reaper/kpo-reaper/internal/decision"
	"github.com/kpo-reaper/kpo-reaper/internal/deleter"
	"github.com/kpo-reaper/kpo-reaper/internal/resolve"
)

// PodLister lists the pods to judge, completely or not at all.
type PodLister interface {
	List(ctx context.Context) ([]decision.Pod, error)
}

// Reaper wires the edges to the decision.
type Reaper struct {
	Pods          PodLister
	Airflow       airflow.Client
	Resolver      *resolve.Resolver
	Deleter       deleter.Deleter
	Policy        decision.Policy
	Confirmations int
	MaxDeletes    int
	Log           *slog.Logger
	Now           func() time.Time
	// APICalls reports the Airflow requests made so far, for the summary.
	APICalls func() int64
	// MayDelete is asked right before every delete; false stops the
	// deletes of this cycle (leadership lost, shutdown).
	MayDelete func() bool
}

// Actions recorded on a pod after the verdict.
const (
	ActionDeleted   = "deleted"
	ActionGone      = "gone"
	ActionReplaced  = "replaced"
	ActionDryRun    = "dry-run"
	ActionWaiting   = "awaiting-confirmation"
	ActionCapped    = "capped"
	ActionChanged   = "changed-on-recheck"
	ActionFailed    = "failed"
	ActionNotLeader = "stopped"
)

// PodReport is one pod's line in a cycle's report.
type PodReport struct {
	decision.Verdict
	Seen   int    // consecutive evaluations that found it a zombie, this one included
	Needed int    // confirmations needed
	Action string // what the cycle did about it
}

// Report is one cycle's outcome.
type Report struct {
	Pods     []PodReport
	Deleted  int
	APICalls int64
	Duration time.Duration
}

// Count tallies pods by verdict.
func (r *Report) Count() map[string]int {
	m := map[string]int{decision.Reap: 0, decision.Keep: 0, decision.Skip: 0}
	for _, p := range r.Pods {
		m[p.Verdict.Verdict]++
	}
	return m
}

// ErrCycleFailed wraps the reasons a cycle failed closed.
var ErrCycleFailed = errors.New("cycle failed closed, nothing deleted")

type candidateState struct {
	cand    decision.Candidate
	ref     resolve.Ref
	knownTI *airflow.TIKey
}

// Cycle runs one evaluation and acts through the Deleter.
func (r *Reaper) Cycle(ctx context.Context) (*Report, error) {
	start := r.Now()
	var callsBefore int64
	if r.APICalls != nil {
		callsBefore = r.APICalls()
	}
	rep, err := r.cycle(ctx, start)
	if rep == nil {
		rep = &Report{}
	}
	rep.Duration = r.Now().Sub(start)
	if r.APICalls != nil {
		rep.APICalls = r.APICalls() - callsBefore
	}
	r.summarize(rep, err)
	return rep, err
}

func (r *Reaper) cycle(ctx context.Context, now time.Time) (*Report, error) {
	pods, err := r.Pods.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: kubernetes: %v", ErrCycleFailed, err)
	}
	skipped, candidates, evidence := decision.Screen(pods, now, r.Policy)

	var active []airflow.TaskInstance
	if len(candidates) > 0 {
		if active, err = r.Airflow.ListUnfinished(ctx); err != nil {
			return nil, fmt.Errorf("%w: airflow: listing unfinished task instances: %v", ErrCycleFailed, err)
		}
	}
	idx := decision.IndexActive(active)
	states := map[string]*candidateState{}
	for _, c := range candidates {
		st := &candidateState{cand: c}
		if tis := idx[c.Identity.Key]; len(tis) == 1 {
			k := tis[0].TIKey
			st.knownTI = &k
		}
		states[c.Pod.UID] = st
	}
	lookups := map[string]decision.Lookup{}
	session := r.Resolver.NewSession()
	for _, c := range decision.NeedsLookup(candidates, idx) {
		l, ref, err := session.Resolve(ctx, c.Identity)
		if err != nil {
			return nil, fmt.Errorf("%w: airflow: resolving pod %s/%s: %v", ErrCycleFailed, c.Pod.Namespace, c.Pod.Name, err)
		}
		lookups[c.Pod.UID] = l
		states[c.Pod.UID].ref = ref
		states[c.Pod.UID].knownTI = ref.TI
	}
	in := decision.Input{Now: now, Policy: r.Policy, Candidates: candidates, Active: idx, Lookups: lookups, Evidence: evidence}
	verdicts := append(skipped, decision.Decide(in)...)

	rep := &Report{}
	var writeErrs []error
	var eligible []int
	for _, v := range verdicts {
		prev := deleter.ReadSighting(v.Pod.Annotations)
		pr := PodReport{Verdict: v, Needed: r.Confirmations}
		if v.Verdict == decision.Reap {
			s := deleter.Sighting{Count: prev.Count + 1, FirstSeen: prev.FirstSeen, Reason: v.Reason}
			if prev.Count == 0 {
				s.FirstSeen = now
			}
			pr.Seen = s.Count
			if s.Count >= r.Confirmations {
				eligible = append(eligible, len(rep.Pods))
			} else {
				pr.Action = ActionWaiting
				if err := r.Deleter.Mark(ctx, v.Pod, s); err != nil {
					writeErrs = append(writeErrs, err)
				}
			}
		} else if prev.Count > 0 {
			if err := r.Deleter.Unmark(ctx, v.Pod); err != nil {
				writeErrs = append(writeErrs, err)
			}
		}
		rep.Pods = append(rep.Pods, pr)
	}

	elig := make([]decision.Verdict, len(eligible))
	pos := map[string]int{}
	for i, j := range eligible {
		elig[i] = rep.Pods[j].Verdict
		pos[rep.Pods[j].Pod.UID] = j
	}
	decision.OldestFirst(elig)
	var stop error
	for n, v := range elig {
		pr := &rep.Pods[pos[v.Pod.UID]]
		st := states[v.Pod.UID]
		if stop != nil || n >= r.MaxDeletes {
			pr.Action = ActionCapped
			if stop != nil {
				pr.Action = ActionNotLeader
			}
			if err := r.Deleter.Mark(ctx, v.Pod, deleter.Sighting{Count: pr.Seen, FirstSeen: firstSeen(v.Pod, now), Reason: v.Reason}); err != nil {
				writeErrs = append(writeErrs, err)
			}
			continue
		}
		if ctx.Err() != nil || (r.MayDelete != nil && !r.MayDelete()) {
			stop = errors.New("deletes stopped: shutting down or no longer the leader")
			pr.Action = ActionNotLeader
			continue
		}
		fresh, err := r.Resolver.Recheck(ctx, st.cand.Identity, st.ref, st.knownTI)
		if err == nil && v.Reason == decision.ReasonStaleTry && fresh.Status == decision.Found {
			fresh.CurrentPodName, err = r.currentPodName(ctx, fresh.TI.TIKey)
			if errors.Is(err, airflow.ErrUnsupported) {
				// This Airflow can never say which pod the current try uses:
				// keep this pod, and do not stall the other deletes on it.
				pr.Action = ActionChanged
				pr.Verdict.Verdict, pr.Verdict.Reason = decision.Skip, decision.ReasonPodNameUnknown
				pr.Verdict.Detail = fmt.Sprintf("stale try, but this Airflow's API cannot tell which pod the current try uses: %v", err)
				continue
			}
		}
		if err != nil {
			// Fail closed for the rest of the cycle: the API stopped answering.
			stop = fmt.Errorf("%w: airflow: re-check before delete: %v", ErrCycleFailed, err)
			pr.Action = ActionFailed
			continue
		}
		again := decision.DecideOne(decision.Input{
			Now: r.Now(), Policy: r.Policy, Candidates: []decision.Candidate{st.cand},
			Lookups: map[string]decision.Lookup{v.Pod.UID: fresh}, Evidence: evidence,
		}, st.cand)
		if again.Verdict != decision.Reap || again.Reason != v.Reason {
			pr.Action = ActionChanged
			pr.Verdict.Verdict, pr.Verdict.Reason = decision.Skip, decision.ReasonChangedOnRecheck
			pr.Verdict.Detail = fmt.Sprintf("re-check before delete found %s/%s: %s", again.Verdict, again.Reason, again.Detail)
			continue
		}
		pr.Verdict.TI = again.TI
		res, err := r.Deleter.Delete(ctx, v.Pod)
		pr.Action = string(res)
		if err != nil {
			writeErrs = append(writeErrs, err)
			continue
		}
		if res == deleter.Deleted {
			rep.Deleted++
		}
	}
	for _, p := range rep.Pods {
		r.logPod(p)
	}
	if stop != nil && errors.Is(stop, ErrCycleFailed) {
		return rep, stop
	}
	if len(writeErrs) > 0 {
		return rep, fmt.Errorf("cycle evaluated, but %d write(s) to the cluster failed: %w", len(writeErrs), errors.Join(writeErrs...))
	}
	return rep, nil
}

// currentPodName reads which pod the TI's current try says it uses; a stale
// try is reaped only if that is not this pod.
func (r *Reaper) currentPodName(ctx context.Context, k airflow.TIKey) (string, error) {
	name, err := r.Airflow.PodNameXCom(ctx, k)
	if errors.Is(err, airflow.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading XCom pod_name of %s: %w", k, err)
	}
	return name, nil
}

func firstSeen(p decision.Pod, now time.Time) time.Time {
	if s := deleter.ReadSighting(p.Annotations); s.Count > 0 {
		return s.FirstSeen
	}
	return now
}

// TaskOf names the task instance a verdict is about: the real ids when the
// API gave them, else the label values.
func TaskOf(v decision.Verdict) string {
	if v.TI != nil {
		return v.TI.TIKey.String()
	}
	if v.Identity != nil {
		return v.Identity.Key.String()
	}
	return ""
}

func (r *Reaper) logPod(p PodReport) {
	attrs := []any{
		"pod", p.Pod.Namespace + "/" + p.Pod.Name, "uid", p.Pod.UID,
		"verdict", p.Verdict.Verdict, "reason", p.Reason,
	}
	if t := TaskOf(p.Verdict); t != "" {
		attrs = append(attrs, "ti", t)
	}
	if p.Identity != nil {
		attrs = append(attrs, "podTry", p.Identity.TryNumber)
	}
	if p.TI != nil {
		attrs = append(attrs, "tiState", stateOrNull(p.TI.State), "tiTry", p.TI.TryNumber)
	}
	if p.Verdict.Verdict == decision.Reap {
		attrs = append(attrs, "confirmations", fmt.Sprintf("%d/%d", p.Seen, p.Needed))
	}
	if p.Action != "" {
		attrs = append(attrs, "action", p.Action)
	}
	attrs = append(attrs, "detail", p.Detail)
	r.Log.Info("pod", attrs...)
}

func stateOrNull(s string) string {
	if s == "" {
		return "null"
	}
	return s
}

func (r *Reaper) summarize(rep *Report, err error) {
	c := rep.Count()
	attrs := []any{"pods", len(rep.Pods), "reap", c[decision.Reap], "keep", c[decision.Keep], "skip", c[decision.Skip],
		"deleted", rep.Deleted, "apiCalls", rep.APICalls, "duration", rep.Duration.Round(time.Millisecond).String()}
	if err != nil {
		r.Log.Error("cycle failed", append(attrs, "error", err.Error())...)
		return
	}
	r.Log.Info("cycle", attrs...)
}
