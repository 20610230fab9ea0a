package federation

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/skiffhq/skiff/addons/federation/apis/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// dependencies lists the ConfigMaps and Secrets obj's pod template refers
// to (volumes, projected sources, env, envFrom, imagePullSecrets).
func dependencies(obj *unstructured.Unstructured) (configMaps, secrets []string) {
	path := podSpecPath(obj.GetKind())
	if path == nil {
		return nil, nil
	}
	spec, _, _ := unstructured.NestedMap(obj.Object, path...)
	add := func(list *[]string, name string) {
		if name != "" && !slices.Contains(*list, name) {
			*list = append(*list, name)
		}
	}
	str := func(m any, fields ...string) string {
		mm, ok := m.(map[string]any)
		if !ok {
			return ""
		}
		s, _, _ := unstructured.NestedString(mm, fields...)
		return s
	}
	vols, _, _ := unstructured.NestedSlice(spec, "volumes")
	for _, v := range vols {
		add(&configMaps, str(v, "configMap", "name"))
		add(&secrets, str(v, "secret", "secretName"))
		vm, _ := v.(map[string]any)
		srcs, _, _ := unstructured.NestedSlice(vm, "projected", "sources")
		for _, s := range srcs {
			add(&configMaps, str(s, "configMap", "name"))
			add(&secrets, str(s, "secret", "name"))
		}
	}
	for _, field := range []string{"initContainers", "containers"} {
		cs, _, _ := unstructured.NestedSlice(spec, field)
		for _, ctr := range cs {
			cm, _ := ctr.(map[string]any)
			env, _, _ := unstructured.NestedSlice(cm, "env")
			for _, e := range env {
				add(&configMaps, str(e, "valueFrom", "configMapKeyRef", "name"))
				add(&secrets, str(e, "valueFrom", "secretKeyRef", "name"))
			}
			envFrom, _, _ := unstructured.NestedSlice(cm, "envFrom")
			for _, e := range envFrom {
				add(&configMaps, str(e, "configMapRef", "name"))
				add(&secrets, str(e, "secretRef", "name"))
			}
		}
	}
	ips, _, _ := unstructured.NestedSlice(spec, "imagePullSecrets")
	for _, s := range ips {
		add(&secrets, str(s, "name"))
	}
	return configMaps, secrets
}

type dependency struct {
	gvr  schema.GroupVersionResource
	name string
}

func dependencyList(obj *unstructured.Unstructured) []dependency {
	cms, secs := dependencies(obj)
	var out []dependency
	for _, n := range cms {
		out = append(out, dependency{configMapGVR, n})
	}
	for _, n := range secs {
		out = append(out, dependency{secretGVR, n})
	}
	return out
}

func requiredBy(u *unstructured.Unstructured) []string {
	v := u.GetAnnotations()[v1alpha1.RequiredByAnnotation]
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// applyDependencies copies the ConfigMaps and Secrets obj refers to onto m,
// unless a policy places them itself. A copy lists every source that needs
// it in RequiredByAnnotation.
func (c *Controller) applyDependencies(ctx context.Context, m *member, obj *unstructured.Unstructured, p *policy, policies []*policy) error {
	_, dc := m.clients()
	src := source(obj)
	for _, d := range dependencyList(obj) {
		host, err := c.dyn.Resource(d.gvr).Namespace(obj.GetNamespace()).Get(ctx, d.name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue // an optional reference, or not created yet
		}
		if err != nil {
			return fmt.Errorf("host %s %s: %w", d.gvr.Resource, d.name, err)
		}
		if choosePolicy(host, policies) != nil {
			continue // propagated by its own policy
		}
		want := &unstructured.Unstructured{Object: map[string]any{}}
		for k, v := range host.Object {
			if k != "metadata" && k != "status" {
				want.Object[k] = runtimeDeepCopy(v)
			}
		}
		want.SetName(host.GetName())
		want.SetNamespace(host.GetNamespace())
		want.SetLabels(host.GetLabels())
		want.SetAnnotations(host.GetAnnotations())
		ri := dc.Resource(d.gvr).Namespace(obj.GetNamespace())
		cur, err := ri.Get(ctx, d.name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			setManaged(want, "", src)
			if _, err := ri.Create(ctx, want, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("create %s %s: %w", d.gvr.Resource, d.name, err)
			}
		case err != nil:
			return fmt.Errorf("get %s %s: %w", d.gvr.Resource, d.name, err)
		case !managedByUs(cur) && p.Spec.ConflictResolution != v1alpha1.ConflictOverwrite:
			return fmt.Errorf("%s %s exists on the member and was not made by federation", d.gvr.Resource, d.name)
		default:
			reqs := requiredBy(cur)
			if !managedByUs(cur) {
				reqs = nil
			}
			has := slices.Contains(reqs, src)
			if !has {
				reqs = append(reqs, src)
			}
			slices.Sort(reqs)
			setManaged(want, "", strings.Join(reqs, ","))
			if has && cur.GetAnnotations()[v1alpha1.AppliedHashAnnotation] == want.GetAnnotations()[v1alpha1.AppliedHashAnnotation] {
				continue
			}
			want.SetResourceVersion(cur.GetResourceVersion())
			if _, err := ri.Update(ctx, want, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("update %s %s: %w", d.gvr.Resource, d.name, err)
			}
		}
	}
	return nil
}

// releaseDependencies drops obj from its dependencies' RequiredBy lists on
// m and deletes copies nothing needs any more.
func (c *Controller) releaseDependencies(ctx context.Context, m *member, obj *unstructured.Unstructured) error {
	return c.releaseDeps(ctx, m, obj.GetNamespace(), source(obj), dependencyList(obj))
}

// staleDependencies are the dependencies the member's copy cur refers to
// that the host object obj no longer does.
func staleDependencies(cur, obj *unstructured.Unstructured) []dependency {
	now := dependencyList(obj)
	var out []dependency
	for _, d := range dependencyList(cur) {
		if !slices.Contains(now, d) {
			out = append(out, d)
		}
	}
	return out
}

// releaseDeps drops src from the RequiredBy lists of deps in namespace ns
// on m and deletes the copies federation made that nothing needs any more
// (a copy its own policy places keeps existing).
func (c *Controller) releaseDeps(ctx context.Context, m *member, ns, src string, deps []dependency) error {
	_, dc := m.clients()
	for _, d := range deps {
		ri := dc.Resource(d.gvr).Namespace(ns)
		cur, err := ri.Get(ctx, d.name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return err
		}
		reqs := requiredBy(cur)
		if !managedByUs(cur) || !slices.Contains(reqs, src) {
			continue
		}
		reqs = slices.DeleteFunc(reqs, func(s string) bool { return s == src })
		ann := cur.GetAnnotations()
		if len(reqs) == 0 && ann[v1alpha1.SourceAnnotation] == "" {
			uid := cur.GetUID()
			if err := ri.Delete(ctx, d.name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
			continue
		}
		if len(reqs) == 0 {
			delete(ann, v1alpha1.RequiredByAnnotation)
		} else {
			ann[v1alpha1.RequiredByAnnotation] = strings.Join(reqs, ",")
		}
		cur.SetAnnotations(ann)
		if _, err := ri.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	return nil
}
