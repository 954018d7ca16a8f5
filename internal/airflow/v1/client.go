// Package v1 is the airflow.Client for Airflow 2.x (REST API /api/v1),
// built on github.com/apache/airflow-client-go (client 2.5.0).
//
// Two properties of that client shape this package:
//
//   - Its models decode enums strictly: a task state, DAG-run state or
//     trigger rule this client version does not know (one added by a later
//     Airflow 2.x, or a plugin) fails the whole page. That fails the cycle
//     closed, which is safe but stops reaping until the client knows the
//     value; an error naming the value is the signal.
//   - It sends only the query parameters it is given, and this package gives
//     only ones every Airflow 2.x spec declares, because Connexion answers
//     400 to any other (no order_by, no operator).
package v1

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	af "github.com/apache/airflow-client-go/airflow"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
	"github.com/kpo-reaper/kpo-reaper/internal/airflow/transport"
)

type client struct {
	api *af.APIClient
	// limit is the page size; the task-instance endpoint would take more
	// than the default 100, but rendered_fields make KubernetesPodOperator
	// rows large.
	limit int32
	batch airflow.Batch
	// base and hc send what the 2.5.0 client cannot: the batch POST's
	// dag_run_ids, task_ids and paging fields.
	base string
	hc   *http.Client
}

// New returns the client for the API at baseURL + "/api/v1". hc should come
// from transport.New; nil means transport.New with defaults and no auth.
// Airflow 2 has no cursor paging; paging.Cursor is ignored.
func New(baseURL string, hc *http.Client, paging airflow.Paging) airflow.Client {
	if hc == nil {
		hc, _ = transport.New(transport.Options{MaxRetries: transport.DefaultMaxRetries})
	}
	cfg := af.NewConfiguration()
	cfg.Servers = af.ServerConfigurations{{URL: strings.TrimRight(baseURL, "/") + "/api/v1"}}
	cfg.HTTPClient = withExtraQuery(hc)
	cfg.UserAgent = "kpo-reaper"
	return &client{api: af.NewAPIClient(cfg), limit: int32(paging.Size()), batch: paging.Batch, base: cfg.Servers[0].URL, hc: cfg.HTTPClient}
}

func (c *client) APIVersion() string { return "v1" }

func (c *client) ServerVersion(ctx context.Context) (string, error) {
	v, resp, err := c.api.MonitoringApi.GetVersion(ctx).Execute()
	if err != nil {
		return "", fail("GET /api/v1/version", resp, err)
	}
	if v.Version == nil || *v.Version == "" {
		return "", errors.New("GET /api/v1/version: the answer has no version")
	}
	return *v.Version, nil
}

func (c *client) ProbeTaskInstances(ctx context.Context) error {
	const what = "GET /api/v1/dags/~/dagRuns/~/taskInstances"
	col, resp, err := c.api.TaskInstanceApi.GetTaskInstances(ctx, "~", "~").Limit(1).Execute()
	if err != nil {
		return fail(what, resp, err)
	}
	if col.TotalEntries == nil || col.TaskInstances == nil {
		return fmt.Errorf("%s: the answer lacks task_instances or total_entries", what)
	}
	return nil
}

func (c *client) ListRunTaskInstances(ctx context.Context, dagID, runID string) ([]airflow.TaskInstance, error) {
	tis, err := c.listTIs(ctx, dagID, runID)
	return airflow.ConfirmEmpty(tis, err, func() error { return c.GetDagRun(ctx, dagID, runID) })
}

func (c *client) listTIs(ctx context.Context, dagID, runID string) ([]airflow.TaskInstance, error) {
	const what = "GET /api/v1/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances"
	fetch := func(ctx context.Context, offset int) (transport.Page[airflow.TaskInstance], error) {
		return c.tiPage(ctx, dagID, runID, offset, int(c.limit))
	}
	tis, err := transport.ListAll(ctx, what, fetch, func(t airflow.TaskInstance) (airflow.TIKey, error) { return t.TIKey, nil })
	if err != nil {
		return nil, fmt.Errorf("dag run %s/%s: %w", dagID, runID, err)
	}
	return tis, nil
}

