package e2e_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/kpo-reaper/kpo-reaper/e2e/fixture"
	"github.com/kpo-reaper/kpo-reaper/e2e/mwaastub"
)

// The identity the MWAA stand-in accepts. The secret and the token are
// long and distinctive, so that finding them in the reaper's output
// cannot be chance.
const (
	mwaaEnvName   = "kpo-e2e-env"
	mwaaRegion    = "eu-west-1"
	mwaaKeyID     = "AKIAKPOREAPERE2E0001"
	mwaaSecret    = "e2eMwaaSecretAccessKey/NeverPrint+0123456789abcdef"
	mwaaToken     = "e2eMwaaSessionToken/NeverPrint+IQoJb3JpZ2luX2VjEXAMPLE"
	wrongSecret   = "e2eMwaaWrongSecretAccessKey/NeverPrint+fedcba987654"
	sigV4Fragment = "AWS4-HMAC-SHA256" // the Authorization header must never be printed either
)

// mwaaSecrets is what no output of the reaper may contain.
var mwaaSecrets = []string{mwaaSecret, mwaaToken, wrongSecret, sigV4Fragment}

// awsEnvironment gives the reaper static credentials through the default
// chain's environment variables and shuts every other source of the
// chain (and of endpoint overrides) off, so that the test's own machine
// cannot change the outcome.
func awsEnvironment(secret string) []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + mwaaKeyID,
		"AWS_SECRET_ACCESS_KEY=" + secret,
		"AWS_SESSION_TOKEN=" + mwaaToken,
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=/nonexistent/kpo-reaper-e2e/config",
		"AWS_SHARED_CREDENTIALS_FILE=/nonexistent/kpo-reaper-e2e/credentials",
		"AWS_PROFILE=", "AWS_DEFAULT_PROFILE=", "AWS_REGION=", "AWS_DEFAULT_REGION=",
		"AWS_ROLE_ARN=", "AWS_WEB_IDENTITY_TOKEN_FILE=",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI=", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=",
		"AWS_ENDPOINT_URL=", "AWS_ENDPOINT_URL_MWAA=",
	}
}

// startMWAA puts the stand-in in front of a simulator, with the Airflow
// credentials MWAA's own webserver call would carry: basic auth on
// Airflow 2, a token the simulator issued on Airflow 3. It returns the
// stand-in and its URL.
func (e *env) startMWAA(s *sim) (*mwaastub.Stub, string) {
	e.t.Helper()
	stub := mwaastub.New(mwaastub.Options{
		Environment: mwaaEnvName,
		Region:      mwaaRegion,
		Credentials: aws.Credentials{AccessKeyID: mwaaKeyID, SecretAccessKey: mwaaSecret, SessionToken: mwaaToken},
		Airflow:     s.Server,
		APIPrefix:   s.BasePath(),
		Authorize: func(r *http.Request) {
			if s.APIVersion() == 1 {
				r.SetBasicAuth("admin", "admin")
				return
			}
			r.Header.Set("Authorization", "Bearer "+s.IssueToken())
		},
	})
	srv := httptest.NewServer(stub)
	e.t.Cleanup(srv.Close)
	return stub, srv.URL
}

// mwaaConfig is a reaper configuration that reaches Airflow only through
// the stand-in: no airflow.url, auth type mwaa.
func (e *env) mwaaConfig(v airflowVersion, endpoint, environment string) string {
	e.t.Helper()
	return e.config("", v, func(c *fixture.Config) {
		c.AuthType = "mwaa"
		c.AirflowExtra = "mwaa:\n  environment: " + environment + "\n  region: " + mwaaRegion + "\n  endpoint: " + endpoint
	})
}

// TestMWAA: the seed DAG through the MWAA stand-in on both Airflow
// versions. The API version is detected through InvokeRestApi, which takes
// paths without /api/vN: on Airflow 2, /api/v2/version reaches /api/v1 and
// answers 2.x, and the reaper must settle on v1. Exactly the two zombies
// are deleted, every Airflow call went through the stand-in with a valid
// SigV4 signature, each seed pod's task instance was read there with its
// own GET (the reaper lists no backlog), and no credential is printed.
func TestMWAA(t *testing.T) {
	t.Parallel()
	forEachVersion(t, func(t *testing.T, v airflowVersion) {
		e, s := newSeedEnv(t, v)
		stub, endpoint := e.startMWAA(s)
		cfg := e.mwaaConfig(v, endpoint, mwaaEnvName)
		extra := awsEnvironment(mwaaSecret)

		e.expectSeedPlan(e.planEnv(cfg, extra, mwaaSecrets))
		e.expectGone(nil)

		res := e.runEnv(cfg, 0, extra, mwaaSecrets)
		e.expectGone(fixture.SeedZombies)
		e.expectWrites(fixture.SeedZombies, nil)

		wantAPI := "api=v" + strconv.Itoa(v.api)
		if !strings.Contains(res.Stderr, "connected to Airflow") || !strings.Contains(res.Stderr, wantAPI) || !strings.Contains(res.Stderr, "version="+v.version) {
			t.Errorf("the run did not connect over %s to Airflow %s:\n%s", wantAPI, v.version, res.Stderr)
		}

		calls := stub.Calls()
		forwarded := 0
		for _, c := range calls {
			if !c.SigV4 || c.Name != mwaaEnvName {
				t.Errorf("call %s %s to environment %q: SigV4 %t (%s)", c.Method, c.Path, c.Name, c.SigV4, c.Rejected)
			}
			if c.Outcome != "ok" && (c.AirflowStatus != http.StatusNotFound || !literalRunProbe.MatchString(c.Path)) {
				t.Errorf("call %s %s answered %s (Airflow %d)", c.Method, c.Path, c.Outcome, c.AirflowStatus)
			}
			if strings.HasPrefix(c.Path, "/api/") {
				t.Errorf("call %s %s kept the /api/vN prefix", c.Method, c.Path)
			}
			if c.Forwarded != "" {
				forwarded++
			}
		}
		// Every request the simulator saw came through the stand-in: the
		// configuration names no Airflow URL, so there is no other way.
		reqs := expectAllAuthenticated(t, s)
		if forwarded == 0 || forwarded != len(reqs) {
			t.Errorf("the stand-in forwarded %d calls, the simulator saw %d requests", forwarded, len(reqs))
		}
		for _, r := range reqs {
			if !strings.HasPrefix(r.Path, s.BasePath()+"/") {
				t.Errorf("Airflow %s saw %s %s outside %s", v.version, r.Method, r.Path, s.BasePath())
			}
		}
		// Every seed pod's task instance was read through InvokeRestApi (all
		// the simulator saw came through it): by the listing of its run or
		// with a single GET, and never with a listing of Airflow's backlog.
		expectNoBacklogListing(t, s.BasePath(), reqs)
		expectEveryPodRead(t, s.BasePath(), reqs, fixture.SeedPods())
	})
}

