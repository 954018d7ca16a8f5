// Package config loads the one configuration struct of kpo-reaper from a
// YAML file, KPO_REAPER_* environment variables and flags, and validates it
// before anything talks to Airflow or Kubernetes.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow/authtype"
)

// EnvPrefix prefixes every environment variable: KPO_REAPER_AIRFLOW_URL is
// airflow.url.
const EnvPrefix = "KPO_REAPER"

// Config is the whole configuration.
type Config struct {
	Airflow        Airflow        `mapstructure:"airflow"`
	Kubernetes     Kubernetes     `mapstructure:"kubernetes"`
	Reaper         Reaper         `mapstructure:"reaper"`
	Server         Server         `mapstructure:"server"`
	LeaderElection LeaderElection `mapstructure:"leaderElection"`
	Log            Log            `mapstructure:"log"`
}

type Server struct {
	// Address serves /metrics, /healthz and /readyz; "" disables the server.
	Address string `mapstructure:"address"`
}

type LeaderElection struct {
	Enabled        bool          `mapstructure:"enabled"`
	LeaseName      string        `mapstructure:"leaseName"`
	LeaseNamespace string        `mapstructure:"leaseNamespace"`
	LeaseDuration  time.Duration `mapstructure:"leaseDuration"`
	RenewDeadline  time.Duration `mapstructure:"renewDeadline"`
	RetryPeriod    time.Duration `mapstructure:"retryPeriod"`
}

type Airflow struct {
	URL        string        `mapstructure:"url"`
	APIVersion string        `mapstructure:"apiVersion"`
	Timeout    time.Duration `mapstructure:"timeout"`
	MaxRetries int           `mapstructure:"maxRetries"`
	// PageSize is the page size of every listing; 0 picks the default (100,
	// or 25 through MWAA, whose InvokeRestApi caps an answer at 6 MB).
	PageSize int  `mapstructure:"pageSize"`
	Auth     Auth `mapstructure:"auth"`
	TLS      TLS  `mapstructure:"tls"`
	MWAA     MWAA `mapstructure:"mwaa"`
}

type Auth struct {
	// Type is one of authtype.All(): none, basic, bearer, airflow-jwt,
	// google or mwaa.
	Type      string `mapstructure:"type"`
	Username  string `mapstructure:"username"`
	Password  Secret `mapstructure:"password"`
	Token     Secret `mapstructure:"token"`
	TokenFile string `mapstructure:"tokenFile"`
	// ClientID and ClientSecret log airflow-jwt in with the OAuth2
	// client_credentials grant (Airflow 3 with the Keycloak auth manager)
	// instead of a username and password.
	ClientID     string `mapstructure:"clientID"`
	ClientSecret Secret `mapstructure:"clientSecret"`
	// CredentialsFile is a Google credentials JSON for type google; empty
	// uses Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS,
	// then the metadata server, e.g. GKE Workload Identity).
	CredentialsFile string `mapstructure:"credentialsFile"`
	// Scopes are the Google OAuth2 scopes for type google.
	Scopes []string `mapstructure:"scopes"`
}

// TLS configures HTTPS to Airflow beyond the system trust store.
type TLS struct {
	CAFile             string `mapstructure:"caFile"`
	CertFile           string `mapstructure:"certFile"`
	KeyFile            string `mapstructure:"keyFile"`
	InsecureSkipVerify bool   `mapstructure:"insecureSkipVerify"`
}

// MWAA reaches Amazon MWAA's Airflow through the AWS InvokeRestApi call
// (airflow.auth.type mwaa); airflow.url is not used then.
type MWAA struct {
	Environment string `mapstructure:"environment"`
	Region      string `mapstructure:"region"`
	// Endpoint overrides the AWS endpoint (a VPC endpoint, or a test
	// stand-in); empty uses the SDK's resolution.
	Endpoint string `mapstructure:"endpoint"`
}

type Kubernetes struct {
	Kubeconfig string `mapstructure:"kubeconfig"`
	// Context is the kubeconfig context to use; empty is its current one.
	Context       string   `mapstructure:"context"`
	Namespaces    []string `mapstructure:"namespaces"`
	AllNamespaces bool     `mapstructure:"allNamespaces"`
	LabelSelector string   `mapstructure:"labelSelector"`
}

