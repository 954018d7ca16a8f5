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
	keep := func(name string) decision.Decision {
		return decision.Decision{Pod: decision.Pod{Name: name, UID: name}, Verdict: decision.Keep, Reason: decision.ReasonTIActive}
	}
	seen := func(count int, last time.Duration) deleter.Sighting {
		return deleter.Sighting{Count: count, FirstSeen: now.Add(-time.Hour), LastSeen: now.Add(-last), Reason: decision.ReasonTIFinished}
	}
	type want struct {
		write  Write
		seen   int
		action Action
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
			want:     map[string]want{"a": {WriteMark, 1, ActionWaiting}},
		},
		{
			name:      "a sighting too soon does not count and writes nothing",
			policy:    PlanPolicy{Confirmations: 2, Spacing: time.Minute, MaxDeletes: 5},
			verdicts:  []decision.Decision{reap("a", time.Hour)},
			sightings: map[string]deleter.Sighting{"a": seen(1, 10*time.Second)},
			want:      map[string]want{"a": {WriteNone, 1, ActionWaiting}},
		},
		{
			name:      "a spaced sighting confirms",
			policy:    PlanPolicy{Confirmations: 2, Spacing: time.Minute, MaxDeletes: 5},
			verdicts:  []decision.Decision{reap("a", time.Hour)},
			sightings: map[string]deleter.Sighting{"a": seen(1, time.Minute)},
			want:      map[string]want{"a": {WriteDelete, 2, ""}},
			order:     []string{"a"},
		},
		{
			name:      "a pod no longer a zombie is unmarked",
			policy:    PlanPolicy{Confirmations: 2, MaxDeletes: 5},
			verdicts:  []decision.Decision{keep("a"), keep("b")},
			sightings: map[string]deleter.Sighting{"a": seen(1, time.Minute)},
			want:      map[string]want{"a": {WriteUnmark, 0, ""}, "b": {WriteNone, 0, ""}},
		},
		{
			name:     "the cap keeps the oldest, marks the rest",
			policy:   PlanPolicy{Confirmations: 1, MaxDeletes: 2},
			verdicts: []decision.Decision{reap("young", time.Hour), reap("old", 3*time.Hour), reap("mid", 2*time.Hour)},
			want: map[string]want{
				"old": {WriteDelete, 1, ""}, "mid": {WriteDelete, 1, ""}, "young": {WriteMark, 1, ActionCapped},
			},
			order: []string{"old", "mid"},
		},
		{
			name:      "capped again too soon writes nothing",
			policy:    PlanPolicy{Confirmations: 1, Spacing: time.Minute, MaxDeletes: 0},
			verdicts:  []decision.Decision{reap("a", time.Hour)},
			sightings: map[string]deleter.Sighting{"a": seen(1, time.Second)},
			want:      map[string]want{"a": {WriteNone, 1, ActionCapped}},
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
				if st.Write != w.write || st.Seen != w.seen || st.Action != w.action {
					t.Errorf("%s: write %d seen %d action %q, want %d %d %q", st.Decision.Pod.Name, st.Write, st.Seen, st.Action, w.write, w.seen, w.action)
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
