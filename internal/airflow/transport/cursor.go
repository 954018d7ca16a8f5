package transport

import (
	"context"
	"errors"
	"fmt"
)

// ErrNoCursor is returned by ListByCursor when the server answered the
// first page without cursors: it does not page this listing by cursor (an
// older server ignores the unknown parameter), and the caller falls back to
// offsets.
var ErrNoCursor = errors.New("the server did not answer with cursor paging")

// CursorPage is one page of a cursor-paged (keyset) Airflow listing.
type CursorPage[T any] struct {
	Items []T
	// Next is next_cursor: nil when the server says no page follows.
	Next *string
	// Cursored reports whether the answer had the cursor shape (a
	// next_cursor key, no total_entries); false means offset paging.
	Cursored bool
}

// ListByCursor reads a cursor-paged listing completely or fails.
//
// A keyset cursor on (order_by keys, id) cannot skip a row that stays in
// the listing while others leave it, which offset paging can. There is no
// total_entries to check against, so completeness rests on the cursor
// chain: it starts at "" (the first page), every next cursor must differ
// from all earlier ones, and the chain ends only on an empty page or a null
// next_cursor. Airflow 3.2.2 returns a next_cursor even on the last page
// (apache/airflow#64845 review), so an empty page is the usual end there.
// A row that comes back twice (a retry moved it past the cursor with a new
// id) is deduped by key, the later copy winning.
func ListByCursor[K comparable, T any](ctx context.Context, what string, fetch func(ctx context.Context, cursor string) (CursorPage[T], error), key func(T) (K, error)) ([]T, error) {
	index := map[K]int{}
	var items []T
	seen := map[string]bool{"": true}
	cursor := ""
	for pages := 0; ; pages++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if pages >= maxPages {
			return nil, fmt.Errorf("%s: listing did not end after %d pages", what, maxPages)
		}
		p, err := fetch(ctx, cursor)
		if err != nil {
			return nil, err
		}
		if !p.Cursored {
			if pages == 0 {
				return nil, ErrNoCursor
			}
			// A server cannot change paging mode mid-listing; something
			// between us and Airflow is answering instead.
			return nil, fmt.Errorf("%s: %w: page %d answered without cursors", what, ErrInconsistentListing, pages+1)
		}
		for _, it := range p.Items {
			k, err := key(it)
			if err != nil {
				return nil, err
			}
			if i, ok := index[k]; ok {
				items[i] = it
				continue
			}
			index[k] = len(items)
			items = append(items, it)
		}
		if len(p.Items) == 0 || p.Next == nil {
			return items, nil
		}
		if seen[*p.Next] {
			return nil, fmt.Errorf("%s: %w: next_cursor repeats an earlier cursor after page %d", what, ErrInconsistentListing, pages+1)
		}
		seen[*p.Next] = true
		cursor = *p.Next
	}
}
