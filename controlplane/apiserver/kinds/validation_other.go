package kinds

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	pathvalidation "k8s.io/apimachinery/pkg/api/validation/path"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Validation of storage, networking, coordination, scheduling, RBAC and
// admission registration kinds.

const (
	highestUserDefinablePriority = 1000000000
	systemPriorityClassPrefix    = "system-"
)

// Upstream's built-in system priority classes and their values.
var systemPriorityClasses = map[string]int32{
	"system-node-critical":    2000001000,
	"system-cluster-critical": 2000000000,
}

func init() {
	validators[gk("storage.k8s.io", "StorageClass")] = func(_ context.Context, obj runtime.Object) field.ErrorList {
		return validateStorageClass(obj.(*storagev1.StorageClass))
	}
	updateValidators[gk("storage.k8s.io", "StorageClass")] = func(_ context.Context, obj, old runtime.Object) field.ErrorList {
		n, o := obj.(*storagev1.StorageClass), old.(*storagev1.StorageClass)
		var errs field.ErrorList
		if !apiequality.Semantic.DeepEqual(n.Parameters, o.Parameters) {
			errs = append(errs, field.Forbidden(field.NewPath("parameters"), "updates to parameters are forbidden."))
		}
		if n.Provisioner != o.Provisioner {
			errs = append(errs, field.Forbidden(field.NewPath("provisioner"), "updates to provisioner are forbidden."))
		}
		if !apiequality.Semantic.DeepEqual(n.ReclaimPolicy, o.ReclaimPolicy) {
			errs = append(errs, field.Forbidden(field.NewPath("reclaimPolicy"), "updates to reclaimPolicy are forbidden."))
		}
		errs = append(errs, apimachineryvalidation.ValidateImmutableField(n.VolumeBindingMode, o.VolumeBindingMode, field.NewPath("volumeBindingMode"))...)
		return errs
	}
	validators[gk("networking.k8s.io", "Ingress")] = func(_ context.Context, obj runtime.Object) field.ErrorList {
		return validateIngressSpec(&obj.(*networkingv1.Ingress).Spec, field.NewPath("spec"))
	}
	validators[gk("networking.k8s.io", "IngressClass")] = func(_ context.Context, obj runtime.Object) field.ErrorList {
		ic := obj.(*networkingv1.IngressClass)
		p := field.NewPath("spec", "controller")
		if ic.Spec.Controller == "" {
			return field.ErrorList{field.Required(p, "")}
		}
		errs := validation.IsDomainPrefixedPath(p, ic.Spec.Controller)
		if len(ic.Spec.Controller) > 250 {
			errs = append(errs, field.TooLong(p, "", 250))
		}
		return errs
	}
	updateValidators[gk("networking.k8s.io", "IngressClass")] = func(_ context.Context, obj, old runtime.Object) field.ErrorList {
		return apimachineryvalidation.ValidateImmutableField(obj.(*networkingv1.IngressClass).Spec.Controller,
			old.(*networkingv1.IngressClass).Spec.Controller, field.NewPath("spec", "controller"))
	}
	validators[gk("networking.k8s.io", "NetworkPolicy")] = func(_ context.Context, obj runtime.Object) field.ErrorList {
		np := obj.(*networkingv1.NetworkPolicy)
		var errs field.ErrorList
		allowed := []string{string(networkingv1.PolicyTypeIngress), string(networkingv1.PolicyTypeEgress)}
		for i, t := range np.Spec.PolicyTypes {
			if t != networkingv1.PolicyTypeIngress && t != networkingv1.PolicyTypeEgress {
				errs = append(errs, field.NotSupported(field.NewPath("spec", "policyTypes").Index(i), t, allowed))
			}
		}
		return errs
	}
	validators[gk("coordination.k8s.io", "Lease")] = func(_ context.Context, obj runtime.Object) field.ErrorList {
		l := obj.(*coordinationv1.Lease)
		var errs field.ErrorList
		if d := l.Spec.LeaseDurationSeconds; d != nil && *d <= 0 {
			errs = append(errs, field.Invalid(field.NewPath("spec", "leaseDurationSeconds"), *d, "must be greater than 0"))
		}
		if t := l.Spec.LeaseTransitions; t != nil && *t < 0 {
			errs = append(errs, field.Invalid(field.NewPath("spec", "leaseTransitions"), *t, "must be greater than or equal to 0"))
		}
		return errs
	}
	validators[gk("scheduling.k8s.io", "PriorityClass")] = func(_ context.Context, obj runtime.Object) field.ErrorList {
		return validatePriorityClass(obj.(*schedulingv1.PriorityClass))
	}
	updateValidators[gk("scheduling.k8s.io", "PriorityClass")] = func(_ context.Context, obj, old runtime.Object) field.ErrorList {
		n, o := obj.(*schedulingv1.PriorityClass), old.(*schedulingv1.PriorityClass)
		var errs field.ErrorList
		if n.Value != o.Value {
			errs = append(errs, field.Forbidden(field.NewPath("value"), "may not be changed in an update."))
		}
		errs = append(errs, apimachineryvalidation.ValidateImmutableField(n.PreemptionPolicy, o.PreemptionPolicy, field.NewPath("preemptionPolicy"))...)
		return errs
	}
	validators[gk("rbac.authorization.k8s.io", "Role")] = func(_ context.Context, obj runtime.Object) field.ErrorList {
		return validatePolicyRules(obj.(*rbacv1.Role).Rules, true)
	}
	validators[gk("rbac.authorization.k8s.io", "ClusterRole")] = func(_ context.Context, obj runtime.Object) field.ErrorList {
		cr := obj.(*rbacv1.ClusterRole)
		errs := validatePolicyRules(cr.Rules, false)
		if a := cr.AggregationRule; a != nil && len(a.ClusterRoleSelectors) == 0 {
			errs = append(errs, field.Required(field.NewPath("aggregationRule", "clusterRoleSelectors"), "at least one clusterRoleSelector required if aggregationRule is non-nil"))
		}
		return errs
	}
	validators[gk("rbac.authorization.k8s.io", "RoleBinding")] = func(_ context.Context, obj runtime.Object) field.ErrorList {
		rb := obj.(*rbacv1.RoleBinding)
		return validateBinding(rb.RoleRef, rb.Subjects, true)
	}
	updateValidators[gk("rbac.authorization.k8s.io", "RoleBinding")] = func(_ context.Context, obj, old runtime.Object) field.ErrorList {
		return validateRoleRefUpdate(obj.(*rbacv1.RoleBinding).RoleRef, old.(*rbacv1.RoleBinding).RoleRef)
	}
	validators[gk("rbac.authorization.k8s.io", "ClusterRoleBinding")] = func(_ context.Context, obj runtime.Object) field.ErrorList {
		rb := obj.(*rbacv1.ClusterRoleBinding)
		return validateBinding(rb.RoleRef, rb.Subjects, false)
	}
	updateValidators[gk("rbac.authorization.k8s.io", "ClusterRoleBinding")] = func(_ context.Context, obj, old runtime.Object) field.ErrorList {
		return validateRoleRefUpdate(obj.(*rbacv1.ClusterRoleBinding).RoleRef, old.(*rbacv1.ClusterRoleBinding).RoleRef)
	}
	validators[gk("admissionregistration.k8s.io", "ValidatingWebhookConfiguration")] = func(_ context.Context, obj runtime.Object) field.ErrorList {
		c := obj.(*admissionregistrationv1.ValidatingWebhookConfiguration)
		hooks := make([]webhookView, len(c.Webhooks))
		for i, w := range c.Webhooks {
			hooks[i] = webhookView{name: w.Name, cc: w.ClientConfig, rules: w.Rules, fp: w.FailurePolicy, mp: w.MatchPolicy,
				se: w.SideEffects, timeout: w.TimeoutSeconds, arv: w.AdmissionReviewVersions}
		}
		return validateWebhooks(hooks)
	}
	validators[gk("admissionregistration.k8s.io", "MutatingWebhookConfiguration")] = func(_ context.Context, obj runtime.Object) field.ErrorList {
		c := obj.(*admissionregistrationv1.MutatingWebhookConfiguration)
		hooks := make([]webhookView, len(c.Webhooks))
		for i, w := range c.Webhooks {
			hooks[i] = webhookView{name: w.Name, cc: w.ClientConfig, rules: w.Rules, fp: w.FailurePolicy, mp: w.MatchPolicy,
				se: w.SideEffects, timeout: w.TimeoutSeconds, arv: w.AdmissionReviewVersions, reinvoke: w.ReinvocationPolicy, mutating: true}
		}
		return validateWebhooks(hooks)
	}
}

