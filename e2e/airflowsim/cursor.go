package airflowsim

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"time"
)

// Cursor (keyset) pagination of GET .../taskInstances (capV2Cursor), after
// apache/airflow#64845 and its 3.2 backport #65405: with a cursor query
// parameter ("" asks for the first page) the rows are those after the
// cursor's row in the order_by keys plus the id tie-breaker, offset is not
// applied, and the answer carries next_cursor/previous_cursor instead of
// total_entries (no COUNT(*)). A token is opaque to clients: URL-safe
// base64 of a JSON list with one {"type", "value"} per sort key, the
// values of the row it points at.

type v2TICursorCollection struct {
	TaskInstances  []v2TI  `json:"task_instances"`
	NextCursor     *string `json:"next_cursor"`
	PreviousCursor *string `json:"previous_cursor"`
}

type cursorItem struct {
	Type  string          `json:"type"`
	Value json.RawMessage `json:"value"`
}

// cursorKind is the token type of an order_by attribute's values.
func cursorKind(attr string) string {
	switch attr {
	case "duration":
		return "float"
	case "map_index", "try_number":
		return "int"
	case "start_date", "end_date", "logical_date", "run_after", "data_interval_start", "data_interval_end":
		return "datetime"
	}
	return "str"
}

func encodeCursor(v tiView, keys []sortKey) string {
	items := make([]cursorItem, len(keys))
	for i, k := range keys {
		val := tiSortValue(v, k.attr)
		var it cursorItem
		switch x := val.(type) {
		case nil:
			it = cursorItem{Type: "null", Value: json.RawMessage("null")}
		case time.Time:
			b, _ := json.Marshal(x.UTC().Format(time.RFC3339Nano))
			it = cursorItem{Type: "datetime", Value: b}
		default:
			b, _ := json.Marshal(x)
			it = cursorItem{Type: cursorKind(k.attr), Value: b}
		}
		items[i] = it
	}
	b, _ := json.Marshal(items)
	return base64.URLEncoding.EncodeToString(b)
}

// decodeCursor reads a token strictly: anything but a token this order
// could have produced is a 400.
func decodeCursor(tok string, keys []sortKey) ([]any, *apiError) {
	bad := v2Detail(400, "Invalid cursor token")
	raw, err := base64.URLEncoding.Strict().DecodeString(tok)
	if err != nil {
		return nil, bad
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var items []cursorItem
	if err := dec.Decode(&items); err != nil || dec.More() || len(items) != len(keys) {
		return nil, bad
	}
	vals := make([]any, len(items))
	for i, it := range items {
		if it.Type == "null" {
			if string(it.Value) != "null" {
				return nil, bad
			}
			continue
		}
		if it.Type != cursorKind(keys[i].attr) {
			return nil, bad
		}
		var err error
		switch it.Type {
		case "str":
			vals[i], err = unmarshalAs[string](it.Value)
		case "int":
			vals[i], err = unmarshalAs[int](it.Value)
		case "float":
			vals[i], err = unmarshalAs[float64](it.Value)
		case "datetime":
			var v string
			if err = json.Unmarshal(it.Value, &v); err == nil {
				var t time.Time
				t, err = time.Parse(time.RFC3339Nano, v)
				vals[i] = t.UTC()
			}
		}
		if err != nil || string(it.Value) == "null" {
			return nil, bad
		}
	}
	return vals, nil
}

// unmarshalAs decodes raw as a T: the Go type a cursor item's type names.
func unmarshalAs[T any](raw json.RawMessage) (T, error) {
	var v T
	err := json.Unmarshal(raw, &v)
	return v, err
}

// v2CursorPage answers a task instance listing in cursor mode.
func (s *Server) v2CursorPage(c *call, vs []tiView, keys []sortKey, cursor string, limit int) (any, *apiError) {
	full := withTieBreaker(keys)
	sortByKeys(vs, full, tiSortValue)
	after := vs
	if cursor != "" {
		at, aerr := decodeCursor(cursor, full)
		if aerr != nil {
			return nil, aerr
		}
		after = vs[:0:0]
		for _, v := range vs {
			if compareRow(v, at, full) > 0 {
				after = append(after, v)
			}
		}
	}
	rows := page(after, 0, limit)
	more := len(after) > len(rows)
	if cursor == "" && more {
		c.markFirstPage(rows)
	}
	out := v2TICursorCollection{TaskInstances: make([]v2TI, 0, len(rows))}
	for _, v := range rows {
		out.TaskInstances = append(out.TaskInstances, renderV2TI(v))
	}
	if len(rows) > 0 {
		last, first := encodeCursor(rows[len(rows)-1], full), encodeCursor(rows[0], full)
		// 3.2.2-3.2.x point next_cursor at the last row of every non-empty
		// page; 3.3 reads one row more and knows when there is no next
		// page. previous_cursor is not modelled beyond that: null on 3.3's
		// first page, the first row's token otherwise.
		if more || !s.has(capV2CursorEndNull) {
			out.NextCursor = &last
		}
		if cursor != "" || !s.has(capV2CursorEndNull) {
			out.PreviousCursor = &first
		}
	}
	return out, nil
}

// compareRow compares a row with a cursor's values in the listing's order.
func compareRow(v tiView, at []any, keys []sortKey) int {
	for i, k := range keys {
		if c := compareSortValues(tiSortValue(v, k.attr), at[i], k.desc); c != 0 {
			return c
		}
	}
	return 0
}
