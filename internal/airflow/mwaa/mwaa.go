// Package mwaa reaches the Airflow of an Amazon MWAA environment through the
// AWS InvokeRestApi call (aws-sdk-go-v2 service/mwaa), signed with SigV4
// from the default credential chain (IRSA, EKS Pod Identity, env, ...).
//
// It is an http.RoundTripper, so the v1 and v2 Airflow clients run over it
// unchanged: a request for /api/v1/... or /api/v2/... becomes an
// InvokeRestApi call for the path below the API prefix, and the answer
// becomes an HTTP response with the status and JSON body Airflow gave.
//
// Only Airflow's own answers become HTTP responses. A failure of the AWS
// call itself (access denied, no such environment, throttling, no
// credentials, a timeout) is a Go error from RoundTrip, never a response:
// an environment MWAA does not know must not look like a 404 from Airflow,
// which the reaper would take as "this task instance is gone".
package mwaa

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/mwaa"
	"github.com/aws/aws-sdk-go-v2/service/mwaa/document"
	"github.com/aws/aws-sdk-go-v2/service/mwaa/types"
	"github.com/aws/smithy-go"
	smithydocument "github.com/aws/smithy-go/document"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow/transport"
)

// BaseURL is the Airflow base URL the API clients are given; the transport
// ignores its host, the environment name selects the Airflow.
const BaseURL = "https://mwaa.invalid"

// PageSize is the default page size through InvokeRestApi: its answers are
// capped at 6 MB and its calls at 10 s, and KubernetesPodOperator rows
// carry large rendered_fields.
const PageSize = 25

// CallTimeout bounds one InvokeRestApi call, the SDK's own retries
// included, when the caller's deadline (airflow.timeout) is later. MWAA
// gives up on the Airflow call after 10 s and then answers itself; the
// margin lets that answer, which says what happened, arrive before our
// own deadline does. Waiting longer cannot bring an answer.
const CallTimeout = 12 * time.Second

// maxRequestBody bounds the JSON body read from a request: the reaper
// sends small listing filters, never megabytes.
const maxRequestBody = 1 << 20

// Options selects the environment.
type Options struct {
	Environment string
	Region      string
	// Endpoint overrides the AWS endpoint (VPC endpoint, test stand-in).
	Endpoint string
	Logger   *slog.Logger
}

// NewTransport returns the RoundTripper for one environment. It contacts
// nothing: credentials are resolved on the first call, so that a slow or
// briefly failing credential source (STS for IRSA) fails a cycle, not the
// configuration.
func NewTransport(ctx context.Context, o Options) (http.RoundTripper, error) {
	if o.Environment == "" {
		return nil, errors.New("airflow.mwaa.environment is required with airflow.auth.type mwaa")
	}
	if o.Region == "" {
		return nil, errors.New("airflow.mwaa.region is required with airflow.auth.type mwaa")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(o.Region))
	if err != nil {
		// A malformed shared config file or an AWS_PROFILE naming no
		// profile; the SDK's message names the file or the profile.
		return nil, fmt.Errorf("airflow.auth.type mwaa: loading the AWS configuration (AWS_* environment, shared config files): %w", err)
	}
	creds := &recordingProvider{next: cfg.Credentials}
	client := mwaa.NewFromConfig(cfg, func(mo *mwaa.Options) {
		mo.Credentials = creds
		// Request and response logging would print the signed headers.
		mo.ClientLogMode = 0
		if o.Endpoint != "" {
			mo.BaseEndpoint = aws.String(o.Endpoint)
		}
		if mo.BaseEndpoint != nil {
			// InvokeRestApi is modelled with the host prefix "env." (the
			// public endpoint is env.airflow.<region>.amazonaws.com). An
			// endpoint given explicitly - ours, or AWS_ENDPOINT_URL_MWAA -
			// already names the host that serves the call: a VPC interface
			// endpoint's DNS name or a test stand-in on 127.0.0.1, where
			// "env." would make a name that does not resolve. The SDK has
			// no client option for this; its prefix middleware skips when
			// the stack value DisableEndpointHostPrefix is set, and stack
			// values are cleared at the start of every operation, so it
			// must be set by a middleware inside the stack.
			mo.APIOptions = append(mo.APIOptions, disableHostPrefix)
		}
	})
	endpoint := "the public AWS endpoint"
	if o.Endpoint != "" {
		endpoint = transport.RedactURL(o.Endpoint)
	}
	o.Logger.Info("Airflow is reached through MWAA InvokeRestApi", "environment", o.Environment, "region", o.Region, "endpoint", endpoint)
	return &invoker{client: client, creds: creds, env: o.Environment, region: o.Region, log: o.Logger}, nil
}

