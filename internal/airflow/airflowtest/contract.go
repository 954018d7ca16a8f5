package airflowtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
)

// The ids of the standard fixture, which the versions' own tests may use
// too. The dotted DAG id and the run id's '+' and ':' go into paths as
// they are.
const (
	DagID  = "etl.daily"
	RunID  = "manual__2026-11-27T06:00:00+00:00"
	taskID = "pod-task"
	// podName is the standard task instance's pod_name XCom.
	podName = "etl-daily-pod-task-3f2a9c1d"
)

// stdKey is the standard fixture's task instance.
var stdKey = airflow.TIKey{DagID: DagID, RunID: RunID, TaskID: taskID, MapIndex: -1}

// startDate is every fixture task instance's start_date.
var startDate = time.Date(2026, 11, 27, 6, 0, 2, 123456000, time.UTC)

func newTI(key airflow.TIKey, try int, state string) airflow.TaskInstance {
	start := startDate
	return airflow.TaskInstance{TIKey: key, TryNumber: try, State: state, StartDate: &start, Operator: "KubernetesPodOperator"}
}

// standard is a fixture in which every Client method finds what it asks
// for.
func standard() Fixture {
	return Fixture{
		DAGs:  []DAG{{ID: DagID}},
		Runs:  map[string][]string{DagID: {RunID}},
		TIs:   []airflow.TaskInstance{newTI(stdKey, 1, "running")},
		XComs: map[airflow.TIKey]any{stdKey: podName},
	}
}

// method is one Client method, asked about the standard fixture.
type method struct {
	name string
	call func(ctx context.Context, c airflow.Client) (any, error)
	// want is the answer for the standard fixture.
	want any
	// names is what its errors must quote: the ids it was asked about.
	names string
}

// methods lists every Client method but APIVersion, which cannot fail.
func methods(a Adapter) []method {
	return []method{
		{"ServerVersion", func(ctx context.Context, c airflow.Client) (any, error) { return c.ServerVersion(ctx) }, a.ServerVersion(), ""},
		{"ProbeTaskInstances", func(ctx context.Context, c airflow.Client) (any, error) { return nil, c.ProbeTaskInstances(ctx) }, nil, ""},
		{"ListDagIDs", func(ctx context.Context, c airflow.Client) (any, error) { return c.ListDagIDs(ctx) }, []string{DagID}, ""},
		{"ListRunIDs", func(ctx context.Context, c airflow.Client) (any, error) { return c.ListRunIDs(ctx, DagID) }, []string{RunID}, DagID},
		{"GetDag", func(ctx context.Context, c airflow.Client) (any, error) { return nil, c.GetDag(ctx, DagID) }, nil, DagID},
		{"GetDagRun", func(ctx context.Context, c airflow.Client) (any, error) { return nil, c.GetDagRun(ctx, DagID, RunID) }, nil, DagID + "/" + RunID},
		{"ListRunTaskInstances", func(ctx context.Context, c airflow.Client) (any, error) {
			return c.ListRunTaskInstances(ctx, DagID, RunID)
		}, []airflow.TaskInstance{newTI(stdKey, 1, "running")}, DagID + "/" + RunID},
		{"GetTaskInstance", func(ctx context.Context, c airflow.Client) (any, error) { return c.GetTaskInstance(ctx, stdKey) }, newTI(stdKey, 1, "running"), stdKey.String()},
		{"PodNameXCom", func(ctx context.Context, c airflow.Client) (any, error) { return c.PodNameXCom(ctx, stdKey) }, podName, stdKey.String()},
		{"ListTaskInstances", func(ctx context.Context, c airflow.Client) (any, error) {
			return c.ListTaskInstances(ctx, DagID, []airflow.TIKey{stdKey})
		}, []airflow.TaskInstance{newTI(stdKey, 1, "running")}, DagID},
	}
}

// lookups are the methods that ask about one entity and whose 404 is
// evidence.
var lookups = []string{"ListRunIDs", "GetDag", "GetDagRun", "ListRunTaskInstances", "GetTaskInstance", "PodNameXCom"}

type contractCase struct {
	name string
	run  func(t *testing.T, a Adapter)
}

