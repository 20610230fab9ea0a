package kinds

import (
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// hooksFor returns the hooks Builtins() installed for a kind, so tests go
// through the same wiring as the server.
func defaultFor(t *testing.T, group, kind string) func(runtime.Object) {
	t.Helper()
	for _, r := range Builtins() {
		if r.Group == group && r.Kind == kind {
			if r.Hooks.Default == nil {
				t.Fatalf("%s/%s has no Default hook", group, kind)
			}
			return r.Hooks.Default
		}
	}
	t.Fatalf("%s/%s not registered", group, kind)
	return nil
}

type check struct {
	name      string
	got, want any
}

func runChecks(t *testing.T, checks []check) {
	t.Helper()
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
}

func val[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

func minimalPodSpec() corev1.PodSpec {
	return corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: "init", Image: "busybox:1.36"}},
		Containers: []corev1.Container{{
			Name: "app", Image: "nginx",
			Ports: []corev1.ContainerPort{{ContainerPort: 80}},
			Env:   []corev1.EnvVar{{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
			LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
				HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(80)}}},
			Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")}},
		}},
		Volumes: []corev1.Volume{
			{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "x"}}},
			{Name: "c", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "x"}}}},
			{Name: "d", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{}}},
			{Name: "p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{}}},
			{Name: "h", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/tmp"}}},
			{Name: "e"},
		},
	}
}

func TestPodDefaults(t *testing.T) {
	pod := &corev1.Pod{Spec: minimalPodSpec()}
	defaultFor(t, "", "Pod")(pod)
	s := pod.Spec
	c := s.Containers[0]
	runChecks(t, []check{
		{"restartPolicy", s.RestartPolicy, corev1.RestartPolicyAlways},
		{"dnsPolicy", s.DNSPolicy, corev1.DNSClusterFirst},
		{"schedulerName", s.SchedulerName, corev1.DefaultSchedulerName},
		{"terminationGracePeriodSeconds", val(s.TerminationGracePeriodSeconds), int64(30)},
		{"securityContext", s.SecurityContext != nil, true},
		{"enableServiceLinks", val(s.EnableServiceLinks), true},
		{"imagePullPolicy untagged", c.ImagePullPolicy, corev1.PullAlways},
		{"imagePullPolicy tagged init", s.InitContainers[0].ImagePullPolicy, corev1.PullIfNotPresent},
		{"init terminationMessagePath", s.InitContainers[0].TerminationMessagePath, "/dev/termination-log"},
		{"terminationMessagePath", c.TerminationMessagePath, "/dev/termination-log"},
		{"terminationMessagePolicy", c.TerminationMessagePolicy, corev1.TerminationMessageReadFile},
		{"port protocol", c.Ports[0].Protocol, corev1.ProtocolTCP},
		{"env fieldRef apiVersion", c.Env[0].ValueFrom.FieldRef.APIVersion, "v1"},
		{"probe timeoutSeconds", c.LivenessProbe.TimeoutSeconds, int32(1)},
		{"probe periodSeconds", c.LivenessProbe.PeriodSeconds, int32(10)},
		{"probe successThreshold", c.LivenessProbe.SuccessThreshold, int32(1)},
		{"probe failureThreshold", c.LivenessProbe.FailureThreshold, int32(3)},
		{"probe httpGet scheme", c.LivenessProbe.HTTPGet.Scheme, corev1.URISchemeHTTP},
		{"probe httpGet path", c.LivenessProbe.HTTPGet.Path, "/"},
		{"requests from limits", c.Resources.Requests.Cpu().String(), "500m"},
		{"secret defaultMode", val(s.Volumes[0].Secret.DefaultMode), int32(420)},
		{"configMap defaultMode", val(s.Volumes[1].ConfigMap.DefaultMode), int32(420)},
		{"downwardAPI defaultMode", val(s.Volumes[2].DownwardAPI.DefaultMode), int32(420)},
		{"projected defaultMode", val(s.Volumes[3].Projected.DefaultMode), int32(420)},
		{"hostPath type", val(s.Volumes[4].HostPath.Type), corev1.HostPathUnset},
		{"no source is emptyDir", s.Volumes[5].EmptyDir != nil, true},
	})
}

func TestPullPolicy(t *testing.T) {
	for image, want := range map[string]corev1.PullPolicy{
		"nginx":                        corev1.PullAlways,
		"nginx:latest":                 corev1.PullAlways,
		"nginx:1.27":                   corev1.PullIfNotPresent,
		"registry:5000/nginx":          corev1.PullAlways,
		"registry:5000/nginx:1.2":      corev1.PullIfNotPresent,
		"nginx@sha256:0123456789abcde": corev1.PullIfNotPresent,
	} {
		if got := pullPolicyFor(image); got != want {
			t.Errorf("pullPolicyFor(%q) = %s, want %s", image, got, want)
		}
	}
}

