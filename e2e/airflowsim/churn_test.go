package airflowsim

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// churnScenario has n running task instances of one run (t00..) and one
// finished one, so a listing filtered on running spans several pages.
func churnScenario(version string, n int) *Scenario {
	sc := pagingScenario(version, n, 100)
	for i := range sc.TaskInstances {
		sc.TaskInstances[i].StartDate = "-10m" // no NULL start dates here
	}
	done := "success"
	sc.TaskInstances = append(sc.TaskInstances, TaskInstanceSpec{DagID: "d", RunID: "r", TaskID: "finished",
		State: &done, StartDate: "-1h", EndDate: "-30m"})
	return sc
}

// scan pages a listing as the reaper does: it advances by the rows
// returned and stops on an empty page or when the offset reaches
// total_entries. It returns the keys in the order served (with
// repetitions) and the total_entries of each page.
func (c *client) scan(list, query string, limit int) (keys []TIKey, totals []int) {
	c.t.Helper()
	for offset := 0; ; {
		p := c.tiPage(c.expect(c.get(list, fmt.Sprintf("%s&limit=%d&offset=%d", query, limit, offset)), 200))
		totals = append(totals, p.TotalEntries)
		if len(p.TaskInstances) == 0 {
			return keys, totals
		}
		keys = append(keys, keysOf(p.TaskInstances)...)
		offset += len(p.TaskInstances)
		if offset >= p.TotalEntries {
			return keys, totals
		}
	}
}

// running lists the task instances running now, straight from the store.
func running(s *Server) map[TIKey]bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := map[TIKey]bool{}
	for k, ti := range s.tis {
		if ti.state != nil && *ti.state == "running" {
			out[k] = true
		}
	}
	return out
}

// outcome compares a scan with the store's running task instances before
// and after it: the keys running throughout that the scan missed, the keys
// it served twice, and the keys it served that were new.
func outcome(before, after map[TIKey]bool, keys []TIKey) (missed, twice, added []TIKey) {
	seen := map[TIKey]int{}
	for _, k := range keys {
		seen[k]++
		if seen[k] == 2 {
			twice = append(twice, k)
		}
		if seen[k] == 1 && !before[k] {
			added = append(added, k)
		}
	}
	for k := range before {
		if after[k] && seen[k] == 0 {
			missed = append(missed, k)
		}
	}
	return missed, twice, added
}

func distinct(keys []TIKey) int {
	m := map[TIKey]bool{}
	for _, k := range keys {
		m[k] = true
	}
	return len(m)
}

// TestChurnFaults pages a state=running listing of 12 task instances by 5
// while each churn fault fires, on v1 (hash order), v2 (order_by=id) and
// v2 with a cursor, and checks what a client sees: the skip, the duplicate,
// the unchanged total; then that the fault is spent and a rescan is
// complete.
func TestChurnFaults(t *testing.T) {
	const n = 12
	type want struct {
		missed, twice, added int
		totalsChange         bool
	}
	for _, tc := range []struct {
		version string
		fault   Fault
		want    want
	}{
		// A row of page 1 leaves the filtered set: the first row of page
		// 2 moves onto page 1 and is skipped; the total drops.
		{"2.10.5", FaultChurnFinish, want{missed: 1, totalsChange: true}},
		{"3.2.1", FaultChurnFinish, want{missed: 1, totalsChange: true}},
		// v1 orders by key, so a new try moves nothing.
		{"2.10.5", FaultChurnRetry, want{}},
		// The new id sorts last: one row skipped, the retried one again
		// at the end, the total unchanged (distinct rows fall short).
		{"3.2.1", FaultChurnRetry, want{missed: 1, twice: 1}},
		// One row leaves, a new one comes last: a row is skipped, yet the
		// total and the distinct count agree.
		{"2.10.5", FaultChurnSwap, want{missed: 1, added: 1}},
		{"3.2.1", FaultChurnSwap, want{missed: 1, added: 1}},
	} {
		t.Run(tc.version+"/"+string(tc.fault), func(t *testing.T) {
			c := newClient(t, churnScenario(tc.version, n))
			list, query := "/api/v1/dags/~/dagRuns/~/taskInstances", "state=running"
			if c.sim.APIVersion() == 2 {
				c.login()
				list, query = "/api/v2/dags/~/dagRuns/~/taskInstances", "state=running&order_by=id"
			}
			// A listing that fits one page does not fire the fault.
			c.sim.SetFault(tc.fault)
			if keys, _ := c.scan(list, query, 50); len(keys) != n || c.sim.Fault() != tc.fault {
				t.Fatalf("one-page listing: %d rows, fault %s", len(keys), c.sim.Fault())
			}
			before := running(c.sim)
			keys, totals := c.scan(list, query, 5)
			after := running(c.sim)
			if c.sim.Fault() != FaultNone {
				t.Fatalf("fault %s still set after the first page", c.sim.Fault())
			}
			missed, twice, added := outcome(before, after, keys)
			changed := false
			for _, tot := range totals {
				changed = changed || tot != totals[0]
			}
			got := want{missed: len(missed), twice: len(twice), added: len(added), totalsChange: changed}
			if got != tc.want {
				t.Errorf("scan: %+v (missed %v, twice %v, added %v, totals %v), want %+v", got, missed, twice, added, totals, tc.want)
			}
			if tc.fault == FaultChurnSwap && distinct(keys) != totals[len(totals)-1] {
				t.Errorf("swap: %d distinct rows, total %d: a count check would notice", distinct(keys), totals[len(totals)-1])
			}
			// The store is stable again: a rescan has every running row.
			again, totals := c.scan(list, query, 5)
			if distinct(again) != len(after) || len(again) != len(after) || totals[0] != len(after) {
				t.Errorf("rescan: %d rows (%d distinct), %d running, totals %v", len(again), distinct(again), len(after), totals)
			}
			switch tc.fault {
			case FaultChurnFinish, FaultChurnSwap:
				if len(after) != map[Fault]int{FaultChurnFinish: n - 1, FaultChurnSwap: n}[tc.fault] {
					t.Errorf("%d running after %s", len(after), tc.fault)
				}
			case FaultChurnRetry:
				retried := 0
				for k := range after {
					if ti, _ := c.sim.TaskInstance(k); *ti.TryNumber == 2 {
						retried++
					}
				}
				if retried != 1 || len(after) != n {
					t.Errorf("retry: %d task instances at try 2, %d running", retried, len(after))
				}
			}
		})
	}
}