var cases = []contractCase{
	{"EveryMethodAnswers", everyMethodAnswers},
	{"ServerVersion", serverVersion},
	{"ProbeOfAnEmptyAirflow", probeOfAnEmptyAirflow},
	{"GetDagAndRunName404s", getDagAndRunName404s},
	{"GetTaskInstanceEscapesPath", getTaskInstanceEscapesPath},
	{"GetTaskInstanceNotFound", getTaskInstanceNotFound},
	{"GetAnswerForAnotherEntityFails", answerForAnotherEntityFails},
	{"MalformedTaskInstanceFails", malformedTaskInstanceFails},
	{"ListDagIDsIncludesStale", listDagIDsIncludesStale},
	{"ListRunIDs", listRunIDs},
	{"ListRunTaskInstances", listRunTaskInstances},
	{"ListTaskInstancesNarrows", listTaskInstancesNarrows},
	{"PodNameXCom", podNameXCom},
	{"PodNameXComMapped", podNameXComMapped},
	{"PodNameXComNotFound", podNameXComNotFound},
	{"PodNameXComWrongAnswerFails", podNameXComWrongAnswerFails},
	{"ServerErrorIsRetried", serverErrorIsRetried},
	{"PersistentServerErrorFails", persistentServerErrorFails},
	{"HTMLPageFails", htmlPageFails},
	{"ProxyNotFoundIsNotErrNotFound", proxyNotFoundIsNotErrNotFound},
	{"MissingRouteIsNotErrNotFound", missingRouteIsNotErrNotFound},
	{"NotFoundIsAboutWhatItNames", notFoundIsAboutWhatItNames},
	{"EmptyAnswerFails", emptyAnswerFails},
}

// forEachMethod runs check for every method against a fresh standard
// fixture, after prepare.
func forEachMethod(t *testing.T, a Adapter, prepare func(t *testing.T, s *server), check func(t *testing.T, m method, s *server, got any, err error)) {
	for _, m := range methods(a) {
		t.Run(m.name, func(t *testing.T) {
			s := serve(t, a, standard())
			if prepare != nil {
				prepare(t, s)
			}
			got, err := m.call(context.Background(), s.client(t))
			check(t, m, s, got, err)
		})
	}
}

// methodNamed is the method of methods(a) called name.
func methodNamed(a Adapter, name string) method {
	ms := methods(a)
	return ms[slices.IndexFunc(ms, func(m method) bool { return m.name == name })]
}

// answerFails checks that call fails, and not with ErrNotFound, when
// every request is answered with a 200 and body (see server.answerJSON).
func answerFails(t *testing.T, a Adapter, body any, call func(ctx context.Context, c airflow.Client) (any, error)) {
	t.Helper()
	s := serve(t, a, Fixture{})
	s.answerJSON(t, body)
	if got, err := call(context.Background(), s.client(t)); err == nil || errors.Is(err, airflow.ErrNotFound) {
		t.Fatalf("got %+v, err %v; want an error", got, err)
	}
}

// failsPlainly checks that err is an error that is no definitive 404 and
// names what the method was asked about.
func failsPlainly(t *testing.T, m method, err error, what string) {
	t.Helper()
	if err == nil || errors.Is(err, airflow.ErrNotFound) {
		t.Fatalf("%s: err %v; want an error that is not ErrNotFound", what, err)
	}
	if !strings.Contains(err.Error(), m.names) {
		t.Errorf("%s: err %q does not name %s", what, err, m.names)
	}
}

func everyMethodAnswers(t *testing.T, a Adapter) {
	// A method added to Client must be added to methods.
	if n := reflect.TypeFor[airflow.Client]().NumMethod() - 1; len(methods(a)) != n {
		t.Fatalf("the contract calls %d methods, airflow.Client has %d besides APIVersion", len(methods(a)), n)
	}
	forEachMethod(t, a, nil, func(t *testing.T, m method, _ *server, got any, err error) {
		if err != nil {
			t.Fatal(err)
		}
		if !same(got, m.want) {
			t.Fatalf("got %+v, want %+v", got, m.want)
		}
	})
}

func serverVersion(t *testing.T, a Adapter) {
	c := serve(t, a, Fixture{}).client(t)
	v, err := c.ServerVersion(context.Background())
	if err != nil || v != a.ServerVersion() || c.APIVersion() != a.APIVersion() {
		t.Fatalf("%q %v, API %s; want %s over %s", v, err, c.APIVersion(), a.ServerVersion(), a.APIVersion())
	}
}

