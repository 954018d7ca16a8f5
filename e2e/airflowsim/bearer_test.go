package airflowsim

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestBearerTokens: tokens of an external issuer (auth.bearerTokens and
// WithBearerValidator) are accepted on both APIs besides the usual
// credentials, and a wrong one is 401 in each API's error shape.
func TestBearerTokens(t *testing.T) {
	for _, version := range []string{"2.10.5", "3.2.1"} {
		t.Run(version, func(t *testing.T) {
			sc := mustParse(t, fmt.Sprintf(`airflowVersion: %q
auth: {username: admin, password: admin, bearerTokens: [static-token-1, static-token-2]}
dags: [{dagId: d}]
runs: [{dagId: d, runId: r}]
taskInstances: [{dagId: d, runId: r, taskId: t, state: running}]
`, version))
			minted := map[string]bool{"ya29.minted": true}
			c := newClient(t, sc, WithBearerValidator(func(tok string) bool { return minted[tok] }))
			list := c.sim.BasePath() + "/dags/~/dagRuns/~/taskInstances"
			for _, tok := range []string{"static-token-1", "static-token-2", "ya29.minted"} {
				c.expect(c.get(list, "", authHeader("Bearer "+tok)), 200)
			}
			for _, tok := range []string{"wrong", "static-token-1x", "ya29.other"} {
				e := c.expect(c.get(list, "", authHeader("Bearer "+tok)), 401)
				if c.sim.APIVersion() == 1 {
					if ct := e.header.Get("Content-Type"); ct != "application/problem+json" {
						t.Errorf("v1 401 Content-Type %q", ct)
					}
					if o := e.obj(t); o["status"] != 401.0 || o["title"] != "Unauthorized" {
						t.Errorf("v1 401 body %v", o)
					}
				} else if o := e.obj(t); o["detail"] != "Not authenticated" {
					t.Errorf("v2 401 body %v", o)
				}
			}
			// A JWT of another server is a wrong token too: 401, not the
			// 403 "Invalid JWT token" of a bare Airflow 3.
			if c.sim.APIVersion() == 2 {
				other := New(sc)
				c.expect(c.get(list, "", authHeader("Bearer "+other.IssueToken())), 401)
				c.login()
				c.expect(c.get(list, ""), 200)
			} else {
				c.expect(c.get(list, ""), 200) // basic auth
			}
			var ok, bad int
			for _, r := range c.sim.Requests() {
				if r.Path != list {
					continue
				}
				if r.AuthOK != (r.Status == http.StatusOK) {
					t.Errorf("%d recorded with AuthOK %v", r.Status, r.AuthOK)
				}
				if r.AuthOK {
					ok++
				} else {
					bad++
				}
			}
			if ok != 4 || bad != map[int]int{1: 3, 2: 4}[c.sim.APIVersion()] {
				t.Errorf("%d accepted, %d refused", ok, bad)
			}
		})
	}
}

// TestBearerOnlyScenario: a platform stand-in may have no API user at all;
// then empty basic credentials and logins fail.
func TestBearerOnlyScenario(t *testing.T) {
	sc := mustParse(t, `airflowVersion: "2.9.3"
auth: {bearerTokens: [only]}
dags: [{dagId: d}]
`)
	c := newClient(t, sc)
	c.expect(c.get("/api/v1/dags", "", authHeader("Bearer only")), 200)
	c.expect(c.get("/api/v1/dags", "", authHeader("Basic Og==")), 401) // ":"
	if _, err := ParseScenario([]byte("airflowVersion: '3.2.1'\nauth: {bearerTokens: ['a b']}")); err == nil || !strings.Contains(err.Error(), "whitespace") {
		t.Errorf("token with a space accepted: %v", err)
	}
	v2 := newClient(t, mustParse(t, "airflowVersion: '3.2.1'\nauth: {bearerTokens: [only]}\n"))
	v2.expect(v2.post("/auth/token", jsonBody(map[string]string{"username": "", "password": ""}), noAuth()), 400)
	v2.expect(v2.get("/api/v2/dags", "", authHeader("Bearer only")), 200)
}
