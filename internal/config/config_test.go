package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const minimal = `
airflow:
  url: http://airflow:8080
kubernetes:
  namespaces: [airflow]
`

func TestDefaults(t *testing.T) {
	c, err := Load(write(t, minimal), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Reaper.DryRun || c.Reaper.Confirmations != 2 || c.Reaper.Interval != time.Minute ||
		c.Reaper.MinPodAge != 5*time.Minute || c.Reaper.TerminalGracePeriod != 2*time.Minute ||
		c.Reaper.OrphanMinAge != time.Hour || c.Reaper.MaxDeletesPerCycle != 20 ||
		c.Airflow.APIVersion != "auto" || c.Airflow.Timeout != 30*time.Second || c.Airflow.Auth.Type != "none" ||
		c.Reaper.ReapOrphans || c.Reaper.ConfirmationSpacing != time.Minute {
		t.Fatalf("defaults: %+v", c)
	}
}

// TestOrphanAndSpacingKeys: reaper.reapOrphans and reaper.confirmationSpacing
// from the file, the environment and their defaults; the spacing follows
// reaper.interval unless set, and the start-up log line shows the effective
// value.
func TestOrphanAndSpacingKeys(t *testing.T) {
	cases := []struct {
		name        string
		body        string
		env         map[string]string
		flags       []string
		wantOrphans bool
		wantSpacing time.Duration
	}{
		{name: "defaults", body: minimal, wantSpacing: time.Minute},
		{name: "spacing follows interval from the file", body: minimal + "reaper:\n  interval: 5m\n", wantSpacing: 5 * time.Minute},
		{name: "spacing follows interval from the flag", body: minimal, flags: []string{"--interval=30s"}, wantSpacing: 30 * time.Second},
		{name: "spacing follows interval from env", body: minimal, env: map[string]string{"KPO_REAPER_REAPER_INTERVAL": "2m"}, wantSpacing: 2 * time.Minute},
		{name: "spacing 0 is the interval", body: minimal + "reaper:\n  interval: 3m\n  confirmationSpacing: 0s\n", wantSpacing: 3 * time.Minute},
		{name: "spacing set in the file", body: minimal + "reaper:\n  confirmationSpacing: 10m\n", wantSpacing: 10 * time.Minute},
		{name: "spacing shorter than the interval", body: minimal + "reaper:\n  interval: 5m\n  confirmationSpacing: 30s\n", wantSpacing: 30 * time.Second},
		{name: "spacing from env", body: minimal, env: map[string]string{"KPO_REAPER_REAPER_CONFIRMATIONSPACING": "15m"}, wantSpacing: 15 * time.Minute},
		{name: "reapOrphans in the file", body: minimal + "reaper:\n  reapOrphans: true\n", wantOrphans: true, wantSpacing: time.Minute},
		{name: "reapOrphans false in the file", body: minimal + "reaper:\n  reapOrphans: false\n", wantSpacing: time.Minute},
		{name: "reapOrphans from env", body: minimal, env: map[string]string{"KPO_REAPER_REAPER_REAPORPHANS": "true"}, wantOrphans: true, wantSpacing: time.Minute},
		{name: "env reapOrphans false beats the file", body: minimal + "reaper:\n  reapOrphans: true\n", env: map[string]string{"KPO_REAPER_REAPER_REAPORPHANS": "false"}, wantSpacing: time.Minute},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			AddFlags(fs)
			if err := fs.Parse(tc.flags); err != nil {
				t.Fatal(err)
			}
			c, err := Load(write(t, tc.body), fs)
			if err != nil {
				t.Fatal(err)
			}
			if c.Reaper.ReapOrphans != tc.wantOrphans || c.Reaper.ConfirmationSpacing != tc.wantSpacing {
				t.Fatalf("reapOrphans=%v confirmationSpacing=%v, want %v %v", c.Reaper.ReapOrphans, c.Reaper.ConfirmationSpacing, tc.wantOrphans, tc.wantSpacing)
			}
			if got := c.Reaper.EffectiveConfirmationSpacing(); got != tc.wantSpacing {
				t.Errorf("EffectiveConfirmationSpacing() = %v, want %v", got, tc.wantSpacing)
			}
			s := c.String()
			for _, want := range []string{
				"reaper.confirmationSpacing=" + tc.wantSpacing.String(),
				fmt.Sprintf("reaper.reapOrphans=%v", tc.wantOrphans),
			} {
				if !strings.Contains(s, want) {
					t.Errorf("the logged configuration lacks %q: %s", want, s)
				}
			}
		})
	}
}

