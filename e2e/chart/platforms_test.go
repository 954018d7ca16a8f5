package chart

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// absent, as a wanted config value, means the key must not be rendered.
const absent = "<absent>"

// platform is one supported way of reaching Airflow, configured as a user
// would configure the chart.
type platform struct {
	name   string
	values map[string]any
	// config: dotted kpo-reaper config key -> wanted value (fmt.Sprint of
	// the rendered value), or absent.
	config map[string]string
	// secretEnv: every KPO_REAPER_AIRFLOW_* variable, and the Secret
	// "name/key" it must come from.
	secretEnv map[string]string
	// files: config key naming a file -> where the file must be mounted
	// from: "secret:NAME/KEY" or "configMap:NAME/KEY".
	files map[string]string
	// sa: annotations the ServiceAccount must carry (cloud identity).
	sa map[string]string
}

func auth(kv ...any) map[string]any {
	m := map[string]any{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

const (
	gcpSA   = "kpo-reaper@my-project.iam.gserviceaccount.com"
	awsRole = "arn:aws:iam::123456789012:role/kpo-reaper-mwaa"
)

var platforms = []platform{
	{
		name:      "self-hosted-2-basic",
		values:    baseValues(),
		config:    map[string]string{"airflow.url": "http://airflow-webserver.airflow:8080", "airflow.auth.type": "basic", "airflow.auth.username": "kpo-reaper", "airflow.pageSize": absent, "airflow.tls": absent, "airflow.mwaa": absent},
		secretEnv: map[string]string{"KPO_REAPER_AIRFLOW_AUTH_PASSWORD": "kpo-reaper-airflow/password"},
	},
	{
		name: "self-hosted-3-jwt-password",
		values: withAll(baseValues(), "airflow.url", "http://airflow-api-server.airflow:8080", "airflow.apiVersion", "v2",
			"airflow.auth", auth("type", "airflow-jwt", "existingSecret", "af", "usernameKey", "user", "passwordKey", "pw")),
		config:    map[string]string{"airflow.apiVersion": "v2", "airflow.auth.type": "airflow-jwt", "airflow.auth.username": absent, "airflow.auth.clientID": absent},
		secretEnv: map[string]string{"KPO_REAPER_AIRFLOW_AUTH_USERNAME": "af/user", "KPO_REAPER_AIRFLOW_AUTH_PASSWORD": "af/pw"},
	},
	{
		name: "self-hosted-3-keycloak-client-credentials",
		values: withAll(baseValues(), "airflow.url", "http://airflow-api-server.airflow:8080",
			"airflow.auth", auth("type", "airflow-jwt", "clientID", "kpo-reaper", "existingSecret", "keycloak-client")),
		config:    map[string]string{"airflow.auth.type": "airflow-jwt", "airflow.auth.clientID": "kpo-reaper", "airflow.auth.username": absent, "airflow.auth.clientSecret": absent},
		secretEnv: map[string]string{"KPO_REAPER_AIRFLOW_AUTH_CLIENTSECRET": "keycloak-client/clientSecret"},
	},
	{
		name: "keycloak-client-id-from-secret",
		values: withAll(baseValues(), "airflow.url", "http://airflow-api-server.airflow:8080",
			"airflow.auth", auth("type", "airflow-jwt", "existingSecret", "keycloak-client", "clientIDKey", "client-id", "clientSecretKey", "client-secret")),
		config:    map[string]string{"airflow.auth.type": "airflow-jwt", "airflow.auth.clientID": absent},
		secretEnv: map[string]string{"KPO_REAPER_AIRFLOW_AUTH_CLIENTID": "keycloak-client/client-id", "KPO_REAPER_AIRFLOW_AUTH_CLIENTSECRET": "keycloak-client/client-secret"},
	},
	{
		name: "astronomer-bearer",
		values: withAll(baseValues(), "airflow.url", "https://clxyz.astronomer.run/d1a2b3c4",
			"airflow.auth", auth("type", "bearer", "existingSecret", "astro-token")),
		config:    map[string]string{"airflow.auth.type": "bearer"},
		secretEnv: map[string]string{},
		files:     map[string]string{"airflow.auth.tokenFile": "secret:astro-token/token"},
	},
	{
		name: "composer-workload-identity",
		values: withAll(baseValues(), "airflow.url", "https://abc123-dot-europe-west1.composer.googleusercontent.com",
			"airflow.auth", auth("type", "google"),
			"serviceAccount.annotations", map[string]any{"iam.gke.io/gcp-service-account": gcpSA}),
		config:    map[string]string{"airflow.auth.type": "google", "airflow.auth.credentialsFile": absent, "airflow.auth.scopes": absent, "airflow.auth.username": absent},
		secretEnv: map[string]string{},
		sa:        map[string]string{"iam.gke.io/gcp-service-account": gcpSA},
	},
	{
		name: "composer-credentials-json",
		values: withAll(baseValues(), "airflow.url", "https://abc123-dot-europe-west1.composer.googleusercontent.com",
			"airflow.auth", auth("type", "google", "existingSecret", "gcp-key", "credentialsKey", "key.json",
				"scopes", []any{"https://www.googleapis.com/auth/cloud-platform", "https://www.googleapis.com/auth/userinfo.email"})),
		config: map[string]string{"airflow.auth.type": "google",
			"airflow.auth.scopes": "[https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/userinfo.email]"},
		secretEnv: map[string]string{},
		files:     map[string]string{"airflow.auth.credentialsFile": "secret:gcp-key/key.json"},
	},
	{
		name: "mwaa-irsa",
		values: withAll(baseValues(), "airflow.url", "",
			"airflow.auth", auth("type", "mwaa"),
			"airflow.mwaa", map[string]any{"environment": "my-mwaa-env", "region": "eu-west-1"},
			"serviceAccount.annotations", map[string]any{"eks.amazonaws.com/role-arn": awsRole}),
		config: map[string]string{"airflow.url": absent, "airflow.auth.type": "mwaa", "airflow.auth.username": absent,
			"airflow.mwaa.environment": "my-mwaa-env", "airflow.mwaa.region": "eu-west-1", "airflow.mwaa.endpoint": absent, "airflow.tls": absent, "airflow.pageSize": absent},
		secretEnv: map[string]string{},
		sa:        map[string]string{"eks.amazonaws.com/role-arn": awsRole},
	},
	{
		name: "mwaa-pod-identity-vpc-endpoint-cronjob",
		values: withAll(baseValues(), "mode", "cronjob", "airflow.url", "",
			"airflow.auth", auth("type", "mwaa"), "airflow.pageSize", 10,
			"airflow.mwaa", map[string]any{"environment": "prod_env-1", "region": "us-gov-west-1", "endpoint": "https://vpce-0abc.airflow.us-gov-west-1.vpce.amazonaws.com"}),
		config: map[string]string{"airflow.url": absent, "airflow.auth.type": "mwaa", "airflow.pageSize": "10",
			"airflow.mwaa.environment": "prod_env-1", "airflow.mwaa.region": "us-gov-west-1", "airflow.mwaa.endpoint": "https://vpce-0abc.airflow.us-gov-west-1.vpce.amazonaws.com"},
		secretEnv: map[string]string{},
	},
	{
		name: "tls-private-ca-configmap-and-mtls",
		values: withAll(baseValues(), "airflow.url", "https://airflow.internal.example:8443",
			"airflow.tls", map[string]any{"caConfigMap": "airflow-ca-bundle", "caKey": "trust-bundle.pem", "clientCertSecret": "kpo-reaper-client-tls"}),
		config:    map[string]string{"airflow.url": "https://airflow.internal.example:8443", "airflow.tls.insecureSkipVerify": absent},
		secretEnv: map[string]string{"KPO_REAPER_AIRFLOW_AUTH_PASSWORD": "kpo-reaper-airflow/password"},
		files: map[string]string{
			"airflow.tls.caFile":   "configMap:airflow-ca-bundle/trust-bundle.pem",
			"airflow.tls.certFile": "secret:kpo-reaper-client-tls/tls.crt",
			"airflow.tls.keyFile":  "secret:kpo-reaper-client-tls/tls.key",
		},
	},
	{
		name: "tls-ca-secret-bearer-env",
		values: withAll(baseValues(), "airflow.url", "https://airflow.internal.example",
			"airflow.auth", auth("type", "bearer", "existingSecret", "af", "mountToken", false),
			"airflow.tls", map[string]any{"caSecret": "airflow-ca"}),
		config:    map[string]string{"airflow.tls.certFile": absent, "airflow.tls.keyFile": absent, "airflow.auth.tokenFile": absent},
		secretEnv: map[string]string{"KPO_REAPER_AIRFLOW_AUTH_TOKEN": "af/token"},
		files:     map[string]string{"airflow.tls.caFile": "secret:airflow-ca/ca.crt"},
	},
	{
		name: "tls-insecure-skip-verify",
		values: withAll(baseValues(), "airflow.url", "https://airflow.test.example",
			"airflow.tls.insecureSkipVerify", true),
		config:    map[string]string{"airflow.tls.insecureSkipVerify": "true", "airflow.tls.caFile": absent},
		secretEnv: map[string]string{"KPO_REAPER_AIRFLOW_AUTH_PASSWORD": "kpo-reaper-airflow/password"},
	},
	{
		name: "behind-proxy-page-size",
		values: withAll(baseValues(), "airflow.pageSize", 50,
			"extraEnv", []any{
				map[string]any{"name": "HTTPS_PROXY", "value": "http://proxy.example:3128"},
				map[string]any{"name": "NO_PROXY", "value": "10.96.0.0/12,.svc,.cluster.local"},
			}),
		config:    map[string]string{"airflow.pageSize": "50"},
		secretEnv: map[string]string{"KPO_REAPER_AIRFLOW_AUTH_PASSWORD": "kpo-reaper-airflow/password"},
	},
}

// lookup returns the value at a dotted path and whether it is there.
func lookup(m map[string]any, dotted string) (any, bool) {
	v, ok, _ := unstructured.NestedFieldNoCopy(m, strings.Split(dotted, ".")...)
	return v, ok
}

// volumeFile resolves an absolute file path in the kpo-reaper container to
// the object and key it is projected from ("secret:NAME/KEY",
// "configMap:NAME/KEY"), or says why it cannot.
func volumeFile(c map[string]any, volumes []any, file string) (string, error) {
	var mount map[string]any
	for _, m := range c["volumeMounts"].([]any) {
		mm := m.(map[string]any)
		dir := fmt.Sprint(mm["mountPath"])
		if strings.HasPrefix(file, strings.TrimSuffix(dir, "/")+"/") && (mount == nil || len(dir) > len(fmt.Sprint(mount["mountPath"]))) {
			mount = mm
		}
	}
	if mount == nil {
		return "", fmt.Errorf("%s is not on any volume mount", file)
	}
	if mount["subPath"] != nil {
		return "", fmt.Errorf("%s is mounted with subPath: the kubelet would never refresh it", file)
	}
	if mount["readOnly"] != true {
		return "", fmt.Errorf("mount %v is not read-only", mount["name"])
	}
	rel := strings.TrimPrefix(file, strings.TrimSuffix(fmt.Sprint(mount["mountPath"]), "/")+"/")
	for _, v := range volumes {
		vm := v.(map[string]any)
		if vm["name"] != mount["name"] {
			continue
		}
		var kind, name string
		var items []any
		switch {
		case vm["secret"] != nil:
			kind, name = "secret", str(vm, "secret", "secretName")
			items, _, _ = unstructured.NestedSlice(vm, "secret", "items")
		case vm["configMap"] != nil:
			kind, name = "configMap", str(vm, "configMap", "name")
			items, _, _ = unstructured.NestedSlice(vm, "configMap", "items")
		default:
			return "", fmt.Errorf("volume %v is neither a Secret nor a ConfigMap: %v", vm["name"], vm)
		}
		if len(items) == 0 {
			return kind + ":" + name + "/" + rel, nil
		}
		for _, it := range items {
			im := it.(map[string]any)
			if path.Clean(fmt.Sprint(im["path"])) == rel {
				return kind + ":" + name + "/" + fmt.Sprint(im["key"]), nil
			}
		}
		return "", fmt.Errorf("volume %v projects no item at %s: %v", vm["name"], rel, items)
	}
	return "", fmt.Errorf("no volume %v", mount["name"])
}

// TestPlatforms: for every supported platform the chart renders objects
// Kubernetes accepts, a configuration of known keys with the platform's
// settings, credentials only from existing Secrets (environment variables
// from secretKeyRef or mounted files, never a literal), and the cloud
// identity on the ServiceAccount.
func TestPlatforms(t *testing.T) {
	dir, err := Dir()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range platforms {
		t.Run(p.name, func(t *testing.T) {
			r := renderObjects(t, p.values)
			checkStrict(t, p.name, r.objs)
			if n := len(r.all("Secret")); n != 0 {
				t.Errorf("rendered %d Secrets; credentials must come from existing Secrets", n)
			}
			cfg := r.config(t)
			checkConfigKeys(t, p.name, cfg)
			for key, want := range p.config {
				got, ok := lookup(cfg, key)
				switch {
				case want == absent && ok:
					t.Errorf("config %s = %v, want it absent", key, got)
				case want != absent && !ok:
					t.Errorf("config %s is absent, want %q", key, want)
				case want != absent && fmt.Sprint(got) != want:
					t.Errorf("config %s = %v, want %q", key, got, want)
				}
			}
			auth, _ := lookup(cfg, "airflow.auth")
			for _, k := range []string{"password", "token", "clientSecret"} {
				if _, ok := auth.(map[string]any)[k]; ok {
					t.Errorf("config has airflow.auth.%s: credentials must not be in the ConfigMap", k)
				}
			}

			c := r.container(t)
			for name, e := range envByName(c) {
				if !strings.HasPrefix(name, "KPO_REAPER_AIRFLOW_") {
					continue
				}
				want, expected := p.secretEnv[name]
				if !expected {
					t.Errorf("unexpected env %s = %v", name, e)
					continue
				}
				if _, literal := e["value"]; literal {
					t.Errorf("env %s has a literal value", name)
				}
				if got := str(e, "valueFrom", "secretKeyRef", "name") + "/" + str(e, "valueFrom", "secretKeyRef", "key"); got != want {
					t.Errorf("env %s from secretKeyRef %s, want %s", name, got, want)
				}
			}
			env := envByName(c)
			for name := range p.secretEnv {
				if env[name] == nil {
					t.Errorf("no env %s", name)
				}
			}

			// Every file the config names is projected from the wanted object, and
			// every projected credential is named by the config.
			vols, _, _ := unstructured.NestedSlice(r.podTemplate(t), "spec", "volumes")
			used := map[string]bool{"config": true}
			for key, want := range p.files {
				file := str(cfg, strings.Split(key, ".")...)
				if file == "" {
					t.Errorf("config %s is not set", key)
					continue
				}
				got, err := volumeFile(c, vols, file)
				if err != nil {
					t.Errorf("config %s = %s: %v", key, file, err)
					continue
				}
				if got != want {
					t.Errorf("config %s = %s is %s, want %s", key, file, got, want)
				}
				for _, m := range c["volumeMounts"].([]any) {
					if mp := fmt.Sprint(m.(map[string]any)["mountPath"]); strings.HasPrefix(file, mp+"/") {
						used[fmt.Sprint(m.(map[string]any)["name"])] = true
					}
				}
			}
			for _, v := range vols {
				if name := fmt.Sprint(v.(map[string]any)["name"]); !used[name] {
					t.Errorf("volume %s is mounted but no config key names a file on it", name)
				}
			}

			sa := r.one(t, "ServiceAccount")
			for k, v := range p.sa {
				if sa.GetAnnotations()[k] != v {
					t.Errorf("ServiceAccount annotation %s = %q, want %q", k, sa.GetAnnotations()[k], v)
				}
			}

			l := lint.All(dir, p.values, testNamespace, false)
			for _, msg := range l.Messages {
				if msg.Severity >= support.WarningSev {
					t.Errorf("helm lint: %s", msg)
				}
			}
			if _, err := Notes(p.values, testNamespace); err != nil {
				t.Errorf("NOTES: %v", err)
			}
		})
	}
}

func TestPlatformNotes(t *testing.T) {
	for _, tc := range []struct {
		name string
		want string
	}{
		{"mwaa-irsa", "MWAA environment my-mwaa-env in eu-west-1"},
		{"tls-insecure-skip-verify", "insecureSkipVerify is true"},
		{"composer-workload-identity", "(auth: google)"},
	} {
		var values map[string]any
		for _, p := range platforms {
			if p.name == tc.name {
				values = p.values
			}
		}
		notes, err := Notes(values, testNamespace)
		if err != nil || !strings.Contains(notes, tc.want) {
			t.Errorf("%s: NOTES do not say %q (%v):\n%s", tc.name, tc.want, err, notes)
		}
	}
	notes, err := Notes(baseValues(), testNamespace)
	if err != nil || strings.Contains(notes, "insecureSkipVerify") {
		t.Errorf("default NOTES warn about insecureSkipVerify (%v):\n%s", err, notes)
	}
}

// mwaaValues is a valid MWAA install, the base of the bad combinations below.
func mwaaValues() map[string]any {
	return withAll(baseValues(), "airflow.url", "", "airflow.auth", auth("type", "mwaa"),
		"airflow.mwaa", map[string]any{"environment": "env", "region": "eu-west-1"})
}

func TestPlatformSchemaRejects(t *testing.T) {
	cases := map[string]map[string]any{
		"mwaa with url":                      with(mwaaValues(), "airflow.url", "https://airflow.example"),
		"mwaa without environment":           with(mwaaValues(), "airflow.mwaa.environment", ""),
		"mwaa without region":                with(mwaaValues(), "airflow.mwaa.region", ""),
		"mwaa region Ireland":                with(mwaaValues(), "airflow.mwaa.region", "Ireland"),
		"mwaa endpoint without scheme":       with(mwaaValues(), "airflow.mwaa.endpoint", "vpce.example"),
		"mwaa keys without type mwaa":        with(baseValues(), "airflow.mwaa.environment", "env"),
		"url removed without mwaa":           with(baseValues(), "airflow.url", nil),
		"unknown auth type":                  with(baseValues(), "airflow.auth.type", "kerberos"),
		"auth type Google (case)":            with(baseValues(), "airflow.auth.type", "Google"),
		"clientID without existingSecret":    with(baseValues(), "airflow.auth", auth("type", "airflow-jwt", "clientID", "kpo-reaper")),
		"clientIDKey without existingSecret": with(baseValues(), "airflow.auth", auth("type", "airflow-jwt", "clientIDKey", "id")),
		"inline clientSecret":                with(baseValues(), "airflow.auth", auth("type", "airflow-jwt", "clientID", "c", "existingSecret", "s", "clientSecret", literalPassword)),
		"empty clientSecretKey":              with(baseValues(), "airflow.auth.clientSecretKey", ""),
		"inline credentialsFile":             with(baseValues(), "airflow.auth", auth("type", "google", "credentialsFile", "/k.json")),
		"scopes a string":                    with(baseValues(), "airflow.auth", auth("type", "google", "scopes", "https://www.googleapis.com/auth/cloud-platform")),
		"insecureSkipVerify \"true\"":        with(baseValues(), "airflow.tls.insecureSkipVerify", "true"),
		"insecureSkipVerify 1":               with(baseValues(), "airflow.tls.insecureSkipVerify", 1),
		"tls.caFile (a path, not a source)":  with(baseValues(), "airflow.tls.caFile", "/etc/ca.crt"),
		"pageSize -1":                        with(baseValues(), "airflow.pageSize", -1),
		"pageSize 5000":                      with(baseValues(), "airflow.pageSize", 5000),
		"pageSize \"50\"":                    with(baseValues(), "airflow.pageSize", "50"),
		"pageSize 2.5":                       with(baseValues(), "airflow.pageSize", 2.5),
	}
	expectSchemaErrors(t, cases)
}

func TestPlatformChecksFailWithClearMessage(t *testing.T) {
	cases := []checkCase{
		{"mwaa with existingSecret", with(mwaaValues(), "airflow.auth.existingSecret", "aws-keys"), []string{"mwaa", "IRSA"}},
		{"mwaa with a CA", with(mwaaValues(), "airflow.tls.caSecret", "ca"), []string{"airflow.tls does not apply", "mwaa"}},
		{"mwaa with insecureSkipVerify", with(mwaaValues(), "airflow.tls.insecureSkipVerify", true), []string{"airflow.tls does not apply"}},
		{"client credentials and username", with(baseValues(), "airflow.auth", auth("type", "airflow-jwt", "clientID", "c", "username", "u", "existingSecret", "s")), []string{"not both"}},
		{"clientID with basic", with(baseValues(), "airflow.auth.clientID", "c"), []string{"clientID", "airflow-jwt"}},
		{"scopes with basic", with(baseValues(), "airflow.auth.scopes", []any{"s"}), []string{"scopes", "google"}},
		{"google with createSecret", with(baseValues(), "airflow.auth", auth("type", "google", "createSecret", true, "token", "x")), []string{"google", "createSecret"}},
		{"google with username", with(baseValues(), "airflow.auth", auth("type", "google", "username", "u")), []string{"google", "username"}},
		{"CA from a ConfigMap and a Secret", withAll(baseValues(), "airflow.tls.caConfigMap", "a", "airflow.tls.caSecret", "b"), []string{"caConfigMap", "caSecret", "not both"}},
		{"CA and insecureSkipVerify", withAll(baseValues(), "airflow.tls.caSecret", "b", "airflow.tls.insecureSkipVerify", true), []string{"insecureSkipVerify", "not both"}},
		{"no url without mwaa", with(baseValues(), "airflow.url", ""), []string{"airflow.url is required", "mwaa"}},
	}
	expectCheckErrors(t, cases)
}

// TestPlatformWorkaroundsStillRender: the values the platform pages gave
// before the chart modelled MWAA, client credentials and TLS (auth.type none
// plus extraConfig / extraEnv / extraVolumes) still install unchanged.
func TestPlatformWorkaroundsStillRender(t *testing.T) {
	for name, v := range map[string]map[string]any{
		"mwaa via extraConfig": withAll(baseValues(), "airflow.url", "https://mwaa.invalid", "airflow.auth", auth("type", "none"),
			"extraConfig", map[string]any{"airflow": map[string]any{"auth": map[string]any{"type": "mwaa"}, "mwaa": map[string]any{"environment": "e", "region": "eu-west-1"}}},
			"extraEnv", []any{map[string]any{"name": "KPO_REAPER_AIRFLOW_URL", "value": ""}}),
		"client credentials via extraConfig": withAll(baseValues(), "airflow.auth", auth("type", "none"),
			"extraConfig", map[string]any{"airflow": map[string]any{"auth": map[string]any{"type": "airflow-jwt", "clientID": "kpo-reaper"}}},
			"extraEnv", []any{map[string]any{"name": "KPO_REAPER_AIRFLOW_AUTH_CLIENTSECRET", "valueFrom": map[string]any{"secretKeyRef": map[string]any{"name": "s", "key": "clientSecret"}}}}),
		"tls via extraConfig": withAll(baseValues(),
			"extraConfig", map[string]any{"airflow": map[string]any{"tls": map[string]any{"caFile": "/etc/kpo-reaper-tls/ca.crt"}}},
			"extraVolumes", []any{map[string]any{"name": "airflow-tls", "secret": map[string]any{"secretName": "airflow-ca"}}},
			"extraVolumeMounts", []any{map[string]any{"name": "airflow-tls", "mountPath": "/etc/kpo-reaper-tls", "readOnly": true}}),
	} {
		t.Run(name, func(t *testing.T) {
			r := renderObjects(t, v)
			checkStrict(t, name, r.objs)
			checkConfigKeys(t, name, r.config(t))
		})
	}
}

// chartcheckMain is a program built inside the main module (through a build
// overlay, so nothing is written to the repository) that loads a
// configuration file with kpo-reaper's own loader, internal/config, and the
// process environment, exactly as `kpo-reaper run --config` does, and
// prints the loaded configuration as dotted keys.
const chartcheckMain = `package main

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"

	"github.com/kpo-reaper/kpo-reaper/internal/config"
)

func flatten(prefix string, v reflect.Value, out map[string]any) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		key := t.Field(i).Tag.Get("mapstructure")
		if prefix != "" {
			key = prefix + "." + key
		}
		// A config.Secret shows no value when printed: the test reads the
		// value to check that each secret variable lands in its key.
		switch f := v.Field(i); {
		case f.Type() == reflect.TypeFor[config.Secret]():
			out[key] = f.Interface().(config.Secret).Reveal()
		case f.Kind() == reflect.Struct:
			flatten(key, f, out)
		default:
			out[key] = fmt.Sprint(f.Interface())
		}
	}
}

func main() {
	c, err := config.Load(os.Args[1], nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	out := map[string]any{}
	flatten("", reflect.ValueOf(*c), out)
	_ = json.NewEncoder(os.Stdout).Encode(out)
}
`

// buildChartcheck builds chartcheckMain into dir and returns its path.
func buildChartcheck(t *testing.T, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go toolchain in PATH to build the configuration loader")
	}
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte(chartcheckMain), 0o644); err != nil {
		t.Fatal(err)
	}
	virtual := filepath.Join(root, "cmd", "kpo-reaper-chartcheck-overlay", "main.go")
	overlay, _ := json.Marshal(map[string]any{"Replace": map[string]string{virtual: src}})
	overlayFile := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(overlayFile, overlay, 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "chartcheck")
	cmd := exec.Command(goBin, "build", "-overlay", overlayFile, "-o", bin, "./cmd/kpo-reaper-chartcheck-overlay")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the configuration loader from internal/config: %v\n%s", err, out)
	}
	return bin
}