// ListTaskInstances lists the keys' runs with the batch POST where the
// server filters by run and task (2.7.1+), one POST per group of runs whose
// cross product of runs and tasks stays within the row budget; before, run
// by run with GET .../dagRuns/{dag_run_id}/taskInstances, which has no task
// filter.
func (c *client) ListTaskInstances(ctx context.Context, dagID string, keys []airflow.TIKey) ([]airflow.TaskInstance, error) {
	var out []airflow.TaskInstance
	if c.batch == airflow.BatchNone {
		for _, run := range airflow.ByRun(keys) {
			tis, err := transport.ListSome(ctx, airflow.RowBudget(len(run)), int(c.limit), func(ctx context.Context, offset, limit int) (transport.Page[airflow.TaskInstance], error) {
				return c.tiPage(ctx, dagID, run[0].RunID, offset, limit)
			})
			out = append(out, tis...)
			if err != nil {
				return out, fmt.Errorf("dag run %s/%s: %w", dagID, run[0].RunID, err)
			}
		}
		return out, nil
	}
	for _, g := range batchGroups(keys, c.batch) {
		tis, err := transport.ListSome(ctx, airflow.RowBudget(len(g.keys)), int(c.limit), func(ctx context.Context, offset, limit int) (transport.Page[airflow.TaskInstance], error) {
			return c.batchPage(ctx, batchBody{DagIDs: []string{dagID}, RunIDs: g.runs, TaskIDs: g.tasks, Offset: offset, Limit: limit})
		})
		out = append(out, tis...)
		if err != nil {
			return out, fmt.Errorf("dag %s: %w", dagID, err)
		}
	}
	return out, nil
}

// batchGroup is one batch POST: its rows are the cross product of runs and
// tasks (and every map index of a mapped task).
type batchGroup struct {
	runs, tasks []string
	keys        []airflow.TIKey
}

// batchGroups asks for all runs at once when the cross product of their
// runs and tasks stays within the keys' row budget, else run by run (each
// run's product is its own keys). A server that answers every match at once
// cannot be cut at a budget, so mapped task instances, whose count per task
// is unknown, are left to exact lookups there.
func batchGroups(keys []airflow.TIKey, batch airflow.Batch) []batchGroup {
	if batch == airflow.BatchUnpaged {
		keys = slices.DeleteFunc(slices.Clone(keys), func(k airflow.TIKey) bool { return k.MapIndex >= 0 })
	}
	group := func(keys []airflow.TIKey) batchGroup {
		g := batchGroup{keys: keys}
		for _, k := range keys {
			if !slices.Contains(g.runs, k.RunID) {
				g.runs = append(g.runs, k.RunID)
			}
			if !slices.Contains(g.tasks, k.TaskID) {
				g.tasks = append(g.tasks, k.TaskID)
			}
		}
		return g
	}
	if len(keys) == 0 {
		return nil
	}
	if all := group(keys); len(all.runs)*len(all.tasks) <= airflow.RowBudget(len(keys)) {
		return []batchGroup{all}
	}
	var out []batchGroup
	for _, run := range airflow.ByRun(keys) {
		out = append(out, group(run))
	}
	return out
}

// batchBody is the part of ListTaskInstanceForm the reaper sends.
type batchBody struct {
	DagIDs  []string `json:"dag_ids"`
	RunIDs  []string `json:"dag_run_ids"`
	TaskIDs []string `json:"task_ids"`
	Offset  int      `json:"page_offset"`
	Limit   int      `json:"page_limit"`
}

// maxListingBody bounds one page of the batch listing; before 2.10.3 it
// holds every match at once, which the row budget keeps near the pods
// asked about.
const maxListingBody = 64 << 20