type Reaper struct {
	DryRun              bool          `mapstructure:"dryRun"`
	Interval            time.Duration `mapstructure:"interval"`
	MinPodAge           time.Duration `mapstructure:"minPodAge"`
	TerminalGracePeriod time.Duration `mapstructure:"terminalGracePeriod"`
	OrphanMinAge        time.Duration `mapstructure:"orphanMinAge"`
	Confirmations       int           `mapstructure:"confirmations"`
	// ConfirmationSpacing is the least time between two sightings that both
	// count toward Confirmations (the previous counted one is kept in the pod
	// annotation kpo-reaper.io/zombie-last-seen). Load sets it to Interval
	// when the configuration leaves it unset or 0, so a loaded Config always
	// carries the effective value.
	ConfirmationSpacing time.Duration `mapstructure:"confirmationSpacing"`
	MaxDeletesPerCycle  int           `mapstructure:"maxDeletesPerCycle"`
	// ReapOrphans lets a pod whose DAG run or task instance this Airflow
	// does not have be deleted (reason orphan); false keeps it (verdict skip,
	// reason orphan-not-enabled). Safe only when the selected pods
	// (kubernetes.namespaces + kubernetes.labelSelector) belong to this
	// Airflow alone.
	ReapOrphans bool `mapstructure:"reapOrphans"`
}

// EffectiveConfirmationSpacing is ConfirmationSpacing, or Interval when it
// is 0 (a Config built in code rather than by Load).
func (r Reaper) EffectiveConfirmationSpacing() time.Duration {
	if r.ConfirmationSpacing == 0 {
		return r.Interval
	}
	return r.ConfirmationSpacing
}

type Log struct {
	Level  string `mapstructure:"level"`
	Format string `mapstructure:"format"`
}

// Default is the configuration that the file, the environment and the
// flags start from: every key's default, written here and nowhere else.
// Viper's defaults and the flags' defaults are read from it.
func Default() Config {
	return Config{
		Airflow: Airflow{
			APIVersion: "auto",
			Timeout:    30 * time.Second,
			MaxRetries: 4,
			Auth: Auth{
				Type:   authtype.None,
				Scopes: []string{"https://www.googleapis.com/auth/cloud-platform"},
			},
		},
		Kubernetes: Kubernetes{Namespaces: []string{}},
		Reaper: Reaper{
			DryRun:              true,
			Interval:            time.Minute,
			MinPodAge:           5 * time.Minute,
			TerminalGracePeriod: 2 * time.Minute,
			OrphanMinAge:        time.Hour,
			Confirmations:       2,
			MaxDeletesPerCycle:  20,
		},
		Server: Server{Address: ":8080"},
		LeaderElection: LeaderElection{
			LeaseName:     "kpo-reaper",
			LeaseDuration: 15 * time.Second,
			RenewDeadline: 10 * time.Second,
			RetryPeriod:   2 * time.Second,
		},
		Log: Log{Level: "info", Format: "text"},
	}
}

// walk calls fn with every key of v (a Config or one of its sections),
// named by the mapstructure tags, and its field; a Secret is one key.
func walk(prefix string, v reflect.Value, fn func(key string, f reflect.Value)) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		key := t.Field(i).Tag.Get("mapstructure")
		if prefix != "" {
			key = prefix + "." + key
		}
		f := v.Field(i)
		if f.Kind() == reflect.Struct && f.Type() != reflect.TypeFor[Secret]() {
			walk(key, f, fn)
			continue
		}
		fn(key, f)
	}
}

// defaults maps every key to its default from Default(). Viper only maps
// environment variables onto keys it knows, so every key is given one.
func defaults() map[string]any {
	out := map[string]any{}
	walk("", reflect.ValueOf(Default()), func(key string, f reflect.Value) {
		if s, ok := f.Interface().(Secret); ok {
			out[key] = s.value
			return
		}
		out[key] = f.Interface()
	})
	return out
}

// flags are the command-line flags for the common keys, named and
// abbreviated as kubectl's where kubectl has one. Each takes its default
// from Default() and its help names its key: usage, then (key), then more.
var flags = []struct{ name, short, key, usage, more string }{
	{"dry-run", "", "reaper.dryRun", "log what would be deleted without deleting", "; deleting needs --dry-run=false"},
	{"airflow-url", "", "airflow.url", "Airflow webserver/API server base URL, without /api/v1", ""},
	{"kubeconfig", "", "kubernetes.kubeconfig", "kubeconfig path; empty: in-cluster, $KUBECONFIG or ~/.kube/config", ""},
	{"context", "", "kubernetes.context", "kubeconfig context to use; empty: its current context", ""},
	{"namespace", "n", "kubernetes.namespaces", "namespace to watch, repeatable", ""},
	{"all-namespaces", "A", "kubernetes.allNamespaces", "watch every namespace", ""},
	{"selector", "l", "kubernetes.labelSelector", "label selector ANDed with kubernetes_pod_operator=True, e.g. -l team=data", ""},
	{"interval", "", "reaper.interval", "time between cycles", ""},
	{"log-level", "", "log.level", "debug, info, warn or error", ""},
	{"log-format", "", "log.format", "text or json", ""},
}