func TestEffectiveConfirmationSpacingInCode(t *testing.T) {
	if got := (Reaper{Interval: 2 * time.Minute}).EffectiveConfirmationSpacing(); got != 2*time.Minute {
		t.Errorf("unset: %v", got)
	}
	if got := (Reaper{Interval: 2 * time.Minute, ConfirmationSpacing: time.Hour}).EffectiveConfirmationSpacing(); got != time.Hour {
		t.Errorf("set: %v", got)
	}
}

func TestExampleConfigLoads(t *testing.T) {
	if _, err := Load("../../config/kpo-reaper.yaml", nil); err != nil {
		t.Fatalf("the shipped example must load: %v", err)
	}
}

func TestEnvOverridesFileAndFlagsOverrideEnv(t *testing.T) {
	t.Setenv("KPO_REAPER_AIRFLOW_AUTH_TYPE", "basic")
	t.Setenv("KPO_REAPER_AIRFLOW_AUTH_USERNAME", "reaper")
	t.Setenv("KPO_REAPER_AIRFLOW_AUTH_PASSWORD", "s3cret-pw")
	t.Setenv("KPO_REAPER_KUBERNETES_NAMESPACES", "a, b")
	t.Setenv("KPO_REAPER_REAPER_DRYRUN", "false")
	t.Setenv("KPO_REAPER_REAPER_MINPODAGE", "10m")
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	AddFlags(fs)
	if err := fs.Parse([]string{"--dry-run=true", "--interval=30s"}); err != nil {
		t.Fatal(err)
	}
	c, err := Load(write(t, minimal), fs)
	if err != nil {
		t.Fatal(err)
	}
	if c.Airflow.Auth.Password.Reveal() != "s3cret-pw" || strings.Join(c.Kubernetes.Namespaces, "|") != "a|b" || c.Reaper.MinPodAge != 10*time.Minute {
		t.Fatalf("env not applied: %+v", c)
	}
	if !c.Reaper.DryRun || c.Reaper.Interval != 30*time.Second {
		t.Fatalf("flags must win over env: %+v", c.Reaper)
	}
	if s := c.String(); strings.Contains(s, "s3cret-pw") || !strings.Contains(s, "airflow.auth.password=<redacted>") {
		t.Fatalf("secret in rendered config: %s", s)
	}
}

