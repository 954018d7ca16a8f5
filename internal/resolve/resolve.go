// Package resolve answers, for one pod, what this Airflow says about the
// pod's own task instance, with exact lookups: the cost follows the pods,
// never Airflow's backlog.
//
// A pod's labels are Airflow's ids passed through make_safe_label_value.
// Most DAG and task ids are label-safe, so the label is the id; generated
// run ids ("scheduled__2026-11-27T09:00:00+00:00") lose their colons and
// gain a hash, and are rebuilt and verified by that hash. Only labels that
// cannot be rebuilt (ids over 63 characters, odd characters) fall back to a
// listing, whose answer is cached.
//
// Something counts as gone only on a 404 about the entity asked for, with
// the DAG itself known (or the DAG itself answering 404: deleted with all it
// held), and no other answer of the evaluation contradicting it
// (Session.Reconcile).
package resolve

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
	"github.com/kpo-reaper/kpo-reaper/internal/decision"
	"github.com/kpo-reaper/kpo-reaper/internal/labels"
)

// Defaults for the Resolver's caches.
const (
	DefaultCacheSize   = 10000
	DefaultNegativeTTL = 10 * time.Minute
)

// Resolver caches what a label stands for across evaluations. It is safe
// for concurrent use.
type Resolver struct {
	Client airflow.Client
	// Now is the clock of the caches; nil is time.Now.
	Now func() time.Time
	// CacheSize bounds each cache (DAG, run and task labels); 0 is
	// DefaultCacheSize.
	CacheSize int
	// NegativeTTL is how long "no id has this label" is believed; 0 is
	// DefaultNegativeTTL.
	NegativeTTL time.Duration
	// Concurrency bounds the requests Prefetch has in flight; 0 is
	// DefaultConcurrency.
	Concurrency int

	once  sync.Once
	mu    sync.Mutex
	dags  *boundedCache[string, mapping]    // dag label
	runs  *boundedCache[[2]string, mapping] // dag id, run label
	tasks *boundedCache[[2]string, mapping] // dag id, task label
}

// mapping is a cached answer for a label: the one real id, or none.
type mapping struct {
	id     string // "" when no id has the label
	detail string // why, for a negative answer
	gone   bool   // the negative answer came from a complete run listing
}

func (r *Resolver) init() {
	r.once.Do(func() {
		n := r.CacheSize
		if n <= 0 {
			n = DefaultCacheSize
		}
		r.dags = newBoundedCache[string, mapping](n)
		r.runs = newBoundedCache[[2]string, mapping](n)
		r.tasks = newBoundedCache[[2]string, mapping](n)
	})
}

func (r *Resolver) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Resolver) negativeTTL() time.Duration {
	if r.NegativeTTL > 0 {
		return r.NegativeTTL
	}
	return DefaultNegativeTTL
}

func (r *Resolver) cached(c *boundedCache[[2]string, mapping], k [2]string, fresh bool) (mapping, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := c.get(k, r.now())
	if ok && fresh && m.id == "" {
		return mapping{}, false
	}
	return m, ok
}

func (r *Resolver) remember(c *boundedCache[[2]string, mapping], k [2]string, m mapping) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ttl := time.Duration(0)
	if m.id == "" {
		ttl = r.negativeTTL()
	}
	c.put(k, m, r.now(), ttl)
}

// Ref names where a pod's task instance is (or was), as far as resolution
// got.
type Ref struct {
	DagID string
	RunID string // "" when the run was not resolved
}

// Session is one evaluation's resolution: it shares listings between pods
// and remembers every answer, so that answers that contradict each other
// are noticed. Safe for concurrent use; it must not outlive its evaluation.
type Session struct {
	r *Resolver
	// fresh ignores cached negative answers: the re-check before a delete.
	fresh bool

	mu       sync.Mutex
	dagIDs   []string
	dagsRead bool
	runLists map[string][]string
	runTIs   map[[2]string][]airflow.TaskInstance
	// What this evaluation was told.
	runsSeen map[[2]string]bool // a run answered or listed as existing
	runsGone map[[2]string]bool // a run answered 404 about itself
	refused  int                // lookups Airflow answered 403
	troubled map[string]string  // DAG id -> an answer that makes its 404s doubtful
	listed   listed             // what Prefetch's listings showed
}

// NewSession starts an evaluation's resolution.
func (r *Resolver) NewSession() *Session {
	r.init()
	return &Session{
		r: r, runLists: map[string][]string{}, runTIs: map[[2]string][]airflow.TaskInstance{},
		runsSeen: map[[2]string]bool{}, runsGone: map[[2]string]bool{}, troubled: map[string]string{},
		listed: listed{tis: map[airflow.TIKey]airflow.TaskInstance{}, twice: map[airflow.TIKey]bool{}},
	}
}

