// Package selfcheck verifies at start-up that the reaper can do its job:
// the Kubernetes permissions its configuration needs and an Airflow API user
// that can list task instances. Each problem is one line naming the fix.
package selfcheck

import (
	"context"
	"errors"
	"fmt"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
	"github.com/kpo-reaper/kpo-reaper/internal/airflow/transport"
	"github.com/kpo-reaper/kpo-reaper/internal/kube"
)

// Need is one permission the configuration needs.
type Need struct {
	Namespace string // "" for cluster-wide
	Group     string
	Resource  string
	Name      string // "" for any object of the resource
	Verb      string
}

func (n Need) String() string {
	scope := "in namespace " + n.Namespace
	if n.Namespace == "" {
		scope = "in all namespaces (ClusterRole)"
	}
	res := n.Resource
	if n.Group != "" {
		res += "." + n.Group
	}
	if n.Name != "" {
		res += " " + n.Name
	}
	return fmt.Sprintf("%s %s %s", n.Verb, res, scope)
}

// Needs lists the permissions for the given setup: reading pods always;
// patching and deleting them and writing events only when not a dry run;
// the lease only with leader election. The lease is asked for by name, as
// least-privilege Roles grant get and update on it (resourceNames).
func Needs(namespaces []string, dryRun, watch bool, leaseNamespace, leaseName string) []Need {
	if len(namespaces) == 0 {
		namespaces = []string{""}
	}
	var out []Need
	for _, ns := range namespaces {
		verbs := []string{"list"}
		if watch {
			verbs = append(verbs, "watch")
		}
		if !dryRun {
			verbs = append(verbs, "patch", "delete")
		}
		for _, v := range verbs {
			out = append(out, Need{Namespace: ns, Resource: "pods", Verb: v})
		}
		if !dryRun {
			out = append(out, Need{Namespace: ns, Resource: "events", Verb: "create"})
		}
	}
	if leaseNamespace != "" {
		out = append(out, Need{Namespace: leaseNamespace, Group: "coordination.k8s.io", Resource: "leases", Verb: "create"})
		for _, v := range []string{"get", "update"} {
			out = append(out, Need{Namespace: leaseNamespace, Group: "coordination.k8s.io", Resource: "leases", Name: leaseName, Verb: v})
		}
	}
	return out
}

// Kubernetes asks the apiserver, with SelfSubjectAccessReviews, whether
// each need is granted.
func Kubernetes(ctx context.Context, cs kube.Client, needs []Need) error {
	var errs []error
	for _, n := range needs {
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: n.Namespace, Group: n.Group, Resource: n.Resource, Name: n.Name, Verb: n.Verb},
		}}
		got, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("kubernetes: cannot check permissions (is the apiserver reachable? kubernetes.kubeconfig): %w", err)
		}
		if !got.Status.Allowed {
			errs = append(errs, fmt.Errorf("kubernetes: not allowed to %s: grant it in the reaper's Role (deploy/manifests/role.yaml)", n))
		}
	}
	return errors.Join(errs...)
}

// Airflow checks that the API user can read task instances, with one row:
// a start-up check must not cost what Airflow's backlog costs.
func Airflow(ctx context.Context, c airflow.Client) error {
	err := c.ProbeTaskInstances(ctx)
	if err == nil {
		return nil
	}
	var hint string
	switch {
	case transport.IsStatus(err, 401):
		hint = "the credentials were refused: check airflow.auth (type, username, password or token)"
	case transport.IsStatus(err, 403):
		hint = "the API user may not read task instances: give it Airflow's Viewer role (read on DAGs, DAG Runs, Task Instances)"
	case strings.Contains(err.Error(), "text/html"):
		hint = "Airflow answered a web page, not JSON: check airflow.url and that the API's auth backend accepts airflow.auth.type"
	default:
		hint = "check airflow.url, airflow.timeout and the API server's health"
	}
	return fmt.Errorf("airflow: cannot list task instances (%s): %w", hint, err)
}
