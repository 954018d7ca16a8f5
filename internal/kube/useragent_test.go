package kube

import (
	"os"
	"path/filepath"
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
		cfg, err := Config(p, pod)
		if err != nil {
			t.Fatal(err)
		}
		if want := UserAgent + "/" + buildinfo.Version + suffix; cfg.UserAgent != want {
			t.Errorf("pod %q: user agent %q, want %q", pod, cfg.UserAgent, want)
		}
	}
}
