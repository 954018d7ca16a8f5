package transport

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow/authtype"
)

func newAuthRT(o Options, next http.RoundTripper) (http.RoundTripper, error) {
	a := o.Auth
	switch a.Type {
	case "", authtype.None:
		return next, nil
	case authtype.Basic:
		if a.Username == "" || a.Password == "" {
			return nil, errors.New("airflow.auth type basic needs a username and a password")
		}
		return &basicRT{next: next, user: a.Username, pass: a.Password}, nil
	case authtype.Bearer:
		switch {
		case (a.Token == "") == (a.TokenFile == ""):
			return nil, errors.New("airflow.auth type bearer needs exactly one of token and tokenFile")
		case a.Token != "":
			return &bearerRT{next: next, token: func() (string, error) { return a.Token, nil }}, nil
		default:
			f := &tokenFile{path: a.TokenFile}
			if _, err := f.token(); err != nil {
				return nil, err
			}
			return &bearerRT{next: next, token: f.token, file: f}, nil
		}
	case authtype.AirflowJWT:
		user, client := a.Username != "" || a.Password != "", a.ClientID != "" || a.ClientSecret != ""
		switch {
		case user && client:
			return nil, errors.New("airflow.auth type airflow-jwt takes either a username and a password or a clientID and a clientSecret, not both")
		case client && (a.ClientID == "" || a.ClientSecret == ""):
			return nil, errors.New("airflow.auth type airflow-jwt with client credentials needs a clientID and a clientSecret")
		case !client && (a.Username == "" || a.Password == ""):
			return nil, errors.New("airflow.auth type airflow-jwt needs a username and a password, or a clientID and a clientSecret")
		}
		u, err := url.Parse(strings.TrimRight(a.BaseURL, "/") + "/auth/token")
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, errors.New("airflow.auth type airflow-jwt needs the Airflow base URL (airflow.url) to log in at /auth/token")
		}
		return &jwtRT{
			next:         next,
			login:        &http.Client{Transport: next, Timeout: o.Timeout, CheckRedirect: noRedirects},
			tokenURL:     u.String(),
			username:     a.Username,
			password:     a.Password,
			clientID:     a.ClientID,
			clientSecret: a.ClientSecret,
			logger:       o.Logger,
			now:          o.now,
		}, nil
	case authtype.Google:
		return newGoogleRT(o, next)
	default:
		return nil, fmt.Errorf("airflow.auth type %q is not one of %s", a.Type, strings.Join(authtype.HTTP(), ", "))
	}
}

type basicRT struct {
	next       http.RoundTripper
	user, pass string
}

func (b *basicRT) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.SetBasicAuth(b.user, b.pass)
	return b.next.RoundTrip(r)
}

type bearerRT struct {
	next  http.RoundTripper
	token func() (string, error)
	file  *tokenFile // nil for a static token
}

func (b *bearerRT) RoundTrip(req *http.Request) (*http.Response, error) {
	tok, err := b.token()
	if err != nil {
		return nil, &permanent{err}
	}
	if b.file == nil {
		return b.next.RoundTrip(withBearer(req, tok))
	}
	if req, err = replayable(req); err != nil {
		return nil, err
	}
	resp, err := b.next.RoundTrip(withBearer(req, tok))
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	// The Secret may have been rotated between reading the file and the
	// server's answer (the old token revoked first): a changed file gets
	// one more try.
	drain(resp)
	fresh, err := b.token()
	if err != nil {
		return nil, &permanent{err}
	}
	if fresh != tok {
		retry := withBearer(req, fresh)
		if req.GetBody != nil {
			if retry.Body, err = req.GetBody(); err != nil {
				return nil, err
			}
		}
		if resp, err = b.next.RoundTrip(retry); err != nil || resp.StatusCode != http.StatusUnauthorized {
			return resp, err
		}
		drain(resp)
	}
	return nil, &permanent{fmt.Errorf("airflow.auth.tokenFile %s: Airflow rejected the token it holds (401 Unauthorized; the file last changed %s): put a valid API token for this Airflow in it", b.file.path, b.file.changed().UTC().Format(time.RFC3339))}
}

func withBearer(req *http.Request, tok string) *http.Request {
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", "Bearer "+tok)
	return r
}

// tokenFile re-reads a mounted Secret when it changes: Kubernetes rotates
// it by swapping a symlink, which changes the mtime Stat reports.
type tokenFile struct {
	path string

	mu      sync.Mutex
	modTime time.Time
	size    int64
	tok     string
}

