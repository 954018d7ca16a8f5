package reaper

import (
	"testing"
	"time"

	"github.com/kpo-reaper/kpo-reaper/internal/decision"
	"github.com/kpo-reaper/kpo-reaper/internal/deleter"
)

func TestPlan(t *testing.T) {
	reap := func(name string, age time.Duration) decision.Decision {
		return decision.Decision{Pod: decision.Pod{Name: name, UID: name, Created: now.Add(-age)}, Verdict: decision.Reap, Reason: decision.ReasonTIFinished}
	}
	graced := func(name string, grace time.Duration) decision.Decision {
		v := reap(name, time.Hour)
		v.Reason, v.Grace = decision.ReasonFinishedNoEndDate, grace
		return v
	}
	keep := func(name string) decision.Decision {
		return decision.Decision{Pod: decision.Pod{Name: name, UID: name}, Verdict: decision.Keep, Reason: decision.ReasonTIActive}
	}
	seen := func(count int, last time.Duration) deleter.Sighting {
		return deleter.Sighting{Count: count, FirstSeen: now.Add(-time.Hour), LastSeen: now.Add(-last), Reason: decision.ReasonTIFinished}
	}
	type want struct {
		write   Write
		seen    int
		action  Action
		counted bool
	}
	rows := []struct {
		name      string
		policy    PlanPolicy
		verdicts  []decision.Decision
		sightings map[string]deleter.Sighting
		want      map[string]want
		order     []string // the deletes, in order
	}{
		{
			name:     "first sighting is marked",
			policy:   PlanPolicy{Confirmations: 2, Spacing: time.Minute, MaxDeletes: 5},
			verdicts: []decision.Decision{reap("a", time.Hour)},
			want:     map[string]want{"a": {WriteMark, 1, ActionWaiting, true}},
		},
		{
			name:      "a sighting too soon does not count and writes nothing",
			policy:    PlanPolicy{Confirmations: 2, Spacing: time.Minute, MaxDeletes: 5},
			verdicts:  []decision.Decision{reap("a", time.Hour)},
			sightings: map[string]deleter.Sighting{"a": seen(1, 10*time.Second)},
			want:      map[string]want{"a": {WriteNone, 1, ActionWaiting, false}},
		},
		{
			name:      "a spaced sighting confirms",
			policy:    PlanPolicy{Confirmations: 2, Spacing: time.Minute, MaxDeletes: 5},
			verdicts:  []decision.Decision{reap("a", time.Hour)},
			sightings: map[string]deleter.Sighting{"a": seen(1, time.Minute)},
			want:      map[string]want{"a": {WriteDelete, 2, "", true}},
			order:     []string{"a"},
		},
		{
			name:      "a pod no longer a zombie is unmarked",
			policy:    PlanPolicy{Confirmations: 2, MaxDeletes: 5},
			verdicts:  []decision.Decision{keep("a"), keep("b")},
			sightings: map[string]deleter.Sighting{"a": seen(1, time.Minute)},
			want:      map[string]want{"a": {WriteUnmark, 0, "", false}, "b": {WriteNone, 0, "", false}},
		},
		{
			name:     "the confirmed are deleted oldest first, whatever the cap",
			policy:   PlanPolicy{Confirmations: 1, MaxDeletes: 2},
			verdicts: []decision.Decision{reap("young", time.Hour), reap("old", 3*time.Hour), reap("mid", 2*time.Hour)},
			want: map[string]want{
				"old": {WriteDelete, 1, "", true}, "mid": {WriteDelete, 1, "", true}, "young": {WriteDelete, 1, "", true},
			},
			order: []string{"old", "mid", "young"},
		},
		{
			name:      "confirmed again too soon does not count",
			policy:    PlanPolicy{Confirmations: 1, Spacing: time.Minute, MaxDeletes: 1},
			verdicts:  []decision.Decision{reap("a", time.Hour)},
			sightings: map[string]deleter.Sighting{"a": seen(1, time.Second)},
			want:      map[string]want{"a": {WriteDelete, 1, "", false}},
			order:     []string{"a"},
		},
		{
			name:      "the count stops at the confirmations needed",
			policy:    PlanPolicy{Confirmations: 2, Spacing: time.Minute, MaxDeletes: 1},
			verdicts:  []decision.Decision{reap("a", time.Hour)},
			sightings: map[string]deleter.Sighting{"a": seen(2, time.Hour)},
			want:      map[string]want{"a": {WriteDelete, 2, "", true}},
			order:     []string{"a"},
		},
		{
			name:     "a reap with a grace waits from its first sighting",
			policy:   PlanPolicy{Confirmations: 1, MaxDeletes: 1},
			verdicts: []decision.Decision{graced("new", 10*time.Minute), graced("waited", 10*time.Minute)},
			sightings: map[string]deleter.Sighting{
				"waited": {Count: 1, FirstSeen: now.Add(-10 * time.Minute), LastSeen: now.Add(-time.Minute)},
			},
			want:  map[string]want{"new": {WriteMark, 1, ActionWaiting, true}, "waited": {WriteDelete, 1, "", true}},
			order: []string{"waited"},
		},
		{
			name:   "a grace never runs from before the pod existed",
			policy: PlanPolicy{Confirmations: 1, MaxDeletes: 1},
			verdicts: []decision.Decision{func() decision.Decision {
				v := graced("copied", 10*time.Minute)
				v.Pod.Created = now.Add(-5 * time.Minute)
				return v
			}()},
			sightings: map[string]deleter.Sighting{
				"copied": {Count: 1, FirstSeen: now.Add(-2 * time.Hour), LastSeen: now.Add(-time.Minute)},
			},
			want: map[string]want{"copied": {WriteMark, 1, ActionWaiting, true}},
		},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			steps := Plan(r.verdicts, func(p decision.Pod) deleter.Sighting { return r.sightings[p.UID] }, r.policy, now)
			if len(steps) != len(r.verdicts) {
				t.Fatalf("%d steps for %d verdicts", len(steps), len(r.verdicts))
			}
			var order []string
			for _, st := range steps {
				w, ok := r.want[st.Decision.Pod.Name]
				if !ok {
					t.Fatalf("unexpected pod %s", st.Decision.Pod.Name)
				}
				if st.Write != w.write || st.Seen != w.seen || st.Action != w.action || st.Counted != w.counted {
					t.Errorf("%s: write %d seen %d action %q counted %v, want %d %d %q %v", st.Decision.Pod.Name, st.Write, st.Seen, st.Action, st.Counted, w.write, w.seen, w.action, w.counted)
				}
				if st.Write == WriteMark && !st.Mark.LastSeen.Equal(now) {
					t.Errorf("%s: mark last seen %v, want now", st.Decision.Pod.Name, st.Mark.LastSeen)
				}
				if st.Write == WriteDelete {
					order = append(order, st.Decision.Pod.Name)
				}
			}
			if len(order) != len(r.order) {
				t.Fatalf("deletes %v, want %v", order, r.order)
			}
			for i := range order {
				if order[i] != r.order[i] {
					t.Fatalf("deletes %v, want %v", order, r.order)
				}
			}
		})
	}
}

