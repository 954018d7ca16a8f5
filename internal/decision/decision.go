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

// Verdict is what to do about a pod. The values are a public contract
// (plan output, logs, metrics).
type Verdict string

// Verdicts.
const (
	Reap Verdict = "reap" // a proven zombie
	Keep Verdict = "keep" // its task instance is active
	Skip Verdict = "skip" // not enough evidence either way
)

// Reason says why a pod got its verdict.
type Reason string

// Reason codes. They are a public contract (README, plan output, logs,
// metrics, the zombie-reason annotation): add new ones, never rename.
const (
	ReasonNotKPO           Reason = "not-kpo"
	ReasonExecutorWorker   Reason = "executor-worker"
	ReasonOwned            Reason = "owned"
	ReasonTerminating      Reason = "terminating"
	ReasonUnidentifiable   Reason = "unidentifiable"
	ReasonTooYoung         Reason = "too-young"
	ReasonCompleted        Reason = "completed"
	ReasonTIActive         Reason = "ti-active"
	ReasonTIFinished       Reason = "ti-finished"
	ReasonStaleTry         Reason = "stale-try"
	ReasonOrphan           Reason = "orphan"
	ReasonOrphanTooYoung   Reason = "orphan-too-young"
	ReasonTerminalGrace    Reason = "terminal-grace"
	ReasonTryAhead         Reason = "try-ahead"
	ReasonPodNewerThanTI   Reason = "pod-newer-than-ti"
	ReasonUnresolved       Reason = "unresolved"
	ReasonAmbiguous        Reason = "ambiguous"
	ReasonChangedOnRecheck Reason = "changed-on-recheck"
	ReasonPodNameUnknown   Reason = "pod-name-unknown"
	ReasonOrphanNotEnabled Reason = "orphan-not-enabled"
	ReasonDagUnavailable   Reason = "dag-unavailable"
	ReasonContradictory    Reason = "contradictory"
	ReasonLookupFailed     Reason = "lookup-failed"
	// ReasonPodNameUnusable: the current try's XCom pod_name, read by the
	// re-check before a stale-try delete, holds no pod name (an
	// object-storage reference, null, a number, an object).
	ReasonPodNameUnusable Reason = "pod-name-unusable"
	// ReasonFinishedNoEndDate: a finished task instance without end_date
	// (skipped by dagrun_timeout, removed from a shrunken map): reaped once
	// the pod has been seen a zombie for reaper.terminalGracePeriod.
	ReasonFinishedNoEndDate Reason = "finished-no-end-date"
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
	// ReapOrphans allows deleting pods whose DAG run or task instance this
	// Airflow does not have. Off by default: such a pod may be another
	// Airflow's that shares the watched namespaces and a DAG id.
	ReapOrphans bool
}

// Candidate is a pod that passed every label-only check and must be judged
// against Airflow.
type Candidate struct {
	Pod      Pod
	Identity labels.Identity
}

// Decision is the outcome for one pod.
type Decision struct {
	Pod      Pod
	Verdict  Verdict
	Reason   Reason
	Detail   string
	Identity *labels.Identity
	// TI is the task instance the verdict rests on, when one was found.
	TI *airflow.TaskInstance
	// Grace, for a reap, is how long the pod must have been seen a zombie
	// (since its first recorded sighting) before it is deleted: the clock
	// of a finished task instance that has no end_date.
	Grace time.Duration
}

// EvidencePod is a KPO pod that may prove that another pod of the same task
// instance belongs to an earlier try: see judgeTI for when it counts.
type EvidencePod struct {
	labels.Identity
	Namespace string
	Name      string
	Created   time.Time
}

