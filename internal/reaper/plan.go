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
	WriteDelete       // re-check, then delete
)

// PlanPolicy holds the plan's thresholds.
type PlanPolicy struct {
	Confirmations int
	// Spacing is the least time between two counted sightings, so that
	// quick successive evaluations (a crash-looping daemon, a failover, two
	// CronJob retries) cannot stand in for a zombie seen over time.
	Spacing    time.Duration
	MaxDeletes int
}

// Step is the plan for one pod.
type Step struct {
	Decision decision.Decision
	Seen     int // counted sightings, this one included when it counted
	Needed   int
	Write    Write
	Mark     deleter.Sighting // what WriteMark records
	Action   Action           // the action when the apply step changes nothing
}

// Plan is pure: from the decisions and the sightings already recorded, it
// decides which sightings count, which pods are confirmed, and which of
// those this cycle deletes (oldest first, up to MaxDeletes; the rest are
// capped). The deletes come last, in order.
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
		next, ok := nextSighting(prev, v.Reason, p.Spacing, now)
		seen[v.Pod.UID], counted[v.Pod.UID] = next, ok
		if next.Count >= p.Confirmations {
			confirmed = append(confirmed, v)
			continue
		}
		st := Step{Decision: v, Seen: next.Count, Needed: p.Confirmations, Action: ActionWaiting}
		if ok {
			st.Write, st.Mark = WriteMark, next
		}
		steps = append(steps, st)
	}
	decision.OldestFirst(confirmed)
	for i, v := range confirmed {
		s := seen[v.Pod.UID]
		st := Step{Decision: v, Seen: s.Count, Needed: p.Confirmations, Write: WriteDelete, Mark: s}
		if i >= p.MaxDeletes {
			st.Write, st.Action = WriteNone, ActionCapped
			if counted[v.Pod.UID] {
				st.Write = WriteMark
			}
		}
		steps = append(steps, st)
	}
	return steps
}

// nextSighting counts this evaluation's sighting if the previous counted
// one is at least spacing old.
func nextSighting(prev deleter.Sighting, reason decision.Reason, spacing time.Duration, now time.Time) (deleter.Sighting, bool) {
	if prev.Count == 0 {
		return deleter.Sighting{Count: 1, FirstSeen: now, LastSeen: now, Reason: reason}, true
	}
	if now.Sub(prev.LastSeen) < spacing {
		return prev, false
	}
	return deleter.Sighting{Count: prev.Count + 1, FirstSeen: prev.FirstSeen, LastSeen: now, Reason: reason}, true
}