func probeOfAnEmptyAirflow(t *testing.T, a Adapter) {
	if err := serve(t, a, Fixture{}).client(t).ProbeTaskInstances(context.Background()); err != nil {
		t.Fatalf("probe of an Airflow without task instances: %v", err)
	}
}

// GetDag and GetDagRun say what exists; their 404s name what is missing,
// so that a missing DAG is never taken for a missing run.
func getDagAndRunName404s(t *testing.T, a Adapter) {
	c := serve(t, a, standard()).client(t)
	ctx := context.Background()
	if err := c.GetDag(ctx, DagID); err != nil {
		t.Fatal(err)
	}
	if err := c.GetDagRun(ctx, DagID, RunID); err != nil {
		t.Fatal(err)
	}
	if err := c.GetDag(ctx, "ghost"); airflow.NotFoundAbout(err) != airflow.EntityDAG {
		t.Fatalf("missing DAG: %v (about %q)", err, airflow.NotFoundAbout(err))
	}
	if err := c.GetDagRun(ctx, DagID, "gone"); airflow.NotFoundAbout(err) != airflow.EntityRun {
		t.Fatalf("missing run: %v (about %q)", err, airflow.NotFoundAbout(err))
	}
}

func getTaskInstanceEscapesPath(t *testing.T, a Adapter) {
	runs := []string{RunID, "run with space", "a/b", "x%2By", "run with space/and slash"}
	var fx Fixture
	for _, run := range runs {
		fx.TIs = append(fx.TIs,
			newTI(airflow.TIKey{DagID: DagID, RunID: run, TaskID: taskID, MapIndex: -1}, 2, "running"),
			newTI(airflow.TIKey{DagID: DagID, RunID: run, TaskID: taskID, MapIndex: 4}, 1, ""))
	}
	s := serve(t, a, fx)
	c := s.client(t)
	for _, want := range fx.TIs {
		got, err := c.GetTaskInstance(context.Background(), want.TIKey)
		if err != nil {
			t.Fatalf("%s: %v", want.TIKey, err)
		}
		if !same(got, want) {
			t.Fatalf("asked %s, got %+v, want %+v", want.TIKey, got, want)
		}
	}
	var paths strings.Builder
	for _, r := range s.requests() {
		paths.WriteString(r.Path + "\n")
	}
	for _, want := range []string{
		"/dags/etl.daily/dagRuns/manual__2026-11-27T06:00:00+00:00/taskInstances/pod-task\n",
		"/dagRuns/run%20with%20space/", "/dagRuns/a%2Fb/", "/dagRuns/x%252By/", "/dagRuns/run%20with%20space%2Fand%20slash/",
		"/taskInstances/pod-task/4\n",
	} {
		if !strings.Contains(paths.String(), want) {
			t.Errorf("no request path contains %q:\n%s", want, paths.String())
		}
	}
}

func getTaskInstanceNotFound(t *testing.T, a Adapter) {
	c := serve(t, a, standard()).client(t)
	for _, key := range []airflow.TIKey{
		{DagID: "d", RunID: "r", TaskID: "t", MapIndex: -1},
		{DagID: "d", RunID: "r", TaskID: "t", MapIndex: 1},
		{DagID: DagID, RunID: RunID, TaskID: taskID, MapIndex: 0}, // its unmapped twin exists
	} {
		_, err := c.GetTaskInstance(context.Background(), key)
		if !errors.Is(err, airflow.ErrNotFound) || airflow.NotFoundAbout(err) != airflow.EntityTaskInstance || !strings.Contains(err.Error(), key.String()) {
			t.Fatalf("%s: a JSON 404 from Airflow must be ErrNotFound about the task instance, naming it: %v (about %q)", key, err, airflow.NotFoundAbout(err))
		}
	}
}

// Never let a wrong answer stand in for the one asked about.
func answerForAnotherEntityFails(t *testing.T, a Adapter) {
	ti := func(dag, run, task string, mapIndex int) map[string]any {
		return a.TaskInstance(newTI(airflow.TIKey{DagID: dag, RunID: run, TaskID: task, MapIndex: mapIndex}, 1, "running"))
	}
	for name, tc := range map[string]struct {
		answer map[string]any
		method string
	}{
		"DAG":                        {a.DAG("other"), "GetDag"},
		"run of another DAG":         {a.Run("other", RunID), "GetDagRun"},
		"other run":                  {a.Run(DagID, "other"), "GetDagRun"},
		"task instance of other DAG": {ti("other", RunID, taskID, -1), "GetTaskInstance"},
		"task instance of other run": {ti(DagID, "other", taskID, -1), "GetTaskInstance"},
		"other task instance":        {ti(DagID, RunID, "other", -1), "GetTaskInstance"},
		"other map index":            {ti(DagID, RunID, taskID, 0), "GetTaskInstance"},
	} {
		t.Run(name, func(t *testing.T) { answerFails(t, a, tc.answer, methodNamed(a, tc.method).call) })
	}
}

