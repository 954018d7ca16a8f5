package production_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// clientGoElector is client-go's own leader election on the reaper's
// Lease, with the timings the daemon is given below.
type clientGoElector struct {
	id      string
	started chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}

	mu      sync.Mutex
	leaders []string // every leader it observed, in order
}

func startClientGoElector(t *testing.T, e *env, id string) *clientGoElector {
	t.Helper()
	ctx, cancel := context.WithCancel(e.ctx)
	c := &clientGoElector{id: id, started: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: e.ns, Name: "kpo-reaper"},
		Client:     cluster.Admin().CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id},
	}
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: time.Second,
		ReleaseOnCancel: true, Name: id,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) { close(c.started) },
			OnStoppedLeading: func() {},
			OnNewLeader: func(leader string) {
				c.mu.Lock()
				c.leaders = append(c.leaders, leader)
				c.mu.Unlock()
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(c.done)
		le.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-c.done })
	return c
}

// sawLeader reports whether it observed a leader whose identity starts
// with prefix.
func (c *clientGoElector) sawLeader(prefix string) (bool, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.leaders {
		if strings.HasPrefix(l, prefix) {
			return true, ""
		}
	}
	return false, fmt.Sprintf("%s observed leaders %q", c.id, c.leaders)
}

func (c *clientGoElector) leading() bool {
	select {
	case <-c.started:
		return true
	default:
		return false
	}
}

// TestOwnElectorAndClientGoShareALease: the reaper's own Lease elector and
// client-go's leaderelection keep one Lease between them. While client-go
// holds it the daemon stands by (naming that leader, running no cycle);
// when client-go releases it the daemon takes it over; a client-go elector
// started then sees the daemon as the leader and waits; when the daemon
// stops and releases the Lease, client-go takes it over.
func TestOwnElectorAndClientGoShareALease(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, url := e.startSim(seedScenario(t, "seed-v1.yaml"))
	cfg := e.configFile(url, "basic", cluster.AdminKubeconfig(), true,
		"leaderElection:\n  enabled: true\n  leaseName: kpo-reaper\n  leaseNamespace: "+e.ns+"\n"+
			"  leaseDuration: 4s\n  renewDeadline: 3s\n  retryPeriod: 1s\n")

	a := startClientGoElector(t, e, "client-go-a")
	e.eventually(30*time.Second, "client-go-a leading", func() (bool, string) { return a.leading(), "" })

	d := startDaemon(t, "reaper", daemonArgs(cfg), append(baseEnv(), "POD_NAME=reaper-0", "POD_NAMESPACE="+e.ns), "/healthz")
	e.eventually(30*time.Second, "the daemon standing by for client-go-a", func() (bool, string) {
		return strings.Contains(d.output(), `"msg":"standing by","leader":"client-go-a"`), d.tail(5)
	})
	m := d.metrics()
	expectMetric(t, m, "kpo_reaper_leader", nil, equal(0), "== 0 while client-go leads")
	if v, _ := m.value("kpo_reaper_cycles_total", nil); v != 0 {
		t.Errorf("the standby ran %v cycles, want 0", v)
	}
	if h := e.leaseHolder(); h != "client-go-a" {
		t.Fatalf("the Lease is held by %q while client-go-a leads", h)
	}

	// client-go releases the Lease: the daemon takes it over.
	a.cancel()
	<-a.done
	d.waitMetric(e.ctx, 30*time.Second, "kpo_reaper_leader", nil, "== 1 after client-go released", equal(1))
	if h := e.waitLeaseHolder(30*time.Second, "reaper-0"); h != "reaper-0" {
		t.Fatalf("the Lease is held by %q, want the daemon", h)
	}
	d.waitMetric(e.ctx, 30*time.Second, "kpo_reaper_cycles_total", map[string]string{"result": "success"}, ">= 1 as the leader", atLeast(1))

	// A client-go elector sees the daemon as the leader and waits.
	b := startClientGoElector(t, e, "client-go-b")
	e.eventually(30*time.Second, "client-go-b observing the daemon as the leader", func() (bool, string) { return b.sawLeader("reaper-0_") })
	if b.leading() {
		t.Fatal("client-go-b leads while the daemon holds the Lease")
	}

	// The daemon stops and releases the Lease: client-go takes it over.
	d.terminate()
	e.eventually(30*time.Second, "client-go-b leading after the daemon released the Lease", func() (bool, string) { return b.leading(), e.leaseHolder() })
	if h := e.leaseHolder(); h != "client-go-b" {
		t.Errorf("the Lease is held by %q, want client-go-b", h)
	}
}
