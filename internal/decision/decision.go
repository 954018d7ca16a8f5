// Package decision is the reaper's judgement: given pods, the task instances
// the Airflow API reported and what exact lookups found, it says for every
// pod whether to reap, keep or skip it, and why. It does no I/O, so every
// row of the decision table is a table test.
package decision

import (
	"sort"
	"time"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
	"github.com/kpo-reaper/kpo-reaper/internal/labels"
)

// Verdicts.
const (
	Reap = "reap" // a proven zombie
	Keep = "keep" // its task instance is active
	Skip = "skip" // not enough evidence either way
)

// Reason codes. They are a public contract (README, plan output, logs,
// metrics): add new ones, never rename.
const (
	ReasonNotKPO           = "not-kpo"
	ReasonExecutorWorker   = "executor-worker"
	ReasonOwned            = "owned"
	ReasonTerminating      = "terminating"
	ReasonUnidentifiable   = "unidentifiable"
	ReasonTooYoung         = "too-young"
	ReasonCompleted        = "completed"
	ReasonTIActive         = "ti-active"
	ReasonTIFinished       = "ti-finished"
	ReasonStaleTry         = "stale-try"
	ReasonOrphan           = "orphan"
	ReasonOrphanTooYoung   = "orphan-too-young"
	ReasonTerminalGrace    = "terminal-grace"
	ReasonTryAhead         = "try-ahead"
	ReasonPodNewerThanTI   = "pod-newer-than-ti"
	ReasonNoEndDate        = "no-end-date"
	ReasonUnresolved       = "unresolved"
	ReasonAmbiguous        = "ambiguous"
	ReasonChangedOnRecheck = "changed-on-recheck"
	ReasonPodNameUnknown   = "pod-name-unknown"
)

// Pod is what the decisions read of a Kubernetes pod.
type Pod struct {
	Namespace   string
	Name        string
	UID         string
	Labels      map[string]string
	Annotations map[string]string
	// OwnerKind is the kind of the first ownerReference, "" when none.
	OwnerKind   string
	Terminating bool
	Phase       string
	Created     time.Time
}

// Policy holds the thresholds of the decision table.
type Policy struct {
	MinPodAge           time.Duration
	TerminalGracePeriod time.Duration
	OrphanMinAge        time.Duration
}

// Candidate is a pod that passed every label-only check and must be judged
// against Airflow.
type Candidate struct {
	Pod      Pod
	Identity labels.Identity
}

// Verdict is the outcome for one pod.
type Verdict struct {
	Pod      Pod
	Verdict  string
	Reason   string
	Detail   string
	Identity *labels.Identity
	// TI is the task instance the verdict rests on, when one was found.
	TI *airflow.TaskInstance
}

// Screen applies the rows that need no Airflow: it returns the skipped pods
// with their reasons, the candidates, and the identities of every KPO pod
// that carries readable labels and is not terminating (young and completed
// ones included), which stale-try uses as evidence of the current try's pod.
func Screen(pods []Pod, now time.Time, p Policy) (skipped []Verdict, candidates []Candidate, evidence []labels.Identity) {
	for _, pod := range pods {
		l := pod.Labels
		switch {
		case l[labels.KPO] != "True":
			skipped = append(skipped, skip(pod, nil, ReasonNotKPO, "no kubernetes_pod_operator=True label"))
			continue
		case hasKey(l, labels.AirflowWorker) || l[labels.KubernetesExecutor] == "True":
			skipped = append(skipped, skip(pod, nil, ReasonExecutorWorker, "KubernetesExecutor worker pod"))
			continue
		case pod.OwnerKind != "":
			skipped = append(skipped, skip(pod, nil, ReasonOwned, "owned by a "+pod.OwnerKind+", which would recreate it"))
			continue
		case pod.Terminating:
			skipped = append(skipped, skip(pod, nil, ReasonTerminating, "already being deleted"))
			continue
		}
		id, err := labels.ParseIdentity(l)
		if err != nil {
			skipped = append(skipped, skip(pod, nil, ReasonUnidentifiable, err.Error()))
			continue
		}
		evidence = append(evidence, id)
		switch {
		case now.Sub(pod.Created) < p.MinPodAge:
			skipped = append(skipped, skip(pod, &id, ReasonTooYoung, "younger than reaper.minPodAge"))
		case pod.Phase == "Succeeded" || pod.Phase == "Failed":
			skipped = append(skipped, skip(pod, &id, ReasonCompleted, "phase "+pod.Phase+": left to the operator's on_finish_action"))
		default:
			candidates = append(candidates, Candidate{Pod: pod, Identity: id})
		}
	}
	return skipped, candidates, evidence
}

