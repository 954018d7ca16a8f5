// Package mwaastub stands in for Amazon MWAA's InvokeRestApi endpoint
// (POST /restapi/{Name}, AWS restJson1) in front of an Airflow simulator,
// so that the reaper's MWAA transport can be run end to end without AWS.
//
// It checks what AWS would check before the call reaches Airflow: a SigV4
// signature, re-computed with the one identity it knows, for the service
// "airflow" in its region; then the environment name. It forwards the
// Airflow call with the simulator's own credentials (MWAA calls the
// webserver as the role named in the IAM resource, never with the
// caller's), under /api/v1 or /api/v2 according to the simulated
// Airflow's major version, and wraps the answer in MWAA's shapes: 200
// with RestApiStatusCode and RestApiResponse, or RestApiClientException /
// RestApiServerException for Airflow's 4xx / 5xx.
//
// Where the real service is undocumented the stand-in makes the
// assumption the transport makes, and a live environment must confirm
// it: an array in QueryParameters becomes a repeated query parameter, Path
// is inserted into the URL as a decoded path, and Airflow 3 environments
// map Path below /api/v2.
package mwaastub

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Options configures a Stub.
type Options struct {
	// Environment is the one environment name it knows; any other is a
	// ResourceNotFoundException.
	Environment string
	Region      string
	// Credentials is the only identity it accepts: the access key id must
	// match, the signature must verify with the secret, and the session
	// token, when set, must be sent as X-Amz-Security-Token.
	Credentials aws.Credentials
	// Airflow is the environment's webserver.
	Airflow http.Handler
	// APIPrefix is "/api/v1" for an Airflow 2 environment, "/api/v2" for
	// Airflow 3.
	APIPrefix string
	// Authorize adds the credentials MWAA's own call to the webserver
	// would carry (basic auth, or a token the simulator issued).
	Authorize func(*http.Request)
}

// Call is one request the stand-in received.
type Call struct {
	// Name is the environment named in the URL.
	Name string
	// SigV4 reports that the request carried a valid signature by the
	// known identity; Rejected says why not, when it did not.
	SigV4    bool
	Rejected string
	// The InvokeRestApi input.
	Method          string
	Path            string
	QueryParameters json.RawMessage
	Body            json.RawMessage
	// Forwarded is the Airflow URL called (path and query), "" when the
	// call went no further than AWS; AirflowStatus is Airflow's answer.
	Forwarded     string
	AirflowStatus int
	// Outcome is "ok" or the AWS error code answered.
	Outcome string
}

// Stub is the stand-in, an http.Handler.
type Stub struct {
	o Options

	mu    sync.Mutex
	calls []Call
	deny  string
}

// New returns a Stub.
func New(o Options) *Stub {
	if o.Authorize == nil {
		o.Authorize = func(*http.Request) {}
	}
	return &Stub{o: o}
}

// Calls returns every request received so far.
func (s *Stub) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// Deny makes every later correctly signed call fail with this AWS error
// code (AccessDeniedException: the identity lacks airflow:InvokeRestApi);
// "" ends it.
func (s *Stub) Deny(code string) {
	s.mu.Lock()
	s.deny = code
	s.mu.Unlock()
}

func (s *Stub) denied() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deny
}

func (s *Stub) record(c Call) {
	s.mu.Lock()
	s.calls = append(s.calls, c)
	s.mu.Unlock()
}

