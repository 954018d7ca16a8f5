package e2e_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kpo-reaper/kpo-reaper/e2e/airflowsim"
	"github.com/kpo-reaper/kpo-reaper/e2e/fixture"
)

// TestNameReused: between the verdict and the delete, the zombie is removed
// and a new pod takes its name. The delete's UID precondition makes the
// apiserver refuse (409), so the new pod lives; the cycle still succeeds.
func TestNameReused(t *testing.T) {
	t.Parallel()
	forEachVersion(t, func(t *testing.T, v airflowVersion) {
		e := newEnv(t)
		e.createPods(fixture.SeedPods()...)
		oldUID := e.uids[fixture.ZombiePod]
		var newUID atomic.Value
		var fired atomic.Int32
		s := e.startSim(seedScenario(t, v), func(sim *airflowsim.Server) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				// The re-check right before the delete: swap the pod.
				if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/taskInstances/zombie_kpo_task") && fired.Add(1) == 1 {
					pods := cluster.Admin().CoreV1().Pods(e.ns)
					zero := int64(0)
					if err := pods.Delete(e.ctx, fixture.ZombiePod, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
						t.Errorf("removing %s: %v", fixture.ZombiePod, err)
					}
					p, err := cluster.CreatePod(e.ctx, fixture.SeedPods()[0].Pod(e.ns))
					if err != nil {
						t.Errorf("re-creating %s: %v", fixture.ZombiePod, err)
					} else {
						newUID.Store(string(p.UID))
					}
				}
				sim.ServeHTTP(w, r)
			})
		})
		cfg := e.config(s.URL, v, nil)

		res := e.reaper(0, "run", "--once", "--dry-run=false", "--log-format", "json", "--config", cfg)

		if fired.Load() == 0 {
			t.Fatal("the reaper never re-checked zombie_kpo_task before deleting its pod")
		}
		uid, _ := newUID.Load().(string)
		if uid == "" {
			t.Fatal("the pod was not re-created")
		}
		have := e.pods()
		if p, ok := have[fixture.ZombiePod]; !ok || string(p.UID) != uid || p.DeletionTimestamp != nil {
			t.Errorf("the pod that took the name %s (uid %s) was not left alone: %+v", fixture.ZombiePod, uid, p.ObjectMeta)
		}
		if _, ok := have[fixture.Mapped0Pod]; ok {
			t.Errorf("%s was not deleted", fixture.Mapped0Pod)
		}
		for _, name := range fixture.SeedLive {
			if p, ok := have[name]; !ok || p.DeletionTimestamp != nil {
				t.Errorf("%s was not kept", name)
			}
		}
		if l := podLogs(t, res.Stderr)[fixture.ZombiePod]; l["action"] != "replaced" {
			t.Errorf("log line of %s: %v, want action replaced", fixture.ZombiePod, l)
		}
		var got []string
		for _, ev := range writes(e.syncAudit()) {
			if isEvent(ev) {
				continue
			}
			got = append(got, fmt.Sprintf("%s %s %d", ev.Verb, ev.Name, ev.Code))
			if ev.Verb == "delete" && ev.Name == fixture.ZombiePod {
				var opts struct {
					Preconditions struct {
						UID string `json:"uid"`
					} `json:"preconditions"`
				}
				if err := json.Unmarshal(ev.RequestObject, &opts); err != nil || opts.Preconditions.UID != string(oldUID) {
					t.Errorf("delete of %s: precondition uid %q, want the old pod's %s (%v)", fixture.ZombiePod, opts.Preconditions.UID, oldUID, err)
				}
			}
		}
		sort.Strings(got)
		want := []string{"delete " + fixture.Mapped0Pod + " 200", "delete " + fixture.ZombiePod + " 409"}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("the reaper's writes: %q, want %q", got, want)
		}
	})
}

// TestSecretsNotLogged: neither the password, nor the basic credentials,
// nor an Airflow 3 access token appear in any output, at debug level too.
func TestSecretsNotLogged(t *testing.T) {
	t.Parallel()
	forEachVersion(t, func(t *testing.T, v airflowVersion) {
		e := newEnv(t)
		e.createPods(fixture.SeedPods()...)
		const password = "e2e-Pa55word-must-stay-secret"
		sc := seedScenario(t, v)
		sc.Auth.Password = password
		s := e.startSim(sc, nil)
		cfg := e.config(s.URL, v, func(c *fixture.Config) { c.Username, c.Password = "admin", password })

		var outputs []string
		for _, args := range [][]string{
			{"plan", "--config", cfg, "--log-level", "debug"},
			{"plan", "--config", cfg, "-o", "json", "--log-level", "debug"},
			{"run", "--once", "--dry-run=false", "--config", cfg, "--log-level", "debug"},
			{"run", "--once", "--dry-run=false", "--config", cfg, "--log-level", "debug", "--log-format", "json"},
		} {
			res := e.reaper(0, args...)
			outputs = append(outputs, res.Stdout, res.Stderr)
		}
		e.expectGone(fixture.SeedZombies)

		secrets := map[string]string{
			"password":         password,
			"basic credential": base64.StdEncoding.EncodeToString([]byte("admin:" + password)),
			// The header of every token the simulator signs.
			"JWT": base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS512","typ":"JWT"}`)),
		}
		for _, out := range outputs {
			for what, secret := range secrets {
				if strings.Contains(out, secret) {
					t.Errorf("the %s appears in the output:\n%s", what, out)
				}
			}
		}
	})
}

// TestUsageErrors: bad flags and configuration exit 2 before contacting
// Airflow or the cluster.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	v := airflowVersions[1]
	e, s := newSeedEnv(t, v)
	cfg := e.config(s.URL, v, nil)
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	typo := strings.Replace(cfg, "kpo-reaper.yaml", "typo.yaml", 1)
	if err := os.WriteFile(typo, []byte(strings.Replace(string(b), "confirmations:", "confirmation:", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"run", "--once", "--dry-run=false", "--config", typo},
		{"run", "--once", "--dry-run=maybe", "--config", cfg},
		{"run", "--once", "--dry-run=false", "--no-such-flag", "--config", cfg},
		{"plan", "-o", "xml", "--config", cfg},
	} {
		e.reaper(2, args...)
	}
	if reqs := s.Requests(); len(reqs) != 0 {
		t.Errorf("a usage error still asked Airflow: %+v", reqs)
	}
	e.expectGone(nil)
	for _, ev := range e.syncAudit() {
		t.Errorf("a usage error still asked the cluster: %s", ev)
	}
}
