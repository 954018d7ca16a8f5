package production_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kpo-reaper/kpo-reaper/e2e/airflowsim"
	"github.com/kpo-reaper/kpo-reaper/e2e/fixture"
)

// TestDaemonWaitsForAirflowAtStartUp: a daemon started while Airflow does
// not answer stays up. It serves /healthz (200: liveness must not restart
// it), /metrics (failed cycles counted) and /readyz (503, saying it is
// starting and why), and raises the CycleFailedClosed Warning on its own
// pod; nothing is deleted. Once a simulator answers at the configured URL
// the daemon starts cycling without a restart: the zombies go and /readyz
// turns 200.
func TestDaemonWaitsForAirflowAtStartUp(t *testing.T) {
	t.Parallel()
	e, kubeconfig, user, self := newSeededDaemonEnv(t, "kpo-reaper-7c9d8b6f5-start")

	addr := freeAddr(t) // Airflow's address; nothing listens there yet
	cfg := e.configFile("http://"+addr, "airflow-jwt", kubeconfig, false, "")
	env := append(baseEnv(), "POD_NAMESPACE="+e.ns, "POD_NAME="+self.Name, "POD_UID="+string(self.UID))
	d := startDaemon(t, "reaper", daemonArgs(cfg), env, "/healthz")

	d.waitMetric(e.ctx, 60*time.Second, "kpo_reaper_cycles_total", map[string]string{"result": "failure"}, ">= 2 (it retries)", atLeast(2))
	if d.Exited() {
		t.Fatalf("the daemon exited while Airflow was down:\n%s", d.tail(20))
	}
	if v, ok := d.metrics().value("kpo_reaper_build_info", nil); !ok || v != 1 {
		t.Errorf("/metrics while Airflow is down: kpo_reaper_build_info %v %v, want 1", v, ok)
	}
	code, body, err := d.get("/readyz")
	if err != nil || code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "starting: ") || !strings.Contains(body, addr) {
		t.Errorf("/readyz while Airflow is down: %d %q %v; want 503 saying it is starting and naming %s", code, body, err, addr)
	}
	expectStatus(t, d, "/healthz", http.StatusOK)
	e.eventually(30*time.Second, "a CycleFailedClosed Warning on the reaper's pod", func() (bool, string) {
		evs := e.eventsByReason("CycleFailedClosed")
		for _, ev := range evs[self.Name] {
			if ev.Type == corev1.EventTypeWarning && ev.InvolvedObject.UID == self.UID && strings.Contains(ev.Message, "nothing deleted") {
				return true, ""
			}
		}
		return false, fmt.Sprintf("CycleFailedClosed events: %v", evs)
	})
	e.expectSeedUntouched(user, "before Airflow answered")

	// Airflow comes up at the configured address.
	serveSimAt(t, addr, seedScenario(t, "seed-v2.yaml"))
	e.expectSeedReaped(60 * time.Second)
	e.expectReady(d, "once Airflow answers")
	d.terminate()
}

// TestDaemonWaitsForTheAPIServerAtStartUp: the same for the apiserver. The
// daemon's kubeconfig names a proxy that refuses connections at first:
// the daemon stays up, serving /metrics and an unready /readyz; once the
// proxy forwards to the apiserver, it starts and reaps.
func TestDaemonWaitsForTheAPIServerAtStartUp(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	kubeconfig, _ := e.shippedSetup()
	e.createPods(fixture.SeedPods()...)
	_, simURL := e.startSim(seedScenario(t, "seed-v1.yaml"))

	apiserver, proxied := proxiedKubeconfig(t, kubeconfig)
	cfg := e.configFile(simURL, "basic", proxied, false, "")
	d := startDaemon(t, "reaper", daemonArgs(cfg), baseEnv(), "/healthz")
	d.waitMetric(e.ctx, 60*time.Second, "kpo_reaper_cycles_total", map[string]string{"result": "failure"}, ">= 2 (it retries)", atLeast(2))
	code, body, err := d.get("/readyz")
	if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(body, "kubernetes") {
		t.Errorf("/readyz while the apiserver is away: %d %q %v; want 503 naming kubernetes", code, body, err)
	}
	e.expectPresent(append(append([]string(nil), fixture.SeedZombies...), fixture.SeedLive...)...)

	apiserver.forward()
	e.expectSeedReaped(60 * time.Second)
	d.terminate()
}

// TestDaemonBadConfigurationExitsAtOnce: what no retry can mend (here, a
// kubeconfig that does not exist) exits 2 at once, daemon or not.
func TestDaemonBadConfigurationExitsAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, simURL := e.startSim(seedScenario(t, "seed-v1.yaml"))
	cfg := e.configFile(simURL, "basic", t.TempDir()+"/no-such-kubeconfig", false, "")
	p := startProc(t, "reaper", append(daemonArgs(cfg), "--log-format", "text"), append(baseEnv(), "KPO_REAPER_SERVER_ADDRESS="+freeAddr(t)))
	if code := p.exitCode(60 * time.Second); code != 2 {
		t.Fatalf("exit code %d, want 2\n%s", code, p.tail(20))
	}
	if out := p.output(); !strings.Contains(out, "kubernetes.kubeconfig") {
		t.Errorf("the error does not name kubernetes.kubeconfig:\n%s", out)
	}
}

// serveSimAt serves a scenario at addr until the test ends.
func serveSimAt(t *testing.T, addr string, sc *airflowsim.Scenario) *airflowsim.Server {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the address the daemon was given is taken: %v", err)
	}
	s := airflowsim.New(sc)
	srv := &httptest.Server{Listener: l, Config: &http.Server{Handler: s}}
	srv.Start()
	t.Cleanup(func() {
		s.Close()
		srv.Close()
	})
	return s
}

// tcpProxy refuses (closes) every connection until forward is called,
// then pipes each to target.
type tcpProxy struct {
	target string
	mu     sync.Mutex
	open   bool
}

func (p *tcpProxy) forward() {
	p.mu.Lock()
	p.open = true
	p.mu.Unlock()
}

func (p *tcpProxy) serve(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		open := p.open
		p.mu.Unlock()
		if !open {
			c.Close()
			continue
		}
		go func() {
			defer c.Close()
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				return
			}
			defer up.Close()
			go func() { _, _ = io.Copy(up, c) }()
			_, _ = io.Copy(c, up)
		}()
	}
}

// proxiedKubeconfig copies kubeconfig with its server moved behind a
// closed tcpProxy on another loopback port. The apiserver's certificate
// names 127.0.0.1, which the proxy's address still is.
func proxiedKubeconfig(t *testing.T, kubeconfig string) (*tcpProxy, string) {
	t.Helper()
	kc, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	p := &tcpProxy{}
	for _, c := range kc.Clusters {
		u, err := url.Parse(c.Server)
		if err != nil || p.target != "" {
			t.Fatalf("kubeconfig %s: want one cluster with a URL (%v)", kubeconfig, err)
		}
		p.target, u.Host = u.Host, l.Addr().String()
		c.Server = u.String()
	}
	out := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, out); err != nil {
		t.Fatal(err)
	}
	go p.serve(l)
	return p, out
}