// A task instance whose key fields are missing or do not parse is an
// error, never a task instance with zero values.
func malformedTaskInstanceFails(t *testing.T, a Adapter) {
	for name, changes := range map[string]map[string]any{ // a nil value deletes the field
		"no dag_id":          {"dag_id": nil},
		"no dag_run_id":      {"dag_run_id": nil},
		"no task_id":         {"task_id": nil},
		"no map_index":       {"map_index": nil},
		"no try_number":      {"try_number": nil},
		"null map_index":     {"map_index": json.RawMessage("null")},
		"string map_index":   {"map_index": "-1"},
		"unparsable start":   {"start_date": "27/11/2026 06:00"},
		"start is yesterday": {"start_date": "yesterday"},
	} {
		t.Run(name, func(t *testing.T) {
			answer := a.TaskInstance(newTI(stdKey, 1, "running"))
			if err := change(answer, changes); err != nil {
				t.Fatalf("the %s answer %v", a.APIVersion(), err)
			}
			answerFails(t, a, answer, methodNamed(a, "GetTaskInstance").call)
		})
	}
}

func listDagIDsIncludesStale(t *testing.T, a Adapter) {
	var fx Fixture
	var want []string
	for i := range 150 {
		id := fmt.Sprintf("dag_%03d", i)
		fx.DAGs = append(fx.DAGs, DAG{ID: id, Stale: i%2 == 0})
		want = append(want, id)
	}
	ids, err := serve(t, a, fx).client(t).ListDagIDs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !sameSet(ids, want) {
		t.Fatalf("%d ids, want the 150 DAGs, stale ones included", len(ids))
	}
}

func listRunIDs(t *testing.T, a Adapter) {
	fx := Fixture{DAGs: []DAG{{ID: "with_runs"}, {ID: "no_runs"}}, Runs: map[string][]string{}}
	for i := range 105 {
		fx.Runs["with_runs"] = append(fx.Runs["with_runs"], fmt.Sprintf("scheduled__2026-11-%02dT00:00:00+00:00_%d", i%28+1, i))
	}
	c := serve(t, a, fx).client(t)
	ctx := context.Background()
	ids, err := c.ListRunIDs(ctx, "with_runs")
	if err != nil || !sameSet(ids, fx.Runs["with_runs"]) {
		t.Fatalf("%d ids, err %v; want the 105 runs", len(ids), err)
	}
	ids, err = c.ListRunIDs(ctx, "no_runs")
	if err != nil || len(ids) != 0 {
		t.Fatalf("%v, err %v", ids, err)
	}
	_, err = c.ListRunIDs(ctx, "gone")
	if !errors.Is(err, airflow.ErrNotFound) || airflow.NotFoundAbout(err) != airflow.EntityDAG {
		t.Fatalf("an unknown DAG must be ErrNotFound about the DAG, even where Airflow lists it as empty: %v (about %q)", err, airflow.NotFoundAbout(err))
	}
}

