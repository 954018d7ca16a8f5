package airflowtest

import (
	"context"
	"maps"
	"slices"
	"sync"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
)

// Fake is an in-memory airflow.Client for the tests of the packages that
// use one (resolve, reaper): it answers from its fields with Airflow's
// definitive 404s and counts the calls per method. A DAG or run is known
// when it is listed or when a task instance names it. Set the fields
// before use; change them under Do while a cycle may be running.
type Fake struct {
	// DAGs are DAG ids the API lists besides those of TIs, in order and
	// with repeats kept (two DAGs may truly share a label).
	DAGs []string
	// Runs are run ids per DAG besides those of TIs.
	Runs map[string][]string
	TIs  []airflow.TaskInstance
	// XComs are the pod_name XCom values as the API renders them: a string
	// is read like the clients read it, anything else (nil, a number, a
	// map) is a value that is no string.
	XComs map[airflow.TIKey]any

	// Err fails every call but the version's.
	Err error
	// GetErr fails GetTaskInstance from its GetErrFrom'th call on (1-based,
	// 0 is every call).
	GetErr     error
	GetErrFrom int
	// GetErrTask fails GetTaskInstance for this task id only, with GetErr.
	GetErrTask string
	// XComErr answers PodNameXCom when XComs holds no value for the key.
	XComErr error
	// NotInBag are DAGs missing from Airflow 3's DAG bag: a run's listing
	// answers 404 about the DAG while single GETs still work.
	NotInBag map[string]bool
	// RunGet404 are runs whose GET answers 404 although they are listed.
	RunGet404 map[[2]string]bool
	// OnGet runs right before every GetTaskInstance, outside the lock: a
	// test changes Airflow there between the lookups and the re-check.
	OnGet func()
	// Listed makes ListTaskInstances show the rows of the asked runs it
	// returns true for; nil lists nothing, so every lookup stays the exact
	// one a test steers. ListErr fails every listing.
	Listed  func(airflow.TaskInstance) bool
	ListErr error
	asked   [][]airflow.TIKey

	mu    sync.Mutex
	calls map[string]int
}

// Do runs f with the fake locked, for changes while a cycle may run.
func (f *Fake) Do(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

// Calls is how often each method was called, by method name.
func (f *Fake) Calls() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.calls)
}

// Total is the number of calls of every method.
func (f *Fake) Total() int {
	n := 0
	for _, c := range f.Calls() {
		n += c
	}
	return n
}

// ResetCalls forgets the calls counted so far.
func (f *Fake) ResetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = nil
}

// Set gives every task instance of task and mapIndex the state.
func (f *Fake) Set(task string, mapIndex int, state string) {
	f.Do(func() {
		for i := range f.TIs {
			if f.TIs[i].TaskID == task && f.TIs[i].MapIndex == mapIndex {
				f.TIs[i].State = state
			}
		}
	})
}

// call counts a call of method; the caller holds the lock.
func (f *Fake) call(method string) {
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[method]++
}

func (f *Fake) dagIDs() []string {
	out := slices.Clone(f.DAGs)
	for _, ti := range f.TIs {
		if !slices.Contains(out, ti.DagID) {
			out = append(out, ti.DagID)
		}
	}
	return out
}

func (f *Fake) runIDs(dagID string) []string {
	out := slices.Clone(f.Runs[dagID])
	for _, ti := range f.TIs {
		if ti.DagID == dagID && !slices.Contains(out, ti.RunID) {
			out = append(out, ti.RunID)
		}
	}
	return out
}

func (*Fake) APIVersion() string                            { return "v2" }
func (*Fake) ServerVersion(context.Context) (string, error) { return "3.2.1", nil }
func (*Fake) ProbeTaskInstances(context.Context) error      { return nil }

func (f *Fake) ListDagIDs(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("ListDagIDs")
	if f.Err != nil {
		return nil, f.Err
	}
	return f.dagIDs(), nil
}

func (f *Fake) GetDag(_ context.Context, dagID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dagCall("GetDag", dagID)
}