func TestExplicitValuesAreKept(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{
		RestartPolicy: corev1.RestartPolicyNever, DNSPolicy: corev1.DNSDefault,
		TerminationGracePeriodSeconds: ptrTo(int64(5)),
		Containers:                    []corev1.Container{{Name: "a", Image: "nginx", ImagePullPolicy: corev1.PullNever}},
	}}
	defaultFor(t, "", "Pod")(pod)
	runChecks(t, []check{
		{"restartPolicy", pod.Spec.RestartPolicy, corev1.RestartPolicyNever},
		{"dnsPolicy", pod.Spec.DNSPolicy, corev1.DNSDefault},
		{"terminationGracePeriodSeconds", val(pod.Spec.TerminationGracePeriodSeconds), int64(5)},
		{"imagePullPolicy", pod.Spec.Containers[0].ImagePullPolicy, corev1.PullNever},
	})
}

func TestWorkloadDefaults(t *testing.T) {
	t.Run("Deployment", func(t *testing.T) {
		d := &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: minimalPodSpec()}}}
		defaultFor(t, "apps", "Deployment")(d)
		ru := d.Spec.Strategy.RollingUpdate
		runChecks(t, []check{
			{"replicas", val(d.Spec.Replicas), int32(1)},
			{"strategy", d.Spec.Strategy.Type, appsv1.RollingUpdateDeploymentStrategyType},
			{"maxUnavailable", ru.MaxUnavailable.String(), "25%"},
			{"maxSurge", ru.MaxSurge.String(), "25%"},
			{"revisionHistoryLimit", val(d.Spec.RevisionHistoryLimit), int32(10)},
			{"progressDeadlineSeconds", val(d.Spec.ProgressDeadlineSeconds), int32(600)},
			{"template restartPolicy", d.Spec.Template.Spec.RestartPolicy, corev1.RestartPolicyAlways},
			{"template pull policy", d.Spec.Template.Spec.Containers[0].ImagePullPolicy, corev1.PullAlways},
			// SetDefaults_Pod (enableServiceLinks) is for pods, not templates.
			{"template enableServiceLinks", d.Spec.Template.Spec.EnableServiceLinks == nil, true},
		})
	})
	t.Run("Recreate has no rollingUpdate", func(t *testing.T) {
		d := &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}}}
		defaultFor(t, "apps", "Deployment")(d)
		if d.Spec.Strategy.RollingUpdate != nil {
			t.Errorf("rollingUpdate = %+v, want nil", d.Spec.Strategy.RollingUpdate)
		}
	})
	t.Run("ReplicaSet", func(t *testing.T) {
		rs := &appsv1.ReplicaSet{}
		defaultFor(t, "apps", "ReplicaSet")(rs)
		runChecks(t, []check{{"replicas", val(rs.Spec.Replicas), int32(1)}, {"template dnsPolicy", rs.Spec.Template.Spec.DNSPolicy, corev1.DNSClusterFirst}})
	})
	t.Run("StatefulSet", func(t *testing.T) {
		ss := &appsv1.StatefulSet{Spec: appsv1.StatefulSetSpec{VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{}}}}
		defaultFor(t, "apps", "StatefulSet")(ss)
		runChecks(t, []check{
			{"replicas", val(ss.Spec.Replicas), int32(1)},
			{"podManagementPolicy", ss.Spec.PodManagementPolicy, appsv1.OrderedReadyPodManagement},
			{"updateStrategy", ss.Spec.UpdateStrategy.Type, appsv1.RollingUpdateStatefulSetStrategyType},
			{"partition", val(ss.Spec.UpdateStrategy.RollingUpdate.Partition), int32(0)},
			{"revisionHistoryLimit", val(ss.Spec.RevisionHistoryLimit), int32(10)},
			{"whenDeleted", ss.Spec.PersistentVolumeClaimRetentionPolicy.WhenDeleted, appsv1.RetainPersistentVolumeClaimRetentionPolicyType},
			{"whenScaled", ss.Spec.PersistentVolumeClaimRetentionPolicy.WhenScaled, appsv1.RetainPersistentVolumeClaimRetentionPolicyType},
			{"claim volumeMode", val(ss.Spec.VolumeClaimTemplates[0].Spec.VolumeMode), corev1.PersistentVolumeFilesystem},
		})
	})
	t.Run("DaemonSet", func(t *testing.T) {
		ds := &appsv1.DaemonSet{}
		defaultFor(t, "apps", "DaemonSet")(ds)
		ru := ds.Spec.UpdateStrategy.RollingUpdate
		runChecks(t, []check{
			{"updateStrategy", ds.Spec.UpdateStrategy.Type, appsv1.RollingUpdateDaemonSetStrategyType},
			{"maxUnavailable", ru.MaxUnavailable.String(), "1"},
			{"maxSurge", ru.MaxSurge.String(), "0"},
			{"revisionHistoryLimit", val(ds.Spec.RevisionHistoryLimit), int32(10)},
		})
	})
	t.Run("ReplicationController", func(t *testing.T) {
		rc := &corev1.ReplicationController{Spec: corev1.ReplicationControllerSpec{Template: &corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "x"}}}}}
		defaultFor(t, "", "ReplicationController")(rc)
		runChecks(t, []check{
			{"replicas", val(rc.Spec.Replicas), int32(1)},
			{"selector", rc.Spec.Selector["app"], "x"},
			{"labels", rc.Labels["app"], "x"},
			{"template restartPolicy", rc.Spec.Template.Spec.RestartPolicy, corev1.RestartPolicyAlways},
		})
	})
	t.Run("PodTemplate", func(t *testing.T) {
		pt := &corev1.PodTemplate{Template: corev1.PodTemplateSpec{Spec: minimalPodSpec()}}
		defaultFor(t, "", "PodTemplate")(pt)
		runChecks(t, []check{{"schedulerName", pt.Template.Spec.SchedulerName, corev1.DefaultSchedulerName}})
	})
}

