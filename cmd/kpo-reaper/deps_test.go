package main

import (
	"os/exec"
	"strings"
	"testing"
)

// client-go's clientset (and its leader election, which imports it)
// registers every API group of Kubernetes: it made the binary a third
// larger and an idle daemon's resident set as much. The reaper speaks to
// three groups through internal/kube; client-go's event recorder
// (tools/record) is linked, with the reaper's own sink, as it needs no
// clientset.
func TestBinaryLinksOnlyTheAPIGroupsItUses(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	allowed := map[string]bool{"k8s.io/api/core/v1": true, "k8s.io/api/coordination/v1": true, "k8s.io/api/authorization/v1": true}
	for _, pkg := range strings.Fields(string(out)) {
		switch {
		case strings.HasPrefix(pkg, "k8s.io/client-go/kubernetes"),
			strings.HasPrefix(pkg, "k8s.io/client-go/tools/leaderelection"),
			strings.HasPrefix(pkg, "k8s.io/client-go/informers"),
			strings.HasPrefix(pkg, "k8s.io/api/") && !allowed[pkg]:
			t.Errorf("the binary links %s", pkg)
		}
	}
}
