package e2e_test

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kpo-reaper/kpo-reaper/e2e/airflowsim"
	"github.com/kpo-reaper/kpo-reaper/e2e/fixture"
)

// TestFaults: whatever goes wrong with Airflow or Kubernetes, a real cycle
// over the seed DAG's zombies exits 1 and writes nothing. Each case then
// heals the fault and runs again, which deletes exactly the zombies: the
// failed cycle had something to delete and left nothing behind that
// matters.
//
// The one exception is short-listing, a fault of the task instance
// listings only: a listing of the seed run only narrows, and what it does
// not show is read with its own GET, so a short listing cannot matter: the
// cycle exits 0 and deletes exactly the zombies.
func TestFaults(t *testing.T) {
	t.Parallel()
	type faultCase struct {
		name string
		// fault is set on the simulator before the cycle; "" for none.
		fault airflowsim.Fault
		// answered, when not 0, is a status some request must have got,
		// to show the cycle met the fault; -1 for a request never answered.
		answered int
		// airflowDown closes the simulator before the cycle.
		airflowDown bool
		// kubeDown points the reaper's kubeconfig at a closed port.
		kubeDown bool
		// wrongAPI configures the other API version than the server's.
		wrongAPI bool
		// harmless: the fault does not touch what the cycle asks, which
		// exits 0 and deletes exactly the zombies.
		harmless bool
	}
	cases := []faultCase{
		{name: "error500", fault: airflowsim.FaultError500, answered: http.StatusInternalServerError},
		{name: "html-login", fault: airflowsim.FaultHTMLLogin},
		{name: "hang", fault: airflowsim.FaultHang, answered: -1},
		{name: "unauthorized", fault: airflowsim.FaultUnauthorized, answered: http.StatusUnauthorized},
		{name: "short-listing", fault: airflowsim.FaultShortListing, harmless: true},
		{name: "airflow-down", airflowDown: true},
		{name: "kube-apiserver-unreachable", kubeDown: true},
		{name: "wrong-api-version", wrongAPI: true},
	}
	for _, fc := range cases {
		t.Run(fc.name, func(t *testing.T) {
			t.Parallel()
			forEachVersion(t, func(t *testing.T, v airflowVersion) {
				e, s := newSeedEnv(t, v)
				healthy := e.config(s.URL, v, nil)
				cfg := e.config(s.URL, v, func(c *fixture.Config) {
					// A hung request costs one timeout, with no retry.
					c.Timeout = 2 * time.Second
					c.MaxRetries = 0
					if fc.wrongAPI {
						c.APIVersion = map[int]string{1: "v2", 2: "v1"}[v.api]
					}
				})
				if fc.fault != "" {
					s.SetFault(fc.fault)
				}
				if fc.airflowDown {
					s.stop()
				}
				if fc.kubeDown {
					cfg = e.config(s.URL, v, func(c *fixture.Config) {
						c.Kubeconfig = unreachableKubeconfig(t, e.kubeconfig)
					})
				}

				if fc.harmless {
					e.runOnce(cfg, 0)
					e.expectGone(fixture.SeedZombies)
					e.expectWrites(fixture.SeedZombies, nil)
					reqs := s.Requests()
					expectNoBacklogListing(t, s.BasePath(), reqs)
					expectEveryPodRead(t, s.BasePath(), reqs, fixture.SeedPods())
					// Healed: the next cycle has nothing left to do.
					s.SetFault(airflowsim.FaultNone)
					e.runOnce(healthy, 0)
					e.expectGone(fixture.SeedZombies)
					e.expectWrites(fixture.SeedZombies, nil)
					return
				}

				res := e.runOnce(cfg, 1)

				e.expectGone(nil)
				e.expectNoWrites(true)
				if fc.answered != 0 && !answered(s.Requests(), fc.answered) {
					t.Errorf("no request was answered %d: the cycle did not meet the fault\nstderr:\n%s", fc.answered, res.Stderr)
				}

				// Healed.
				if fc.airflowDown {
					s = e.startSim(seedScenario(t, v), nil)
					healthy = e.config(s.URL, v, nil)
				}
				s.SetFault(airflowsim.FaultNone)
				e.runOnce(healthy, 0)
				e.expectGone(fixture.SeedZombies)
				e.expectWrites(fixture.SeedZombies, nil)
			})
		})
	}
}

// answered reports whether some request got status (-1: none).
func answered(reqs []airflowsim.RecordedRequest, status int) bool {
	for _, r := range reqs {
		if r.Status == status || (status == -1 && r.Status == 0) {
			return true
		}
	}
	return false
}

// unreachableKubeconfig copies a kubeconfig with its server moved to a
// loopback port nothing listens on.
func unreachableKubeconfig(t *testing.T, kubeconfig string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "https://" + l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), cluster.ServerURL()) {
		t.Fatalf("kubeconfig %s does not name %s", kubeconfig, cluster.ServerURL())
	}
	p := filepath.Join(t.TempDir(), "unreachable.kubeconfig")
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(b), cluster.ServerURL(), closed)), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