func validateStorageClass(sc *storagev1.StorageClass) field.ErrorList {
	var errs field.ErrorList
	p := field.NewPath("provisioner")
	if sc.Provisioner == "" {
		errs = append(errs, field.Required(p, ""))
	} else {
		if len(sc.Provisioner) > 63 {
			errs = append(errs, field.TooLong(p, "", 63))
		}
		for _, msg := range validation.IsQualifiedName(strings.ToLower(sc.Provisioner)) {
			errs = append(errs, field.Invalid(p, sc.Provisioner, msg))
		}
	}
	if len(sc.Parameters) > 512 {
		errs = append(errs, field.TooMany(field.NewPath("parameters"), len(sc.Parameters), 512))
	}
	for k := range sc.Parameters {
		if k == "" {
			errs = append(errs, field.Invalid(field.NewPath("parameters"), sc.Parameters, "key cannot be empty"))
		}
	}
	if r := sc.ReclaimPolicy; r != nil && *r != corev1.PersistentVolumeReclaimDelete && *r != corev1.PersistentVolumeReclaimRetain {
		errs = append(errs, field.NotSupported(field.NewPath("reclaimPolicy"), *r, []string{string(corev1.PersistentVolumeReclaimDelete), string(corev1.PersistentVolumeReclaimRetain)}))
	}
	if m := sc.VolumeBindingMode; m != nil && *m != storagev1.VolumeBindingImmediate && *m != storagev1.VolumeBindingWaitForFirstConsumer {
		errs = append(errs, field.NotSupported(field.NewPath("volumeBindingMode"), *m, []string{string(storagev1.VolumeBindingImmediate), string(storagev1.VolumeBindingWaitForFirstConsumer)}))
	}
	return errs
}