func listRunTaskInstances(t *testing.T, a Adapter) {
	fx := Fixture{
		DAGs: []DAG{{ID: "d"}},
		Runs: map[string][]string{"d": {"r1", "r2", "empty", "big"}},
		TIs: []airflow.TaskInstance{
			newTI(airflow.TIKey{DagID: "d", RunID: "r1", TaskID: "a", MapIndex: -1}, 1, "success"),
			newTI(airflow.TIKey{DagID: "d", RunID: "r1", TaskID: "b", MapIndex: 0}, 1, ""),
			newTI(airflow.TIKey{DagID: "d", RunID: "r1", TaskID: "b", MapIndex: 1}, 3, "running"),
			newTI(airflow.TIKey{DagID: "d", RunID: "r2", TaskID: "a", MapIndex: -1}, 1, "running"),
		},
	}
	for i := range 250 {
		fx.TIs = append(fx.TIs, newTI(airflow.TIKey{DagID: "d", RunID: "big", TaskID: fmt.Sprintf("task_%03d", i), MapIndex: -1}, 1, "running"))
	}
	s := serve(t, a, fx)
	c := s.client(t)
	ctx := context.Background()
	tis, err := c.ListRunTaskInstances(ctx, "d", "r1")
	if err != nil || !sameTIs(tis, fx.TIs[:3]) {
		t.Fatalf("%+v, err %v; want %+v", tis, err, fx.TIs[:3])
	}
	for _, r := range s.requests() {
		if _, ok := r.Query["state"]; ok {
			t.Errorf("a run listing must not filter by state: %s?%s", r.Path, r.Query.Encode())
		}
	}
	if tis, err := c.ListRunTaskInstances(ctx, "d", "big"); err != nil || !sameTIs(tis, fx.TIs[4:]) {
		t.Fatalf("%d rows, err %v; want all 250", len(tis), err)
	}
	if tis, err := c.ListRunTaskInstances(ctx, "d", "empty"); err != nil || len(tis) != 0 {
		t.Fatalf("%v, err %v", tis, err)
	}
	_, err = c.ListRunTaskInstances(ctx, "d", "gone")
	if !errors.Is(err, airflow.ErrNotFound) || airflow.NotFoundAbout(err) != airflow.EntityRun {
		t.Fatalf("an unknown run must be ErrNotFound about the run, even where Airflow lists it as empty: %v (about %q)", err, airflow.NotFoundAbout(err))
	}
}

// ListTaskInstances answers the task instances asked about that exist, in
// runs of one DAG; it reads at most airflow.RowBudget rows per listing, so a
// run full of other task instances is cut short, not read whole; a run that
// does not exist adds nothing and fails nothing.
func listTaskInstancesNarrows(t *testing.T, a Adapter) {
	key := func(run, task string, mapIndex int) airflow.TIKey {
		return airflow.TIKey{DagID: "d", RunID: run, TaskID: task, MapIndex: mapIndex}
	}
	fx := Fixture{DAGs: []DAG{{ID: "d"}, {ID: "e"}}, Runs: map[string][]string{"d": {"r1", "r2", "big"}, "e": {"r1"}}}
	for _, k := range []airflow.TIKey{key("r1", "a", -1), key("r1", "b", 0), key("r1", "b", 1), key("r2", "a", -1), key("r2", "c", -1)} {
		fx.TIs = append(fx.TIs, newTI(k, 1, "running"))
	}
	fx.TIs = append(fx.TIs, newTI(airflow.TIKey{DagID: "e", RunID: "r1", TaskID: "a", MapIndex: -1}, 1, "success"))
	for i := range 250 {
		fx.TIs = append(fx.TIs, newTI(key("big", fmt.Sprintf("task_%03d", i), -1), 1, "success"))
	}
	s := serve(t, a, fx)
	c := s.client(t)
	ctx := context.Background()
	asked := []airflow.TIKey{key("r1", "a", -1), key("r1", "b", 1), key("r2", "a", -1), key("r2", "c", -1), key("r2", "missing", -1), key("gone", "a", -1)}
	tis, err := c.ListTaskInstances(ctx, "d", asked)
	if err != nil {
		t.Fatal(err)
	}
	got := map[airflow.TIKey]airflow.TaskInstance{}
	for _, ti := range tis {
		if ti.DagID != "d" {
			t.Errorf("a row of another DAG: %s", ti.TIKey)
		}
		got[ti.TIKey] = ti
	}
	for _, want := range []airflow.TaskInstance{fx.TIs[0], fx.TIs[2], fx.TIs[3], fx.TIs[4]} {
		if g, ok := got[want.TIKey]; !ok || !sameTI(g, want) {
			t.Errorf("%s: got %+v, want %+v", want.TIKey, g, want)
		}
	}
	if len(tis) > airflow.RowBudget(len(asked)) {
		t.Errorf("%d rows for %d task instances: more than the budget %d", len(tis), len(asked), airflow.RowBudget(len(asked)))
	}

	before := len(s.requests())
	bigKeys := []airflow.TIKey{key("big", "task_007", -1), key("big", "task_200", -1)}
	tis, err = c.ListTaskInstances(ctx, "d", bigKeys)
	if err != nil {
		t.Fatal(err)
	}
	if budget := airflow.RowBudget(len(bigKeys)); len(tis) > budget {
		t.Errorf("a run of 250 task instances: read %d rows for 2, budget %d", len(tis), budget)
	}
	if n := len(s.requests()) - before; n > 2 {
		t.Errorf("%d requests for a listing cut at its budget", n)
	}
}

