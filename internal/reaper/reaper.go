// Package reaper runs one evaluation cycle in four steps: gather the facts
// (pods, and what Airflow says about each pod's own task instance), decide
// (the pure decision table), plan (confirmations, cap, order: pure) and
// apply (re-check and write). Airflow that cannot be trusted fails the
// whole cycle before anything is written; one pod that cannot be resolved
// is skipped and the others are still judged.
package reaper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
	"github.com/kpo-reaper/kpo-reaper/internal/decision"
	"github.com/kpo-reaper/kpo-reaper/internal/deleter"
	"github.com/kpo-reaper/kpo-reaper/internal/labels"
	"github.com/kpo-reaper/kpo-reaper/internal/resolve"
)

// PodSource lists the pods to judge, completely or not at all
// (kube.PodLister pages a List, kube.WatchLister reads an informer).
type PodSource interface {
	List(ctx context.Context) ([]decision.Pod, error)
}

// DefaultLookupConcurrency is how many pods' lookups run at once.
const DefaultLookupConcurrency = 8

// Reaper wires the edges to the decision.
type Reaper struct {
	Pods     PodSource
	Airflow  airflow.Client
	Resolver *resolve.Resolver
	Deleter  deleter.Deleter
	Policy   decision.Policy
	Plan     PlanPolicy
	// DryRun only changes how actions are worded; the Deleter is what
	// writes nothing.
	DryRun bool
	Log    *slog.Logger
	Now    func() time.Time
	// LookupConcurrency bounds the Airflow lookups in flight; 0 is
	// DefaultLookupConcurrency.
	LookupConcurrency int
	// APICalls reports the Airflow requests made so far, for the summary.
	APICalls func() int64
	// MayWrite is asked right before every write to the cluster (delete,
	// mark, unmark); false stops the writes of this cycle (leadership
	// lost, shutdown).
	MayWrite func() bool
}

// Action is what a cycle did about a pod after its verdict. The values are
// a public contract (plan output, logs, the deletions metric's result).
type Action string

// Actions recorded on a pod after the verdict.
const (
	// A delete's action is the deleter's Result.
	ActionDeleted  = Action(deleter.Deleted)
	ActionGone     = Action(deleter.Gone)
	ActionReplaced = Action(deleter.Replaced)
	ActionDryRun   = Action(deleter.DryRun)
	ActionFailed   = Action(deleter.Failed)

	ActionWaiting   Action = "awaiting-confirmation"
	ActionCapped    Action = "capped"
	ActionChanged   Action = "changed-on-recheck"
	ActionNotLeader Action = "stopped"
)

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

// ErrCycleFailed wraps the reasons a cycle failed closed before deleting
// anything.
var ErrCycleFailed = errors.New("cycle failed closed, nothing deleted")

// ErrFailedAfterDeletes wraps the reasons a cycle stopped after it had
// already deleted pods; the error names them.
var ErrFailedAfterDeletes = errors.New("cycle failed closed after deleting pods")

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

// facts is what the gather step learned.
type facts struct {
	skipped    []decision.Decision
	candidates []decision.Candidate
	evidence   []decision.EvidencePod
	lookups    map[string]decision.Lookup
}

func (r *Reaper) cycle(ctx context.Context, now time.Time) (*Report, error) {
	f, err := r.gather(ctx, now)
	if err != nil {
		return nil, err
	}
	in := decision.Input{Now: now, Policy: r.Policy, Candidates: f.candidates, Lookups: f.lookups, Evidence: f.evidence}
	decisions := append(f.skipped, decision.Decide(in)...)
	steps := Plan(decisions, r.Deleter.Sighting, r.Plan, now)
	return r.apply(ctx, steps, f)
}

