package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// TestSecretNeverShown: every way a value gets printed, encoded or logged
// shows "<redacted>" for a set Secret and nothing for an unset one, alone
// or inside the configuration.
func TestSecretNeverShown(t *testing.T) {
	const value = "hunter2-value"
	set, unset := NewSecret(value), Secret{}
	type holder struct{ S Secret }
	shows := func(s Secret) map[string]string {
		var text, js bytes.Buffer
		slog.New(slog.NewTextHandler(&text, nil)).Info("m", "s", s, "h", holder{s})
		slog.New(slog.NewJSONHandler(&js, nil)).Info("m", "s", s)
		var j bytes.Buffer
		enc := json.NewEncoder(&j)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(holder{s})
		mt, _ := s.MarshalText()
		out := map[string]string{
			"String": s.String(), "GoString": s.GoString(), "MarshalText": string(mt),
			"json": j.String(), "slog text": text.String(), "slog json": js.String(),
		}
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%10s"} {
			out[verb] = fmt.Sprintf(verb, s)
			out[verb+" in a struct"] = fmt.Sprintf(verb, holder{s})
			out[verb+" by pointer"] = fmt.Sprintf(verb, &holder{s})
		}
		return out
	}
	for how, got := range shows(set) {
		if strings.Contains(got, value) || !strings.Contains(got, "<redacted>") {
			t.Errorf("%s of a set Secret: %q", how, got)
		}
	}
	for how, got := range shows(unset) {
		if strings.Contains(got, "<redacted>") {
			t.Errorf("%s of an unset Secret: %q", how, got)
		}
	}
	if set.Reveal() != value || !set.IsSet() || unset.IsSet() {
		t.Errorf("Reveal %q IsSet %v/%v", set.Reveal(), set.IsSet(), unset.IsSet())
	}
	c := Default()
	c.Airflow.Auth.Password, c.Airflow.Auth.Token, c.Airflow.Auth.ClientSecret = set, set, set
	for how, got := range map[string]string{"String": c.String(), "%+v": fmt.Sprintf("%+v", c), "%#v": fmt.Sprintf("%#v", c)} {
		if strings.Contains(got, value) {
			t.Errorf("%s of the configuration shows a secret: %s", how, got)
		}
	}
}

// TestSecretDecodes: a Secret loads from the file, the environment and
// YAML scalars of any kind, as a string key does.
func TestSecretDecodes(t *testing.T) {
	t.Setenv("KPO_REAPER_AIRFLOW_AUTH_CLIENTSECRET", "from-env")
	c, err := Load(write(t, "airflow:\n  url: http://a\n  auth: {type: airflow-jwt, username: u, password: 1234}\nkubernetes:\n  namespaces: [x]\n"), nil)
	if err == nil {
		t.Fatalf("both identities must be refused: %v", c)
	}
	t.Setenv("KPO_REAPER_AIRFLOW_AUTH_CLIENTSECRET", "")
	c, err = Load(write(t, "airflow:\n  url: http://a\n  auth: {type: basic, username: u, password: 1234}\nkubernetes:\n  namespaces: [x]\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Airflow.Auth.Password.Reveal() != "1234" || c.Airflow.Auth.ClientSecret.IsSet() {
		t.Fatalf("password %q clientSecret set %v", c.Airflow.Auth.Password.Reveal(), c.Airflow.Auth.ClientSecret.IsSet())
	}
	_, err = Load(write(t, "airflow:\n  url: http://a\n  auth: {type: basic, username: u, password: {nested: pw-in-a-map}}\nkubernetes:\n  namespaces: [x]\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "airflow.auth.password") || strings.Contains(err.Error(), "pw-in-a-map") {
		t.Fatalf("a map for a secret: %v", err)
	}
}
