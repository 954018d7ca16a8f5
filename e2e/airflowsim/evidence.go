package airflowsim

import "sync"

// Two answers of a real Airflow that the store alone cannot give, both
// 404s that a client must not take for "the task instance is gone":
//
//   - A DAG missing from the serialized DAG bag while its DagModel row is
//     still there (Airflow 3, a DAG file that fails to import after a
//     deploy): GET /dags/{dag_id}, the DAG list and the run list still
//     answer, and so does the single task instance GET (get_task_instance
//     does not read the DAG bag), but the per-run task instance listing
//     (get_task_instances, which calls get_latest_version_of_dag for a
//     dag_id other than '~') answers 404 "The Dag with ID: `…` was not
//     found". The '~' listings do not read the bag either. Airflow 2's API
//     does not read the DagBag on these routes, so v1 is unaffected.
//   - GET of one DAG run answering 404 (v1 "DAGRun not found", v2 "The
//     DagRun with dag_id … was not found") while the run listing still
//     shows the run: what a client sees when the run is deleted between
//     two requests of one cycle, or behind a load balancer whose replicas
//     read different database replicas.

// evidenceState is the state of those two behaviours. Its own lock lets
// handlers consult it while they hold the store's read lock.
type evidenceState struct {
	mu        sync.Mutex
	notInBag  map[string]bool
	runGet404 map[[2]string]bool
}

// initEvidence takes the scenario's DAGs declared notInBag.
func (s *Server) initEvidence(sc *Scenario) {
	s.ev.mu.Lock()
	defer s.ev.mu.Unlock()
	s.ev.notInBag = map[string]bool{}
	s.ev.runGet404 = map[[2]string]bool{}
	for _, d := range sc.DAGs {
		if d.NotInBag {
			s.ev.notInBag[d.DagID] = true
		}
	}
}

// SetDAGNotInBag makes the DAG missing from (or back in) the serialized DAG
// bag, as a DAG file that fails (or again succeeds) to import does. It only
// changes Airflow 3 (v2) answers: see the scenario's dags[].notInBag.
func (s *Server) SetDAGNotInBag(dagID string, missing bool) {
	s.ev.mu.Lock()
	defer s.ev.mu.Unlock()
	if missing {
		s.ev.notInBag[dagID] = true
	} else {
		delete(s.ev.notInBag, dagID)
	}
}

// SetRunGetNotFound makes GET of that one DAG run answer 404 (or stop
// doing so) while every listing still shows the run. The run need not
// exist.
func (s *Server) SetRunGetNotFound(dagID, runID string, notFound bool) {
	s.ev.mu.Lock()
	defer s.ev.mu.Unlock()
	k := [2]string{dagID, runID}
	if notFound {
		s.ev.runGet404[k] = true
	} else {
		delete(s.ev.runGet404, k)
	}
}

// dagNotInBag reports whether v2 routes that read the DAG bag must answer
// 404 for the DAG.
func (s *Server) dagNotInBag(dagID string) bool {
	if s.api != 2 {
		return false
	}
	s.ev.mu.Lock()
	defer s.ev.mu.Unlock()
	return s.ev.notInBag[dagID]
}

// runGetNotFound reports whether GET of the run must answer 404.
func (s *Server) runGetNotFound(dagID, runID string) bool {
	s.ev.mu.Lock()
	defer s.ev.mu.Unlock()
	return s.ev.runGet404[[2]string{dagID, runID}]
}
