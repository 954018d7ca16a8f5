package transport

import (
	"encoding/json"
	"strings"
	"testing"
)

const fullRow = `{"dag_id":"d","dag_run_id":"r","task_id":"t","map_index":-1,"try_number":2,"state":%s,
	"operator":"KubernetesPodOperator","start_date":"2026-12-01T10:00:00.123456+00:00","end_date":null,
	"rendered_fields":{"cmds":["sh"]},"executor_config":"{}","pool":"default_pool"}`

func TestTIRowKeepsWhatTheDecisionReads(t *testing.T) {
	for _, c := range []struct{ state, want string }{
		{`"success"`, "success"},
		{`null`, ""},
		{`"none"`, ""},
		{`"a_state_from_a_future_airflow"`, "a_state_from_a_future_airflow"},
	} {
		var r TIRow
		if err := json.Unmarshal([]byte(strings.Replace(fullRow, "%s", c.state, 1)), &r); err != nil {
			t.Fatal(err)
		}
		ti, err := r.TaskInstance()
		if err != nil {
			t.Fatalf("state %s: %v", c.state, err)
		}
		if ti.State != c.want || ti.TryNumber != 2 || ti.MapIndex != -1 || ti.Operator != "KubernetesPodOperator" ||
			ti.StartDate == nil || ti.StartDate.Nanosecond() != 123456000 || ti.EndDate != nil {
			t.Fatalf("state %s: %+v", c.state, ti)
		}
	}
}

func TestTIRowWithoutItsIdentityIsAnError(t *testing.T) {
	for _, field := range []string{"dag_id", "dag_run_id", "task_id", "map_index", "try_number"} {
		for _, how := range []string{"missing", "null"} {
			var obj map[string]any
			if err := json.Unmarshal([]byte(strings.Replace(fullRow, "%s", `"running"`, 1)), &obj); err != nil {
				t.Fatal(err)
			}
			if how == "missing" {
				delete(obj, field)
			} else {
				obj[field] = nil
			}
			b, _ := json.Marshal(obj)
			var r TIRow
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			if _, err := r.TaskInstance(); err == nil || !strings.Contains(err.Error(), "lacks "+field) {
				t.Fatalf("%s %s: err %v", field, how, err)
			}
		}
	}
}

func TestTIRowWithABadDateIsAnError(t *testing.T) {
	var r TIRow
	row := strings.Replace(strings.Replace(fullRow, "%s", `"success"`, 1), `"end_date":null`, `"end_date":"yesterday"`, 1)
	if err := json.Unmarshal([]byte(row), &r); err != nil {
		t.Fatal(err)
	}
	if _, err := r.TaskInstance(); err == nil || !strings.Contains(err.Error(), "end_date") {
		t.Fatalf("err %v", err)
	}
}

func TestTIRowsPageShapes(t *testing.T) {
	row := strings.Replace(fullRow, "%s", `"running"`, 1)
	for _, c := range []struct {
		name, body     string
		offsetOK       bool
		cursored, next bool
		cursorOK       bool
	}{
		{"offset page", `{"task_instances":[` + row + `],"total_entries":1}`, true, false, false, true},
		{"last keyset page", `{"task_instances":[` + row + `],"next_cursor":null}`, false, true, false, true},
		{"keyset page", `{"task_instances":[` + row + `],"next_cursor":"abc"}`, false, true, true, true},
		{"empty cursor", `{"task_instances":[],"next_cursor":""}`, false, true, false, false},
		{"neither", `{"task_instances":[]}`, false, false, false, false},
		{"no rows", `{"total_entries":3}`, false, false, false, true},
	} {
		var rows TIRows
		if err := json.Unmarshal([]byte(c.body), &rows); err != nil {
			t.Fatal(err)
		}
		p, err := rows.Page()
		if (err == nil) != c.offsetOK || (err == nil && (len(p.Items) != 1 || p.Total != 1)) {
			t.Errorf("%s: offset page %+v, %v", c.name, p, err)
		}
		cp, err := rows.CursorPage()
		if (err == nil) != c.cursorOK || (err == nil && (cp.Cursored != c.cursored || (cp.Next != nil) != c.next)) {
			t.Errorf("%s: cursor page %+v, %v", c.name, cp, err)
		}
	}
}
