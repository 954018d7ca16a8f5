// Package leader elects one deleting replica among several with a
// coordination.k8s.io Lease, for reapers that run as a sidecar in every
// scheduler pod.
package leader

import (
	"fmt"
	"os"
	"strings"
	"time"
)

const serviceAccountNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// Identity is the pod name (POD_NAME from the downward API), else the host
// name; a random suffix keeps two processes on one host apart.
func Identity(pod string) string {
	id := pod
	if id == "" {
		id, _ = os.Hostname()
	}
	return fmt.Sprintf("%s_%d", id, time.Now().UnixNano()%1000000)
}

// LeaseNamespace is the configured namespace (leaderElection.leaseNamespace), else the pod's own
// namespace: podNamespace (POD_NAMESPACE from the downward API), else the
// service account's.
func LeaseNamespace(configured, podNamespace string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	if podNamespace != "" {
		return podNamespace, nil
	}
	if b, err := os.ReadFile(serviceAccountNamespaceFile); err == nil && strings.TrimSpace(string(b)) != "" {
		return strings.TrimSpace(string(b)), nil
	}
	return "", fmt.Errorf("leaderElection.leaseNamespace: required when not running in a pod (set it, or POD_NAMESPACE)")
}
