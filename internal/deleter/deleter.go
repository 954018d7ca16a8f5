// Package deleter holds the only code that writes to the cluster: force
// deletes and the confirmation marks on suspected zombies. DryRun is a
// separate implementation that sends nothing at all.
package deleter

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/kpo-reaper/kpo-reaper/internal/decision"
)

// Annotations that carry the confirmation count on the pod itself, so that
// it survives restarts and works for a CronJob running --once.
const (
	AnnotationCount     = "kpo-reaper.io/zombie-count"
	AnnotationFirstSeen = "kpo-reaper.io/zombie-first-seen"
	AnnotationReason    = "kpo-reaper.io/zombie-reason"
)

// Sighting is how often, consecutively, evaluations found a pod a zombie.
type Sighting struct {
	Count     int
	FirstSeen time.Time
	Reason    string
}

// ReadSighting reads the marks; a pod without valid marks has none.
func ReadSighting(annotations map[string]string) Sighting {
	n, err := strconv.Atoi(annotations[AnnotationCount])
	if err != nil || n < 0 {
		return Sighting{}
	}
	first, err := time.Parse(time.RFC3339, annotations[AnnotationFirstSeen])
	if err != nil {
		return Sighting{}
	}
	return Sighting{Count: n, FirstSeen: first, Reason: annotations[AnnotationReason]}
}

// Result of one delete.
type Result string

const (
	Deleted  Result = "deleted"
	Gone     Result = "gone"     // 404: someone else removed it
	Replaced Result = "replaced" // UID precondition failed: a new pod has the name
	DryRun   Result = "dry-run"
	Failed   Result = "failed"
)

// Deleter acts on the verdicts.
type Deleter interface {
	Delete(ctx context.Context, pod decision.Pod) (Result, error)
	Mark(ctx context.Context, pod decision.Pod, s Sighting) error
	Unmark(ctx context.Context, pod decision.Pod) error
}

// Force deletes with gracePeriodSeconds 0, because the point is to get past
// a sidecar that ignores SIGTERM, and with a UID precondition so that a new
// pod that took the name is never hit.
type Force struct {
	Client kubernetes.Interface
}

func (f Force) Delete(ctx context.Context, pod decision.Pod) (Result, error) {
	zero := int64(0)
	uid := types.UID(pod.UID)
	err := f.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero,
		Preconditions:      &metav1.Preconditions{UID: &uid},
	})
	switch {
	case err == nil:
		return Deleted, nil
	case apierrors.IsNotFound(err):
		return Gone, nil
	case apierrors.IsConflict(err):
		return Replaced, nil
	default:
		return Failed, fmt.Errorf("deleting pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
}

func (f Force) Mark(ctx context.Context, pod decision.Pod, s Sighting) error {
	return f.patch(ctx, pod, map[string]any{
		AnnotationCount:     strconv.Itoa(s.Count),
		AnnotationFirstSeen: s.FirstSeen.UTC().Format(time.RFC3339),
		AnnotationReason:    s.Reason,
	})
}

func (f Force) Unmark(ctx context.Context, pod decision.Pod) error {
	return f.patch(ctx, pod, map[string]any{AnnotationCount: nil, AnnotationFirstSeen: nil, AnnotationReason: nil})
}

func (f Force) patch(ctx context.Context, pod decision.Pod, annotations map[string]any) error {
	// The uid in a merge patch is a precondition: the patch fails rather
	// than marking a different pod that reused the name.
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"uid": pod.UID, "annotations": annotations}})
	if err != nil {
		return err
	}
	_, err = f.Client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, body, metav1.PatchOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("annotating pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

// DryRunDeleter sends no request: not a delete, not a patch.
type DryRunDeleter struct{}

func (DryRunDeleter) Delete(context.Context, decision.Pod) (Result, error) { return DryRun, nil }
func (DryRunDeleter) Mark(context.Context, decision.Pod, Sighting) error   { return nil }
func (DryRunDeleter) Unmark(context.Context, decision.Pod) error           { return nil }
