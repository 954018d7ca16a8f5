package transport

import (
	"bytes"
	"context"
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
	"unicode"

	"github.com/hashicorp/go-cleanhttp"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
)

// newGoogleRT authenticates to Cloud Composer, whose Airflow API takes a
// Google OAuth2 access token as "Authorization: Bearer".
//
// The token endpoint is reached through a client of its own rather than the
// Airflow transport: airflow.tls configures the trust in Airflow's server,
// not in Google's, and a token fetch must not count as an Airflow call.
func newGoogleRT(o Options, next http.RoundTripper) (http.RoundTripper, error) {
	a := o.Auth
	if len(a.Scopes) == 0 {
		return nil, errors.New("airflow.auth type google needs at least one scope in airflow.auth.scopes")
	}
	// The context lives as long as the transport: the token sources keep it
	// for every later refresh.
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient,
		&http.Client{Transport: cleanhttp.DefaultPooledTransport(), Timeout: o.Timeout, CheckRedirect: noRedirects})
	load := func() (oauth2.TokenSource, error) {
		return googleTokenSource(ctx, a.CredentialsFile, a.Scopes)
	}
	src, err := load()
	if err != nil {
		return nil, err
	}
	return &googleRT{next: next, load: load, src: src, gen: 1, logger: o.Logger}, nil
}

// googleCredentialTypes are the credential files accepted in
// airflow.auth.credentialsFile: the types ADC itself reads from
// GOOGLE_APPLICATION_CREDENTIALS. A console OAuth client file ("web",
// "installed") is refused: it needs a browser.
var googleCredentialTypes = map[string]google.CredentialsType{
	string(google.ServiceAccount):                google.ServiceAccount,
	string(google.AuthorizedUser):                google.AuthorizedUser,
	string(google.ExternalAccount):               google.ExternalAccount,
	string(google.ExternalAccountAuthorizedUser): google.ExternalAccountAuthorizedUser,
	string(google.ImpersonatedServiceAccount):    google.ImpersonatedServiceAccount,
	string(google.GDCHServiceAccount):            google.GDCHServiceAccount,
}

// googleTokenSource reads the credentials anew: from file when set, else
// Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud's
// application_default_credentials.json, the metadata server, which is how
// GKE Workload Identity hands them out). The source caches its token until
// 10 s before expiry and fetches a new one then.
func googleTokenSource(ctx context.Context, file string, scopes []string) (oauth2.TokenSource, error) {
	var creds *google.Credentials
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("airflow.auth.credentialsFile: %w", err)
		}
		// The type is read first so that the library can check the file
		// is of the type it says, instead of guessing from its fields.
		var head struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(b, &head); err != nil {
			// json's syntax errors quote no input, only an offset.
			return nil, fmt.Errorf("airflow.auth.credentialsFile %s is not JSON: %w", file, err)
		}
		typ, ok := googleCredentialTypes[head.Type]
		if !ok {
			return nil, fmt.Errorf("airflow.auth.credentialsFile %s: credentials of type %q are not supported: use a service account key, gcloud's application default credentials or a workload identity federation file", file, printable(head.Type))
		}
		creds, err = google.CredentialsFromJSONWithTypeAndParams(ctx, b, typ, google.CredentialsParams{Scopes: scopes})
		if err != nil {
			return nil, fmt.Errorf("airflow.auth.credentialsFile %s: %s", file, googleError(err))
		}
	} else {
		var err error
		creds, err = google.FindDefaultCredentials(ctx, scopes...)
		if err != nil {
			return nil, fmt.Errorf("airflow.auth type google: no Application Default Credentials (set airflow.auth.credentialsFile or GOOGLE_APPLICATION_CREDENTIALS, or run with GKE Workload Identity): %s", googleError(err))
		}
	}
	return oauth2.ReuseTokenSource(nil, creds.TokenSource), nil
}

// googleRT sends a cached access token and repairs one 401 per request with
// a token from freshly loaded credentials: the cached source would hand out
// the same rejected token until it expires, and reloading also picks up a
// rotated key file.
type googleRT struct {
	next   http.RoundTripper
	load   func() (oauth2.TokenSource, error)
	logger *slog.Logger

	mu   sync.Mutex
	src  oauth2.TokenSource
	gen  uint64 // bumped on every reload
	last string // the token last handed out, to log only new ones
}

func (g *googleRT) RoundTrip(req *http.Request) (*http.Response, error) {
	tok, gen, err := g.token(0)
	if err != nil {
		return nil, err
	}
	req, err = replayable(req)
	if err != nil {
		return nil, err
	}
	resp, err := g.next.RoundTrip(withBearer(req, tok))
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	drain(resp)
	g.logger.Debug("airflow rejected the Google access token, fetching a new one", "endpoint", Endpoint(req.URL))
	tok, _, err = g.token(gen)
	if err != nil {
		return nil, err
	}
	retry := withBearer(req, tok)
	if req.GetBody != nil {
		if retry.Body, err = req.GetBody(); err != nil {
			return nil, err
		}
	}
	resp, err = g.next.RoundTrip(retry)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	drain(resp)
	return nil, &permanent{errors.New("airflow.auth type google: the API rejected even a fresh Google access token (401): is airflow.url the environment's airflowUri, do airflow.auth.scopes include https://www.googleapis.com/auth/cloud-platform, and may the identity use this Composer environment (roles/composer.user)?")}
}