func TestJobDefaults(t *testing.T) {
	j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "pi", UID: "u-1"},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever}}}}
	defaultFor(t, "batch", "Job")(j)
	tl := j.Spec.Template.Labels
	runChecks(t, []check{
		{"completions", val(j.Spec.Completions), int32(1)},
		{"parallelism", val(j.Spec.Parallelism), int32(1)},
		{"backoffLimit", val(j.Spec.BackoffLimit), int32(6)},
		{"completionMode", val(j.Spec.CompletionMode), batchv1.NonIndexedCompletion},
		{"suspend", val(j.Spec.Suspend), false},
		{"podReplacementPolicy", val(j.Spec.PodReplacementPolicy), batchv1.TerminatingOrFailed},
		{"selector", j.Spec.Selector.MatchLabels["batch.kubernetes.io/controller-uid"], "u-1"},
		{"template uid label", tl["batch.kubernetes.io/controller-uid"], "u-1"},
		{"template job-name label", tl["batch.kubernetes.io/job-name"], "pi"},
		{"template legacy uid label", tl["controller-uid"], "u-1"},
		{"template legacy job-name label", tl["job-name"], "pi"},
		{"job labels from template", j.Labels["job-name"], "pi"},
		{"template restartPolicy kept", j.Spec.Template.Spec.RestartPolicy, corev1.RestartPolicyNever},
	})

	t.Run("completions set, parallelism defaulted", func(t *testing.T) {
		j := &batchv1.Job{Spec: batchv1.JobSpec{Completions: ptrTo(int32(5))}}
		defaultFor(t, "batch", "Job")(j)
		runChecks(t, []check{{"completions", val(j.Spec.Completions), int32(5)}, {"parallelism", val(j.Spec.Parallelism), int32(1)}})
	})
	t.Run("parallelism set, completions stay nil", func(t *testing.T) {
		j := &batchv1.Job{Spec: batchv1.JobSpec{Parallelism: ptrTo(int32(3))}}
		defaultFor(t, "batch", "Job")(j)
		runChecks(t, []check{{"completions", j.Spec.Completions == nil, true}, {"parallelism", val(j.Spec.Parallelism), int32(3)}})
	})
	t.Run("manual selector is left alone", func(t *testing.T) {
		j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "m", UID: "u-2"}, Spec: batchv1.JobSpec{ManualSelector: ptrTo(true)}}
		defaultFor(t, "batch", "Job")(j)
		runChecks(t, []check{{"selector", j.Spec.Selector == nil, true}, {"template labels", len(j.Spec.Template.Labels), 0}})
	})
	t.Run("CronJob", func(t *testing.T) {
		cj := &batchv1.CronJob{}
		defaultFor(t, "batch", "CronJob")(cj)
		runChecks(t, []check{
			{"concurrencyPolicy", cj.Spec.ConcurrencyPolicy, batchv1.AllowConcurrent},
			{"suspend", val(cj.Spec.Suspend), false},
			{"successfulJobsHistoryLimit", val(cj.Spec.SuccessfulJobsHistoryLimit), int32(3)},
			{"failedJobsHistoryLimit", val(cj.Spec.FailedJobsHistoryLimit), int32(1)},
			{"job template pod dnsPolicy", cj.Spec.JobTemplate.Spec.Template.Spec.DNSPolicy, corev1.DNSClusterFirst},
			// Job-level defaults are not applied to job templates.
			{"job template backoffLimit", cj.Spec.JobTemplate.Spec.BackoffLimit == nil, true},
		})
	})
}

