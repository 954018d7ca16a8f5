// Package daemon is `run`: it serves health and metrics, waits (with
// backoff) until Airflow and the apiserver answer, then runs one cycle
// (--once) or the loop, with Events and, if configured, leader election.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kpo-reaper/kpo-reaper/internal/config"
	"github.com/kpo-reaper/kpo-reaper/internal/events"
	"github.com/kpo-reaper/kpo-reaper/internal/kube"
	"github.com/kpo-reaper/kpo-reaper/internal/leader"
	"github.com/kpo-reaper/kpo-reaper/internal/metrics"
	"github.com/kpo-reaper/kpo-reaper/internal/reaper"
	"github.com/kpo-reaper/kpo-reaper/internal/selfcheck"
	"github.com/kpo-reaper/kpo-reaper/internal/server"
)

// ErrStartup wraps the reasons a run could not start: Airflow not reached,
// a failed start-up self-check. No cycle ran, so it is not
// reaper.ErrCycleFailed, but it reads as one always has: nothing was
// deleted. Only --once returns it; the daemon waits instead.
var ErrStartup = errors.New(reaper.ErrCycleFailed.Error())

// ConfigError is a problem of the configuration, found before anything was
// asked over the network: retrying cannot help, so the daemon exits at once.
type ConfigError struct{ Err error }

func (e ConfigError) Error() string { return e.Err.Error() }
func (e ConfigError) Unwrap() error { return e.Err }

// Options configure Run.
type Options struct {
	Config *config.Config
	// Once runs one cycle and returns its error (CronJob mode): no server,
	// no waiting for Airflow, no watch.
	Once bool
	Log  *slog.Logger
	Self Self
}

// startBackoff is the wait between start-up attempts: doubling from 1s up
// to reaper.interval (at most a minute), with jitter so replicas spread.
func startBackoff(interval time.Duration) wait.Backoff {
	return wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.2, Steps: 1 << 30, Cap: min(max(interval, time.Second), time.Minute)}
}

// Run runs the reaper until ctx ends (or, with Once, for one cycle).
func Run(ctx context.Context, o Options) error {
	c, log := o.Config, o.Log
	dryRun := c.Reaper.DryRun
	m := metrics.New()
	health := &server.Health{Interval: c.Reaper.Interval, Now: time.Now}
	health.SetStarting("connecting to Airflow and Kubernetes")

	leaseNS := ""
	if c.LeaderElection.Enabled {
		if o.Once {
			return ConfigError{errors.New("leaderElection.enabled cannot be combined with --once: run the CronJob with concurrencyPolicy: Forbid instead")}
		}
		var err error
		if leaseNS, err = leader.LeaseNamespace(c.LeaderElection.LeaseNamespace, o.Self.Namespace); err != nil {
			return ConfigError{err}
		}
	}
	// The server comes first: while Airflow or the apiserver is away,
	// /metrics and /readyz say so, and /healthz keeps the pod alive.
	if !o.Once && c.Server.Address != "" {
		if _, err := server.Serve(ctx, c.Server.Address, server.Handler(m.Registry, health), log); err != nil {
			return ConfigError{err}
		}
	}
	e, err := Build(ctx, c, o.Self, log, m.ObserveRequest)
	if err != nil {
		return err
	}

	var rec events.Recorder = events.Noop{}
	if !dryRun {
		rec = events.NewKube(e.Kube, events.SelfReference(o.Self.Namespace, o.Self.Name, o.Self.UID), log)
	}
	defer rec.Flush()

	d := &daemon{o: o, e: e, m: m, health: health, rec: rec, leaseNS: leaseNS}
	if o.Once {
		if err := d.start(ctx); err != nil {
			d.failed(ctx, err)
			return err
		}
		r := NewReaper(c, e, ListPods(c, e), dryRun, log)
		rep, err := d.cycle(ctx, r)
		d.observe(ctx, rep, err, true)
		return err
	}
	if !d.startWithBackoff(ctx) {
		return nil // stopped while waiting
	}
	health.SetStarting("waiting for the pod cache to sync")
	pods := kube.NewWatchLister(e.Kube, c.Kubernetes.Namespaces, kube.Selector(c.Kubernetes.LabelSelector))
	if err := pods.Start(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("%w: %w", ErrStartup, err)
	}
	health.SetStarting("")
	r := NewReaper(c, e, pods, dryRun, log)

	if !c.LeaderElection.Enabled {
		m.SetLeader(true)
		d.loop(ctx, r, func() bool { return true })
		return nil
	}
	health.SetStandby(true)
	m.SetLeader(false)
	el, err := leader.New(e.Kube, leader.Options{
		LeaseName: c.LeaderElection.LeaseName, Namespace: leaseNS, Identity: leader.Identity(o.Self.Name),
		LeaseDuration: c.LeaderElection.LeaseDuration, RenewDeadline: c.LeaderElection.RenewDeadline, RetryPeriod: c.LeaderElection.RetryPeriod,
		Log: log,
		OnChange: func(leading bool) {
			m.SetLeader(leading)
			health.SetStandby(!leading)
		},
	})
	if err != nil {
		return ConfigError{err}
	}
	r.MayWrite = el.IsLeader
	<-el.Run(ctx, func(lctx context.Context) { d.loop(lctx, r, el.IsLeader) })
	return nil
}