// podEnv turns the container's environment into what the process would see:
// literal values as they are, a secretKeyRef as "secret:NAME/KEY", a
// fieldRef as "field:PATH".
func podEnv(t *testing.T, c map[string]any) []string {
	t.Helper()
	var out []string
	env, _ := c["env"].([]any)
	for _, e := range env {
		em := e.(map[string]any)
		name := fmt.Sprint(em["name"])
		switch {
		case em["value"] != nil:
			out = append(out, name+"="+fmt.Sprint(em["value"]))
		case str(em, "valueFrom", "secretKeyRef", "name") != "":
			out = append(out, name+"=secret:"+str(em, "valueFrom", "secretKeyRef", "name")+"/"+str(em, "valueFrom", "secretKeyRef", "key"))
		case str(em, "valueFrom", "fieldRef", "fieldPath") != "":
			out = append(out, name+"=field:"+str(em, "valueFrom", "fieldRef", "fieldPath"))
		default:
			t.Fatalf("env %s has no value this test understands: %v", name, em)
		}
	}
	return out
}

// loadRendered renders values, then loads the rendered kpo-reaper.yaml with
// the container's environment through the loader bin (buildChartcheck). It
// returns the loaded keys and the rendered file; when the loader refuses the
// configuration, its stderr and an error that quotes it.
func loadRendered(t *testing.T, bin string, values map[string]any) (map[string]string, string, error) {
	t.Helper()
	r := renderObjects(t, values)
	data, _, _ := unstructured.NestedString(r.configMap(t).Object, "data", "kpo-reaper.yaml")
	file := filepath.Join(t.TempDir(), "kpo-reaper.yaml")
	if err := os.WriteFile(file, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, file)
	cmd.Env = podEnv(t, r.container(t))
	cmd.Dir = t.TempDir()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, stderr.String(), fmt.Errorf("%w\n%s\nrendered kpo-reaper.yaml:\n%s", err, stderr.String(), data)
	}
	var loaded map[string]string
	if err := json.Unmarshal(out, &loaded); err != nil {
		t.Fatalf("loader output: %v\n%s", err, out)
	}
	return loaded, data, nil
}