// Resolve asks about the pod's own task instance. An error means the API
// gave no usable answer; the caller decides whether it concerns this pod
// only (airflow.RequestScoped) or the whole evaluation. A 403 (a DAG the
// API user may not read) leaves the pod unresolved.
func (s *Session) Resolve(ctx context.Context, id labels.Identity) (decision.Lookup, Ref, error) {
	l, ref, err := s.resolve(ctx, id)
	if airflow.Forbidden(err) {
		s.mu.Lock()
		s.refused++
		s.mu.Unlock()
		return decision.Lookup{Status: decision.Unresolved, Detail: fmt.Sprintf("the API user may not read this pod's task instance (a DAG hidden from it?): %v", err)}, ref, nil
	}
	return l, ref, err
}

// Forbidden counts the lookups Airflow refused with a 403.
func (s *Session) Forbidden() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

func (s *Session) resolve(ctx context.Context, id labels.Identity) (decision.Lookup, Ref, error) {
	dagID, l, err := s.dag(ctx, id.DagID)
	if err != nil || dagID == "" {
		return l, Ref{}, err
	}
	ref := Ref{DagID: dagID}
	runID, l, err := s.run(ctx, dagID, id.RunID)
	if err != nil {
		s.trouble(dagID, err.Error())
	}
	if err != nil || runID == "" {
		return l, ref, err
	}
	ref.RunID = runID
	taskID, l, err := s.task(ctx, dagID, runID, id.TaskID)
	if err != nil {
		s.trouble(dagID, err.Error())
	}
	if err != nil || taskID == "" {
		return l, ref, err
	}
	l, err = s.taskInstance(ctx, airflow.TIKey{DagID: dagID, RunID: runID, TaskID: taskID, MapIndex: id.MapIndex})
	if err != nil {
		s.trouble(dagID, err.Error())
	}
	return l, ref, err
}

func (s *Session) trouble(dagID, why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.troubled[dagID]; !ok {
		s.troubled[dagID] = why
	}
}

func (s *Session) sawRun(dagID, runID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runsSeen[[2]string{dagID, runID}] = true
}

// Reconcile turns a Gone that another answer of this evaluation contradicts
// into Contradictory: the run was seen existing, or an answer about the
// same DAG was doubtful (a 404 about the DAG, a failed listing).
func (s *Session) Reconcile(l decision.Lookup, ref Ref) decision.Lookup {
	if l.Status != decision.Gone {
		return l
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	run := [2]string{ref.DagID, ref.RunID}
	if ref.RunID != "" && s.runsSeen[run] && s.runsGone[run] {
		return decision.Lookup{Status: decision.Contradictory, Detail: l.Detail + "; but this evaluation also saw the run exist"}
	}
	if why, ok := s.troubled[ref.DagID]; ok {
		return decision.Lookup{Status: decision.Contradictory, Detail: l.Detail + "; but another answer about DAG " + ref.DagID + " was doubtful: " + why}
	}
	return l
}

func (s *Session) dag(ctx context.Context, label string) (string, decision.Lookup, error) {
	if labels.Exact(label) {
		return label, decision.Lookup{}, nil
	}
	r := s.r
	r.mu.Lock()
	m, ok := r.dags.get(label, r.now())
	r.mu.Unlock()
	if ok && (!s.fresh || m.id != "") {
		if m.id == "" {
			return "", decision.Lookup{Status: decision.Unresolved, Detail: m.detail}, nil
		}
		return m.id, decision.Lookup{}, nil
	}
	dags, err := s.listDags(ctx)
	if err != nil {
		return "", decision.Lookup{}, err
	}
	var matches []string
	for _, d := range dags {
		if labels.SafeValue(d) == label {
			matches = append(matches, d)
		}
	}
	switch len(matches) {
	case 0:
		m := mapping{detail: fmt.Sprintf("no DAG the API user can read has dag_id label %q (a DAG hidden from this user, or another Airflow's pod)", label)}
		r.mu.Lock()
		r.dags.put(label, m, r.now(), r.negativeTTL())
		r.mu.Unlock()
		return "", decision.Lookup{Status: decision.Unresolved, Detail: m.detail}, nil
	case 1:
		r.mu.Lock()
		r.dags.put(label, mapping{id: matches[0]}, r.now(), 0)
		r.mu.Unlock()
		return matches[0], decision.Lookup{}, nil
	default:
		return "", decision.Lookup{Status: decision.Ambiguous, Detail: fmt.Sprintf("DAGs %q all have dag_id label %q", matches, label)}, nil
	}
}

// listDags lists the DAG ids once per evaluation, only for labels that
// are not exact and not cached.
func (s *Session) listDags(ctx context.Context) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dagsRead {
		return s.dagIDs, nil
	}
	dags, err := s.r.Client.ListDagIDs(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing DAGs: %w", err)
	}
	s.dagIDs, s.dagsRead = dags, true
	return dags, nil
}

