// Package connect picks the Airflow REST API version and returns the
// matching airflow.Client after the server has answered its version.
package connect

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
	"github.com/kpo-reaper/kpo-reaper/internal/airflow/transport"
	v1 "github.com/kpo-reaper/kpo-reaper/internal/airflow/v1"
	v2 "github.com/kpo-reaper/kpo-reaper/internal/airflow/v2"
)

// Options configures Connect.
type Options struct {
	// BaseURL is the webserver's (2.x) or API server's (3.x) base URL.
	BaseURL string
	// Shown names the Airflow in errors when BaseURL is not what the user
	// configured (MWAA); empty shows BaseURL without credentials.
	Shown string
	// APIVersion is auto ("" too), v1 or v2.
	APIVersion string
	HTTPClient *http.Client
	// PageSize is the listings' page size; 0 is the default.
	PageSize int
}

// Connect returns the client for the API version and the server's Airflow
// version.
//
// auto asks GET /api/v2/version and, when that is a 404 of any kind (an
// Airflow 2 webserver answers its HTML 404 page), GET /api/v1/version. Both
// endpoints are public in Airflow, but the client sends its credentials
// anyway, which also surfaces an auth misconfiguration at start-up rather
// than in the first cycle. An explicit version is checked the same way, so
// a mismatch fails here with a message instead of as 404s later.
//
// The version answered must belong to the API asked (2.x to v1, 3.x to
// v2): a front that maps paths (MWAA's InvokeRestApi takes paths without
// the /api/vN prefix) can answer /api/v2/version for an Airflow 2, and
// auto then moves to v1. The answered version also selects what the
// client sends: cursor paging only where the server has it.
func Connect(ctx context.Context, o Options) (airflow.Client, string, error) {
	u, err := url.Parse(o.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, "", fmt.Errorf("airflow.url %q is not an http(s) URL", o.BaseURL)
	}
	shown := o.Shown
	if shown == "" {
		shown = transport.RedactURL(o.BaseURL)
	}
	if p := strings.TrimRight(u.Path, "/"); strings.HasSuffix(p, "/api/v1") || strings.HasSuffix(p, "/api/v2") {
		return nil, "", fmt.Errorf("airflow.url %s: remove the %s suffix, give the webserver's base URL", shown, p[len(p)-7:])
	}
	base := strings.TrimRight(o.BaseURL, "/")
	paging := airflow.Paging{PageSize: o.PageSize}
	hc := o.HTTPClient

	probe1 := v1.New(base, hc, paging)
	probe2, err := v2.New(base, hc, paging)
	if err != nil {
		return nil, "", err
	}
	useV1 := func(ver string) (airflow.Client, string, error) {
		if major(ver) != 2 {
			return nil, "", fmt.Errorf("airflow.url %s: /api/v1/version answered Airflow %q, not 2.x: set airflow.apiVersion to auto or v2", shown, ver)
		}
		p := paging
		p.Batch = V1Batch(ver)
		return v1.New(base, hc, p), ver, nil
	}
	useV2 := func(ver string) (airflow.Client, string, error) {
		if major(ver) != 3 {
			return nil, "", fmt.Errorf("airflow.url %s: /api/v2/version answered Airflow %q, not 3.x: set airflow.apiVersion to auto or v1", shown, ver)
		}
		p := paging
		p.Cursor = HasCursorPaging(ver)
		c, err := v2.New(base, hc, p)
		return c, ver, err
	}

	switch o.APIVersion {
	case "", "auto":
		ver, err2 := probe2.ServerVersion(ctx)
		if err2 == nil {
			if major(ver) == 2 {
				break // a path-mapping front: ask v1 below
			}
			return useV2(ver)
		}
		if !transport.IsStatus(err2, http.StatusNotFound) {
			return nil, "", fmt.Errorf("airflow.url %s: asking the Airflow 3 API for its version: %w", shown, err2)
		}
		ver, err1 := probe1.ServerVersion(ctx)
		if err1 == nil {
			return useV1(ver)
		}
		if transport.IsStatus(err1, http.StatusNotFound) {
			return nil, "", fmt.Errorf("airflow.url %s answered 404 for both /api/v2/version and /api/v1/version: is the URL the webserver's base URL without /api/v1? (%w; %w)", shown, err2, err1)
		}
		return nil, "", fmt.Errorf("airflow.url %s: /api/v2/version answered 404, and asking the Airflow 2 API for its version failed: %w", shown, err1)
	case "v1":
	case "v2":
		ver, err := probe2.ServerVersion(ctx)
		if err != nil {
			if transport.IsStatus(err, http.StatusNotFound) {
				return nil, "", fmt.Errorf("airflow.apiVersion is v2 but %s answered 404 for /api/v2/version: Airflow 2 has only /api/v1 (set airflow.apiVersion to v1 or auto), or airflow.url is not the API server's base URL: %w", shown, err)
			}
			return nil, "", fmt.Errorf("airflow.url %s: asking the Airflow 3 API for its version: %w", shown, err)
		}
		return useV2(ver)
	default:
		return nil, "", fmt.Errorf("airflow.apiVersion %q is not one of auto, v1, v2", o.APIVersion)
	}
	// v1, named or reached by auto through a path-mapping front.
	ver, err := probe1.ServerVersion(ctx)
	if err != nil {
		if transport.IsStatus(err, http.StatusNotFound) {
			return nil, "", fmt.Errorf("airflow.apiVersion is v1 but %s answered 404 for /api/v1/version: Airflow 3 has only /api/v2 (set airflow.apiVersion to v2 or auto), or airflow.url is not the webserver's base URL: %w", shown, err)
		}
		return nil, "", fmt.Errorf("airflow.url %s: asking the Airflow 2 API for its version: %w", shown, err)
	}
	return useV1(ver)
}

// HasCursorPaging reports whether an Airflow 3 version pages task-instance
// lists by cursor: apache/airflow#64845, backported to 3.2.2 (#65405).
// Offsets would work there too, but a keyset cursor cannot skip a row when
// another leaves the listing mid-scan.
func HasCursorPaging(version string) bool {
	v := parse(version)
	return v[0] > 3 || (v[0] == 3 && (v[1] > 2 || (v[1] == 2 && v[2] >= 2)))
}

// V1Batch says what an Airflow 2 version's batch task-instance listing can
// do: filter by run and task from 2.7.1, page from 2.10.3
// (apache/airflow#43479).
func V1Batch(version string) airflow.Batch {
	switch v := parse(version); {
	case v[0] != 2:
		return airflow.BatchNone
	case v[1] > 10 || v[1] == 10 && v[2] >= 3:
		return airflow.BatchPaged
	case v[1] > 7 || v[1] == 7 && v[2] >= 1:
		return airflow.BatchUnpaged
	}
	return airflow.BatchNone
}

func major(version string) int { return parse(version)[0] }

// parse reads "3.2.2", "3.3.0rc1" or "2.10.5+astro.1" leniently: digits up
// to the first non-digit of each part; what it cannot read is 0, which
// selects the most conservative behaviour.
func parse(version string) [3]int {
	var out [3]int
	for i, part := range strings.SplitN(version, ".", 3) {
		end := 0
		for end < len(part) && part[end] >= '0' && part[end] <= '9' {
			end++
		}
		out[i], _ = strconv.Atoi(part[:end])
	}
	return out
}