// token returns the cached source's token, reloading the credentials first
// when rejected is the generation that drew a 401. A rejection of an older
// generation uses the newer source: another request already reloaded.
func (g *googleRT) token(rejected uint64) (string, uint64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if rejected != 0 && rejected == g.gen {
		src, err := g.load()
		if err != nil {
			return "", 0, &permanent{err}
		}
		g.src = src
		g.gen++
	}
	t, err := g.src.Token()
	if err != nil {
		ferr := googleFetchError(err)
		if !isPermanent(ferr) {
			return "", 0, ferr
		}
		// The token endpoint refused the credentials: after a key rotation
		// the old key is deleted while the file (a mounted Secret) already
		// holds the new one. Reload once; a second refusal is final.
		src, lerr := g.load()
		if lerr != nil {
			return "", 0, &permanent{lerr}
		}
		g.src = src
		g.gen++
		if t, err = g.src.Token(); err != nil {
			return "", 0, googleFetchError(err)
		}
	}
	if t.AccessToken == "" {
		return "", 0, &permanent{errors.New("airflow.auth type google: the token endpoint answered without an access token")}
	}
	if t.AccessToken != g.last {
		g.last = t.AccessToken
		g.logger.Debug("got a Google access token", "expires", t.Expiry)
	}
	return t.AccessToken, g.gen, nil
}

// googleFetchError names airflow.auth and keeps what the token endpoint
// said out of the message except its standard error code and description:
// oauth2's own message includes the whole answer body. An endpoint that
// refused the credentials is permanent; an outage may pass, so the retry
// layer may send the request (and fetch) again.
func googleFetchError(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status := "no status"
		code := 0
		if re.Response != nil {
			status, code = re.Response.Status, re.Response.StatusCode
		}
		ecode, desc := re.ErrorCode, re.ErrorDescription
		if ecode == "" {
			// The service account (JWT) flow leaves the RFC 6749 fields
			// unparsed; read just those two from the body.
			var body struct {
				Error            string `json:"error"`
				ErrorDescription string `json:"error_description"`
			}
			if json.Unmarshal(re.Body, &body) == nil {
				ecode, desc = body.Error, body.ErrorDescription
			}
		}
		msg := fmt.Sprintf("airflow.auth type google: the token endpoint answered %s", status)
		if ecode != "" {
			msg += fmt.Sprintf(" (%s", printable(ecode))
			if d := printable(desc); d != "" {
				msg += ": " + d
			}
			msg += ")"
		}
		if code == http.StatusTooManyRequests || code >= 500 {
			return errors.New(msg)
		}
		return &permanent{errors.New(msg + ": check the credentials of airflow.auth (credentialsFile or Application Default Credentials)")}
	}
	if strings.HasPrefix(err.Error(), "private key") {
		// oauth2 parses the key at the first fetch; its parse error
		// details ASN.1 structure, nothing an operator can act on.
		return &permanent{errors.New("airflow.auth type google: the credentials' private_key does not parse (want a PEM PKCS#1 or PKCS#8 RSA key): check airflow.auth.credentialsFile or GOOGLE_APPLICATION_CREDENTIALS")}
	}
	// Network errors reach here ("oauth2: cannot fetch token: Post ...",
	// flattened to text by the library): the retry layer may try again.
	return fmt.Errorf("airflow.auth type google: getting an access token: %s", googleError(err))
}

// googleError is err's message without a url.Error's wrapping, whose
// "Post <url>" adds nothing here. Errors other than RetrieveError carry no
// credential: they come from parsing the key or from the network.
func googleError(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return googleFetchError(err).Error()
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Op + " " + RedactURL(ue.URL) + ": " + ue.Err.Error()
	}
	return err.Error()
}

// RedactURL is a URL fit for logs and errors: no userinfo, query or
// fragment, where credentials or tokens could ride.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.RawQuery, u.Fragment, u.User = "", "", nil
	return u.String()
}

// printable bounds a server-chosen string before it goes into an error: at
// most 200 characters, no control characters.
func printable(s string) string {
	out := make([]rune, 0, min(len(s), 200))
	for _, r := range s {
		if len(out) == 200 {
			return string(out) + "..."
		}
		if unicode.IsControl(r) {
			r = ' '
		}
		out = append(out, r)
	}
	return string(out)
}

// replayable makes a request's body readable twice, for the retry after a
// rejected token.
func replayable(req *http.Request) (*http.Request, error) {
	if req.Body == nil || req.Body == http.NoBody || req.GetBody != nil {
		return req, nil
	}
	b, err := io.ReadAll(req.Body)
	_ = req.Body.Close()
	if err != nil {
		return nil, err
	}
	r := req.Clone(req.Context())
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	return r, nil
}
