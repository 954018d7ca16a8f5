package e2e_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kpo-reaper/kpo-reaper/e2e/airflowsim"
	"github.com/kpo-reaper/kpo-reaper/e2e/fixture"
)

// everyVersion is one Airflow release per simulator profile
// (airflowsim.Profiles), two for the cursor profile, whose end of listing
// differs between 3.2.x and 3.3.
var everyVersion = []simRelease{
	{"2.5.3", 1, false, true},
	{"2.9.3", 1, false, true},
	{"2.10.2", 1, false, false},
	{"2.10.5", 1, false, false},
	{"3.0.6", 2, false, false},
	{"3.1.8", 2, false, false},
	{"3.2.1", 2, false, false},
	{"3.2.2", 2, true, false},
	{"3.3.0", 2, true, false},
}

// simRelease is an Airflow release the simulator plays.
type simRelease struct {
	version string
	api     int
	cursor  bool // GET task instance lists take a cursor
	rawTry  bool // try_number is the raw column (before 2.10)
}

// forEveryRelease runs f, in parallel, for every release of everyVersion,
// with the API version it speaks and a new env.
func forEveryRelease(t *testing.T, f func(t *testing.T, ev simRelease, v airflowVersion, e *env)) {
	t.Helper()
	for _, ev := range everyVersion {
		t.Run(ev.version, func(t *testing.T) {
			t.Parallel()
			f(t, ev, airflowVersions[ev.api-1], newEnv(t))
		})
	}
}

// Deferrable KPO tasks of the seed run, added for every version: on
// Airflow 2.0-2.9 the API reports their try_number one lower than the
// attempt their pod is labelled with.
const (
	deferredPod = "deferrable-kpo-task-pod"
	resumedPod  = "resumed-kpo-task-pod"
)

// TestSeedEveryVersion: the seed DAG on every simulated Airflow release,
// with the API version detected: exactly the two seed zombies are deleted,
// the live pods (two running, a deferred and a resumed deferrable task,
// both on their second try) are kept, no request was refused or had a
// parameter ignored by that release. The reaper never lists Airflow's
// backlog (no GET /dags/~/dagRuns/~/taskInstances): every pod's task
// instance is read, by the listing of its run or with one exact GET, and on
// 3.2.2+ every task instance listing pages with a cursor.
func TestSeedEveryVersion(t *testing.T) {
	t.Parallel()
	forEveryRelease(t, func(t *testing.T, ev simRelease, v airflowVersion, e *env) {
		pods := append(fixture.SeedPods(),
			fixture.PodSpec{Name: deferredPod, DagID: fixture.SeedDag, RunID: fixture.SeedRun, TaskID: "deferrable_kpo_task", MapIndex: -1, Try: 2},
			fixture.PodSpec{Name: resumedPod, DagID: fixture.SeedDag, RunID: fixture.SeedRun, TaskID: "resumed_kpo_task", MapIndex: -1, Try: 2},
		)
		e.createPods(pods...)
		sc := seedScenario(t, v)
		sc.AirflowVersion = ev.version
		sc.TaskInstances = append(sc.TaskInstances,
			tiSpec(fixture.SeedDag, fixture.SeedRun, "deferrable_kpo_task", 2, "deferred"),
			// Queued again after its trigger fired, before it resumes.
			tiSpec(fixture.SeedDag, fixture.SeedRun, "resumed_kpo_task", 2, "queued"))
		s := e.startSim(sc, nil)
		cfg := e.config(s.URL, v, nil) // apiVersion auto

		plan := e.plan(cfg)
		e.runOnce(cfg, 0)

		e.expectGone(fixture.SeedZombies)
		e.expectWrites(fixture.SeedZombies, nil)
		// What the reaper read for the deferrable pods: the raw column
		// (attempt - 1) before 2.10, and it kept them all the same.
		wantTry := 2
		if ev.rawTry {
			wantTry = 1
		}
		for _, name := range []string{deferredPod, resumedPod} {
			e.expectVerdict(plan, name, "keep", "ti-active")
			if p := plan[name]; p.TITryNumber == nil || *p.TITryNumber != wantTry || p.PodTryNumber == nil || *p.PodTryNumber != 2 {
				t.Errorf("plan: %s has TI try %v and pod try %v, want %d and 2", name, p.TITryNumber, p.PodTryNumber, wantTry)
			}
		}
		checkRequests(t, s, ev.api)
		reqs := s.Requests()
		expectNoBacklogListing(t, s.BasePath(), reqs)
		expectEveryPodRead(t, s.BasePath(), reqs, pods)
		if ev.cursor {
			for _, r := range taskInstanceListings(reqs) {
				if q, err := url.ParseQuery(r.RawQuery); err != nil || !q.Has("cursor") {
					t.Errorf("Airflow %s: %s %s?%s carried no cursor parameter: the reaper pages by offset where keyset paging is offered", ev.version, r.Method, r.Path, r.RawQuery)
				}
			}
		}
	})
}

