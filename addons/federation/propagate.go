package federation

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/skiffhq/skiff/addons/federation/apis/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"
)

var (
	configMapGVR = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	secretGVR    = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
)

// policies returns every PropagationPolicy and ClusterPropagationPolicy.
func (c *Controller) policies() []*policy {
	var out []*policy
	for _, src := range []struct {
		kind string
		inf  cache.SharedIndexInformer
	}{{v1alpha1.KindPropagation, c.ppInformer}, {v1alpha1.KindClusterPropagat, c.cppInformer}} {
		for _, o := range src.inf.GetStore().List() {
			u, ok := o.(*unstructured.Unstructured)
			if !ok || u.GetDeletionTimestamp() != nil {
				continue
			}
			var pp v1alpha1.PropagationPolicy
			if err := v1alpha1.FromUnstructured(u, &pp); err != nil {
				continue
			}
			out = append(out, &policy{Kind: src.kind, Namespace: u.GetNamespace(), Name: u.GetName(), Spec: pp.Spec})
		}
	}
	slices.SortFunc(out, func(a, b *policy) int {
		return strings.Compare(a.Kind+"/"+a.Namespace+"/"+a.Name, b.Kind+"/"+b.Namespace+"/"+b.Name)
	})
	return out
}

// policiesChanged watches the kinds the policies name and re-places
// everything.
func (c *Controller) policiesChanged() {
	c.refreshKinds()
	c.enqueueAll()
}

// resolve maps a selector's apiVersion and kind to a resource.
func (c *Controller) resolve(apiVersion, kind string) (schema.GroupVersionResource, error) {
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return schema.GroupVersionResource{}, err
	}
	m, err := c.mapper.RESTMapping(gv.WithKind(kind).GroupKind(), gv.Version)
	if err != nil {
		c.mapper.Reset()
		m, err = c.mapper.RESTMapping(gv.WithKind(kind).GroupKind(), gv.Version)
		if err != nil {
			return schema.GroupVersionResource{}, err
		}
	}
	return m.Resource, nil
}

// refreshKinds starts an informer for each kind a policy selects.
func (c *Controller) refreshKinds() {
	started := false
	for _, p := range c.policies() {
		for _, s := range p.Spec.ResourceSelectors {
			gvr, err := c.resolve(s.APIVersion, s.Kind)
			if err != nil {
				continue
			}
			c.mu.Lock()
			_, ok := c.watched[gvr]
			if !ok {
				inf := c.factory.ForResource(gvr).Informer()
				_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
					AddFunc:    func(o any) { c.enqueue(gvr, o) },
					UpdateFunc: func(_, o any) { c.enqueue(gvr, o) },
					DeleteFunc: func(o any) { c.enqueue(gvr, o) },
				})
				c.watched[gvr] = inf
				started = true
			}
			c.mu.Unlock()
		}
	}
	if started && c.runCtx != nil {
		c.factory.Start(c.runCtx.Done())
		c.factory.WaitForCacheSync(c.runCtx.Done())
	}
}

func (c *Controller) enqueue(gvr schema.GroupVersionResource, o any) {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	if u, ok := o.(*unstructured.Unstructured); ok {
		c.queue.Add(objKey{GVR: gvr, Namespace: u.GetNamespace(), Name: u.GetName()})
	}
}

// source names a host object in member annotations.
func source(obj *unstructured.Unstructured) string {
	gvk := obj.GroupVersionKind()
	return gvk.Group + "/" + gvk.Kind + "/" + obj.GetNamespace() + "/" + obj.GetName()
}

func bindingName(obj *unstructured.Unstructured) string {
	return strings.ToLower(obj.GetName() + "-" + obj.GetKind())
}

// bindingAPI is where obj's binding lives: a ResourceBinding in its
// namespace, or a ClusterResourceBinding for a cluster-scoped object.
func (c *Controller) bindingAPI(obj *unstructured.Unstructured) (dynamic.ResourceInterface, string) {
	if obj.GetNamespace() == "" {
		return c.dyn.Resource(v1alpha1.ClusterResourceBindingGVR), v1alpha1.KindClusterBinding
	}
	return c.dyn.Resource(v1alpha1.ResourceBindingGVR).Namespace(obj.GetNamespace()), v1alpha1.KindResourceBinding
}