var supportedPathTypes = []string{string(networkingv1.PathTypeExact), string(networkingv1.PathTypeImplementationSpecific), string(networkingv1.PathTypePrefix)}

func validateIngressSpec(s *networkingv1.IngressSpec, spec *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(s.Rules) == 0 && s.DefaultBackend == nil {
		errs = append(errs, field.Invalid(spec, s.Rules, "either `defaultBackend` or `rules` must be specified"))
	}
	if s.DefaultBackend != nil {
		errs = append(errs, validateIngressBackend(s.DefaultBackend, spec.Child("defaultBackend"))...)
	}
	for i, r := range s.Rules {
		idx := spec.Child("rules").Index(i)
		if r.Host != "" {
			if _, err := netip.ParseAddr(r.Host); err == nil {
				errs = append(errs, field.Invalid(idx.Child("host"), r.Host, "must be a DNS name, not an IP address"))
			} else if strings.Contains(r.Host, "*") {
				for _, msg := range validation.IsWildcardDNS1123Subdomain(r.Host) {
					errs = append(errs, field.Invalid(idx.Child("host"), r.Host, msg))
				}
			} else {
				for _, msg := range validation.IsDNS1123Subdomain(r.Host) {
					errs = append(errs, field.Invalid(idx.Child("host"), r.Host, msg))
				}
			}
		}
		if r.HTTP == nil {
			continue
		}
		paths := idx.Child("http", "paths")
		if len(r.HTTP.Paths) == 0 {
			errs = append(errs, field.Required(paths, ""))
		}
		for j, p := range r.HTTP.Paths {
			pp := paths.Index(j)
			if p.PathType == nil {
				errs = append(errs, field.Required(pp.Child("pathType"), "pathType must be specified"))
			} else {
				switch *p.PathType {
				case networkingv1.PathTypeExact, networkingv1.PathTypePrefix:
					if !strings.HasPrefix(p.Path, "/") {
						errs = append(errs, field.Invalid(pp.Child("path"), p.Path, "must be an absolute path"))
					}
					if strings.Contains(p.Path, "//") {
						errs = append(errs, field.Invalid(pp.Child("path"), p.Path, "must not contain '//'"))
					}
				case networkingv1.PathTypeImplementationSpecific:
					if p.Path != "" && !strings.HasPrefix(p.Path, "/") {
						errs = append(errs, field.Invalid(pp.Child("path"), p.Path, "must be an absolute path"))
					}
				default:
					errs = append(errs, field.NotSupported(pp.Child("pathType"), *p.PathType, supportedPathTypes))
				}
			}
			errs = append(errs, validateIngressBackend(&p.Backend, pp.Child("backend"))...)
		}
	}
	for i, t := range s.TLS {
		for j, h := range t.Hosts {
			for _, msg := range validation.IsDNS1123Subdomain(strings.TrimPrefix(h, "*.")) {
				errs = append(errs, field.Invalid(spec.Child("tls").Index(i).Child("hosts").Index(j), h, msg))
			}
		}
	}
	return errs
}