// gather lists the pods and asks Airflow about each candidate's own task
// instance, once per task instance, a few at a time.
func (r *Reaper) gather(ctx context.Context, now time.Time) (*facts, error) {
	pods, err := r.Pods.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: kubernetes: %w", ErrCycleFailed, err)
	}
	if d, ok := r.Deleter.(*deleter.DryRunDeleter); ok {
		live := make(map[string]bool, len(pods))
		for _, p := range pods {
			live[p.UID] = true
		}
		d.Forget(func(uid string) bool { return live[uid] })
	}
	f := &facts{lookups: map[string]decision.Lookup{}}
	f.skipped, f.candidates, f.evidence = decision.Screen(pods, now, r.Policy)

	byKey := map[labels.Key][]decision.Candidate{}
	var keys []labels.Key
	for _, c := range f.candidates {
		if len(byKey[c.Identity.Key]) == 0 {
			keys = append(keys, c.Identity.Key)
		}
		byKey[c.Identity.Key] = append(byKey[c.Identity.Key], c)
	}
	session := r.Resolver.NewSession()
	ids := make([]labels.Identity, len(keys))
	for i, k := range keys {
		ids[i] = byKey[k][0].Identity
	}
	if err := session.Prefetch(ctx, ids); err != nil {
		return nil, fmt.Errorf("%w: airflow: %w", ErrCycleFailed, err)
	}
	type answer struct {
		asked bool
		l     decision.Lookup
		ref   resolve.Ref
		err   error
	}
	answers := make([]answer, len(keys))
	workers := r.LookupConcurrency
	if workers <= 0 {
		workers = DefaultLookupConcurrency
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var fatalOnce sync.Once
	var fatal error // the first error that stopped the lookups
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < workers && w < len(keys); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				c := byKey[keys[i]][0]
				l, ref, err := session.Resolve(lctx, c.Identity)
				answers[i] = answer{true, l, ref, err}
				if err != nil && !airflow.RequestScoped(err) && lctx.Err() == nil {
					// Airflow cannot be trusted: stop asking, and report
					// this error rather than the cancellations it causes.
					fatalOnce.Do(func() { fatal = err; cancel() })
				}
			}
		}()
	}