func TestServiceDefaults(t *testing.T) {
	svc := &corev1.Service{Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}, {Port: 443, TargetPort: intstr.FromString("https")}}}}
	defaultFor(t, "", "Service")(svc)
	runChecks(t, []check{
		{"type", svc.Spec.Type, corev1.ServiceTypeClusterIP},
		{"sessionAffinity", svc.Spec.SessionAffinity, corev1.ServiceAffinityNone},
		{"protocol", svc.Spec.Ports[0].Protocol, corev1.ProtocolTCP},
		{"targetPort from port", svc.Spec.Ports[0].TargetPort, intstr.FromInt32(80)},
		{"named targetPort kept", svc.Spec.Ports[1].TargetPort, intstr.FromString("https")},
		{"internalTrafficPolicy", val(svc.Spec.InternalTrafficPolicy), corev1.ServiceInternalTrafficPolicyCluster},
		{"externalTrafficPolicy for ClusterIP", svc.Spec.ExternalTrafficPolicy, corev1.ServiceExternalTrafficPolicy("")},
	})
	np := &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort}}
	defaultFor(t, "", "Service")(np)
	runChecks(t, []check{{"externalTrafficPolicy", np.Spec.ExternalTrafficPolicy, corev1.ServiceExternalTrafficPolicyCluster}})
	en := &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com"}}
	defaultFor(t, "", "Service")(en)
	runChecks(t, []check{{"ExternalName internalTrafficPolicy", en.Spec.InternalTrafficPolicy == nil, true}})
}