func validateIngressBackend(b *networkingv1.IngressBackend, fld *field.Path) field.ErrorList {
	switch {
	case b.Service != nil && b.Resource != nil:
		return field.ErrorList{field.Invalid(fld, "", "cannot set both resource and service backends")}
	case b.Resource != nil:
		var errs field.ErrorList
		if b.Resource.Kind == "" {
			errs = append(errs, field.Required(fld.Child("resource", "kind"), ""))
		}
		if b.Resource.Name == "" {
			errs = append(errs, field.Required(fld.Child("resource", "name"), ""))
		}
		return errs
	case b.Service != nil:
		var errs field.ErrorList
		sp := fld.Child("service")
		if b.Service.Name == "" {
			errs = append(errs, field.Required(sp.Child("name"), ""))
		} else {
			for _, msg := range validation.IsDNS1035Label(b.Service.Name) {
				errs = append(errs, field.Invalid(sp.Child("name"), b.Service.Name, msg))
			}
		}
		port := b.Service.Port
		switch {
		case port.Name != "" && port.Number != 0:
			errs = append(errs, field.Invalid(sp.Child("port"), port, "cannot set both port name & port number"))
		case port.Name != "":
			for _, msg := range validation.IsValidPortName(port.Name) {
				errs = append(errs, field.Invalid(sp.Child("port", "name"), port.Name, msg))
			}
		case port.Number != 0:
			for _, msg := range validation.IsValidPortNum(int(port.Number)) {
				errs = append(errs, field.Invalid(sp.Child("port", "number"), port.Number, msg))
			}
		default:
			errs = append(errs, field.Required(sp.Child("port"), "port name or number is required"))
		}
		return errs
	}
	return field.ErrorList{field.Invalid(fld, "", "resource or service backend is required")}
}