// podNameXCom reads the pod name from what each version's API may render:
// one level of quotes is stripped, and anything that is still no pod name
// is an error (never ErrNotFound) that names the task instance.
func podNameXCom(t *testing.T, a Adapter) {
	for _, tc := range []struct {
		name  string
		value any
		want  string // "" wants an error
	}{
		{"plain", "etl-daily-pod-task-3f2a9c1d", "etl-daily-pod-task-3f2a9c1d"},
		{"JSON-quoted", `"etl-daily-pod-task-3f2a9c1d"`, "etl-daily-pod-task-3f2a9c1d"},
		{"Python-quoted", "'etl-daily-pod-task-3f2a9c1d'", "etl-daily-pod-task-3f2a9c1d"},
		{"dotted", "pod.example-1", "pod.example-1"},
		{"quoted twice", `"'etl-daily-pod-task-3f2a9c1d'"`, ""},
		{"unmatched quotes", `"etl-daily-pod-task-3f2a9c1d'`, ""},
		{"empty quotes", `""`, ""},
		{"empty", "", ""},
		{"not a pod name", "None", ""},
		{"spaces", "Pod With Spaces", ""},
		{"a Python list", "['pod-a', 'pod-b']", ""},
		{"null", nil, ""},
		{"a number", 42, ""},
		{"a list", []string{"pod-a"}, ""},
		{"an object", map[string]any{"pod_name": "pod-a"}, ""},
		{"an object-storage reference", "xcom_s3://bucket/dag/run/task/5f0c.json", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := serve(t, a, Fixture{XComs: map[airflow.TIKey]any{stdKey: tc.value}})
			got, err := s.client(t).PodNameXCom(context.Background(), stdKey)
			if tc.want == "" {
				if err == nil || errors.Is(err, airflow.ErrNotFound) || !strings.Contains(err.Error(), stdKey.String()) {
					t.Fatalf("got %q, err %v; want an error naming the task instance", got, err)
				}
				if _, isString := tc.value.(string); (isString || tc.value == nil) && !errors.Is(err, airflow.ErrNoPodName) {
					// What the API rendered is this task instance's answer,
					// not Airflow failing.
					t.Fatalf("got %v; want airflow.ErrNoPodName", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, err %v; want %q", got, err, tc.want)
			}
			r := s.requests()[0]
			if r.Path != "/dags/etl.daily/dagRuns/manual__2026-11-27T06:00:00+00:00/taskInstances/pod-task/xcomEntries/pod_name" {
				t.Errorf("path %s", r.Path)
			}
			if want := a.XComQuery(stdKey); !sameQuery(r.Query, want) {
				t.Errorf("query %v, want %v", r.Query, want)
			}
		})
	}
}

func podNameXComMapped(t *testing.T, a Adapter) {
	fx := Fixture{XComs: map[airflow.TIKey]any{}}
	for mi := -1; mi < 3; mi++ {
		fx.XComs[airflow.TIKey{DagID: "d", RunID: "r", TaskID: "t", MapIndex: mi}] = fmt.Sprintf("pod-%d", mi+1)
	}
	s := serve(t, a, fx)
	key := airflow.TIKey{DagID: "d", RunID: "r", TaskID: "t", MapIndex: 2}
	got, err := s.client(t).PodNameXCom(context.Background(), key)
	if err != nil || got != "pod-3" {
		t.Fatalf("got %q, err %v; want pod-3", got, err)
	}
	if q, want := s.requests()[0].Query, a.XComQuery(key); !sameQuery(q, want) {
		t.Errorf("query %v, want %v", q, want)
	}
}

func podNameXComNotFound(t *testing.T, a Adapter) {
	fx := Fixture{XComs: map[airflow.TIKey]any{{DagID: "d", RunID: "r", TaskID: "t", MapIndex: 0}: "pod-0"}}
	c := serve(t, a, fx).client(t)
	for _, key := range []airflow.TIKey{
		{DagID: "d", RunID: "r", TaskID: "t", MapIndex: 1}, // another map index has one
		{DagID: "d", RunID: "r", TaskID: "u", MapIndex: -1},
	} {
		_, err := c.PodNameXCom(context.Background(), key)
		if !errors.Is(err, airflow.ErrNotFound) || airflow.NotFoundAbout(err) != airflow.EntityXCom || !strings.Contains(err.Error(), key.String()) {
			t.Fatalf("%s: a JSON 404 from Airflow must be ErrNotFound about the XCom, naming the task instance: %v (about %q)", key, err, airflow.NotFoundAbout(err))
		}
	}
}

// An XCom answer about anything but the XCom asked for, or without a
// value, is an error.
func podNameXComWrongAnswerFails(t *testing.T, a Adapter) {
	key := airflow.TIKey{DagID: "d", RunID: "r", TaskID: "t", MapIndex: 2}
	for name, changes := range map[string]map[string]any{ // a nil value deletes the field
		"other map index": {"map_index": 0},
		"no map index":    {"map_index": nil},
		"other DAG":       {"dag_id": "x"},
		"other run":       {"run_id": "x"},
		"other task":      {"task_id": "x"},
		"other key":       {"key": "pod_namespace", "value": "default"},
		"no key":          {"key": nil},
		"no value":        {"value": nil},
		"not an object":   nil,
		"empty":           nil,
	} {
		t.Run(name, func(t *testing.T) {
			var body any = a.XCom(key, "pod-0")
			switch name {
			case "not an object":
				body = `"pod-0"`
			case "empty":
				body = ""
			default:
				if err := change(body.(map[string]any), changes); err != nil {
					t.Skipf("the %s answer %v", a.APIVersion(), err)
				}
			}
			answerFails(t, a, body, func(ctx context.Context, c airflow.Client) (any, error) { return c.PodNameXCom(ctx, key) })
		})
	}
}

func serverErrorIsRetried(t *testing.T, a Adapter) {
	forEachMethod(t, a, func(_ *testing.T, s *server) { s.answerFirst(1, a.ServerError) }, func(t *testing.T, m method, s *server, got any, err error) {
		if err != nil || !same(got, m.want) {
			t.Fatalf("got %+v, err %v; want %+v after one retry", got, err, m.want)
		}
		if n := len(s.requests()); n < 2 {
			t.Errorf("%d requests: the 500 was not retried", n)
		}
	})
}

func persistentServerErrorFails(t *testing.T, a Adapter) {
	forEachMethod(t, a, func(_ *testing.T, s *server) { s.answerAll(a.ServerError) }, func(t *testing.T, m method, s *server, _ any, err error) {
		failsPlainly(t, m, err, "a persistent 500")
		if !strings.Contains(err.Error(), "giving up after 3 attempt(s), last status 500") {
			t.Errorf("err %v", err)
		}
		if strings.Contains(err.Error(), s.srv.URL) {
			t.Errorf("err %q repeats the raw URL", err)
		}
		if n := len(s.requests()); n != 3 {
			t.Errorf("%d requests, want 3", n)
		}
	})
}

// A 200 HTML page (a login page, a proxy) is no answer.
func htmlPageFails(t *testing.T, a Adapter) {
	forEachMethod(t, a, func(_ *testing.T, s *server) {
		s.answerAll(func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprint(w, "<!DOCTYPE html><title>Sign In - Airflow</title>")
		})
	}, func(t *testing.T, m method, _ *server, _ any, err error) {
		failsPlainly(t, m, err, "an HTML page")
		if !strings.Contains(err.Error(), "got text/html") || !strings.Contains(err.Error(), "check airflow.url and airflow.auth") {
			t.Errorf("err %v", err)
		}
	})
}

