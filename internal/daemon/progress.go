package daemon

import (
	"log/slog"
	"time"
)

// ProgressInterval is how often a run that waits on Airflow says so.
const ProgressInterval = 10 * time.Second

// Progress logs, at each tick until the returned stop is called, that the
// run is waiting for Airflow and how many of its requests were answered
// since Progress was called: a slow Airflow must not look like a hung
// reaper. answered counts the Airflow requests answered so far.
func Progress(log *slog.Logger, tick <-chan time.Time, answered func() int64) (stop func()) {
	start, before := time.Now(), answered()
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-done:
				return
			case <-tick:
				log.Info("waiting for Airflow", "requestsAnswered", answered()-before,
					"waiting", time.Since(start).Round(time.Second).String())
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}
