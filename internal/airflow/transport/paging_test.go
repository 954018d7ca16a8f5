package transport

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// pager serves rows [0, n) in pages; hooks let tests misbehave per call.
type pager struct {
	rows  []int
	cap   int // server-side page cap
	calls int
	total func(call int) int
	page  func(call, offset int) []int // overrides the normal page
}

func (p *pager) fetch(_ context.Context, offset int) (Page[int], error) {
	p.calls++
	total := len(p.rows)
	if p.total != nil {
		total = p.total(p.calls)
	}
	if p.page != nil {
		if items := p.page(p.calls, offset); items != nil {
			return Page[int]{Items: items, Total: total}, nil
		}
	}
	end := min(offset+p.cap, len(p.rows))
	if offset >= end {
		return Page[int]{Total: total}, nil
	}
	return Page[int]{Items: p.rows[offset:end], Total: total}, nil
}

func rows(n int) []int {
	r := make([]int, n)
	for i := range r {
		r[i] = i
	}
	return r
}

func key(i int) (int, error) { return i, nil }

func TestListAllPagesByRowsReturned(t *testing.T) {
	p := &pager{rows: rows(250), cap: 40} // the server caps below the requested limit
	got, err := ListAll(context.Background(), "test", p.fetch, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 250 || got[249] != 249 || p.calls != 7 {
		t.Fatalf("%d rows in %d calls", len(got), p.calls)
	}
}

func TestListAllEmpty(t *testing.T) {
	p := &pager{cap: 100}
	got, err := ListAll(context.Background(), "test", p.fetch, key)
	if err != nil || len(got) != 0 || p.calls != 1 {
		t.Fatalf("%v %v %d", got, err, p.calls)
	}
}

func TestListAllPersistentDuplicatesFail(t *testing.T) {
	// Page two repeats a row of page one instead of row 100, as an
	// unordered OFFSET/LIMIT can.
	p := &pager{rows: rows(150), cap: 100}
	p.page = func(_, offset int) []int {
		if offset == 100 {
			return append([]int{99}, p.rows[101:150]...)
		}
		return nil
	}
	_, err := ListAll(context.Background(), "GET /api/v1/x", p.fetch, key)
	if !errors.Is(err, ErrInconsistentListing) {
		t.Fatalf("err %v", err)
	}
	if p.calls != 2*ListScans {
		t.Fatalf("%d calls, want %d (every scan)", p.calls, 2*ListScans)
	}
	if !strings.Contains(err.Error(), "read 149 distinct rows but total_entries is 150") || !strings.Contains(err.Error(), "GET /api/v1/x") {
		t.Fatalf("err %v", err)
	}
}

func TestListAllRescanRecovers(t *testing.T) {
	p := &pager{rows: rows(150), cap: 100}
	p.page = func(call, _ int) []int {
		if call == 2 { // only the first scan sees the duplicate
			return append([]int{99}, p.rows[101:150]...)
		}
		return nil
	}
	got, err := ListAll(context.Background(), "test", p.fetch, key)
	if err != nil || len(got) != 150 || p.calls != 4 {
		t.Fatalf("%d rows, %v, %d calls", len(got), err, p.calls)
	}
}

func TestListAllTotalAboveRowsFails(t *testing.T) {
	p := &pager{rows: rows(120), cap: 100, total: func(int) int { return 121 }}
	_, err := ListAll(context.Background(), "test", p.fetch, key)
	if !errors.Is(err, ErrInconsistentListing) || !strings.Contains(err.Error(), "read 120 distinct rows but total_entries is 121") {
		t.Fatalf("err %v", err)
	}
}

func TestListAllTotalChangingFails(t *testing.T) {
	p := &pager{rows: rows(150), cap: 100, total: func(call int) int { return 150 + call%2 }}
	_, err := ListAll(context.Background(), "test", p.fetch, key)
	if !errors.Is(err, ErrInconsistentListing) || !strings.Contains(err.Error(), "changed") {
		t.Fatalf("err %v", err)
	}
}

func TestListAllTotalBelowRowsFails(t *testing.T) {
	p := &pager{rows: rows(50), cap: 100, total: func(int) int { return 40 }}
	if _, err := ListAll(context.Background(), "test", p.fetch, key); !errors.Is(err, ErrInconsistentListing) {
		t.Fatalf("err %v", err)
	}
}

func TestListAllDuplicateWithCompleteCountIsKept(t *testing.T) {
	// A v2 task retried mid-scan gets a new id and shows up again at the
	// end: the later copy wins and the count still matches.
	p := &pager{rows: rows(3), cap: 2}
	p.page = func(_, offset int) []int {
		if offset == 2 {
			return []int{2, 0}
		}
		return nil
	}
	got, err := ListAll(context.Background(), "test", p.fetch, key)
	if err != nil || fmt.Sprint(got) != "[0 1 2]" {
		t.Fatalf("%v %v", got, err)
	}
}

func TestListAllFetchErrorIsNotRetried(t *testing.T) {
	calls := 0
	boom := errors.New("boom")
	_, err := ListAll(context.Background(), "test", func(context.Context, int) (Page[int], error) {
		calls++
		return Page[int]{}, boom
	}, key)
	if !errors.Is(err, boom) || calls != 1 {
		t.Fatalf("%v after %d calls", err, calls)
	}
}

func TestIDPageRefusesARowWithoutAnIDWhenAsked(t *testing.T) {
	rows := []string{"a", ""}
	id := func(s string) string { return s }
	if _, err := IDPage("GET /x", 2, rows, id, "a DAG without dag_id"); err == nil || err.Error() != "GET /x: a DAG without dag_id" {
		t.Fatalf("err %v, want one naming the row without an id", err)
	}
	if p, err := IDPage("GET /x", 2, rows, id, ""); err != nil || p.Total != 2 || len(p.Items) != 2 {
		t.Fatalf("page %+v, err %v; want both rows of 2", p, err)
	}
}