// TestMWAAWrongEnvironment: an environment name MWAA does not know is an
// error naming airflow.mwaa.environment, exit 1, and nothing is deleted;
// above all it is not taken as Airflow's 404 ("task instance gone").
func TestMWAAWrongEnvironment(t *testing.T) {
	t.Parallel()
	v := airflowVersions[1]
	e, s := newSeedEnv(t, v)
	stub, endpoint := e.startMWAA(s)
	cfg := e.mwaaConfig(v, endpoint, "no-such-environment")
	extra := awsEnvironment(mwaaSecret)

	res := e.runEnv(cfg, 1, extra, mwaaSecrets)
	if !strings.Contains(res.Stderr, "airflow.mwaa.environment") {
		t.Errorf("the error does not name airflow.mwaa.environment:\n%s", res.Stderr)
	}
	plan := e.reaperEnv(1, extra, mwaaSecrets, "plan", "--config", cfg, "-o", "json")
	if !strings.Contains(plan.Stderr, "airflow.mwaa.environment") {
		t.Errorf("plan: the error does not name airflow.mwaa.environment:\n%s", plan.Stderr)
	}
	e.expectRefusedByMWAA(stub, s, "ResourceNotFoundException")
}

// TestMWAADenied: an identity without airflow:InvokeRestApi is exit 1 with
// the permission named, and nothing is deleted.
func TestMWAADenied(t *testing.T) {
	t.Parallel()
	v := airflowVersions[0]
	e, s := newSeedEnv(t, v)
	stub, endpoint := e.startMWAA(s)
	stub.Deny("AccessDeniedException")
	cfg := e.mwaaConfig(v, endpoint, mwaaEnvName)

	res := e.runEnv(cfg, 1, awsEnvironment(mwaaSecret), mwaaSecrets)
	if !strings.Contains(res.Stderr, "airflow:InvokeRestApi") {
		t.Errorf("the error does not name the IAM permission airflow:InvokeRestApi:\n%s", res.Stderr)
	}
	e.expectRefusedByMWAA(stub, s, "AccessDeniedException")
}

// TestMWAAWrongSecret: a request signed with another secret fails the
// stand-in's signature check (so that check is real), exit 1, nothing
// deleted, and neither secret is printed.
func TestMWAAWrongSecret(t *testing.T) {
	t.Parallel()
	v := airflowVersions[1]
	e, s := newSeedEnv(t, v)
	stub, endpoint := e.startMWAA(s)
	cfg := e.mwaaConfig(v, endpoint, mwaaEnvName)

	res := e.runEnv(cfg, 1, awsEnvironment(wrongSecret), mwaaSecrets)
	if !strings.Contains(res.Stderr, "rejected the credentials") {
		t.Errorf("the error does not say the credentials were rejected:\n%s", res.Stderr)
	}
	for _, c := range stub.Calls() {
		if c.SigV4 {
			t.Errorf("call %s %s passed the signature check with the wrong secret", c.Method, c.Path)
		}
	}
	e.expectRefusedByMWAA(stub, s, "InvalidSignatureException")
}

// expectRefusedByMWAA checks that nothing was done: no pod is gone, the
// reaper wrote nothing, the stand-in answered every call with the AWS error
// code and the simulator saw nothing.
func (e *env) expectRefusedByMWAA(stub *mwaastub.Stub, s *sim, code string) {
	t := e.t
	t.Helper()
	e.expectGone(nil)
	e.expectNoWrites(false)
	calls := stub.Calls()
	if len(calls) == 0 {
		t.Error("the stand-in saw no call")
	}
	for _, c := range calls {
		if c.Outcome != code || c.Forwarded != "" {
			t.Errorf("call %s %s: outcome %s, forwarded %q; want %s and nothing forwarded", c.Method, c.Path, c.Outcome, c.Forwarded, code)
		}
	}
	if n := len(s.Requests()); n != 0 {
		t.Errorf("the simulator saw %d requests, want none", n)
	}
}
