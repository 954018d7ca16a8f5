package decision

import (
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
	"github.com/kpo-reaper/kpo-reaper/internal/labels"
)

// simPod is a pod in the model, with the facts the model knows and the
// reaper can only infer.
type simPod struct {
	pod      Pod
	try      int
	checked  bool
	deleted  bool
	attached bool // the running try is using it now
}

// history simulates one task instance through the KubernetesPodOperator's
// behaviour (find_pod reattach, cleanup marking already_checked, hard worker
// deaths, deferral, clears) and records what the REST API would report.
type history struct {
	rng       *rand.Rand
	legacy    bool // Airflow 2.0-2.9 try_number rules
	reattach  bool
	key       airflow.TIKey
	pods      []*simPod
	clock     time.Time
	state     string
	column    int        // the try_number the API reports
	running   int        // try number executing now, 0 when none
	startDate *time.Time // when the current (or last) try started
	endDate   *time.Time
	gone      bool
	foreign   bool // another Airflow: labels tie to nothing this API shows
	// shared: another Airflow's task instance whose DAG id this Airflow
	// also has, in a run it does not have: its pods look like orphans.
	shared     bool
	dagMissing bool // the DAG is missing from Airflow 3's DAG bag
	trace      []string
	podSerial  int
}

var oddIDs = []string{
	"kpo_zombie_dag", "group.task", "dag*", "_private_dag", "my_dág_id", "x-",
	"a_very_long_identifier_that_is_certainly_longer_than_sixty_three_characters_in_total",
}

func newHistory(rng *rand.Rand, n int) *history {
	h := &history{rng: rng, legacy: rng.Intn(2) == 0, reattach: rng.Intn(5) != 0, clock: now.Add(-time.Duration(6+rng.Intn(48)) * time.Hour)}
	mapIndex := -1
	if rng.Intn(3) == 0 {
		mapIndex = rng.Intn(4)
	}
	runID := fmt.Sprintf("scheduled__2026-11-%02dT%02d:00:00+00:00", 1+rng.Intn(26), rng.Intn(24))
	if rng.Intn(4) == 0 {
		runID = "manual_" + oddIDs[rng.Intn(len(oddIDs))]
	}
	h.key = airflow.TIKey{DagID: oddIDs[rng.Intn(len(oddIDs))] + fmt.Sprint(n%7), RunID: runID, TaskID: oddIDs[rng.Intn(len(oddIDs))], MapIndex: mapIndex}
	return h
}

func (h *history) tick() { h.clock = h.clock.Add(time.Duration(1+h.rng.Intn(40)) * time.Minute) }

func (h *history) reattachable() []*simPod {
	var out []*simPod
	for _, p := range h.pods {
		if !p.deleted && !p.checked && p.pod.Phase != "Succeeded" && p.pod.Phase != "Failed" {
			out = append(out, p)
		}
	}
	return out
}

// startTry is KubernetesPodOperator.execute: find a pod to reattach to (its
// selector ignores try_number) or create one labelled with this try.
func (h *history) startTry() bool {
	h.tick()
	// Airflow 2.10+ and 3.x increment at scheduling; 2.0-2.9 when the try starts.
	try := h.column + 1
	if !h.legacy && h.state != "" && h.state != "up_for_retry" && h.state != "restarting" {
		try = h.column
	}
	h.column = try
	h.running = try
	h.state = "running"
	start := h.clock
	h.startDate = &start
	if h.reattach {
		cands := h.reattachable()
		if len(cands) > 1 {
			h.trace = append(h.trace, "found more than one pod: try fails")
			h.running = 0
			return false
		}
		if len(cands) == 1 {
			cands[0].attached = true
			h.trace = append(h.trace, fmt.Sprintf("try %d reattached to pod of try %d", try, cands[0].try))
			return true
		}
	}
	h.podSerial++
	name := fmt.Sprintf("pod-%d", h.podSerial)
	tryLabel := try
	l := labels.ForTaskInstance(h.key.DagID, h.key.TaskID, h.key.RunID, h.key.MapIndex, &tryLabel)
	phase := "Running"
	if h.rng.Intn(8) == 0 {
		phase = "Pending"
	}
	p := &simPod{pod: Pod{Namespace: "ns", Name: name, UID: name, Labels: l, Phase: phase, Created: h.clock}, try: try, attached: true}
	h.pods = append(h.pods, p)
	h.trace = append(h.trace, fmt.Sprintf("try %d created %s", try, name))
	return true
}

