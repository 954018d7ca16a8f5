// Package leader elects one deleting replica among several with a
// coordination.k8s.io Lease, for reapers that run as a sidecar in every
// scheduler pod.
package leader

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/kpo-reaper/kpo-reaper/internal/config"
)

const serviceAccountNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// Identity is the pod name (POD_NAME from the downward API), else the host
// name; a random suffix keeps two processes on one host apart.
func Identity(pod string) string {
	id := pod
	if id == "" {
		id, _ = os.Hostname()
	}
	return fmt.Sprintf("%s_%d", id, time.Now().UnixNano()%1000000)
}

// LeaseNamespace is leaderElection.leaseNamespace, else the pod's own
// namespace: podNamespace (POD_NAMESPACE from the downward API), else the
// service account's.
func LeaseNamespace(c config.LeaderElection, podNamespace string) (string, error) {
	if c.LeaseNamespace != "" {
		return c.LeaseNamespace, nil
	}
	if podNamespace != "" {
		return podNamespace, nil
	}
	if b, err := os.ReadFile(serviceAccountNamespaceFile); err == nil && strings.TrimSpace(string(b)) != "" {
		return strings.TrimSpace(string(b)), nil
	}
	return "", fmt.Errorf("leaderElection.leaseNamespace: required when not running in a pod (set it, or POD_NAMESPACE)")
}

// Elector runs the election and answers, at any moment, whether this
// replica may delete.
type Elector struct {
	cfg     leaderelection.LeaderElectionConfig
	log     *slog.Logger
	le      atomic.Pointer[leaderelection.LeaderElector]
	leading atomic.Bool
	lead    func(ctx context.Context)
}

// IsLeader is checked right before every delete: the flag drops as soon as
// the elector gives up the lease, and the observed record must still name us.
func (e *Elector) IsLeader() bool {
	le := e.le.Load()
	return e.leading.Load() && le != nil && le.IsLeader()
}

// New prepares an election for the lease; Run starts it. onChange reports
// every transition.
func New(cs kubernetes.Interface, c config.LeaderElection, namespace, identity string, log *slog.Logger, onChange func(leading bool)) (*Elector, error) {
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, namespace, c.LeaseName,
		cs.CoreV1(), cs.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: identity})
	if err != nil {
		return nil, fmt.Errorf("leader election lock: %w", err)
	}
	e := &Elector{log: log}
	e.cfg = leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   c.LeaseDuration,
		RenewDeadline:   c.RenewDeadline,
		RetryPeriod:     c.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            c.LeaseName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) {
				e.leading.Store(true)
				log.Info("became the leader", "lease", namespace+"/"+c.LeaseName, "identity", identity)
				onChange(true)
				e.lead(lctx)
			},
			OnStoppedLeading: func() {
				e.leading.Store(false)
				log.Info("not the leader", "lease", namespace+"/"+c.LeaseName, "identity", identity)
				onChange(false)
			},
			OnNewLeader: func(holder string) {
				if holder != identity {
					log.Info("standing by", "leader", holder)
				}
			},
		},
	}
	first, err := leaderelection.NewLeaderElector(e.cfg)
	if err != nil {
		return nil, fmt.Errorf("leaderElection: %w", err)
	}
	e.le.Store(first)
	return e, nil
}

// Run contends for the lease until ctx ends. While leading, lead runs with a
// context that is cancelled the moment leadership is lost; then the replica
// contends again as a standby. The channel closes when Run is done.
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context)) <-chan struct{} {
	e.lead = lead
	done := make(chan struct{})
	go func() {
		defer close(done)
		for le := e.le.Load(); ctx.Err() == nil; {
			le.Run(ctx) // returns when leadership is lost or ctx ends
			if ctx.Err() != nil {
				return
			}
			next, err := leaderelection.NewLeaderElector(e.cfg)
			if err != nil {
				e.log.Error("leader election stopped", "error", err)
				return
			}
			e.le.Store(next)
			le = next
		}
	}()
	return done
}
