package airflowsim

import (
	"fmt"
	"strconv"
	"strings"
)

// This file is the one place where the simulator's behaviour depends on the
// scenario's airflowVersion. Each behaviour that differs between Airflow
// releases is a named capability with the first release that has it; the
// handlers ask for the capability, never for a version.

// capability is one version-dependent behaviour of the simulated API.
type capability int

const (
	// capV1ParamsSince26: the v1 query parameters the 2.10.0 spec declares
	// and the 2.5.0 spec does not (except executor): updated_at_* on the
	// task instance and DAG run lists, fields, paused, map_index and
	// xcom_key on XCom entries, stringify; and the tries and dependencies
	// endpoints. Before, v1's strict validation answers 400 "Extra query
	// parameter(s)". Their exact release between 2.6 and 2.10 is not
	// modelled: 2.6 has them all (updated_at_* is new in 2.6.0).
	capV1ParamsSince26 capability = iota
	// capV1Executor: the executor filter on the v1 task instance list and
	// in the batch body (new in 2.10.0).
	capV1Executor
	// capV1BatchRunTaskIDs: dag_run_ids and task_ids in the v1 batch body
	// (new in 2.7.1); before, marshmallow rejects them as unknown fields.
	capV1BatchRunTaskIDs
	// capV1BatchPaging: the v1 batch POST applies page_offset/page_limit
	// (default 100), from 2.10.3 (apache/airflow#43479). Before, it returns
	// every match whatever the paging fields say.
	capV1BatchPaging
	// capTryNumberIsAttempt: try_number is the attempt number in every
	// state (2.10.0, apache/airflow#39336). Before, v1 reports the raw
	// column, one lower than the attempt (and than the pod's try_number
	// label) while the task instance is deferred, up_for_reschedule, or
	// scheduled/queued after a trigger resumed it.
	capTryNumberIsAttempt
	// capV2TIFilters31: the operator, try_number and map_index filters of
	// the v2 task instance list (3.1.0). Before, FastAPI ignores them like
	// any undeclared parameter and returns everything.
	capV2TIFilters31
	// capV2NoStatus: state=no_status means NULL (3.1.0); before only
	// "none" does and no_status is a 422 like any unknown state.
	capV2NoStatus
	// capV2LimitCap: v2 list endpoints silently cap limit at [api]
	// maximum_page_limit (3.2.0, apache/airflow#60989); before, uncapped.
	capV2LimitCap
	// capV2Cursor: keyset pagination of the v2 task instance list with a
	// cursor query parameter (3.2.2, apache/airflow#64845 and its backport
	// #65405). Without the parameter the list pages by offset as before.
	capV2Cursor
	// capV2CursorEndNull: next_cursor is null on the last page (the server
	// reads limit+1 rows to know). In 3.2.2-3.2.x next_cursor is the last
	// row's token on every non-empty page, so the client needs one more
	// (empty) page to learn it is done.
	capV2CursorEndNull
)

// capabilities is the table: the first release with each capability.
var capabilities = map[capability]release{
	capV1ParamsSince26:    {2, 6, 0},
	capV1Executor:         {2, 10, 0},
	capV1BatchRunTaskIDs:  {2, 7, 1},
	capV1BatchPaging:      {2, 10, 3},
	capTryNumberIsAttempt: {2, 10, 0},
	capV2TIFilters31:      {3, 1, 0},
	capV2NoStatus:         {3, 1, 0},
	capV2LimitCap:         {3, 2, 0},
	capV2Cursor:           {3, 2, 2},
	capV2CursorEndNull:    {3, 3, 0},
}

// Profile is the behaviour class a version falls in: versions of one
// profile behave alike in everything the simulator models (apart from
// capV2CursorEndNull inside the cursor profile).
type Profile struct {
	// Name is how tests and docs call the profile, e.g. "2.10.3+".
	Name string
	// From is the first release of the profile.
	From string
	// Spec is the official OpenAPI spec closest to the profile, which the
	// simulator's own tests validate its answers against (file name under
	// api/airflow or airflowsim/testdata); the cursor profile has none of
	// its own and uses 3.2.1 with an overlay.
	Spec string
}

// Profiles lists the behaviour profiles, oldest first. Versions between
// two From values belong to the earlier profile.
var Profiles = []Profile{
	{Name: "2.5", From: "2.5.0", Spec: "v1-2.5.0.yaml"},
	{Name: "2.6-2.9", From: "2.6.0", Spec: "v1-2.10.0.yaml"},
	{Name: "2.10.0-2.10.2", From: "2.10.0", Spec: "v1-2.10.0.yaml"},
	{Name: "2.10.3+", From: "2.10.3", Spec: "v1-2.10.0.yaml"},
	{Name: "3.0", From: "3.0.0", Spec: "v2-3.0.2.yaml"},
	{Name: "3.1", From: "3.1.0", Spec: "v2-3.1.8.yaml"},
	{Name: "3.2.0-3.2.1", From: "3.2.0", Spec: "v2-3.2.1.yaml"},
	{Name: "3.2.2+ (cursor)", From: "3.2.2", Spec: "v2-3.2.1.yaml"},
}

// release is a parsed Airflow version.
type release [3]int

func (r release) atLeast(o release) bool {
	for i := range r {
		if r[i] != o[i] {
			return r[i] > o[i]
		}
	}
	return true
}

// parseRelease reads "X.Y[.Z]" with any suffix after the numbers
// ("3.3.0rc1", "2.10.5+astro.1").
func parseRelease(v string) (release, error) {
	var r release
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return r, fmt.Errorf("airflowVersion %q: want X.Y or X.Y.Z", v)
	}
	for i, p := range parts {
		end := 0
		for end < len(p) && p[end] >= '0' && p[end] <= '9' {
			end++
		}
		if end == 0 {
			return r, fmt.Errorf("airflowVersion %q: want X.Y or X.Y.Z", v)
		}
		n, _ := strconv.Atoi(p[:end])
		r[i] = n
	}
	switch {
	case r[0] == 2 && r.atLeast(release{2, 5, 0}), r[0] == 3:
		return r, nil
	case r[0] == 2:
		return r, fmt.Errorf("airflowVersion %q: Airflow 2 before 2.5 is not simulated", v)
	}
	return r, fmt.Errorf("airflowVersion %q: want 2.x (API v1) or 3.x (API v2)", v)
}

// ProfileOf returns the profile a version belongs to.
func ProfileOf(version string) (Profile, error) {
	r, err := parseRelease(version)
	if err != nil {
		return Profile{}, err
	}
	var out Profile
	for _, p := range Profiles {
		from, _ := parseRelease(p.From)
		if r.atLeast(from) && from[0] == r[0] {
			out = p
		}
	}
	return out, nil
}

// has reports whether the simulated version has the capability.
func (r release) has(c capability) bool {
	since, ok := capabilities[c]
	if !ok {
		panic(fmt.Sprintf("airflowsim: capability %d missing from the table", c))
	}
	if since[0] != r[0] {
		// A v1 capability says nothing about v2 and the other way round,
		// except try numbers: every 3.x reports the attempt.
		return c == capTryNumberIsAttempt && r[0] == 3
	}
	return r.atLeast(since)
}

func (s *Server) has(c capability) bool { return s.rel.has(c) }
