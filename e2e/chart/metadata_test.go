package chart

import (
	"net/url"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const repoURL = "https://github.com/kpo-reaper/kpo-reaper"

// repoFileOfURL maps a link into this repository (blob/main or
// raw.githubusercontent.com/.../main) to the file's path, "" for others.
func repoFileOfURL(u string) string {
	for _, prefix := range []string{repoURL + "/blob/main/", repoURL + "/tree/main/", "https://raw.githubusercontent.com/kpo-reaper/kpo-reaper/main/"} {
		if strings.HasPrefix(u, prefix) {
			p, _, _ := strings.Cut(strings.TrimPrefix(u, prefix), "#")
			return p
		}
	}
	return ""
}

// checkRepoLink: a link into this repository names a file that exists.
func checkRepoLink(t *testing.T, where, link string) {
	t.Helper()
	if p := repoFileOfURL(link); p != "" {
		t.Run(where, func(t *testing.T) { repoFile(t, p) }) // fails the test when missing
	}
}

// TestChartMetadataForArtifactHub: what Artifact Hub and `helm show chart`
// display: an icon, maintainers, the licence, links and the image, each
// pointing at something that exists.
func TestChartMetadataForArtifactHub(t *testing.T) {
	ch, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	md := ch.Metadata
	if !strings.HasPrefix(md.Icon, "https://") || repoFileOfURL(md.Icon) == "" {
		t.Errorf("icon %q, want an https URL of a file in the repository", md.Icon)
	}
	checkRepoLink(t, "icon", md.Icon)
	if len(md.Maintainers) == 0 || md.Maintainers[0].Name == "" || md.Maintainers[0].URL == "" {
		t.Errorf("maintainers = %v", md.Maintainers)
	}
	a := md.Annotations
	if a["artifacthub.io/license"] != "Apache-2.0" {
		t.Errorf("artifacthub.io/license = %q", a["artifacthub.io/license"])
	}
	if lic := string(repoFile(t, "LICENSE")); !strings.Contains(lic, "Apache License") || !strings.Contains(lic, "Version 2.0, January 2004") {
		t.Errorf("LICENSE is not the Apache License 2.0")
	}
	var links []struct{ Name, URL string }
	if err := yaml.UnmarshalStrict([]byte(a["artifacthub.io/links"]), &links); err != nil || len(links) == 0 {
		t.Errorf("artifacthub.io/links: %v %v", err, links)
	}
	for _, l := range links {
		if l.Name == "" || repoFileOfURL(l.URL) == "" {
			t.Errorf("artifacthub.io/links entry %v: want a name and a link into the repository", l)
		}
		checkRepoLink(t, "artifacthub.io/links", l.URL)
	}
	var changes []struct{ Kind, Description string }
	if err := yaml.UnmarshalStrict([]byte(a["artifacthub.io/changes"]), &changes); err != nil || len(changes) == 0 {
		t.Errorf("artifacthub.io/changes: %v %v", err, changes)
	}
	for _, c := range changes {
		switch c.Kind {
		case "added", "changed", "deprecated", "removed", "fixed", "security":
		default:
			t.Errorf("artifacthub.io/changes kind %q", c.Kind)
		}
	}
	for _, k := range []string{"artifacthub.io/operator", "artifacthub.io/prerelease", "artifacthub.io/containsSecurityUpdates"} {
		if v := a[k]; v != "true" && v != "false" {
			t.Errorf("%s = %q, want \"true\" or \"false\"", k, v)
		}
	}
}

// TestChartReadmeValuesTableUpToDate: the README's values table is what the
// generator makes of values.yaml now; regenerate it with
// `cd e2e && go run ./chart/cmd/chart-readme`.
func TestChartReadmeValuesTableUpToDate(t *testing.T) {
	table, err := ValuesTable(repoFile(t, "deploy/helm/kpo-reaper/values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(repoFile(t, "deploy/helm/kpo-reaper/README.md"))
	want, err := ReadmeWithValuesTable(readme, table)
	if err != nil {
		t.Fatal(err)
	}
	if want != readme {
		t.Errorf("deploy/helm/kpo-reaper/README.md's values table is stale: run `cd e2e && go run ./chart/cmd/chart-readme`")
	}
	// Every top-level value has a row.
	ch, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	for k := range ch.Values {
		if !regexp.MustCompile(`(?m)^\| ` + regexp.QuoteMeta(k) + `(\.| )`).MatchString(table) {
			t.Errorf("values table has no row for %s", k)
		}
	}
}

// TestValuesTableFollowsHelmDocsComments: "# --" documents the key below it,
// "# -- (type)" overrides the type, section headings and plain comments are
// not documentation, documented maps get a row of their own.
func TestValuesTableFollowsHelmDocsComments(t *testing.T) {
	got, err := ValuesTable([]byte(`# ---- Section ----
# a plain comment
plain: 1
# -- The mode.
# Second line | with a pipe.
mode: deployment
# -- (int) Maybe a number.
maybe: null
# -- A map.
m:
  # -- Inner list:
  # - one
  # - two
  l: [a, b]
  e: {}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := "| Key | Type | Default | Description |\n|-----|------|---------|-------------|\n" +
		"| plain | int | `1` |  |\n" +
		"| mode | string | `\"deployment\"` | The mode. Second line \\| with a pipe. |\n" +
		"| maybe | int | `null` | Maybe a number. |\n" +
		"| m | object |  | A map. |\n" +
		"| m.l | list | `[\"a\",\"b\"]` | Inner list: <br>- one <br>- two |\n" +
		"| m.e | object | `{}` |  |\n"
	if got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}

// Artifact Hub shows the chart's README away from the repository: its links
// must be absolute (or anchors within it).
func TestChartReadmeLinksAreAbsolute(t *testing.T) {
	readme := string(repoFile(t, "deploy/helm/kpo-reaper/README.md"))
	links := regexp.MustCompile(`\]\(([^)\s]+)\)`).FindAllStringSubmatch(readme, -1)
	if len(links) == 0 {
		t.Fatal("no links found")
	}
	for _, m := range links {
		l := m[1]
		if strings.HasPrefix(l, "#") {
			continue
		}
		u, err := url.Parse(l)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			t.Errorf("link %q is not absolute", l)
			continue
		}
		checkRepoLink(t, "README", l)
	}
}