// A proxy's HTML 404 is not Airflow saying that something is gone.
func proxyNotFoundIsNotErrNotFound(t *testing.T, a Adapter) {
	forEachMethod(t, a, func(_ *testing.T, s *server) {
		s.answerAll(func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, "<html><center>nginx</center>404 Not Found</html>")
		})
	}, func(t *testing.T, m method, _ *server, _ any, err error) {
		failsPlainly(t, m, err, "a proxy's HTML 404")
	})
}

// Nor is a route the server does not have: the API's router's 404, or a
// base URL that misses the API.
func missingRouteIsNotErrNotFound(t *testing.T, a Adapter) {
	forEachMethod(t, a, func(_ *testing.T, s *server) { s.answerAll(a.NoRoute) }, func(t *testing.T, m method, _ *server, _ any, err error) {
		failsPlainly(t, m, err, "a missing route")
	})
	for _, m := range methods(a) {
		t.Run("wrong prefix/"+m.name, func(t *testing.T) {
			_, err := m.call(context.Background(), serve(t, a, standard()).clientAt(t, "/wrong-prefix"))
			failsPlainly(t, m, err, "a base URL with a wrong prefix")
		})
	}
}

// A lookup's definitive 404 is ErrNotFound about what Airflow's words
// name, which need not be what was asked for: Airflow 3 answers a run's
// task-instance listing with a 404 about the DAG when the DAG is missing
// from its DAG bag.
func notFoundIsAboutWhatItNames(t *testing.T, a Adapter) {
	for _, about := range []airflow.Entity{airflow.EntityDAG, airflow.EntityRun, airflow.EntityTaskInstance, airflow.EntityXCom} {
		for _, m := range methods(a) {
			if !slices.Contains(lookups, m.name) {
				continue
			}
			t.Run(string(about)+"/"+m.name, func(t *testing.T) {
				s := serve(t, a, standard())
				s.answerAll(func(w http.ResponseWriter) { a.NotFound(w, about) })
				_, err := m.call(context.Background(), s.client(t))
				if !errors.Is(err, airflow.ErrNotFound) || airflow.NotFoundAbout(err) != about || !strings.Contains(err.Error(), m.names) {
					t.Fatalf("err %v (about %q); want ErrNotFound about %s naming %s", err, airflow.NotFoundAbout(err), about, m.names)
				}
				if !airflow.RequestScoped(err) {
					t.Errorf("a definitive 404 concerns only its request: %v", err)
				}
			})
		}
	}
}

