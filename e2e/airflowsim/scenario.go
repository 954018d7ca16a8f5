package airflowsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Scenario is the state an Airflow simulator starts with. It is written as
// YAML by the e2e tests and the demo; field names are part of that contract.
type Scenario struct {
	// AirflowVersion selects the API: "2.x" (2.5 or later) serves v1 under
	// /api/v1 with HTTP basic auth, "3.x" serves v2 under /api/v2 with JWTs
	// from /auth/token. It also selects the behaviours that changed between
	// releases (versions.go), and it is what the version endpoints report.
	AirflowVersion string   `json:"airflowVersion"`
	Auth           AuthSpec `json:"auth"`
	// PageLimitCap is Airflow's [api] maximum_page_limit: v2 list endpoints
	// silently cap limit at it, and so do the v1 DAG and DAG run lists
	// (check_limit). The v1 task instance list has no check_limit, so it
	// is never capped there. Default 100.
	PageLimitCap  int                `json:"pageLimitCap,omitempty"`
	DAGs          []DAGSpec          `json:"dags,omitempty"`
	Runs          []DagRunSpec       `json:"runs,omitempty"`
	TaskInstances []TaskInstanceSpec `json:"taskInstances,omitempty"`
}

// AuthSpec holds the single API user of the simulator.
type AuthSpec struct {
	Username string `json:"username"`
	Password string `json:"password"`
	// BearerTokens are tokens an external issuer handed out (Cloud
	// Composer's Google access tokens, Astronomer API tokens): accepted as
	// "Authorization: Bearer <token>" on v1 and v2, besides basic auth and
	// the simulator's own JWTs. With them (or WithBearerValidator), a
	// bearer token that is neither is 401 on v2 too, as those platforms'
	// auth layers answer. Username and password may then be left empty.
	BearerTokens []string `json:"bearerTokens,omitempty"`
	// TokenTTL is the v2 JWT lifetime ([api_auth] jwt_expiration_time),
	// rounded up to whole seconds because JWT exp is in seconds.
	// Default 24h, as in Airflow.
	TokenTTL Duration `json:"tokenTTL,omitempty"`
	// TokenLeeway is PyJWT's leeway ([api_auth] jwt_leeway). Airflow's
	// default is 10s; the simulator defaults to 0 so that a short TTL in a
	// test expires when the test expects it to.
	TokenLeeway Duration `json:"tokenLeeway,omitempty"`
}

// DAGSpec describes one DAG.
type DAGSpec struct {
	DagID string `json:"dagId"`
	// Readable false means the API user lacks read permission on this DAG:
	// it is left out of '~' listings and /dags, and its own paths answer
	// 403. Default true.
	Readable *bool `json:"readable,omitempty"`
	IsPaused bool  `json:"isPaused,omitempty"`
	// Stale means the DAG file is gone: v1 is_active=false, v2
	// is_stale=true. Stale DAGs are hidden from /dags unless asked for.
	Stale bool `json:"stale,omitempty"`
	// NotInBag means the DAG is missing from Airflow 3's serialized DAG bag
	// (its file fails to import) while the DAG itself is still listed and
	// readable: the per-run task instance listing answers 404 about the
	// DAG (evidence.go). No effect on Airflow 2.
	NotInBag bool `json:"notInBag,omitempty"`
}

// DagRunSpec describes one DAG run. Its DAG must be declared.
type DagRunSpec struct {
	DagID string `json:"dagId"`
	RunID string `json:"runId"`
	// State is queued, running, success or failed. Default running.
	State string `json:"state,omitempty"`
	// RunType defaults to the prefix of RunID ("manual__…" → manual),
	// or manual if there is none.
	RunType string `json:"runType,omitempty"`
	// LogicalDate defaults to the date in RunID ("manual__2026-…"), then
	// to StartDate, then to the simulator's start.
	LogicalDate TimeSpec `json:"logicalDate,omitempty"`
	StartDate   TimeSpec `json:"startDate,omitempty"`
	EndDate     TimeSpec `json:"endDate,omitempty"`
}