// reconcile places one host object; requeue asks for a timed resync.
func (c *Controller) reconcile(ctx context.Context, key objKey) (bool, error) {
	c.mu.Lock()
	inf := c.watched[key.GVR]
	c.mu.Unlock()
	if inf == nil {
		return false, nil
	}
	sk := key.Name
	if key.Namespace != "" {
		sk = key.Namespace + "/" + key.Name
	}
	o, exists, err := inf.GetStore().GetByKey(sk)
	if err != nil || !exists {
		return false, err
	}
	obj := o.(*unstructured.Unstructured).DeepCopy()
	ms, infos := c.memberList()
	policies := c.policies()

	if obj.GetDeletionTimestamp() != nil {
		if !slices.Contains(obj.GetFinalizers(), v1alpha1.CleanupFinalizer) {
			return false, nil
		}
		return c.release(ctx, key, obj, ms, infos)
	}
	p := choosePolicy(obj, policies)
	if p == nil {
		if slices.Contains(obj.GetFinalizers(), v1alpha1.CleanupFinalizer) {
			requeue, err := c.release(ctx, key, obj, ms, infos)
			if err == nil && !requeue {
				api, _ := c.bindingAPI(obj)
				err = api.Delete(ctx, bindingName(obj), metav1.DeleteOptions{})
				if apierrors.IsNotFound(err) {
					err = nil
				}
			}
			return requeue, err
		}
		return false, nil
	}
	if !slices.Contains(obj.GetFinalizers(), v1alpha1.CleanupFinalizer) {
		obj.SetFinalizers(append(obj.GetFinalizers(), v1alpha1.CleanupFinalizer))
		u, err := c.dyn.Resource(key.GVR).Namespace(key.Namespace).Update(ctx, obj, metav1.UpdateOptions{})
		if err != nil {
			return false, fmt.Errorf("add finalizer: %w", err)
		}
		obj = u
	}

	wanted, err := placementClusters(p.Spec.Placement, infos)
	if err != nil {
		return false, c.writeBinding(ctx, obj, p, nil, nil, metav1.Condition{Type: v1alpha1.ConditionScheduled, Status: metav1.ConditionFalse, Reason: "InvalidPlacement", Message: err.Error()})
	}
	targets := c.schedule(obj, p, wanted, infos)

	// Each member independently, in parallel, each call bounded.
	outcomes := make([]*v1alpha1.MemberStatus, len(ms))
	var removeErr []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, m := range ms {
		info := infos[i]
		r, inTarget := targets[info.Name]
		switch {
		case inTarget:
			wg.Add(1)
			go func() {
				defer wg.Done()
				st := c.applyTo(ctx, m, info, key.GVR, obj, p, r, policies)
				outcomes[i] = &st
			}()
		case slices.Contains(wanted, info.Name) && !info.Ready:
			outcomes[i] = &v1alpha1.MemberStatus{Cluster: info.Name, Reason: "MemberNotReady",
				Message: "the member is not ready: what it runs is left as is, its share goes to the ready members"}
		case !info.Ready:
			// Not wanted and unreachable: removed once it is back.
		default:
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := c.removeFrom(ctx, m, key.GVR, obj); err != nil {
					mu.Lock()
					removeErr = append(removeErr, info.Name+": "+err.Error())
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	var statuses []v1alpha1.MemberStatus
	for _, st := range outcomes {
		if st != nil {
			statuses = append(statuses, *st)
		}
	}
	c.emitEvents(obj, statuses)
	if err := c.aggregate(ctx, key.GVR, obj, targets, statuses); err != nil {
		return false, err
	}
	sched := metav1.Condition{Type: v1alpha1.ConditionScheduled, Status: metav1.ConditionTrue, Reason: "Scheduled",
		Message: fmt.Sprintf("placed on %d member(s) by %s %s", len(targets), p.Kind, p.Name)}
	if len(targets) == 0 {
		sched.Status, sched.Reason, sched.Message = metav1.ConditionFalse, "NoClusterFit", "no ready member cluster fits the placement"
	}
	if err := c.writeBinding(ctx, obj, p, targets, statuses, sched); err != nil {
		return false, err
	}
	if len(removeErr) > 0 {
		return false, fmt.Errorf("remove from members that left placement: %s", strings.Join(removeErr, "; "))
	}
	return true, nil
}

// schedule decides each ready wanted member's replicas (nil for objects
// without spec.replicas). Members with a zero share of a Divided object
// get no copy.
func (c *Controller) schedule(obj *unstructured.Unstructured, p *policy, wanted []string, infos []memberInfo) map[string]*int32 {
	var active []string
	byName := map[string]memberInfo{}
	for _, in := range infos {
		byName[in.Name] = in
		if in.Ready && slices.Contains(wanted, in.Name) {
			active = append(active, in.Name)
		}
	}
	targets := map[string]*int32{}
	total, hasReplicas, _ := unstructured.NestedInt64(obj.Object, "spec", "replicas")
	rs := p.Spec.ReplicaScheduling
	if !hasReplicas || rs == nil || rs.Type != v1alpha1.ReplicaDivided {
		for _, n := range active {
			if hasReplicas {
				r := int32(total)
				targets[n] = &r
			} else {
				targets[n] = nil
			}
		}
		return targets
	}
	weights := map[string]int64{}
	if wp := rs.WeightPreference; wp != nil {
		switch {
		case wp.Dynamic == v1alpha1.DynamicAvailable:
			var req corev1.ResourceList
			if path := podSpecPath(obj.GetKind()); path != nil {
				spec, _, _ := unstructured.NestedMap(obj.Object, path...)
				req = podRequests(spec)
			}
			for _, n := range active {
				weights[n] = fitReplicas(byName[n].Available, req)
			}
		default:
			for _, w := range wp.StaticWeights {
				weights[w.Cluster] = w.Weight
			}
		}
	}
	shares := divide(int32(total), active, weights)
	for _, n := range active {
		if s := shares[n]; s > 0 || total == 0 {
			targets[n] = &s
		}
	}
	return targets
}

// desiredFor is the copy of obj member m should hold.
func desiredFor(obj *unstructured.Unstructured, m memberInfo, p *policy, replicas *int32) (*unstructured.Unstructured, error) {
	d := &unstructured.Unstructured{Object: map[string]any{}}
	for k, v := range obj.Object {
		if k == "metadata" || k == "status" {
			continue
		}
		d.Object[k] = runtimeDeepCopy(v)
	}
	d.SetName(obj.GetName())
	d.SetNamespace(obj.GetNamespace())
	d.SetLabels(obj.GetLabels())
	ann := maps.Clone(obj.GetAnnotations())
	delete(ann, "kubectl.kubernetes.io/last-applied-configuration")
	d.SetAnnotations(ann)
	if replicas != nil {
		if err := unstructured.SetNestedField(d.Object, int64(*replicas), "spec", "replicas"); err != nil {
			return nil, err
		}
	}
	if obj.GetKind() == "Service" && obj.GroupVersionKind().Group == "" {
		if ip, _, _ := unstructured.NestedString(d.Object, "spec", "clusterIP"); ip != "None" {
			unstructured.RemoveNestedField(d.Object, "spec", "clusterIP")
			unstructured.RemoveNestedField(d.Object, "spec", "clusterIPs")
		}
		unstructured.RemoveNestedField(d.Object, "spec", "healthCheckNodePort")
	}
	if err := applyOverrides(d, m, p.Spec.Overrides); err != nil {
		return nil, err
	}
	setManaged(d, source(obj), "")
	return d, nil
}

func runtimeDeepCopy(v any) any {
	return (&unstructured.Unstructured{Object: map[string]any{"v": v}}).DeepCopy().Object["v"]
}

// setManaged stamps the ownership annotations and the hash of the rest.
func setManaged(d *unstructured.Unstructured, src, requiredBy string) {
	ann := d.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	delete(ann, v1alpha1.AppliedHashAnnotation)
	ann[v1alpha1.ManagedByAnnotation] = v1alpha1.ManagedByValue
	if src != "" {
		ann[v1alpha1.SourceAnnotation] = src
	}
	d.SetAnnotations(ann)
	b, _ := json.Marshal(d.Object)
	sum := sha256.Sum256(b)
	ann[v1alpha1.AppliedHashAnnotation] = hex.EncodeToString(sum[:12])
	if requiredBy != "" {
		ann[v1alpha1.RequiredByAnnotation] = requiredBy
	}
	d.SetAnnotations(ann)
}

func managedByUs(u *unstructured.Unstructured) bool {
	return u.GetAnnotations()[v1alpha1.ManagedByAnnotation] == v1alpha1.ManagedByValue
}

// ensureNamespace creates ns on the member when it is missing. Namespaces
// are never deleted by federation.
func ensureNamespace(ctx context.Context, m *member, ns string) error {
	kc, _ := m.clients()
	if _, err := kc.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err == nil {
		return nil
	} else if !apierrors.IsNotFound(err) {
		return err
	}
	_, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
		Annotations: map[string]string{v1alpha1.ManagedByAnnotation: v1alpha1.ManagedByValue}}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// applyTo makes member m hold obj's desired copy and reports its state.
func (c *Controller) applyTo(ctx context.Context, m *member, info memberInfo, gvr schema.GroupVersionResource, obj *unstructured.Unstructured, p *policy, replicas *int32, policies []*policy) v1alpha1.MemberStatus {
	st := v1alpha1.MemberStatus{Cluster: info.Name}
	fail := func(reason string, err error) v1alpha1.MemberStatus {
		st.Reason, st.Message = reason, err.Error()
		c.metrics.errors.WithLabelValues(info.Name).Inc()
		return st
	}
	_, dc := m.clients()
	if dc == nil {
		return fail("NotConnected", fmt.Errorf("no client for member %s yet", info.Name))
	}
	ctx, cancel := context.WithTimeout(ctx, 2*c.opts.MemberTimeout)
	defer cancel()
	desired, err := desiredFor(obj, info, p, replicas)
	if err != nil {
		return fail("OverrideFailed", err)
	}
	if ns := obj.GetNamespace(); ns != "" {
		if err := ensureNamespace(ctx, m, ns); err != nil {
			return fail("NamespaceFailed", fmt.Errorf("namespace %s: %w", ns, err))
		}
	}
	if err := c.applyDependencies(ctx, m, obj, p, policies); err != nil {
		return fail("DependencyFailed", err)
	}
	ri := dc.Resource(gvr).Namespace(obj.GetNamespace())
	cur, err := ri.Get(ctx, obj.GetName(), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		cur, err = ri.Create(ctx, desired, metav1.CreateOptions{})
		if err != nil {
			return fail("ApplyFailed", fmt.Errorf("create: %w", err))
		}
	case err != nil:
		return fail("ApplyFailed", fmt.Errorf("get: %w", err))
	case !managedByUs(cur) && p.Spec.ConflictResolution != v1alpha1.ConflictOverwrite:
		return fail("Conflict", fmt.Errorf("%s %s/%s exists on the member and was not made by federation; set conflictResolution: Overwrite to take it over", obj.GetKind(), obj.GetNamespace(), obj.GetName()))
	case cur.GetAnnotations()[v1alpha1.AppliedHashAnnotation] == desired.GetAnnotations()[v1alpha1.AppliedHashAnnotation]:
		// Up to date.
	default:
		desired.SetResourceVersion(cur.GetResourceVersion())
		desired.SetFinalizers(cur.GetFinalizers())
		desired.SetOwnerReferences(cur.GetOwnerReferences())
		if desired.GetKind() == "Service" {
			for _, f := range []string{"clusterIP", "clusterIPs"} {
				if v, ok, _ := unstructured.NestedFieldCopy(cur.Object, "spec", f); ok {
					_ = unstructured.SetNestedField(desired.Object, v, "spec", f)
				}
			}
		}
		stale := staleDependencies(cur, obj)
		cur, err = ri.Update(ctx, desired, metav1.UpdateOptions{})
		if err != nil {
			return fail("ApplyFailed", fmt.Errorf("update: %w", err))
		}
		// ConfigMaps and Secrets the copy no longer refers to leave the
		// member once nothing else needs them (after the update, so the
		// running copy never refers to a deleted one).
		if err := c.releaseDeps(ctx, m, obj.GetNamespace(), source(obj), stale); err != nil {
			c.log.Warn("releasing dependencies the copy no longer uses", "member", info.Name, "namespace", obj.GetNamespace(), "name", obj.GetName(), "err", err)
		}
	}
	st.Applied = true
	if s, ok := cur.Object["status"].(map[string]any); ok {
		st.Status = s
	}
	return st
}

// removeFrom deletes obj's copy from m (only a copy federation made for
// this source) and releases its dependencies there.
func (c *Controller) removeFrom(ctx context.Context, m *member, gvr schema.GroupVersionResource, obj *unstructured.Unstructured) error {
	_, dc := m.clients()
	if dc == nil {
		return fmt.Errorf("no client for member %s", m.name)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*c.opts.MemberTimeout)
	defer cancel()
	ri := dc.Resource(gvr).Namespace(obj.GetNamespace())
	cur, err := ri.Get(ctx, obj.GetName(), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return err
	case managedByUs(cur) && cur.GetAnnotations()[v1alpha1.SourceAnnotation] == source(obj):
		uid := cur.GetUID()
		if err := ri.Delete(ctx, obj.GetName(), metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return c.releaseDependencies(ctx, m, obj)
}

// release removes obj from every member; it asks for a requeue while a
// member that may hold a copy (it was ready once) is not ready. Then the
// finalizer goes.
func (c *Controller) release(ctx context.Context, key objKey, obj *unstructured.Unstructured, ms []*member, infos []memberInfo) (bool, error) {
	var errs []string
	pending := false
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, m := range ms {
		if !infos[i].Ready {
			// A member that was ready once may hold a copy: wait for it.
			pending = pending || infos[i].EverReady
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.removeFrom(ctx, m, key.GVR, obj); err != nil {
				mu.Lock()
				errs = append(errs, m.name+": "+err.Error())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return false, fmt.Errorf("remove %s: %s", source(obj), strings.Join(errs, "; "))
	}
	if pending {
		return true, nil
	}
	fins := slices.DeleteFunc(obj.GetFinalizers(), func(f string) bool { return f == v1alpha1.CleanupFinalizer })
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"finalizers": fins, "resourceVersion": obj.GetResourceVersion()}})
	if _, err := c.dyn.Resource(key.GVR).Namespace(key.Namespace).Patch(ctx, key.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return false, fmt.Errorf("remove finalizer: %w", err)
	}
	c.mu.Lock()
	for k := range c.lastEvent {
		if strings.HasPrefix(k, source(obj)+"|") {
			delete(c.lastEvent, k)
		}
	}
	c.mu.Unlock()
	return false, nil
}

// emitEvents records a Warning on the host object when a member's outcome
// turns into a failure (once per change, not per resync).
func (c *Controller) emitEvents(obj *unstructured.Unstructured, statuses []v1alpha1.MemberStatus) {
	for _, st := range statuses {
		k := source(obj) + "|" + st.Cluster
		cur := st.Reason
		c.mu.Lock()
		prev, seen := c.lastEvent[k]
		c.lastEvent[k] = cur
		c.mu.Unlock()
		if cur == "" || (seen && prev == cur) {
			continue
		}
		reason := cur
		if !strings.HasPrefix(reason, "Member") {
			reason = "Member" + reason
		}
		c.recorder.Eventf(obj, corev1.EventTypeWarning, reason, "member cluster %s: %s", st.Cluster, st.Message)
	}
}

// replicaKinds are the kinds whose host status is the sum over members.
var replicaKinds = map[schema.GroupResource][]string{
	{Group: "apps", Resource: "deployments"}:  {"replicas", "readyReplicas", "availableReplicas", "updatedReplicas", "unavailableReplicas"},
	{Group: "apps", Resource: "statefulsets"}: {"replicas", "readyReplicas", "availableReplicas", "updatedReplicas", "currentReplicas"},
	{Group: "apps", Resource: "replicasets"}:  {"replicas", "readyReplicas", "availableReplicas", "fullyLabeledReplicas"},
}

// aggregate writes the sum of the members' replica counts to the host
// object's status (the host runs no workload controller for these kinds).
func (c *Controller) aggregate(ctx context.Context, gvr schema.GroupVersionResource, obj *unstructured.Unstructured, targets map[string]*int32, statuses []v1alpha1.MemberStatus) error {
	fields, ok := replicaKinds[gvr.GroupResource()]
	if !ok {
		return nil
	}
	sums := map[string]int64{}
	all := len(targets) > 0
	for _, st := range statuses {
		if _, in := targets[st.Cluster]; !in {
			continue
		}
		if !st.Applied {
			all = false
			continue
		}
		for _, f := range fields {
			if v, ok, _ := unstructured.NestedInt64(st.Status, f); ok {
				sums[f] += v
			}
		}
	}
	cur, _, _ := unstructured.NestedMap(obj.Object, "status")
	next := map[string]any{}
	for k, v := range cur {
		next[k] = v
	}
	for _, f := range fields {
		if sums[f] != 0 {
			next[f] = sums[f]
		} else {
			delete(next, f)
		}
	}
	if all {
		next["observedGeneration"] = obj.GetGeneration()
	}
	if equality.Semantic.DeepEqual(normalizeJSON(cur), normalizeJSON(next)) {
		return nil
	}
	u := obj.DeepCopy()
	u.Object["status"] = next
	if _, err := c.dyn.Resource(gvr).Namespace(obj.GetNamespace()).UpdateStatus(ctx, u, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update host status: %w", err)
	}
	return nil
}

func normalizeJSON(v any) any {
	b, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

// writeBinding creates or updates the object's ResourceBinding (a
// ClusterResourceBinding for a cluster-scoped object).
func (c *Controller) writeBinding(ctx context.Context, obj *unstructured.Unstructured, p *policy, targets map[string]*int32, statuses []v1alpha1.MemberStatus, sched metav1.Condition) error {
	api, kind := c.bindingAPI(obj)
	name := bindingName(obj)
	var rb v1alpha1.ResourceBinding
	cur, err := api.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		cur = nil
	case err != nil:
		return fmt.Errorf("get binding: %w", err)
	default:
		if err := v1alpha1.FromUnstructured(cur, &rb); err != nil {
			return err
		}
	}
	spec := v1alpha1.ResourceBindingSpec{
		Resource: v1alpha1.ObjectReference{APIVersion: obj.GetAPIVersion(), Kind: obj.GetKind(), Namespace: obj.GetNamespace(), Name: obj.GetName(), UID: string(obj.GetUID())},
		Policy:   p.ref(),
	}
	for _, n := range slices.Sorted(maps.Keys(targets)) {
		spec.Clusters = append(spec.Clusters, v1alpha1.TargetCluster{Name: n, Replicas: targets[n]})
	}
	status := v1alpha1.ResourceBindingStatus{Conditions: slices.Clone(rb.Status.Conditions), Members: statuses}
	meta.SetStatusCondition(&status.Conditions, sched)
	applied := metav1.Condition{Type: v1alpha1.ConditionApplied, Status: metav1.ConditionTrue, Reason: "Applied", Message: "every placed member holds the desired state"}
	conflict := metav1.Condition{Type: v1alpha1.ConditionConflict, Status: metav1.ConditionFalse, Reason: "NoConflict", Message: "no member holds an object federation did not make"}
	var failed, conflicts []string
	for _, st := range statuses {
		if _, in := targets[st.Cluster]; in && !st.Applied {
			failed = append(failed, st.Cluster+" ("+st.Reason+")")
		}
		if st.Reason == "Conflict" {
			conflicts = append(conflicts, st.Cluster)
		}
	}
	if len(failed) > 0 {
		applied.Status, applied.Reason, applied.Message = metav1.ConditionFalse, "ApplyFailed", "not applied on: "+strings.Join(failed, ", ")
	}
	if len(conflicts) > 0 {
		conflict.Status, conflict.Reason, conflict.Message = metav1.ConditionTrue, "Conflict", "objects not made by federation exist on: "+strings.Join(conflicts, ", ")
	}
	meta.SetStatusCondition(&status.Conditions, applied)
	meta.SetStatusCondition(&status.Conditions, conflict)

	if cur == nil {
		nb := v1alpha1.ResourceBinding{
			TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: kind},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: obj.GetNamespace(), OwnerReferences: []metav1.OwnerReference{{
				APIVersion: obj.GetAPIVersion(), Kind: obj.GetKind(), Name: obj.GetName(), UID: obj.GetUID(),
			}}},
			Spec: spec,
		}
		u, err := v1alpha1.ToUnstructured(nb)
		if err != nil {
			return err
		}
		unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
		if cur, err = api.Create(ctx, u, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create binding: %w", err)
		}
		rb = v1alpha1.ResourceBinding{}
	} else if !equality.Semantic.DeepEqual(normalizeJSON(rb.Spec), normalizeJSON(spec)) {
		su, err := v1alpha1.ToUnstructured(spec)
		if err != nil {
			return err
		}
		cur.Object["spec"] = su.Object
		if cur, err = api.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("update binding: %w", err)
		}
	}
	if equality.Semantic.DeepEqual(normalizeJSON(rb.Status), normalizeJSON(status)) {
		return nil
	}
	su, err := v1alpha1.ToUnstructured(status)
	if err != nil {
		return err
	}
	cur.Object["status"] = su.Object
	if _, err := api.UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update binding status: %w", err)
	}
	return nil
}

