// Package events reports what the reaper did as Kubernetes Events, through
// client-go's event machinery: ZombiePodReaped on each reaped pod, and a
// Warning on the reaper's own pod when a cycle fails closed.
package events

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/kpo-reaper/kpo-reaper/internal/decision"
	"github.com/kpo-reaper/kpo-reaper/internal/reaper"
)

// Event reasons; a contract like the metric names.
const (
	ReasonReaped      = "ZombiePodReaped"
	ReasonCycleFailed = "CycleFailedClosed"
	component         = "kpo-reaper"
	flushTimeout      = 5 * time.Second
)

// Recorder emits the reaper's events.
type Recorder interface {
	Cycle(rep *reaper.Report, err error)
	// Flush waits (bounded) until emitted events reached the apiserver, so a
	// --once run does not exit with its events still queued.
	Flush()
}

// Noop is the dry-run recorder: nothing reaches the apiserver.
type Noop struct{}

func (Noop) Cycle(*reaper.Report, error) {}
func (Noop) Flush()                      {}

// Kube records to the apiserver.
type Kube struct {
	broadcaster record.EventBroadcaster
	recorder    record.EventRecorder
	self        *corev1.ObjectReference
	log         *slog.Logger

	emitted atomic.Int64
	sunk    atomic.Int64
	once    sync.Once
}

// NewKube starts a broadcaster writing to the apiserver. self, when not nil,
// is the reaper's own pod, which carries the Warning of a failed cycle.
func NewKube(cs kubernetes.Interface, self *corev1.ObjectReference, log *slog.Logger) *Kube {
	k := &Kube{self: self, log: log}
	k.broadcaster = record.NewBroadcaster()
	k.broadcaster.StartRecordingToSink(&countingSink{EventSink: &typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")}, done: &k.sunk})
	k.recorder = k.broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: component})
	return k
}

// SelfReference names the reaper's pod from the downward API variables.
func SelfReference(namespace, name string, uid string) *corev1.ObjectReference {
	if namespace == "" || name == "" {
		return nil
	}
	return &corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: namespace, Name: name, UID: types.UID(uid)}
}

func (k *Kube) Cycle(rep *reaper.Report, err error) {
	if rep != nil {
		for _, p := range rep.Pods {
			if p.Action != reaper.ActionDeleted {
				continue
			}
			ref := &corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: p.Pod.Namespace, Name: p.Pod.Name, UID: types.UID(p.Pod.UID)}
			k.emit(ref, corev1.EventTypeNormal, ReasonReaped, message(p))
		}
	}
	if err != nil && k.self != nil {
		msg := err.Error() // ErrCycleFailed already says "nothing deleted"
		if !errors.Is(err, reaper.ErrCycleFailed) {
			msg = "cycle failed: " + msg
		}
		k.emit(k.self, corev1.EventTypeWarning, ReasonCycleFailed, msg)
	}
}

func message(p reaper.PodReport) string {
	state := "-"
	if p.TI != nil {
		state = decision.StateName(p.TI.State)
	}
	task := reaper.TaskOf(p.Decision)
	if p.Verdict == decision.Reap {
		return fmt.Sprintf("force-deleted zombie pod of task instance %s (state %s), reason %s: %s", task, state, p.Reason, p.Detail)
	}
	return fmt.Sprintf("task instance %s (state %s), reason %s", task, state, p.Reason)
}

func (k *Kube) emit(ref *corev1.ObjectReference, typ, reason, msg string) {
	k.emitted.Add(1)
	k.recorder.Event(ref, typ, reason, msg)
}

// Flush shuts the broadcaster down once the sink caught up, or after a
// bounded wait: an event the correlator drops never reaches the sink.
func (k *Kube) Flush() {
	k.once.Do(func() {
		deadline := time.Now().Add(flushTimeout)
		for k.sunk.Load() < k.emitted.Load() && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := k.emitted.Load() - k.sunk.Load(); n > 0 {
			k.log.Warn("events not confirmed written before exit", "count", n)
		}
		k.broadcaster.Shutdown()
	})
}

// countingSink counts every write attempt, successful or not, so Flush
// knows when the queue is empty.
type countingSink struct {
	record.EventSink
	done *atomic.Int64
}

func (s *countingSink) Create(e *corev1.Event) (*corev1.Event, error) {
	defer s.done.Add(1)
	return s.EventSink.Create(e)
}

func (s *countingSink) Update(e *corev1.Event) (*corev1.Event, error) {
	defer s.done.Add(1)
	return s.EventSink.Update(e)
}

func (s *countingSink) Patch(e *corev1.Event, data []byte) (*corev1.Event, error) {
	defer s.done.Add(1)
	return s.EventSink.Patch(e, data)
}
