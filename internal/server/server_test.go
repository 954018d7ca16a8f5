package server

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestReadiness(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	h := &Health{Interval: time.Minute, Now: func() time.Time { return now }}
	if ok, _ := h.Ready(); ok {
		t.Fatal("ready before any cycle")
	}
	h.CycleDone(errors.New("airflow down"))
	if ok, why := h.Ready(); ok || !strings.Contains(why, "airflow down") {
		t.Fatalf("ready after a failed first cycle: %s", why)
	}
	h.CycleDone(nil)
	if ok, _ := h.Ready(); !ok {
		t.Fatal("not ready after a success")
	}
	now = now.Add(2 * time.Minute)
	h.CycleDone(errors.New("500"))
	if ok, _ := h.Ready(); !ok {
		t.Fatal("one failure within the grace must not flip readiness")
	}
	now = now.Add(2 * time.Minute)
	if ok, why := h.Ready(); ok || !strings.Contains(why, "500") {
		t.Fatalf("stale success must make it unready: %s", why)
	}
	h.SetStandby(true)
	if ok, _ := h.Ready(); !ok {
		t.Fatal("a standby replica is ready")
	}
}

func TestHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "kpo_reaper_test_total", Help: "x"})
	reg.MustRegister(c)
	c.Inc()
	h := &Health{Interval: time.Minute, Now: time.Now}
	srv := httptest.NewServer(Handler(reg, h))
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatal("healthz", code)
	}
	if code, _ := get("/readyz"); code != 503 {
		t.Fatal("readyz before a cycle", code)
	}
	h.CycleDone(nil)
	if code, _ := get("/readyz"); code != 200 {
		t.Fatal("readyz after a cycle", code)
	}
	if _, body := get("/metrics"); !strings.Contains(body, "kpo_reaper_test_total 1") {
		t.Fatal(body)
	}
}

func TestNotReadyWhileStartingSaysWhy(t *testing.T) {
	h := &Health{Interval: time.Minute, Now: time.Now}
	h.SetStarting("airflow: connection refused")
	h.CycleDone(nil)
	if ok, why := h.Ready(); ok || why != "starting: airflow: connection refused" {
		t.Fatalf("while starting: ready %v, %q", ok, why)
	}
	h.SetStarting("")
	if ok, why := h.Ready(); !ok {
		t.Fatalf("started after a successful cycle: not ready, %q", why)
	}
}
