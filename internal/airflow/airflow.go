// Package airflow holds what the reaper needs to know about Airflow task
// instances, independent of the REST API version that delivered it. The v1
// (Airflow 2.x) and v2 (Airflow 3.x) clients live in sub-packages and both
// satisfy Client.
package airflow

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// TIKey identifies a task instance across tries. Airflow 2 has no TI id and
// Airflow 3 changes the id on every try, so this tuple is the only stable key.
type TIKey struct {
	DagID    string
	RunID    string
	TaskID   string
	MapIndex int // -1 for an unmapped task
}

func (k TIKey) String() string {
	if k.MapIndex >= 0 {
		return fmt.Sprintf("%s/%s/%s[%d]", k.DagID, k.RunID, k.TaskID, k.MapIndex)
	}
	return fmt.Sprintf("%s/%s/%s", k.DagID, k.RunID, k.TaskID)
}

// TaskInstance is the part of a task instance the decisions use.
type TaskInstance struct {
	TIKey
	TryNumber int
	// State is the API's state string; "" stands for null ("no status"),
	// which is an unfinished state. Unknown strings are kept verbatim so the
	// decision can treat them as unfinished.
	State     string
	StartDate *time.Time
	EndDate   *time.Time
	Operator  string
}

// Client is what a cycle asks Airflow. Every method either returns a complete
// answer or an error: a partial listing is an error, never a shorter slice.
type Client interface {
	// APIVersion is "v1" or "v2".
	APIVersion() string
	// ServerVersion asks the server for its Airflow version.
	ServerVersion(ctx context.Context) (string, error)
	// ProbeTaskInstances reads one task instance of any DAG (one page of
	// one row), to check at start-up that the API user may read them.
	ProbeTaskInstances(ctx context.Context) error
	// ListDagIDs lists the ids of every DAG the API user can read, including
	// paused DAGs and DAGs no longer in the DAG folder.
	ListDagIDs(ctx context.Context) ([]string, error)
	// ListRunIDs lists the run ids of a DAG. ErrNotFound when the DAG does
	// not exist.
	ListRunIDs(ctx context.Context, dagID string) ([]string, error)
	// GetDag asks whether the DAG exists and the API user can read it:
	// nil when it does, ErrNotFound (about EntityDAG) when it does not.
	GetDag(ctx context.Context, dagID string) error
	// GetDagRun asks whether the DAG run exists: nil when it does,
	// ErrNotFound (about EntityRun, or EntityDAG) when it does not.
	GetDagRun(ctx context.Context, dagID, runID string) error
	// ListRunTaskInstances lists every task instance of one DAG run, mapped
	// ones included. ErrNotFound when the run does not exist.
	ListRunTaskInstances(ctx context.Context, dagID, runID string) ([]TaskInstance, error)
	// GetTaskInstance fetches one task instance. ErrNotFound when the API
	// answered a well-formed 404 for it.
	GetTaskInstance(ctx context.Context, key TIKey) (TaskInstance, error)
	// ListTaskInstances reads the task instances of keys, all of DAG dagID,
	// in as few requests as this API version allows: one listing per run,
	// or one for several runs of the DAG where the version lists them
	// together, each reading at most RowBudget(its keys) rows. The answer
	// narrows, it never proves absence: it may lack some keys (a listing
	// cut at its budget, rows that moved between pages, a run answered
	// 404) and hold task instances nobody asked about. On an error it
	// returns the rows read before it.
	ListTaskInstances(ctx context.Context, dagID string, keys []TIKey) ([]TaskInstance, error)
	// PodNameXCom reads the XCom "pod_name" that KubernetesPodOperator pushes
	// for the current try right after it creates or reattaches to its pod.
	// ErrNotFound when the current try pushed none (yet).
	PodNameXCom(ctx context.Context, key TIKey) (string, error)
}

// ConfirmEmpty finishes a listing of what is under a DAG or a run (its
// runs, its task instances): an empty list is an answer only once exists,
// the exact lookup of that DAG or run, finds it. Airflow 2 lists what is
// under an unknown DAG or run as empty instead of answering 404; the
// lookup's 404 says which of them is missing in every version.
func ConfirmEmpty[T any](list []T, err error, exists func() error) ([]T, error) {
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		if err := exists(); err != nil {
			return nil, err
		}
	}
	return list, nil
}

// ErrNotFound is returned only for a definitive answer: an authorized call
// that the API itself (a JSON error body, not a proxy's HTML page) answered
// with 404. Anything else that fails is some other error, and a cycle that
// meets one fails closed.
var ErrNotFound = errors.New("not found in Airflow")

// ErrUnsupported is wrapped when this Airflow version's API cannot answer
// the question at all (Airflow before 2.7 cannot read one map index's
// XCom): the answer is unknown for good, so the caller keeps what depends
// on it instead of failing every cycle.
var ErrUnsupported = errors.New("this Airflow version's API cannot answer it")