// literalRunProbe matches the reaper asking whether a hashed run_id label
// is itself a run id (GET .../dagRuns/<label>): a 404 there is the expected
// answer, not a refused request.
var literalRunProbe = regexp.MustCompile(`/dags/[^/]+/dagRuns/[A-Za-z0-9][A-Za-z0-9_.-]*-[0-9a-f]{9}$`)

// checkRequests fails on any request the simulated release refused (4xx)
// or answered ignoring some of its query parameters. The 4xx allowed are
// auto-detection's GET /api/v2/version on an Airflow 2 and the literal
// run-label probe, both 404.
func checkRequests(t *testing.T, s *sim, api int) {
	t.Helper()
	for _, r := range s.Requests() {
		if api == 1 && r.Method == http.MethodGet && r.Path == "/api/v2/version" && r.Status == http.StatusNotFound {
			continue
		}
		if r.Method == http.MethodGet && r.Status == http.StatusNotFound && literalRunProbe.MatchString(r.Path) {
			continue
		}
		if r.Status >= 400 && r.Status < 500 {
			t.Errorf("%s %s?%s answered %d", r.Method, r.Path, r.RawQuery, r.Status)
		}
		if len(r.Ignored) > 0 {
			t.Errorf("%s %s?%s: this release ignores %v", r.Method, r.Path, r.RawQuery, r.Ignored)
		}
	}
}

// taskInstanceListings returns the GETs of a task instance list (any DAG
// and run, "~" included).
func taskInstanceListings(reqs []airflowsim.RecordedRequest) []airflowsim.RecordedRequest {
	var out []airflowsim.RecordedRequest
	for _, r := range reqs {
		if r.Method == http.MethodGet && strings.HasSuffix(r.Path, "/taskInstances") {
			out = append(out, r)
		}
	}
	return out
}

// expectNoBacklogListing fails on any request for the task instances of
// every DAG and run (GET /dags/~/dagRuns/~/taskInstances, or a batch POST
// .../taskInstances/list that does not name one DAG, its runs and its
// tasks): the reaper reads the task instances of its pods, never
// Airflow's backlog.
func expectNoBacklogListing(t *testing.T, basePath string, reqs []airflowsim.RecordedRequest) {
	t.Helper()
	backlog := basePath + "/dags/~/dagRuns/~/taskInstances"
	for _, r := range reqs {
		if r.Method == http.MethodPost && r.Path == backlog+"/list" {
			if b, ok := batchBody(r); ok && len(b.DagIDs) == 1 && len(b.RunIDs) > 0 && len(b.TaskIDs) > 0 {
				continue
			}
		}
		if r.Path == backlog || strings.HasPrefix(r.Path, backlog+"/") {
			t.Errorf("%s %s?%s %s: the reaper listed Airflow's backlog", r.Method, r.Path, r.RawQuery, r.Body)
		}
	}
}

