// Package limitranger is upstream's LimitRanger admission plugin: the
// namespace's LimitRanges default container requests and limits on pod
// creation and enforce min, max and maxLimitRequestRatio per Container
// and per Pod, and min/max storage per PersistentVolumeClaim, with
// upstream's messages.
package limitranger

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/skiffhq/skiff/controlplane/admission/internal/objects"
	"github.com/skiffhq/skiff/controlplane/apiserver"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
)

// annotation records what the plugin defaulted, as upstream.
const annotation = "kubernetes.io/limit-ranger"

// Plugin is the LimitRanger admission plugin.
type Plugin struct{ r *objects.Reader }

var _ apiserver.AdmissionPlugin = (*Plugin)(nil)

// New returns the plugin.
func New(r *objects.Reader) *Plugin { return &Plugin{r: r} }

// Name implements apiserver.AdmissionPlugin.
func (p *Plugin) Name() string { return "LimitRanger" }

func (p *Plugin) applies(a *apiserver.Attributes) bool {
	if a.Resource == nil || a.Resource.Group != "" || a.Subresource != "" {
		return false
	}
	switch a.Resource.Plural {
	case "pods":
		// Pod resources are checked when created; updates cannot change them.
		return a.Operation == apiserver.OpCreate
	case "persistentvolumeclaims":
		return a.Operation == apiserver.OpCreate || a.Operation == apiserver.OpUpdate
	}
	return false
}

func (p *Plugin) ranges(ns string) ([]*corev1.LimitRange, error) {
	lrs, err := objects.List[corev1.LimitRange](p.r, "", "limitranges", ns)
	if err != nil {
		return nil, err
	}
	for _, lr := range lrs {
		for i := range lr.Spec.Limits {
			defaultItem(&lr.Spec.Limits[i])
		}
	}
	return lrs, nil
}

// defaultItem applies upstream's LimitRangeItem defaulting (max → default
// limit → default request, min → default request) for ranges stored
// before defaulting existed or written straight to storage.
func defaultItem(it *corev1.LimitRangeItem) {
	if it.Type != corev1.LimitTypeContainer {
		return
	}
	if it.Default == nil {
		it.Default = corev1.ResourceList{}
	}
	if it.DefaultRequest == nil {
		it.DefaultRequest = corev1.ResourceList{}
	}
	for k, v := range it.Max {
		if _, ok := it.Default[k]; !ok {
			it.Default[k] = v.DeepCopy()
		}
	}
	for k, v := range it.Default {
		if _, ok := it.DefaultRequest[k]; !ok {
			it.DefaultRequest[k] = v.DeepCopy()
		}
	}
	for k, v := range it.Min {
		if _, ok := it.DefaultRequest[k]; !ok {
			it.DefaultRequest[k] = v.DeepCopy()
		}
	}
}

// Admit implements apiserver.AdmissionPlugin: container defaults.
func (p *Plugin) Admit(ctx context.Context, a *apiserver.Attributes) error {
	if !p.applies(a) {
		return nil
	}
	pod, ok := a.Object.(*corev1.Pod)
	if !ok {
		return nil
	}
	lrs, err := p.ranges(a.Namespace)
	if err != nil || len(lrs) == 0 {
		return err
	}
	defReq, defLim := corev1.ResourceList{}, corev1.ResourceList{}
	for _, lr := range lrs {
		for _, it := range lr.Spec.Limits {
			if it.Type != corev1.LimitTypeContainer {
				continue
			}
			for k, v := range it.DefaultRequest {
				defReq[k] = v.DeepCopy()
			}
			for k, v := range it.Default {
				defLim[k] = v.DeepCopy()
			}
		}
	}
	var notes []string
	apply := func(kind string, cs []corev1.Container) {
		for i := range cs {
			c := &cs[i]
			var setReq, setLim []string
			for k, v := range defLim {
				if _, ok := c.Resources.Limits[k]; !ok {
					if c.Resources.Limits == nil {
						c.Resources.Limits = corev1.ResourceList{}
					}
					c.Resources.Limits[k] = v.DeepCopy()
					setLim = append(setLim, string(k))
				}
			}
			for k, v := range defReq {
				if _, ok := c.Resources.Requests[k]; ok {
					continue
				}
				// A set limit is the request when no default request
				// applies, as the API's own defaulting would do.
				if c.Resources.Requests == nil {
					c.Resources.Requests = corev1.ResourceList{}
				}
				c.Resources.Requests[k] = v.DeepCopy()
				setReq = append(setReq, string(k))
			}
			sort.Strings(setReq)
			sort.Strings(setLim)
			if len(setReq) > 0 {
				notes = append(notes, fmt.Sprintf("%s request for %s %s", strings.Join(setReq, ", "), kind, c.Name))
			}
			if len(setLim) > 0 {
				notes = append(notes, fmt.Sprintf("%s limit for %s %s", strings.Join(setLim, ", "), kind, c.Name))
			}
		}
	}
	apply("init container", pod.Spec.InitContainers)
	apply("container", pod.Spec.Containers)
	if len(notes) > 0 {
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		pod.Annotations[annotation] = "LimitRanger plugin set: " + strings.Join(notes, "; ")
	}
	return nil
}