// dagCall records a call about dagID (under f.mu) and answers what the
// fake says before any lookup in that DAG: the injected error, or a 404
// about a DAG it does not know.
func (f *Fake) dagCall(name, dagID string) error {
	f.call(name)
	if f.Err != nil {
		return f.Err
	}
	if !slices.Contains(f.dagIDs(), dagID) {
		return &airflow.NotFoundError{About: airflow.EntityDAG, What: dagID}
	}
	return nil
}

func (f *Fake) ListRunIDs(_ context.Context, dagID string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.dagCall("ListRunIDs", dagID); err != nil {
		return nil, err
	}
	return f.runIDs(dagID), nil
}

func (f *Fake) GetDagRun(_ context.Context, dagID, runID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.dagCall("GetDagRun", dagID); err != nil {
		return err
	}
	if !slices.Contains(f.runIDs(dagID), runID) || f.RunGet404[[2]string{dagID, runID}] {
		return &airflow.NotFoundError{About: airflow.EntityRun, What: dagID + "/" + runID}
	}
	return nil
}

// Asked is the task instances each ListTaskInstances call asked for.
func (f *Fake) Asked() [][]airflow.TIKey {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.asked)
}

func (f *Fake) ListTaskInstances(_ context.Context, dagID string, keys []airflow.TIKey) ([]airflow.TaskInstance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("ListTaskInstances")
	f.asked = append(f.asked, keys)
	if f.ListErr != nil {
		return nil, f.ListErr
	}
	if f.Listed == nil {
		return nil, nil
	}
	runs := map[string]bool{}
	for _, k := range keys {
		runs[k.RunID] = true
	}
	var out []airflow.TaskInstance
	for _, ti := range f.TIs {
		if ti.DagID == dagID && runs[ti.RunID] && f.Listed(ti) {
			out = append(out, ti)
		}
	}
	return out, nil
}

func (f *Fake) ListRunTaskInstances(_ context.Context, dagID, runID string) ([]airflow.TaskInstance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("ListRunTaskInstances")
	if f.Err != nil {
		return nil, f.Err
	}
	if f.NotInBag[dagID] || !slices.Contains(f.dagIDs(), dagID) {
		return nil, &airflow.NotFoundError{About: airflow.EntityDAG, What: dagID}
	}
	if !slices.Contains(f.runIDs(dagID), runID) {
		return nil, &airflow.NotFoundError{About: airflow.EntityRun, What: dagID + "/" + runID}
	}
	var out []airflow.TaskInstance
	for _, ti := range f.TIs {
		if ti.DagID == dagID && ti.RunID == runID {
			out = append(out, ti)
		}
	}
	return out, nil
}

func (f *Fake) GetTaskInstance(_ context.Context, k airflow.TIKey) (airflow.TaskInstance, error) {
	f.mu.Lock()
	onGet := f.OnGet
	f.mu.Unlock()
	if onGet != nil {
		onGet()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("GetTaskInstance")
	if f.Err != nil {
		return airflow.TaskInstance{}, f.Err
	}
	if f.GetErr != nil && f.calls["GetTaskInstance"] >= f.GetErrFrom && (f.GetErrTask == "" || f.GetErrTask == k.TaskID) {
		return airflow.TaskInstance{}, f.GetErr
	}
	for _, ti := range f.TIs {
		if ti.TIKey == k {
			return ti, nil
		}
	}
	return airflow.TaskInstance{}, &airflow.NotFoundError{About: airflow.EntityTaskInstance, What: k.String()}
}

func (f *Fake) PodNameXCom(_ context.Context, k airflow.TIKey) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("PodNameXCom")
	if f.Err != nil {
		return "", f.Err
	}
	if v, ok := f.XComs[k]; ok {
		s, isString := v.(string)
		if !isString {
			return airflow.PodNameOf(k, "", airflow.NoPodName("the value is a JSON %T, not a string", v))
		}
		return airflow.PodNameOf(k, s, nil)
	}
	if f.XComErr != nil {
		return "", f.XComErr
	}
	return "", &airflow.NotFoundError{About: airflow.EntityXCom, What: k.String()}
}

var _ airflow.Client = (*Fake)(nil)