func validatePriorityClass(pc *schedulingv1.PriorityClass) field.ErrorList {
	var errs field.ErrorList
	if v, ok := systemPriorityClasses[pc.Name]; ok && v == pc.Value && !pc.GlobalDefault {
		// A known system class with its own value.
	} else if strings.HasPrefix(pc.Name, systemPriorityClassPrefix) {
		errs = append(errs, field.Forbidden(field.NewPath("metadata", "name"), "priority class names with '"+systemPriorityClassPrefix+"' prefix are reserved for system use only. error: "+pcSystemError(pc)))
	} else if pc.Value > highestUserDefinablePriority {
		errs = append(errs, field.Forbidden(field.NewPath("value"), fmt.Sprintf("maximum allowed value of a user defined priority is %v", highestUserDefinablePriority)))
	}
	if p := pc.PreemptionPolicy; p != nil && *p != corev1.PreemptLowerPriority && *p != corev1.PreemptNever {
		errs = append(errs, field.NotSupported(field.NewPath("preemptionPolicy"), *p, []string{string(corev1.PreemptLowerPriority), string(corev1.PreemptNever)}))
	}
	return errs
}

func pcSystemError(pc *schedulingv1.PriorityClass) string {
	v, ok := systemPriorityClasses[pc.Name]
	switch {
	case !ok:
		return fmt.Sprintf("%v is not a known system priority class", pc.Name)
	case v != pc.Value:
		return fmt.Sprintf("value of %v PriorityClass must be %v", pc.Name, v)
	default:
		return fmt.Sprintf("globalDefault of %v PriorityClass must be false", pc.Name)
	}
}

func validatePolicyRules(rules []rbacv1.PolicyRule, namespaced bool) field.ErrorList {
	var errs field.ErrorList
	for i, r := range rules {
		p := field.NewPath("rules").Index(i)
		if len(r.Verbs) == 0 {
			errs = append(errs, field.Required(p.Child("verbs"), "verbs must contain at least one value"))
		}
		if len(r.NonResourceURLs) > 0 {
			if namespaced {
				errs = append(errs, field.Invalid(p.Child("nonResourceURLs"), r.NonResourceURLs, "namespaced rules cannot apply to non-resource URLs"))
			}
			if len(r.APIGroups) > 0 || len(r.Resources) > 0 || len(r.ResourceNames) > 0 {
				errs = append(errs, field.Invalid(p.Child("nonResourceURLs"), r.NonResourceURLs, "rules cannot apply to both regular resources and non-resource URLs"))
			}
			continue
		}
		if len(r.APIGroups) == 0 {
			errs = append(errs, field.Required(p.Child("apiGroups"), "resource rules must supply at least one api group"))
		}
		if len(r.Resources) == 0 {
			errs = append(errs, field.Required(p.Child("resources"), "resource rules must supply at least one resource"))
		}
	}
	return errs
}

func validateBinding(ref rbacv1.RoleRef, subjects []rbacv1.Subject, namespaced bool) field.ErrorList {
	var errs field.ErrorList
	rp := field.NewPath("roleRef")
	if ref.APIGroup != rbacv1.GroupName {
		errs = append(errs, field.NotSupported(rp.Child("apiGroup"), ref.APIGroup, []string{rbacv1.GroupName}))
	}
	if namespaced {
		switch ref.Kind {
		case "Role", "ClusterRole":
		case "":
			errs = append(errs, field.Required(rp.Child("kind"), ""))
		default:
			errs = append(errs, field.NotSupported(rp.Child("kind"), ref.Kind, []string{"Role", "ClusterRole"}))
		}
	} else if ref.Kind != "ClusterRole" {
		errs = append(errs, field.NotSupported(rp.Child("kind"), ref.Kind, []string{"ClusterRole"}))
	}
	if ref.Name == "" {
		errs = append(errs, field.Required(rp.Child("name"), ""))
	} else {
		for _, msg := range pathvalidation.ValidatePathSegmentName(ref.Name, false) {
			errs = append(errs, field.Invalid(rp.Child("name"), ref.Name, msg))
		}
	}
	for i, s := range subjects {
		sp := field.NewPath("subjects").Index(i)
		if s.Name == "" {
			errs = append(errs, field.Required(sp.Child("name"), ""))
		}
		switch s.Kind {
		case rbacv1.ServiceAccountKind:
			if s.Name != "" {
				for _, msg := range apimachineryvalidation.NameIsDNSSubdomain(s.Name, false) {
					errs = append(errs, field.Invalid(sp.Child("name"), s.Name, msg))
				}
			}
			if s.APIGroup != "" {
				errs = append(errs, field.NotSupported(sp.Child("apiGroup"), s.APIGroup, []string{""}))
			}
			if !namespaced && s.Namespace == "" {
				errs = append(errs, field.Required(sp.Child("namespace"), ""))
			}
		case rbacv1.UserKind, rbacv1.GroupKind:
			if s.APIGroup != rbacv1.GroupName {
				errs = append(errs, field.NotSupported(sp.Child("apiGroup"), s.APIGroup, []string{rbacv1.GroupName}))
			}
		default:
			errs = append(errs, field.NotSupported(sp.Child("kind"), s.Kind, []string{rbacv1.ServiceAccountKind, rbacv1.UserKind, rbacv1.GroupKind}))
		}
	}
	return errs
}

