// Package transport builds the *http.Client every Airflow API call goes
// through. The client fails closed: a response that is not a plain JSON
// answer from Airflow (a login page, a redirect, a proxy error, retries
// spent, an authentication that cannot be repaired) is an error, so that
// nothing above it can mistake such an answer for "no task instances".
//
// The layers, outermost first:
//
//	sanity  – rejects redirects and 2xx answers that are not JSON
//	retry   – go-retryablehttp: GET/HEAD on 5xx, 429 and connection errors
//	auth    – basic, bearer (static or file), airflow-jwt with re-login
//	          (password or Keycloak client credentials), google (Cloud
//	          Composer access tokens)
//	observe – Options.Observer, once per request sent (retries included)
//	base    – a pooled net/http transport (HTTP(S)_PROXY and NO_PROXY,
//	          airflow.tls), whose TLS failures name airflow.tls
package transport

import (
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/go-retryablehttp"
)

// Defaults for Options fields left at zero. MaxRetries is not defaulted: 0
// is a legitimate "do not retry" (airflow.maxRetries: 0), so callers pass
// DefaultMaxRetries themselves.
const (
	DefaultTimeout      = 30 * time.Second
	DefaultMaxRetries   = 4
	DefaultRetryWaitMin = 1 * time.Second
	DefaultRetryWaitMax = 30 * time.Second
	// IdleConnsPerHost is at least the reaper's lookup concurrency: with
	// fewer idle connections kept, each cycle's concurrent lookups open
	// (and TLS-handshake) new connections to Airflow over and over.
	IdleConnsPerHost = 16
)

// Options configures New.
type Options struct {
	// Timeout bounds each request sent, including reading its body; the
	// retries of one call each get their own Timeout. The caller's context
	// bounds the call as a whole.
	Timeout time.Duration
	// MaxRetries is the number of retries after the first attempt of an
	// idempotent request; 0 disables retrying.
	MaxRetries int
	// RetryWaitMin and RetryWaitMax bound the exponential backoff; a
	// Retry-After answer is honoured up to RetryWaitMax.
	RetryWaitMin, RetryWaitMax time.Duration
	Auth                       Auth
	TLS                        TLS
	// Base replaces the network transport, for an Airflow reached through
	// another service's SDK (MWAA's InvokeRestApi); TLS must be empty then.
	Base   http.RoundTripper
	Logger *slog.Logger
	// Observer, if set, is called once per request sent to the server,
	// retries and logins included, possibly from several goroutines at
	// once. endpoint is a templated path such as
	// "/api/v1/dags/{dag_id}/dagRuns", never raw ids; status is 0 when no
	// response arrived.
	Observer func(endpoint string, method string, status int, d time.Duration)

	// waitObserver sees every backoff the retry layer decides on; tests use
	// it to assert Retry-After handling without measuring time.
	waitObserver func(time.Duration)
	// now replaces time.Now for JWT expiry decisions in tests.
	now func() time.Time
}

// Auth holds the credentials. They never appear in errors or logs.
type Auth struct {
	Type      string // one of authtype.HTTP(); "" is none
	Username  string
	Password  string
	Token     string
	TokenFile string
	// ClientID and ClientSecret make airflow-jwt log in with the OAuth2
	// client_credentials grant (Keycloak auth manager) instead of a
	// username and password.
	ClientID     string
	ClientSecret string
	// CredentialsFile and Scopes configure google: a credentials JSON, or
	// Application Default Credentials when empty.
	CredentialsFile string
	Scopes          []string
	// BaseURL is the Airflow base URL; airflow-jwt logs in at
	// POST {BaseURL}/auth/token.
	BaseURL string
}

// TLS configures HTTPS beyond the system trust store.
type TLS struct {
	CAFile             string // PEM bundle trusted in addition to the system roots
	CertFile, KeyFile  string // client certificate for mutual TLS
	InsecureSkipVerify bool
}