// Marks this reaper could not have written are a fresh start: a count above
// the confirmations needed, a sighting dated in the future.
func TestImplausibleSightingsStartAfresh(t *testing.T) {
	pod := decision.Pod{Name: "p", UID: "p", Created: now.Add(-time.Hour)}
	v := decision.Decision{Pod: pod, Verdict: decision.Reap, Reason: decision.ReasonTIFinished}
	policy := PlanPolicy{Confirmations: 2, Spacing: time.Minute, MaxDeletes: 5}
	for _, tc := range []struct {
		name  string
		s     deleter.Sighting
		fresh bool
	}{
		{"a count this reaper records", deleter.Sighting{Count: 1, FirstSeen: now.Add(-5 * time.Minute), LastSeen: now.Add(-5 * time.Minute)}, false},
		{"a clock a little ahead", deleter.Sighting{Count: 1, FirstSeen: now.Add(30 * time.Second), LastSeen: now.Add(30 * time.Second)}, false},
		{"a count above the confirmations", deleter.Sighting{Count: 3, FirstSeen: now.Add(-5 * time.Minute), LastSeen: now.Add(-5 * time.Minute)}, true},
		{"last seen in the future", deleter.Sighting{Count: 1, FirstSeen: now.Add(-5 * time.Minute), LastSeen: now.Add(time.Hour)}, true},
		{"first seen in the future", deleter.Sighting{Count: 1, FirstSeen: now.Add(time.Hour), LastSeen: now.Add(time.Hour)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := Plan([]decision.Decision{v}, func(decision.Pod) deleter.Sighting { return tc.s }, policy, now)[0]
			fresh := st.Write == WriteMark && st.Seen == 1 && st.Mark.FirstSeen.Equal(now)
			if fresh != tc.fresh {
				t.Fatalf("write %d seen %d first seen %v; want a fresh start: %v", st.Write, st.Seen, st.Mark.FirstSeen, tc.fresh)
			}
			if tc.fresh && st.Write == WriteDelete {
				t.Fatal("a first sighting confirmed the pod")
			}
		})
	}
}
