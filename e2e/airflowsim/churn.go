package airflowsim

import (
	"fmt"
	"hash/fnv"
	"time"
)

// servedPage is the first page of a task instance listing, as served, when
// more pages follow.
type servedPage struct {
	keys []TIKey
}

// markFirstPage records, on a listing's first page that does not hold the
// whole listing, which rows the client now has.
func (c *call) markFirstPage(rows []tiView) {
	p := &servedPage{}
	for _, v := range rows {
		p.keys = append(p.keys, v.ti.key)
	}
	c.firstPage = p
}

// takeChurn switches a churn fault back to none and returns it; only one
// of concurrent first pages gets it.
func (s *Server) takeChurn() Fault {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	f := s.fault
	if !f.churn() {
		return ""
	}
	s.fault = FaultNone
	return f
}

// activeStates are the unfinished states: a churn fault acts on a task
// instance in one of them (or with no status).
var activeStates = []string{"scheduled", "queued", "running", "deferred", "restarting", "up_for_retry", "up_for_reschedule"}

func isActive(ti *tiRec) bool { return ti.state == nil || contains(activeStates, *ti.state) }

// churn applies a pending churn fault to the first active task instance of
// the page just served.
func (s *Server) churn(c *call) {
	f := s.takeChurn()
	if f == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var ti *tiRec
	for _, k := range c.firstPage.keys {
		if t := s.tis[k]; t != nil && isActive(t) {
			ti = t
			break
		}
	}
	if ti == nil {
		return
	}
	now := c.now
	switch f {
	case FaultChurnFinish:
		finish(ti, now)
	case FaultChurnRetry:
		ti.try++
		ti.id = s.newID()
		ti.updated = now
	case FaultChurnSwap:
		finish(ti, now)
		s.addSwapped(ti, now)
	}
}

func finish(ti *tiRec, now time.Time) {
	ti.state = strp("success")
	ti.end = &now
	ti.updated = now
}

// newID is a v2 id above every existing one, as a UUIDv7 minted now sorts
// after older ones. The prefix is the largest a version-7, RFC 4122 UUID
// can have; ids derived from hashes never reach it in practice.
func (s *Server) newID() string {
	s.idSeq++
	return fmt.Sprintf("ffffffff-ffff-7fff-bfff-%012x", s.idSeq)
}

// addSwapped adds a new running task instance to the run of like whose key
// sorts after every other in v1's hash order too, as the new row of
// FaultChurnSwap. Callers hold s.mu.
func (s *Server) addSwapped(like *tiRec, now time.Time) {
	var highest uint64
	for _, t := range s.tis {
		if h := keyHash(t.key); h > highest {
			highest = h
		}
	}
	key := TIKey{DagID: like.key.DagID, RunID: like.key.RunID, MapIndex: -1}
	for i := 0; ; i++ {
		key.TaskID = fmt.Sprintf("churn_new_task_%d", i)
		if s.tis[key] == nil && keyHash(key) > highest {
			break
		}
	}
	start := now
	s.tis[key] = &tiRec{key: key, try: 1, state: strp("running"), operator: cloneStr(like.operator),
		operatorName: cloneStr(like.operatorName), executor: cloneStr(like.executor), pool: like.pool,
		queue: like.queue, start: &start, updated: now, id: s.newID()}
}

// keyHash is the position of a task instance in v1's order (hashOrder).
func keyHash(k TIKey) uint64 {
	f := fnv.New64a()
	fmt.Fprintf(f, "%s\x00%s\x00%s\x00%d", k.DagID, k.RunID, k.TaskID, k.MapIndex)
	return f.Sum64()
}