// New builds the client. It does not contact Airflow.
func New(o Options) (*http.Client, error) {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxRetries < 0 {
		return nil, fmt.Errorf("airflow max retries must not be negative, got %d", o.MaxRetries)
	}
	if o.RetryWaitMin <= 0 {
		o.RetryWaitMin = DefaultRetryWaitMin
	}
	if o.RetryWaitMax <= 0 {
		o.RetryWaitMax = DefaultRetryWaitMax
	}
	if o.RetryWaitMax < o.RetryWaitMin {
		o.RetryWaitMax = o.RetryWaitMin
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.now == nil {
		o.now = time.Now
	}

	base := o.Base
	if base == nil {
		t := cleanhttp.DefaultPooledTransport() // honours HTTP(S)_PROXY and NO_PROXY
		t.MaxIdleConnsPerHost = IdleConnsPerHost
		if err := configureTLS(t, o.TLS, o.Logger); err != nil {
			return nil, err
		}
		base = &tlsErrorRT{next: t, clientCert: o.TLS.CertFile != ""}
	} else if o.TLS != (TLS{}) {
		return nil, errors.New("airflow.tls does not apply when the connection is made by another SDK (MWAA)")
	}
	observed := &observeRT{next: base, observer: o.Observer}
	authed, err := newAuthRT(o, observed)
	if err != nil {
		return nil, err
	}
	// One attempt: the per-request Timeout lives here so that every retry
	// gets a fresh budget while the caller's context bounds the whole call.
	attempt := &http.Client{Transport: authed, Timeout: o.Timeout, CheckRedirect: noRedirects}

	r := &retryRT{
		attempt: attempt,
		logger:  o.Logger,
	}
	r.client = &retryablehttp.Client{
		HTTPClient:   attempt,
		Logger:       nil, // its default logger prints raw URLs to stderr; retryPolicy logs through slog instead
		RetryWaitMin: o.RetryWaitMin,
		RetryWaitMax: o.RetryWaitMax,
		RetryMax:     o.MaxRetries,
		CheckRetry:   r.retryPolicy,
		Backoff:      newBackoff(o.waitObserver, o.now),
		ErrorHandler: spentHandler,
	}
	return &http.Client{
		Transport:     &sanityRT{next: r},
		CheckRedirect: noRedirects,
	}, nil
}

// noRedirects stops net/http from following redirects: an Airflow API never
// redirects a GET, while a proxy or SSO front-end sends a login page this
// way, and following it would turn "not authenticated" into a 200.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// sanityRT turns answers that cannot be Airflow's own into errors.
type sanityRT struct{ next http.RoundTripper }

func (s *sanityRT) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := s.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	ep := Endpoint(req.URL)
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		drain(resp)
		where := "elsewhere"
		if loc, err := resp.Location(); err == nil {
			loc.RawQuery, loc.Fragment, loc.User = "", "", nil
			where = loc.String()
		}
		return nil, fmt.Errorf("%s %s: redirected (%s) to %s: a login page or proxy? check airflow.url and airflow.auth", req.Method, ep, resp.Status, where)
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		if ct := resp.Header.Get("Content-Type"); !isJSON(ct) {
			drain(resp)
			if ct == "" {
				ct = "no content type"
			}
			return nil, fmt.Errorf("got %s from %s %s: a login page or proxy? check airflow.url and airflow.auth", ct, req.Method, ep)
		}
	}
	return resp, nil
}

// isJSON reports whether a Content-Type names JSON, problem+json included.
func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

// observeRT reports every request sent, so that retries and logins count as
// API calls too.
type observeRT struct {
	next     http.RoundTripper
	observer func(endpoint, method string, status int, d time.Duration)
}

func (o *observeRT) RoundTrip(req *http.Request) (*http.Response, error) {
	if o.observer == nil {
		return o.next.RoundTrip(req)
	}
	start := time.Now()
	resp, err := o.next.RoundTrip(req)
	status := 0
	if err == nil {
		status = resp.StatusCode
	}
	o.observer(Endpoint(req.URL), req.Method, status, time.Since(start))
	return resp, err
}

// drain discards a response the caller will never see, so that its
// connection can be reused.
func drain(resp *http.Response) {
	if resp == nil || resp.Body == nil {
		return
	}
	buf := make([]byte, 4096)
	for i := 0; i < 16; i++ { // at most 64 KiB: a huge error page is not worth keeping a connection for
		if _, err := resp.Body.Read(buf); err != nil {
			break
		}
	}
	_ = resp.Body.Close()
}

// permanent marks an error the retry layer must not retry: repeating the
// request cannot change the answer (rejected credentials, a 401 after a
// fresh login).
type permanent struct{ err error }

func (p *permanent) Error() string { return p.err.Error() }
func (p *permanent) Unwrap() error { return p.err }

// isPermanent also honours errors of a Base transport that know they are
// final (MWAA's access denied or unknown environment): retrying cannot
// change them and only delays the failure.
func isPermanent(err error) bool {
	var p *permanent
	var final interface{ Permanent() bool }
	return errors.As(err, &p) || (errors.As(err, &final) && final.Permanent())
}
