package kinds

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Validation of apps/v1 workloads and ReplicationControllers (upstream's
// pkg/apis/apps/validation and the RC part of core validation).

func init() {
	validators[gk("apps", "Deployment")] = func(_ context.Context, obj runtime.Object) field.ErrorList {
		return validateDeploymentSpec(&obj.(*appsv1.Deployment).Spec, field.NewPath("spec"))
	}
	updateValidators[gk("apps", "Deployment")] = func(_ context.Context, obj, old runtime.Object) field.ErrorList {
		return validateSelectorImmutable(obj.(*appsv1.Deployment).Spec.Selector, old.(*appsv1.Deployment).Spec.Selector)
	}
	validators[gk("apps", "ReplicaSet")] = func(_ context.Context, obj runtime.Object) field.ErrorList {
		rs := obj.(*appsv1.ReplicaSet)
		spec := field.NewPath("spec")
		var errs field.ErrorList
		errs = append(errs, validateReplicas(rs.Spec.Replicas, spec)...)
		errs = append(errs, validateNonnegative(int64(rs.Spec.MinReadySeconds), spec.Child("minReadySeconds"))...)
		errs = append(errs, validateWorkloadSelector(rs.Spec.Selector, &rs.Spec.Template, spec, "deployment")...)
		errs = append(errs, validateAlwaysTemplate(&rs.Spec.Template, spec.Child("template"))...)
		return errs
	}
	updateValidators[gk("apps", "ReplicaSet")] = func(_ context.Context, obj, old runtime.Object) field.ErrorList {
		return validateSelectorImmutable(obj.(*appsv1.ReplicaSet).Spec.Selector, old.(*appsv1.ReplicaSet).Spec.Selector)
	}
	validators[gk("apps", "StatefulSet")] = func(_ context.Context, obj runtime.Object) field.ErrorList {
		return validateStatefulSetSpec(&obj.(*appsv1.StatefulSet).Spec, field.NewPath("spec"))
	}
	updateValidators[gk("apps", "StatefulSet")] = func(_ context.Context, obj, old runtime.Object) field.ErrorList {
		return validateStatefulSetUpdate(obj.(*appsv1.StatefulSet), old.(*appsv1.StatefulSet))
	}
	validators[gk("apps", "DaemonSet")] = func(_ context.Context, obj runtime.Object) field.ErrorList {
		return validateDaemonSetSpec(&obj.(*appsv1.DaemonSet).Spec, field.NewPath("spec"))
	}
	updateValidators[gk("apps", "DaemonSet")] = func(_ context.Context, obj, old runtime.Object) field.ErrorList {
		return validateSelectorImmutable(obj.(*appsv1.DaemonSet).Spec.Selector, old.(*appsv1.DaemonSet).Spec.Selector)
	}
	validators[gk("apps", "ControllerRevision")] = func(_ context.Context, obj runtime.Object) field.ErrorList {
		cr := obj.(*appsv1.ControllerRevision)
		return validateNonnegative(cr.Revision, field.NewPath("revision"))
	}
	updateValidators[gk("apps", "ControllerRevision")] = func(_ context.Context, obj, old runtime.Object) field.ErrorList {
		n, o := obj.(*appsv1.ControllerRevision), old.(*appsv1.ControllerRevision)
		if !apiequality.Semantic.DeepEqual(n.Data, o.Data) {
			return field.ErrorList{field.Invalid(field.NewPath("data"), "", "field is immutable")}
		}
		return nil
	}
	validators[gk("", "ReplicationController")] = func(_ context.Context, obj runtime.Object) field.ErrorList {
		return validateRCSpec(&obj.(*corev1.ReplicationController).Spec, field.NewPath("spec"))
	}
}

func validateReplicas(r *int32, spec *field.Path) field.ErrorList {
	if r == nil {
		return nil
	}
	return validateNonnegative(int64(*r), spec.Child("replicas"))
}

// validateWorkloadSelector requires a non-empty, valid selector that
// matches the template's labels.
func validateWorkloadSelector(sel *metav1.LabelSelector, t *corev1.PodTemplateSpec, spec *field.Path, kindWord string) field.ErrorList {
	var errs field.ErrorList
	if sel == nil {
		return field.ErrorList{field.Required(spec.Child("selector"), "")}
	}
	errs = append(errs, metav1validation.ValidateLabelSelector(sel, metav1validation.LabelSelectorValidationOptions{}, spec.Child("selector"))...)
	if len(sel.MatchLabels)+len(sel.MatchExpressions) == 0 {
		errs = append(errs, field.Invalid(spec.Child("selector"), sel, "empty selector is invalid for "+kindWord))
	}
	selector, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return append(errs, field.Invalid(spec.Child("selector"), sel, "invalid label selector"))
	}
	if !selector.Empty() && !selector.Matches(labels.Set(t.Labels)) {
		errs = append(errs, field.Invalid(spec.Child("template", "metadata", "labels"), t.Labels, "`selector` does not match template `labels`"))
	}
	return errs
}

