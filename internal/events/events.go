// Package events reports what the reaper did as Kubernetes Events:
// ZombiePodReaped on each reaped pod, and a Warning on the reaper's own pod
// when a cycle fails closed.
package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

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
	// queueSize bounds the Events waiting to be written; beyond it they are
	// dropped (and logged) rather than slowing a cycle down.
	queueSize = 1000
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

// Kube records to the apiserver, from one goroutine, in the order of
// emission. A Warning that repeats the previous one on the reaper's pod
// raises that Event's count instead of adding an Event per failed cycle.
type Kube struct {
	client kube.CoreV1
	self   *corev1.ObjectReference
	log    *slog.Logger
	host   string

	mu     sync.Mutex
	closed bool
	queue  chan *corev1.Event
	done   chan struct{}
	once   sync.Once

	lastSelf *corev1.Event // only the writer goroutine touches it
}

// NewKube starts the writer. self, when not nil, is the reaper's own pod,
// which carries the Warning of a failed cycle.
func NewKube(c kube.Client, self *corev1.ObjectReference, log *slog.Logger) *Kube {
	host, _ := os.Hostname()
	k := &Kube{client: c.CoreV1(), self: self, log: log, host: host,
		queue: make(chan *corev1.Event, queueSize), done: make(chan struct{})}
	go k.write()
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
	now := metav1.Now()
	ev := &corev1.Event{
		// The name scheme of client-go's recorder: unique per object and time.
		ObjectMeta:     metav1.ObjectMeta{Name: fmt.Sprintf("%v.%x", ref.Name, now.UnixNano()), Namespace: ref.Namespace},
		InvolvedObject: *ref,
		Reason:         reason,
		Message:        msg,
		Type:           typ,
		Source:         corev1.EventSource{Component: component, Host: k.host},
		FirstTimestamp: now,
		LastTimestamp:  now,
		Count:          1,
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		k.log.Warn("event after flush not written", "reason", reason, "object", ref.Namespace+"/"+ref.Name)
		return
	}
	select {
	case k.queue <- ev:
	default:
		k.log.Warn("event queue full, event not written", "reason", reason, "object", ref.Namespace+"/"+ref.Name)
	}
}

func (k *Kube) write() {
	defer close(k.done)
	for ev := range k.queue {
		ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
		if err := k.writeOne(ctx, ev); err != nil {
			k.log.Warn("event not written", "reason", ev.Reason, "object", ev.InvolvedObject.Namespace+"/"+ev.InvolvedObject.Name, "error", err.Error())
		}
		cancel()
	}
}

func (k *Kube) writeOne(ctx context.Context, ev *corev1.Event) error {
	events := k.client.Events(ev.Namespace)
	isSelf := k.self != nil && ev.InvolvedObject == *k.self
	if last := k.lastSelf; isSelf && last != nil && last.Reason == ev.Reason && last.Message == ev.Message {
		// A patch, as client-go's recorder makes: the shipped RBAC grants
		// events create and patch.
		patch, err := json.Marshal(map[string]any{"count": last.Count + 1, "lastTimestamp": ev.LastTimestamp})
		if err != nil {
			return err
		}
		if patched, err := events.Patch(ctx, last.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err == nil {
			k.lastSelf = patched
			return nil
		}
		// Expired or removed: write it anew.
	}
	created, err := events.Create(ctx, ev, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	if isSelf {
		k.lastSelf = created
	}
	return nil
}

// Flush writes what is queued, for at most flushTimeout, and stops the
// writer: a --once run must not exit with its events still queued.
func (k *Kube) Flush() {
	k.once.Do(func() {
		k.mu.Lock()
		k.closed = true
		close(k.queue)
		left := len(k.queue)
		k.mu.Unlock()
		t := time.NewTimer(flushTimeout)
		defer t.Stop()
		select {
		case <-k.done:
		case <-t.C:
			k.log.Warn("events not confirmed written before exit", "count", left)
		}
	})
}
