package leader

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kpo-reaper/kpo-reaper/internal/kube/clientset"
)

// Fast retries; a lease so long that a standby can only take over when
// the leader releases it.
var testCfg = Options{LeaseName: "kpo-reaper", Namespace: "ops", LeaseDuration: time.Hour, RenewDeadline: 200 * time.Millisecond, RetryPeriod: 10 * time.Millisecond}

func opts(id string, onChange func(bool)) Options {
	o := testCfg
	o.Identity, o.OnChange, o.Log = id, onChange, slog.New(slog.DiscardHandler)
	return o
}

type replica struct {
	e       *Elector
	changes chan bool
	cancel  context.CancelFunc
	done    <-chan struct{}
	leadCtx atomic.Pointer[context.Context]
}

func start(t *testing.T, cs *fake.Clientset, id string) *replica {
	t.Helper()
	r := &replica{changes: make(chan bool, 10)}
	e, err := New(clientset.Of(cs), opts(id, func(l bool) { r.changes <- l }))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.e, r.cancel = e, cancel
	r.done = e.Run(ctx, func(lctx context.Context) { r.leadCtx.Store(&lctx); <-lctx.Done() })
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

func (r *replica) next(t *testing.T) bool {
	t.Helper()
	select {
	case l := <-r.changes:
		return l
	case <-time.After(30 * time.Second):
		t.Fatal("no leadership change")
		return false
	}
}

func TestStandbyTakesOverWhenTheLeaderReleases(t *testing.T) {
	cs := fake.NewClientset()
	a := start(t, cs, "a")
	if !a.next(t) || !a.e.IsLeader() {
		t.Fatal("the only replica did not become the leader")
	}
	b := start(t, cs, "b")
	if b.e.IsLeader() {
		t.Fatal("the standby says it leads")
	}
	a.cancel()
	<-a.done
	if a.next(t) || a.e.IsLeader() {
		t.Fatal("the stopped leader still leads")
	}
	if lctx := a.leadCtx.Load(); lctx == nil || (*lctx).Err() == nil {
		t.Fatal("the leader's work was not cancelled")
	}
	if !b.next(t) || !b.e.IsLeader() {
		t.Fatal("the standby did not take the released lease")
	}
	l, err := cs.CoordinationV1().Leases("ops").Get(context.Background(), "kpo-reaper", metav1.GetOptions{})
	if err != nil || *l.Spec.HolderIdentity != "b" || *l.Spec.LeaseTransitions != 1 {
		t.Fatalf("lease after the takeover: %+v, %v", l, err)
	}
}

func TestLeadershipEndsWhenRenewalsFail(t *testing.T) {
	cs := fake.NewClientset()
	var failing atomic.Bool
	cs.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if failing.Load() {
			return true, nil, errors.New("apiserver unavailable")
		}
		return false, nil, nil
	})
	a := start(t, cs, "a")
	if !a.next(t) {
		t.Fatal("not the leader")
	}
	failing.Store(true)
	if a.next(t) || a.e.IsLeader() {
		t.Fatal("still the leader after renewals failed for renewDeadline")
	}
	if lctx := a.leadCtx.Load(); lctx == nil || (*lctx).Err() == nil {
		t.Fatal("the leader's work was not cancelled")
	}
}

func TestIsLeaderTurnsFalseOnceARenewalIsOverdue(t *testing.T) {
	e, err := New(clientset.Of(fake.NewClientset()), opts("a", nil))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	e.now = func() time.Time { return now }
	e.leading.Store(true)
	e.lastRenew.Store(now.UnixNano())
	if !e.IsLeader() {
		t.Fatal("just renewed, not the leader")
	}
	now = now.Add(testCfg.RenewDeadline)
	if e.IsLeader() {
		t.Fatal("a renewal is overdue, still the leader")
	}
}

func TestOptionsAreCheckedOnce(t *testing.T) {
	for name, o := range map[string]Options{
		"no identity":             opts("", nil),
		"renew deadline too long": func() Options { o := opts("a", nil); o.RenewDeadline = o.LeaseDuration; return o }(),
		"no retry period":         func() Options { o := opts("a", nil); o.RetryPeriod = 0; return o }(),
	} {
		if _, err := New(clientset.Of(fake.NewClientset()), o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