// AddFlags declares the flags for the common settings, except those named
// in skip (a command that never deletes has no --dry-run).
func AddFlags(fs *pflag.FlagSet, skip ...string) {
	d := defaults()
	for _, f := range flags {
		if slices.Contains(skip, f.name) {
			continue
		}
		usage := f.usage + " (" + f.key + ")" + f.more
		switch def := d[f.key].(type) {
		case bool:
			fs.BoolP(f.name, f.short, def, usage)
		case string:
			fs.StringP(f.name, f.short, def, usage)
		case []string:
			fs.StringSliceP(f.name, f.short, def, usage)
		case time.Duration:
			fs.DurationP(f.name, f.short, def, usage)
		case int:
			fs.IntP(f.name, f.short, def, usage)
		default:
			panic(fmt.Sprintf("config: flag --%s: key %s of type %T has no flag type", f.name, f.key, def))
		}
	}
}

// Load reads the file (if any), the environment and the flags that were set,
// in increasing precedence, and validates the result.
func Load(file string, fs *pflag.FlagSet) (*Config, error) {
	v := viper.New()
	for k, d := range defaults() {
		v.SetDefault(k, d)
	}
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	// An empty variable is a value: KPO_REAPER_SERVER_ADDRESS="" turns the
	// server off.
	v.AllowEmptyEnv(true)
	v.AutomaticEnv()
	if file != "" {
		v.SetConfigFile(file)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("config file %s: %w", file, err)
		}
	}
	if fs != nil {
		for _, f := range flags {
			if pf := fs.Lookup(f.name); pf != nil && pf.Changed {
				if err := v.BindPFlag(f.key, pf); err != nil {
					return nil, err
				}
			}
		}
	}
	var c Config
	err := v.UnmarshalExact(&c, viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(
		mapstructure.StringToTimeDurationHookFunc(),
		mapstructure.StringToSliceHookFunc(","),
	)))
	if err != nil {
		return nil, explainDecodeError(err)
	}
	c.Kubernetes.Namespaces = compact(c.Kubernetes.Namespaces)
	// An unset (0) spacing is reaper.interval; a negative one is left for
	// Validate to refuse.
	if c.Reaper.ConfirmationSpacing == 0 && c.Reaper.Interval > 0 {
		c.Reaper.ConfirmationSpacing = c.Reaper.Interval
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// explainDecodeError turns mapstructure's report into lines that name each
// key and say what to do.
func explainDecodeError(err error) error {
	msg := err.Error()
	msg = strings.ReplaceAll(msg, "decoding failed due to the following error(s):\n\n", "")
	msg = strings.ReplaceAll(msg, "'' has invalid keys: ", "unknown key(s), remove or fix the spelling: ")
	return fmt.Errorf("invalid configuration: %s", strings.TrimSpace(msg))
}

func compact(in []string) []string {
	var out []string
	for _, s := range in {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// problems collects what Validate finds, each naming its key and the fix.
type problems []error

func (p *problems) add(key, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
}

// Validate checks every value and names the key and the fix for each
// problem; all problems are reported at once.
func (c *Config) Validate() error {
	var p problems
	a := c.Airflow
	a.validate(&p)
	a.Auth.validate(&p)
	a.TLS.validate(&p, a.Auth.Type)
	a.MWAA.validate(&p, a.Auth.Type)
	c.Kubernetes.validate(&p)
	c.Reaper.validate(&p)
	c.LeaderElection.validate(&p)
	c.Log.validate(&p)
	// server.address has nothing to check before listening.
	if len(p) == 0 {
		return nil
	}
	sort.Slice(p, func(i, j int) bool { return p[i].Error() < p[j].Error() })
	return fmt.Errorf("invalid configuration:\n  %w", errors.Join(p...))
}

// apiSuffix matches an Airflow REST API path (/api/v1, /api/v2, and
// anything after it) in airflow.url.
var apiSuffix = regexp.MustCompile(`/api/v[0-9]+(/.*)?$`)

// validate checks airflow's own keys; its sections check theirs.
func (a Airflow) validate(p *problems) {
	switch u, err := url.Parse(a.URL); {
	case a.Auth.Type == authtype.MWAA:
		if a.URL != "" {
			p.add("airflow.url", "must be empty with airflow.auth.type mwaa: MWAA is reached through the AWS API named by airflow.mwaa.environment and airflow.mwaa.region")
		}
	case a.URL == "":
		p.add("airflow.url", "required: the Airflow webserver (2.x) or API server (3.x) base URL, e.g. http://airflow-webserver.airflow:8080")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		p.add("airflow.url", "%q is not an http(s) URL", a.URL)
	case u.User != nil:
		p.add("airflow.url", "must not carry credentials: use airflow.auth")
	case apiSuffix.MatchString(u.Path):
		// kpo-reaper appends /api/v1 or /api/v2 itself (airflow.apiVersion);
		// a URL that already ends in one would ask .../api/v2/api/v2/... and
		// get 404s that look like a missing DAG.
		base := *u
		base.Path = apiSuffix.ReplaceAllString(u.Path, "")
		base.RawPath, base.RawQuery, base.Fragment = "", "", ""
		p.add("airflow.url", "ends in the API path %s: remove it and give the base URL, %s (kpo-reaper adds /api/v1 or /api/v2 itself, see airflow.apiVersion)",
			apiSuffix.FindString(u.Path), base.String())
	}
	switch a.APIVersion {
	case "auto", "v1", "v2":
	default:
		p.add("airflow.apiVersion", "%q is not one of auto, v1, v2", a.APIVersion)
	}
	if a.Timeout <= 0 {
		p.add("airflow.timeout", "must be a positive duration such as 30s")
	}
	if a.MaxRetries < 0 || a.MaxRetries > 10 {
		p.add("airflow.maxRetries", "must be between 0 and 10")
	}
	if a.PageSize < 0 || a.PageSize > 1000 {
		p.add("airflow.pageSize", "must be between 1 and 1000, or 0 for the default (100; 25 through MWAA)")
	}
}

func (au Auth) validate(p *problems) {
	switch au.Type {
	case authtype.None:
	case authtype.Basic:
		if au.Username == "" || !au.Password.IsSet() {
			p.add("airflow.auth", "type basic needs airflow.auth.username and airflow.auth.password (env KPO_REAPER_AIRFLOW_AUTH_PASSWORD)")
		}
	case authtype.AirflowJWT:
		user, client := au.Username != "" || au.Password.IsSet(), au.ClientID != "" || au.ClientSecret.IsSet()
		switch {
		case user && client:
			p.add("airflow.auth", "type airflow-jwt takes either username and password or clientID and clientSecret, not both")
		case client && (au.ClientID == "" || !au.ClientSecret.IsSet()):
			p.add("airflow.auth", "type airflow-jwt with client credentials needs airflow.auth.clientID and airflow.auth.clientSecret (env KPO_REAPER_AIRFLOW_AUTH_CLIENTSECRET)")
		case !client && (au.Username == "" || !au.Password.IsSet()):
			p.add("airflow.auth", "type airflow-jwt needs airflow.auth.username and airflow.auth.password (env KPO_REAPER_AIRFLOW_AUTH_PASSWORD), or clientID and clientSecret for the Keycloak auth manager")
		}
	case authtype.Bearer:
		if au.Token.IsSet() == (au.TokenFile != "") {
			p.add("airflow.auth", "type bearer needs exactly one of airflow.auth.token and airflow.auth.tokenFile")
		}
	case authtype.Google:
		if len(compact(au.Scopes)) == 0 {
			p.add("airflow.auth.scopes", "type google needs at least one OAuth2 scope, e.g. https://www.googleapis.com/auth/cloud-platform")
		}
		au.unused(p)
	case authtype.MWAA:
		au.unused(p)
	default:
		p.add("airflow.auth.type", "%q is not one of %s", au.Type, strings.Join(authtype.All(), ", "))
	}
}

// unused names each credential set for a type that does not read it.
func (au Auth) unused(p *problems) {
	for k, set := range map[string]bool{"username": au.Username != "", "password": au.Password.IsSet(), "token": au.Token.IsSet(), "tokenFile": au.TokenFile != ""} {
		if set {
			p.add("airflow.auth."+k, "is not used by airflow.auth.type %s: remove it", au.Type)
		}
	}
}

func (t TLS) validate(p *problems, authType string) {
	if authType == authtype.MWAA && t != (TLS{}) {
		p.add("airflow.tls", "does not apply to airflow.auth.type mwaa: the AWS SDK makes the connection")
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		p.add("airflow.tls", "a client certificate needs both airflow.tls.certFile and airflow.tls.keyFile")
	}
	if t.InsecureSkipVerify && t.CAFile != "" {
		p.add("airflow.tls.insecureSkipVerify", "set either airflow.tls.caFile or insecureSkipVerify, not both")
	}
}

func (m MWAA) validate(p *problems, authType string) {
	if authType != authtype.MWAA {
		if m != (MWAA{}) {
			p.add("airflow.mwaa", "is only used with airflow.auth.type mwaa")
		}
		return
	}
	if m.Environment == "" {
		p.add("airflow.mwaa.environment", "required with airflow.auth.type mwaa: the MWAA environment name")
	}
	if m.Region == "" {
		p.add("airflow.mwaa.region", "required with airflow.auth.type mwaa: the environment's AWS region, e.g. us-east-1")
	}
	if m.Endpoint != "" {
		if u, err := url.Parse(m.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.add("airflow.mwaa.endpoint", "%q is not an http(s) URL", m.Endpoint)
		}
	}
}

func (k Kubernetes) validate(p *problems) {
	switch {
	case k.AllNamespaces && len(k.Namespaces) > 0:
		p.add("kubernetes.namespaces", "set either kubernetes.namespaces or kubernetes.allNamespaces, not both")
	case !k.AllNamespaces && len(k.Namespaces) == 0:
		p.add("kubernetes.namespaces", "required: list the namespaces where KPO pods run (or set kubernetes.allNamespaces: true)")
	}
	if k.LabelSelector != "" {
		if _, err := labels.Parse(k.LabelSelector); err != nil {
			p.add("kubernetes.labelSelector", "%v", err)
		}
	}
}

func (r Reaper) validate(p *problems) {
	if r.Interval < time.Second {
		p.add("reaper.interval", "must be at least 1s")
	}
	for key, d := range map[string]time.Duration{"reaper.minPodAge": r.MinPodAge, "reaper.terminalGracePeriod": r.TerminalGracePeriod, "reaper.orphanMinAge": r.OrphanMinAge} {
		if d < 0 {
			p.add(key, "must not be negative")
		}
	}
	if r.Confirmations < 1 {
		p.add("reaper.confirmations", "must be at least 1 (1 deletes on the first evaluation that finds a zombie)")
	}
	if r.ConfirmationSpacing < 0 {
		p.add("reaper.confirmationSpacing", "must not be negative: the least time between two sightings that both count toward reaper.confirmations; leave it unset (or 0) for reaper.interval")
	}
	if r.MaxDeletesPerCycle < 1 {
		p.add("reaper.maxDeletesPerCycle", "must be at least 1; use reaper.dryRun: true to delete nothing")
	}
}

func (le LeaderElection) validate(p *problems) {
	if !le.Enabled {
		return
	}
	if le.LeaseName == "" {
		p.add("leaderElection.leaseName", "required when leaderElection.enabled is true")
	}
	if le.RetryPeriod <= 0 || le.RenewDeadline <= le.RetryPeriod || le.LeaseDuration <= le.RenewDeadline {
		d := Default().LeaderElection
		p.add("leaderElection", "durations must satisfy leaseDuration > renewDeadline > retryPeriod > 0 (defaults %s, %s, %s)", d.LeaseDuration, d.RenewDeadline, d.RetryPeriod)
	}
}

func (l Log) validate(p *problems) {
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		p.add("log.level", "%q is not one of debug, info, warn, error", l.Level)
	}
	switch l.Format {
	case "text", "json":
	default:
		p.add("log.format", "%q is not one of text, json", l.Format)
	}
}

// LogValue lets slog print the configuration as one group, nested by
// section and keyed as in the file; a Secret shows no value, a duration
// reads as in the file (1m0s, not nanoseconds).
func (c Config) LogValue() slog.Value {
	return group(reflect.ValueOf(c))
}

func group(v reflect.Value) slog.Value {
	t := v.Type()
	attrs := make([]slog.Attr, 0, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		key, f := t.Field(i).Tag.Get("mapstructure"), v.Field(i)
		switch x := f.Interface().(type) {
		case Secret:
			attrs = append(attrs, slog.Any(key, x))
		case time.Duration:
			attrs = append(attrs, slog.String(key, x.String()))
		default:
			if f.Kind() == reflect.Struct {
				attrs = append(attrs, slog.Attr{Key: key, Value: group(f)})
			} else {
				attrs = append(attrs, slog.Any(key, x))
			}
		}
	}
	return slog.GroupValue(attrs...)
}

// String renders every key=value; a set Secret shows "<redacted>", an
// unset one nothing.
func (c Config) String() string {
	var parts []string
	walk("", reflect.ValueOf(c), func(key string, f reflect.Value) {
		parts = append(parts, fmt.Sprintf("%s=%v", key, f.Interface()))
	})
	return strings.Join(parts, " ")
}
