// Package deleter holds the only code that writes to the cluster: force
// deletes and the confirmation marks on suspected zombies. DryRun is a
// separate implementation that sends nothing at all.
package deleter

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kpo-reaper/kpo-reaper/internal/decision"
	"github.com/kpo-reaper/kpo-reaper/internal/kube"
)

// Annotations that carry the confirmation count on the pod itself, so that
// it survives restarts and works for a CronJob running --once.
const (
	AnnotationCount     = "kpo-reaper.io/zombie-count"
	AnnotationFirstSeen = "kpo-reaper.io/zombie-first-seen"
	AnnotationReason    = "kpo-reaper.io/zombie-reason"
	// AnnotationLastSeen is when the last counted sighting was: the next
	// one counts only reaper.confirmationSpacing later.
	AnnotationLastSeen = "kpo-reaper.io/zombie-last-seen"
)

// Sighting is how often, consecutively and spaced in time, evaluations
// found a pod a zombie.
type Sighting struct {
	Count     int
	FirstSeen time.Time
	LastSeen  time.Time // the last counted sighting
	Reason    decision.Reason
}

// ReadSighting reads the marks; a pod without valid marks has none. Marks
// written before last-seen existed count from their first sighting.
func ReadSighting(annotations map[string]string) Sighting {
	n, err := strconv.Atoi(annotations[AnnotationCount])
	if err != nil || n < 0 {
		return Sighting{}
	}
	first, err := time.Parse(time.RFC3339, annotations[AnnotationFirstSeen])
	if err != nil {
		return Sighting{}
	}
	last, err := time.Parse(time.RFC3339, annotations[AnnotationLastSeen])
	if err != nil || last.Before(first) {
		last = first
	}
	return Sighting{Count: n, FirstSeen: first, LastSeen: last, Reason: decision.Reason(annotations[AnnotationReason])}
}

// Result of one delete; the reaper names it for people (reaper.Action).
type Result int

const (
	Failed   Result = iota
	Deleted         // the API server accepted the delete
	Gone            // 404: someone else removed it
	Replaced        // UID precondition failed: a new pod has the name
	DryRun          // nothing was sent
)

// Force deletes with gracePeriodSeconds 0, because the point is to get past
// a sidecar that ignores SIGTERM, and with a UID precondition so that a new
// pod that took the name is never hit.
type Force struct {
	Client kube.Client
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
		AnnotationLastSeen:  s.LastSeen.UTC().Format(time.RFC3339),
		AnnotationReason:    string(s.Reason),
	})
}

func (f Force) Unmark(ctx context.Context, pod decision.Pod) error {
	return f.patch(ctx, pod, map[string]any{AnnotationCount: nil, AnnotationFirstSeen: nil, AnnotationLastSeen: nil, AnnotationReason: nil})
}

func (Force) Sighting(pod decision.Pod) Sighting { return ReadSighting(pod.Annotations) }

// Forget has nothing to drop: the marks live on the pods.
func (Force) Forget(func(uid string) bool) {}

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

// DryRunDeleter sends no request: not a delete, not a patch. It keeps the
// marks a real run would write in memory, so that a dry-run daemon counts
// confirmations across cycles and reports the pods a real run would
// delete. The zero value is ready; use it through a pointer.
type DryRunDeleter struct {
	mu    sync.Mutex
	marks map[string]Sighting // by pod UID
}

func (*DryRunDeleter) Delete(context.Context, decision.Pod) (Result, error) { return DryRun, nil }

func (d *DryRunDeleter) Mark(_ context.Context, pod decision.Pod, s Sighting) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.marks == nil {
		d.marks = map[string]Sighting{}
	}
	d.marks[pod.UID] = s
	return nil
}

func (d *DryRunDeleter) Unmark(_ context.Context, pod decision.Pod) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.marks == nil {
		d.marks = map[string]Sighting{}
	}
	d.marks[pod.UID] = Sighting{} // cleared: the pod's own marks no longer count
	return nil
}

// Forget drops the marks of pods that are no longer there, so that memory
// follows the watched pods.
func (d *DryRunDeleter) Forget(keep func(uid string) bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for uid := range d.marks {
		if !keep(uid) {
			delete(d.marks, uid)
		}
	}
}

// Sighting is what this dry run recorded, else the marks a real run left
// on the pod, so that plan shows a real run's progress.
func (d *DryRunDeleter) Sighting(pod decision.Pod) Sighting {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s, ok := d.marks[pod.UID]; ok {
		return s
	}
	return ReadSighting(pod.Annotations)
}