// batchPage POSTs one page of the batch listing. Servers before 2.10.3
// accept the paging fields and answer every match.
func (c *client) batchPage(ctx context.Context, body batchBody) (transport.Page[airflow.TaskInstance], error) {
	const what = "POST /api/v1/dags/~/dagRuns/~/taskInstances/list"
	b, err := json.Marshal(body)
	if err != nil {
		return transport.Page[airflow.TaskInstance]{}, fmt.Errorf("%s: %w", what, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/dags/~/dagRuns/~/taskInstances/list", bytes.NewReader(b))
	if err != nil {
		return transport.Page[airflow.TaskInstance]{}, fmt.Errorf("%s: %w", what, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "kpo-reaper")
	resp, err := c.hc.Do(req)
	if err != nil {
		return transport.Page[airflow.TaskInstance]{}, fail(what, nil, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw, err := io.ReadAll(resp.Body)
		if err != nil {
			return transport.Page[airflow.TaskInstance]{}, fmt.Errorf("%s: reading the answer: %w", what, err)
		}
		return transport.Page[airflow.TaskInstance]{}, transport.ResponseError(resp, raw)
	}
	var rows transport.TIRows
	if err := transport.ReadBody(resp.Body, maxListingBody, func(body []byte) error {
		if err := json.Unmarshal(body, &rows); err != nil {
			return fmt.Errorf("cannot decode the answer: %w", err)
		}
		return nil
	}); err != nil {
		return transport.Page[airflow.TaskInstance]{}, fmt.Errorf("%s: %w", what, err)
	}
	p, err := rows.Page()
	if err != nil {
		return p, fmt.Errorf("%s: %w", what, err)
	}
	return p, nil
}

// tiPage is one offset page of a run's task instances.
func (c *client) tiPage(ctx context.Context, dagID, runID string, offset, limit int) (transport.Page[airflow.TaskInstance], error) {
	const what = "GET /api/v1/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances"
	col, resp, err := c.api.TaskInstanceApi.GetTaskInstances(ctx, dagID, runID).Limit(int32(limit)).Offset(int32(offset)).Execute()
	if err != nil {
		return transport.Page[airflow.TaskInstance]{}, fail(what, resp, err)
	}
	return collectionPage(what, col)
}

// collectionPage checks and converts a page of task instances.
func collectionPage(what string, col af.TaskInstanceCollection) (transport.Page[airflow.TaskInstance], error) {
	if col.TotalEntries == nil || col.TaskInstances == nil {
		return transport.Page[airflow.TaskInstance]{}, fmt.Errorf("%s: the answer lacks task_instances or total_entries", what)
	}
	p := transport.Page[airflow.TaskInstance]{Total: int(*col.TotalEntries)}
	for _, t := range *col.TaskInstances {
		ti, err := convertTI(t)
		if err != nil {
			return p, fmt.Errorf("%s: %w", what, err)
		}
		p.Items = append(p.Items, ti)
	}
	return p, nil
}

func (c *client) ListDagIDs(ctx context.Context) ([]string, error) {
	const what = "GET /api/v1/dags"
	fetch := func(ctx context.Context, offset int) (transport.Page[string], error) {
		// only_active=false: DAGs whose file is gone still have pods.
		col, resp, err := c.api.DAGApi.GetDags(ctx).OnlyActive(false).Limit(c.limit).Offset(int32(offset)).Execute()
		if err != nil {
			return transport.Page[string]{}, fail(what, resp, err)
		}
		if col.TotalEntries == nil || col.Dags == nil {
			return transport.Page[string]{}, fmt.Errorf("%s: the answer lacks dags or total_entries", what)
		}
		return transport.IDPage(what, int(*col.TotalEntries), *col.Dags, func(d af.DAG) string { return d.GetDagId() }, "a DAG without dag_id")
	}
	return transport.ListIDs(ctx, what, fetch)
}

func (c *client) ListRunIDs(ctx context.Context, dagID string) ([]string, error) {
	const what = "GET /api/v1/dags/{dag_id}/dagRuns"
	fetch := func(ctx context.Context, offset int) (transport.Page[string], error) {
		col, resp, err := c.api.DAGRunApi.GetDagRuns(ctx, dagID).Limit(c.limit).Offset(int32(offset)).Execute()
		if err != nil {
			return transport.Page[string]{}, fail(what, resp, err)
		}
		if col.TotalEntries == nil || col.DagRuns == nil {
			return transport.Page[string]{}, fmt.Errorf("%s: the answer lacks dag_runs or total_entries", what)
		}
		return transport.IDPage(what, int(*col.TotalEntries), *col.DagRuns, func(r af.DAGRun) string { return r.GetDagRunId() }, "a DAG run without dag_run_id")
	}
	return transport.ListRunIDs(ctx, what, dagID, fetch, func() error { return c.GetDag(ctx, dagID) })
}

func (c *client) GetDag(ctx context.Context, dagID string) error {
	const what = "GET /api/v1/dags/{dag_id}"
	d, resp, err := c.api.DAGApi.GetDag(ctx, dagID).Execute()
	if err != nil {
		return fmt.Errorf("dag %s: %w", dagID, fail(what, resp, err))
	}
	if id := d.DagId; id == nil || *id != dagID {
		return fmt.Errorf("dag %s: %s answered for another or no DAG", dagID, what)
	}
	return nil
}

func (c *client) GetDagRun(ctx context.Context, dagID, runID string) error {
	const what = "GET /api/v1/dags/{dag_id}/dagRuns/{dag_run_id}"
	r, resp, err := c.api.DAGRunApi.GetDagRun(ctx, dagID, runID).Execute()
	if err != nil {
		return fmt.Errorf("dag run %s/%s: %w", dagID, runID, fail(what, resp, err))
	}
	if id := r.DagRunId.Get(); id == nil || *id != runID || r.DagId == nil || *r.DagId != dagID {
		return fmt.Errorf("dag run %s/%s: %s answered for another or no run", dagID, runID, what)
	}
	return nil
}

func (c *client) GetTaskInstance(ctx context.Context, key airflow.TIKey) (airflow.TaskInstance, error) {
	var (
		t    af.TaskInstance
		resp *http.Response
		err  error
		what string
	)
	if key.MapIndex < 0 {
		what = "GET /api/v1/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}"
		t, resp, err = c.api.TaskInstanceApi.GetTaskInstance(ctx, key.DagID, key.RunID, key.TaskID).Execute()
	} else {
		what = "GET /api/v1/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}"
		t, resp, err = c.api.TaskInstanceApi.GetMappedTaskInstance(ctx, key.DagID, key.RunID, key.TaskID, int32(key.MapIndex)).Execute()
	}
	if err != nil {
		return airflow.TaskInstance{}, fmt.Errorf("task instance %s: %w", key, fail(what, resp, err))
	}
	ti, err := convertTI(t)
	if err != nil {
		return airflow.TaskInstance{}, fmt.Errorf("task instance %s: %s: %w", key, what, err)
	}
	if ti.TIKey != key {
		// Never let a wrong answer stand in for the one asked about.
		return airflow.TaskInstance{}, fmt.Errorf("task instance %s: %s answered for %s", key, what, ti.TIKey)
	}
	return ti, nil
}

func (c *client) PodNameXCom(ctx context.Context, key airflow.TIKey) (string, error) {
	v, err := c.podNameXCom(ctx, key)
	return airflow.PodNameOf(key, v, err)
}

func (c *client) podNameXCom(ctx context.Context, key airflow.TIKey) (string, error) {
	const what = "GET /api/v1/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries/{xcom_key}"
	if key.MapIndex >= 0 {
		// airflow-client-go 2.5.0 cannot send map_index here, and without
		// it Airflow reads map index -1 (2.7+) or any map index (older).
		ctx = context.WithValue(ctx, extraQueryKey{}, url.Values{"map_index": {strconv.Itoa(key.MapIndex)}})
	}
	x, resp, err := c.api.XComApi.GetXcomEntry(ctx, key.DagID, key.RunID, key.TaskID, airflow.PodNameKey).Execute()
	if err != nil {
		if resp != nil && resp.StatusCode < 300 {
			return "", fmt.Errorf("%s: cannot decode the answer (is the value a string?): %w", what, err)
		}
		err = fail(what, resp, err)
		if key.MapIndex >= 0 && transport.IsStatus(err, http.StatusBadRequest) {
			// Connexion rejects query parameters its spec lacks: map_index
			// came with Airflow 2.7 (apache/airflow#32453).
			return "", fmt.Errorf("%w: Airflow before 2.7 cannot read the XCom of one map index, so the pod name of a mapped task instance is unknown (%w)", err, airflow.ErrUnsupported)
		}
		return "", err
	}
	if x.DagId == nil || x.TaskId == nil || x.Key == nil || *x.DagId != key.DagID || *x.TaskId != key.TaskID || *x.Key != airflow.PodNameKey {
		return "", fmt.Errorf("%s answered for another or no XCom", what)
	}
	// The 2.5.0 model has no map_index; the generated client leaves the
	// body it decoded in resp.Body.
	var raw struct {
		MapIndex *int `json:"map_index"`
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || json.Unmarshal(body, &raw) != nil {
		return "", fmt.Errorf("%s: cannot re-read the answer", what)
	}
	// 2.7+ always answers map_index; an older server has none, which is
	// only acceptable for an unmapped task, where -1 is the only index.
	switch {
	case raw.MapIndex == nil && key.MapIndex >= 0:
		return "", fmt.Errorf("%s answered without map_index, so it may be another map index's (Airflow before 2.7?): %w", what, airflow.ErrUnsupported)
	case raw.MapIndex != nil && *raw.MapIndex != key.MapIndex:
		return "", fmt.Errorf("%s answered for map index %d", what, *raw.MapIndex)
	}
	if x.Value == nil {
		return "", airflow.NoPodName("%s: the answer has no value", what)
	}
	return *x.Value, nil
}

type extraQueryKey struct{}

// extraQueryRT adds the query parameters a request's context carries under
// extraQueryKey, for those the 2.5.0 client has no setter for.
type extraQueryRT struct{ next http.RoundTripper }

func (e *extraQueryRT) RoundTrip(req *http.Request) (*http.Response, error) {
	extra, _ := req.Context().Value(extraQueryKey{}).(url.Values)
	if len(extra) == 0 {
		return e.next.RoundTrip(req)
	}
	r := req.Clone(req.Context())
	q := r.URL.Query()
	for k, vs := range extra {
		q[k] = vs
	}
	r.URL.RawQuery = q.Encode()
	return e.next.RoundTrip(r)
}

func withExtraQuery(hc *http.Client) *http.Client {
	c := *hc
	next := hc.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	c.Transport = &extraQueryRT{next: next}
	return &c
}

// fail turns what the generated client returns into an error that names
// the endpoint and, for a non-2xx answer, keeps the status for errors.Is.
func fail(what string, resp *http.Response, err error) error {
	if resp != nil && resp.StatusCode >= 300 {
		var body []byte
		var oe af.GenericOpenAPIError
		if errors.As(err, &oe) {
			body = oe.Body()
		}
		return transport.ResponseError(resp, body)
	}
	if resp != nil {
		// 2xx: the generated client could not decode it, e.g. an unknown
		// enum value.
		return fmt.Errorf("%s: cannot decode the answer (airflow-client-go 2.5.0 rejects values it does not know, such as a newer task state): %w", what, err)
	}
	// The transport's errors already name the method and endpoint; the
	// *url.Error around them would add the raw URL a second time.
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func convertTI(t af.TaskInstance) (airflow.TaskInstance, error) {
	r := transport.TIRow{DagID: t.DagId, RunID: t.DagRunId, TaskID: t.TaskId, Operator: t.Operator.Get(),
		StartDate: t.StartDate.Get(), EndDate: t.EndDate.Get()}
	if t.MapIndex != nil {
		r.MapIndex = ptr(int(*t.MapIndex))
	}
	if t.TryNumber != nil {
		r.TryNumber = ptr(int(*t.TryNumber))
	}
	if t.State != nil {
		r.State = ptr(string(*t.State))
	}
	return r.TaskInstance()
}

func ptr[T any](v T) *T { return &v }
