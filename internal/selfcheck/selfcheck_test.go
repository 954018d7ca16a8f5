package selfcheck

import (
	"context"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kpo-reaper/kpo-reaper/internal/kube/clientset"
)

func TestNeeds(t *testing.T) {
	dry := Needs([]string{"airflow"}, true, false, "", "")
	if len(dry) != 1 || dry[0].Verb != "list" {
		t.Fatalf("a dry --once run needs only list: %v", dry)
	}
	full := Needs([]string{"a", "b"}, false, true, "a", "kpo-reaper")
	var got []string
	for _, n := range full {
		got = append(got, n.String())
	}
	joined := strings.Join(got, "\n")
	for _, want := range []string{"delete pods in namespace b", "patch pods in namespace a", "watch pods in namespace a", "create events in namespace b", "update leases.coordination.k8s.io kpo-reaper in namespace a", "create leases.coordination.k8s.io in namespace a"} {
		if !strings.Contains(joined, want) {
			t.Errorf("missing %q in\n%s", want, joined)
		}
	}
	if all := Needs(nil, false, true, "", ""); !strings.Contains(all[0].String(), "ClusterRole") {
		t.Errorf("all namespaces: %v", all[0])
	}
}

func TestKubernetesNamesEachMissingPermission(t *testing.T) {
	cs := fake.NewClientset()
	cs.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview)
		r.Status.Allowed = r.Spec.ResourceAttributes.Verb != "delete"
		return true, r, nil
	})
	err := Kubernetes(context.Background(), clientset.Of(cs), Needs([]string{"airflow"}, false, true, "", ""))
	if err == nil || !strings.Contains(err.Error(), "not allowed to delete pods in namespace airflow") || strings.Count(err.Error(), "\n") != 0 {
		t.Fatalf("got %v", err)
	}
	if err := Kubernetes(context.Background(), clientset.Of(cs), Needs([]string{"airflow"}, true, true, "", "")); err != nil {
		t.Fatalf("dry run needs no delete: %v", err)
	}
}