func (h *history) attachedPod() *simPod {
	for _, p := range h.pods {
		if p.attached {
			return p
		}
	}
	return nil
}

// endTry ends the running try the way the operator's cleanup (or its
// absence) leaves the pod.
func (h *history) endTry(state string, cleanup bool) {
	h.tick()
	if p := h.attachedPod(); p != nil {
		p.attached = false
		if cleanup {
			switch h.rng.Intn(3) {
			case 0:
				p.deleted = true
			default:
				// The sidecar ignores SIGTERM: the pod stays, and cleanup
				// marks it so no retry reattaches; the patch can fail.
				if h.rng.Intn(10) != 0 {
					p.checked = true
					p.pod.Labels[labels.AlreadyChecked] = "True"
				}
			}
		}
	}
	h.running = 0
	h.state = state
	if airflow.IsFinished(state) {
		e := h.clock
		h.endDate = &e
	}
	h.trace = append(h.trace, "-> "+state)
}

func (h *history) simulate() {
	maxTries := 1 + h.rng.Intn(4)
	for {
		if !h.startTry() {
			if h.column >= maxTries {
				h.endTry("failed", false)
				return
			}
			h.endTry("up_for_retry", false)
			if h.rng.Intn(3) == 0 {
				return
			}
			continue
		}
		switch h.rng.Intn(9) {
		case 0: // still running now
			return
		case 1: // deferred while the pod runs; 2.0-2.9 decrements the column
			h.state = "deferred"
			if h.legacy {
				h.column--
			}
			if h.rng.Intn(2) == 0 {
				return
			}
			// Marked failed while deferred: nobody kills the pod (#37263).
			if h.legacy {
				h.column++
			}
			h.endTry("failed", false)
			return
		case 2, 3:
			h.endTry("success", true)
			return
		case 4: // worker died hard: the pod runs on unchecked
			if h.column >= maxTries {
				h.endTry("failed", false)
				return
			}
			h.endTry("up_for_retry", false)
		case 5: // cleared while running: restarting, then a new try
			h.endTry("restarting", false)
			if h.rng.Intn(3) == 0 {
				return
			}
		default:
			if h.column >= maxTries {
				h.endTry("failed", true)
				return
			}
			h.endTry("up_for_retry", true)
		}
		if h.rng.Intn(4) == 0 {
			// Waiting for the next try in some unfinished state.
			h.state = []string{"up_for_retry", "scheduled", "queued", ""}[h.rng.Intn(4)]
			if h.state == "scheduled" || h.state == "queued" {
				if !h.legacy {
					h.column++
				}
			}
			return
		}
	}
}

func (h *history) ti() airflow.TaskInstance {
	return airflow.TaskInstance{TIKey: h.key, TryNumber: h.column, State: h.state, StartDate: h.startDate, EndDate: h.endDate}
}

// mayUse is the model's truth: the running try uses the pod, or a future try
// may reattach to it.
func (h *history) mayUse(p *simPod) bool {
	if airflow.IsFinished(h.state) || h.gone || p.deleted {
		return false
	}
	return p.attached || (h.reattach && !p.checked && p.pod.Phase != "Succeeded" && p.pod.Phase != "Failed")
}

// provenZombie: a pod the API gives positive evidence against.
func (h *history) provenZombie(p *simPod, at time.Time, pol Policy) bool {
	if p.deleted || at.Sub(p.pod.Created) < pol.MinPodAge || h.foreign || h.shared || h.dagMissing {
		return false
	}
	if h.gone {
		return pol.ReapOrphans && at.Sub(p.pod.Created) >= pol.OrphanMinAge
	}
	if airflow.IsFinished(h.state) {
		return at.Sub(*h.endDate) >= policy.TerminalGracePeriod && p.try <= h.column && !p.pod.Created.After(*h.endDate)
	}
	return p.checked && !p.attached && p.try < h.column
}

// lookupFor is the exact answer about one pod's own task instance in a
// history; churn makes some answers fail, contradict each other or find a
// duplicate row, as a busy Airflow's listings do.
func (h *history) lookupFor(rng *rand.Rand, churn bool) Lookup {
	if churn {
		switch rng.Intn(20) {
		case 0, 1, 2:
			return Lookup{Status: Failed, Detail: "inconsistent listing"}
		case 3:
			return Lookup{Status: Contradictory, Detail: "run listed, then 404"}
		case 4:
			return Lookup{Status: Ambiguous, Detail: "a duplicated row"}
		}
	}
	switch {
	case h.foreign:
		return Lookup{Status: Unresolved}
	case h.dagMissing:
		return Lookup{Status: DagUnavailable}
	case h.gone, h.shared:
		return Lookup{Status: Gone}
	default:
		return Lookup{Status: Found, TI: h.ti()}
	}
}