type daemon struct {
	o       Options
	e       *Edges
	m       *metrics.Metrics
	health  *server.Health
	rec     events.Recorder
	leaseNS string
}

// start connects to Airflow and makes the self-check: what must answer
// before a cycle can run.
func (d *daemon) start(ctx context.Context) error {
	c, log := d.o.Config, d.o.Log
	if d.e.Airflow == nil {
		if err := d.e.Connect(ctx, log); err != nil {
			return fmt.Errorf("%w: %w", ErrStartup, err)
		}
	}
	watch := !d.o.Once
	needs := selfcheck.Needs(c.Kubernetes.Namespaces, c.Reaper.DryRun, watch, d.leaseNS, c.LeaderElection.LeaseName)
	if err := selfcheck.Kubernetes(ctx, d.e.Kube, needs); err != nil {
		return fmt.Errorf("%w: start-up self-check:\n%w", ErrStartup, err)
	}
	// --once skips the Airflow check: its one cycle makes the same listing
	// at once and fails closed on the same errors.
	if watch {
		if err := selfcheck.Airflow(ctx, d.e.Airflow); err != nil {
			return fmt.Errorf("%w: start-up self-check: %w", ErrStartup, err)
		}
	}
	log.Info("self-check passed", "permissions", len(needs), "airflow", d.e.Airflow.APIVersion())
	return nil
}

// startWithBackoff retries start until it succeeds (true) or ctx ends
// (false). Each failed attempt is a failed-closed cycle for the metrics,
// /readyz and the Warning Event: nothing was judged, nothing deleted.
func (d *daemon) startWithBackoff(ctx context.Context) bool {
	b := startBackoff(d.o.Config.Reaper.Interval)
	for {
		err := d.start(ctx)
		if ctx.Err() != nil {
			return false
		}
		if err == nil {
			return true
		}
		d.failed(ctx, err)
		next := b.Step()
		d.o.Log.Warn("not started: waiting for Airflow and Kubernetes to answer", "error", err.Error(), "retryIn", next.Round(100*time.Millisecond).String())
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}

// failed records a start-up that did not get as far as a cycle.
func (d *daemon) failed(ctx context.Context, err error) {
	d.health.SetStarting(err.Error())
	d.observe(ctx, &reaper.Report{}, err, true)
}

// observe records a cycle's outcome. An Event is a write too: none from a
// replica that may not write (it lost the Lease) or is shutting down.
func (d *daemon) observe(ctx context.Context, rep *reaper.Report, err error, mayWrite bool) {
	if rep == nil {
		rep = &reaper.Report{}
	}
	d.m.ObserveCycle(rep, err, time.Now())
	d.health.CycleDone(err)
	if ctx.Err() == nil && mayWrite {
		d.rec.Cycle(rep, err)
	}
}

// cycle runs one cycle and, while it waits on Airflow, says so every
// ProgressInterval.
func (d *daemon) cycle(ctx context.Context, r *reaper.Reaper) (*reaper.Report, error) {
	t := time.NewTicker(ProgressInterval)
	defer t.Stop()
	defer Progress(d.o.Log, t.C, d.e.APICalls)()
	return r.Cycle(ctx)
}

// loop runs cycles until the context ends: at once, then every interval. A
// failed cycle is logged and the next one tries again; nothing was deleted
// by it. Pod events never trigger a cycle, so churn costs no Airflow calls.
func (d *daemon) loop(ctx context.Context, r *reaper.Reaper, mayWrite func() bool) {
	t := time.NewTicker(d.o.Config.Reaper.Interval)
	defer t.Stop()
	for {
		rep, err := d.cycle(ctx, r)
		if ctx.Err() == nil {
			d.observe(ctx, rep, err, mayWrite())
		}
		// A cycle is a burst (one answer decoded per pod, a verdict and
		// a log line for each) and the daemon then sleeps for the
		// interval: hand the burst's pages back to the kernel now rather
		// than keep them resident until the runtime's background scavenger
		// gets to them. One extra collection per cycle; at 2,000 pods the
		// resident set between cycles drops by about 6 MiB
		// (docs/operations.md, "Memory and CPU").
		debug.FreeOSMemory()
		select {
		case <-ctx.Done():
			d.o.Log.Info("stopping the loop")
			return
		case <-t.C:
		}
	}
}
