package transport

import (
	"context"
	"fmt"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
)

// ErrInconsistentListing is wrapped by ListAll when every scan of a paged
// listing disagreed with the total the server reported.
// It concerns that one listing only (airflow.RequestScoped).
var ErrInconsistentListing error = requestScoped("inconsistent listing")

// requestScoped is a sentinel that airflow.RequestScoped accepts.
type requestScoped string

func (e requestScoped) Error() string       { return string(e) }
func (e requestScoped) RequestScoped() bool { return true }

// ListScans is how many times ListAll scans a listing before giving up: the
// first scan and two rescans.
const ListScans = 3

// maxPages guards against a server that keeps reporting a growing total.
const maxPages = 100000

// Page is one page of an offset-paged Airflow listing.
type Page[T any] struct {
	Items []T
	// Total is total_entries: the count of matching rows when the server
	// answered this page.
	Total int
}

// ListAll reads an offset-paged listing completely or fails.
//
// Airflow's offset paging promises little: API v1 runs OFFSET/LIMIT without
// ORDER BY, so rows can repeat or go missing between pages even on a quiet
// table, and in both APIs rows that change state mid-scan shift the rest.
// So the scan advances by the rows actually returned, stops on an empty
// page or when the offset reaches total_entries (never on a short page,
// servers cap the limit), dedupes by key (the later copy wins), and then
// requires that every page reported the same total and that the number of
// distinct keys equals it. A scan that fails this is repeated from the
// start, up to ListScans scans in all; then the listing is an error, never
// a shorter answer.
//
// what names the listing in errors ("GET /api/v1/dags").
func ListAll[K comparable, T any](ctx context.Context, what string, fetch func(ctx context.Context, offset int) (Page[T], error), key func(T) (K, error)) ([]T, error) {
	var reason string
	for scan := 1; scan <= ListScans; scan++ {
		items, why, err := scanOnce(ctx, fetch, key)
		if err != nil {
			return nil, err
		}
		if why == "" {
			return items, nil
		}
		reason = why
	}
	return nil, fmt.Errorf("%s: %w after %d scans: %s", what, ErrInconsistentListing, ListScans, reason)
}

// ListIDs is ListAll for a listing of plain ids (DAG ids, run ids), each
// its own key.
func ListIDs(ctx context.Context, what string, fetch func(ctx context.Context, offset int) (Page[string], error)) ([]string, error) {
	return ListAll(ctx, what, fetch, func(id string) (string, error) { return id, nil })
}

// ListRunIDs lists the run ids of dagID with fetch, naming the DAG in
// an error; an empty listing is an answer only once getDag finds the DAG
// (airflow.ConfirmEmpty).
func ListRunIDs(ctx context.Context, what, dagID string, fetch func(ctx context.Context, offset int) (Page[string], error), getDag func() error) ([]string, error) {
	ids, err := ListIDs(ctx, what, fetch)
	if err != nil {
		err = fmt.Errorf("dag %s: %w", dagID, err)
	}
	return airflow.ConfirmEmpty(ids, err, getDag)
}

// IDPage is a page of a listing of total rows, each named by its id. Where
// lacks names a row without an id ("a DAG without dag_id"), such a row
// makes the page an error.
func IDPage[R any](what string, total int, rows []R, id func(R) string, lacks string) (Page[string], error) {
	p := Page[string]{Total: total}
	for _, r := range rows {
		s := id(r)
		if s == "" && lacks != "" {
			return p, fmt.Errorf("%s: %s", what, lacks)
		}
		p.Items = append(p.Items, s)
	}
	return p, nil
}

func scanOnce[K comparable, T any](ctx context.Context, fetch func(ctx context.Context, offset int) (Page[T], error), key func(T) (K, error)) ([]T, string, error) {
	index := map[K]int{}
	var items []T
	total, offset := -1, 0
	for pages := 0; ; pages++ {
		if err := ctx.Err(); err != nil {
			return nil, "", err
		}
		if pages >= maxPages {
			return nil, "", fmt.Errorf("listing did not end after %d pages", maxPages)
		}
		p, err := fetch(ctx, offset)
		if err != nil {
			return nil, "", err
		}
		if p.Total < 0 {
			return nil, "", fmt.Errorf("negative total_entries %d", p.Total)
		}
		if total < 0 {
			total = p.Total
		} else if p.Total != total {
			return nil, fmt.Sprintf("total_entries changed from %d to %d between pages", total, p.Total), nil
		}
		if len(p.Items) == 0 {
			break
		}
		for _, it := range p.Items {
			k, err := key(it)
			if err != nil {
				return nil, "", err
			}
			if i, ok := index[k]; ok {
				items[i] = it
				continue
			}
			index[k] = len(items)
			items = append(items, it)
		}
		offset += len(p.Items)
		if offset >= total {
			break
		}
	}
	if len(items) != total {
		return nil, fmt.Sprintf("read %d distinct rows but total_entries is %d", len(items), total), nil
	}
	return items, "", nil
}

// ListSome pages a listing that only narrows (it stands in for exact
// lookups and never proves absence) by offset, reading at most budget rows:
// it stops at an empty page, after the last row the total announces, once
// budget rows were read, or after the first page when the total says the
// listing holds more than budget rows. It checks no completeness, since a
// row it misses costs an exact lookup, never a verdict; on an error it
// returns the rows read before it.
func ListSome[T any](ctx context.Context, budget, pageSize int, fetch func(ctx context.Context, offset, limit int) (Page[T], error)) ([]T, error) {
	var out []T
	offset := 0
	for pages := 0; pages < maxPages; pages++ {
		limit := min(pageSize, budget-len(out))
		if limit <= 0 {
			break
		}
		if err := ctx.Err(); err != nil {
			return out, err
		}
		p, err := fetch(ctx, offset, limit)
		if err != nil {
			return out, err
		}
		out = append(out, p.Items...)
		offset += len(p.Items)
		if len(p.Items) == 0 || offset >= p.Total || p.Total > budget {
			break
		}
	}
	return out, nil
}