func TestBadInputNamesTheKey(t *testing.T) {
	cases := map[string]struct{ body, want string }{
		"unknown key":          {minimal + "reaper:\n  dryrun: true\n  confirmatons: 2\n", "confirmatons"},
		"unknown section":      {minimal + "metrics:\n  enabled: true\n", "metrics"},
		"bad duration":         {minimal + "reaper:\n  interval: soon\n", "reaper.interval"},
		"bad int":              {minimal + "reaper:\n  confirmations: two\n", "reaper.confirmations"},
		"zero confirmations":   {minimal + "reaper:\n  confirmations: 0\n", "reaper.confirmations"},
		"api suffix":           {"airflow:\n  url: http://a/api/v1\nkubernetes:\n  namespaces: [x]\n", "airflow.url"},
		"no url":               {"kubernetes:\n  namespaces: [x]\n", "airflow.url"},
		"no namespaces":        {"airflow:\n  url: http://a\n", "kubernetes.namespaces"},
		"both namespace modes": {minimal + "  allNamespaces: true\n", "kubernetes.namespaces"},
		"bad selector":         {minimal + "  labelSelector: 'a=(b'\n", "kubernetes.labelSelector"},
		"bad api version":      {"airflow:\n  url: http://a\n  apiVersion: v3\nkubernetes:\n  namespaces: [x]\n", "airflow.apiVersion"},
		"basic without pw":     {"airflow:\n  url: http://a\n  auth: {type: basic, username: u}\nkubernetes:\n  namespaces: [x]\n", "airflow.auth"},
		"bearer both":          {"airflow:\n  url: http://a\n  auth: {type: bearer, token: t, tokenFile: /f}\nkubernetes:\n  namespaces: [x]\n", "airflow.auth"},
		"bad auth type":        {"airflow:\n  url: http://a\n  auth: {type: kerberos}\nkubernetes:\n  namespaces: [x]\n", "airflow.auth.type"},
		"bad log format":       {minimal + "log:\n  format: xml\n", "log.format"},
		"lease durations":      {minimal + "leaderElection:\n  enabled: true\n  renewDeadline: 20s\n", "leaderElection"},
		"negative age":         {minimal + "reaper:\n  minPodAge: -1m\n", "reaper.minPodAge"},
		"jwt both identities":  {"airflow:\n  url: http://a\n  auth: {type: airflow-jwt, username: u, password: p, clientID: c, clientSecret: s}\nkubernetes:\n  namespaces: [x]\n", "airflow.auth"},
		"jwt client no secret": {"airflow:\n  url: http://a\n  auth: {type: airflow-jwt, clientID: c}\nkubernetes:\n  namespaces: [x]\n", "clientSecret"},
		"google no scopes":     {"airflow:\n  url: http://a\n  auth: {type: google, scopes: []}\nkubernetes:\n  namespaces: [x]\n", "airflow.auth.scopes"},
		"google with password": {"airflow:\n  url: http://a\n  auth: {type: google, password: p}\nkubernetes:\n  namespaces: [x]\n", "airflow.auth.password"},
		"mwaa no environment":  {"airflow:\n  auth: {type: mwaa}\n  mwaa: {region: eu-west-1}\nkubernetes:\n  namespaces: [x]\n", "airflow.mwaa.environment"},
		"mwaa no region":       {"airflow:\n  auth: {type: mwaa}\n  mwaa: {environment: e}\nkubernetes:\n  namespaces: [x]\n", "airflow.mwaa.region"},
		"mwaa with url":        {"airflow:\n  url: http://a\n  auth: {type: mwaa}\n  mwaa: {environment: e, region: r}\nkubernetes:\n  namespaces: [x]\n", "airflow.url"},
		"mwaa bad endpoint":    {"airflow:\n  auth: {type: mwaa}\n  mwaa: {environment: e, region: r, endpoint: 'localhost:1'}\nkubernetes:\n  namespaces: [x]\n", "airflow.mwaa.endpoint"},
		"mwaa keys unused":     {"airflow:\n  url: http://a\n  mwaa: {environment: e}\nkubernetes:\n  namespaces: [x]\n", "airflow.mwaa"},
		"cert without key":     {"airflow:\n  url: https://a\n  tls: {certFile: /c}\nkubernetes:\n  namespaces: [x]\n", "airflow.tls"},
		"ca and insecure":      {"airflow:\n  url: https://a\n  tls: {caFile: /c, insecureSkipVerify: true}\nkubernetes:\n  namespaces: [x]\n", "airflow.tls.insecureSkipVerify"},
		"page size":            {"airflow:\n  url: http://a\n  pageSize: 5000\nkubernetes:\n  namespaces: [x]\n", "airflow.pageSize"},
		"negative spacing":     {minimal + "reaper:\n  confirmationSpacing: -1m\n", "reaper.confirmationSpacing: must not be negative"},
		"bad spacing":          {minimal + "reaper:\n  confirmationSpacing: often\n", "reaper.confirmationSpacing"},
		"bad reapOrphans":      {minimal + "reaper:\n  reapOrphans: maybe\n", "reaper.reapOrphans"},
		"typo reapOrphan":      {minimal + "reaper:\n  reapOrphan: true\n", "reaporphan"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Load(write(t, tc.body), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error naming %q, got %v", tc.want, err)
			}
		})
	}
}

// An airflow.url that already holds the API path would be asked
// .../api/v1/api/v1/...: refused with the key, the path found and the base
// URL to give instead; a base URL with a path prefix stays valid.
func TestAirflowURLWithAPIPathIsRefusedWithTheFix(t *testing.T) {
	const rest = "kubernetes:\n  namespaces: [x]\n"
	for _, tc := range []struct{ url, want string }{
		{"http://airflow-webserver.airflow:8080/api/v1", "http://airflow-webserver.airflow:8080"},
		{"http://airflow-webserver.airflow:8080/api/v1/", "http://airflow-webserver.airflow:8080"},
		{"https://airflow.example.com/airflow/api/v2", "https://airflow.example.com/airflow"},
		{"http://a:8080/api/v1/dags?limit=1", "http://a:8080"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			_, err := Load(write(t, "airflow:\n  url: '"+tc.url+"'\n"+rest), nil)
			if err == nil {
				t.Fatal("loaded; want airflow.url refused")
			}
			msg := err.Error()
			for _, w := range []string{"airflow.url: ", "remove it and give the base URL, " + tc.want + " ", "/api/v"} {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not say %q:\n%s", w, msg)
				}
			}
		})
	}
	for _, ok := range []string{"http://a:8080", "https://airflow.example.com/airflow/", "http://a/apis/v1x"} {
		if _, err := Load(write(t, "airflow:\n  url: '"+ok+"'\n"+rest), nil); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
}

