package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
)

// Eviction of pods guarded by PodDisruptionBudgets, with upstream's
// semantics (pkg/registry/core/pod/storage/eviction.go): the pod's one
// budget must allow a disruption, which the eviction spends by decrementing
// status.disruptionsAllowed and recording the pod in status.disruptedPods
// (a compare-and-swap on the budget's revision, retried on conflict) before
// the pod is deleted. The disruption controller recomputes the budget from
// the pods it sees.

// maxDisruptedPods bounds status.disruptedPods, as upstream.
const maxDisruptedPods = 2000

const evictionRetries = 10

// evictionTooManyRequests is upstream's 429 for a budget that cannot be
// spent now.
func evictionTooManyRequests(cause string) error {
	err := apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 0)
	err.ErrStatus.Details.Causes = append(err.ErrStatus.Details.Causes, metav1.StatusCause{Type: policyv1.DisruptionBudgetCause, Message: cause})
	return err
}

// canIgnorePDB: terminal, pending and already deleting pods are deleted
// without consulting budgets (they disrupt nothing more).
func canIgnorePDB(pod *corev1.Pod) bool {
	return pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed ||
		pod.Status.Phase == corev1.PodPending || pod.DeletionTimestamp != nil
}

// shouldEnforceResourceVersion: the delete must be of the pod version the
// decision was made on, unless the pod cannot become healthy again.
func shouldEnforceResourceVersion(pod *corev1.Pod) bool {
	return !(pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed || pod.DeletionTimestamp != nil)
}

func podIsReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func rvUnset(o *metav1.DeleteOptions) bool {
	return o.Preconditions == nil || o.Preconditions.ResourceVersion == nil
}

func withPreconditionRV(o *metav1.DeleteOptions, rv string) *metav1.DeleteOptions {
	o = o.DeepCopy()
	if o.Preconditions == nil {
		o.Preconditions = &metav1.Preconditions{}
	}
	o.Preconditions.ResourceVersion = &rv
	return o
}

// evict runs one eviction. A non-nil Status is the answer to send as is
// (upstream's 500 for a pod with several budgets).
func (s *Server) evict(ctx context.Context, podRes *registry.Resource, ns, name string, opts *metav1.DeleteOptions) (*metav1.Status, error) {
	gr := podRes.GVR().GroupResource()
	getPod := func() (*corev1.Pod, error) {
		kv, err := s.store.Get(ctx, objectKey(podRes, ns, name))
		if err != nil {
			return nil, storageErr(err, gr, name)
		}
		obj, err := fromStorage(podRes, kv.Value, kv.ModRev)
		if err != nil {
			return nil, err
		}
		return obj.(*corev1.Pod), nil
	}

	// Pods the budgets need not guard are deleted straight away; conflicts
	// are retried unless the client gave its own resourceVersion.
	var pod *corev1.Pod
	for attempt := 0; ; attempt++ {
		var err error
		if pod, err = getPod(); err != nil {
			return nil, err
		}
		if !canIgnorePDB(pod) {
			break
		}
		del := opts
		if shouldEnforceResourceVersion(pod) && rvUnset(opts) {
			del = withPreconditionRV(opts, pod.ResourceVersion)
		}
		err = s.markAndDeletePod(ctx, podRes, ns, name, del)
		if err == nil {
			return nil, nil
		}
		if !apierrors.IsConflict(err) || !rvUnset(opts) || attempt >= evictionRetries {
			return nil, err
		}
	}

	pdbs, err := s.podBudgets(ctx, pod)
	if err != nil {
		return nil, err
	}
	if len(pdbs) > 1 {
		return &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusInternalServerError,
			Message: "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."}, nil
	}
	pinDelete := false
	pdbName := ""
	if len(pdbs) == 1 {
		pdb := pdbs[0]
		pdbName = pdb.Name
		spend := true
		if !podIsReady(pod) {
			// An unready pod does not count towards currentHealthy: it may
			// go without spending the budget when the policy says so, or
			// when the application is healthy without it.
			if p := pdb.Spec.UnhealthyPodEvictionPolicy; p != nil && *p == policyv1.AlwaysAllow {
				spend, pinDelete = false, true
			} else if pdb.Status.CurrentHealthy >= pdb.Status.DesiredHealthy && pdb.Status.DesiredHealthy > 0 {
				spend, pinDelete = false, true
			}
		}
		if spend {
			if err := s.spendBudget(ctx, pdb, pod.Name, len(opts.DryRun) > 0); err != nil {
				return nil, err
			}
		}
	}
	del := opts
	if pinDelete {
		// The pod must not have become ready since the decision.
		del = withPreconditionRV(opts, pod.ResourceVersion)
	}
	if err := s.markAndDeletePod(ctx, podRes, ns, name, del); err != nil {
		if apierrors.IsConflict(err) && pinDelete && rvUnset(opts) {
			return nil, evictionTooManyRequests(fmt.Sprintf("The disruption budget %s is still being processed by the server.", pdbName))
		}
		return nil, err
	}
	return nil, nil
}

// podBudgets lists the PodDisruptionBudgets of the pod's namespace whose
// selector matches the pod (a nil or invalid selector matches nothing).
func (s *Server) podBudgets(ctx context.Context, pod *corev1.Pod) ([]*policyv1.PodDisruptionBudget, error) {
	res, ok := s.reg.Get("policy", "v1", "poddisruptionbudgets")
	if !ok {
		return nil, nil
	}
	lr, err := s.store.List(ctx, scopePrefix(res, pod.Namespace), "", 0, 0)
	if err != nil {
		return nil, storageErr(err, res.GVR().GroupResource(), "")
	}
	var out []*policyv1.PodDisruptionBudget
	for _, kv := range lr.KVs {
		obj, err := fromStorage(res, kv.Value, kv.ModRev)
		if err != nil {
			return nil, err
		}
		pdb, ok := obj.(*policyv1.PodDisruptionBudget)
		if !ok || pdb.Spec.Selector == nil {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(pod.Labels)) {
			continue
		}
		out = append(out, pdb)
	}
	return out, nil
}