// policyStatusLoop writes each policy's Matched condition and count, and
// picks up kinds that did not resolve before (a CRD created later).
func (c *Controller) policyStatusLoop(ctx context.Context) {
	t := time.NewTicker(c.opts.ResyncInterval)
	defer t.Stop()
	for {
		c.refreshKinds()
		c.writePolicyStatuses(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *Controller) writePolicyStatuses(ctx context.Context) {
	policies := c.policies()
	var objs []*unstructured.Unstructured
	c.mu.Lock()
	for _, inf := range c.watched {
		for _, o := range inf.GetStore().List() {
			if u, ok := o.(*unstructured.Unstructured); ok {
				objs = append(objs, u)
			}
		}
	}
	c.mu.Unlock()
	placed := map[*policy]int32{}
	matched := map[*policy]int32{}
	for _, o := range objs {
		if w := choosePolicy(o, policies); w != nil {
			placed[w]++
		}
		for _, p := range policies {
			if p.matchStrength(o) != matchNone {
				matched[p]++
			}
		}
	}
	for _, p := range policies {
		cond := metav1.Condition{Type: v1alpha1.ConditionMatched, Status: metav1.ConditionTrue, Reason: "Matched",
			Message: fmt.Sprintf("places %d object(s)", placed[p])}
		switch {
		case matched[p] == 0:
			cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "NoMatch", "no host object matches the resource selectors"
			for _, s := range p.Spec.ResourceSelectors {
				if _, err := c.resolve(s.APIVersion, s.Kind); err != nil {
					cond.Reason, cond.Message = "UnknownKind", fmt.Sprintf("%s %s: %v", s.APIVersion, s.Kind, err)
					break
				}
			}
		case placed[p] == 0:
			cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "Superseded",
				fmt.Sprintf("matches %d object(s), each placed by a more specific policy (name > label selector > kind; PropagationPolicy > ClusterPropagationPolicy; then alphabetical)", matched[p])
		case placed[p] < matched[p]:
			cond.Message = fmt.Sprintf("places %d of the %d object(s) it matches; more specific policies place the others", placed[p], matched[p])
		}
		if err := c.writePolicyStatus(ctx, p, cond, placed[p]); err != nil && ctx.Err() == nil {
			c.log.Debug("write policy status", "policy", p.Name, "err", err)
		}
	}
}

func (c *Controller) writePolicyStatus(ctx context.Context, p *policy, cond metav1.Condition, n int32) error {
	gvr := v1alpha1.PropagationPolicyGVR
	if p.Kind == v1alpha1.KindClusterPropagat {
		gvr = v1alpha1.ClusterPropagationPolicyGVR
	}
	api := c.dyn.Resource(gvr).Namespace(p.Namespace)
	u, err := api.Get(ctx, p.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	var pp v1alpha1.PropagationPolicy
	if err := v1alpha1.FromUnstructured(u, &pp); err != nil {
		return err
	}
	st := pp.Status
	cond.ObservedGeneration = u.GetGeneration()
	meta.SetStatusCondition(&st.Conditions, cond)
	st.MatchedResources = n
	st.ObservedGeneration = u.GetGeneration()
	if equality.Semantic.DeepEqual(normalizeJSON(pp.Status), normalizeJSON(st)) {
		return nil
	}
	su, err := v1alpha1.ToUnstructured(st)
	if err != nil {
		return err
	}
	u.Object["status"] = su.Object
	_, err = api.UpdateStatus(ctx, u, metav1.UpdateOptions{})
	return err
}