// Screen applies the rows that need no Airflow: it returns the skipped pods
// with their reasons, the candidates, and every KPO pod that carries
// readable labels and is not terminating (young and completed ones
// included), which stale-try may use as evidence of the current try's pod.
func Screen(pods []Pod, now time.Time, p Policy) (skipped []Decision, candidates []Candidate, evidence []EvidencePod) {
	// Nearly every pod is evidence and a candidate: sized once, not grown.
	candidates = make([]Candidate, 0, len(pods))
	evidence = make([]EvidencePod, 0, len(pods))
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
		evidence = append(evidence, EvidencePod{Identity: id, Namespace: pod.Namespace, Name: pod.Name, Created: pod.Created})
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

// LookupStatus is what an exact lookup of a pod's own task instance found.
type LookupStatus int

const (
	// NoAnswer: nothing was learned yet (the zero value); it never proves
	// anything, so the pod is skipped.
	NoAnswer LookupStatus = iota
	// Found: the TI exists; Lookup.TI holds it.
	Found
	// Gone: the API answered definitively that the TI does not exist (its
	// DAG run or the TI itself is absent from a readable DAG).
	Gone
	// Unresolved: the labels tie to nothing this Airflow shows.
	Unresolved
	// Ambiguous: more than one real id normalizes to the pod's labels.
	Ambiguous
	// DagUnavailable: the API answered about the DAG itself (unknown, or
	// missing from Airflow 3's DAG bag after an import error), which says
	// nothing about the run or the task instance.
	DagUnavailable
	// Contradictory: answers of the same evaluation contradict each other
	// (a run seen, then answered 404).
	Contradictory
	// Failed: this pod's lookups failed (a timeout, Airflow's 5xx, an
	// inconsistent listing); the other pods are still judged.
	Failed
)

// Lookup is the exact answer about one pod's own task instance.
type Lookup struct {
	Status LookupStatus
	TI     airflow.TaskInstance
	Detail string
	// CurrentPodName is the XCom pod_name the TI's current try pushed, when
	// it was read (the re-check before a stale-try delete reads it): the
	// name of the pod that try created or reattached to.
	CurrentPodName string
	// PodNameUnknown says why this Airflow's API can never tell which pod
	// the current try uses (Airflow before 2.7 and a mapped task): a
	// stale-try verdict then keeps the pod.
	PodNameUnknown string
	// PodNameUnusable says why the XCom pod_name read holds no pod name: a
	// stale-try verdict then keeps the pod.
	PodNameUnusable string
}

// Input is everything one evaluation knows.
type Input struct {
	Now        time.Time
	Policy     Policy
	Candidates []Candidate
	// Lookups holds, by pod UID, the exact answer about each candidate's
	// own task instance. A missing entry means "not looked up" and yields a
	// skip, never a reap.
	Lookups  map[string]Lookup
	Evidence []EvidencePod
}

// Decide judges every candidate.
func Decide(in Input) []Decision {
	current := currentTryPods(in.Evidence)
	out := make([]Decision, 0, len(in.Candidates))
	for _, c := range in.Candidates {
		out = append(out, decideOne(in, c, current))
	}
	return out
}

// DecideOne judges a single candidate; the re-check before a delete uses it
// with freshly fetched data.
func DecideOne(in Input, c Candidate) Decision {
	return decideOne(in, c, currentTryPods(in.Evidence))
}

type tryKey struct {
	key labels.Key
	try int
}

func currentTryPods(evidence []EvidencePod) map[tryKey][]EvidencePod {
	m := make(map[tryKey][]EvidencePod, len(evidence))
	for _, e := range evidence {
		k := tryKey{e.Key, e.TryNumber}
		m[k] = append(m[k], e)
	}
	return m
}

// provesNewerTry says whether e shows that the current try (ti) runs in a
// pod other than p. It counts only when nothing else explains e: a pod in
// another namespace may be another Airflow's; an already_checked pod is a
// finished try's, possibly of a deleted and re-triggered run with the same
// run_id; a pod created before p or before the current try started cannot
// have been made by that try.
func provesNewerTry(e EvidencePod, p Pod, ti airflow.TaskInstance) bool {
	return e.Namespace == p.Namespace &&
		!e.AlreadyChecked &&
		e.Created.After(p.Created) &&
		ti.StartDate != nil && !e.Created.Before(*ti.StartDate)
}

func decideOne(in Input, c Candidate, podsByTry map[tryKey][]EvidencePod) Decision {
	l, ok := in.Lookups[c.Pod.UID]
	if !ok || l.Status == NoAnswer {
		return verdict(c, nil, Skip, ReasonUnresolved, "task instance not looked up")
	}
	switch l.Status {
	case Found:
		return judgeTI(c, l, podsByTry, in)
	case Gone:
		if !in.Policy.ReapOrphans {
			return verdict(c, nil, Skip, ReasonOrphanNotEnabled, l.Detail+"; reaper.reapOrphans is off: the pod may be another Airflow's")
		}
		if in.Now.Sub(c.Pod.Created) < in.Policy.OrphanMinAge {
			return verdict(c, nil, Skip, ReasonOrphanTooYoung, l.Detail+"; pod younger than reaper.orphanMinAge")
		}
		return verdict(c, nil, Reap, ReasonOrphan, l.Detail)
	case Ambiguous:
		return verdict(c, nil, Skip, ReasonAmbiguous, l.Detail)
	case DagUnavailable:
		return verdict(c, nil, Skip, ReasonDagUnavailable, l.Detail)
	case Contradictory:
		return verdict(c, nil, Skip, ReasonContradictory, l.Detail)
	case Failed:
		return verdict(c, nil, Skip, ReasonLookupFailed, l.Detail)
	default:
		return verdict(c, nil, Skip, ReasonUnresolved, l.Detail)
	}
}

func judgeTI(c Candidate, l Lookup, podsByTry map[tryKey][]EvidencePod, in Input) Decision {
	id, ti, currentPod := c.Identity, l.TI, l.CurrentPodName
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
			if v := staleTry(c, ti, podsByTry); v != nil {
				switch {
				case currentPod == "" && l.PodNameUnknown != "":
					return verdict(c, &ti, Skip, ReasonPodNameUnknown, "stale try, but this Airflow's API cannot tell which pod the current try uses: "+l.PodNameUnknown)
				case currentPod == "" && l.PodNameUnusable != "":
					return verdict(c, &ti, Skip, ReasonPodNameUnusable, "stale try, but the current try's XCom pod_name cannot be read as a pod name: "+l.PodNameUnusable)
				}
				return *v
			}
		}
		return verdict(c, &ti, Keep, ReasonTIActive, "task instance state "+StateName(ti.State))
	}
	return judgeFinished(in, c, ti)
}

