package kinds

import (
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Defaulting of the kinds outside core, apps and batch.

func init() {
	defaulters[gk("storage.k8s.io", "StorageClass")] = func(obj runtime.Object) {
		sc := obj.(*storagev1.StorageClass)
		if sc.ReclaimPolicy == nil {
			sc.ReclaimPolicy = ptrTo(corev1.PersistentVolumeReclaimDelete)
		}
		if sc.VolumeBindingMode == nil {
			sc.VolumeBindingMode = ptrTo(storagev1.VolumeBindingImmediate)
		}
	}
	defaulters[gk("scheduling.k8s.io", "PriorityClass")] = func(obj runtime.Object) {
		pc := obj.(*schedulingv1.PriorityClass)
		if pc.PreemptionPolicy == nil {
			pc.PreemptionPolicy = ptrTo(corev1.PreemptLowerPriority)
		}
	}
	defaulters[gk("networking.k8s.io", "NetworkPolicy")] = func(obj runtime.Object) {
		np := obj.(*networkingv1.NetworkPolicy)
		for i := range np.Spec.Ingress {
			defaultNetworkPolicyPorts(np.Spec.Ingress[i].Ports)
		}
		for i := range np.Spec.Egress {
			defaultNetworkPolicyPorts(np.Spec.Egress[i].Ports)
		}
		if len(np.Spec.PolicyTypes) == 0 {
			np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
			if len(np.Spec.Egress) > 0 {
				np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
			}
		}
	}
	defaulters[gk("autoscaling", "HorizontalPodAutoscaler")] = func(obj runtime.Object) {
		switch h := obj.(type) {
		case *autoscalingv1.HorizontalPodAutoscaler:
			if h.Spec.MinReplicas == nil {
				h.Spec.MinReplicas = ptrTo(int32(1))
			}
		case *autoscalingv2.HorizontalPodAutoscaler:
			defaultHPAv2(h)
		}
	}
	defaulters[gk("rbac.authorization.k8s.io", "RoleBinding")] = func(obj runtime.Object) {
		defaultSubjects(obj.(*rbacv1.RoleBinding).Subjects)
	}
	defaulters[gk("rbac.authorization.k8s.io", "ClusterRoleBinding")] = func(obj runtime.Object) {
		defaultSubjects(obj.(*rbacv1.ClusterRoleBinding).Subjects)
	}
	defaulters[gk("admissionregistration.k8s.io", "ValidatingWebhookConfiguration")] = func(obj runtime.Object) {
		c := obj.(*admissionregistrationv1.ValidatingWebhookConfiguration)
		for i := range c.Webhooks {
			w := &c.Webhooks[i]
			defaultWebhook(&w.FailurePolicy, &w.MatchPolicy, &w.NamespaceSelector, &w.ObjectSelector, &w.TimeoutSeconds, &w.ClientConfig, w.Rules)
		}
	}
	defaulters[gk("admissionregistration.k8s.io", "MutatingWebhookConfiguration")] = func(obj runtime.Object) {
		c := obj.(*admissionregistrationv1.MutatingWebhookConfiguration)
		for i := range c.Webhooks {
			w := &c.Webhooks[i]
			defaultWebhook(&w.FailurePolicy, &w.MatchPolicy, &w.NamespaceSelector, &w.ObjectSelector, &w.TimeoutSeconds, &w.ClientConfig, w.Rules)
			if w.ReinvocationPolicy == nil {
				w.ReinvocationPolicy = ptrTo(admissionregistrationv1.NeverReinvocationPolicy)
			}
		}
	}
}

func defaultNetworkPolicyPorts(ports []networkingv1.NetworkPolicyPort) {
	for i := range ports {
		if ports[i].Protocol == nil {
			ports[i].Protocol = ptrTo(corev1.ProtocolTCP)
		}
	}
}

func defaultSubjects(subjects []rbacv1.Subject) {
	for i := range subjects {
		s := &subjects[i]
		if s.APIGroup != "" {
			continue
		}
		switch s.Kind {
		case rbacv1.UserKind, rbacv1.GroupKind:
			s.APIGroup = rbacv1.GroupName
		}
	}
}

// defaultHPAv2 is upstream's autoscaling/v2 SetDefaults_HorizontalPodAutoscaler:
// minReplicas 1, an 80% CPU utilization metric when none is given, and the
// scaling rules of a behavior that is present.
func defaultHPAv2(h *autoscalingv2.HorizontalPodAutoscaler) {
	if h.Spec.MinReplicas == nil {
		h.Spec.MinReplicas = ptrTo(int32(1))
	}
	if len(h.Spec.Metrics) == 0 {
		h.Spec.Metrics = []autoscalingv2.MetricSpec{{
			Type: autoscalingv2.ResourceMetricSourceType,
			Resource: &autoscalingv2.ResourceMetricSource{
				Name: corev1.ResourceCPU,
				Target: autoscalingv2.MetricTarget{
					Type:               autoscalingv2.UtilizationMetricType,
					AverageUtilization: ptrTo(int32(80)),
				},
			},
		}}
	}
	b := h.Spec.Behavior
	if b == nil {
		return
	}
	b.ScaleUp = defaultScalingRules(b.ScaleUp, 0, []autoscalingv2.HPAScalingPolicy{
		{Type: autoscalingv2.PodsScalingPolicy, Value: 4, PeriodSeconds: 15},
		{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 15},
	})
	b.ScaleDown = defaultScalingRules(b.ScaleDown, 300, []autoscalingv2.HPAScalingPolicy{
		{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 15},
	})
}

func defaultScalingRules(r *autoscalingv2.HPAScalingRules, window int32, policies []autoscalingv2.HPAScalingPolicy) *autoscalingv2.HPAScalingRules {
	if r == nil {
		r = &autoscalingv2.HPAScalingRules{}
	}
	if r.StabilizationWindowSeconds == nil {
		r.StabilizationWindowSeconds = ptrTo(window)
	}
	if r.SelectPolicy == nil {
		r.SelectPolicy = ptrTo(autoscalingv2.MaxChangePolicySelect)
	}
	if len(r.Policies) == 0 {
		r.Policies = policies
	}
	return r
}

func defaultWebhook(fp **admissionregistrationv1.FailurePolicyType, mp **admissionregistrationv1.MatchPolicyType,
	nsSel, objSel **metav1.LabelSelector, timeout **int32, cc *admissionregistrationv1.WebhookClientConfig,
	rules []admissionregistrationv1.RuleWithOperations) {
	if *fp == nil {
		*fp = ptrTo(admissionregistrationv1.Fail)
	}
	if *mp == nil {
		*mp = ptrTo(admissionregistrationv1.Equivalent)
	}
	if *nsSel == nil {
		*nsSel = &metav1.LabelSelector{}
	}
	if *objSel == nil {
		*objSel = &metav1.LabelSelector{}
	}
	if *timeout == nil {
		*timeout = ptrTo(int32(10))
	}
	if cc.Service != nil && cc.Service.Port == nil {
		cc.Service.Port = ptrTo(int32(443))
	}
	for i := range rules {
		if rules[i].Scope == nil {
			rules[i].Scope = ptrTo(admissionregistrationv1.AllScopes)
		}
	}
}