// validateAlwaysTemplate checks a template whose pods must run forever.
func validateAlwaysTemplate(t *corev1.PodTemplateSpec, fld *field.Path) field.ErrorList {
	errs := validatePodTemplateSpec(t, fld)
	if t.Spec.RestartPolicy != corev1.RestartPolicyAlways {
		errs = append(errs, field.NotSupported(fld.Child("spec", "restartPolicy"), t.Spec.RestartPolicy, []string{string(corev1.RestartPolicyAlways)}))
	}
	if t.Spec.ActiveDeadlineSeconds != nil {
		errs = append(errs, field.Forbidden(fld.Child("spec", "activeDeadlineSeconds"), "activeDeadlineSeconds in ReplicaSet is not Supported"))
	}
	return errs
}

func validateSelectorImmutable(sel, old *metav1.LabelSelector) field.ErrorList {
	return apimachineryvalidation.ValidateImmutableField(sel, old, field.NewPath("spec", "selector"))
}

// intOrPercentValue returns the value and whether it is a percentage.
func intOrPercentValue(v intstr.IntOrString) (int, bool, error) {
	if v.Type == intstr.Int {
		return v.IntValue(), false, nil
	}
	s, ok := strings.CutSuffix(v.StrVal, "%")
	if !ok {
		return 0, false, fmt.Errorf("not a percentage")
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, false, err
	}
	return n, true, nil
}

// validateIntOrPercent checks a non-negative int or a valid percentage,
// at most 100%.
func validateIntOrPercent(v *intstr.IntOrString, fld *field.Path) field.ErrorList {
	if v == nil {
		return nil
	}
	var errs field.ErrorList
	if v.Type == intstr.String {
		for _, msg := range validation.IsValidPercent(v.StrVal) {
			errs = append(errs, field.Invalid(fld, v.StrVal, msg))
		}
		if len(errs) > 0 {
			return errs
		}
	}
	n, pct, err := intOrPercentValue(*v)
	if err != nil {
		return append(errs, field.Invalid(fld, v.String(), "must be an integer or percentage (e.g '5%')"))
	}
	if n < 0 {
		errs = append(errs, field.Invalid(fld, v.String(), "must be greater than or equal to 0"))
	}
	if pct && n > 100 {
		errs = append(errs, field.Invalid(fld, v.String(), "must not be greater than 100%"))
	}
	return errs
}

func isZeroIntOrPercent(v *intstr.IntOrString) bool {
	if v == nil {
		return true
	}
	n, _, err := intOrPercentValue(*v)
	return err == nil && n == 0
}

func validateDeploymentSpec(s *appsv1.DeploymentSpec, spec *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, validateReplicas(s.Replicas, spec)...)
	errs = append(errs, validateWorkloadSelector(s.Selector, &s.Template, spec, "deployment")...)
	errs = append(errs, validateAlwaysTemplate(&s.Template, spec.Child("template"))...)
	st := spec.Child("strategy")
	switch s.Strategy.Type {
	case appsv1.RecreateDeploymentStrategyType:
		if s.Strategy.RollingUpdate != nil {
			errs = append(errs, field.Forbidden(st.Child("rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'"))
		}
	case appsv1.RollingUpdateDeploymentStrategyType:
		ru := s.Strategy.RollingUpdate
		if ru == nil {
			errs = append(errs, field.Required(st.Child("rollingUpdate"), "this should be defaulted and never be nil"))
			break
		}
		p := st.Child("rollingUpdate")
		errs = append(errs, validateIntOrPercent(ru.MaxUnavailable, p.Child("maxUnavailable"))...)
		errs = append(errs, validateIntOrPercent(ru.MaxSurge, p.Child("maxSurge"))...)
		if isZeroIntOrPercent(ru.MaxUnavailable) && isZeroIntOrPercent(ru.MaxSurge) {
			errs = append(errs, field.Invalid(p.Child("maxUnavailable"), ru.MaxUnavailable, "may not be 0 when `maxSurge` is 0"))
		}
	case "":
		errs = append(errs, field.Required(st.Child("type"), ""))
	default:
		errs = append(errs, field.NotSupported(st.Child("type"), s.Strategy.Type,
			[]string{string(appsv1.RecreateDeploymentStrategyType), string(appsv1.RollingUpdateDeploymentStrategyType)}))
	}
	errs = append(errs, validateNonnegative(int64(s.MinReadySeconds), spec.Child("minReadySeconds"))...)
	if s.RevisionHistoryLimit != nil {
		errs = append(errs, validateNonnegative(int64(*s.RevisionHistoryLimit), spec.Child("revisionHistoryLimit"))...)
	}
	if s.ProgressDeadlineSeconds != nil {
		errs = append(errs, validateNonnegative(int64(*s.ProgressDeadlineSeconds), spec.Child("progressDeadlineSeconds"))...)
		if *s.ProgressDeadlineSeconds <= s.MinReadySeconds {
			errs = append(errs, field.Invalid(spec.Child("progressDeadlineSeconds"), *s.ProgressDeadlineSeconds, "must be greater than minReadySeconds"))
		}
	}
	return errs
}