// ServeHTTP serves InvokeRestApi.
func (s *Stub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		awsError(w, http.StatusBadRequest, "SerializationException", "cannot read the request body")
		return
	}
	var c Call
	defer func() { s.record(c) }()

	name, ok := strings.CutPrefix(r.URL.EscapedPath(), "/restapi/")
	if r.Method != http.MethodPost || !ok || name == "" || strings.Contains(name, "/") {
		c.Outcome = "UnknownOperationException"
		awsError(w, http.StatusNotFound, c.Outcome, "")
		return
	}
	c.Name, _ = url.PathUnescape(name)

	if code, why := s.verify(r, body); code != "" {
		c.Rejected, c.Outcome = why, code
		awsError(w, http.StatusForbidden, code, why)
		return
	}
	c.SigV4 = true

	var in struct {
		Method          string
		Path            string
		QueryParameters json.RawMessage
		Body            json.RawMessage
	}
	if err := json.Unmarshal(body, &in); err != nil {
		c.Outcome = "SerializationException"
		awsError(w, http.StatusBadRequest, c.Outcome, "the body is not the InvokeRestApi input")
		return
	}
	c.Method, c.Path, c.QueryParameters, c.Body = in.Method, in.Path, in.QueryParameters, in.Body

	if code := s.denied(); code != "" {
		c.Outcome = code
		awsError(w, http.StatusForbidden, code, fmt.Sprintf("User: arn:aws:sts::000000000000:assumed-role/kpo-reaper/e2e is not authorized to perform: airflow:InvokeRestApi on resource: arn:aws:airflow:%s:000000000000:role/%s/Viewer", s.o.Region, c.Name))
		return
	}
	if c.Name != s.o.Environment {
		c.Outcome = "ResourceNotFoundException"
		awsError(w, http.StatusNotFound, c.Outcome, "Environment "+c.Name+" not found")
		return
	}
	switch in.Method {
	case "GET", "POST", "PUT", "PATCH", "DELETE":
	default:
		c.Outcome = "ValidationException"
		awsError(w, http.StatusBadRequest, c.Outcome, "1 validation error detected: Value at 'method' failed to satisfy constraint")
		return
	}
	if !strings.HasPrefix(in.Path, "/") {
		c.Outcome = "ValidationException"
		awsError(w, http.StatusBadRequest, c.Outcome, "1 validation error detected: Value at 'path' failed to satisfy constraint")
		return
	}
	query, err := queryFrom(in.QueryParameters)
	if err != nil {
		c.Outcome = "ValidationException"
		awsError(w, http.StatusBadRequest, c.Outcome, "QueryParameters: "+err.Error())
		return
	}

	// The Airflow call: Path decoded, set as the URL's path (url.URL
	// escapes what must be escaped), the query rebuilt from the document.
	u := &url.URL{Path: s.o.APIPrefix + in.Path, RawQuery: query.Encode()}
	c.Forwarded = u.RequestURI()
	var fwdBody io.Reader
	if len(in.Body) > 0 && string(in.Body) != "null" {
		fwdBody = bytes.NewReader(in.Body)
	}
	fwd := httptest.NewRequestWithContext(r.Context(), in.Method, c.Forwarded, fwdBody)
	if fwdBody != nil {
		fwd.Header.Set("Content-Type", "application/json")
	}
	fwd.Header.Set("Accept", "application/json")
	s.o.Authorize(fwd)
	rec := httptest.NewRecorder()
	s.o.Airflow.ServeHTTP(rec, fwd)
	c.AirflowStatus = rec.Code

	answer := json.RawMessage(rec.Body.Bytes())
	if !json.Valid(answer) {
		// What MWAA does with a non-JSON Airflow answer is unknown; a
		// JSON string keeps the text visible.
		answer, _ = json.Marshal(rec.Body.String())
	}
	out, _ := json.Marshal(map[string]any{"RestApiStatusCode": rec.Code, "RestApiResponse": answer})
	switch {
	case rec.Code >= 500:
		c.Outcome = "RestApiServerException"
		awsAnswer(w, http.StatusBadRequest, c.Outcome, out)
	case rec.Code >= 400:
		c.Outcome = "RestApiClientException"
		awsAnswer(w, http.StatusBadRequest, c.Outcome, out)
	default:
		c.Outcome = "ok"
		awsAnswer(w, http.StatusOK, "", out)
	}
}

