package airflowsim

import (
	"sync"
	"time"
)

// LogEntry is a row that the simulated Airflow wrote into its log table
// (Airflow 3's audit log, which the UI shows as "Audit Log").
type LogEntry struct {
	Time  time.Time
	Event string
	// Extra is what Airflow stores in the row's extra column: for the
	// batch POST, the whole request body.
	Extra string
}

// actionLog is the log table of the simulated Airflow.
type actionLog struct {
	mu   sync.Mutex
	rows []LogEntry
}

// auditBatch writes the row Airflow 3 writes for every call of
// POST /api/v2/dags/~/dagRuns/~/taskInstances/list: its route carries
// action_logging(), which records event get_task_instances_batch with the
// request body, whatever the answer. Airflow 2's batch POST writes none.
func (s *Server) auditBatch(c *call) {
	s.alog.mu.Lock()
	defer s.alog.mu.Unlock()
	s.alog.rows = append(s.alog.rows, LogEntry{Time: c.now, Event: "get_task_instances_batch", Extra: string(c.body)})
}

// ActionLog returns the rows the simulated API wrote into Airflow's log
// table, oldest first: a reaper that only reads writes none.
func (s *Server) ActionLog() []LogEntry {
	s.alog.mu.Lock()
	defer s.alog.mu.Unlock()
	return append([]LogEntry(nil), s.alog.rows...)
}
