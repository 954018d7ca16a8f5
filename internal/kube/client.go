package kube

import (
	"context"
	"fmt"

	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/gentype"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
)

// Client is the part of the Kubernetes API the reaper uses: pods, Events,
// Leases and its own access reviews. The methods keep client-go's typed
// signatures, so a client-go clientset (the fake one in tests) serves
// through internal/kube/clientset. The reaper's own implementation (New)
// knows three API groups only: client-go's clientset registers every group
// of Kubernetes at start-up, which was a third of the binary and of the
// resident memory of an idle reaper.
type Client interface {
	CoreV1() CoreV1
	CoordinationV1() CoordinationV1
	AuthorizationV1() AuthorizationV1
}

type CoreV1 interface {
	Pods(namespace string) PodClient
	Events(namespace string) EventClient
}

type CoordinationV1 interface {
	Leases(namespace string) LeaseClient
}

type AuthorizationV1 interface {
	SelfSubjectAccessReviews() AccessReviewClient
}

type PodClient interface {
	List(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.Pod, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (*corev1.Pod, error)
}

type EventClient interface {
	Create(ctx context.Context, event *corev1.Event, opts metav1.CreateOptions) (*corev1.Event, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (*corev1.Event, error)
}

type LeaseClient interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*coordinationv1.Lease, error)
	Create(ctx context.Context, lease *coordinationv1.Lease, opts metav1.CreateOptions) (*coordinationv1.Lease, error)
	Update(ctx context.Context, lease *coordinationv1.Lease, opts metav1.UpdateOptions) (*coordinationv1.Lease, error)
}

type AccessReviewClient interface {
	Create(ctx context.Context, review *authorizationv1.SelfSubjectAccessReview, opts metav1.CreateOptions) (*authorizationv1.SelfSubjectAccessReview, error)
}

// The codecs of a scheme that knows the reaper's three groups and nothing
// else.
var _, clientCodecs, parameterCodec = func() (*runtime.Scheme, serializer.CodecFactory, runtime.ParameterCodec) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, coordinationv1.AddToScheme, authorizationv1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err) // static registrations: a failure is a programming error
		}
	}
	return s, serializer.NewCodecFactory(s), runtime.NewParameterCodec(s)
}()

// New builds the reaper's Client. The groups share one HTTP client (one
// connection pool) and one rate limiter, as client-go's clientset does.
func New(cfg *rest.Config) (Client, error) {
	c := *cfg
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	if c.RateLimiter == nil && c.QPS > 0 {
		if c.Burst <= 0 {
			return nil, fmt.Errorf("kubernetes client: burst must be positive when qps is set")
		}
		c.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(c.QPS, c.Burst)
	}
	hc, err := rest.HTTPClientFor(&c)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	group := func(apiPath string, gv schema.GroupVersion) (rest.Interface, error) {
		gc := c
		gc.GroupVersion = &gv
		gc.APIPath = apiPath
		gc.NegotiatedSerializer = clientCodecs.WithoutConversion()
		rc, err := rest.RESTClientForConfigAndClient(&gc, hc)
		if err != nil {
			return nil, fmt.Errorf("kubernetes client for %s: %w", gv, err)
		}
		return rc, nil
	}
	var rc restClient
	if rc.core, err = group("/api", corev1.SchemeGroupVersion); err != nil {
		return nil, err
	}
	if rc.coordination, err = group("/apis", coordinationv1.SchemeGroupVersion); err != nil {
		return nil, err
	}
	if rc.authorization, err = group("/apis", authorizationv1.SchemeGroupVersion); err != nil {
		return nil, err
	}
	return &rc, nil
}

type restClient struct {
	core, coordination, authorization rest.Interface
}

func (c *restClient) CoreV1() CoreV1                   { return coreGroup{c.core} }
func (c *restClient) CoordinationV1() CoordinationV1   { return coordinationGroup{c.coordination} }
func (c *restClient) AuthorizationV1() AuthorizationV1 { return authorizationGroup{c.authorization} }

type coreGroup struct{ rest rest.Interface }

func (g coreGroup) Pods(namespace string) PodClient {
	return gentype.NewClientWithList("pods", g.rest, parameterCodec, namespace,
		func() *corev1.Pod { return &corev1.Pod{} }, func() *corev1.PodList { return &corev1.PodList{} })
}

func (g coreGroup) Events(namespace string) EventClient {
	return gentype.NewClient("events", g.rest, parameterCodec, namespace, func() *corev1.Event { return &corev1.Event{} })
}

type coordinationGroup struct{ rest rest.Interface }

func (g coordinationGroup) Leases(namespace string) LeaseClient {
	return gentype.NewClient("leases", g.rest, parameterCodec, namespace, func() *coordinationv1.Lease { return &coordinationv1.Lease{} })
}

type authorizationGroup struct{ rest rest.Interface }

func (g authorizationGroup) SelfSubjectAccessReviews() AccessReviewClient {
	return gentype.NewClient("selfsubjectaccessreviews", g.rest, parameterCodec, "",
		func() *authorizationv1.SelfSubjectAccessReview { return &authorizationv1.SelfSubjectAccessReview{} })
}