// changed is the modification time of the token last read.
func (f *tokenFile) changed() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.modTime
}

func (f *tokenFile) token() (string, error) {
	fi, err := os.Stat(f.path)
	if err != nil {
		return "", fmt.Errorf("airflow.auth.tokenFile: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tok != "" && fi.ModTime().Equal(f.modTime) && fi.Size() == f.size {
		return f.tok, nil
	}
	b, err := os.ReadFile(f.path)
	if err != nil {
		return "", fmt.Errorf("airflow.auth.tokenFile: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("airflow.auth.tokenFile %s is empty", f.path)
	}
	f.tok, f.modTime, f.size = tok, fi.ModTime(), fi.Size()
	return tok, nil
}

// jwtRT logs in at POST /auth/token (Airflow 3), caches the JWT until
// shortly before its exp claim, and repairs one 401 per request with one
// fresh login: Airflow 3 has no refresh token for API clients, and a token
// can be revoked or signed by another replica's secret before it expires.
type jwtRT struct {
	next     http.RoundTripper
	login    *http.Client
	tokenURL string
	username string
	password string
	// clientID and clientSecret, when set, replace username and password:
	// the Keycloak auth manager's client_credentials grant.
	clientID     string
	clientSecret string
	logger       *slog.Logger
	now          func() time.Time

	// mu serialises logins, so that concurrent requests that all find the
	// token missing or rejected cause a single login.
	mu        sync.Mutex
	tok       string
	refreshAt time.Time // zero: no exp claim, keep until a 401
	gen       uint64    // bumped on every login
}

func (j *jwtRT) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	tok, gen, err := j.token(ctx, 0)
	if err != nil {
		return nil, err
	}
	// The request may have to be sent twice; make its body replayable first.
	if req, err = replayable(req); err != nil {
		return nil, err
	}
	resp, err := j.next.RoundTrip(withBearer(req, tok))
	if err != nil || !rejectsToken(resp) {
		return resp, err
	}
	drain(resp)
	j.logger.Debug("airflow rejected the token, logging in again", "endpoint", Endpoint(req.URL), "status", resp.StatusCode)
	tok, _, err = j.token(ctx, gen)
	if err != nil {
		return nil, err
	}
	retry := withBearer(req, tok)
	if req.GetBody != nil {
		if retry.Body, err = req.GetBody(); err != nil {
			return nil, err
		}
	}
	resp, err = j.next.RoundTrip(retry)
	if err != nil || !rejectsToken(resp) {
		return resp, err
	}
	drain(resp)
	return nil, &permanent{errors.New("the API rejected even a freshly issued token (401, or 403 Invalid JWT token): the user cannot use this API, or the API servers do not share [api_auth] jwt_secret")}
}

// rejectsToken tells a refused token from a refused permission. Airflow 3
// answers 401 for a missing or expired token but 403 "Invalid JWT token"
// for one it cannot verify, e.g. after the API server restarted with a new
// jwt_secret; both are mended by logging in again. Any other 403 is a
// permission the user lacks, which a new token would not change.
func rejectsToken(resp *http.Response) bool {
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return true
	case http.StatusForbidden:
		head, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(head), resp.Body), resp.Body}
		return bytes.Contains(head, []byte("Invalid JWT token"))
	}
	return false
}

// token returns the cached token, logging in when there is none, when it is
// about to expire, or when rejected is the generation of the cached token
// (it drew a 401). A rejection of an older generation just returns the
// newer token: another request already logged in again.
func (j *jwtRT) token(ctx context.Context, rejected uint64) (string, uint64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	valid := j.tok != "" && (j.refreshAt.IsZero() || j.now().Before(j.refreshAt))
	if valid && (rejected == 0 || rejected != j.gen) {
		return j.tok, j.gen, nil
	}
	tok, err := j.doLogin(ctx)
	if err != nil {
		return "", 0, err
	}
	j.tok = tok
	j.gen++
	j.refreshAt = time.Time{}
	if exp, iat, ok := jwtTimes(tok); ok {
		now := j.now()
		life := exp.Sub(now)
		if !iat.IsZero() && exp.After(iat) {
			life = exp.Sub(iat)
		}
		// Log in again a tenth of the lifetime (at most 5 minutes) before
		// expiry, so that clock skew and a slow cycle do not meet a 401.
		margin := min(life/10, 5*time.Minute)
		j.refreshAt = exp.Add(-margin)
		if !j.refreshAt.After(now) {
			// Our clock is far off the server's. Renewing by our clock would
			// log in on every request; let the server's 401 decide instead.
			j.logger.Warn("the Airflow token looks expired by the local clock; check the clock", "expires", exp)
			j.refreshAt = time.Time{}
		} else {
			j.logger.Debug("logged in to Airflow", "expires", exp, "renewAfter", j.refreshAt)
		}
	} else {
		j.logger.Debug("logged in to Airflow; the token has no readable exp claim, it is kept until a 401")
	}
	return j.tok, j.gen, nil
}

