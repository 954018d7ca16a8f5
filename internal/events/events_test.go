package events

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
	"github.com/kpo-reaper/kpo-reaper/internal/decision"
	"github.com/kpo-reaper/kpo-reaper/internal/kube/clientset"
	"github.com/kpo-reaper/kpo-reaper/internal/reaper"
)

func TestEventsForReapedPodsAndFailedCycles(t *testing.T) {
	cs := fake.NewClientset()
	k := NewKube(clientset.Of(cs), SelfReference("ops", "kpo-reaper-0", "u0"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	ti := &airflow.TaskInstance{TIKey: airflow.TIKey{DagID: "d", RunID: "r", TaskID: "t", MapIndex: -1}, State: "success"}
	rep := &reaper.Report{Pods: []reaper.PodReport{
		{Decision: decision.Decision{Pod: decision.Pod{Namespace: "airflow", Name: "zombie", UID: "u1"}, Verdict: decision.Reap, Reason: "ti-finished", TI: ti}, Action: reaper.ActionDeleted},
		{Decision: decision.Decision{Pod: decision.Pod{Namespace: "airflow", Name: "waiting", UID: "u2"}, Verdict: decision.Reap, Reason: "ti-finished", TI: ti}, Action: reaper.ActionWaiting},
		{Decision: decision.Decision{Pod: decision.Pod{Namespace: "airflow", Name: "live", UID: "u3"}, Verdict: decision.Keep, Reason: "ti-active"}},
	}}
	k.Cycle(rep, nil)
	k.Cycle(&reaper.Report{}, fmt.Errorf("%w: airflow: 500", reaper.ErrCycleFailed))
	k.Flush()

	got := map[string]string{}
	for _, ns := range []string{"airflow", "ops"} {
		list, err := cs.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range list.Items {
			got[e.InvolvedObject.Name] = e.Type + " " + e.Reason + " " + e.Message
		}
	}
	if len(got) != 2 {
		t.Fatalf("want one event on the deleted pod and one on the reaper, got %v", got)
	}
	if m := got["zombie"]; !strings.HasPrefix(m, "Normal ZombiePodReaped") || !strings.Contains(m, "d/r/t (state success)") || !strings.Contains(m, "reason ti-finished") {
		t.Errorf("reaped pod event: %q", m)
	}
	if m := got["kpo-reaper-0"]; !strings.HasPrefix(m, "Warning CycleFailedClosed") || strings.Count(m, "nothing deleted") != 1 {
		t.Errorf("failed cycle event: %q", m)
	}
}

// A cycle that keeps failing the same way raises the count of its Warning
// instead of adding an Event per cycle; a different failure is a new Event.
func TestRepeatedFailureRaisesTheCount(t *testing.T) {
	cs := fake.NewClientset()
	k := NewKube(clientset.Of(cs), SelfReference("ops", "kpo-reaper-0", "u0"), slog.New(slog.DiscardHandler))
	same := fmt.Errorf("%w: airflow: 500", reaper.ErrCycleFailed)
	k.Cycle(nil, same)
	k.Cycle(nil, same)
	k.Cycle(nil, same)
	k.Cycle(nil, fmt.Errorf("%w: airflow: 401", reaper.ErrCycleFailed))
	k.Flush()
	list, err := cs.CoreV1().Events("ops").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int32{}
	for _, e := range list.Items {
		counts[e.Message] += e.Count
	}
	if len(list.Items) != 2 || counts[same.Error()] != 3 {
		t.Fatalf("want 2 events (counts 3 and 1), got %d: %v", len(list.Items), counts)
	}
}
