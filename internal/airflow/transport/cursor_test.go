package transport

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
)

// cursorServer pages rows by keyset: the cursor is the last row returned.
type cursorServer struct {
	rows       []int
	limit      int
	nullAtEnd  bool // 3.3: null next_cursor on the last page; 3.2.2: never null on a non-empty page
	calls      int
	beforePage func(call int) // mutates rows between pages
}

func (s *cursorServer) fetch(_ context.Context, cursor string) (CursorPage[int], error) {
	s.calls++
	if s.beforePage != nil {
		s.beforePage(s.calls)
	}
	after := -1
	if cursor != "" {
		after, _ = strconv.Atoi(cursor)
	}
	sorted := slices.Clone(s.rows)
	slices.Sort(sorted)
	var page []int
	for _, r := range sorted {
		if r > after && len(page) < s.limit+1 {
			page = append(page, r)
		}
	}
	more := len(page) > s.limit
	if more {
		page = page[:s.limit]
	}
	p := CursorPage[int]{Items: page, Cursored: true}
	if len(page) > 0 && (more || !s.nullAtEnd) {
		next := strconv.Itoa(page[len(page)-1])
		p.Next = &next
	}
	return p, nil
}

func idKey(i int) (int, error) { return i, nil }

func TestListByCursorEndsOnNullOrEmptyPage(t *testing.T) {
	for _, nullAtEnd := range []bool{true, false} {
		t.Run(fmt.Sprint("nullAtEnd=", nullAtEnd), func(t *testing.T) {
			s := &cursorServer{rows: []int{5, 1, 3, 2, 4, 6, 7}, limit: 3, nullAtEnd: nullAtEnd}
			got, err := ListByCursor(context.Background(), "list", s.fetch, idKey)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, []int{1, 2, 3, 4, 5, 6, 7}) {
				t.Fatalf("got %v", got)
			}
			// 3 full pages; 3.2.2 needs one more, empty, page to learn the end.
			want := 3
			if !nullAtEnd {
				want = 4
			}
			if s.calls != want {
				t.Fatalf("%d calls, want %d", s.calls, want)
			}
		})
	}
}

// A row that leaves the listing mid-scan shifts offset pages and skips a
// row; under a keyset cursor every row that stays is still returned.
func TestListByCursorRowLeavingSkipsNothing(t *testing.T) {
	s := &cursorServer{rows: []int{1, 2, 3, 4, 5, 6}, limit: 2, nullAtEnd: true}
	s.beforePage = func(call int) {
		if call == 2 {
			s.rows = slices.DeleteFunc(s.rows, func(r int) bool { return r == 1 })
		}
	}
	got, err := ListByCursor(context.Background(), "list", s.fetch, idKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []int{2, 3, 4, 5, 6} {
		if !slices.Contains(got, r) {
			t.Fatalf("row %d skipped: %v", r, got)
		}
	}
}

func TestListByCursorRepeatedCursorFails(t *testing.T) {
	next := "abc"
	fetch := func(context.Context, string) (CursorPage[int], error) {
		return CursorPage[int]{Items: []int{1}, Next: &next, Cursored: true}, nil
	}
	_, err := ListByCursor(context.Background(), "list", fetch, idKey)
	if !errors.Is(err, ErrInconsistentListing) {
		t.Fatalf("got %v", err)
	}
}

func TestListByCursorOffsetAnswerFallsBackOrFails(t *testing.T) {
	offsetShaped := func(context.Context, string) (CursorPage[int], error) {
		return CursorPage[int]{Items: []int{1}}, nil
	}
	if _, err := ListByCursor(context.Background(), "list", offsetShaped, idKey); !errors.Is(err, ErrNoCursor) {
		t.Fatalf("first page without cursors: got %v, want ErrNoCursor", err)
	}
	calls := 0
	next := "1"
	switches := func(context.Context, string) (CursorPage[int], error) {
		calls++
		if calls == 1 {
			return CursorPage[int]{Items: []int{1}, Next: &next, Cursored: true}, nil
		}
		return CursorPage[int]{Items: []int{2}}, nil
	}
	if _, err := ListByCursor(context.Background(), "list", switches, idKey); !errors.Is(err, ErrInconsistentListing) {
		t.Fatalf("mode switch mid-listing: got %v", err)
	}
}

func TestListByCursorFetchErrorFails(t *testing.T) {
	boom := errors.New("boom")
	fetch := func(context.Context, string) (CursorPage[int], error) { return CursorPage[int]{}, boom }
	if _, err := ListByCursor(context.Background(), "list", fetch, idKey); !errors.Is(err, boom) {
		t.Fatalf("got %v", err)
	}
}
