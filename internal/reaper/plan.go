package reaper

import (
	"time"

	"github.com/kpo-reaper/kpo-reaper/internal/decision"
	"github.com/kpo-reaper/kpo-reaper/internal/deleter"
)

// Write is what the apply step is to do about one pod.
type Write int

const (
	WriteNone   Write = iota
	WriteMark         // record the sighting on the pod
	WriteUnmark       // clear a sighting: the pod is no zombie now
	WriteDelete       // re-check, then delete (or mark, once the cap is reached)
)

// PlanPolicy holds the plan's thresholds.
type PlanPolicy struct {
	Confirmations int
	// Spacing is the least time between two counted sightings, so that
	// quick successive evaluations (a crash-looping daemon, a failover, two
	// CronJob retries) cannot stand in for a zombie seen over time.
	Spacing time.Duration
	// MaxDeletes is how many deletes a cycle makes: the apply step counts
	// the deletes that happen, so a candidate kept at its re-check or
	// whose delete fails holds no slot.
	MaxDeletes int
}

// ClockSkew is how far in the future a recorded sighting may be dated and
// still be one this reaper wrote (another replica's clock).
const ClockSkew = time.Minute

// Step is the plan for one pod.
type Step struct {
	Decision decision.Decision
	Seen     int // counted sightings, this one included when it counted
	Needed   int
	Write    Write
	// Mark is what WriteMark records, and what a capped WriteDelete
	// records when Counted.
	Mark    deleter.Sighting
	Counted bool   // this evaluation's sighting counted
	Action  Action // the action when the apply step changes nothing
}

// Plan is pure: from the decisions and the sightings already recorded, it
// decides which sightings count and which pods are confirmed; the
// confirmed ones come last, oldest first, in the order the apply step
// deletes them (up to MaxDeletes deletes).
func Plan(decisions []decision.Decision, sighting func(decision.Pod) deleter.Sighting, p PlanPolicy, now time.Time) []Step {
	steps := make([]Step, 0, len(decisions))
	var confirmed []decision.Decision
	seen := map[string]deleter.Sighting{}
	counted := map[string]bool{}
	for _, v := range decisions {
		prev := sighting(v.Pod)
		if v.Verdict != decision.Reap {
			st := Step{Decision: v, Needed: p.Confirmations}
			if prev.Count > 0 {
				st.Write = WriteUnmark
			}
			steps = append(steps, st)
			continue
		}
		if !Plausible(prev, p.Confirmations, now) {
			prev = deleter.Sighting{}
		}
		next, ok := nextSighting(prev, v.Reason, p, now)
		seen[v.Pod.UID], counted[v.Pod.UID] = next, ok
		if next.Count >= p.Confirmations && now.Sub(latest(next.FirstSeen, v.Pod.Created)) >= v.Grace {
			confirmed = append(confirmed, v)
			continue
		}
		st := Step{Decision: v, Seen: next.Count, Needed: p.Confirmations, Action: ActionWaiting, Counted: ok}
		if ok {
			st.Write, st.Mark = WriteMark, next
		}
		steps = append(steps, st)
	}
	decision.OldestFirst(confirmed)
	for _, v := range confirmed {
		s := seen[v.Pod.UID]
		steps = append(steps, Step{Decision: v, Seen: s.Count, Needed: p.Confirmations, Write: WriteDelete, Mark: s, Counted: counted[v.Pod.UID]})
	}
	return steps
}

// Plausible says whether a recorded sighting is one this reaper could have
// written: no more sightings than it ever needs, not dated in the future
// beyond ClockSkew. Anything else is a fresh start: a count that was never
// earned must not let a first sighting delete, and a date in the future
// must not hold back confirmations until then.
func Plausible(s deleter.Sighting, confirmations int, now time.Time) bool {
	if s.Count == 0 {
		return true
	}
	ahead := now.Add(ClockSkew)
	return s.Count <= confirmations && !s.LastSeen.After(ahead) && !s.FirstSeen.After(ahead)
}

// latest is the later of two times: a grace period runs from the first
// sighting, and never from before the pod existed (marks copied with a pod
// template).
func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// nextSighting counts this evaluation's sighting if the previous counted
// one is at least spacing old. The count stops at the confirmations
// needed, the most this reaper ever records.
func nextSighting(prev deleter.Sighting, reason decision.Reason, p PlanPolicy, now time.Time) (deleter.Sighting, bool) {
	if prev.Count == 0 {
		return deleter.Sighting{Count: 1, FirstSeen: now, LastSeen: now, Reason: reason}, true
	}
	if now.Sub(prev.LastSeen) < p.Spacing {
		return prev, false
	}
	return deleter.Sighting{Count: min(prev.Count+1, max(p.Confirmations, 1)), FirstSeen: prev.FirstSeen, LastSeen: now, Reason: reason}, true
}
