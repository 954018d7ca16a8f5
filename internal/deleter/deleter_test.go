package deleter

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kpo-reaper/kpo-reaper/internal/decision"
	"github.com/kpo-reaper/kpo-reaper/internal/kube/clientset"
)

func setup() (*fake.Clientset, decision.Pod) {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "u1"}}
	return fake.NewClientset(p), decision.Pod{Namespace: "ns", Name: "p", UID: "u1"}
}

func TestForceDeleteSendsGraceZeroAndUID(t *testing.T) {
	cs, pod := setup()
	var opts metav1.DeleteOptions
	cs.PrependReactor("delete", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		opts = a.(k8stesting.DeleteActionImpl).DeleteOptions
		return false, nil, nil
	})
	res, err := Force{Client: clientset.Of(cs)}.Delete(context.Background(), pod)
	if err != nil || res != Deleted {
		t.Fatal(res, err)
	}
	if opts.GracePeriodSeconds == nil || *opts.GracePeriodSeconds != 0 || opts.Preconditions == nil || *opts.Preconditions.UID != "u1" {
		t.Fatalf("delete options %+v", opts)
	}
	res, err = Force{Client: clientset.Of(cs)}.Delete(context.Background(), pod)
	if err != nil || res != Gone {
		t.Fatalf("second delete: %v %v", res, err)
	}
}

func TestMarkAndUnmark(t *testing.T) {
	cs, pod := setup()
	first := time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)
	if err := (Force{Client: clientset.Of(cs)}).Mark(context.Background(), pod, Sighting{Count: 1, FirstSeen: first, Reason: "ti-finished"}); err != nil {
		t.Fatal(err)
	}
	got, _ := cs.CoreV1().Pods("ns").Get(context.Background(), "p", metav1.GetOptions{})
	s := ReadSighting(got.Annotations)
	if s.Count != 1 || !s.FirstSeen.Equal(first) || s.Reason != "ti-finished" {
		t.Fatalf("sighting %+v from %v", s, got.Annotations)
	}
	if err := (Force{Client: clientset.Of(cs)}).Unmark(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	got, _ = cs.CoreV1().Pods("ns").Get(context.Background(), "p", metav1.GetOptions{})
	if ReadSighting(got.Annotations).Count != 0 {
		t.Fatalf("annotations left: %v", got.Annotations)
	}
}

func TestReadSightingIgnoresGarbage(t *testing.T) {
	for _, a := range []map[string]string{
		nil,
		{AnnotationCount: "x", AnnotationFirstSeen: "2026-11-27T06:00:00Z"},
		{AnnotationCount: "2", AnnotationFirstSeen: "yesterday"},
		{AnnotationCount: "-1", AnnotationFirstSeen: "2026-11-27T06:00:00Z"},
	} {
		if s := ReadSighting(a); s.Count != 0 {
			t.Errorf("%v read as %+v", a, s)
		}
	}
}

func TestDryRunSendsNothing(t *testing.T) {
	cs, pod := setup()
	d := DryRunDeleter{}
	if res, err := d.Delete(context.Background(), pod); res != DryRun || err != nil {
		t.Fatal(res, err)
	}
	_ = d.Mark(context.Background(), pod, Sighting{Count: 1})
	_ = d.Unmark(context.Background(), pod)
	if n := len(cs.Actions()); n != 0 {
		t.Fatalf("dry run sent %d requests", n)
	}
}
