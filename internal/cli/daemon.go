package cli

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/kpo-reaper/kpo-reaper/internal/config"
	"github.com/kpo-reaper/kpo-reaper/internal/events"
	"github.com/kpo-reaper/kpo-reaper/internal/kube"
	"github.com/kpo-reaper/kpo-reaper/internal/leader"
	"github.com/kpo-reaper/kpo-reaper/internal/metrics"
	"github.com/kpo-reaper/kpo-reaper/internal/reaper"
	"github.com/kpo-reaper/kpo-reaper/internal/selfcheck"
	"github.com/kpo-reaper/kpo-reaper/internal/server"
)

// runReaper is `run`: the self-check, then one cycle (--once) or the loop,
// with metrics, health, events and, if configured, leader election.
func runReaper(ctx context.Context, c *config.Config, once bool, log *slog.Logger) error {
	m := metrics.New()
	e, err := connectEdges(ctx, c, log, m.ObserveRequest)
	if err != nil {
		return err
	}
	dryRun := c.Reaper.DryRun
	leaseNS := ""
	if c.LeaderElection.Enabled {
		if leaseNS, err = leader.LeaseNamespace(c.LeaderElection, e.self.Namespace); err != nil {
			return usageError{err}
		}
	}
	if err := selfCheck(ctx, c, e, dryRun, !once, leaseNS, log); err != nil {
		return err
	}

	var rec events.Recorder = events.Noop{}
	if !dryRun {
		rec = events.NewKube(e.kube, events.SelfReference(e.self.Namespace, e.self.Name, e.self.UID), log)
	}
	defer rec.Flush()
	health := &server.Health{Interval: c.Reaper.Interval, Now: time.Now}
	var mayWrite func() bool
	observe := func(rep *reaper.Report, err error) {
		m.ObserveCycle(rep, err, time.Now())
		health.CycleDone(err)
		if ctx.Err() == nil && (mayWrite == nil || mayWrite()) {
			// An Event is a write too: none from a replica that lost the
			// Lease or is shutting down.
			rec.Cycle(rep, err)
		}
	}

	if once {
		r := newReaper(c, e, listPods(c, e), dryRun, log)
		rep, err := r.Cycle(ctx)
		observe(rep, err)
		return err
	}

	if c.Server.Address != "" {
		if _, err := server.Serve(ctx, c.Server.Address, server.Handler(m.Registry, health), log); err != nil {
			return usageError{err}
		}
	}
	pods := kube.NewWatchLister(e.kube, c.Kubernetes.Namespaces, kube.Selector(c.Kubernetes.LabelSelector))
	if err := pods.Start(ctx); err != nil {
		return fmt.Errorf("%w: %w", ErrStartup, err)
	}
	r := newReaper(c, e, pods, dryRun, log)

	if !c.LeaderElection.Enabled {
		m.SetLeader(true)
		loop(ctx, r, c.Reaper.Interval, observe, log)
		return nil
	}
	health.SetStandby(true)
	m.SetLeader(false)
	el, err := leader.New(e.kube, c.LeaderElection, leaseNS, leader.Identity(e.self.Name), log, func(leading bool) {
		m.SetLeader(leading)
		health.SetStandby(!leading)
	})
	if err != nil {
		return usageError{err}
	}
	r.MayWrite, mayWrite = el.IsLeader, el.IsLeader
	<-el.Run(ctx, func(lctx context.Context) { loop(lctx, r, c.Reaper.Interval, observe, log) })
	return nil
}

func selfCheck(ctx context.Context, c *config.Config, e *edges, dryRun, watch bool, leaseNS string, log *slog.Logger) error {
	needs := selfcheck.Needs(c.Kubernetes.Namespaces, dryRun, watch, leaseNS, c.LeaderElection.LeaseName)
	if err := selfcheck.Kubernetes(ctx, e.kube, needs); err != nil {
		return fmt.Errorf("%w: start-up self-check:\n%w", ErrStartup, err)
	}
	// --once skips the Airflow check: its one cycle makes the same listing
	// at once and fails closed on the same errors.
	if watch {
		if err := selfcheck.Airflow(ctx, e.airflow); err != nil {
			return fmt.Errorf("%w: start-up self-check: %w", ErrStartup, err)
		}
	}
	log.Info("self-check passed", "permissions", len(needs), "airflow", e.airflow.APIVersion())
	return nil
}

// loop runs cycles until the context ends: at once, then every interval. A
// failed cycle is logged and the next one tries again; nothing was deleted
// by it. Pod events never trigger a cycle, so churn costs no Airflow calls.
func loop(ctx context.Context, r *reaper.Reaper, interval time.Duration, observe func(*reaper.Report, error), log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		rep, err := r.Cycle(ctx)
		if ctx.Err() == nil {
			observe(rep, err)
		}
		select {
		case <-ctx.Done():
			log.Info("stopping the loop")
			return
		case <-t.C:
		}
	}
}
