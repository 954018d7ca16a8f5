package airflowsim

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Airflow 3 signs its API tokens with HS512 when [api_auth] jwt_secret is
// set, with audience "apache-airflow". Each simulator has its own random
// secret, so a token of another simulator is rejected like a token signed
// by a different API server replica.
var jwtHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS512","typ":"JWT"}`))

type jwtClaims struct {
	JTI  string `json:"jti"`
	Sub  string `json:"sub"`
	Role string `json:"role"`
	Aud  string `json:"aud"`
	IAT  int64  `json:"iat"`
	NBF  int64  `json:"nbf"`
	Exp  int64  `json:"exp"`
}

type tokenStatus int

const (
	tokenOK tokenStatus = iota
	tokenExpired
	tokenInvalid
)

func (s *Server) sign(data string) string {
	m := hmac.New(sha512.New, s.key)
	m.Write([]byte(data))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (s *Server) issueToken(now time.Time) string {
	jti := make([]byte, 16)
	_, _ = rand.Read(jti)
	// JWT times are whole seconds; round the lifetime up so that a
	// sub-second TTL still yields a token that is valid when issued.
	ttl := int64((s.ttl + time.Second - 1) / time.Second)
	c := jwtClaims{JTI: hex.EncodeToString(jti), Sub: s.user, Role: "ADMIN", Aud: "apache-airflow",
		IAT: now.Unix(), NBF: now.Unix(), Exp: now.Unix() + ttl}
	payload, _ := json.Marshal(c)
	unsigned := jwtHeader + "." + base64.RawURLEncoding.EncodeToString(payload)
	return unsigned + "." + s.sign(unsigned)
}

// verifyToken follows PyJWT: expired when now >= exp + leeway, invalid when
// the signature, shape, audience or nbf is wrong.
func (s *Server) verifyToken(tok string, now time.Time) tokenStatus {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || parts[0] != jwtHeader {
		return tokenInvalid
	}
	if !hmac.Equal([]byte(s.sign(parts[0]+"."+parts[1])), []byte(parts[2])) {
		return tokenInvalid
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return tokenInvalid
	}
	var c jwtClaims
	if err := json.Unmarshal(raw, &c); err != nil || c.Aud != "apache-airflow" {
		return tokenInvalid
	}
	leeway := int64(s.leeway / time.Second)
	if c.NBF > now.Unix()+leeway {
		return tokenInvalid
	}
	if now.Unix() >= c.Exp+leeway {
		return tokenExpired
	}
	return tokenOK
}

// createToken is the simple auth manager's POST /auth/token.
func (s *Server) createToken(w http.ResponseWriter, r *http.Request, body []byte, idx int, fault Fault) {
	var username, password *string
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if r.Header.Get("Content-Type") == "" {
		mt = "application/json" // the header's declared default
	}
	var aerr *apiError
	switch mt {
	case "application/json":
		username, password, aerr = loginFromJSON(body)
	case "application/x-www-form-urlencoded":
		form, err := url.ParseQuery(string(body))
		if err != nil {
			aerr = v2Invalid(validationItem{Type: "value_error", Loc: []any{"body"}, Msg: "Invalid form body", Input: string(body)})
			break
		}
		if v, ok := form["username"]; ok {
			username = &v[0]
		}
		if v, ok := form["password"]; ok {
			password = &v[0]
		}
	default:
		aerr = v2Detail(http.StatusUnsupportedMediaType, "Unsupported Media Type")
	}
	if aerr == nil {
		var missing []validationItem
		if username == nil {
			missing = append(missing, validationItem{Type: "missing", Loc: []any{"body", "username"}, Msg: "Field required"})
		}
		if password == nil {
			missing = append(missing, validationItem{Type: "missing", Loc: []any{"body", "password"}, Msg: "Field required"})
		}
		if len(missing) > 0 {
			aerr = v2Invalid(missing...)
		}
	}
	ok := aerr == nil && *username == s.user && *password == s.password
	s.setAuthOK(idx, ok)
	switch {
	case fault == FaultUnauthorized:
		aerr = v2Detail(401, "Invalid credentials")
	case aerr != nil:
	case *username == "" || *password == "":
		aerr = v2Detail(400, "Username and password must be provided")
	case !ok:
		aerr = v2Detail(401, "Invalid credentials")
	}
	if aerr != nil {
		aerr.write(w, r)
		return
	}
	writeJSON(w, "application/json", http.StatusCreated, map[string]string{"access_token": s.issueToken(s.clock())})
}

// loginFromJSON decodes LoginBody, which forbids extra fields.
func loginFromJSON(body []byte) (username, password *string, aerr *apiError) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil || m == nil {
		return nil, nil, v2Invalid(validationItem{Type: "json_invalid", Loc: []any{"body", 0}, Msg: "JSON decode error",
			Input: map[string]any{}, Ctx: map[string]any{"error": "Expecting value"}})
	}
	var errs []validationItem
	for k, raw := range m {
		var v string
		switch k {
		case "username", "password":
			if err := json.Unmarshal(raw, &v); err != nil {
				errs = append(errs, validationItem{Type: "string_type", Loc: []any{"body", k}, Msg: "Input should be a valid string", Input: json.RawMessage(raw)})
				continue
			}
			if k == "username" {
				username = &v
			} else {
				password = &v
			}
		default:
			errs = append(errs, validationItem{Type: "extra_forbidden", Loc: []any{"body", k}, Msg: "Extra inputs are not permitted", Input: json.RawMessage(raw)})
		}
	}
	if len(errs) > 0 {
		return nil, nil, v2Invalid(errs...)
	}
	return username, password, nil
}
