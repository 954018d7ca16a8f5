package airflowsim

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
)

// TestParamTablesMatchSpec checks, for every version profile, that the
// simulator serves operations that exist in the profile's spec, under the
// spec's paths, and declares exactly the spec's query parameters with the
// spec's types. v1's strict "Extra query parameter(s)" check and v2's
// "ignore the undeclared" both rest on these tables, so they must not
// drift. Where a profile has no spec of its own, only what the profile
// changes is compared (see partial).
func TestParamTablesMatchSpec(t *testing.T) {
	// partial: profiles checked only on these parameters of these
	// operations, because their spec is of a neighbouring release. 2.6-2.9
	// is 2.10.0 without executor; 3.0 and 3.1 are checked on the filters
	// the simulator switches by version (the other parameters added up to
	// 3.2 are kept in every 3.x, see v2TIParams).
	gated := map[string][]string{"get_task_instances": {"try_number", "operator", "map_index", "cursor"}}
	partial := map[string]map[string][]string{
		"2.6-2.9": {"get_task_instances": {"executor", "updated_at_gte", "updated_at_lte", "state"}},
		"3.0":     gated,
		"3.1":     gated,
	}
	for _, prof := range Profiles {
		rel, err := parseRelease(prof.From)
		if err != nil {
			t.Fatal(err)
		}
		sp := specFor(t, prof)
		prefix, routes := "", v1Routes(rel)
		if rel[0] == 3 {
			prefix, routes = "/api/v2", v2Routes(rel)
		}
		only := partial[prof.Name]
		for _, rt := range routes {
			specPath := prefix + "/" + strings.ReplaceAll(strings.Join(rt.pattern, "/"), ":int}", "}")
			item := sp.doc.Paths.Value(specPath)
			if item == nil {
				t.Errorf("%s: %s: path %s not in spec %s", prof.Name, rt.op, specPath, prof.Spec)
				continue
			}
			op := item.GetOperation(rt.method)
			if op == nil || op.OperationID != rt.op {
				t.Errorf("%s: %s %s: spec operation is %v, want %s", prof.Name, rt.method, specPath, op, rt.op)
				continue
			}
			if rt.stub || (only != nil && only[rt.op] == nil) {
				continue
			}
			want := map[string]qparam{}
			for _, ps := range []openapi3.Parameters{item.Parameters, op.Parameters} {
				for _, pr := range ps {
					if pr.Value.In == openapi3.ParameterInQuery {
						want[pr.Value.Name] = specKind(t, rt.op, pr.Value)
					}
				}
			}
			got := map[string]qparam{}
			for _, pr := range rt.params {
				if _, dup := got[pr.name]; dup {
					t.Errorf("%s: %s: %s declared twice", prof.Name, rt.op, pr.name)
				}
				got[pr.name] = pr
			}
			if names := only[rt.op]; names != nil {
				// Compare on the listed names only, and for 2.6-2.9 expect
				// the 2.10.0 spec's executor to be absent.
				w, g := map[string]qparam{}, map[string]qparam{}
				for _, n := range names {
					if v, ok := want[n]; ok && (prof.Name != "2.6-2.9" || n != "executor") {
						w[n] = v
					}
					if v, ok := got[n]; ok {
						g[n] = v
					}
				}
				want, got = w, g
			}
			for name, w := range want {
				g, ok := got[name]
				switch {
				case !ok:
					t.Errorf("%s: %s: spec parameter %s missing from the simulator's table", prof.Name, rt.op, name)
				case g.kind != w.kind || g.hasMin != w.hasMin || g.min != w.min:
					t.Errorf("%s: %s: %s is %+v in the simulator, %+v in the spec", prof.Name, rt.op, name, g, w)
				}
			}
			for name := range got {
				if _, ok := want[name]; !ok {
					t.Errorf("%s: %s: %s is not a spec parameter", prof.Name, rt.op, name)
				}
			}
		}
	}
}

func specKind(t *testing.T, op string, p *openapi3.Parameter) qparam {
	s := p.Schema.Value
	q := qparam{name: p.Name}
	typ := func(s *openapi3.Schema) string {
		for _, ty := range []string{"array", "integer", "number", "boolean", "string"} {
			if s.Type.Includes(ty) {
				return ty
			}
		}
		return ""
	}
	switch typ(s) {
	case "array":
		q.kind = qStrs
		if typ(s.Items.Value) == "integer" {
			q.kind = qInts
		}
	case "integer":
		q.kind = qInt
		if s.Min != nil {
			q.min, q.hasMin = int(*s.Min), true
		}
	case "number":
		q.kind = qNum
	case "boolean":
		q.kind = qBool
	case "string":
		q.kind = qStr
		if s.Format == "date-time" {
			q.kind = qTime
		}
	default:
		t.Fatalf("%s: parameter %s has an unexpected schema", op, p.Name)
	}
	return q
}

