package daemon

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// syncBuffer is a log sink the progress goroutine and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestProgressSaysWhatItWaitsFor: each tick while a run waits logs that it
// waits for Airflow and how many of this run's requests were answered;
// after stop, nothing more.
func TestProgressSaysWhatItWaitsFor(t *testing.T) {
	var out syncBuffer
	var calls atomic.Int64
	calls.Store(40) // answered before this run: not counted
	tick := make(chan time.Time)
	stop := Progress(slog.New(slog.NewTextHandler(&out, nil)), tick, calls.Load)
	if out.String() != "" {
		t.Fatalf("logged before the first tick: %s", out.String())
	}
	calls.Add(7)
	tick <- time.Now()
	tick <- time.Now() // the first tick was handled once the second is taken
	stop()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `msg="waiting for Airflow"`) || !strings.Contains(lines[0], "requestsAnswered=7") {
		t.Fatalf("progress lines:\n%s", out.String())
	}
	select {
	case tick <- time.Now():
		t.Fatal("a tick was taken after stop")
	default:
	}
}
