package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// FieldManager is the server-side apply field manager of Apply.
const FieldManager = "kpo-e2e-harness"

// Apply creates or updates every object in a multi-document YAML (or JSON)
// stream, as admin, with server-side apply. Any kind the apiserver serves
// works; the deploy/ RBAC (Namespace, ServiceAccount, Role, RoleBinding,
// ClusterRole, ClusterRoleBinding) is what it is for.
//
// Namespaced objects without a namespace go into namespace ("default" if
// that is empty too), and so do ServiceAccount subjects of (Cluster)Role
// Bindings that name none, the way kustomize's namespace field does, so
// that the shipped manifests can be installed into a test's namespace.
// Namespace objects are applied first so the rest can land in them.
func (c *Cluster) Apply(ctx context.Context, yamlDocs []byte, namespace string) error {
	if namespace == "" {
		namespace = "default"
	}
	objs, err := decodeObjects(yamlDocs)
	if err != nil {
		return err
	}
	var first, rest []*unstructured.Unstructured
	for _, o := range objs {
		if o.GroupVersionKind().GroupKind() == (schema.GroupKind{Kind: "Namespace"}) {
			first = append(first, o)
		} else {
			rest = append(rest, o)
		}
	}
	for _, o := range append(first, rest...) {
		if err := c.applyOne(ctx, o, namespace); err != nil {
			return fmt.Errorf("applying %s %q: %w", o.GetKind(), o.GetName(), err)
		}
	}
	return nil
}

func decodeObjects(docs []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(docs), 4096)
	var objs []*unstructured.Unstructured
	for i := 0; ; i++ {
		var raw runtime.RawExtension
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if b := bytes.TrimSpace(raw.Raw); len(b) == 0 || string(b) == "null" || string(b) == "{}" {
			continue // an empty document, e.g. after a trailing "---"
		}
		// The unstructured scheme, unlike encoding/json into a map, keeps
		// integers as int64 and turns a List into its items.
		obj, _, err := unstructured.UnstructuredJSONScheme.Decode(raw.Raw, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		var items []*unstructured.Unstructured
		switch o := obj.(type) {
		case *unstructured.Unstructured:
			items = append(items, o)
		case *unstructured.UnstructuredList:
			for j := range o.Items {
				items = append(items, &o.Items[j])
			}
		default:
			return nil, fmt.Errorf("document %d: unexpected %T", i, obj)
		}
		for _, u := range items {
			if u.GetAPIVersion() == "" || u.GetKind() == "" || u.GetName() == "" {
				return nil, fmt.Errorf("document %d: apiVersion, kind and metadata.name are required", i)
			}
		}
		objs = append(objs, items...)
	}
}

func (c *Cluster) applyOne(ctx context.Context, u *unstructured.Unstructured, namespace string) error {
	gvk := u.GroupVersionKind()
	mapping, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		// The discovery cache predates a kind that appeared since (a CRD
		// applied earlier); look again once.
		c.mapper.Reset()
		mapping, err = c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return err
	}
	ri := c.dynamic.Resource(mapping.Resource)
	var body []byte
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		if u.GetNamespace() == "" {
			u.SetNamespace(namespace)
		}
		defaultSubjectNamespaces(u, u.GetNamespace())
		if body, err = json.Marshal(u.Object); err != nil {
			return err
		}
		_, err = ri.Namespace(u.GetNamespace()).Patch(ctx, u.GetName(), types.ApplyPatchType, body,
			metav1.PatchOptions{FieldManager: FieldManager, Force: ptrTo(true)})
		return err
	}
	// A stray namespace on a cluster-scoped object would make the server
	// reject the request as not matching its (empty) URL namespace.
	u.SetNamespace("")
	defaultSubjectNamespaces(u, namespace)
	if body, err = json.Marshal(u.Object); err != nil {
		return err
	}
	_, err = ri.Patch(ctx, u.GetName(), types.ApplyPatchType, body,
		metav1.PatchOptions{FieldManager: FieldManager, Force: ptrTo(true)})
	return err
}

func defaultSubjectNamespaces(u *unstructured.Unstructured, namespace string) {
	if u.GroupVersionKind().Group != "rbac.authorization.k8s.io" {
		return
	}
	subjects, found, err := unstructured.NestedSlice(u.Object, "subjects")
	if !found || err != nil {
		return
	}
	for _, s := range subjects {
		if m, ok := s.(map[string]any); ok && m["kind"] == "ServiceAccount" && m["namespace"] == nil {
			m["namespace"] = namespace
		}
	}
	_ = unstructured.SetNestedSlice(u.Object, subjects, "subjects")
}

func ptrTo[T any](v T) *T { return &v }
