// Package server serves /metrics, /healthz and /readyz.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Health decides readiness: not ready while starting (with the reason);
// then ready when the last cycle succeeded within a few intervals, or when this replica is a standby that does not run cycles
// (so that a healthy standby does not hold back a rollout).
type Health struct {
	Interval time.Duration
	// Grace is how many intervals a success stays fresh.
	Grace int
	Now   func() time.Time

	mu          sync.Mutex
	lastSuccess time.Time
	lastError   string
	standby     bool
	starting    string
}

// SetStarting marks a replica that cannot run cycles yet, and why (Airflow
// or the apiserver not answering); "" ends the start-up.
func (h *Health) SetStarting(why string) {
	h.mu.Lock()
	h.starting = why
	h.mu.Unlock()
}

// CycleDone records a cycle's outcome.
func (h *Health) CycleDone(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		h.lastError = err.Error()
		return
	}
	h.lastSuccess, h.lastError = h.Now(), ""
}

// SetStandby marks a replica that is not the leader.
func (h *Health) SetStandby(standby bool) {
	h.mu.Lock()
	h.standby = standby
	h.mu.Unlock()
}

// Ready reports readiness and why.
func (h *Health) Ready() (bool, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.starting != "" {
		return false, "starting: " + h.starting
	}
	if h.standby {
		return true, "standby: another replica holds the lease"
	}
	if h.lastSuccess.IsZero() {
		if h.lastError != "" {
			return false, "no successful cycle yet; last error: " + h.lastError
		}
		return false, "no successful cycle yet"
	}
	grace := h.Grace
	if grace <= 0 {
		grace = 3
	}
	age := h.Now().Sub(h.lastSuccess)
	if age > time.Duration(grace)*h.Interval {
		return false, fmt.Sprintf("last successful cycle %s ago (more than %d intervals); last error: %s", age.Round(time.Second), grace, h.lastError)
	}
	return true, "last successful cycle " + age.Round(time.Second).String() + " ago"
}

// Handler routes the three endpoints.
func Handler(reg *prometheus.Registry, h *Health) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		ok, why := h.Ready()
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintln(w, why)
	})
	return mux
}

// Serve listens on addr until ctx ends. The listener is opened before it
// returns, so a port clash is a start-up error, not a log line.
func Serve(ctx context.Context, addr string, h http.Handler, log *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("server.address %q: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics/health server stopped", "error", err)
		}
	}()
	log.Info("serving /metrics, /healthz, /readyz", "address", ln.Addr().String())
	stop := func() {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
		<-done
	}
	go func() {
		<-ctx.Done()
		stop()
	}()
	return stop, nil
}
