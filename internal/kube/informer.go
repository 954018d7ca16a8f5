package kube

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/kpo-reaper/kpo-reaper/internal/decision"
)

// WatchLister keeps a watch-fed cache of the KPO pods, so the daemon does
// not list every pod each cycle. Pod events only update the cache; cycles
// still run on the interval, so churn never turns into Airflow calls.
type WatchLister struct {
	informers []cache.SharedIndexInformer
}

// NewWatchLister builds one informer per namespace (one for all when
// namespaces is empty), filtered by the selector on the server side.
func NewWatchLister(cs Client, namespaces []string, selector string) *WatchLister {
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	l := &WatchLister{}
	for _, ns := range namespaces {
		lw := &cache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				o.LabelSelector = selector
				return cs.CoreV1().Pods(ns).List(ctx, o)
			},
			WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				o.LabelSelector = selector
				return cs.CoreV1().Pods(ns).Watch(ctx, o)
			},
		}
		inf := cache.NewSharedIndexInformer(lw, &corev1.Pod{}, 10*time.Minute, cache.Indexers{})
		_ = inf.SetTransform(Slim)
		l.informers = append(l.informers, inf)
	}
	return l
}

// Slim keeps only what the decisions read, so a cache of thousands of pods
// stays small: no managedFields, no spec, no container statuses.
func Slim(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion,
			Labels: p.Labels, Annotations: p.Annotations, OwnerReferences: p.OwnerReferences,
			CreationTimestamp: p.CreationTimestamp, DeletionTimestamp: p.DeletionTimestamp,
		},
		Status: corev1.PodStatus{Phase: p.Status.Phase},
	}, nil
}

// Start runs the informers until ctx ends and waits for the first full
// listing.
func (l *WatchLister) Start(ctx context.Context) error {
	synced := make([]cache.InformerSynced, 0, len(l.informers))
	for _, inf := range l.informers {
		go inf.RunWithContext(ctx)
		synced = append(synced, inf.HasSynced)
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return errors.New("kubernetes: the pod cache never synced (check kubernetes.kubeconfig and that the reaper may list and watch pods)")
	}
	return nil
}

// List reads the cache. Before the first sync it is an error, never an
// empty list.
func (l *WatchLister) List(context.Context) ([]decision.Pod, error) {
	var out []decision.Pod
	for _, inf := range l.informers {
		if !inf.HasSynced() {
			return nil, fmt.Errorf("pod cache not synced")
		}
		objs := inf.GetStore().List()
		out = slices.Grow(out, len(objs))
		for _, obj := range objs {
			if p, ok := obj.(*corev1.Pod); ok {
				out = append(out, ToPod(p))
			}
		}
	}
	return out, nil
}