// TestValidatorCatchesDrift proves the spec checks in these tests bite:
// real simulator answers, altered the way a drifting simulator would
// answer, must be rejected.
func TestValidatorCatchesDrift(t *testing.T) {
	for _, tc := range []struct {
		api     int
		path    string
		mutate  func(ti map[string]any)
		rejects string
	}{
		{1, "/api/v1/dags/~/dagRuns/~/taskInstances", func(ti map[string]any) { ti["state"] = "finished" }, "state"},
		{1, "/api/v1/dags/~/dagRuns/~/taskInstances", func(ti map[string]any) { ti["start_date"] = "yesterday" }, "start_date"},
		{1, "/api/v1/dags/~/dagRuns/~/taskInstances", func(ti map[string]any) { ti["try_number"] = "1" }, "try_number"},
		{1, "/api/v1/dags/~/dagRuns/~/taskInstances", func(ti map[string]any) { ti["hostname"] = nil }, "hostname"},
		{2, "/api/v2/dags/~/dagRuns/~/taskInstances", func(ti map[string]any) { delete(ti, "id") }, "id"},
		{2, "/api/v2/dags/~/dagRuns/~/taskInstances", func(ti map[string]any) { ti["id"] = "42" }, "id"},
		{2, "/api/v2/dags/~/dagRuns/~/taskInstances", func(ti map[string]any) { ti["state"] = "none" }, "state"},
		{2, "/api/v2/dags/~/dagRuns/~/taskInstances", func(ti map[string]any) { ti["run_after"] = nil }, "run_after"},
		{2, "/api/v2/dags/~/dagRuns/~/taskInstances", func(ti map[string]any) { ti["end_date"] = "2026-11-27 06:00" }, "end_date"},
		{2, "/api/v2/dags/~/dagRuns/~/taskInstances", func(ti map[string]any) { ti["pool_slots"] = 1.5 }, "pool_slots"},
	} {
		c := seed(t, tc.api)
		x := c.expect(c.get(tc.path, ""), 200)
		var body map[string]any
		x.decode(t, &body)
		tc.mutate(body["task_instances"].([]any)[0].(map[string]any))
		x.body, _ = json.Marshal(body)
		in := c.validationInput(http.MethodGet, tc.path)
		err := c.validateResponse(c.api, in, x)
		if err == nil || !strings.Contains(err.Error(), tc.rejects) {
			t.Errorf("v%d: altered %s accepted or rejected for another reason: %v", tc.api, tc.rejects, err)
		}
	}

	c := seed(t, 2)
	in := c.validationInput(http.MethodGet, "/api/v2/dags/~/dagRuns/~/taskInstances")
	for _, body := range []string{`{"detail":"x"}`, `{"detail":[{"msg":"m","type":"t"}]}`} {
		x := exchange{status: 422, header: http.Header{"Content-Type": {"application/json"}}, body: []byte(body)}
		if c.validateResponse(c.api, in, x) == nil {
			t.Errorf("422 %s accepted", body)
		}
	}
	c1 := seed(t, 1)
	in = c1.validationInput(http.MethodGet, "/api/v1/dags/~/dagRuns/~/taskInstances")
	for _, body := range []string{`{"type":"about:blank","status":400}`, `{"detail":"x"}`} {
		x := exchange{status: 400, header: http.Header{"Content-Type": {"application/problem+json"}}, body: []byte(body)}
		if c1.validateResponse(c1.api, in, x) == nil {
			t.Errorf("v1 error %s accepted", body)
		}
	}
}

func mustURL(path string) *url.URL {
	return &url.URL{Path: path}
}

func (c *client) validationInput(method, path string) *openapi3filter.RequestValidationInput {
	c.t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, c.srv.URL+path, bytes.NewReader(nil))
	if err != nil {
		c.t.Fatal(err)
	}
	route, params, err := c.api.router.FindRoute(req)
	if err != nil {
		c.t.Fatal(err)
	}
	return &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route}
}

// TestEveryServedOperationIsExercised keeps the endpoint tests honest: each
// non-stub operation the simulator serves is hit, and so checked against
// the spec, by TestV1Endpoints and TestV2Endpoints.
func TestEveryServedOperationIsExercised(t *testing.T) {
	for _, tc := range []struct {
		api  int
		run  func(*testing.T)
		rts  []*route
		name string
	}{{1, TestV1Endpoints, v1Routes(release{2, 10, 5}), "TestV1Endpoints"}, {2, TestV2Endpoints, v2Routes(release{3, 2, 1}), "TestV2Endpoints"}} {
		hit := map[string]bool{}
		recordOps = func(s *Server, reqs []RecordedRequest) {
			for _, r := range reqs {
				segs, _ := splitPath(mustURL(r.Path))
				if len(segs) < 2 {
					continue
				}
				for _, m := range []string{http.MethodGet, http.MethodPost} {
					if m != r.Method {
						continue
					}
					if rt, _, _ := s.match(m, segs[2:]); rt != nil {
						hit[rt.op] = true
					}
				}
			}
		}
		t.Run(tc.name, tc.run) // its cleanups, which report the requests, run before Run returns
		recordOps = nil
		var missed []string
		for _, rt := range tc.rts {
			if !rt.stub && !hit[rt.op] {
				missed = append(missed, rt.op)
			}
		}
		sort.Strings(missed)
		if len(missed) > 0 {
			t.Errorf("%s does not exercise %v", tc.name, missed)
		}
	}
}