// TestPlatformConfigLoads loads each platform's rendered kpo-reaper.yaml,
// with the container's environment, through kpo-reaper's own configuration
// loader and validation (internal/config, built from the main module), so a
// key the chart renders that the reaper refuses, or an environment variable
// that sets no key, is caught here rather than at start-up.
func TestPlatformConfigLoads(t *testing.T) {
	bin := buildChartcheck(t, t.TempDir())
	load := func(t *testing.T, values map[string]any) (map[string]string, string, error) {
		t.Helper()
		return loadRendered(t, bin, values)
	}
	for _, p := range platforms {
		t.Run(p.name, func(t *testing.T) {
			loaded, _, err := load(t, p.values)
			if err != nil {
				t.Fatalf("kpo-reaper refuses the rendered configuration: %v", err)
			}
			for key, want := range p.config {
				if want == absent {
					continue
				}
				if got, ok := loaded[key]; ok && got != want {
					t.Errorf("loaded %s = %q, want %q", key, got, want)
				}
			}
			// Each secret variable lands in its key: the loader saw the Secret's value.
			for name, ref := range p.secretEnv {
				key := map[string]string{
					"KPO_REAPER_AIRFLOW_AUTH_USERNAME":     "airflow.auth.username",
					"KPO_REAPER_AIRFLOW_AUTH_PASSWORD":     "airflow.auth.password",
					"KPO_REAPER_AIRFLOW_AUTH_TOKEN":        "airflow.auth.token",
					"KPO_REAPER_AIRFLOW_AUTH_CLIENTID":     "airflow.auth.clientID",
					"KPO_REAPER_AIRFLOW_AUTH_CLIENTSECRET": "airflow.auth.clientSecret",
				}[name]
				if key == "" {
					t.Errorf("no config key known for %s", name)
					continue
				}
				if got := loaded[key]; got != "secret:"+ref {
					t.Errorf("loaded %s = %q, want the value of Secret %s (env %s)", key, got, ref, name)
				}
			}
			for key := range p.files {
				if loaded[key] == "" {
					t.Errorf("loaded %s is empty", key)
				}
			}
			// The chart leaves the reaper's defaults in place where it renders nothing.
			if p.config["airflow.auth.scopes"] == absent && loaded["airflow.auth.scopes"] != "[https://www.googleapis.com/auth/cloud-platform]" {
				t.Errorf("loaded airflow.auth.scopes = %q, want the default", loaded["airflow.auth.scopes"])
			}
		})
	}
	// The configurations of the other install shapes load too.
	for _, m := range modes {
		t.Run("mode-"+m.name, func(t *testing.T) {
			if _, _, err := load(t, m.values); err != nil {
				t.Fatalf("kpo-reaper refuses the rendered configuration: %v", err)
			}
		})
	}
	// And the loader is no rubber stamp: a rendered configuration it must
	// refuse (a workaround overridden into a contradiction) is refused.
	t.Run("refuses-contradiction", func(t *testing.T) {
		bad := with(baseValues(), "extraConfig", map[string]any{"airflow": map[string]any{"auth": map[string]any{"type": "mwaa"}}})
		if _, stderr, err := load(t, bad); err == nil || !strings.Contains(stderr, "airflow.url") {
			t.Errorf("loaded a config with auth.type mwaa and a url: err=%v stderr=%s", err, stderr)
		}
	})
}