// ActiveIndex groups the unfinished task instances by the key their pods
// carry.
type ActiveIndex map[labels.Key][]airflow.TaskInstance

// IndexActive normalizes the API's ids exactly as Airflow normalizes labels.
func IndexActive(active []airflow.TaskInstance) ActiveIndex {
	idx := make(ActiveIndex, len(active))
	for _, ti := range active {
		k := labels.KeyOf(ti.DagID, ti.RunID, ti.TaskID, ti.MapIndex)
		idx[k] = append(idx[k], ti)
	}
	return idx
}

// LookupStatus is what an exact lookup of a pod's own task instance found.
type LookupStatus int

const (
	// Found: the TI exists; Lookup.TI holds it.
	Found LookupStatus = iota
	// Gone: the API answered definitively that the TI does not exist (its
	// DAG run or the TI itself is absent from a readable DAG).
	Gone
	// Unresolved: the labels tie to nothing this Airflow shows.
	Unresolved
	// Ambiguous: more than one real id normalizes to the pod's labels.
	Ambiguous
)

// Lookup is the exact answer for one pod that the active listing did not
// match.
type Lookup struct {
	Status LookupStatus
	TI     airflow.TaskInstance
	Detail string
	// CurrentPodName is the XCom pod_name the TI's current try pushed, when
	// it was read (the re-check before a stale-try delete reads it): the
	// name of the pod that try created or reattached to.
	CurrentPodName string
}

// Input is everything one evaluation knows.
type Input struct {
	Now        time.Time
	Policy     Policy
	Candidates []Candidate
	Active     ActiveIndex
	// Lookups holds, by pod UID, the exact answer for each candidate the
	// active index did not match. A missing entry means "not looked up" and
	// yields a skip, never a reap.
	Lookups  map[string]Lookup
	Evidence []labels.Identity
}

// NeedsLookup lists the candidates the active index does not match: each
// must be resolved to its own task instance before any verdict.
func NeedsLookup(candidates []Candidate, active ActiveIndex) []Candidate {
	var out []Candidate
	for _, c := range candidates {
		if len(active[c.Identity.Key]) == 0 {
			out = append(out, c)
		}
	}
	return out
}

// Decide judges every candidate.
func Decide(in Input) []Verdict {
	current := currentTryPods(in.Evidence)
	out := make([]Verdict, 0, len(in.Candidates))
	for _, c := range in.Candidates {
		out = append(out, decideOne(in, c, current))
	}
	return out
}

// DecideOne judges a single candidate; the re-check before a delete uses it
// with freshly fetched data.
func DecideOne(in Input, c Candidate) Verdict {
	return decideOne(in, c, currentTryPods(in.Evidence))
}

type tryKey struct {
	key labels.Key
	try int
}

func currentTryPods(evidence []labels.Identity) map[tryKey]bool {
	m := make(map[tryKey]bool, len(evidence))
	for _, id := range evidence {
		m[tryKey{id.Key, id.TryNumber}] = true
	}
	return m
}