func validateRoleRefUpdate(ref, old rbacv1.RoleRef) field.ErrorList {
	if ref != old {
		return field.ErrorList{field.Invalid(field.NewPath("roleRef"), ref, "cannot change roleRef")}
	}
	return nil
}

// webhookView is what validating and mutating webhooks have in common.
type webhookView struct {
	name     string
	cc       admissionregistrationv1.WebhookClientConfig
	rules    []admissionregistrationv1.RuleWithOperations
	fp       *admissionregistrationv1.FailurePolicyType
	mp       *admissionregistrationv1.MatchPolicyType
	se       *admissionregistrationv1.SideEffectClass
	timeout  *int32
	arv      []string
	reinvoke *admissionregistrationv1.ReinvocationPolicyType
	mutating bool
}

func validateWebhooks(hooks []webhookView) field.ErrorList {
	var errs field.ErrorList
	names := sets.New[string]()
	for i, h := range hooks {
		p := field.NewPath("webhooks").Index(i)
		errs = append(errs, validation.IsFullyQualifiedName(p.Child("name"), h.name)...)
		if names.Has(h.name) {
			errs = append(errs, field.Duplicate(p.Child("name"), h.name))
		}
		names.Insert(h.name)
		errs = append(errs, validateClientConfig(&h.cc, p.Child("clientConfig"))...)
		for j, r := range h.rules {
			rp := p.Child("rules").Index(j)
			if len(r.Operations) == 0 {
				errs = append(errs, field.Required(rp.Child("operations"), ""))
			}
			if len(r.APIGroups) == 0 {
				errs = append(errs, field.Required(rp.Child("apiGroups"), ""))
			}
			if len(r.APIVersions) == 0 {
				errs = append(errs, field.Required(rp.Child("apiVersions"), ""))
			}
			if len(r.Resources) == 0 {
				errs = append(errs, field.Required(rp.Child("resources"), ""))
			}
			if s := r.Scope; s != nil && *s != admissionregistrationv1.AllScopes && *s != admissionregistrationv1.ClusterScope && *s != admissionregistrationv1.NamespacedScope {
				errs = append(errs, field.NotSupported(rp.Child("scope"), *s, []string{string(admissionregistrationv1.AllScopes), string(admissionregistrationv1.ClusterScope), string(admissionregistrationv1.NamespacedScope)}))
			}
		}
		if h.fp != nil && *h.fp != admissionregistrationv1.Ignore && *h.fp != admissionregistrationv1.Fail {
			errs = append(errs, field.NotSupported(p.Child("failurePolicy"), *h.fp, []string{string(admissionregistrationv1.Fail), string(admissionregistrationv1.Ignore)}))
		}
		if h.mp != nil && *h.mp != admissionregistrationv1.Exact && *h.mp != admissionregistrationv1.Equivalent {
			errs = append(errs, field.NotSupported(p.Child("matchPolicy"), *h.mp, []string{string(admissionregistrationv1.Equivalent), string(admissionregistrationv1.Exact)}))
		}
		sideEffects := []string{string(admissionregistrationv1.SideEffectClassNone), string(admissionregistrationv1.SideEffectClassNoneOnDryRun)}
		switch {
		case h.se == nil:
			errs = append(errs, field.Required(p.Child("sideEffects"), "must specify one of "+strings.Join(sideEffects, ", ")))
		case *h.se != admissionregistrationv1.SideEffectClassNone && *h.se != admissionregistrationv1.SideEffectClassNoneOnDryRun:
			errs = append(errs, field.NotSupported(p.Child("sideEffects"), *h.se, sideEffects))
		}
		if h.timeout != nil && (*h.timeout < 1 || *h.timeout > 30) {
			errs = append(errs, field.Invalid(p.Child("timeoutSeconds"), *h.timeout, "the timeout value must be between 1 and 30 seconds"))
		}
		if len(h.arv) == 0 {
			errs = append(errs, field.Required(p.Child("admissionReviewVersions"), "must specify one of v1, v1beta1"))
		} else if !sets.New(h.arv...).HasAny("v1", "v1beta1") {
			errs = append(errs, field.Invalid(p.Child("admissionReviewVersions"), h.arv, "must include at least one of v1, v1beta1"))
		}
		if h.mutating && h.reinvoke != nil && *h.reinvoke != admissionregistrationv1.NeverReinvocationPolicy && *h.reinvoke != admissionregistrationv1.IfNeededReinvocationPolicy {
			errs = append(errs, field.NotSupported(p.Child("reinvocationPolicy"), *h.reinvoke, []string{string(admissionregistrationv1.IfNeededReinvocationPolicy), string(admissionregistrationv1.NeverReinvocationPolicy)}))
		}
	}
	return errs
}

