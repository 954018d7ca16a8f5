package leader

import (
	"os"
	"strings"
	"testing"
)

func TestIdentity(t *testing.T) {
	if id := Identity("kpo-reaper-0"); !strings.HasPrefix(id, "kpo-reaper-0_") {
		t.Errorf("with a pod name: %q", id)
	}
	host, _ := os.Hostname()
	if id := Identity(""); !strings.HasPrefix(id, host+"_") {
		t.Errorf("outside a pod: %q, want the host name %q first", id, host)
	}
}

func TestLeaseNamespace(t *testing.T) {
	if ns, err := LeaseNamespace("set", "pod"); ns != "set" || err != nil {
		t.Errorf("configured: %q %v", ns, err)
	}
	if ns, err := LeaseNamespace("", "pod"); ns != "pod" || err != nil {
		t.Errorf("the pod's: %q %v", ns, err)
	}
	if _, err := os.Stat(serviceAccountNamespaceFile); err == nil {
		t.Skip("running in a pod")
	}
	if _, err := LeaseNamespace("", ""); err == nil || !strings.Contains(err.Error(), "leaderElection.leaseNamespace") {
		t.Errorf("outside a pod: %v", err)
	}
}