func decideOne(in Input, c Candidate, podsByTry map[tryKey]bool) Verdict {
	id := c.Identity
	if tis := in.Active[id.Key]; len(tis) > 0 {
		if len(tis) > 1 {
			return verdict(c, nil, Skip, ReasonAmbiguous, "several active task instances normalize to these labels")
		}
		return judgeTI(in, c, tis[0], "", podsByTry)
	}
	l, ok := in.Lookups[c.Pod.UID]
	if !ok {
		return verdict(c, nil, Skip, ReasonUnresolved, "task instance not looked up")
	}
	switch l.Status {
	case Found:
		return judgeTI(in, c, l.TI, l.CurrentPodName, podsByTry)
	case Gone:
		if in.Now.Sub(c.Pod.Created) < in.Policy.OrphanMinAge {
			return verdict(c, nil, Skip, ReasonOrphanTooYoung, l.Detail+"; pod younger than reaper.orphanMinAge")
		}
		return verdict(c, nil, Reap, ReasonOrphan, l.Detail)
	case Ambiguous:
		return verdict(c, nil, Skip, ReasonAmbiguous, l.Detail)
	default:
		return verdict(c, nil, Skip, ReasonUnresolved, l.Detail)
	}
}

func judgeTI(in Input, c Candidate, ti airflow.TaskInstance, currentPod string, podsByTry map[tryKey]bool) Verdict {
	id := c.Identity
	if !airflow.IsFinished(ti.State) {
		if currentPod != "" && currentPod == c.Pod.Name {
			// The operator itself says the current try runs in this pod
			// (a reattach, or Airflow 3.3's durable reconnect): no label
			// outweighs that.
			return verdict(c, &ti, Keep, ReasonTIActive, "the current try's XCom pod_name names this pod")
		}
		// A retry can run inside an earlier try's pod without relabelling it,
		// and Airflow 2.0-2.9 reports a deferred TI one try lower than its pod:
		// try numbers alone never prove an active TI's pod stale. Only the
		// operator's own marks do.
		if id.TryNumber < ti.TryNumber {
			if id.AlreadyChecked {
				return verdict(c, &ti, Reap, ReasonStaleTry, "pod of an earlier try marked already_checked=True: the operator never reattaches to it")
			}
			if podsByTry[tryKey{id.Key, ti.TryNumber}] {
				return verdict(c, &ti, Reap, ReasonStaleTry, "a pod labelled with the current try exists, so the current try does not use this one")
			}
		}
		return verdict(c, &ti, Keep, ReasonTIActive, "task instance state "+stateName(ti.State))
	}
	if id.TryNumber > ti.TryNumber {
		return verdict(c, &ti, Skip, ReasonTryAhead, "pod's try is newer than the finished task instance's: a new try may be starting")
	}
	if ti.EndDate == nil {
		return verdict(c, &ti, Skip, ReasonNoEndDate, "finished task instance without end_date: the grace period cannot be measured")
	}
	if c.Pod.Created.After(*ti.EndDate) {
		return verdict(c, &ti, Skip, ReasonPodNewerThanTI, "pod created after the task instance ended: it belongs to a try the API has not shown yet")
	}
	if in.Now.Sub(*ti.EndDate) < in.Policy.TerminalGracePeriod {
		return verdict(c, &ti, Skip, ReasonTerminalGrace, "task instance ended less than reaper.terminalGracePeriod ago")
	}
	return verdict(c, &ti, Reap, ReasonTIFinished, "task instance state "+ti.State)
}

func stateName(s string) string {
	if s == "" {
		return "null"
	}
	return s
}

func verdict(c Candidate, ti *airflow.TaskInstance, v, reason, detail string) Verdict {
	id := c.Identity
	return Verdict{Pod: c.Pod, Verdict: v, Reason: reason, Detail: detail, Identity: &id, TI: ti}
}

func skip(pod Pod, id *labels.Identity, reason, detail string) Verdict {
	return Verdict{Pod: pod, Verdict: Skip, Reason: reason, Detail: detail, Identity: id}
}

func hasKey(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}

// OldestFirst orders verdicts by pod creation time, so that a capped cycle
// removes the longest-lived zombies first.
func OldestFirst(vs []Verdict) {
	sort.SliceStable(vs, func(i, j int) bool {
		if vs[i].Pod.Created.Equal(vs[j].Pod.Created) {
			return vs[i].Pod.Namespace+"/"+vs[i].Pod.Name < vs[j].Pod.Namespace+"/"+vs[j].Pod.Name
		}
		return vs[i].Pod.Created.Before(vs[j].Pod.Created)
	})
}