func (s *Session) run(ctx context.Context, dagID, label string) (string, decision.Lookup, error) {
	switch c := labels.RunIDCandidates(label); {
	case len(c) == 1 && labels.Exact(label):
		return c[0], decision.Lookup{}, nil
	case len(c) == 1 && c[0] != label:
		return c[0], decision.Lookup{}, nil
	case len(c) > 1:
		return s.pickRun(ctx, dagID, label, c)
	}
	key := [2]string{dagID, label}
	if m, ok := s.r.cached(s.r.runs, key, s.fresh); ok {
		if m.id == "" {
			return "", s.absentRun(m), nil
		}
		return m.id, decision.Lookup{}, nil
	}
	runs, err := s.listRuns(ctx, dagID)
	if err != nil {
		if airflow.NotFoundAbout(err) != "" {
			l, err := s.dagAbsent(ctx, dagID, fmt.Sprintf("listing the runs of DAG %s: %v", dagID, err))
			return "", l, err
		}
		return "", decision.Lookup{}, err
	}
	var matches []string
	for _, r := range runs {
		if labels.SafeValue(r) == label {
			matches = append(matches, r)
		}
	}
	switch len(matches) {
	case 0:
		// A complete listing without the run: the run is gone (the pod
		// exists, so its run existed before the listing), or the pod is
		// another Airflow's.
		m := mapping{gone: true, detail: fmt.Sprintf("DAG %s has no run with run_id label %q", dagID, label)}
		s.r.remember(s.r.runs, key, m)
		return "", s.absentRun(m), nil
	case 1:
		s.r.remember(s.r.runs, key, mapping{id: matches[0]})
		s.sawRun(dagID, matches[0])
		return matches[0], decision.Lookup{}, nil
	default:
		return "", decision.Lookup{Status: decision.Ambiguous, Detail: fmt.Sprintf("runs %q of DAG %s all have run_id label %q", matches, dagID, label)}, nil
	}
}

// pickRun decides between the rebuilt generated run id and the label itself
// used as a run id (candidates[0] and the last): only the literal one is
// asked about, and the answer is cached like any label mapping.
func (s *Session) pickRun(ctx context.Context, dagID, label string, candidates []string) (string, decision.Lookup, error) {
	key := [2]string{dagID, label}
	if m, ok := s.r.cached(s.r.runs, key, true); ok {
		return m.id, decision.Lookup{}, nil
	}
	exists := func(id string) (bool, decision.Lookup, error) {
		err := s.r.Client.GetDagRun(ctx, dagID, id)
		switch about := airflow.NotFoundAbout(err); {
		case err == nil:
			s.sawRun(dagID, id)
			return true, decision.Lookup{}, nil
		case about == airflow.EntityRun:
			return false, decision.Lookup{}, nil
		case about != "":
			l, err := s.dagAbsent(ctx, dagID, fmt.Sprintf("run %s/%s: %v", dagID, id, err))
			return false, l, err
		default:
			return false, decision.Lookup{}, err
		}
	}
	rebuilt, literal := candidates[0], candidates[len(candidates)-1]
	ok, l, err := exists(literal)
	if err != nil || l.Status != decision.NoAnswer {
		return "", l, err
	}
	if !ok {
		s.r.remember(s.r.runs, key, mapping{id: rebuilt})
		return rebuilt, decision.Lookup{}, nil
	}
	ok, l, err = exists(rebuilt)
	if err != nil || l.Status != decision.NoAnswer {
		return "", l, err
	}
	if ok {
		return "", decision.Lookup{Status: decision.Ambiguous, Detail: fmt.Sprintf("runs %q and %q of DAG %s both have run_id label %q", rebuilt, literal, dagID, label)}, nil
	}
	s.r.remember(s.r.runs, key, mapping{id: literal})
	return literal, decision.Lookup{}, nil
}

func (s *Session) absentRun(m mapping) decision.Lookup {
	if m.gone {
		return decision.Lookup{Status: decision.Gone, Detail: m.detail}
	}
	return decision.Lookup{Status: decision.Unresolved, Detail: m.detail}
}