// TestChurnWithCursor: keyset paging is immune to rows leaving the set;
// a retried task instance shows up again at the end and a new one comes
// last, and nothing running throughout is missed.
func TestChurnWithCursor(t *testing.T) {
	for _, fault := range []Fault{FaultChurnFinish, FaultChurnRetry, FaultChurnSwap} {
		t.Run(string(fault), func(t *testing.T) {
			c := newClient(t, churnScenario("3.3.0", 12))
			c.login()
			c.sim.SetFault(fault)
			before := running(c.sim)
			rows, _ := c.walkCursor("state=running&order_by=id", 5)
			after := running(c.sim)
			missed, twice, added := outcome(before, after, keysOf(rows))
			want := map[Fault][2]int{FaultChurnFinish: {0, 0}, FaultChurnRetry: {1, 0}, FaultChurnSwap: {0, 1}}[fault]
			if len(missed) != 0 || len(twice) != want[0] || len(added) != want[1] || c.sim.Fault() != FaultNone {
				t.Errorf("missed %v, twice %v, added %v, fault %s", missed, twice, added, c.sim.Fault())
			}
		})
	}
}

// TestChurnFiresOnce: concurrent first pages share one churn.
func TestChurnFiresOnce(t *testing.T) {
	sim := New(churnScenario("2.10.5", 12))
	srv := httptest.NewServer(sim)
	defer srv.Close()
	sim.SetFault(FaultChurnFinish)
	done := make(chan int)
	for i := 0; i < 4; i++ {
		go func() {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/dags/~/dagRuns/~/taskInstances?state=running&limit=5", nil)
			req.SetBasicAuth("u", "p")
			resp, err := srv.Client().Do(req)
			if err != nil {
				done <- 0
				return
			}
			resp.Body.Close()
			done <- resp.StatusCode
		}()
	}
	for i := 0; i < 4; i++ {
		if code := <-done; code != http.StatusOK {
			t.Errorf("status %d", code)
		}
	}
	if got := len(running(sim)); got != 11 {
		t.Errorf("%d running, want 11: the fault fired %d times", got, 12-got)
	}
}

func TestParseChurnFaults(t *testing.T) {
	for _, f := range []Fault{FaultChurnFinish, FaultChurnRetry, FaultChurnSwap} {
		if got, err := ParseFault(string(f)); err != nil || got != f {
			t.Errorf("ParseFault(%s) = %s, %v", f, got, err)
		}
	}
	if _, err := ParseFault("churn"); err == nil || !strings.Contains(err.Error(), "churn-swap") {
		t.Errorf("unknown fault error %v does not list the churn modes", err)
	}
}
