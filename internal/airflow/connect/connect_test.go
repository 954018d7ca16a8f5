package connect

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
	"github.com/kpo-reaper/kpo-reaper/internal/airflow/authtype"
	"github.com/kpo-reaper/kpo-reaper/internal/airflow/transport"
)

// server fakes the version endpoints of an Airflow 2 webserver (v1 only,
// Flask's HTML 404 elsewhere) or an Airflow 3 API server (v2 only, JSON
// 404 elsewhere), and records what it was asked.
type server struct {
	mu    sync.Mutex
	paths []string
	auth  []string
}

func newServer(t *testing.T, airflowMajor int, status int) (*server, *httptest.Server) {
	s := &server{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.paths = append(s.paths, r.URL.Path)
		s.auth = append(s.auth, r.Header.Get("Authorization"))
		s.mu.Unlock()
		switch {
		case status != 0:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			fmt.Fprint(w, `{"detail":"Not authenticated"}`)
		case airflowMajor == 2 && r.URL.Path == "/api/v1/version":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"version":"2.10.5","git_version":".release:b2e1e6d"}`)
		case airflowMajor == 3 && r.URL.Path == "/api/v2/version":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"version":"3.2.1","git_version":null}`)
		case airflowMajor == 3:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(404)
			fmt.Fprint(w, `{"detail":"Not Found"}`)
		default:
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.WriteHeader(404)
			fmt.Fprint(w, "<!doctype html><title>Airflow 404 = lots of circles</title>")
		}
	}))
	t.Cleanup(srv.Close)
	return s, srv
}