// listRuns reads a DAG's run ids once per evaluation. Only run labels that
// cannot be rebuilt (custom run ids with odd characters) need it.
func (s *Session) listRuns(ctx context.Context, dagID string) ([]string, error) {
	s.mu.Lock()
	runs, ok := s.runLists[dagID]
	s.mu.Unlock()
	if ok {
		return runs, nil
	}
	runs, err := s.r.Client.ListRunIDs(ctx, dagID)
	if err != nil {
		return nil, fmt.Errorf("listing runs of DAG %s: %w", dagID, err)
	}
	s.mu.Lock()
	s.runLists[dagID] = runs
	s.mu.Unlock()
	return runs, nil
}

func (s *Session) task(ctx context.Context, dagID, runID, label string) (string, decision.Lookup, error) {
	if labels.Exact(label) {
		return label, decision.Lookup{}, nil
	}
	key := [2]string{dagID, label}
	if m, ok := s.r.cached(s.r.tasks, key, s.fresh); ok && m.id != "" {
		return m.id, decision.Lookup{}, nil
	}
	// Task ids are the DAG's, so the run's task instances name them.
	tis, err := s.listRunTIs(ctx, dagID, runID)
	if err != nil {
		switch airflow.NotFoundAbout(err) {
		case airflow.EntityRun:
			l, err := s.confirmAbsent(ctx, dagID, runID, airflow.EntityRun, "listing the run's task instances")
			return "", l, err
		case "":
			return "", decision.Lookup{}, err
		default:
			l, err := s.dagAbsent(ctx, dagID, fmt.Sprintf("listing the task instances of %s/%s: %v", dagID, runID, err))
			return "", l, err
		}
	}
	s.sawRun(dagID, runID)
	var matches []string
	seen := map[string]bool{}
	for _, ti := range tis {
		if labels.SafeValue(ti.TaskID) == label && !seen[ti.TaskID] {
			seen[ti.TaskID] = true
			matches = append(matches, ti.TaskID)
		}
	}
	switch len(matches) {
	case 0:
		l, err := s.confirmAbsent(ctx, dagID, runID, airflow.EntityTaskInstance, fmt.Sprintf("run %s/%s has no task instance with task_id label %q", dagID, runID, label))
		return "", l, err
	case 1:
		s.r.remember(s.r.tasks, key, mapping{id: matches[0]})
		return matches[0], decision.Lookup{}, nil
	}
	return "", decision.Lookup{Status: decision.Ambiguous, Detail: fmt.Sprintf("tasks %q of %s/%s all have task_id label %q", matches, dagID, runID, label)}, nil
}

func (s *Session) listRunTIs(ctx context.Context, dagID, runID string) ([]airflow.TaskInstance, error) {
	key := [2]string{dagID, runID}
	s.mu.Lock()
	tis, ok := s.runTIs[key]
	s.mu.Unlock()
	if ok {
		return tis, nil
	}
	tis, err := s.r.Client.ListRunTaskInstances(ctx, dagID, runID)
	if err != nil {
		return nil, fmt.Errorf("listing task instances of %s/%s: %w", dagID, runID, err)
	}
	s.mu.Lock()
	s.runTIs[key] = tis
	s.mu.Unlock()
	return tis, nil
}

func (s *Session) taskInstance(ctx context.Context, k airflow.TIKey) (decision.Lookup, error) {
	if ti, ok := s.fromListing(k); ok {
		return decision.Lookup{Status: decision.Found, TI: ti}, nil
	}
	ti, err := s.r.Client.GetTaskInstance(ctx, k)
	if err == nil {
		s.sawRun(k.DagID, k.RunID)
		return decision.Lookup{Status: decision.Found, TI: ti}, nil
	}
	switch about := airflow.NotFoundAbout(err); about {
	case "":
		return decision.Lookup{}, err
	case airflow.EntityDAG:
		return s.dagAbsent(ctx, k.DagID, fmt.Sprintf("task instance %s: %v", k, err))
	case airflow.EntityTaskInstance, airflow.EntityRun:
		return s.confirmAbsent(ctx, k.DagID, k.RunID, about, fmt.Sprintf("task instance %s not found", k))
	default:
		// A 404 in other words (a mapped task asked for without its map
		// index) proves nothing about this pod's task instance.
		return decision.Lookup{Status: decision.Unresolved, Detail: fmt.Sprintf("task instance %s: %v", k, err)}, nil
	}
}

