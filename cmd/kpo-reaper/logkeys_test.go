package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// camelCase is the one casing of log keys, as in the configuration file:
// renewDeadline, apiCalls, retryIn.
var camelCase = regexp.MustCompile(`^[a-z][a-zA-Z0-9]*$`)

// TestLogKeysAreCamelCase reads every log call of the reaper's sources
// (Debug, Info, Warn, Error on a logger, with a constant message) and
// checks that each constant key is camelCase: one casing, so a query over
// the logs needs one spelling per key.
func TestLogKeysAreCamelCase(t *testing.T) {
	calls := 0
	err := filepath.WalkDir("../../internal", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || len(call.Args) < 1 {
				return true
			}
			switch sel.Sel.Name {
			case "Debug", "Info", "Warn", "Error":
			default:
				return true
			}
			if msg, ok := call.Args[0].(*ast.BasicLit); !ok || msg.Kind != token.STRING {
				return true
			}
			calls++
			for i := 1; i < len(call.Args); i += 2 {
				lit, ok := call.Args[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					break // an attribute or a spread: the rest is not key, value
				}
				key, _ := strconv.Unquote(lit.Value)
				if !camelCase.MatchString(key) {
					t.Errorf("%s: log key %q is not camelCase", path, key)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls < 20 {
		t.Fatalf("found %d log calls: the scan reads nothing", calls)
	}
}