// spendBudget checks that pdb allows one more disruption and records it:
// disruptionsAllowed - 1 and the pod in disruptedPods, written against the
// budget's current revision; on a conflict the budget is read again and
// checked again.
func (s *Server) spendBudget(ctx context.Context, pdb *policyv1.PodDisruptionBudget, podName string, dryRun bool) error {
	res, _ := s.reg.Get("policy", "v1", "poddisruptionbudgets")
	check := func(p *policyv1.PodDisruptionBudget) error {
		if p.Status.ObservedGeneration < p.Generation {
			return evictionTooManyRequests(fmt.Sprintf("The disruption budget %s is still being processed by the server.", p.Name))
		}
		if p.Status.DisruptionsAllowed < 0 {
			return apierrors.NewForbidden(res.GVR().GroupResource(), p.Name, errors.New("pdb disruptions allowed is negative"))
		}
		if len(p.Status.DisruptedPods) > maxDisruptedPods {
			return apierrors.NewForbidden(res.GVR().GroupResource(), p.Name, errors.New("DisruptedPods map too big - too many evictions not confirmed by PDB controller"))
		}
		if p.Status.DisruptionsAllowed == 0 {
			return evictionTooManyRequests(fmt.Sprintf("The disruption budget %s needs %d healthy pods and has %d currently", p.Name, p.Status.DesiredHealthy, p.Status.CurrentHealthy))
		}
		return nil
	}
	if dryRun {
		return check(pdb)
	}
	_, _, err := s.update(ctx, res, pdb.Namespace, pdb.Name, "status", writeOpts{}, func(ctx context.Context, cur runtime.Object) (runtime.Object, error) {
		if cur == nil {
			return nil, apierrors.NewNotFound(res.GVR().GroupResource(), pdb.Name)
		}
		p := cur.(*policyv1.PodDisruptionBudget)
		if p.UID != pdb.UID {
			return nil, apierrors.NewConflict(res.GVR().GroupResource(), pdb.Name, errors.New("the PodDisruptionBudget was replaced during the eviction"))
		}
		if err := check(p); err != nil {
			return nil, err
		}
		p.Status.DisruptionsAllowed--
		if p.Status.DisruptionsAllowed == 0 {
			apimeta.SetStatusCondition(&p.Status.Conditions, metav1.Condition{
				Type: policyv1.DisruptionAllowedCondition, Status: metav1.ConditionFalse,
				Reason: policyv1.InsufficientPodsReason, ObservedGeneration: p.Status.ObservedGeneration,
			})
		}
		if p.Status.DisruptedPods == nil {
			p.Status.DisruptedPods = map[string]metav1.Time{}
		}
		p.Status.DisruptedPods[podName] = metav1.Now()
		// An empty resourceVersion makes the write a compare-and-swap on
		// the revision read here, and a conflict re-runs this function on
		// a fresh read.
		p.ResourceVersion = ""
		return p, nil
	})
	return err
}

// markAndDeletePod adds the DisruptionTarget condition to the pod (not on
// a dry run) and deletes it with opts, as upstream.
func (s *Server) markAndDeletePod(ctx context.Context, podRes *registry.Resource, ns, name string, opts *metav1.DeleteOptions) error {
	gr := podRes.GVR().GroupResource()
	if len(opts.DryRun) == 0 {
		out, _, err := s.update(ctx, podRes, ns, name, "status", writeOpts{}, func(ctx context.Context, cur runtime.Object) (runtime.Object, error) {
			if cur == nil {
				return nil, apierrors.NewNotFound(gr, name)
			}
			pod := cur.(*corev1.Pod)
			if p := opts.Preconditions; p != nil {
				if p.UID != nil && *p.UID != "" && *p.UID != pod.UID {
					return nil, apierrors.NewConflict(gr, name, fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", *p.UID, pod.UID))
				}
				if p.ResourceVersion != nil && *p.ResourceVersion != "" && *p.ResourceVersion != pod.ResourceVersion {
					return nil, apierrors.NewConflict(gr, name, fmt.Errorf("Precondition failed: ResourceVersion in precondition: %v, ResourceVersion in object meta: %v", *p.ResourceVersion, pod.ResourceVersion))
				}
			}
			setDisruptionTarget(pod)
			pod.ResourceVersion = ""
			return pod, nil
		})
		if err != nil {
			return err
		}
		if !rvUnset(opts) {
			var m struct {
				Metadata metav1.ObjectMeta `json:"metadata"`
			}
			if err := json.Unmarshal(out, &m); err == nil && m.Metadata.ResourceVersion != "" {
				opts = withPreconditionRV(opts, m.Metadata.ResourceVersion)
			}
		}
	}
	_, _, err := s.delete(ctx, podRes, ns, name, opts)
	return err
}

func setDisruptionTarget(pod *corev1.Pod) {
	c := corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue,
		Reason: "EvictionByEvictionAPI", Message: "Eviction API: evicting", LastTransitionTime: metav1.NewTime(time.Now())}
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == c.Type {
			if pod.Status.Conditions[i].Status == c.Status {
				c.LastTransitionTime = pod.Status.Conditions[i].LastTransitionTime
			}
			pod.Status.Conditions[i] = c
			return
		}
	}
	pod.Status.Conditions = append(pod.Status.Conditions, c)
}