// confirmAbsent decides what a 404 about a run or a task instance means,
// by asking about the run and then the DAG: gone only when the 404 is
// about what was asked and the DAG itself is known.
func (s *Session) confirmAbsent(ctx context.Context, dagID, runID string, about airflow.Entity, what string) (decision.Lookup, error) {
	err := s.r.Client.GetDagRun(ctx, dagID, runID)
	switch {
	case err == nil:
		s.sawRun(dagID, runID)
		if about == airflow.EntityRun {
			return decision.Lookup{Status: decision.Contradictory, Detail: what + ": 404 about the run, yet the run exists"}, nil
		}
		return decision.Lookup{Status: decision.Gone, Detail: what + "; run " + dagID + "/" + runID + " exists without it"}, nil
	case airflow.NotFoundAbout(err) == airflow.EntityRun:
		s.mu.Lock()
		s.runsGone[[2]string{dagID, runID}] = true
		s.mu.Unlock()
	case airflow.NotFoundAbout(err) == airflow.EntityDAG:
		return s.dagAbsent(ctx, dagID, fmt.Sprintf("%s; run %s/%s: %v", what, dagID, runID, err))
	case airflow.NotFoundAbout(err) != "":
		return decision.Lookup{Status: decision.Unresolved, Detail: fmt.Sprintf("%s; run %s/%s: %v", what, dagID, runID, err)}, nil
	default:
		return decision.Lookup{}, fmt.Errorf("%s; asking for run %s/%s: %w", what, dagID, runID, err)
	}
	if err := s.r.Client.GetDag(ctx, dagID); err != nil {
		switch airflow.NotFoundAbout(err) {
		case airflow.EntityDAG:
			return dagGone(dagID), nil
		case "":
			return decision.Lookup{}, fmt.Errorf("%s; asking for DAG %s: %w", what, dagID, err)
		}
		return decision.Lookup{Status: decision.DagUnavailable, Detail: fmt.Sprintf("%s; run %s/%s not found, and DAG %s: %v", what, dagID, runID, dagID, err)}, nil
	}
	return decision.Lookup{Status: decision.Gone, Detail: fmt.Sprintf("DAG run %s/%s no longer exists in this Airflow (the DAG does)", dagID, runID)}, nil
}

// dagAbsent decides what an answer about the DAG itself (a 404 about it
// to a question about a run or a task instance) means, by asking for the
// DAG: one this Airflow does not have at all was deleted with its runs and
// task instances, so the pod is an orphan; one it has (missing from the
// DAG bag after an import error) says nothing about the run, and unavailable
// is what the pod's lookup says, in the words of what.
func (s *Session) dagAbsent(ctx context.Context, dagID, what string) (decision.Lookup, error) {
	err := s.r.Client.GetDag(ctx, dagID)
	switch about := airflow.NotFoundAbout(err); {
	case about == airflow.EntityDAG:
		return dagGone(dagID), nil
	case err != nil && about == "":
		return decision.Lookup{}, fmt.Errorf("%s; asking for DAG %s: %w", what, dagID, err)
	}
	return decision.Lookup{Status: decision.DagUnavailable, Detail: what}, nil
}

func dagGone(dagID string) decision.Lookup {
	return decision.Lookup{Status: decision.Gone, Detail: fmt.Sprintf("DAG %s does not exist in this Airflow (deleted, with its runs and task instances)", dagID)}
}

// Recheck asks again right before a delete, past every per-evaluation
// listing and every cached negative answer: a known task instance costs
// one GET.
func (r *Resolver) Recheck(ctx context.Context, id labels.Identity) (decision.Lookup, error) {
	s := r.NewSession()
	s.fresh = true
	l, ref, err := s.Resolve(ctx, id)
	if err != nil {
		return l, err
	}
	return s.Reconcile(l, ref), nil
}

// RecheckWithPodName is Recheck that also reads which pod the task
// instance's current try says it uses (its XCom pod_name), for the
// re-check of an earlier try's pod. No XCom yet leaves CurrentPodName
// empty; an API that can never tell says so in PodNameUnknown.
func (r *Resolver) RecheckWithPodName(ctx context.Context, id labels.Identity) (decision.Lookup, error) {
	l, err := r.Recheck(ctx, id)
	if err != nil || l.Status != decision.Found {
		return l, err
	}
	name, err := r.Client.PodNameXCom(ctx, l.TI.TIKey)
	switch {
	case err == nil:
		l.CurrentPodName = name
	case errors.Is(err, airflow.ErrNotFound):
	case errors.Is(err, airflow.ErrUnsupported):
		l.PodNameUnknown = err.Error()
	case errors.Is(err, airflow.ErrNoPodName):
		l.PodNameUnusable = err.Error()
	default:
		return l, fmt.Errorf("reading XCom pod_name of %s: %w", l.TI.TIKey, err)
	}
	return l, nil
}