// doLogin never puts the answer body into an error: FastAPI's 422 echoes
// the submitted credentials.
//
// With a client ID it sends the Keycloak auth manager's client_credentials
// body, {"grant_type":"client_credentials","client_id":…,"client_secret":…}
// as JSON to the same POST /auth/token (apache-airflow-providers-keycloak's
// TokenClientCredentialsBody; the model forbids other fields). Airflow then
// asks Keycloak for a token of the client's service account and answers
// with its own JWT, like a password login.
func (j *jwtRT) doLogin(ctx context.Context) (string, error) {
	const ep = "POST /auth/token"
	login := map[string]string{"username": j.username, "password": j.password}
	check := "check airflow.auth.username and airflow.auth.password"
	if j.clientID != "" {
		login = map[string]string{"grant_type": "client_credentials", "client_id": j.clientID, "client_secret": j.clientSecret}
		check = "check airflow.auth.clientID and airflow.auth.clientSecret, and that the Keycloak client has Client authentication and Service account roles on, in the realm Airflow's Keycloak auth manager uses"
	}
	body, _ := json.Marshal(login)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.tokenURL, bytes.NewReader(body))
	if err != nil {
		return "", &permanent{fmt.Errorf("%s: %w", ep, err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := j.login.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		// Transient: the retry layer may try the whole request again.
		return "", fmt.Errorf("airflow-jwt login %s: %w", ep, err)
	}
	defer drain(resp)
	switch {
	case resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return "", fmt.Errorf("airflow-jwt login %s: Airflow answered %s", ep, resp.Status)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return "", &permanent{fmt.Errorf("airflow-jwt login %s: Airflow answered %s: %s", ep, resp.Status, check)}
	case j.clientID != "" && (resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusUnprocessableEntity):
		// The password-only token body of other auth managers, and of
		// Keycloak providers before client_credentials, refuses these fields.
		return "", &permanent{fmt.Errorf("airflow-jwt login %s: Airflow answered %s to a client_credentials login: clientID and clientSecret need Airflow 3 with the Keycloak auth manager (apache-airflow-providers-keycloak with client_credentials support); other auth managers take airflow.auth.username and airflow.auth.password", ep, resp.Status)}
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed:
		return "", &permanent{fmt.Errorf("airflow-jwt login %s: Airflow answered %s: airflow-jwt needs Airflow 3 at airflow.url (Airflow 2 takes airflow.auth.type basic)", ep, resp.Status)}
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return "", &permanent{fmt.Errorf("airflow-jwt login %s: redirected (%s): a login page or proxy? check airflow.url and airflow.auth", ep, resp.Status)}
	default:
		return "", &permanent{fmt.Errorf("airflow-jwt login %s: Airflow answered %s: check airflow.auth", ep, resp.Status)}
	}
	if ct := resp.Header.Get("Content-Type"); !isJSON(ct) {
		return "", &permanent{fmt.Errorf("airflow-jwt login %s: got %q, not JSON: a login page or proxy? check airflow.url and airflow.auth", ep, ct)}
	}
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil || out.AccessToken == "" {
		return "", &permanent{fmt.Errorf("airflow-jwt login %s: the answer has no access_token", ep)}
	}
	return out.AccessToken, nil
}

// jwtTimes reads exp and iat from a JWT payload without checking the
// signature: the reaper only needs to know when to log in again, and the
// server checks the signature anyway.
func jwtTimes(tok string) (exp, iat time.Time, ok bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return exp, iat, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return exp, iat, false
	}
	var claims struct {
		Exp *json.Number `json:"exp"`
		Iat *json.Number `json:"iat"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Exp == nil {
		return exp, iat, false
	}
	e, err := claims.Exp.Float64()
	if err != nil || e <= 0 {
		return exp, iat, false
	}
	exp = time.Unix(0, int64(e*float64(time.Second)))
	if claims.Iat != nil {
		if i, err := claims.Iat.Float64(); err == nil && i > 0 {
			iat = time.Unix(0, int64(i*float64(time.Second)))
		}
	}
	return exp, iat, true
}