// A 200 JSON answer that says nothing is an error, never an empty list or
// a zero value.
func emptyAnswerFails(t *testing.T, a Adapter) {
	for _, body := range []string{"", "{}", "null", "[]"} {
		t.Run(fmt.Sprintf("%q", body), func(t *testing.T) {
			forEachMethod(t, a, func(t *testing.T, s *server) { s.answerJSON(t, body) }, func(t *testing.T, _ method, _ *server, got any, err error) {
				if err == nil || errors.Is(err, airflow.ErrNotFound) {
					t.Fatalf("got %+v, err %v; want an error", got, err)
				}
			})
		})
	}
}

// change sets the fields of answer to the values of changes and deletes
// those whose value is nil; an error when answer lacks one of them.
func change(answer, changes map[string]any) error {
	for k, v := range changes {
		if _, ok := answer[k]; !ok {
			return fmt.Errorf("has no %s", k)
		}
		if v == nil {
			delete(answer, k)
		} else {
			answer[k] = v
		}
	}
	return nil
}

// same compares answers; task instances' dates by instant.
func same(got, want any) bool {
	switch w := want.(type) {
	case airflow.TaskInstance:
		g, ok := got.(airflow.TaskInstance)
		return ok && sameTI(g, w)
	case []airflow.TaskInstance:
		g, ok := got.([]airflow.TaskInstance)
		return ok && sameTIs(g, w)
	case []string:
		g, ok := got.([]string)
		return ok && sameSet(g, w)
	}
	return reflect.DeepEqual(got, want)
}

func sameTI(a, b airflow.TaskInstance) bool {
	sameTime := func(x, y *time.Time) bool { return x == nil && y == nil || x != nil && y != nil && x.Equal(*y) }
	return a.TIKey == b.TIKey && a.TryNumber == b.TryNumber && a.State == b.State && a.Operator == b.Operator &&
		sameTime(a.StartDate, b.StartDate) && sameTime(a.EndDate, b.EndDate)
}

// sameTIs compares lists of task instances in any order.
func sameTIs(got, want []airflow.TaskInstance) bool {
	if len(got) != len(want) {
		return false
	}
	byKey := map[airflow.TIKey]airflow.TaskInstance{}
	for _, ti := range got {
		byKey[ti.TIKey] = ti
	}
	for _, w := range want {
		if g, ok := byKey[w.TIKey]; !ok || !sameTI(g, w) {
			return false
		}
	}
	return len(byKey) == len(got)
}

// sameQuery compares queries; no parameter at all is one empty query.
func sameQuery(got, want url.Values) bool {
	return len(got) == 0 && len(want) == 0 || reflect.DeepEqual(got, want)
}

// sameSet compares lists of ids in any order, duplicates counted.
func sameSet(got, want []string) bool {
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	return slices.Equal(g, w)
}
