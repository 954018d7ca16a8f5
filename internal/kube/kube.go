// Package kube connects to the Kubernetes API and lists the pods the reaper
// judges.
package kube

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kpo-reaper/kpo-reaper/internal/buildinfo"
	"github.com/kpo-reaper/kpo-reaper/internal/decision"
	"github.com/kpo-reaper/kpo-reaper/internal/labels"
)

// UserAgent identifies the reaper in apiserver audit logs.
const UserAgent = "kpo-reaper"

// userAgent names the replica too (its pod, POD_NAME from the downward
// API), so audit logs tell two reapers under one ServiceAccount apart.
func userAgent(pod string) string {
	ua := UserAgent + "/" + buildinfo.Version
	if pod != "" {
		ua += " (" + pod + ")"
	}
	return ua
}

// Config builds a client config: the kubeconfig file when given, else the
// in-cluster config, else $KUBECONFIG or ~/.kube/config; kubeContext picks
// a context of the kubeconfig instead of its current one (and so skips the
// in-cluster config, as kubectl --context does). pod is the reaper's own
// pod name for the user agent, "" outside a pod.
func Config(kubeconfig, kubeContext, pod string) (*rest.Config, error) {
	var (
		cfg *rest.Config
		err error
	)
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	fromFile := func() (*rest.Config, error) {
		return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: kubeContext}).ClientConfig()
	}
	if kubeconfig != "" || kubeContext != "" {
		cfg, err = fromFile()
	} else if cfg, err = rest.InClusterConfig(); err != nil {
		cfg, err = fromFile()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes config (kubernetes.kubeconfig, kubernetes.context): %w", err)
	}
	cfg.UserAgent = userAgent(pod)
	// client-go's default of 5 requests/s would stretch a cycle with many
	// zombies (a patch or a delete and an Event each) past the interval.
	cfg.QPS, cfg.Burst = 50, 100
	return cfg, nil
}

// Selector is the list selector: KPO pods, ANDed with the user's selector.
func Selector(userSelector string) string {
	if userSelector == "" {
		return labels.KPOSelector
	}
	return labels.KPOSelector + "," + userSelector
}

// PodLister lists pods page by page, so that a namespace with thousands of
// pods never needs one huge response.
type PodLister struct {
	Client     Client
	Namespaces []string // empty: all namespaces
	Selector   string
	PageSize   int64
}

// List returns every matching pod or an error; never a partial list.
func (l *PodLister) List(ctx context.Context) ([]decision.Pod, error) {
	namespaces := l.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	limit := l.PageSize
	if limit <= 0 {
		limit = 500
	}
	var out []decision.Pod
	for _, ns := range namespaces {
		opts := metav1.ListOptions{LabelSelector: l.Selector, Limit: limit}
		for {
			list, err := l.Client.CoreV1().Pods(ns).List(ctx, opts)
			if err != nil {
				return nil, fmt.Errorf("listing pods in namespace %q: %w", ns, err)
			}
			for i := range list.Items {
				out = append(out, ToPod(&list.Items[i]))
			}
			if list.Continue == "" {
				break
			}
			opts.Continue = list.Continue
		}
	}
	return out, nil
}

// ToPod keeps what the decisions read.
func ToPod(p *corev1.Pod) decision.Pod {
	owner := ""
	if len(p.OwnerReferences) > 0 {
		owner = p.OwnerReferences[0].Kind
	}
	return decision.Pod{
		Namespace:   p.Namespace,
		Name:        p.Name,
		UID:         string(p.UID),
		Labels:      p.Labels,
		Annotations: p.Annotations,
		OwnerKind:   owner,
		Terminating: p.DeletionTimestamp != nil,
		Phase:       string(p.Status.Phase),
		Created:     p.CreationTimestamp.Time,
	}
}
