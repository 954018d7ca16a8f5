package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// retryRT retries idempotent requests through go-retryablehttp and turns
// its outcome into errors that name the endpoint.
type retryRT struct {
	client  *retryablehttp.Client
	attempt *http.Client
	logger  *slog.Logger
}

type callKey struct{}

// call is what retryPolicy needs to log about the request; retryablehttp
// hands the policy only the context.
type call struct{ method, endpoint string }

func (r *retryRT) RoundTrip(req *http.Request) (*http.Response, error) {
	c := call{method: req.Method, endpoint: Endpoint(req.URL)}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		// A POST may have changed something on the server before failing;
		// sending it again is the caller's decision, not the transport's.
		resp, err := r.attempt.Do(req)
		return resp, unwrapURLError(c, err)
	}
	rreq, err := retryablehttp.FromRequest(req.WithContext(context.WithValue(req.Context(), callKey{}, c)))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", c.method, c.endpoint, err)
	}
	resp, err := r.client.Do(rreq)
	if err != nil {
		var spent *spentError
		if errors.As(err, &spent) {
			if spent.attempts <= 1 && spent.lastStatus == "" && spent.lastErr != nil {
				// Not retried at all (a permanent error or a cancelled
				// context): "giving up" would mislead.
				return nil, unwrapURLError(c, spent.lastErr)
			}
			spent.method, spent.endpoint = c.method, c.endpoint
			return nil, spent
		}
		return nil, unwrapURLError(c, err)
	}
	return resp, nil
}

// unwrapURLError drops the *url.Error the inner http.Client adds: the outer
// client adds its own, and a doubled one repeats the full URL twice.
func unwrapURLError(c call, err error) error {
	if err == nil {
		return nil
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("%s %s: %w", c.method, c.endpoint, err)
}

// retryPolicy retries 5xx (except 501), 429 and transport errors, never any
// other 4xx and never an error marked permanent.
func (r *retryRT) retryPolicy(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	retry := false
	switch {
	case err != nil:
		if !isPermanent(err) {
			// retryablehttp knows which transport errors are permanent
			// (TLS verification, bad scheme, bad header).
			retry, _ = retryablehttp.DefaultRetryPolicy(ctx, nil, err)
		}
	case resp.StatusCode == http.StatusTooManyRequests,
		resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented,
		resp.StatusCode == 0:
		retry = true
	}
	if retry {
		c, _ := ctx.Value(callKey{}).(call)
		attrs := []any{"method", c.method, "endpoint", c.endpoint}
		if err != nil {
			attrs = append(attrs, "error", err.Error())
		} else {
			attrs = append(attrs, "status", resp.StatusCode)
		}
		r.logger.Debug("airflow API call failed, will retry if attempts remain", attrs...)
	}
	return retry, nil
}

// spentError is the outcome of a request whose retries ran out.
type spentError struct {
	method, endpoint string
	attempts         int
	lastStatus       string // "" when the last attempt got no response
	lastJSON         bool   // the last answer was JSON: Airflow's own, not a proxy's page
	lastErr          error
}

func (e *spentError) Error() string {
	last := "no response"
	switch {
	case e.lastStatus != "":
		last = "last status " + e.lastStatus
	case e.lastErr != nil:
		last = "last error: " + e.lastErr.Error()
	}
	return fmt.Sprintf("%s %s: giving up after %d attempt(s), %s", e.method, e.endpoint, e.attempts, last)
}

func (e *spentError) Unwrap() error { return e.lastErr }

// RequestScoped: retries spent on Airflow's own 5xx or 429 answers concern
// this request; retries spent on a proxy's pages or without any answer mean
// Airflow is unreachable.
func (e *spentError) RequestScoped() bool { return e.lastStatus != "" && e.lastJSON }

// spentHandler replaces retryablehttp's "giving up" error, which names the
// raw URL and hides the last status, with one that names both.
func spentHandler(resp *http.Response, err error, attempts int) (*http.Response, error) {
	e := &spentError{attempts: attempts, lastErr: err}
	if resp != nil {
		e.lastStatus = resp.Status
		e.lastJSON = isJSON(resp.Header.Get("Content-Type"))
		drain(resp)
	}
	var ue *url.Error
	if errors.As(e.lastErr, &ue) {
		e.lastErr = ue.Err
	}
	return nil, e
}

// newBackoff is exponential backoff with jitter, except that a 429 or 503
// carrying Retry-After waits what the server asked, capped at max so that
// a misbehaving proxy cannot stall a cycle.
func newBackoff(observe func(time.Duration), now func() time.Time) retryablehttp.Backoff {
	return func(lo, hi time.Duration, attempt int, resp *http.Response) time.Duration {
		d := -time.Duration(1)
		if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
			if ra, ok := parseRetryAfter(resp.Header.Get("Retry-After"), now()); ok {
				d = min(ra, hi)
			}
		}
		if d < 0 {
			exp := hi
			if attempt < 32 {
				if e := lo * time.Duration(1<<attempt); e > 0 && e < hi {
					exp = e
				}
			}
			// Equal jitter: at least half the exponential step, so that
			// many reapers do not retry in lockstep yet still back off.
			d = exp/2 + rand.N(exp/2+1)
		}
		if observe != nil {
			observe(d)
		}
		return d
	}
}

// parseRetryAfter reads delta-seconds or an HTTP-date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s < 0 {
			return 0, false
		}
		if s > int64(24*time.Hour/time.Second) {
			s = int64(24 * time.Hour / time.Second)
		}
		return time.Duration(s) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	if d := t.Sub(now); d > 0 {
		return d, true
	}
	return 0, true
}