// Validate implements apiserver.AdmissionPlugin: min, max and ratio.
func (p *Plugin) Validate(ctx context.Context, a *apiserver.Attributes) error {
	if !p.applies(a) {
		return nil
	}
	lrs, err := p.ranges(a.Namespace)
	if err != nil || len(lrs) == 0 {
		return err
	}
	var errs []error
	switch obj := a.Object.(type) {
	case *corev1.Pod:
		for _, lr := range lrs {
			errs = append(errs, validatePod(lr, obj)...)
		}
	case *corev1.PersistentVolumeClaim:
		if old, ok := a.OldObject.(*corev1.PersistentVolumeClaim); ok &&
			old.Spec.Resources.Requests.Storage().Cmp(*obj.Spec.Resources.Requests.Storage()) == 0 {
			return nil
		}
		for _, lr := range lrs {
			errs = append(errs, validatePVC(lr, obj)...)
		}
	}
	if len(errs) > 0 {
		return apierrors.NewForbidden(a.Resource.GVR().GroupResource(), a.Name, utilerrors.NewAggregate(errs))
	}
	return nil
}

func validatePod(lr *corev1.LimitRange, pod *corev1.Pod) []error {
	var errs []error
	for _, it := range lr.Spec.Limits {
		switch it.Type {
		case corev1.LimitTypeContainer:
			for _, cs := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
				for _, c := range cs {
					errs = append(errs, checkItem(string(it.Type), it, c.Resources.Requests, c.Resources.Limits)...)
				}
			}
		case corev1.LimitTypePod:
			errs = append(errs, checkItem(string(it.Type), it, podTotal(pod, false), podTotal(pod, true))...)
		}
	}
	return errs
}

