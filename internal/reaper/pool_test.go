package reaper

import (
	"testing"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow/transport"
)

// The lookups of a cycle run DefaultLookupConcurrency at a time; a smaller
// idle pool would open new connections to Airflow on every cycle.
func TestAirflowPoolHoldsEveryConcurrentLookup(t *testing.T) {
	if transport.IdleConnsPerHost < DefaultLookupConcurrency {
		t.Fatalf("transport.IdleConnsPerHost = %d < DefaultLookupConcurrency = %d", transport.IdleConnsPerHost, DefaultLookupConcurrency)
	}
}
