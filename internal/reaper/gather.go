package reaper

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
	"github.com/kpo-reaper/kpo-reaper/internal/decision"
	"github.com/kpo-reaper/kpo-reaper/internal/labels"
	"github.com/kpo-reaper/kpo-reaper/internal/resolve"
)

// facts is what the gather step learned.
type facts struct {
	skipped    []decision.Decision
	candidates []decision.Candidate
	evidence   []decision.EvidencePod
	lookups    map[string]decision.Lookup
}

// answer is what the lookup of one task instance returned.
type answer struct {
	l   decision.Lookup
	ref resolve.Ref
	err error
}

// gather lists the pods and asks Airflow about each candidate's own task
// instance, once per task instance, a few at a time.
func (r *Reaper) gather(ctx context.Context, now time.Time) (*facts, error) {
	pods, err := r.Pods.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: kubernetes: %w", ErrCycleFailed, err)
	}
	live := make(map[string]bool, len(pods))
	for _, p := range pods {
		live[p.UID] = true
	}
	r.Deleter.Forget(func(uid string) bool { return live[uid] })

	f := &facts{}
	f.skipped, f.candidates, f.evidence = decision.Screen(pods, now, r.Policy)
	keys, byKey := byTask(f.candidates)
	session := r.Resolver.NewSession()
	if err := session.Prefetch(ctx, firstOfEach(keys, byKey)); err != nil {
		return nil, fmt.Errorf("%w: airflow: %w", ErrCycleFailed, err)
	}
	answers, err := r.lookUp(ctx, session, keys, byKey)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCycleFailed, err)
	}
	f.lookups, err = collect(session, keys, byKey, answers)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// byTask groups the candidates by their task instance's labels, in first
// seen order.
func byTask(cs []decision.Candidate) ([]labels.Key, map[labels.Key][]decision.Candidate) {
	byKey := map[labels.Key][]decision.Candidate{}
	var keys []labels.Key
	for _, c := range cs {
		if len(byKey[c.Identity.Key]) == 0 {
			keys = append(keys, c.Identity.Key)
		}
		byKey[c.Identity.Key] = append(byKey[c.Identity.Key], c)
	}
	return keys, byKey
}

// firstOfEach is one identity per task instance, for the run listings that
// narrow the lookups.
func firstOfEach(keys []labels.Key, byKey map[labels.Key][]decision.Candidate) []labels.Identity {
	ids := make([]labels.Identity, len(keys))
	for i, k := range keys {
		ids[i] = byKey[k][0].Identity
	}
	return ids
}

// lookUp resolves every task instance, LookupConcurrency at a time. An
// error that Airflow cannot be trusted stops the lookups, and is reported
// rather than the cancellations it causes.
func (r *Reaper) lookUp(ctx context.Context, session *resolve.Session, keys []labels.Key, byKey map[labels.Key][]decision.Candidate) ([]answer, error) {
	answers := make([]answer, len(keys))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.lookupConcurrency())
	for i, k := range keys {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			l, ref, err := session.Resolve(gctx, byKey[k][0].Identity)
			answers[i] = answer{l, ref, err}
			if err != nil && !airflow.RequestScoped(err) && gctx.Err() == nil {
				return err
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("%w: airflow: %w", ErrCycleFailed, err)
	}
	return answers, nil
}

func (r *Reaper) lookupConcurrency() int {
	if r.LookupConcurrency <= 0 {
		return DefaultLookupConcurrency
	}
	return r.LookupConcurrency
}

// collect turns the answers into each candidate's lookup. A lookup failing
// concerns its pods only, unless every lookup failed: that is Airflow
// failing (or the API user reading nothing), not a pod's odd data.
func collect(session *resolve.Session, keys []labels.Key, byKey map[labels.Key][]decision.Candidate, answers []answer) (map[string]decision.Lookup, error) {
	lookups := map[string]decision.Lookup{}
	failed := 0
	for i, k := range keys {
		a := answers[i]
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
			lookups[c.Pod.UID] = l
		}
	}
	asked := len(keys)
	if refused := session.Forbidden(); asked > 0 && failed+refused == asked {
		why := firstFailure(lookups)
		if failed == 0 {
			why = "every answer was 403: give the API user read access (Airflow's Viewer role)"
		}
		return nil, fmt.Errorf("%w: airflow: every one of %d lookups failed, e.g. %s", ErrCycleFailed, asked, why)
	}
	return lookups, nil
}

func firstFailure(ls map[string]decision.Lookup) string {
	for _, l := range ls {
		if l.Status == decision.Failed {
			return l.Detail
		}
	}
	return ""
}
