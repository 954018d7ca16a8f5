package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kpo-reaper/kpo-reaper/internal/kube"
)

// Options are one election's settings. The durations follow client-go's
// leaderelection: leaseDuration > renewDeadline > retryPeriod > 0.
type Options struct {
	LeaseName, Namespace, Identity string
	LeaseDuration, RenewDeadline   time.Duration
	RetryPeriod                    time.Duration
	Log                            *slog.Logger
	// OnChange reports every transition; nil reports none.
	OnChange func(leading bool)
}

// Validate is the one check of the options, made by New.
func (o Options) Validate() error {
	var errs []error
	if o.LeaseName == "" || o.Namespace == "" || o.Identity == "" {
		errs = append(errs, errors.New("leader election: lease name, namespace and identity are required"))
	}
	if o.RetryPeriod <= 0 || o.RenewDeadline <= o.RetryPeriod || o.LeaseDuration <= o.RenewDeadline {
		errs = append(errs, fmt.Errorf("leader election: durations must satisfy leaseDuration (%s) > renewDeadline (%s) > retryPeriod (%s) > 0",
			o.LeaseDuration, o.RenewDeadline, o.RetryPeriod))
	}
	return errors.Join(errs...)
}

// Elector runs the election and answers, at any moment, whether this
// replica may write. It follows client-go's leaderelection protocol on a
// coordination.k8s.io/v1 Lease (holderIdentity, leaseDurationSeconds,
// acquireTime, renewTime, leaseTransitions; updates guarded by the
// resourceVersion), so it can share a Lease with client-go's electors, but
// it is written against kube.Client: client-go's package pulls in every API
// group of Kubernetes.
type Elector struct {
	leases    kube.LeaseClient
	name      string
	namespace string
	identity  string
	cfg       Options
	log       *slog.Logger
	onChange  func(leading bool)
	now       func() time.Time

	leading   atomic.Bool
	lastRenew atomic.Int64 // UnixNano of the last successful write of the Lease as holder

	// Only the Run goroutine touches these.
	observed     coordinationv1.LeaseSpec
	observedTime time.Time
	announced    string
}

// New prepares an election for the lease; Run starts it.
func New(c kube.Client, o Options) (*Elector, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	log, onChange := o.Log, o.OnChange
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if onChange == nil {
		onChange = func(bool) {}
	}
	return &Elector{
		leases: c.CoordinationV1().Leases(o.Namespace), name: o.LeaseName, namespace: o.Namespace,
		identity: o.Identity, cfg: o, log: log, onChange: onChange, now: time.Now,
	}, nil
}

// IsLeader is checked right before every write. It turns false as soon as
// a renewal is overdue, even if the renewing goroutine is still waiting on
// the apiserver: another replica may take the Lease over once it expires.
func (e *Elector) IsLeader() bool {
	return e.leading.Load() && e.now().Sub(time.Unix(0, e.lastRenew.Load())) < e.cfg.RenewDeadline
}

// Run contends for the lease until ctx ends. While leading, lead runs with a
// context that is cancelled the moment leadership is lost; then the replica
// contends again as a standby. When ctx ends while leading, the Lease is
// released after lead returned, so a standby takes over at once. The
// channel closes when Run is done.
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context)) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e.acquire(ctx) {
			e.leading.Store(true)
			e.log.Info("became the leader", "lease", e.namespace+"/"+e.name, "identity", e.identity)
			e.onChange(true)
			lctx, cancel := context.WithCancel(ctx)
			led := make(chan struct{})
			go func() {
				defer close(led)
				lead(lctx)
			}()
			e.renew(lctx)
			e.leading.Store(false)
			cancel()
			<-led
			if ctx.Err() != nil {
				e.release()
			}
			e.log.Info("not the leader", "lease", e.namespace+"/"+e.name, "identity", e.identity)
			e.onChange(false)
		}
	}()
	return done
}

// acquire tries every retryPeriod (with jitter, as client-go does) until
// the Lease is ours; false when ctx ended first.
func (e *Elector) acquire(ctx context.Context) bool {
	for {
		if ctx.Err() != nil {
			return false // checked first: after a release, the free Lease must not be taken again
		}
		if e.tryAcquireOrRenew(ctx) {
			return true
		}
		if !wait(ctx, e.cfg.RetryPeriod+time.Duration(rand.Float64()*0.2*float64(e.cfg.RetryPeriod))) {
			return false
		}
	}
}

