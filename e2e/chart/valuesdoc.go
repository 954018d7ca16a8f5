package chart

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	yaml3 "go.yaml.in/yaml/v3"
)

// The chart README's values table sits between these markers; everything
// else in the README is written by hand.
const (
	ValuesTableStart = "<!-- values-table:start (generated from values.yaml: cd e2e && go run ./chart/cmd/chart-readme) -->"
	ValuesTableEnd   = "<!-- values-table:end -->"
)

// ValuesTable renders the Markdown table of the chart's values from
// values.yaml's comments, in helm-docs' format: a comment block starting
// with "# --" just above a key documents it ("# -- (type) text" overrides
// the type); other comments are not part of the table. Each leaf (a scalar,
// a list, an empty map) and each documented map gets a row, in file order.
func ValuesTable(valuesYAML []byte) (string, error) {
	var doc yaml3.Node
	if err := yaml3.Unmarshal(valuesYAML, &doc); err != nil {
		return "", fmt.Errorf("values.yaml: %w", err)
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml3.MappingNode {
		return "", fmt.Errorf("values.yaml: not a mapping")
	}
	var b strings.Builder
	b.WriteString("| Key | Type | Default | Description |\n|-----|------|---------|-------------|\n")
	if err := valuesRows(&b, "", doc.Content[0]); err != nil {
		return "", err
	}
	return b.String(), nil
}

var typeOverride = regexp.MustCompile(`^\(([a-z/]+)\)\s*`)

func valuesRows(b *strings.Builder, prefix string, m *yaml3.Node) error {
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		key := k.Value
		if prefix != "" {
			key = prefix + "." + key
		}
		desc, documented := helmDocsComment(k.HeadComment)
		typ := nodeType(v)
		if t := typeOverride.FindStringSubmatch(desc); t != nil {
			typ, desc = t[1], strings.TrimSpace(desc[len(t[0]):])
		}
		if v.Kind == yaml3.MappingNode && len(v.Content) > 0 {
			if documented {
				fmt.Fprintf(b, "| %s | %s | %s | %s |\n", key, typ, "", cell(desc))
			}
			if err := valuesRows(b, key, v); err != nil {
				return err
			}
			continue
		}
		def, err := defaultOf(v)
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		fmt.Fprintf(b, "| %s | %s | `%s` | %s |\n", key, typ, def, cell(desc))
	}
	return nil
}

// helmDocsComment returns the text of the "# --" block at the end of a
// head comment, its lines joined.
func helmDocsComment(head string) (string, bool) {
	lines := strings.Split(head, "\n")
	start := -1
	for i, l := range lines {
		// "# ---- CronJob mode ----" is a section heading, not a key's text.
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "# --") && !strings.HasPrefix(l, "# ---") {
			start = i
		}
	}
	if start < 0 {
		return "", false
	}
	var parts []string
	for i, l := range lines[start:] {
		l = strings.TrimSpace(l)
		if l == "" {
			break // a blank line ends the block
		}
		l = strings.TrimPrefix(l, "#")
		if i == 0 {
			l = strings.TrimPrefix(l, " --")
		}
		l = strings.TrimSpace(l)
		switch {
		case l == "":
		case strings.HasPrefix(l, "- ") && len(parts) > 0:
			parts = append(parts, "<br>"+l) // a list item keeps its own line
		default:
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, " "), true
}

func nodeType(v *yaml3.Node) string {
	switch v.Kind {
	case yaml3.MappingNode:
		return "object"
	case yaml3.SequenceNode:
		return "list"
	}
	switch v.Tag {
	case "!!str":
		return "string"
	case "!!int":
		return "int"
	case "!!float":
		return "float"
	case "!!bool":
		return "bool"
	}
	return "string"
}

// defaultOf renders a value as compact JSON, as helm-docs does.
func defaultOf(v *yaml3.Node) (string, error) {
	var x any
	if err := v.Decode(&x); err != nil {
		return "", err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(x); err != nil {
		return "", err
	}
	return strings.ReplaceAll(strings.TrimSpace(buf.String()), "|", `\|`), nil
}

func cell(s string) string {
	return strings.ReplaceAll(s, "|", `\|`)
}

// ReadmeWithValuesTable returns readme with the text between the markers
// replaced by table.
func ReadmeWithValuesTable(readme, table string) (string, error) {
	i := strings.Index(readme, ValuesTableStart)
	j := strings.Index(readme, ValuesTableEnd)
	if i < 0 || j < i {
		return "", fmt.Errorf("chart README: no %q ... %q markers", ValuesTableStart, ValuesTableEnd)
	}
	return readme[:i+len(ValuesTableStart)] + "\n\n" + table + "\n" + readme[j:], nil
}

// WriteReadmeValuesTable regenerates the values table of the chart's README.
func WriteReadmeValuesTable() error {
	d, err := Dir()
	if err != nil {
		return err
	}
	values, err := os.ReadFile(filepath.Join(d, "values.yaml"))
	if err != nil {
		return err
	}
	table, err := ValuesTable(values)
	if err != nil {
		return err
	}
	path := filepath.Join(d, "README.md")
	readme, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := ReadmeWithValuesTable(string(readme), table)
	if err != nil {
		return err
	}
	return os.WriteFile(path, []byte(out), 0o644)
}