feed:
	for i := range keys {
		select {
		case next <- i:
		case <-lctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if fatal != nil {
		return nil, fmt.Errorf("%w: airflow: %w", ErrCycleFailed, fatal)
	}

	var failed, asked int
	for i, k := range keys {
		a := answers[i]
		if !a.asked {
			continue // never asked: the cycle is failing
		}
		asked++
		l := a.l
		if a.err != nil {
			if !airflow.RequestScoped(a.err) {
				return nil, fmt.Errorf("%w: airflow: %w", ErrCycleFailed, a.err)
			}
			failed++
			l = decision.Lookup{Status: decision.Failed, Detail: a.err.Error()}
		}
		l = session.Reconcile(l, a.ref)
		for _, c := range byKey[k] {
			f.lookups[c.Pod.UID] = l
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCycleFailed, err)
	}
	if asked < len(keys) {
		return nil, fmt.Errorf("%w: airflow: lookups stopped early", ErrCycleFailed)
	}
	if refused := session.Forbidden(); asked > 0 && failed+refused == asked {
		// Not one pod could be looked up: that is Airflow failing (or the
		// API user reading nothing), not a pod's odd data.
		why := firstFailure(f.lookups)
		if failed == 0 {
			why = "every answer was 403: give the API user read access (Airflow's Viewer role)"
		}
		return nil, fmt.Errorf("%w: airflow: every one of %d lookups failed, e.g. %s", ErrCycleFailed, asked, why)
	}
	return f, nil
}

func firstFailure(ls map[string]decision.Lookup) string {
	for _, l := range ls {
		if l.Status == decision.Failed {
			return l.Detail
		}
	}
	return ""
}

// apply carries out the plan: marks first, then the deletes in the plan's
// order, each after a re-check. Nothing is written once MayWrite says no.
func (r *Reaper) apply(ctx context.Context, steps []Step, f *facts) (*Report, error) {
	rep := &Report{Pods: make([]PodReport, 0, len(steps))}
	var writeErrs []error
	var stop error
	var deleted []string
	byUID := make(map[string]decision.Candidate, len(f.candidates))
	for _, c := range f.candidates {
		byUID[c.Pod.UID] = c
	}
	// A re-check judges one pod, and only pods of its own task instance can
	// be evidence about it: indexing once keeps the deletes of a cycle
	// linear in the pods (a re-check per reap over every pod was quadratic).
	evidenceByKey := make(map[labels.Key][]decision.EvidencePod)
	for _, e := range f.evidence {
		evidenceByKey[e.Key] = append(evidenceByKey[e.Key], e)
	}
	for _, st := range steps {
		pr := PodReport{Decision: st.Decision, Seen: st.Seen, Needed: st.Needed, Action: st.Action}
		switch {
		case st.Write == WriteNone:
		case stop != nil || !r.mayWrite(ctx):
			if stop == nil {
				stop = errors.New("writes stopped: shutting down or no longer the leader")
			}
			pr.Action = ActionNotLeader
		case st.Write == WriteMark:
			if err := r.Deleter.Mark(ctx, st.Decision.Pod, st.Mark); err != nil {
				writeErrs = append(writeErrs, err)
			}
		case st.Write == WriteUnmark:
			if err := r.Deleter.Unmark(ctx, st.Decision.Pod); err != nil {
				writeErrs = append(writeErrs, err)
			}
		case st.Write == WriteDelete:
			var fatal error
			c := byUID[st.Decision.Pod.UID]
			pr, fatal = r.recheckAndDelete(ctx, pr, c, evidenceByKey[c.Identity.Key])
			if fatal != nil {
				stop = fatal
				pr.Action = ActionFailed
			}
			switch {
			case pr.Action == ActionDeleted:
				rep.Deleted++
				deleted = append(deleted, pr.Pod.Namespace+"/"+pr.Pod.Name)
			case pr.Action == ActionFailed && fatal == nil:
				writeErrs = append(writeErrs, fmt.Errorf("deleting pod %s/%s failed", pr.Pod.Namespace, pr.Pod.Name))
			}
		}
		rep.Pods = append(rep.Pods, pr)
	}
	for _, p := range rep.Pods {
		r.logPod(p)
	}
	if stop != nil && errors.Is(stop, ErrCycleFailed) {
		if len(deleted) > 0 {
			return rep, fmt.Errorf("%w: deleted %d pod(s) (%s) before: %w", ErrFailedAfterDeletes, len(deleted), strings.Join(deleted, ", "), stop)
		}
		return rep, stop
	}
	if len(writeErrs) > 0 {
		return rep, fmt.Errorf("cycle evaluated, but %d write(s) to the cluster failed: %w", len(writeErrs), errors.Join(writeErrs...))
	}
	return rep, nil
}

func (r *Reaper) mayWrite(ctx context.Context) bool {
	return ctx.Err() == nil && (r.MayWrite == nil || r.MayWrite())
}

// recheckAndDelete asks Airflow once more about the pod, past every
// listing and cache, judges again with the same table, and deletes only if
// the verdict is the same reap. fatal is set when Airflow cannot be trusted
// any more: the remaining deletes of the cycle are not attempted.
func (r *Reaper) recheckAndDelete(ctx context.Context, pr PodReport, c decision.Candidate, evidence []decision.EvidencePod) (PodReport, error) {
	fresh, err := r.Resolver.Recheck(ctx, c.Identity)
	if err == nil && pr.Reason == decision.ReasonStaleTry && fresh.Status == decision.Found {
		fresh.CurrentPodName, err = r.currentPodName(ctx, fresh.TI.TIKey)
		if errors.Is(err, airflow.ErrUnsupported) {
			fresh.PodNameUnknown, err = err.Error(), nil
		}
	}
	if err != nil {
		if !airflow.RequestScoped(err) {
			return pr, fmt.Errorf("%w: airflow: re-check before delete: %w", ErrCycleFailed, err)
		}
		fresh = decision.Lookup{Status: decision.Failed, Detail: err.Error()}
	}
	again := decision.DecideOne(decision.Input{
		Now: r.Now(), Policy: r.Policy, Candidates: []decision.Candidate{c},
		Lookups: map[string]decision.Lookup{c.Pod.UID: fresh}, Evidence: evidence,
	}, c)
	pr.Decision = decision.Reconfirm(pr.Decision, again)
	if pr.Verdict != decision.Reap {
		pr.Action = ActionChanged
		return pr, nil
	}
	if !r.mayWrite(ctx) {
		pr.Action = ActionNotLeader
		return pr, nil
	}
	res, err := r.Deleter.Delete(ctx, pr.Pod)
	pr.Action = Action(res)
	if err != nil {
		r.Log.Error("delete failed", "pod", pr.Pod.Namespace+"/"+pr.Pod.Name, "uid", pr.Pod.UID, "error", err.Error())
	}
	return pr, nil
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

// TaskOf names the task instance a decision is about: the real ids when
// the API gave them, else the label values.
func TaskOf(v decision.Decision) string {
	if v.TI != nil {
		return v.TI.TIKey.String()
	}
	if v.Identity != nil {
		return v.Identity.Key.String()
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