// Histories are judged under the default policy, where another Airflow's
// pods may share the watched namespaces and DAG ids, and with
// reaper.reapOrphans, which is safe only when they do not.
func TestRandomHistoriesNeverReapALivePod(t *testing.T) {
	for _, tc := range []struct {
		name   string
		policy Policy
	}{
		{"default policy, shared namespaces", func() Policy { p := policy; p.ReapOrphans = false; return p }()},
		{"reapOrphans, one Airflow per selected pods", policy},
	} {
		t.Run(tc.name, func(t *testing.T) { randomHistories(t, tc.policy) })
	}
}

func randomHistories(t *testing.T, pol Policy) {
	rng := rand.New(rand.NewSource(20261127))
	var reaped, kept, histories int
	for n := 0; n < 10000; n++ {
		h := newHistory(rng, n)
		h.simulate()
		switch rng.Intn(20) {
		case 0:
			h.gone = true // DAG run deleted
		case 1:
			h.foreign = true
		case 2:
			h.dagMissing = true
		case 3:
			h.shared = !pol.ReapOrphans
		}
		at := h.clock.Add(time.Duration(rng.Intn(180)) * time.Minute)
		var pods []Pod
		for _, p := range h.pods {
			if !p.deleted {
				pods = append(pods, p.pod)
			}
		}
		// Pods that carry this task instance's labels and its current try
		// but prove nothing about its pods: another Airflow's in another
		// namespace, and the already_checked leftover of a run that was
		// deleted and re-triggered with the same run_id.
		extra := map[string]bool{}
		if h.column > 0 && rng.Intn(5) == 0 {
			try := h.column
			l := labels.ForTaskInstance(h.key.DagID, h.key.TaskID, h.key.RunID, h.key.MapIndex, &try)
			ns, name := "ns", "leftover"
			if rng.Intn(2) == 0 {
				ns, name = "other", "other-airflow"
			} else {
				l[labels.AlreadyChecked] = "True"
			}
			pods = append(pods, Pod{Namespace: ns, Name: name, UID: name, Labels: l, Phase: "Running", Created: at.Add(-time.Minute)})
			extra[name] = true
		}
		skipped, candidates, evidence := Screen(pods, at, pol)
		// A busy evaluation first, then a quiet one.
		for round, churn := range []bool{true, false} {
			lookups := map[string]Lookup{}
			for _, c := range candidates {
				lookups[c.Pod.UID] = h.lookupFor(rng, churn)
			}
			verdicts := append(append([]Decision(nil), skipped...), Decide(Input{Now: at, Policy: pol, Candidates: candidates, Lookups: lookups, Evidence: evidence})...)
			byName := map[string]Decision{}
			for _, v := range verdicts {
				if !extra[v.Pod.Name] {
					byName[v.Pod.Name] = v
				}
			}
			if round == 0 {
				histories++
			}
			for _, p := range h.pods {
				if p.deleted {
					continue
				}
				v := byName[p.pod.Name]
				if (h.mayUse(p) || h.shared) && v.Verdict == Reap {
					t.Fatalf("history %d (churn %v): reaped %s (try %d) that the task instance may still use: %s/%s %s\nlegacy=%v reattach=%v shared=%v ti=%+v\n%v", n, churn, p.pod.Name, p.try, v.Verdict, v.Reason, v.Detail, h.legacy, h.reattach, h.shared, h.ti(), h.trace)
				}
				if !churn && h.provenZombie(p, at, pol) && p.pod.Phase != "Succeeded" && v.Verdict != Reap {
					t.Fatalf("history %d: missed zombie %s (try %d) once Airflow is quiet: %s/%s %s\nlegacy=%v ti=%+v\n%v", n, p.pod.Name, p.try, v.Verdict, v.Reason, v.Detail, h.legacy, h.ti(), h.trace)
				}
				if churn {
					continue
				}
				if v.Verdict == Reap {
					reaped++
				} else {
					kept++
				}
			}
		}
	}
	// Guard against a generator that never produces the interesting cases.
	if histories != 10000 || reaped < 1000 || kept < 1000 {
		t.Fatalf("weak generator: %d histories, %d reaped, %d not reaped", histories, reaped, kept)
	}
	t.Logf("%d histories, %d pods reaped, %d pods not reaped", histories, reaped, kept)
}