// FinishedStates are the terminal task-instance states of Airflow 2 and 3.
var FinishedStates = map[string]bool{
	"success":         true,
	"failed":          true,
	"skipped":         true,
	"upstream_failed": true,
	"removed":         true,
}

// IsFinished reports whether a state is terminal. Null, every intermediate
// state and any state this version does not know are unfinished, so that an
// unknown state can never make a pod look like a zombie.
func IsFinished(state string) bool { return FinishedStates[state] }

// Paging says how a client pages its listings.
type Paging struct {
	// PageSize is the limit asked per page; 0 is DefaultPageSize. Servers
	// may cap it, so clients advance by the rows returned.
	PageSize int
	// Cursor pages task-instance lists by keyset cursor (Airflow 3.2.2+)
	// instead of offsets. Only the v2 client reads it.
	Cursor bool
	// Batch is the batch listing of task instances an Airflow 2 server
	// has (from its version); only the v1 client reads it.
	Batch Batch
}

// Batch says what POST /api/v1/dags/~/dagRuns/~/taskInstances/list can do
// on an Airflow 2 server.
type Batch int

const (
	// BatchNone: no run or task filter (before 2.7.1, or unknown): the
	// client lists run by run.
	BatchNone Batch = iota
	// BatchUnpaged: dag_run_ids and task_ids (2.7.1), but every match is
	// answered at once whatever the paging fields say (before 2.10.3).
	BatchUnpaged
	// BatchPaged: the filters and page_offset/page_limit (2.10.3,
	// apache/airflow#43479).
	BatchPaged
)

// OverFetch bounds a listing that stands in for exact lookups: it reads at
// most OverFetch rows per task instance it was asked about, then stops, and
// the task instances it did not reach are asked for exactly.
const OverFetch = 4

// RowBudget is the most rows a listing asked about n task instances reads.
func RowBudget(n int) int { return OverFetch * n }

// DefaultPageSize is the default [api] maximum_page_limit: larger pages
// would be capped by the server anyway.
const DefaultPageSize = 100

// Size is PageSize with the default applied.
func (p Paging) Size() int {
	if p.PageSize <= 0 {
		return DefaultPageSize
	}
	return p.PageSize
}

// Entity names what a definitive 404 was about, in the API's own words.
type Entity string

const (
	EntityDAG          Entity = "dag"
	EntityRun          Entity = "dag run"
	EntityTaskInstance Entity = "task instance"
	EntityXCom         Entity = "xcom"
	// EntityOther is a definitive 404 whose words name none of the above
	// (or name a mapped task instance asked for without its map index):
	// it proves nothing about the entity that was asked for.
	EntityOther Entity = "other"
)

// NotFoundAbout says what a definitive 404 (errors.Is(err, ErrNotFound))
// was about; "" when err is no definitive 404. A 404 counts as evidence
// that something is gone only when it is about the entity that was asked
// for: Airflow 3 answers a run's task-instance listing with a 404 about the
// DAG when the DAG is missing from its DAG bag, which says nothing about the
// run.
func NotFoundAbout(err error) Entity {
	if !errors.Is(err, ErrNotFound) {
		return ""
	}
	var a interface{ NotFoundAbout() Entity }
	if errors.As(err, &a) {
		return a.NotFoundAbout()
	}
	return EntityOther
}

// Forbidden reports whether Airflow refused the request with a 403: with
// per-DAG access an API user may read some DAGs and not others, so it is an
// answer about that DAG, which the pod's lookup cannot get past.
func Forbidden(err error) bool {
	var f interface{ Forbidden() bool }
	return errors.As(err, &f) && f.Forbidden()
}

// RequestScoped reports whether err concerns only the request that met it
// (Airflow's own 5xx or 429 after the retries, a 400/422 about this
// request's ids, an inconsistent listing, a timeout): the pod that needed
// the answer is skipped and the others are still judged. Anything else
// (unreachable, authentication refused, an HTML page, a redirect, a missing
// route) means this Airflow cannot be trusted right now, and the whole
// cycle fails closed.
func RequestScoped(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrUnsupported) {
		return true
	}
	var s interface{ RequestScoped() bool }
	if errors.As(err, &s) {
		return s.RequestScoped()
	}
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// NotFoundError is a definitive 404 about an entity, for clients that do
// not speak HTTP themselves and for tests: errors.Is(err, ErrNotFound) and
// NotFoundAbout(err) == About.
type NotFoundError struct {
	About Entity
	What  string
}

func (e *NotFoundError) Error() string         { return fmt.Sprintf("%s %s not found", e.About, e.What) }
func (e *NotFoundError) Is(target error) bool  { return target == ErrNotFound }
func (e *NotFoundError) NotFoundAbout() Entity { return e.About }
func (e *NotFoundError) RequestScoped() bool   { return true }

// ByRun splits keys by run, in the order the runs first appear.
func ByRun(keys []TIKey) [][]TIKey {
	index := map[string]int{}
	var out [][]TIKey
	for _, k := range keys {
		i, ok := index[k.RunID]
		if !ok {
			i = len(out)
			index[k.RunID] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], k)
	}
	return out
}