// TestPlatformValuesDocumented: values.yaml explains the cloud identities and
// the proxy rule next to the keys a user edits.
func TestPlatformValuesDocumented(t *testing.T) {
	values := string(repoFile(t, "deploy/helm/kpo-reaper/values.yaml"))
	for _, want := range []string{
		"iam.gke.io/gcp-service-account", "eks.amazonaws.com/role-arn", "KPO_REAPER_AIRFLOW_AUTH_CLIENTSECRET",
		"NO_PROXY MUST include the Kubernetes API service", "TESTING ONLY", "kubernetes.io/tls",
	} {
		if !strings.Contains(values, want) {
			t.Errorf("values.yaml does not mention %q", want)
		}
	}
	// Every airflow.* value is in the schema, and every schema key has a default.
	var v map[string]any
	if err := yaml.Unmarshal([]byte(values), &v); err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(repoFile(t, "deploy/helm/kpo-reaper/values.schema.json"), &schema); err != nil {
		t.Fatal(err)
	}
	var walk func(prefix string, vals, sch map[string]any)
	walk = func(prefix string, vals, sch map[string]any) {
		props, _ := sch["properties"].(map[string]any)
		var keys []string
		for k := range props {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if _, ok := vals[k]; !ok {
				t.Errorf("schema has %s%s, values.yaml gives no default", prefix, k)
			}
		}
		for k, val := range vals {
			ps, ok := props[k].(map[string]any)
			if !ok {
				t.Errorf("values.yaml has %s%s, the schema does not", prefix, k)
				continue
			}
			if sub, ok := val.(map[string]any); ok && ps["properties"] != nil {
				walk(prefix+k+".", sub, ps)
			}
		}
	}
	walk("airflow.", v["airflow"].(map[string]any), schema["properties"].(map[string]any)["airflow"].(map[string]any))
}
