// Package events reports what the reaper did as Kubernetes Events:
// ZombiePodReaped on each reaped pod, and a Warning on the reaper's own pod
// when a cycle fails closed. client-go's recorder (tools/record) queues,
// aggregates and rate-limits them; this package gives it a sink over
// kube.Client, so no clientset is linked.
package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"

	"github.com/kpo-reaper/kpo-reaper/internal/decision"
	"github.com/kpo-reaper/kpo-reaper/internal/kube"
	"github.com/kpo-reaper/kpo-reaper/internal/reaper"
)

// Event reasons; a contract like the metric names.
const (
	ReasonReaped      = "ZombiePodReaped"
	ReasonCycleFailed = "CycleFailedClosed"
	component         = "kpo-reaper"
	flushTimeout      = 5 * time.Second
	writeTimeout      = 10 * time.Second
	// flushReason marks the event Flush sends through the recorder's queue;
	// the sink recognises it and never writes it.
	flushReason = "KpoReaperFlush"
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

// Kube records to the apiserver through client-go's broadcaster: events in
// the order of emission, a repeated Event raising the count of the first
// (a patch), similar ones combined and a flood about one object dropped.
type Kube struct {
	broadcaster record.EventBroadcaster
	recorder    record.EventRecorder
	self        *corev1.ObjectReference
	log         *slog.Logger

	mu      sync.Mutex
	closed  bool
	once    sync.Once
	flushed chan struct{}
	marker  atomic.Pointer[string]
}

// NewKube starts the recorder. self, when not nil, is the reaper's own pod,
// which carries the Warning of a failed cycle.
func NewKube(c kube.Client, self *corev1.ObjectReference, log *slog.Logger) *Kube {
	host, _ := os.Hostname()
	k := &Kube{self: self, log: log, flushed: make(chan struct{}), broadcaster: record.NewBroadcaster()}
	k.broadcaster.StartRecordingToSink(&sink{events: c.CoreV1(), log: log, k: k})
	// The recorder is only handed ObjectReferences, which need no scheme.
	k.recorder = k.broadcaster.NewRecorder(runtime.NewScheme(), corev1.EventSource{Component: component, Host: host})
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
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		k.log.Warn("event after flush not written", "reason", reason, "object", ref.Namespace+"/"+ref.Name)
		return
	}
	k.recorder.Event(ref, typ, reason, msg)
}

// Flush waits, for at most flushTimeout, until every event emitted so far
// was written (or given up on), then stops the recorder. It sends a marker
// through the recorder's queue: the queue is worked in order, so when the
// sink sees the marker, what came before it is done.
func (k *Kube) Flush() {
	k.once.Do(func() {
		k.mu.Lock()
		k.closed = true
		name := "kpo-reaper-flush-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		k.marker.Store(&name)
		// A fresh object each time: the spam filter never holds it back.
		k.recorder.Event(&corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Name: name}, corev1.EventTypeNormal, flushReason, "flush")
		k.mu.Unlock()
		t := time.NewTimer(flushTimeout)
		defer t.Stop()
		select {
		case <-k.flushed:
		case <-t.C:
			k.log.Warn("events not confirmed written before exit")
		}
		k.broadcaster.Shutdown()
	})
}

// isMarker reports (once) the Flush marker.
func (k *Kube) isMarker(ev *corev1.Event) bool {
	m := k.marker.Load()
	if ev.Reason != flushReason || m == nil || ev.InvolvedObject.Name != *m {
		return false
	}
	close(k.flushed)
	return true
}

// sink writes the recorder's Events through kube.Client. Errors go back
// unwrapped: the recorder tells a rejected Event (*errors.StatusError,
// dropped) from an unreachable apiserver (retried) by their type.
type sink struct {
	events kube.CoreV1
	log    *slog.Logger
	k      *Kube
}

func (s *sink) Create(ev *corev1.Event) (*corev1.Event, error) {
	if s.k.isMarker(ev) {
		return ev, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	created, err := s.events.Events(ev.Namespace).Create(ctx, ev, metav1.CreateOptions{})
	s.logged("create", ev, err)
	return created, err
}

// Update is never called by the recorder, which patches a repeated Event;
// the shipped RBAC grants create and patch only.
func (s *sink) Update(ev *corev1.Event) (*corev1.Event, error) {
	return nil, fmt.Errorf("event %s/%s: events are created or patched, never updated", ev.Namespace, ev.Name)
}

func (s *sink) Patch(old *corev1.Event, data []byte) (*corev1.Event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	patched, err := s.events.Events(old.Namespace).Patch(ctx, old.Name, types.StrategicMergePatchType, data, metav1.PatchOptions{})
	s.logged("patch", old, err)
	return patched, err
}

func (s *sink) logged(verb string, ev *corev1.Event, err error) {
	if err != nil {
		s.log.Warn("event not written", "verb", verb, "reason", ev.Reason, "object", ev.InvolvedObject.Namespace+"/"+ev.InvolvedObject.Name, "error", err.Error())
	}
}