func disableHostPrefix(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("KPOReaperExactEndpointHost",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			return next.HandleInitialize(smithyhttp.DisableEndpointHostPrefix(ctx, true), in)
		}), middleware.Before)
}

// invoker is the RoundTripper.
type invoker struct {
	client      *mwaa.Client
	creds       *recordingProvider
	env, region string
	log         *slog.Logger
}

func (t *invoker) RoundTrip(req *http.Request) (*http.Response, error) {
	in, err := t.translate(req)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(req.Context(), CallTimeout)
	defer cancel()
	out, err := t.client.InvokeRestApi(ctx, in)
	if err == nil {
		return t.response(req, out.RestApiStatusCode, out.RestApiResponse)
	}
	// Airflow answered, with a 4xx or a 5xx: hand its answer up as the
	// HTTP layers would have seen it, so that a 404 stays Airflow's 404.
	var ce *types.RestApiClientException
	if errors.As(err, &ce) && ce.RestApiStatusCode != nil {
		return t.response(req, ce.RestApiStatusCode, ce.RestApiResponse)
	}
	var se *types.RestApiServerException
	if errors.As(err, &se) && se.RestApiStatusCode != nil {
		return t.response(req, se.RestApiStatusCode, se.RestApiResponse)
	}
	e := t.describe(ctx, err)
	t.log.Debug("MWAA InvokeRestApi failed", "environment", t.env, "code", e.Code, "permanent", e.permanent)
	return nil, e
}

// translate turns the HTTP request into the InvokeRestApi input. It
// closes the request body, as a RoundTripper must.
func (t *invoker) translate(req *http.Request) (*mwaa.InvokeRestApiInput, error) {
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(io.LimitReader(req.Body, maxRequestBody+1))
		_ = req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("reading the request body for MWAA: %w", err)
		}
		if len(b) > maxRequestBody {
			return nil, fmt.Errorf("request body over %d bytes: too large for MWAA InvokeRestApi", maxRequestBody)
		}
		body = b
	}
	method, ok := methods[req.Method]
	if !ok {
		return nil, permanentf("", "MWAA InvokeRestApi cannot send a %s request", req.Method)
	}
	path, err := apiPath(req.URL)
	if err != nil {
		return nil, err
	}
	in := &mwaa.InvokeRestApiInput{Name: aws.String(t.env), Path: aws.String(path), Method: method}
	q, err := url.ParseQuery(req.URL.RawQuery)
	if err != nil {
		return nil, permanentf("", "the query of %s is malformed: %v", path, err)
	}
	if len(q) > 0 {
		in.QueryParameters = queryDocument(q)
	}
	if len(body) > 0 {
		if ct := req.Header.Get("Content-Type"); ct != "" {
			if mt, _, err := mime.ParseMediaType(ct); err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
				return nil, permanentf("", "MWAA InvokeRestApi carries only JSON bodies, not %q", ct)
			}
		}
		v, err := decodeJSON(body)
		if err != nil {
			return nil, permanentf("", "the request body for %s is not JSON: %v", path, err)
		}
		in.Body = document.NewLazyDocument(v)
	}
	return in, nil
}

var methods = map[string]types.RestApiMethod{
	http.MethodGet:    types.RestApiMethodGet,
	http.MethodPost:   types.RestApiMethodPost,
	http.MethodPut:    types.RestApiMethodPut,
	http.MethodPatch:  types.RestApiMethodPatch,
	http.MethodDelete: types.RestApiMethodDelete,
}

// apiPath is the request path below /api/v1 or /api/v2, decoded: MWAA
// takes "/dags/..." and adds the API prefix itself (for Airflow 3
// environments presumably /api/v2: unverified on a live environment; the
// version check in package connect catches a mismatch).
//
// How MWAA puts Path into the URL it calls - verbatim, or percent-encoded
// once more - is not documented. An id made of unreserved characters,
// sub-delimiters, ':' and '@' (every run id Airflow generates:
// manual__2026-01-01T00:00:00+00:00) reaches Airflow intact either way when
// sent decoded, while sending it encoded would be encoded twice in the
// second case, turning an existing run into a 404 that the reaper must
// never see by mistake. An id with any other character ('/', '%', '?',
// '#', a space, non-ASCII) could go wrong either way, so such a request
// fails instead of guessing.
func apiPath(u *url.URL) (string, error) {
	segs := strings.Split(u.EscapedPath(), "/")
	start := -1
	for i := 0; i+1 < len(segs); i++ {
		if segs[i] == "api" && (segs[i+1] == "v1" || segs[i+1] == "v2") {
			start = i + 2
			break
		}
	}
	if start < 0 {
		return "", permanentf("", "MWAA InvokeRestApi reaches only the Airflow REST API (/api/v1, /api/v2), not %s", u.EscapedPath())
	}
	var b strings.Builder
	for _, s := range segs[start:] {
		d, err := url.PathUnescape(s)
		if err != nil {
			return "", permanentf("", "bad path segment %q: %v", s, err)
		}
		for _, r := range d {
			if !pathSafe(r) {
				return "", permanentf("", "an Airflow id contains %q: how MWAA InvokeRestApi encodes such a path is unverified, so it is not sent", r)
			}
		}
		b.WriteString("/")
		b.WriteString(d)
	}
	if b.Len() == 0 {
		return "/", nil
	}
	return b.String(), nil
}