func checkItem(kind string, it corev1.LimitRangeItem, req, lim corev1.ResourceList) []error {
	var errs []error
	for _, k := range sortedKeys(it.Min) {
		if err := minConstraint(kind, string(k), it.Min[k], req, lim); err != nil {
			errs = append(errs, err)
		}
	}
	for _, k := range sortedKeys(it.Max) {
		if err := maxConstraint(kind, string(k), it.Max[k], req, lim); err != nil {
			errs = append(errs, err)
		}
	}
	for _, k := range sortedKeys(it.MaxLimitRequestRatio) {
		if err := ratioConstraint(kind, string(k), it.MaxLimitRequestRatio[k], req, lim); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

func validatePVC(lr *corev1.LimitRange, pvc *corev1.PersistentVolumeClaim) []error {
	var errs []error
	for _, it := range lr.Spec.Limits {
		if it.Type != corev1.LimitTypePersistentVolumeClaim {
			continue
		}
		kind := string(it.Type)
		for _, k := range sortedKeys(it.Min) {
			// Claims' limits are not user input here; only requests count.
			if err := minConstraint(kind, string(k), it.Min[k], pvc.Spec.Resources.Requests, nil); err != nil {
				errs = append(errs, err)
			}
		}
		for _, k := range sortedKeys(it.Max) {
			q, ok := pvc.Spec.Resources.Requests[k]
			max := it.Max[k]
			if ok && q.Cmp(max) > 0 {
				errs = append(errs, fmt.Errorf("maximum %s usage per %s is %s, but request is %s", k, kind, max.String(), q.String()))
			}
		}
	}
	return errs
}

// values compares in milli-units unless a value is too large for them.
func values(req, lim, enforced resource.Quantity) (int64, int64, int64) {
	if req.Value() > resource.MaxMilliValue || lim.Value() > resource.MaxMilliValue || enforced.Value() > resource.MaxMilliValue {
		return req.Value(), lim.Value(), enforced.Value()
	}
	return req.MilliValue(), lim.MilliValue(), enforced.MilliValue()
}

func minConstraint(kind, name string, enforced resource.Quantity, request, limit corev1.ResourceList) error {
	req, reqOK := request[corev1.ResourceName(name)]
	lim, limOK := limit[corev1.ResourceName(name)]
	r, l, e := values(req, lim, enforced)
	if !reqOK {
		return fmt.Errorf("minimum %s usage per %s is %s.  No request is specified", name, kind, enforced.String())
	}
	if r < e {
		return fmt.Errorf("minimum %s usage per %s is %s, but request is %s", name, kind, enforced.String(), req.String())
	}
	if limOK && l < e {
		return fmt.Errorf("minimum %s usage per %s is %s, but limit is %s", name, kind, enforced.String(), lim.String())
	}
	return nil
}

func maxConstraint(kind, name string, enforced resource.Quantity, request, limit corev1.ResourceList) error {
	req, reqOK := request[corev1.ResourceName(name)]
	lim, limOK := limit[corev1.ResourceName(name)]
	r, l, e := values(req, lim, enforced)
	if !limOK {
		return fmt.Errorf("maximum %s usage per %s is %s.  No limit is specified", name, kind, enforced.String())
	}
	if l > e {
		return fmt.Errorf("maximum %s usage per %s is %s, but limit is %s", name, kind, enforced.String(), lim.String())
	}
	if reqOK && r > e {
		return fmt.Errorf("maximum %s usage per %s is %s, but request is %s", name, kind, enforced.String(), req.String())
	}
	return nil
}

func ratioConstraint(kind, name string, enforced resource.Quantity, request, limit corev1.ResourceList) error {
	req, reqOK := request[corev1.ResourceName(name)]
	lim, limOK := limit[corev1.ResourceName(name)]
	r, l, _ := values(req, lim, enforced)
	if !reqOK || r == 0 {
		return fmt.Errorf("%s max limit to request ratio per %s is %s, but no request is specified or request is 0", name, kind, enforced.String())
	}
	if !limOK || l == 0 {
		return fmt.Errorf("%s max limit to request ratio per %s is %s, but no limit is specified or limit is 0", name, kind, enforced.String())
	}
	observed := float64(l) / float64(r)
	shown := observed
	maxRatio := float64(enforced.Value())
	if enforced.Value() <= resource.MaxMilliValue {
		observed *= 1000
		maxRatio = float64(enforced.MilliValue())
	}
	if observed > maxRatio {
		return fmt.Errorf("%s max limit to request ratio per %s is %s, but provided ratio is %f", name, kind, enforced.String(), shown)
	}
	return nil
}

// podTotal is the pod's effective requests or limits: the larger of the
// containers' sum and any single init container, per resource.
func podTotal(pod *corev1.Pod, limits bool) corev1.ResourceList {
	pick := func(c corev1.Container) corev1.ResourceList {
		if limits {
			return c.Resources.Limits
		}
		return c.Resources.Requests
	}
	sum := corev1.ResourceList{}
	for _, c := range pod.Spec.Containers {
		for k, v := range pick(c) {
			q := sum[k]
			q.Add(v)
			sum[k] = q
		}
	}
	for _, c := range pod.Spec.InitContainers {
		for k, v := range pick(c) {
			if q, ok := sum[k]; !ok || v.Cmp(q) > 0 {
				sum[k] = v.DeepCopy()
			}
		}
	}
	return sum
}

func sortedKeys(l corev1.ResourceList) []corev1.ResourceName {
	out := make([]corev1.ResourceName, 0, len(l))
	for k := range l {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
