package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func rawExt(obj any) runtime.RawExtension {
	b, _ := json.Marshal(obj)
	return runtime.RawExtension{Raw: b}
}

func parseFieldSelectorFor(name string) (fields.Selector, error) {
	return fields.OneTermEqualSelector("metadata.name", name), nil
}

// scaleOf builds the autoscaling/v1 Scale view of obj.
func scaleOf(res *registry.Resource, obj runtime.Object) (*autoscalingv1.Scale, error) {
	if res.Hooks.Scale == nil {
		return nil, fmt.Errorf("%s has no scale accessor", res.Kind)
	}
	acc, _ := meta.Accessor(obj)
	spec, status, selector := res.Hooks.Scale.Get(obj)
	return &autoscalingv1.Scale{
		TypeMeta: metav1.TypeMeta{Kind: "Scale", APIVersion: "autoscaling/v1"},
		ObjectMeta: metav1.ObjectMeta{
			Name: acc.GetName(), Namespace: acc.GetNamespace(), UID: acc.GetUID(),
			ResourceVersion: acc.GetResourceVersion(), CreationTimestamp: acc.GetCreationTimestamp(),
		},
		Spec:   autoscalingv1.ScaleSpec{Replicas: spec},
		Status: autoscalingv1.ScaleStatus{Replicas: status, Selector: selector},
	}, nil
}

// handleScale serves GET, PUT and PATCH of the scale subresource.
func (s *Server) handleScale(w http.ResponseWriter, r *http.Request, res *registry.Resource, ns, name string) {
	ctx := r.Context()
	gr := res.GVR().GroupResource()
	get := func() (runtime.Object, error) {
		kv, err := s.store.Get(ctx, objectKey(res, ns, name))
		if err != nil {
			return nil, storageErr(err, gr, name)
		}
		return fromStorage(res, kv.Value, kv.ModRev)
	}
	switch r.Method {
	case http.MethodGet:
		obj, err := get()
		if err != nil {
			writeStatus(w, statusFor(err))
			return
		}
		sc, err := scaleOf(res, obj)
		if err != nil {
			writeStatus(w, statusFor(err))
			return
		}
		writeObj(w, r, http.StatusOK, sc)
		return
	case http.MethodPut, http.MethodPatch:
	default:
		writeStatus(w, statusFor(apierrors.NewMethodNotSupported(gr, r.Method)))
		return
	}
	opts, err := parseWriteOpts(r)
	if err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	body, err := readBody(r)
	if err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	isPatch := r.Method == http.MethodPatch
	pt := mediaType(r)
	if !isPatch {
		if body, err = toJSON(r, body); err != nil {
			writeStatus(w, statusFor(err))
			return
		}
	}
	opts.patch = isPatch
	var result *autoscalingv1.Scale
	_, _, err = s.update(ctx, res, ns, name, "", opts, func(ctx context.Context, cur runtime.Object) (runtime.Object, error) {
		if cur == nil {
			return nil, apierrors.NewNotFound(gr, name)
		}
		sc, err := scaleOf(res, cur)
		if err != nil {
			return nil, err
		}
		var want autoscalingv1.Scale
		if isPatch {
			curJSON, _ := json.Marshal(sc)
			patched, err := applyPatch(pt, curJSON, body, &autoscalingv1.Scale{})
			if err != nil {
				return nil, err
			}
			if err := json.Unmarshal(patched, &want); err != nil {
				return nil, badRequest("invalid scale: %v", err)
			}
		} else if _, err := decodeInto(body, &want, fieldWarn); err != nil {
			return nil, err
		}
		if want.Spec.Replicas < 0 {
			return nil, apierrors.NewInvalid(schemaGK("autoscaling", "Scale"), name, field.ErrorList{
				field.Invalid(field.NewPath("spec", "replicas"), want.Spec.Replicas, "must be greater than or equal to 0")})
		}
		acc, _ := meta.Accessor(cur)
		if want.ResourceVersion != "" && want.ResourceVersion != acc.GetResourceVersion() {
			return nil, apierrors.NewConflict(gr, name, fmt.Errorf(conflictMsg))
		}
		if want.ResourceVersion == "" || isPatch {
			acc.SetResourceVersion("")
		}
		res.Hooks.Scale.Set(cur, want.Spec.Replicas)
		return cur, nil
	})
	if err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	obj, err := get()
	if err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	result, err = scaleOf(res, obj)
	if err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	writeObj(w, r, http.StatusOK, result)
}

// handleBinding serves POST pods/<name>/binding: it assigns the pod to a
// node, failing with 409 when the pod is already bound.
func (s *Server) handleBinding(w http.ResponseWriter, r *http.Request, res *registry.Resource, ns, name string) {
	if r.Method != http.MethodPost {
		writeStatus(w, statusFor(apierrors.NewMethodNotSupported(res.GVR().GroupResource(), r.Method)))
		return
	}
	body, err := readBody(r)
	if err == nil {
		body, err = toJSON(r, body)
	}
	if err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	var b corev1.Binding
	if _, err := decodeInto(body, &b, fieldWarn); err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	if b.Name == "" {
		b.Name = name
	}
	if err := s.bindPod(r.Context(), ns, &b); err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	writeObj(w, r, http.StatusCreated, &metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess, Code: http.StatusCreated})
}