// TaskInstanceSpec describes one task instance. Its run must be declared.
type TaskInstanceSpec struct {
	DagID  string `json:"dagId"`
	RunID  string `json:"runId"`
	TaskID string `json:"taskId"`
	// MapIndex defaults to -1 (not mapped).
	MapIndex *int `json:"mapIndex,omitempty"`
	// TryNumber defaults to 1.
	TryNumber *int `json:"tryNumber,omitempty"`
	MaxTries  int  `json:"maxTries,omitempty"`
	// State is a TaskInstanceState value; omitted or null is "no status"
	// (JSON null on the wire). "none" is accepted as a synonym of null.
	State *string `json:"state,omitempty"`
	// Operator is the class name, e.g. KubernetesPodOperator; omitted is
	// null, which Airflow allows.
	Operator *string `json:"operator,omitempty"`
	// OperatorName is v2's operator_name (custom_operator_name, such as
	// "@task.kubernetes"). Defaults to Operator.
	OperatorName *string `json:"operatorName,omitempty"`
	// Pool defaults to default_pool, Queue to default.
	Pool      string   `json:"pool,omitempty"`
	Queue     string   `json:"queue,omitempty"`
	Executor  *string  `json:"executor,omitempty"`
	Hostname  string   `json:"hostname,omitempty"`
	StartDate TimeSpec `json:"startDate,omitempty"`
	EndDate   TimeSpec `json:"endDate,omitempty"`
	// XCom maps XCom keys to string values pushed by this task instance.
	XCom map[string]string `json:"xcom,omitempty"`
}

// TIKey identifies a task instance the way Airflow does (the v2 id changes
// on every try, so it is not a key).
type TIKey struct {
	DagID    string
	RunID    string
	TaskID   string
	MapIndex int
}

func (k TIKey) String() string {
	return fmt.Sprintf("%s/%s/%s[%d]", k.DagID, k.RunID, k.TaskID, k.MapIndex)
}

// Key returns the task instance's key with defaults applied.
func (t TaskInstanceSpec) Key() TIKey {
	mi := -1
	if t.MapIndex != nil {
		mi = *t.MapIndex
	}
	return TIKey{DagID: t.DagID, RunID: t.RunID, TaskID: t.TaskID, MapIndex: mi}
}

// TimeSpec is a point in time: empty means null, a signed Go duration
// ("-2h", "+30m") is relative to a base time, anything else must be
// RFC 3339. The base is the simulator's start for a scenario, and the
// moment of the call for specs handed to Put* methods at run time.
type TimeSpec string

// Resolve turns the spec into a time, or nil for an empty spec.
func (ts TimeSpec) Resolve(base time.Time) (*time.Time, error) {
	s := strings.TrimSpace(string(ts))
	if s == "" {
		return nil, nil
	}
	if s[0] == '-' || s[0] == '+' {
		d, err := time.ParseDuration(s)
		if err != nil {
			return nil, fmt.Errorf("time %q: %w", s, err)
		}
		t := base.Add(d).UTC()
		return &t, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return nil, fmt.Errorf("time %q is neither a signed duration nor RFC 3339", s)
	}
	t = t.UTC()
	return &t, nil
}

// Duration is a time.Duration written as a Go duration string ("1h").
type Duration time.Duration

