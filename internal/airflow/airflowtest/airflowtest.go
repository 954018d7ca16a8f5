// Package airflowtest tests the promises of airflow.Client (see its
// documentation) once, for every API version: each version's tests call
// RunContract with an Adapter that serves its own fake Airflow and builds
// its client, and the same contract cases run against both. Where only the
// spelling differs (a 404's words, the XCom query), the adapter spells it;
// what else differs between versions (paging shapes, other query
// parameters, error wording) stays in the versions' own tests.
//
// Only tests import this package.
package airflowtest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
	"github.com/kpo-reaper/kpo-reaper/internal/airflow/transport"
)

// Adapter is what one API version supplies to run the contract.
type Adapter interface {
	// APIVersion is what the client reports, ServerVersion what the fake
	// answers to GET /version.
	APIVersion() string
	ServerVersion() string
	// Fake returns the version's fake Airflow holding fx, as the handler
	// of the whole server (paths begin with /api/<APIVersion>/).
	Fake(t *testing.T, fx Fixture) http.Handler
	// NewClient builds the version's client for the Airflow at baseURL.
	NewClient(t *testing.T, baseURL string, hc *http.Client) airflow.Client

	// The answers the contract serves itself, in the version's API shape.
	DAG(id string) map[string]any
	Run(dagID, runID string) map[string]any
	TaskInstance(ti airflow.TaskInstance) map[string]any
	// XCom is the answer for the pod_name XCom of key; value is as the
	// API renders it, nil is null.
	XCom(key airflow.TIKey, value any) map[string]any
	// XComQuery is the query the client sends to read the pod_name XCom
	// of key.
	XComQuery(key airflow.TIKey) url.Values
	// NotFound writes Airflow's own 404 about an entity, in the version's
	// words (a v1 problem title, a v2 detail).
	NotFound(w http.ResponseWriter, about airflow.Entity)
	// NoRoute writes the 404 of the API's router for a path it lacks.
	NoRoute(w http.ResponseWriter)
	// ServerError writes a 500 as the version's server does.
	ServerError(w http.ResponseWriter)
}

// DAG is a DAG of a Fixture. A stale DAG is no longer in the DAG folder
// (v1 is_active false, v2 is_stale true); its pods may still run.
type DAG struct {
	ID    string
	Stale bool
}

// Fixture is what a fake Airflow holds.
type Fixture struct {
	DAGs []DAG
	// Runs are the run ids of each DAG id.
	Runs map[string][]string
	// TIs carry a StartDate and no EndDate; State "" is null.
	TIs []airflow.TaskInstance
	// XComs are the pod_name XCom values, as the API renders them; nil
	// is null.
	XComs map[airflow.TIKey]any
}

// Request is one request a fake received.
type Request struct {
	Path  string // escaped, below /api/<version>
	Query url.Values
}

// RunContract runs every contract case against a's client and fake.
func RunContract(t *testing.T, a Adapter) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.run(t, a) })
	}
}

// server is a fake Airflow behind an httptest server that records what it
// is asked and may answer in the fake's place.
type server struct {
	a   Adapter
	srv *httptest.Server

	mu     sync.Mutex
	reqs   []Request
	answer func(w http.ResponseWriter, r *http.Request) bool // true: answered
}

func serve(t *testing.T, a Adapter, fx Fixture) *server {
	t.Helper()
	s := &server{a: a}
	fake := a.Fake(t, fx)
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.reqs = append(s.reqs, Request{Path: strings.TrimPrefix(r.URL.EscapedPath(), "/api/"+a.APIVersion()), Query: r.URL.Query()})
		answer := s.answer
		s.mu.Unlock()
		if answer != nil && answer(w, r) {
			return
		}
		fake.ServeHTTP(w, r)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// answerAll makes every request get what write writes.
func (s *server) answerAll(write func(w http.ResponseWriter)) {
	s.answerFirst(-1, write)
}

// answerFirst makes the first n requests from now on (all for n < 0) get
// what write writes, and the rest the fake's answer.
func (s *server) answerFirst(n int, write func(w http.ResponseWriter)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answer = func(w http.ResponseWriter, _ *http.Request) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		if n == 0 {
			return false
		}
		n--
		write(w)
		return true
	}
}

// answerJSON makes every request get a 200 with body: a string as it is,
// anything else as JSON.
func (s *server) answerJSON(t *testing.T, body any) {
	t.Helper()
	b, ok := body.(string)
	if !ok {
		j, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		b = string(j)
	}
	s.answerAll(func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(b))
	})
}

func (s *server) requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}

// HTTPClient is the transport the tests' clients use: the retries every
// deployment has (two), with short waits.
func HTTPClient(t *testing.T) *http.Client {
	t.Helper()
	hc, err := transport.New(transport.Options{MaxRetries: 2, RetryWaitMin: time.Millisecond, RetryWaitMax: 2 * time.Millisecond, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return hc
}

// client is the version's client for s, over HTTPClient.
func (s *server) client(t *testing.T) airflow.Client {
	t.Helper()
	return s.a.NewClient(t, s.srv.URL, HTTPClient(t))
}

// clientAt is a client without retries for the Airflow at s's URL + path.
func (s *server) clientAt(t *testing.T, path string) airflow.Client {
	t.Helper()
	hc, err := transport.New(transport.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s.a.NewClient(t, s.srv.URL+path, hc)
}