func validateClientConfig(cc *admissionregistrationv1.WebhookClientConfig, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	if (cc.URL == nil) == (cc.Service == nil) {
		return field.ErrorList{field.Required(fld, "exactly one of url or service is required")}
	}
	if cc.URL != nil {
		u, err := url.Parse(*cc.URL)
		switch {
		case err != nil:
			errs = append(errs, field.Invalid(fld.Child("url"), *cc.URL, "host must be specified"))
		case u.Scheme != "https":
			errs = append(errs, field.Invalid(fld.Child("url"), u.Scheme, "'https' is the only allowed URL scheme"))
		case u.Host == "":
			errs = append(errs, field.Invalid(fld.Child("url"), u.Host, "host must be specified"))
		case u.User != nil:
			errs = append(errs, field.Invalid(fld.Child("url"), u.User.String(), "user information is not permitted in the URL"))
		case u.Fragment != "" || u.RawQuery != "":
			errs = append(errs, field.Invalid(fld.Child("url"), *cc.URL, "fragments and query parameters are not permitted in the URL"))
		}
		return errs
	}
	s := cc.Service
	sp := fld.Child("service")
	if s.Name == "" {
		errs = append(errs, field.Required(sp.Child("name"), "service name is required"))
	}
	if s.Namespace == "" {
		errs = append(errs, field.Required(sp.Child("namespace"), "service namespace is required"))
	}
	if s.Port != nil {
		for _, msg := range validation.IsValidPortNum(int(*s.Port)) {
			errs = append(errs, field.Invalid(sp.Child("port"), *s.Port, msg))
		}
	}
	if s.Path != nil && !strings.HasPrefix(*s.Path, "/") {
		errs = append(errs, field.Invalid(sp.Child("path"), *s.Path, "must start with a '/'"))
	}
	return errs
}
