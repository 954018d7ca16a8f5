package harness

import (
	"context"
	"fmt"
	"reflect"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

// DefaultNode is the Node that CreatePod schedules pods onto when the pod
// names none.
const DefaultNode = "kpo-e2e-node"

// EnsureNamespace creates the namespace unless it exists. Nothing creates a
// namespace's "default" ServiceAccount here, and none is needed for pods
// because the ServiceAccount admission plugin is off.
func (c *Cluster) EnsureNamespace(ctx context.Context, name string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	_, err := c.admin.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	return unlessExists(err, "namespace", name)
}

// unlessExists is the error of creating the named object, none when it
// already exists.
func unlessExists(err error, kind, name string) error {
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating %s %s: %w", kind, name, err)
	}
	return nil
}

// EnsureNode creates a Node object unless it exists. No kubelet backs it,
// so it never reports Ready; that is the "lost node" a zombie pod sits on.
func (c *Cluster) EnsureNode(ctx context.Context, name string) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	_, err := c.admin.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	return unlessExists(err, "node", name)
}

// CreatePod creates a pod as admin, filling in what a test rarely cares
// about: the namespace ("default") and its creation, spec.nodeName
// (DefaultNode) and that Node, and one container if there is none. The pod
// must be bound to a node, because the apiserver deletes an unscheduled pod
// at once even when asked for a graceful delete, which would hide exactly
// the Terminating state the reaper exists for.
//
// A create ignores status, so a non-empty pod.Status is written afterwards
// through the status subresource, as a kubelet would.
func (c *Cluster) CreatePod(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error) {
	pod = pod.DeepCopy()
	if pod.Namespace == "" {
		pod.Namespace = "default"
	}
	if pod.Spec.NodeName == "" {
		pod.Spec.NodeName = DefaultNode
	}
	if len(pod.Spec.Containers) == 0 {
		// Never pulled: no kubelet runs. The .invalid TLD makes sure of it
		// should this manifest ever reach a real cluster.
		pod.Spec.Containers = []corev1.Container{{Name: "base", Image: "registry.invalid/kpo-e2e/never-pulled:1"}}
	}
	if err := c.EnsureNamespace(ctx, pod.Namespace); err != nil {
		return nil, err
	}
	if err := c.EnsureNode(ctx, pod.Spec.NodeName); err != nil {
		return nil, err
	}
	status := pod.Status
	pod.Status = corev1.PodStatus{}
	created, err := c.admin.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	if reflect.DeepEqual(status, corev1.PodStatus{}) {
		return created, nil
	}
	created.Status = status
	updated, err := c.admin.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("setting status of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return updated, nil
}

// PodsByName lists the namespace's pods as admin, by name.
func (c *Cluster) PodsByName(ctx context.Context, namespace string) (map[string]corev1.Pod, error) {
	list, err := c.admin.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	m := make(map[string]corev1.Pod, len(list.Items))
	for _, p := range list.Items {
		m[p.Name] = p
	}
	return m, nil
}

// SetPodStatus replaces a pod's status through the status subresource, the
// way a kubelet reports it, since none runs here.
func (c *Cluster) SetPodStatus(ctx context.Context, namespace, name string, status corev1.PodStatus) error {
	pods := c.admin.CoreV1().Pods(namespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pod, err := pods.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		pod.Status = *status.DeepCopy()
		_, err = pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("setting status of pod %s/%s: %w", namespace, name, err)
	}
	return nil
}
