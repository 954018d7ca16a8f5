// Package clientset serves a client-go clientset as a kube.Client. Tests
// use it with client-go's fake clientset; the binary never imports it, so
// that it links only the API groups kube.New knows.
package clientset

import (
	"k8s.io/client-go/kubernetes"

	"github.com/kpo-reaper/kpo-reaper/internal/kube"
)

// Of adapts cs.
func Of(cs kubernetes.Interface) kube.Client { return adapter{cs} }

type adapter struct{ cs kubernetes.Interface }

func (a adapter) CoreV1() kube.CoreV1                 { return core(a) }
func (a adapter) CoordinationV1() kube.CoordinationV1 { return coordination(a) }
func (a adapter) AuthorizationV1() kube.AuthorizationV1 {
	return authorization(a)
}

type core struct{ cs kubernetes.Interface }

func (c core) Pods(namespace string) kube.PodClient     { return c.cs.CoreV1().Pods(namespace) }
func (c core) Events(namespace string) kube.EventClient { return c.cs.CoreV1().Events(namespace) }

type coordination struct{ cs kubernetes.Interface }

func (c coordination) Leases(namespace string) kube.LeaseClient {
	return c.cs.CoordinationV1().Leases(namespace)
}

type authorization struct{ cs kubernetes.Interface }

func (a authorization) SelfSubjectAccessReviews() kube.AccessReviewClient {
	return a.cs.AuthorizationV1().SelfSubjectAccessReviews()
}