// batch is what the reaper sends in a batch POST.
type batch struct {
	DagIDs  []string `json:"dag_ids"`
	RunIDs  []string `json:"dag_run_ids"`
	TaskIDs []string `json:"task_ids"`
}

func batchBody(r airflowsim.RecordedRequest) (batch, bool) {
	var b batch
	return b, json.Unmarshal([]byte(r.Body), &b) == nil
}

// listedBy reports whether a request answered 200 was a listing of the
// task instances of k's run that takes in k: GET .../dagRuns/{run_id}/
// taskInstances (with no task_id, or k's), or a batch POST naming k's DAG,
// run and task.
func listedBy(basePath string, r airflowsim.RecordedRequest, k airflowsim.TIKey) bool {
	if r.Status != http.StatusOK {
		return false
	}
	switch r.Method {
	case http.MethodGet:
		q, err := url.ParseQuery(r.RawQuery)
		return err == nil && r.Path == basePath+"/dags/"+k.DagID+"/dagRuns/"+k.RunID+"/taskInstances" &&
			(!q.Has("task_id") || q.Get("task_id") == k.TaskID)
	case http.MethodPost:
		b, ok := batchBody(r)
		return ok && r.Path == basePath+"/dags/~/dagRuns/~/taskInstances/list" &&
			slices.Contains(b.DagIDs, k.DagID) && slices.Contains(b.RunIDs, k.RunID) && slices.Contains(b.TaskIDs, k.TaskID)
	}
	return false
}

// exactLookups returns the task instances read with a single GET
// (.../dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}[/{map_index}],
// no "~") that were answered 200 or 404, with how often each was read.
func exactLookups(basePath string, reqs []airflowsim.RecordedRequest) map[airflowsim.TIKey]int {
	out := map[airflowsim.TIKey]int{}
	for _, r := range reqs {
		if r.Method != http.MethodGet || (r.Status != http.StatusOK && r.Status != http.StatusNotFound) {
			continue
		}
		if k, ok := exactTI(strings.TrimPrefix(r.Path, basePath)); ok && strings.HasPrefix(r.Path, basePath+"/") {
			out[k]++
		}
	}
	return out
}

// exactTI parses an API path without its /api/vN prefix as the GET of a
// single task instance: /dags/{dag_id}/dagRuns/{run_id}/taskInstances/
// {task_id}[/{map_index}], none of the ids "~".
func exactTI(path string) (airflowsim.TIKey, bool) {
	rest, ok := strings.CutPrefix(path, "/dags/")
	if !ok {
		return airflowsim.TIKey{}, false
	}
	p := strings.Split(rest, "/")
	if (len(p) != 5 && len(p) != 6) || p[1] != "dagRuns" || p[3] != "taskInstances" || p[0] == "~" || p[2] == "~" || p[4] == "~" {
		return airflowsim.TIKey{}, false
	}
	k := airflowsim.TIKey{DagID: p[0], RunID: p[2], TaskID: p[4], MapIndex: -1}
	if len(p) == 6 {
		n, err := strconv.Atoi(p[5])
		if err != nil || n < 0 {
			return airflowsim.TIKey{}, false
		}
		k.MapIndex = n
	}
	return k, true
}

// expectEveryPodRead fails unless the task instance of every pod spec was
// read: with a single GET, or by a listing of its run that takes it in.
func expectEveryPodRead(t *testing.T, basePath string, reqs []airflowsim.RecordedRequest, pods []fixture.PodSpec) {
	t.Helper()
	got := exactLookups(basePath, reqs)
	for _, p := range pods {
		k := airflowsim.TIKey{DagID: p.DagID, RunID: p.RunID, TaskID: p.TaskID, MapIndex: p.MapIndex}
		if got[k] == 0 && !slices.ContainsFunc(reqs, func(r airflowsim.RecordedRequest) bool { return listedBy(basePath, r, k) }) {
			t.Errorf("the task instance %s of pod %s was never read, neither with a single GET nor by a listing of its run", k, p.Name)
		}
	}
}
