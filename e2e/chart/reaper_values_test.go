package chart

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestReapOrphansAndConfirmationSpacing: reaper.reapOrphans and
// reaper.confirmationSpacing are rendered into the configuration only when
// set, and what is rendered loads through kpo-reaper's own loader with the
// meaning the values promise (unset spacing: reaper.interval).
func TestReapOrphansAndConfirmationSpacing(t *testing.T) {
	bin := buildChartcheck(t, t.TempDir())
	cases := []struct {
		name   string
		values map[string]any
		// rendered reaper.* keys; "" means not rendered.
		renderedOrphans, renderedSpacing string
		// loaded values (config.Config's fields printed with fmt).
		loadedOrphans, loadedSpacing string
	}{
		{name: "defaults", values: baseValues(), loadedOrphans: "false", loadedSpacing: "1m0s"},
		{name: "spacing follows interval", values: with(baseValues(), "reaper.interval", "3m"), loadedOrphans: "false", loadedSpacing: "3m0s"},
		{name: "reapOrphans true", values: with(baseValues(), "reaper.reapOrphans", true),
			renderedOrphans: "true", loadedOrphans: "true", loadedSpacing: "1m0s"},
		{name: "reapOrphans false", values: with(baseValues(), "reaper.reapOrphans", false), loadedOrphans: "false", loadedSpacing: "1m0s"},
		{name: "confirmationSpacing", values: with(baseValues(), "reaper.confirmationSpacing", "10m"),
			renderedSpacing: "10m", loadedOrphans: "false", loadedSpacing: "10m0s"},
		{name: "both, cronjob", values: withAll(baseValues(), "mode", "cronjob", "reaper.reapOrphans", true, "reaper.confirmationSpacing", "1h30m"),
			renderedOrphans: "true", renderedSpacing: "1h30m", loadedOrphans: "true", loadedSpacing: "1h30m0s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reaper := renderObjects(t, tc.values).config(t)["reaper"].(map[string]any)
			for key, want := range map[string]string{"reapOrphans": tc.renderedOrphans, "confirmationSpacing": tc.renderedSpacing} {
				got, ok := reaper[key]
				switch {
				case want == "" && ok:
					t.Errorf("reaper.%s rendered (%v) though not set", key, got)
				case want != "" && str(reaper, key) != want:
					t.Errorf("rendered reaper.%s = %v, want %s", key, got, want)
				}
			}
			loaded, data, err := loadRendered(t, bin, tc.values)
			if err != nil {
				t.Fatalf("kpo-reaper refuses the rendered configuration: %v", err)
			}
			if got := loaded["reaper.reapOrphans"]; got != tc.loadedOrphans {
				t.Errorf("loaded reaper.reapOrphans = %q, want %q\n%s", got, tc.loadedOrphans, data)
			}
			if got := loaded["reaper.confirmationSpacing"]; got != tc.loadedSpacing {
				t.Errorf("loaded reaper.confirmationSpacing = %q, want %q\n%s", got, tc.loadedSpacing, data)
			}
		})
	}
}

// TestReapOrphansAndSpacingNotes: the install notes warn when reapOrphans is
// on, and in cronjob mode give the spacing the schedule must respect.
func TestReapOrphansAndSpacingNotes(t *testing.T) {
	notes := func(v map[string]any) string {
		t.Helper()
		n, err := Notes(v, testNamespace)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := notes(baseValues()); strings.Contains(n, "reapOrphans") {
		t.Errorf("default NOTES mention reapOrphans:\n%s", n)
	}
	if n := notes(with(baseValues(), "reaper.reapOrphans", true)); !strings.Contains(n, "reaper.reapOrphans is true") || !strings.Contains(n, "one-airflow-per-selected-pods") {
		t.Errorf("NOTES with reapOrphans do not warn:\n%s", n)
	}
	if n := notes(with(baseValues(), "mode", "cronjob")); !strings.Contains(n, "reaper.confirmationSpacing (1m)") {
		t.Errorf("cronjob NOTES do not give the effective spacing (the interval):\n%s", n)
	}
	if n := notes(withAll(baseValues(), "mode", "cronjob", "reaper.confirmationSpacing", "10m")); !strings.Contains(n, "reaper.confirmationSpacing (10m)") {
		t.Errorf("cronjob NOTES do not give the spacing:\n%s", n)
	}
}

// TestManifestConfigsLoad: the plain manifests' and the scheduler sidecar's
// configurations load through kpo-reaper's own loader (the password from
// the environment, as their Secret gives it), keep orphans, and space
// confirmations by the interval.
func TestManifestConfigsLoad(t *testing.T) {
	bin := buildChartcheck(t, t.TempDir())
	for _, f := range []string{"deploy/manifests/configmap.yaml", "deploy/manifests/cronjob/configmap-patch.yaml", "deploy/airflow-chart-sidecar/configmap.yaml"} {
		t.Run(f, func(t *testing.T) {
			objs, err := parseStream(repoFile(t, f))
			if err != nil || len(objs) != 1 {
				t.Fatalf("%v (%d objects)", err, len(objs))
			}
			data, _, _ := unstructured.NestedString(objs[0].Object, "data", "kpo-reaper.yaml")
			file := filepath.Join(t.TempDir(), "kpo-reaper.yaml")
			if err := os.WriteFile(file, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, file)
			cmd.Env = []string{"KPO_REAPER_AIRFLOW_AUTH_PASSWORD=from-the-secret"}
			cmd.Dir = t.TempDir()
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("kpo-reaper refuses %s: %v\n%s", f, err, stderr.String())
			}
			var loaded map[string]string
			if err := json.Unmarshal(out, &loaded); err != nil {
				t.Fatal(err)
			}
			if loaded["reaper.reapOrphans"] != "false" || loaded["reaper.confirmationSpacing"] != loaded["reaper.interval"] {
				t.Errorf("reapOrphans=%s confirmationSpacing=%s interval=%s", loaded["reaper.reapOrphans"], loaded["reaper.confirmationSpacing"], loaded["reaper.interval"])
			}
			if !strings.Contains(data, "confirmationSpacing") || !strings.Contains(data, "one-airflow-per-selected-pods") {
				t.Errorf("%s does not explain confirmationSpacing and the one-Airflow rule", f)
			}
		})
	}
}