// pathSafe: RFC 3986 unreserved and sub-delims characters, ':' and '@'.
func pathSafe(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	}
	return strings.ContainsRune("-._~!$&'()*+,;=:@", r)
}

// queryDocument is the query as a JSON object: a key given once maps to
// its string, a repeated key to an array of strings
// (state=running&state=queued -> {"state":["running","queued"]}). That
// MWAA expands an array into a repeated query parameter is an assumption
// (the AWS documentation shows only single values): verify on a live
// environment.
func queryDocument(q url.Values) document.Interface {
	m := make(map[string]any, len(q))
	for k, vs := range q {
		if len(vs) == 1 {
			m[k] = vs[0]
			continue
		}
		arr := make([]any, len(vs))
		for i, v := range vs {
			arr[i] = v
		}
		m[k] = arr
	}
	return document.NewLazyDocument(m)
}

// decodeJSON decodes one JSON value, keeping numbers exact: the SDK's
// document encoder writes a json.Number as a string, a document.Number as
// the number it is.
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("more than one JSON value")
	}
	return numbers(v), nil
}

func numbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		return smithydocument.Number(x)
	case map[string]any:
		for k, e := range x {
			x[k] = numbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = numbers(e)
		}
	}
	return v
}

// response is Airflow's answer as an HTTP response. Airflow's v1 errors
// are problem+json, but what MWAA hands back is a JSON document with no
// media type; the layers above read the body, not the subtype.
func (t *invoker) response(req *http.Request, status *int32, doc document.Interface) (*http.Response, error) {
	if status == nil || *status < 100 || *status > 599 {
		return nil, &Error{Code: "NoStatus", msg: fmt.Sprintf("%s %s: MWAA InvokeRestApi answered without an Airflow status code", req.Method, req.URL.Path)}
	}
	var body []byte
	if doc != nil {
		b, err := doc.MarshalSmithyDocument()
		if err != nil {
			return nil, &Error{Code: "BadDocument", msg: fmt.Sprintf("MWAA InvokeRestApi: re-encoding Airflow's answer: %v", err)}
		}
		// An absent response stays an empty body (not "null", which a
		// client could read as an empty listing): it fails to parse.
		if !bytes.Equal(b, []byte("null")) {
			body = b
		}
	}
	code := int(*status)
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	return &http.Response{
		Status:        strconv.Itoa(code) + " " + http.StatusText(code),
		StatusCode:    code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}, nil
}

// Error is a failure of the InvokeRestApi call itself: Airflow gave no
// answer. Code is the AWS error code, when AWS sent one.
type Error struct {
	Code      string
	msg       string
	permanent bool
}

func (e *Error) Error() string { return e.msg }

// Permanent reports that repeating the call cannot change the outcome
// (access denied, no such environment, rejected credentials), so a retry
// layer should give up at once.
func (e *Error) Permanent() bool { return e.permanent }

func permanentf(code, format string, args ...any) *Error {
	return &Error{Code: code, msg: fmt.Sprintf(format, args...), permanent: true}
}

