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
	"time"

	"github.com/kpo-reaper/kpo-reaper/internal/decision"
	"github.com/kpo-reaper/kpo-reaper/internal/deleter"
	"github.com/kpo-reaper/kpo-reaper/internal/resolve"
)

// PodSource lists the pods to judge, completely or not at all
// (kube.PodLister pages a List, kube.WatchLister reads an informer).
type PodSource interface {
	List(ctx context.Context) ([]decision.Pod, error)
}

// Writer is every write the reaper makes to the cluster, and the marks
// those writes leave (deleter.Force writes them on the pods,
// deleter.DryRunDeleter keeps them in memory).
type Writer interface {
	Delete(ctx context.Context, pod decision.Pod) (deleter.Result, error)
	Mark(ctx context.Context, pod decision.Pod, s deleter.Sighting) error
	Unmark(ctx context.Context, pod decision.Pod) error
	// Sighting reads the marks Mark left on the pod.
	Sighting(pod decision.Pod) deleter.Sighting
	// Forget is told, once per cycle, which pods exist, so that state kept
	// for pods that are gone goes too.
	Forget(exists func(uid string) bool)
}

// DefaultLookupConcurrency is how many pods' lookups run at once.
const DefaultLookupConcurrency = 8

// Reaper wires the edges to the decision.
type Reaper struct {
	Pods     PodSource
	Resolver *resolve.Resolver
	Deleter  Writer
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

// cycle is the evaluation's steps.
func (r *Reaper) cycle(ctx context.Context, now time.Time) (*Report, error) {
	f, err := r.gather(ctx, now)
	if err != nil {
		return nil, err
	}
	decisions := r.decide(f, now)
	if err := orphanBreaker(decisions, len(f.candidates)); err != nil {
		return nil, err
	}
	steps := Plan(decisions, r.Deleter.Sighting, r.Plan, now)
	return r.apply(ctx, steps, f)
}

// The orphan breaker: when at least OrphanBreakerMin of a cycle's
// candidates, and more than half of them, are orphans (this Airflow does
// not have their DAG, run or task instance), the cycle fails closed. A real
// installation loses a run or a DAG now and then; most of its pods gone at
// once means the reaper is asking the wrong Airflow.
const OrphanBreakerMin = 5

// orphanBreaker fails the cycle when the orphans are an implausible share
// of the candidates (pods judged against Airflow).
func orphanBreaker(decisions []decision.Decision, candidates int) error {
	orphans := 0
	for _, v := range decisions {
		if v.Reason == decision.ReasonOrphan || v.Reason == decision.ReasonOrphanTooYoung {
			orphans++
		}
	}
	if orphans < OrphanBreakerMin || 2*orphans <= candidates {
		return nil
	}
	return fmt.Errorf("%w: %d of the %d pods judged against Airflow are orphans (this Airflow has not their DAG, run or task instance), "+
		"too many to be deleted as orphans: check airflow.url (another Airflow, such as a staging one, with the same DAG ids?), "+
		"whether the watched namespaces hold another Airflow's pods (kubernetes.namespaces, kubernetes.labelSelector), "+
		"and that the API user's role reads every DAG; set reaper.reapOrphans: false to reap the other zombies meanwhile",
		ErrCycleFailed, orphans, candidates)
}

// decide judges every pod: those the screen skipped, then the candidates.
func (r *Reaper) decide(f *facts, now time.Time) []decision.Decision {
	in := decision.Input{Now: now, Policy: r.Policy, Candidates: f.candidates, Lookups: f.lookups, Evidence: f.evidence}
	return append(f.skipped, decision.Decide(in)...)
}
