package reaper

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
	"github.com/kpo-reaper/kpo-reaper/internal/decision"
	"github.com/kpo-reaper/kpo-reaper/internal/labels"
)

// apply carries out the plan: marks first, then the deletes in the plan's
// order, each after a re-check, until MaxDeletes deletes happened; the
// rest are capped. A candidate kept at its re-check or whose delete
// failed takes no slot, so it never holds back the others. Nothing is
// written once MayWrite says no.
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
	done := 0 // deletes that happened (or that a dry run would make)
	for _, st := range steps {
		if st.Write == WriteDelete && done >= r.Plan.MaxDeletes {
			st = capped(st)
		}
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
			case pr.Action == ActionDryRun:
				done++
			case pr.Action == ActionDeleted:
				done++
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

// capped turns a delete beyond the cap into a mark of its sighting, when
// the sighting counted.
func capped(st Step) Step {
	st.Write, st.Action = WriteNone, ActionCapped
	if st.Counted {
		st.Write = WriteMark
	}
	return st
}

func (r *Reaper) mayWrite(ctx context.Context) bool {
	return ctx.Err() == nil && (r.MayWrite == nil || r.MayWrite())
}

// recheckAndDelete asks Airflow once more about the pod, past every
// listing and cache, judges again with the same table, and deletes only if
// the verdict is the same reap. fatal is set when Airflow cannot be trusted
// any more: the remaining deletes of the cycle are not attempted.
func (r *Reaper) recheckAndDelete(ctx context.Context, pr PodReport, c decision.Candidate, evidence []decision.EvidencePod) (PodReport, error) {
	recheck := r.Resolver.Recheck
	if pr.Reason == decision.ReasonStaleTry {
		// A stale try is reaped only if the current try's pod is another.
		recheck = r.Resolver.RecheckWithPodName
	}
	fresh, err := recheck(ctx, c.Identity)
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
	pr.Action = actionOf(res)
	if err != nil {
		r.Log.Error("delete failed", "pod", pr.Pod.Namespace+"/"+pr.Pod.Name, "uid", pr.Pod.UID, "error", err.Error())
	}
	return pr, nil
}