// describe names what to fix for an SDK error. Messages from AWS are
// quoted after the credentials the call used were cut out of them: some
// AWS signature errors echo the canonical request, session token header
// included.
func (t *invoker) describe(ctx context.Context, err error) *Error {
	scrub := t.creds.scrubber()
	quoted := func(msg string) string {
		msg = scrub(msg)
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[:i]
		}
		if len(msg) > 300 {
			msg = msg[:300] + "…"
		}
		if msg == "" {
			return ""
		}
		return " (AWS: " + msg + ")"
	}
	reqID := ""
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.ServiceRequestID() != "" {
		reqID = ", request id " + re.ServiceRequestID()
	}
	where := fmt.Sprintf("MWAA InvokeRestApi on environment %q in %s", t.env, t.region)
	role := fmt.Sprintf("arn:aws:airflow:%s:<account>:role/%s/Viewer", t.region, t.env)

	if ce := (credentialError{}); errors.As(err, &ce) {
		return permanentf("", "%s: no AWS credentials: %s (the default chain looks at IRSA's AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE, EKS Pod Identity, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, shared config files and the instance role)", where, scrub(ce.err.Error()))
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		code, msg := apiErr.ErrorCode(), apiErr.ErrorMessage()
		// AWS documents the message, not the error code that carries it.
		if strings.Contains(msg, "Update your environment to use InvokeRestApi") {
			return permanentf(code, "%s: the environment is too old for InvokeRestApi: update it (MWAA needs Airflow 2.4.3 or later on a current platform version)%s", where, quoted(msg))
		}
		switch code {
		case "AccessDeniedException":
			return permanentf(code, "%s: access denied%s: the AWS identity needs IAM permission airflow:InvokeRestApi on %s (the role suffix is the Airflow role it acts as; Viewer suffices)%s", where, reqID, role, quoted(msg))
		case "ResourceNotFoundException":
			return permanentf(code, "%s: MWAA has no such environment%s: check airflow.mwaa.environment and airflow.mwaa.region%s", where, reqID, quoted(msg))
		case "ValidationException":
			return permanentf(code, "%s: MWAA rejected the request as invalid%s%s", where, reqID, quoted(msg))
		case "UnrecognizedClientException", "InvalidClientTokenId", "InvalidSignatureException", "SignatureDoesNotMatch",
			"IncompleteSignature", "MissingAuthenticationToken", "ExpiredToken", "ExpiredTokenException", "InvalidToken":
			return permanentf(code, "%s: AWS rejected the credentials (%s)%s: check the credentials the default chain finds (IRSA service account annotation, EKS Pod Identity association, AWS_* environment) and the system clock%s", where, code, reqID, quoted(msg))
		}
		if _, throttled := throttleCodes[code]; throttled {
			return &Error{Code: code, msg: fmt.Sprintf("%s: throttled by AWS (%s) even after the SDK's retries%s: lower the call rate (a longer reaper.interval) or ask AWS for a higher quota%s", where, code, reqID, quoted(msg))}
		}
		fault := "failed"
		if apiErr.ErrorFault() == smithy.FaultServer {
			fault = "failed on the AWS side (transient)"
		}
		return &Error{Code: code, msg: fmt.Sprintf("%s %s: %s%s%s", where, fault, code, reqID, quoted(msg))}
	}
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		return &Error{Code: "Timeout", msg: fmt.Sprintf("%s: no answer within the deadline (airflow.timeout, at most %s; MWAA stops an Airflow call after 10 s): lower airflow.pageSize if listings are slow", where, CallTimeout)}
	}
	if errors.Is(err, context.Canceled) {
		return &Error{Code: "Canceled", msg: where + ": canceled"}
	}
	// Network errors name the endpoint's host, never a credential.
	return &Error{Code: "", msg: fmt.Sprintf("%s: %s", where, scrub(err.Error()))}
}

// throttleCodes are the AWS error codes that mean "slow down".
var throttleCodes = map[string]struct{}{
	"ThrottlingException": {}, "Throttling": {}, "TooManyRequestsException": {}, "RequestLimitExceeded": {},
	"ThrottledException": {}, "RequestThrottledException": {}, "LimitExceededException": {}, "SlowDown": {},
}

// credentialError marks a failure to obtain credentials, before anything
// was sent to AWS.
type credentialError struct{ err error }

func (c credentialError) Error() string { return c.err.Error() }
func (c credentialError) Unwrap() error { return c.err }

// recordingProvider wraps the SDK's credential cache: it remembers the
// secrets last handed out, so that errors can be scrubbed of them, and
// marks a retrieval failure as such.
type recordingProvider struct {
	next aws.CredentialsProvider
	mu   sync.Mutex
	last aws.Credentials
}

func (p *recordingProvider) Retrieve(ctx context.Context) (aws.Credentials, error) {
	if p.next == nil {
		return aws.Credentials{}, credentialError{errors.New("no credential provider is configured")}
	}
	c, err := p.next.Retrieve(ctx)
	if err != nil {
		return c, credentialError{err}
	}
	p.mu.Lock()
	p.last = c
	p.mu.Unlock()
	return c, nil
}

// scrubber returns a function that cuts the last credentials' secrets out
// of a string.
func (p *recordingProvider) scrubber() func(string) string {
	p.mu.Lock()
	c := p.last
	p.mu.Unlock()
	var pairs []string
	for _, s := range []string{c.SecretAccessKey, c.SessionToken} {
		if s != "" {
			pairs = append(pairs, s, "[redacted]")
		}
	}
	if len(pairs) == 0 {
		return func(s string) string { return s }
	}
	return strings.NewReplacer(pairs...).Replace
}