// statefulSetPodTemplate is the template as its pods get it: each
// volumeClaimTemplate is a claim volume of the same name (unless the
// template has a volume of that name), so mounts of claim templates
// resolve, as upstream, which checks mounts against the union of volumes
// and claim templates.
func statefulSetPodTemplate(s *appsv1.StatefulSetSpec) *corev1.PodTemplateSpec {
	if len(s.VolumeClaimTemplates) == 0 {
		return &s.Template
	}
	t := s.Template
	t.Spec.Volumes = slices.Clone(s.Template.Spec.Volumes)
	for _, c := range s.VolumeClaimTemplates {
		if slices.ContainsFunc(t.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == c.Name }) {
			continue
		}
		t.Spec.Volumes = append(t.Spec.Volumes, corev1.Volume{Name: c.Name, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: c.Name},
		}})
	}
	return &t
}

func validateStatefulSetSpec(s *appsv1.StatefulSetSpec, spec *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch s.PodManagementPolicy {
	case appsv1.OrderedReadyPodManagement, appsv1.ParallelPodManagement:
	case "":
		errs = append(errs, field.Required(spec.Child("podManagementPolicy"), ""))
	default:
		errs = append(errs, field.Invalid(spec.Child("podManagementPolicy"), s.PodManagementPolicy,
			fmt.Sprintf("must be '%s' or '%s'", appsv1.OrderedReadyPodManagement, appsv1.ParallelPodManagement)))
	}
	us := spec.Child("updateStrategy")
	switch s.UpdateStrategy.Type {
	case "":
		errs = append(errs, field.Required(us, ""))
	case appsv1.OnDeleteStatefulSetStrategyType:
		if s.UpdateStrategy.RollingUpdate != nil {
			errs = append(errs, field.Invalid(us.Child("rollingUpdate"), s.UpdateStrategy.RollingUpdate,
				fmt.Sprintf("only allowed for updateStrategy '%s'", appsv1.RollingUpdateStatefulSetStrategyType)))
		}
	case appsv1.RollingUpdateStatefulSetStrategyType:
		if ru := s.UpdateStrategy.RollingUpdate; ru != nil {
			if ru.Partition != nil {
				errs = append(errs, validateNonnegative(int64(*ru.Partition), us.Child("rollingUpdate", "partition"))...)
			}
			if ru.MaxUnavailable != nil {
				p := us.Child("rollingUpdate", "maxUnavailable")
				errs = append(errs, validateIntOrPercent(ru.MaxUnavailable, p)...)
				if isZeroIntOrPercent(ru.MaxUnavailable) {
					errs = append(errs, field.Invalid(p, ru.MaxUnavailable, "must be greater than 0"))
				}
			}
		}
	default:
		errs = append(errs, field.Invalid(us, s.UpdateStrategy,
			fmt.Sprintf("must be '%s' or '%s'", appsv1.RollingUpdateStatefulSetStrategyType, appsv1.OnDeleteStatefulSetStrategyType)))
	}
	if p := s.PersistentVolumeClaimRetentionPolicy; p != nil {
		allowed := []string{string(appsv1.RetainPersistentVolumeClaimRetentionPolicyType), string(appsv1.DeletePersistentVolumeClaimRetentionPolicyType)}
		pp := spec.Child("persistentVolumeClaimRetentionPolicy")
		for name, v := range map[string]appsv1.PersistentVolumeClaimRetentionPolicyType{"whenDeleted": p.WhenDeleted, "whenScaled": p.WhenScaled} {
			if v != appsv1.RetainPersistentVolumeClaimRetentionPolicyType && v != appsv1.DeletePersistentVolumeClaimRetentionPolicyType {
				errs = append(errs, field.NotSupported(pp.Child(name), v, allowed))
			}
		}
	}
	errs = append(errs, validateReplicas(s.Replicas, spec)...)
	errs = append(errs, validateNonnegative(int64(s.MinReadySeconds), spec.Child("minReadySeconds"))...)
	if s.Ordinals != nil {
		errs = append(errs, validateNonnegative(int64(s.Ordinals.Start), spec.Child("ordinals", "start"))...)
	}
	if s.ServiceName != "" {
		for _, msg := range validation.IsDNS1123Label(s.ServiceName) {
			errs = append(errs, field.Invalid(spec.Child("serviceName"), s.ServiceName, msg))
		}
	}
	errs = append(errs, validateWorkloadSelector(s.Selector, &s.Template, spec, "statefulset")...)
	errs = append(errs, validateAlwaysTemplate(statefulSetPodTemplate(s), spec.Child("template"))...)
	for i := range s.VolumeClaimTemplates {
		errs = append(errs, validatePVCSpec(&s.VolumeClaimTemplates[i].Spec, spec.Child("volumeClaimTemplates").Index(i).Child("spec"), true)...)
	}
	return errs
}