func TestOtherDefaults(t *testing.T) {
	t.Run("Secret", func(t *testing.T) {
		s := &corev1.Secret{Data: map[string][]byte{"a": []byte("1")}, StringData: map[string]string{"a": "2", "b": "3"}}
		defaultFor(t, "", "Secret")(s)
		runChecks(t, []check{{"type", s.Type, corev1.SecretTypeOpaque}, {"stringData wins", string(s.Data["a"]), "2"},
			{"stringData merged", string(s.Data["b"]), "3"}, {"stringData cleared", s.StringData == nil, true}})
	})
	t.Run("PV and PVC", func(t *testing.T) {
		pv := &corev1.PersistentVolume{}
		defaultFor(t, "", "PersistentVolume")(pv)
		pvc := &corev1.PersistentVolumeClaim{}
		defaultFor(t, "", "PersistentVolumeClaim")(pvc)
		runChecks(t, []check{
			{"pv reclaimPolicy", pv.Spec.PersistentVolumeReclaimPolicy, corev1.PersistentVolumeReclaimRetain},
			{"pv volumeMode", val(pv.Spec.VolumeMode), corev1.PersistentVolumeFilesystem},
			{"pvc volumeMode", val(pvc.Spec.VolumeMode), corev1.PersistentVolumeFilesystem},
		})
	})
	t.Run("Endpoints and EndpointSlice", func(t *testing.T) {
		ep := &corev1.Endpoints{Subsets: []corev1.EndpointSubset{{Ports: []corev1.EndpointPort{{Port: 80}}}}}
		defaultFor(t, "", "Endpoints")(ep)
		es := &discoveryv1.EndpointSlice{Ports: []discoveryv1.EndpointPort{{Port: ptrTo(int32(80))}}}
		defaultFor(t, "discovery.k8s.io", "EndpointSlice")(es)
		runChecks(t, []check{{"endpoints protocol", ep.Subsets[0].Ports[0].Protocol, corev1.ProtocolTCP},
			{"slice protocol", val(es.Ports[0].Protocol), corev1.ProtocolTCP}})
	})
	t.Run("StorageClass and PriorityClass", func(t *testing.T) {
		sc := &storagev1.StorageClass{}
		defaultFor(t, "storage.k8s.io", "StorageClass")(sc)
		pc := &schedulingv1.PriorityClass{}
		defaultFor(t, "scheduling.k8s.io", "PriorityClass")(pc)
		runChecks(t, []check{
			{"reclaimPolicy", val(sc.ReclaimPolicy), corev1.PersistentVolumeReclaimDelete},
			{"volumeBindingMode", val(sc.VolumeBindingMode), storagev1.VolumeBindingImmediate},
			{"preemptionPolicy", val(pc.PreemptionPolicy), corev1.PreemptLowerPriority},
		})
	})
	t.Run("NetworkPolicy", func(t *testing.T) {
		np := &networkingv1.NetworkPolicy{Spec: networkingv1.NetworkPolicySpec{
			Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{}}}},
			Egress:  []networkingv1.NetworkPolicyEgressRule{{}},
		}}
		defaultFor(t, "networking.k8s.io", "NetworkPolicy")(np)
		ingressOnly := &networkingv1.NetworkPolicy{}
		defaultFor(t, "networking.k8s.io", "NetworkPolicy")(ingressOnly)
		runChecks(t, []check{
			{"policyTypes", len(np.Spec.PolicyTypes), 2},
			{"policyTypes[1]", np.Spec.PolicyTypes[1], networkingv1.PolicyTypeEgress},
			{"port protocol", val(np.Spec.Ingress[0].Ports[0].Protocol), corev1.ProtocolTCP},
			{"ingress only", len(ingressOnly.Spec.PolicyTypes), 1},
		})
	})
	t.Run("HPA", func(t *testing.T) {
		v2 := &autoscalingv2.HorizontalPodAutoscaler{}
		v1 := &autoscalingv1.HorizontalPodAutoscaler{Spec: autoscalingv1.HorizontalPodAutoscalerSpec{TargetCPUUtilizationPercentage: ptrTo(int32(50))}}
		d := defaultFor(t, "autoscaling", "HorizontalPodAutoscaler")
		d(v2)
		d(v1)
		runChecks(t, []check{
			{"v2 minReplicas", val(v2.Spec.MinReplicas), int32(1)},
			{"v2 cpu metric", val(v2.Spec.Metrics[0].Resource.Target.AverageUtilization), int32(80)},
			{"v1 minReplicas", val(v1.Spec.MinReplicas), int32(1)},
			{"v1 targetCPU kept", val(v1.Spec.TargetCPUUtilizationPercentage), int32(50)},
		})
	})
	t.Run("RBAC subjects", func(t *testing.T) {
		rb := &rbacv1.RoleBinding{Subjects: []rbacv1.Subject{{Kind: "User", Name: "a"}, {Kind: "Group", Name: "b"}, {Kind: "ServiceAccount", Name: "c"}}}
		defaultFor(t, "rbac.authorization.k8s.io", "RoleBinding")(rb)
		runChecks(t, []check{
			{"user apiGroup", rb.Subjects[0].APIGroup, rbacv1.GroupName},
			{"group apiGroup", rb.Subjects[1].APIGroup, rbacv1.GroupName},
			{"sa apiGroup", rb.Subjects[2].APIGroup, ""},
		})
	})
	t.Run("Webhooks", func(t *testing.T) {
		m := &admissionregistrationv1.MutatingWebhookConfiguration{Webhooks: []admissionregistrationv1.MutatingWebhook{{
			ClientConfig: admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Name: "s", Namespace: "n"}},
			Rules:        []admissionregistrationv1.RuleWithOperations{{}},
		}}}
		defaultFor(t, "admissionregistration.k8s.io", "MutatingWebhookConfiguration")(m)
		w := m.Webhooks[0]
		runChecks(t, []check{
			{"failurePolicy", val(w.FailurePolicy), admissionregistrationv1.Fail},
			{"matchPolicy", val(w.MatchPolicy), admissionregistrationv1.Equivalent},
			{"namespaceSelector", w.NamespaceSelector != nil, true},
			{"objectSelector", w.ObjectSelector != nil, true},
			{"timeoutSeconds", val(w.TimeoutSeconds), int32(10)},
			{"reinvocationPolicy", val(w.ReinvocationPolicy), admissionregistrationv1.NeverReinvocationPolicy},
			{"rule scope", val(w.Rules[0].Scope), admissionregistrationv1.AllScopes},
			{"service port", val(w.ClientConfig.Service.Port), int32(443)},
			{"sideEffects not defaulted in v1", w.SideEffects == nil, true},
		})
		v := &admissionregistrationv1.ValidatingWebhookConfiguration{Webhooks: []admissionregistrationv1.ValidatingWebhook{{}}}
		defaultFor(t, "admissionregistration.k8s.io", "ValidatingWebhookConfiguration")(v)
		runChecks(t, []check{{"validating failurePolicy", val(v.Webhooks[0].FailurePolicy), admissionregistrationv1.Fail}})
	})
}
