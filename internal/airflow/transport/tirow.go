package transport

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
)

// TIRow is a task instance as both API versions spell it, reduced to the
// fields the reaper reads. Listings decode into it rather than into the
// generated models: encoding/json skips the other fields (rendered fields,
// executor config, trigger, ...) without allocating, while the v1 client's
// model runs a json.Unmarshal for each nullable field. With 2,000 pods that
// halves the garbage a daemon cycle makes (docs/operations.md, "Memory and
// CPU").
type TIRow struct {
	DagID     *string `json:"dag_id"`
	RunID     *string `json:"dag_run_id"`
	TaskID    *string `json:"task_id"`
	MapIndex  *int    `json:"map_index"`
	TryNumber *int    `json:"try_number"`
	State     *string `json:"state"`
	Operator  *string `json:"operator"`
	StartDate *string `json:"start_date"`
	EndDate   *string `json:"end_date"`
}

// TIRows is a page of task instances: offset pages carry total_entries,
// keyset pages (Airflow 3.2.2+) next_cursor, which stays nil when absent
// and is "null" on the last page.
type TIRows struct {
	TaskInstances *[]TIRow        `json:"task_instances"`
	TotalEntries  *int            `json:"total_entries"`
	NextCursor    json.RawMessage `json:"next_cursor"`
}

// TaskInstance converts the row after checking that its identity is whole:
// decoding would silently turn a missing map_index into 0, another task
// instance. A null state, or "none" (the deprecated spelling of null some
// 2.x versions echo), is "" ("no status", unfinished); other strings are
// kept as they are, so a state this reaper does not know counts as
// unfinished.
func (r TIRow) TaskInstance() (airflow.TaskInstance, error) {
	for _, f := range []struct {
		name    string
		missing bool
	}{
		{"dag_id", r.DagID == nil || *r.DagID == ""},
		{"dag_run_id", r.RunID == nil || *r.RunID == ""},
		{"task_id", r.TaskID == nil || *r.TaskID == ""},
		{"map_index", r.MapIndex == nil},
		{"try_number", r.TryNumber == nil},
	} {
		if f.missing {
			return airflow.TaskInstance{}, fmt.Errorf("a task instance lacks %s", f.name)
		}
	}
	ti := airflow.TaskInstance{
		TIKey:     airflow.TIKey{DagID: *r.DagID, RunID: *r.RunID, TaskID: *r.TaskID, MapIndex: *r.MapIndex},
		TryNumber: *r.TryNumber,
	}
	if r.State != nil && *r.State != "none" {
		ti.State = *r.State
	}
	if r.Operator != nil {
		ti.Operator = *r.Operator
	}
	var err error
	if ti.StartDate, err = parseTime("start_date", r.StartDate); err != nil {
		return airflow.TaskInstance{}, fmt.Errorf("task instance %s: %w", ti.TIKey, err)
	}
	if ti.EndDate, err = parseTime("end_date", r.EndDate); err != nil {
		return airflow.TaskInstance{}, fmt.Errorf("task instance %s: %w", ti.TIKey, err)
	}
	return ti, nil
}

// Page converts an offset page, which must carry task_instances and
// total_entries.
func (p TIRows) Page() (Page[airflow.TaskInstance], error) {
	if p.TotalEntries == nil || p.TaskInstances == nil {
		return Page[airflow.TaskInstance]{}, errors.New("the answer lacks task_instances or total_entries")
	}
	items, err := p.items()
	return Page[airflow.TaskInstance]{Items: items, Total: *p.TotalEntries}, err
}

// CursorPage converts a page that may be a keyset page: without
// next_cursor but with total_entries the server paged by offset and the
// result is not Cursored.
func (p TIRows) CursorPage() (CursorPage[airflow.TaskInstance], error) {
	var out CursorPage[airflow.TaskInstance]
	if p.NextCursor == nil {
		if p.TotalEntries != nil {
			return out, nil
		}
		return out, errors.New("the answer lacks next_cursor")
	}
	out.Cursored = true
	if p.TaskInstances == nil {
		return out, errors.New("the answer lacks task_instances")
	}
	if string(p.NextCursor) != "null" {
		var n string
		if err := json.Unmarshal(p.NextCursor, &n); err != nil || n == "" {
			return out, errors.New("next_cursor is not a non-empty string")
		}
		out.Next = &n
	}
	var err error
	out.Items, err = p.items()
	return out, err
}

func (p TIRows) items() ([]airflow.TaskInstance, error) {
	out := make([]airflow.TaskInstance, 0, len(*p.TaskInstances))
	for i, r := range *p.TaskInstances {
		ti, err := r.TaskInstance()
		if err != nil {
			return nil, fmt.Errorf("task_instances[%d]: %w", i, err)
		}
		out = append(out, ti)
	}
	return out, nil
}

// parseTime parses an API date. v1's spec types them with the non-standard
// format "datetime", v2's as date-time; both send RFC 3339.
func parseTime(field string, s *string) (*time.Time, error) {
	if s == nil || *s == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, *s)
	if err != nil {
		return nil, fmt.Errorf("%s %q is not an RFC 3339 time", field, *s)
	}
	return &t, nil
}