func TestPlatformConfigs(t *testing.T) {
	for name, body := range map[string]string{
		"mwaa":        "airflow:\n  auth: {type: mwaa}\n  mwaa: {environment: prod, region: eu-west-1}\nkubernetes:\n  namespaces: [x]\n",
		"composer":    "airflow:\n  url: https://x.composer.googleusercontent.com\n  auth: {type: google}\nkubernetes:\n  namespaces: [x]\n",
		"keycloak":    "airflow:\n  url: https://a\n  auth: {type: airflow-jwt, clientID: reaper, clientSecret: s3}\nkubernetes:\n  namespaces: [x]\n",
		"astronomer":  "airflow:\n  url: https://a\n  auth: {type: bearer, tokenFile: /var/run/astro/token}\nkubernetes:\n  namespaces: [x]\n",
		"mutual tls":  "airflow:\n  url: https://a\n  tls: {caFile: /ca, certFile: /c, keyFile: /k}\nkubernetes:\n  namespaces: [x]\n",
		"insecure ok": "airflow:\n  url: https://a\n  tls: {insecureSkipVerify: true}\nkubernetes:\n  namespaces: [x]\n",
	} {
		t.Run(name, func(t *testing.T) {
			c, err := Load(write(t, body), nil)
			if err != nil {
				t.Fatal(err)
			}
			if name == "composer" && strings.Join(c.Airflow.Auth.Scopes, ",") != "https://www.googleapis.com/auth/cloud-platform" {
				t.Errorf("default scopes: %q", c.Airflow.Auth.Scopes)
			}
			if name == "keycloak" && (strings.Contains(c.String(), "s3") && !strings.Contains(c.String(), "clientSecret=<redacted>")) {
				t.Errorf("client secret not redacted: %s", c)
			}
		})
	}
}

func TestBadEnvValueNamesTheKey(t *testing.T) {
	t.Setenv("KPO_REAPER_REAPER_MAXDELETESPERCYCLE", "many")
	_, err := Load(write(t, minimal), nil)
	if err == nil || !strings.Contains(err.Error(), "reaper.maxdeletespercycle") && !strings.Contains(err.Error(), "maxDeletesPerCycle") {
		t.Fatalf("got %v", err)
	}
}

func TestSecretsNeverInErrors(t *testing.T) {
	body := "airflow:\n  url: http://a\n  auth: {type: bearer, token: tok-abc123, tokenFile: /f}\nkubernetes:\n  namespaces: [x]\n"
	_, err := Load(write(t, body), nil)
	if err == nil || strings.Contains(err.Error(), "tok-abc123") {
		t.Fatalf("got %v", err)
	}
}

func TestServerAndLeaderElectionFromEnv(t *testing.T) {
	t.Setenv("KPO_REAPER_SERVER_ADDRESS", "")
	t.Setenv("KPO_REAPER_LEADERELECTION_ENABLED", "true")
	t.Setenv("KPO_REAPER_LEADERELECTION_LEASENAMESPACE", "airflow")
	c, err := Load(write(t, minimal), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Server.Address != "" || !c.LeaderElection.Enabled || c.LeaderElection.LeaseNamespace != "airflow" ||
		c.LeaderElection.LeaseName != "kpo-reaper" || c.LeaderElection.LeaseDuration != 15*time.Second {
		t.Fatalf("%+v %+v", c.Server, c.LeaderElection)
	}
}

// TestDefaultIsWhatLoadStartsFrom: a file that sets only the required keys
// loads as Default() with those keys (and the spacing Load derives).
func TestDefaultIsWhatLoadStartsFrom(t *testing.T) {
	c, err := Load(write(t, minimal), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Airflow.URL, want.Kubernetes.Namespaces = "http://airflow:8080", []string{"airflow"}
	want.Reaper.ConfirmationSpacing = time.Minute
	if !reflect.DeepEqual(*c, want) {
		t.Fatalf("loaded\n%v\nwant\n%v", c, want)
	}
	for _, f := range flags {
		if _, ok := defaults()[f.key]; !ok {
			t.Errorf("flag --%s binds %s, which is no key", f.name, f.key)
		}
	}
}