// queryFrom turns the QueryParameters document into a query: a string, a
// number or a boolean is one value, an array repeats the key.
func queryFrom(doc json.RawMessage) (url.Values, error) {
	q := url.Values{}
	if len(doc) == 0 || string(doc) == "null" {
		return q, nil
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	one := func(k string, v any) error {
		switch x := v.(type) {
		case string:
			q.Add(k, x)
		case json.Number:
			q.Add(k, x.String())
		case bool:
			q.Add(k, fmt.Sprint(x))
		default:
			return fmt.Errorf("%s: unsupported value %v", k, v)
		}
		return nil
	}
	for k, v := range m {
		if arr, ok := v.([]any); ok {
			for _, e := range arr {
				if err := one(k, e); err != nil {
					return nil, err
				}
			}
			continue
		}
		if err := one(k, v); err != nil {
			return nil, err
		}
	}
	return q, nil
}

// verify checks the SigV4 signature by signing the same request again with
// the known secret. It returns the AWS error code and message to answer,
// or "" when the signature is valid.
func (s *Stub) verify(r *http.Request, body []byte) (code, why string) {
	authz := r.Header.Get("Authorization")
	if authz == "" {
		return "MissingAuthenticationTokenException", "Missing Authentication Token"
	}
	alg, rest, _ := strings.Cut(authz, " ")
	if alg != "AWS4-HMAC-SHA256" {
		return "IncompleteSignatureException", "the Authorization header is not AWS4-HMAC-SHA256"
	}
	fields := map[string]string{}
	for _, f := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		fields[k] = v
	}
	cred, signedHeaders, sig := fields["Credential"], fields["SignedHeaders"], fields["Signature"]
	if cred == "" || signedHeaders == "" || len(sig) != 64 {
		return "IncompleteSignatureException", "Authorization lacks Credential, SignedHeaders or Signature"
	}
	scope := strings.Split(cred, "/")
	if len(scope) != 5 {
		return "IncompleteSignatureException", "malformed Credential scope"
	}
	if scope[0] != s.o.Credentials.AccessKeyID {
		return "UnrecognizedClientException", "The security token included in the request is invalid."
	}
	amzDate := r.Header.Get("X-Amz-Date")
	signedAt, err := time.Parse("20060102T150405Z", amzDate)
	if err != nil {
		return "IncompleteSignatureException", "X-Amz-Date is missing or malformed"
	}
	if scope[1] != amzDate[:8] || scope[2] != s.o.Region || scope[3] != "airflow" || scope[4] != "aws4_request" {
		return "InvalidSignatureException", fmt.Sprintf("Credential should be scoped to %s/%s/airflow/aws4_request", amzDate[:8], s.o.Region)
	}
	if d := time.Since(signedAt); d > 15*time.Minute || d < -15*time.Minute {
		return "InvalidSignatureException", "Signature expired"
	}
	if s.o.Credentials.SessionToken != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get("X-Amz-Security-Token")), []byte(s.o.Credentials.SessionToken)) != 1 {
		return "UnrecognizedClientException", "The security token included in the request is invalid."
	}
	if !strings.Contains(";"+signedHeaders+";", ";host;") || !strings.Contains(";"+signedHeaders+";", ";x-amz-date;") {
		return "InvalidSignatureException", "host and x-amz-date must be signed"
	}

	again, err := s.resign(r, body, signedHeaders, signedAt)
	if err != nil {
		return "InvalidSignatureException", err.Error()
	}
	if subtle.ConstantTimeCompare([]byte(again), []byte(authz)) != 1 {
		return "InvalidSignatureException", "The request signature we calculated does not match the signature you provided."
	}
	return "", ""
}

// resign signs the same request as the client signed it (its method, URL,
// host and exactly the headers it says it signed) with the known secret,
// and returns the Authorization header.
func (s *Stub) resign(r *http.Request, body []byte, signedHeaders string, signedAt time.Time) (string, error) {
	again, err := http.NewRequest(r.Method, "http://"+r.Host+r.URL.RequestURI(), nil)
	if err != nil {
		return "", errors.New("cannot rebuild the request")
	}
	again.Host = r.Host
	for _, h := range strings.Split(signedHeaders, ";") {
		switch h {
		case "host":
		case "content-length":
			again.ContentLength = int64(len(body))
		default:
			again.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
		}
	}
	sum := sha256.Sum256(body)
	err = v4.NewSigner().SignHTTP(context.Background(), s.o.Credentials, again, hex.EncodeToString(sum[:]), "airflow", s.o.Region, signedAt)
	if err != nil {
		return "", errors.New("cannot re-sign the request")
	}
	return again.Header.Get("Authorization"), nil
}

// awsError answers an AWS restJson1 error.
func awsError(w http.ResponseWriter, status int, code, message string) {
	b, _ := json.Marshal(map[string]string{"message": message})
	awsAnswer(w, status, code, b)
}

func awsAnswer(w http.ResponseWriter, status int, code string, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-RequestId", fmt.Sprintf("e2e-%d", time.Now().UnixNano()))
	if code != "" {
		w.Header().Set("X-Amzn-ErrorType", code)
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
