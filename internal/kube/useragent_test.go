package kube

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kpo-reaper/kpo-reaper/internal/buildinfo"
)

// TestUserAgentNamesThePod: the pod name passed in ends the user agent, so
// audit logs tell replicas apart; outside a pod nothing is added.
func TestUserAgentNamesThePod(t *testing.T) {
	p := filepath.Join(t.TempDir(), "kubeconfig")
	kc := "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n" +
		"contexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\nusers: [{name: u, user: {}}]\n"
	if err := os.WriteFile(p, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	for pod, suffix := range map[string]string{"kpo-reaper-0": " (kpo-reaper-0)", "": ""} {
		cfg, err := Config(p, "", pod)
		if err != nil {
			t.Fatal(err)
		}
		if want := UserAgent + "/" + buildinfo.Version + suffix; cfg.UserAgent != want {
			t.Errorf("pod %q: user agent %q, want %q", pod, cfg.UserAgent, want)
		}
	}
}

// TestContextPicksTheKubeconfigContext: kubernetes.context (--context)
// chooses a context of the kubeconfig instead of its current one, and an
// unknown context is an error that names the key.
func TestContextPicksTheKubeconfigContext(t *testing.T) {
	p := filepath.Join(t.TempDir(), "kubeconfig")
	kc := "apiVersion: v1\nkind: Config\n" +
		"clusters: [{name: a, cluster: {server: 'https://127.0.0.1:1'}}, {name: b, cluster: {server: 'https://127.0.0.1:2'}}]\n" +
		"contexts: [{name: a, context: {cluster: a, user: u}}, {name: b, context: {cluster: b, user: u}}]\n" +
		"current-context: a\nusers: [{name: u, user: {}}]\n"
	if err := os.WriteFile(p, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	for ctx, host := range map[string]string{"": "https://127.0.0.1:1", "b": "https://127.0.0.1:2"} {
		cfg, err := Config(p, ctx, "")
		if err != nil || cfg.Host != host {
			t.Errorf("context %q: host %v, %v; want %s", ctx, cfg, err, host)
		}
	}
	if _, err := Config(p, "nope", ""); err == nil || !strings.Contains(err.Error(), "kubernetes.context") {
		t.Errorf("unknown context: %v", err)
	}
}