// staleTry returns the reap verdict when the operator's own marks prove
// that the current try does not use this earlier try's pod.
func staleTry(c Candidate, ti airflow.TaskInstance, podsByTry map[tryKey][]EvidencePod) *Decision {
	if c.Identity.AlreadyChecked {
		v := verdict(c, &ti, Reap, ReasonStaleTry, "pod of an earlier try marked already_checked=True: the operator never reattaches to it")
		return &v
	}
	for _, e := range podsByTry[tryKey{c.Identity.Key, ti.TryNumber}] {
		if provesNewerTry(e, c.Pod, ti) {
			v := verdict(c, &ti, Reap, ReasonStaleTry, "pod "+e.Namespace+"/"+e.Name+" of the current try was created after this one and after the try started, so the current try does not use this one")
			return &v
		}
	}
	return nil
}

func judgeFinished(in Input, c Candidate, ti airflow.TaskInstance) Decision {
	id := c.Identity
	if id.TryNumber > ti.TryNumber {
		return verdict(c, &ti, Skip, ReasonTryAhead, "pod's try is newer than the finished task instance's: a new try may be starting")
	}
	if ti.EndDate == nil {
		// Airflow finishes unfinished tries this way (dagrun_timeout skips
		// them, a shrunken map removes them) and a running pod goes on: the
		// grace period runs from the first recorded sighting instead.
		v := verdict(c, &ti, Reap, ReasonFinishedNoEndDate, "task instance state "+StateName(ti.State)+" without end_date: reaped once seen finished for reaper.terminalGracePeriod")
		v.Grace = in.Policy.TerminalGracePeriod
		return v
	}
	if c.Pod.Created.After(*ti.EndDate) {
		return verdict(c, &ti, Skip, ReasonPodNewerThanTI, "pod created after the task instance ended: it belongs to a try the API has not shown yet")
	}
	if in.Now.Sub(*ti.EndDate) < in.Policy.TerminalGracePeriod {
		return verdict(c, &ti, Skip, ReasonTerminalGrace, "task instance ended less than reaper.terminalGracePeriod ago")
	}
	return verdict(c, &ti, Reap, ReasonTIFinished, "task instance state "+StateName(ti.State))
}

// StateName renders a task instance state for people (plan, logs,
// events, details): the API's null ("no status") reads "null".
func StateName(state string) string {
	if state == "" {
		return "null"
	}
	return state
}

func verdict(c Candidate, ti *airflow.TaskInstance, v Verdict, reason Reason, detail string) Decision {
	id := c.Identity
	return Decision{Pod: c.Pod, Verdict: v, Reason: reason, Detail: detail, Identity: &id, TI: ti}
}

func skip(pod Pod, id *labels.Identity, reason Reason, detail string) Decision {
	return Decision{Pod: pod, Verdict: Skip, Reason: reason, Detail: detail, Identity: id}
}

func hasKey(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}

// Reconfirm compares a reap verdict with the one the re-check before its
// delete reached: anything but the same reap keeps the pod.
func Reconfirm(before, again Decision) Decision {
	if again.Verdict == Reap && again.Reason == before.Reason {
		again.Pod = before.Pod
		return again
	}
	if again.Reason == ReasonPodNameUnknown || again.Reason == ReasonPodNameUnusable {
		// Only a re-check reads the XCom: its own reason says more.
		return again
	}
	v := before
	v.Verdict, v.Reason = Skip, ReasonChangedOnRecheck
	v.Detail = "re-check before delete found " + string(again.Verdict) + "/" + string(again.Reason) + ": " + again.Detail
	if again.TI != nil {
		v.TI = again.TI
	}
	return v
}

// OldestFirst orders verdicts by pod creation time, so that a capped cycle
// removes the longest-lived zombies first.
func OldestFirst(vs []Decision) {
	sort.SliceStable(vs, func(i, j int) bool {
		if vs[i].Pod.Created.Equal(vs[j].Pod.Created) {
			return vs[i].Pod.Namespace+"/"+vs[i].Pod.Name < vs[j].Pod.Namespace+"/"+vs[j].Pod.Name
		}
		return vs[i].Pod.Created.Before(vs[j].Pod.Created)
	})
}
