package chart

import (
	"strings"
	"testing"
)

// TestOneAirflowPerSelectedPodsDocumented: the values a user edits to select
// pods say that they must be one Airflow's alone, and how.
func TestOneAirflowPerSelectedPodsDocumented(t *testing.T) {
	values := string(repoFile(t, "deploy/helm/kpo-reaper/values.yaml"))
	for _, want := range []string{"ONE AIRFLOW PER SELECTED PODS", "airflow-instance=prod", "docs/operations.md#one-airflow-per-selected-pods", "reapOrphans: false"} {
		if !strings.Contains(values, want) {
			t.Errorf("values.yaml does not say %q", want)
		}
	}
	// values.yaml, NOTES.txt and the manifests link to these sections.
	anchors := markdownAnchors(string(repoFile(t, "docs/operations.md")))
	for _, a := range []string{"one-airflow-per-selected-pods", "confirmations-and-orphans"} {
		if !anchors[a] {
			t.Errorf("docs/operations.md has no #%s", a)
		}
	}
	readme := string(repoFile(t, "README.md"))
	for _, want := range []string{"One Airflow per selected pods", "`reaper.reapOrphans`", "`reaper.confirmationSpacing`",
		"`orphan-not-enabled`", "`dag-unavailable`", "`contradictory`", "`lookup-failed`", "| `3` |"} {
		if !strings.Contains(readme, want) {
			t.Errorf("README.md does not say %s", want)
		}
	}
}