// UnmarshalJSON accepts a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"1h\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// LoadScenario reads and checks a scenario file.
func LoadScenario(path string) (*Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := ParseScenario(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// ParseScenario parses and checks a YAML (or JSON) scenario. Unknown fields
// are errors so that a typo in a test's scenario fails loudly instead of
// silently serving defaults.
func ParseScenario(data []byte) (*Scenario, error) {
	var s Scenario
	if err := yaml.UnmarshalStrict(data, &s); err != nil {
		return nil, err
	}
	if err := s.validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// apiVersion returns 1 for Airflow 2.x (API v1) and 2 for 3.x (API v2).
func (s *Scenario) apiVersion() int {
	if strings.HasPrefix(s.AirflowVersion, "2.") {
		return 1
	}
	return 2
}

var (
	taskStates = []string{"removed", "scheduled", "queued", "running", "success", "restarting", "failed",
		"up_for_retry", "up_for_reschedule", "upstream_failed", "skipped", "deferred"}
	dagRunStates = []string{"queued", "running", "success", "failed"}
	v1RunTypes   = []string{"backfill", "manual", "scheduled", "dataset_triggered"}
	v2RunTypes   = []string{"backfill", "scheduled", "manual", "asset_triggered", "asset_materialization"}
)

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// normState maps a scenario state to the stored one: nil is "no status".
func normState(p *string) (*string, error) {
	if p == nil || *p == "none" {
		return nil, nil
	}
	if !contains(taskStates, *p) {
		return nil, fmt.Errorf("unknown task instance state %q (want one of %s, or null)", *p, strings.Join(taskStates, ", "))
	}
	v := *p
	return &v, nil
}

func (s *Scenario) validate() error {
	var errs []error
	if _, err := parseRelease(s.AirflowVersion); err != nil {
		errs = append(errs, err)
	}
	if (s.Auth.Username == "" || s.Auth.Password == "") && len(s.Auth.BearerTokens) == 0 {
		errs = append(errs, errors.New("auth.username and auth.password are required (unless auth.bearerTokens is set)"))
	}
	for i, tok := range s.Auth.BearerTokens {
		if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
			errs = append(errs, fmt.Errorf("auth.bearerTokens[%d]: empty or contains whitespace", i))
		}
	}
	if s.Auth.TokenTTL < 0 || s.Auth.TokenLeeway < 0 {
		errs = append(errs, errors.New("auth.tokenTTL and auth.tokenLeeway must not be negative"))
	}
	if s.PageLimitCap < 0 {
		errs = append(errs, errors.New("pageLimitCap must not be negative"))
	}
	dags := map[string]bool{}
	for i, d := range s.DAGs {
		if err := d.check(); err != nil {
			errs = append(errs, fmt.Errorf("dags[%d]: %w", i, err))
		}
		if dags[d.DagID] {
			errs = append(errs, fmt.Errorf("dags[%d]: duplicate dagId %q", i, d.DagID))
		}
		dags[d.DagID] = true
	}
	runs := map[[2]string]bool{}
	for i, r := range s.Runs {
		if err := r.check(s.apiVersion()); err != nil {
			errs = append(errs, fmt.Errorf("runs[%d]: %w", i, err))
		}
		if !dags[r.DagID] {
			errs = append(errs, fmt.Errorf("runs[%d]: dag %q is not declared under dags", i, r.DagID))
		}
		k := [2]string{r.DagID, r.RunID}
		if runs[k] {
			errs = append(errs, fmt.Errorf("runs[%d]: duplicate run %s/%s", i, r.DagID, r.RunID))
		}
		runs[k] = true
	}
	tis := map[TIKey]bool{}
	for i, t := range s.TaskInstances {
		if err := t.check(); err != nil {
			errs = append(errs, fmt.Errorf("taskInstances[%d]: %w", i, err))
		}
		if !runs[[2]string{t.DagID, t.RunID}] {
			errs = append(errs, fmt.Errorf("taskInstances[%d]: run %s/%s is not declared under runs", i, t.DagID, t.RunID))
		}
		if tis[t.Key()] {
			errs = append(errs, fmt.Errorf("taskInstances[%d]: duplicate task instance %s", i, t.Key()))
		}
		tis[t.Key()] = true
	}
	return errors.Join(errs...)
}

func (d DAGSpec) check() error {
	if d.DagID == "" || d.DagID == "~" {
		return fmt.Errorf("dagId %q is not usable", d.DagID)
	}
	return nil
}

func (r DagRunSpec) check(api int) error {
	var errs []error
	if r.DagID == "" || r.RunID == "" || r.RunID == "~" {
		errs = append(errs, fmt.Errorf("dagId and runId are required (got %q, %q)", r.DagID, r.RunID))
	}
	if r.State != "" && !contains(dagRunStates, r.State) {
		errs = append(errs, fmt.Errorf("state %q: want one of %s", r.State, strings.Join(dagRunStates, ", ")))
	}
	types := v2RunTypes
	if api == 1 {
		types = v1RunTypes
	}
	if r.RunType != "" && !contains(types, r.RunType) {
		errs = append(errs, fmt.Errorf("runType %q: want one of %s", r.RunType, strings.Join(types, ", ")))
	}
	for _, ts := range []TimeSpec{r.LogicalDate, r.StartDate, r.EndDate} {
		if _, err := ts.Resolve(time.Now()); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (t TaskInstanceSpec) check() error {
	var errs []error
	if t.DagID == "" || t.RunID == "" || t.TaskID == "" {
		errs = append(errs, fmt.Errorf("dagId, runId and taskId are required (got %q, %q, %q)", t.DagID, t.RunID, t.TaskID))
	}
	if t.MapIndex != nil && *t.MapIndex < -1 {
		errs = append(errs, fmt.Errorf("mapIndex %d: want -1 or more", *t.MapIndex))
	}
	if t.TryNumber != nil && *t.TryNumber < 0 {
		errs = append(errs, fmt.Errorf("tryNumber %d must not be negative", *t.TryNumber))
	}
	if _, err := normState(t.State); err != nil {
		errs = append(errs, err)
	}
	for _, ts := range []TimeSpec{t.StartDate, t.EndDate} {
		if _, err := ts.Resolve(time.Now()); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
