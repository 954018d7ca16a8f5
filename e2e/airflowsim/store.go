package airflowsim

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"time"
)

type dagRec struct {
	id       string
	readable bool
	paused   bool
	stale    bool
}

type runRec struct {
	seq      int // insertion order; Airflow's dag_run.id, the default order
	dagID    string
	runID    string
	state    string
	runType  string
	logical  *time.Time
	runAfter time.Time
	start    *time.Time
	end      *time.Time
	updated  time.Time
}

type tiRec struct {
	key          TIKey
	try          int
	maxTries     int
	state        *string
	operator     *string
	operatorName *string
	executor     *string
	pool         string
	queue        string
	hostname     string
	start        *time.Time
	end          *time.Time
	updated      time.Time
	xcom         map[string]string
	// id, when set, is the v2 id of a try made at run time (churn
	// faults); otherwise the id is derived from key and try.
	id string
	// derived is the id derived for try derivedTry, computed when the
	// record is built (never written later, so reads need no lock).
	derived    string
	derivedTry int
}

func (t *tiRec) duration() *float64 {
	if t.start == nil || t.end == nil {
		return nil
	}
	d := t.end.Sub(*t.start).Seconds()
	return &d
}

// uuid is the v2 TaskInstance.id. Airflow generates a fresh UUIDv7 per try;
// deriving it from key and try keeps it stable per try across requests and
// restarts, and changes it on a retry as Airflow does.
func (t *tiRec) uuid() string {
	if t.id != "" {
		return t.id
	}
	if t.derived != "" && t.derivedTry == t.try {
		return t.derived
	}
	return t.deriveID()
}

func (t *tiRec) deriveID() string {
	h := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%s\x00%s\x00%d\x00%d", t.key.DagID, t.key.RunID, t.key.TaskID, t.key.MapIndex, t.try)))
	b := h[:16]
	b[6] = b[6]&0x0f | 0x70 // version 7
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func (t *tiRec) xcomTime(fallback time.Time) time.Time {
	if t.end != nil {
		return *t.end
	}
	if t.start != nil {
		return *t.start
	}
	return fallback
}

func buildDAG(d DAGSpec) *dagRec {
	return &dagRec{id: d.DagID, readable: d.Readable == nil || *d.Readable, paused: d.IsPaused, stale: d.Stale}
}

func buildRun(r DagRunSpec, base time.Time, api int) (*runRec, error) {
	if err := r.check(api); err != nil {
		return nil, err
	}
	rec := &runRec{dagID: r.DagID, runID: r.RunID, state: r.State, runType: r.RunType, updated: base}
	if rec.state == "" {
		rec.state = "running"
	}
	prefix, stamp, hasPrefix := strings.Cut(r.RunID, "__")
	if rec.runType == "" {
		rec.runType = "manual"
		if hasPrefix {
			types := v2RunTypes
			if api == 1 {
				types = v1RunTypes
			}
			if contains(types, prefix) {
				rec.runType = prefix
			}
		}
	}
	var err error
	if rec.start, err = r.StartDate.Resolve(base); err != nil {
		return nil, err
	}
	if rec.end, err = r.EndDate.Resolve(base); err != nil {
		return nil, err
	}
	if rec.logical, err = r.LogicalDate.Resolve(base); err != nil {
		return nil, err
	}
	if rec.logical == nil && hasPrefix {
		if t, err := time.Parse(time.RFC3339Nano, stamp); err == nil {
			t = t.UTC()
			rec.logical = &t
		}
	}
	if rec.logical == nil && rec.start != nil {
		t := *rec.start
		rec.logical = &t
	}
	if rec.logical == nil {
		t := base.UTC()
		rec.logical = &t
	}
	rec.runAfter = *rec.logical
	return rec, nil
}

func buildTI(t TaskInstanceSpec, base time.Time) (*tiRec, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	rec := &tiRec{key: t.Key(), try: 1, maxTries: t.MaxTries, operator: cloneStr(t.Operator),
		operatorName: cloneStr(t.OperatorName), executor: cloneStr(t.Executor), pool: t.Pool, queue: t.Queue,
		hostname: t.Hostname, updated: base.UTC()}
	if t.TryNumber != nil {
		rec.try = *t.TryNumber
	}
	rec.derived, rec.derivedTry = rec.deriveID(), rec.try
	rec.state, _ = normState(t.State)
	if rec.operatorName == nil {
		rec.operatorName = cloneStr(rec.operator)
	}
	if rec.pool == "" {
		rec.pool = "default_pool"
	}
	if rec.queue == "" {
		rec.queue = "default"
	}
	var err error
	if rec.start, err = t.StartDate.Resolve(base); err != nil {
		return nil, err
	}
	if rec.end, err = t.EndDate.Resolve(base); err != nil {
		return nil, err
	}
	if len(t.XCom) > 0 {
		rec.xcom = make(map[string]string, len(t.XCom))
		for k, v := range t.XCom {
			rec.xcom[k] = v
		}
	}
	return rec, nil
}

func (t *tiRec) spec() TaskInstanceSpec {
	mi, try := t.key.MapIndex, t.try
	out := TaskInstanceSpec{DagID: t.key.DagID, RunID: t.key.RunID, TaskID: t.key.TaskID, MapIndex: &mi,
		TryNumber: &try, MaxTries: t.maxTries, State: cloneStr(t.state), Operator: cloneStr(t.operator),
		OperatorName: cloneStr(t.operatorName), Pool: t.pool, Queue: t.queue, Executor: cloneStr(t.executor),
		Hostname: t.hostname, StartDate: timeSpecOf(t.start), EndDate: timeSpecOf(t.end)}
	if len(t.xcom) > 0 {
		out.XCom = make(map[string]string, len(t.xcom))
		for k, v := range t.xcom {
			out.XCom[k] = v
		}
	}
	return out
}

func timeSpecOf(t *time.Time) TimeSpec {
	if t == nil {
		return ""
	}
	return TimeSpec(t.UTC().Format(time.RFC3339Nano))
}

func cloneStr(p *string) *string {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