// renew renews every retryPeriod and returns when a renewal could not be
// made within renewDeadline of the last one, or ctx ended.
func (e *Elector) renew(ctx context.Context) {
	for wait(ctx, e.cfg.RetryPeriod) {
		deadline := time.Unix(0, e.lastRenew.Load()).Add(e.cfg.RenewDeadline)
		for {
			rctx, cancel := context.WithDeadline(ctx, deadline)
			ok := e.tryAcquireOrRenew(rctx)
			cancel()
			if ok {
				break
			}
			if ctx.Err() != nil || !e.now().Before(deadline) {
				e.log.Warn("could not renew the lease in time", "lease", e.namespace+"/"+e.name, "renewDeadline", e.cfg.RenewDeadline)
				return
			}
			if !wait(ctx, e.cfg.RetryPeriod) {
				return
			}
		}
	}
}

// tryAcquireOrRenew makes one attempt to hold the Lease.
func (e *Elector) tryAcquireOrRenew(ctx context.Context) bool {
	now := metav1.NewMicroTime(e.now())
	lease, err := e.leases.Get(ctx, e.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		created, err := e.leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: e.name, Namespace: e.namespace},
			Spec:       e.holderSpec(now, now, 0),
		}, metav1.CreateOptions{})
		if err != nil {
			e.log.Debug("lease create failed", "lease", e.namespace+"/"+e.name, "error", err.Error())
			return false
		}
		e.held(created.Spec, now.Time)
		return true
	}
	if err != nil {
		e.log.Debug("lease read failed", "lease", e.namespace+"/"+e.name, "error", err.Error())
		return false
	}
	e.observe(lease.Spec)
	holder := ptr.Deref(lease.Spec.HolderIdentity, "")
	if holder != "" && holder != e.identity &&
		e.observedTime.Add(time.Duration(ptr.Deref(lease.Spec.LeaseDurationSeconds, 0))*time.Second).After(now.Time) {
		return false // held by another replica and not expired by our own clock
	}
	acquired, transitions := now, ptr.Deref(lease.Spec.LeaseTransitions, 0)
	if holder == e.identity && lease.Spec.AcquireTime != nil {
		acquired = *lease.Spec.AcquireTime
	} else {
		transitions++
	}
	lease.Spec = e.holderSpec(acquired, now, transitions)
	updated, err := e.leases.Update(ctx, lease, metav1.UpdateOptions{}) // resourceVersion: a concurrent writer makes this a conflict
	if err != nil {
		e.log.Debug("lease update failed", "lease", e.namespace+"/"+e.name, "error", err.Error())
		return false
	}
	e.held(updated.Spec, now.Time)
	return true
}

func (e *Elector) holderSpec(acquired, renewed metav1.MicroTime, transitions int32) coordinationv1.LeaseSpec {
	seconds := int32(e.cfg.LeaseDuration / time.Second)
	return coordinationv1.LeaseSpec{
		HolderIdentity: &e.identity, LeaseDurationSeconds: &seconds,
		AcquireTime: &acquired, RenewTime: &renewed, LeaseTransitions: &transitions,
	}
}

func (e *Elector) held(spec coordinationv1.LeaseSpec, at time.Time) {
	e.observed, e.observedTime = spec, at
	e.lastRenew.Store(at.UnixNano())
}

// observe keeps the time at which the Lease last changed, by our clock:
// expiry is judged from it, never from the holder's timestamps, so clock
// skew between replicas cannot shorten a lease.
func (e *Elector) observe(spec coordinationv1.LeaseSpec) {
	if ptr.Deref(spec.HolderIdentity, "") == ptr.Deref(e.observed.HolderIdentity, "") && spec.RenewTime.Equal(e.observed.RenewTime) {
		return
	}
	e.observed, e.observedTime = spec, e.now()
	if h := ptr.Deref(spec.HolderIdentity, ""); h != "" && h != e.identity && h != e.announced {
		e.announced = h
		e.log.Info("standing by", "leader", h)
	}
}

// release gives the Lease up (holder empty, one-second duration, as
// client-go does), with a budget of its own: ctx has ended.
func (e *Elector) release() {
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.RenewDeadline)
	defer cancel()
	lease, err := e.leases.Get(ctx, e.name, metav1.GetOptions{})
	if err != nil || ptr.Deref(lease.Spec.HolderIdentity, "") != e.identity {
		return
	}
	now, one, empty := metav1.NewMicroTime(e.now()), int32(1), ""
	lease.Spec.HolderIdentity, lease.Spec.LeaseDurationSeconds = &empty, &one
	lease.Spec.AcquireTime, lease.Spec.RenewTime = &now, &now
	if _, err := e.leases.Update(ctx, lease, metav1.UpdateOptions{}); err != nil {
		e.log.Warn("could not release the lease", "lease", e.namespace+"/"+e.name, "error", err.Error())
	}
}

// wait is a pause that ends early, and returns false, when ctx ends.
func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