func client(t *testing.T) *http.Client {
	hc, err := transport.New(transport.Options{
		MaxRetries: 1, RetryWaitMin: time.Millisecond, RetryWaitMax: time.Millisecond,
		Auth: transport.Auth{Type: authtype.Basic, Username: "u", Password: "p"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return hc
}

func TestAutoDetectsV2(t *testing.T) {
	s, srv := newServer(t, 3, 0)
	c, ver, err := Connect(context.Background(), Options{BaseURL: srv.URL, APIVersion: "auto", HTTPClient: client(t)})
	if err != nil || ver != "3.2.1" || c.APIVersion() != "v2" {
		t.Fatalf("%v %q %v", c, ver, err)
	}
	if len(s.paths) != 1 || s.auth[0] == "" {
		t.Fatalf("paths %v, auth %v: one authenticated call expected", s.paths, s.auth)
	}
}

func TestAutoFallsBackToV1(t *testing.T) {
	s, srv := newServer(t, 2, 0)
	c, ver, err := Connect(context.Background(), Options{BaseURL: srv.URL + "/", APIVersion: "", HTTPClient: client(t)})
	if err != nil || ver != "2.10.5" || c.APIVersion() != "v1" {
		t.Fatalf("%v %q %v", c, ver, err)
	}
	if strings.Join(s.paths, " ") != "/api/v2/version /api/v1/version" {
		t.Fatalf("paths %v", s.paths)
	}
}

func TestAutoNeitherAnswers(t *testing.T) {
	_, srv := newServer(t, 0, 0) // something else at that URL
	_, _, err := Connect(context.Background(), Options{BaseURL: srv.URL + "/airflow", APIVersion: "auto", HTTPClient: client(t)})
	if err == nil || !strings.Contains(err.Error(), "answered 404 for both /api/v2/version and /api/v1/version: is the URL the webserver's base URL without /api/v1?") {
		t.Fatalf("err %v", err)
	}
}

func TestAutoStopsOnAuthFailure(t *testing.T) {
	s, srv := newServer(t, 3, 401)
	_, _, err := Connect(context.Background(), Options{BaseURL: srv.URL, APIVersion: "auto", HTTPClient: client(t)})
	if err == nil || !strings.Contains(err.Error(), "check airflow.auth") {
		t.Fatalf("err %v", err)
	}
	if len(s.paths) != 1 {
		t.Fatalf("a 401 must not fall back to v1: %v", s.paths)
	}
}

func TestExplicitVersionMismatch(t *testing.T) {
	_, srv3 := newServer(t, 3, 0)
	_, _, err := Connect(context.Background(), Options{BaseURL: srv3.URL, APIVersion: "v1", HTTPClient: client(t)})
	if err == nil || !strings.Contains(err.Error(), "airflow.apiVersion is v1") || !strings.Contains(err.Error(), "Airflow 3 has only /api/v2") {
		t.Fatalf("err %v", err)
	}
	_, srv2 := newServer(t, 2, 0)
	_, _, err = Connect(context.Background(), Options{BaseURL: srv2.URL, APIVersion: "v2", HTTPClient: client(t)})
	if err == nil || !strings.Contains(err.Error(), "airflow.apiVersion is v2") {
		t.Fatalf("err %v", err)
	}
}

func TestExplicitVersion(t *testing.T) {
	_, srv2 := newServer(t, 2, 0)
	if c, ver, err := Connect(context.Background(), Options{BaseURL: srv2.URL, APIVersion: "v1", HTTPClient: client(t)}); err != nil || ver != "2.10.5" || c.APIVersion() != "v1" {
		t.Fatalf("%q %v", ver, err)
	}
	_, srv3 := newServer(t, 3, 0)
	if c, ver, err := Connect(context.Background(), Options{BaseURL: srv3.URL, APIVersion: "v2", HTTPClient: client(t)}); err != nil || ver != "3.2.1" || c.APIVersion() != "v2" {
		t.Fatalf("%q %v", ver, err)
	}
}

func TestBadURLs(t *testing.T) {
	for _, u := range []string{"airflow:8080", "ftp://airflow", "http://airflow:8080/api/v1", "http://airflow:8080/api/v2/"} {
		if _, _, err := Connect(context.Background(), Options{BaseURL: u, APIVersion: "auto", HTTPClient: client(t)}); err == nil || !strings.Contains(err.Error(), "airflow.url") {
			t.Errorf("%s: err %v", u, err)
		}
	}
	if _, _, err := Connect(context.Background(), Options{BaseURL: "http://airflow", APIVersion: "v3", HTTPClient: client(t)}); err == nil || !strings.Contains(err.Error(), "airflow.apiVersion") {
		t.Errorf("err %v", err)
	}
}

// mappedFront answers every /api/vN/version with one version, as MWAA's
// InvokeRestApi does: its paths carry no API prefix.
func mappedFront(t *testing.T, version string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/version") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"version":%q,"git_version":null}`, version)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestAutoMovesToV1WhenV2AnswersAirflow2(t *testing.T) {
	c, ver, err := Connect(context.Background(), Options{BaseURL: mappedFront(t, "2.10.3"), HTTPClient: client(t)})
	if err != nil || ver != "2.10.3" || c.APIVersion() != "v1" {
		t.Fatalf("%v %q %v", c, ver, err)
	}
	c, ver, err = Connect(context.Background(), Options{BaseURL: mappedFront(t, "3.3.0"), HTTPClient: client(t)})
	if err != nil || ver != "3.3.0" || c.APIVersion() != "v2" {
		t.Fatalf("%v %q %v", c, ver, err)
	}
}

func TestExplicitVersionMustMatchTheAnswer(t *testing.T) {
	if _, _, err := Connect(context.Background(), Options{BaseURL: mappedFront(t, "2.9.3"), APIVersion: "v2", HTTPClient: client(t)}); err == nil || !strings.Contains(err.Error(), `answered Airflow "2.9.3", not 3.x`) {
		t.Fatalf("err %v", err)
	}
	if _, _, err := Connect(context.Background(), Options{BaseURL: mappedFront(t, "3.1.8"), APIVersion: "v1", HTTPClient: client(t)}); err == nil || !strings.Contains(err.Error(), `answered Airflow "3.1.8", not 2.x`) {
		t.Fatalf("err %v", err)
	}
}

func TestShownReplacesTheURLInErrors(t *testing.T) {
	_, _, err := Connect(context.Background(), Options{BaseURL: mappedFront(t, "2.9.3"), Shown: "mwaa:eu-west-1/prod", APIVersion: "v2", HTTPClient: client(t)})
	if err == nil || !strings.Contains(err.Error(), "mwaa:eu-west-1/prod") || strings.Contains(err.Error(), "127.0.0.1") {
		t.Fatalf("err %v", err)
	}
}

func TestHasCursorPaging(t *testing.T) {
	for v, want := range map[string]bool{
		"3.0.6": false, "3.1.8": false, "3.2.0": false, "3.2.1": false, "3.2.2": true, "3.2.10": true,
		"3.3.0": true, "3.3.0rc1": true, "4.0.0": true, "2.11.0": false, "": false, "garbage": false,
		"3.2.2+astro.1": true, "3.2.1.post1": false,
	} {
		if got := HasCursorPaging(v); got != want {
			t.Errorf("HasCursorPaging(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestV1Batch(t *testing.T) {
	for v, want := range map[string]airflow.Batch{
		"2.5.3": airflow.BatchNone, "2.7.0": airflow.BatchNone, "2.7.1": airflow.BatchUnpaged, "2.9.3": airflow.BatchUnpaged,
		"2.10.2": airflow.BatchUnpaged, "2.10.3": airflow.BatchPaged, "2.10.5+astro.1": airflow.BatchPaged, "2.11.0": airflow.BatchPaged,
		"3.2.1": airflow.BatchNone, "": airflow.BatchNone, "garbage": airflow.BatchNone,
	} {
		if got := V1Batch(v); got != want {
			t.Errorf("V1Batch(%q) = %v, want %v", v, got, want)
		}
	}
}