// BindPod assigns a pod to the node named in b.Target.
func (s *Server) bindPod(ctx context.Context, ns string, b *corev1.Binding) error {
	res, ok := s.reg.Get("", "v1", "pods")
	if !ok {
		return fmt.Errorf("pods are not served")
	}
	if b.Target.Kind != "" && b.Target.Kind != "Node" {
		return apierrors.NewInvalid(schemaGK("", "Binding"), b.Name, field.ErrorList{field.NotSupported(field.NewPath("target", "kind"), b.Target.Kind, []string{"Node"})})
	}
	if b.Target.Name == "" {
		return apierrors.NewInvalid(schemaGK("", "Binding"), b.Name, field.ErrorList{field.Required(field.NewPath("target", "name"), "")})
	}
	_, _, err := s.update(ctx, res, ns, b.Name, "binding", writeOpts{patch: true}, func(ctx context.Context, cur runtime.Object) (runtime.Object, error) {
		if cur == nil {
			return nil, apierrors.NewNotFound(res.GVR().GroupResource(), b.Name)
		}
		pod := cur.(*corev1.Pod)
		if pod.DeletionTimestamp != nil {
			return nil, apierrors.NewConflict(res.GVR().GroupResource(), b.Name, fmt.Errorf("pod %s is being deleted, cannot be assigned to a host", b.Name))
		}
		if pod.Spec.NodeName != "" {
			return nil, apierrors.NewConflict(res.GVR().GroupResource(), b.Name, fmt.Errorf("pod %s is already assigned to node %q", b.Name, pod.Spec.NodeName))
		}
		if b.UID != "" && b.UID != pod.UID {
			return nil, apierrors.NewConflict(res.GVR().GroupResource(), b.Name, fmt.Errorf("precondition failed: UID in binding %s does not match pod %s", b.UID, pod.UID))
		}
		pod.Spec.NodeName = b.Target.Name
		for k, v := range b.Annotations {
			if pod.Annotations == nil {
				pod.Annotations = map[string]string{}
			}
			pod.Annotations[k] = v
		}
		setPodCondition(pod, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()})
		pod.ResourceVersion = ""
		return pod, nil
	})
	return err
}

func setPodCondition(pod *corev1.Pod, c corev1.PodCondition) {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == c.Type {
			if pod.Status.Conditions[i].Status == c.Status {
				return
			}
			pod.Status.Conditions[i] = c
			return
		}
	}
	pod.Status.Conditions = append(pod.Status.Conditions, c)
}

// handleEviction serves POST pods/<name>/eviction: the pod is deleted with
// the Eviction's DeleteOptions once its PodDisruptionBudget allows it
// (eviction.go).
func (s *Server) handleEviction(w http.ResponseWriter, r *http.Request, res *registry.Resource, ns, name string) {
	if r.Method != http.MethodPost {
		writeStatus(w, statusFor(apierrors.NewMethodNotSupported(res.GVR().GroupResource(), r.Method)))
		return
	}
	wo, err := parseWriteOpts(r)
	if err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	body, err := readBody(r)
	if err == nil {
		body, err = toJSON(r, body)
	}
	if err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	var ev policyv1.Eviction
	if _, err := decodeInto(body, &ev, fieldWarn); err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	if ev.Name != "" && ev.Name != name {
		writeStatus(w, statusFor(badRequest("name in URL does not match name in Eviction object")))
		return
	}
	opts := ev.DeleteOptions
	if opts == nil {
		opts = &metav1.DeleteOptions{}
	}
	if wo.dryRun && len(opts.DryRun) == 0 {
		// ?dryRun=All on the eviction applies to the deletion (upstream's
		// propagateDryRun).
		opts = opts.DeepCopy()
		opts.DryRun = []string{metav1.DryRunAll}
	}
	st, err := s.evict(r.Context(), res, ns, name, opts)
	if err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	if st != nil {
		writeStatus(w, st)
		return
	}
	writeObj(w, r, http.StatusCreated, &metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess, Code: http.StatusCreated})
}

// handleFinalize serves PUT namespaces/<name>/finalize: only
// spec.finalizers changes, and the namespace goes once nothing is left.
func (s *Server) handleFinalize(w http.ResponseWriter, r *http.Request, res *registry.Resource, name string) {
	body, err := readBody(r)
	if err == nil {
		body, err = toJSON(r, body)
	}
	if err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	var want corev1.Namespace
	if _, err := decodeInto(body, &want, fieldWarn); err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	out, code, err := s.update(r.Context(), res, "", name, "finalize", writeOpts{}, func(ctx context.Context, cur runtime.Object) (runtime.Object, error) {
		if cur == nil {
			return nil, apierrors.NewNotFound(res.GVR().GroupResource(), name)
		}
		ns := cur.(*corev1.Namespace)
		if want.ResourceVersion != "" && want.ResourceVersion != ns.ResourceVersion {
			return nil, apierrors.NewConflict(res.GVR().GroupResource(), name, fmt.Errorf(conflictMsg))
		}
		ns.Spec.Finalizers = want.Spec.Finalizers
		ns.ResourceVersion = want.ResourceVersion
		return ns, nil
	})
	if err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	writeJSONBytes(w, r, code, out)
}
