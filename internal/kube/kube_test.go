package kube_test

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kpo-reaper/kpo-reaper/internal/kube"
	"github.com/kpo-reaper/kpo-reaper/internal/kube/clientset"
)

func TestSelector(t *testing.T) {
	if got := kube.Selector(""); got != "kubernetes_pod_operator=True" {
		t.Fatal(got)
	}
	if got := kube.Selector("airflow=prod"); got != "kubernetes_pod_operator=True,airflow=prod" {
		t.Fatal(got)
	}
}

func TestListConvertsWhatDecisionsRead(t *testing.T) {
	now := metav1.Now()
	cs := fake.NewClientset(
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "kpo", UID: "1", Labels: map[string]string{"kubernetes_pod_operator": "True"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "Job", Name: "j"}}, DeletionTimestamp: &now}, Status: corev1.PodStatus{Phase: corev1.PodRunning}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "other", Labels: map[string]string{"app": "x"}}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "kpo-b", Labels: map[string]string{"kubernetes_pod_operator": "True"}}},
	)
	pods, err := (&kube.PodLister{Client: clientset.Of(cs), Namespaces: []string{"a"}, Selector: kube.Selector("")}).List(context.Background())
	if err != nil || len(pods) != 1 {
		t.Fatalf("%v %v", pods, err)
	}
	p := pods[0]
	if p.OwnerKind != "Job" || !p.Terminating || p.Phase != "Running" || p.UID != "1" {
		t.Fatalf("%+v", p)
	}
	all, err := (&kube.PodLister{Client: clientset.Of(cs), Selector: kube.Selector("")}).List(context.Background())
	if err != nil || len(all) != 2 {
		t.Fatalf("all namespaces: %v %v", all, err)
	}
}

func TestSlimDropsWhatDecisionsDoNotRead(t *testing.T) {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u", Labels: map[string]string{"a": "b"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
		Spec:   corev1.PodSpec{NodeName: "n", Containers: []corev1.Container{{Name: "base"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{Name: "base"}}},
	}
	out, err := kube.Slim(p)
	if err != nil {
		t.Fatal(err)
	}
	s := out.(*corev1.Pod)
	if len(s.ManagedFields) != 0 || len(s.Spec.Containers) != 0 || len(s.Status.ContainerStatuses) != 0 {
		t.Fatalf("not slimmed: %+v", s)
	}
	if got := kube.ToPod(s); got.Name != "p" || got.UID != "u" || got.Phase != "Running" || got.Labels["a"] != "b" {
		t.Fatalf("lost what decisions read: %+v", got)
	}
}