func validateStatefulSetUpdate(ss, old *appsv1.StatefulSet) field.ErrorList {
	// Only these fields may change; the rest of the spec is fixed.
	n := ss.Spec.DeepCopy()
	n.Replicas = old.Spec.Replicas
	n.Ordinals = old.Spec.Ordinals
	n.Template = old.Spec.Template
	n.UpdateStrategy = old.Spec.UpdateStrategy
	n.MinReadySeconds = old.Spec.MinReadySeconds
	n.PersistentVolumeClaimRetentionPolicy = old.Spec.PersistentVolumeClaimRetentionPolicy
	n.RevisionHistoryLimit = old.Spec.RevisionHistoryLimit
	if !apiequality.Semantic.DeepEqual(*n, old.Spec) {
		return field.ErrorList{field.Forbidden(field.NewPath("spec"), "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden")}
	}
	return nil
}

func validateDaemonSetSpec(s *appsv1.DaemonSetSpec, spec *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, validateWorkloadSelector(s.Selector, &s.Template, spec, "daemonset")...)
	errs = append(errs, validateAlwaysTemplate(&s.Template, spec.Child("template"))...)
	errs = append(errs, validateNonnegative(int64(s.MinReadySeconds), spec.Child("minReadySeconds"))...)
	if s.RevisionHistoryLimit != nil {
		errs = append(errs, validateNonnegative(int64(*s.RevisionHistoryLimit), spec.Child("revisionHistoryLimit"))...)
	}
	us := spec.Child("updateStrategy")
	switch s.UpdateStrategy.Type {
	case appsv1.OnDeleteDaemonSetStrategyType:
	case appsv1.RollingUpdateDaemonSetStrategyType:
		ru := s.UpdateStrategy.RollingUpdate
		if ru == nil {
			errs = append(errs, field.Required(us.Child("rollingUpdate"), ""))
			break
		}
		p := us.Child("rollingUpdate")
		errs = append(errs, validateIntOrPercent(ru.MaxUnavailable, p.Child("maxUnavailable"))...)
		errs = append(errs, validateIntOrPercent(ru.MaxSurge, p.Child("maxSurge"))...)
		if isZeroIntOrPercent(ru.MaxUnavailable) && isZeroIntOrPercent(ru.MaxSurge) {
			errs = append(errs, field.Invalid(p.Child("maxUnavailable"), ru.MaxUnavailable, "may not be 0 when `maxSurge` is 0"))
		}
		if !isZeroIntOrPercent(ru.MaxUnavailable) && !isZeroIntOrPercent(ru.MaxSurge) {
			errs = append(errs, field.Invalid(p.Child("maxUnavailable"), ru.MaxUnavailable, "may not be set when maxSurge is non-zero"))
		}
	case "":
		errs = append(errs, field.Required(us.Child("type"), ""))
	default:
		errs = append(errs, field.NotSupported(us.Child("type"), s.UpdateStrategy.Type,
			[]string{string(appsv1.OnDeleteDaemonSetStrategyType), string(appsv1.RollingUpdateDaemonSetStrategyType)}))
	}
	return errs
}

func validateRCSpec(s *corev1.ReplicationControllerSpec, spec *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, validateReplicas(s.Replicas, spec)...)
	errs = append(errs, validateNonnegative(int64(s.MinReadySeconds), spec.Child("minReadySeconds"))...)
	if len(s.Selector) == 0 {
		errs = append(errs, field.Required(spec.Child("selector"), ""))
	} else {
		errs = append(errs, metav1validation.ValidateLabels(s.Selector, spec.Child("selector"))...)
	}
	if s.Template == nil {
		return append(errs, field.Required(spec.Child("template"), ""))
	}
	if len(s.Selector) > 0 && !labels.SelectorFromSet(s.Selector).Matches(labels.Set(s.Template.Labels)) {
		errs = append(errs, field.Invalid(spec.Child("template", "metadata", "labels"), s.Template.Labels, "`selector` does not match template `labels`"))
	}
	errs = append(errs, validateAlwaysTemplate(s.Template, spec.Child("template"))...)
	return errs
}
