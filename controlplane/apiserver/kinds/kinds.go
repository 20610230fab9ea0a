// Package kinds registers Kubernetes' built-in resources with the API
// server's registry: names, scope, subresources, selectable fields and the
// hooks (defaulting, validation, printing) that give each kind upstream
// semantics.
package kinds

import (
	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Verbs every stored resource serves.
var allVerbs = []string{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}

type def struct {
	group, version, kind, plural string
	namespaced                   bool
	short, categories, subs      []string
	fields                       map[string]string
	hasSpec                      bool
	createOnUpdate               bool
	new                          func() runtime.Object
	keyPrefix                    string
}

// Builtins returns the descriptors of every built-in resource, with hooks.
func Builtins() []*registry.Resource {
	all := []string{"all"}
	defs := []def{
		// core/v1
		{"", "v1", "Namespace", "namespaces", false, []string{"ns"}, nil, []string{"status", "finalize"},
			map[string]string{"status.phase": "status.phase"}, false, false, func() runtime.Object { return &corev1.Namespace{} }, ""},
		{"", "v1", "Pod", "pods", true, []string{"po"}, all, []string{"status", "binding", "eviction", "log", "exec", "attach", "portforward"},
			map[string]string{"spec.nodeName": "spec.nodeName", "spec.restartPolicy": "spec.restartPolicy",
				"spec.schedulerName": "spec.schedulerName", "spec.serviceAccountName": "spec.serviceAccountName",
				"spec.hostNetwork": "spec.hostNetwork", "status.phase": "status.phase", "status.podIP": "status.podIP",
				"status.nominatedNodeName": "status.nominatedNodeName"}, true, false, func() runtime.Object { return &corev1.Pod{} }, ""},
		{"", "v1", "Service", "services", true, []string{"svc"}, all, []string{"status"},
			map[string]string{"spec.clusterIP": "spec.clusterIP", "spec.type": "spec.type"}, true, false, func() runtime.Object { return &corev1.Service{} }, "/registry/services/specs/"},
		{"", "v1", "Endpoints", "endpoints", true, []string{"ep"}, nil, nil, nil, false, true, func() runtime.Object { return &corev1.Endpoints{} }, "/registry/services/endpoints/"},
		{"", "v1", "Node", "nodes", false, []string{"no"}, nil, []string{"status", "proxy"},
			map[string]string{"spec.unschedulable": "spec.unschedulable"}, true, false, func() runtime.Object { return &corev1.Node{} }, "/registry/minions/"},
		{"", "v1", "ConfigMap", "configmaps", true, []string{"cm"}, nil, nil, nil, false, false, func() runtime.Object { return &corev1.ConfigMap{} }, ""},
		{"", "v1", "Secret", "secrets", true, nil, nil, nil, map[string]string{"type": "type"}, false, false, func() runtime.Object { return &corev1.Secret{} }, ""},
		{"", "v1", "ServiceAccount", "serviceaccounts", true, []string{"sa"}, nil, []string{"token"}, nil, false, false, func() runtime.Object { return &corev1.ServiceAccount{} }, ""},
		{"", "v1", "Event", "events", true, []string{"ev"}, nil, nil,
			map[string]string{"involvedObject.kind": "involvedObject.kind", "involvedObject.namespace": "involvedObject.namespace",
				"involvedObject.name": "involvedObject.name", "involvedObject.uid": "involvedObject.uid",
				"involvedObject.apiVersion": "involvedObject.apiVersion", "involvedObject.resourceVersion": "involvedObject.resourceVersion",
				"involvedObject.fieldPath": "involvedObject.fieldPath", "reason": "reason", "reportingComponent": "reportingComponent",
				"source": "source.component", "type": "type"}, false, false, func() runtime.Object { return &corev1.Event{} }, ""},
		{"", "v1", "ReplicationController", "replicationcontrollers", true, []string{"rc"}, all, []string{"scale", "status"},
			map[string]string{"status.replicas": "status.replicas"}, true, false, func() runtime.Object { return &corev1.ReplicationController{} }, "/registry/controllers/"},
		{"", "v1", "PersistentVolume", "persistentvolumes", false, []string{"pv"}, nil, []string{"status"},
			map[string]string{"status.phase": "status.phase"}, true, false, func() runtime.Object { return &corev1.PersistentVolume{} }, ""},
		{"", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", true, []string{"pvc"}, nil, []string{"status"},
			map[string]string{"status.phase": "status.phase"}, true, false, func() runtime.Object { return &corev1.PersistentVolumeClaim{} }, ""},
		{"", "v1", "LimitRange", "limitranges", true, []string{"limits"}, nil, nil, nil, false, false, func() runtime.Object { return &corev1.LimitRange{} }, ""},
		{"", "v1", "ResourceQuota", "resourcequotas", true, []string{"quota"}, nil, []string{"status"}, nil, true, false, func() runtime.Object { return &corev1.ResourceQuota{} }, ""},
		{"", "v1", "PodTemplate", "podtemplates", true, nil, nil, nil, nil, false, false, func() runtime.Object { return &corev1.PodTemplate{} }, ""},
		// apps/v1
		{"apps", "v1", "Deployment", "deployments", true, []string{"deploy"}, all, []string{"scale", "status"}, nil, true, false, func() runtime.Object { return &appsv1.Deployment{} }, ""},
		{"apps", "v1", "ReplicaSet", "replicasets", true, []string{"rs"}, all, []string{"scale", "status"}, nil, true, false, func() runtime.Object { return &appsv1.ReplicaSet{} }, ""},
		{"apps", "v1", "StatefulSet", "statefulsets", true, []string{"sts"}, all, []string{"scale", "status"}, nil, true, false, func() runtime.Object { return &appsv1.StatefulSet{} }, ""},
		{"apps", "v1", "DaemonSet", "daemonsets", true, []string{"ds"}, all, []string{"status"}, nil, true, false, func() runtime.Object { return &appsv1.DaemonSet{} }, ""},
		{"apps", "v1", "ControllerRevision", "controllerrevisions", true, nil, nil, nil, nil, false, false, func() runtime.Object { return &appsv1.ControllerRevision{} }, ""},
		// batch/v1
		{"batch", "v1", "Job", "jobs", true, nil, all, []string{"status"}, map[string]string{"status.successful": "status.succeeded"}, true, false, func() runtime.Object { return &batchv1.Job{} }, ""},
		{"batch", "v1", "CronJob", "cronjobs", true, []string{"cj"}, all, []string{"status"}, nil, true, false, func() runtime.Object { return &batchv1.CronJob{} }, ""},
		// autoscaling
		{"autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", true, []string{"hpa"}, all, []string{"status"}, nil, true, false, func() runtime.Object { return &autoscalingv2.HorizontalPodAutoscaler{} }, ""},
		{"autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers", true, []string{"hpa"}, all, []string{"status"}, nil, true, false, func() runtime.Object { return &autoscalingv1.HorizontalPodAutoscaler{} }, ""},
		// networking.k8s.io/v1
		{"networking.k8s.io", "v1", "Ingress", "ingresses", true, []string{"ing"}, nil, []string{"status"}, nil, true, false, func() runtime.Object { return &networkingv1.Ingress{} }, ""},
		{"networking.k8s.io", "v1", "IngressClass", "ingressclasses", false, nil, nil, nil, nil, true, false, func() runtime.Object { return &networkingv1.IngressClass{} }, ""},
		{"networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", true, []string{"netpol"}, nil, nil, nil, true, false, func() runtime.Object { return &networkingv1.NetworkPolicy{} }, ""},
		// storage.k8s.io/v1
		{"storage.k8s.io", "v1", "StorageClass", "storageclasses", false, []string{"sc"}, nil, nil, nil, false, false, func() runtime.Object { return &storagev1.StorageClass{} }, ""},
		{"storage.k8s.io", "v1", "CSIDriver", "csidrivers", false, nil, nil, nil, nil, true, false, func() runtime.Object { return &storagev1.CSIDriver{} }, ""},
		{"storage.k8s.io", "v1", "CSINode", "csinodes", false, nil, nil, nil, nil, true, false, func() runtime.Object { return &storagev1.CSINode{} }, ""},
		{"storage.k8s.io", "v1", "CSIStorageCapacity", "csistoragecapacities", true, nil, nil, nil, nil, false, false, func() runtime.Object { return &storagev1.CSIStorageCapacity{} }, ""},
		{"storage.k8s.io", "v1", "VolumeAttachment", "volumeattachments", false, nil, nil, []string{"status"}, nil, true, false, func() runtime.Object { return &storagev1.VolumeAttachment{} }, ""},
		// discovery.k8s.io/v1
		{"discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", true, nil, nil, nil, nil, false, false, func() runtime.Object { return &discoveryv1.EndpointSlice{} }, ""},
		// coordination.k8s.io/v1
		{"coordination.k8s.io", "v1", "Lease", "leases", true, nil, nil, nil, nil, true, false, func() runtime.Object { return &coordinationv1.Lease{} }, ""},
		// events.k8s.io/v1 (stored apart from core events; see docs/architecture.md)
		{"events.k8s.io", "v1", "Event", "events", true, []string{"ev"}, nil, nil,
			map[string]string{"regarding.kind": "regarding.kind", "regarding.name": "regarding.name", "regarding.namespace": "regarding.namespace",
				"reason": "reason", "type": "type", "reportingController": "reportingController"}, false, false, func() runtime.Object { return &eventsv1.Event{} }, "/registry/events.k8s.io/events/"},
		// rbac.authorization.k8s.io/v1
		{"rbac.authorization.k8s.io", "v1", "Role", "roles", true, nil, nil, nil, nil, false, false, func() runtime.Object { return &rbacv1.Role{} }, ""},
		{"rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", false, nil, nil, nil, nil, false, false, func() runtime.Object { return &rbacv1.ClusterRole{} }, ""},
		{"rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", true, nil, nil, nil, nil, false, false, func() runtime.Object { return &rbacv1.RoleBinding{} }, ""},
		{"rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", false, nil, nil, nil, nil, false, false, func() runtime.Object { return &rbacv1.ClusterRoleBinding{} }, ""},
		// scheduling.k8s.io/v1
		{"scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", false, []string{"pc"}, nil, nil, nil, false, false, func() runtime.Object { return &schedulingv1.PriorityClass{} }, ""},
		// policy/v1
		{"policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", true, []string{"pdb"}, nil, []string{"status"}, nil, true, false, func() runtime.Object { return &policyv1.PodDisruptionBudget{} }, ""},
		// admissionregistration.k8s.io/v1
		{"admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration", "validatingwebhookconfigurations", false, nil, []string{"api-extensions"}, nil, nil, false, false, func() runtime.Object { return &admissionregistrationv1.ValidatingWebhookConfiguration{} }, ""},
		{"admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration", "mutatingwebhookconfigurations", false, nil, []string{"api-extensions"}, nil, nil, false, false, func() runtime.Object { return &admissionregistrationv1.MutatingWebhookConfiguration{} }, ""},
		// certificates.k8s.io/v1
		{"certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests", false, []string{"csr"}, nil, []string{"status", "approval"},
			map[string]string{"spec.signerName": "spec.signerName"}, true, false, func() runtime.Object { return &certificatesv1.CertificateSigningRequest{} }, ""},
		// apiextensions.k8s.io/v1
		{"apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", false, []string{"crd", "crds"}, []string{"api-extensions"}, []string{"status"}, nil, true, false, func() runtime.Object { return &apiextensionsv1.CustomResourceDefinition{} }, "/registry/apiextensions.k8s.io/customresourcedefinitions/"},
	}
	defs = append(defs, apiServiceDef)
	out := make([]*registry.Resource, 0, len(defs))
	for _, d := range defs {
		r := &registry.Resource{
			Group: d.group, Version: d.version, Kind: d.kind, Plural: d.plural,
			Namespaced: d.namespaced, ShortNames: d.short, Categories: d.categories,
			Subresources: d.subs, SelectableFields: d.fields, HasSpec: d.hasSpec,
			AllowCreateOnUpdate: d.createOnUpdate, New: d.new, Verbs: allVerbs,
			StorageKeyPrefix: d.keyPrefix,
		}
		if r.StorageKeyPrefix == "" {
			r.StorageKeyPrefix = registry.DefaultKeyPrefix(d.group, d.plural)
		}
		if d.group == "autoscaling" {
			r.StorageKeyPrefix = "/registry/horizontalpodautoscalers/"
		}
		r.StorageVersionHash = storageVersionHash(d.group, d.version, d.kind)
		applyHooks(r)
		out = append(out, r)
	}
	return out
}

// Register adds every built-in resource to reg.
func Register(reg *registry.Registry) {
	for _, r := range Builtins() {
		reg.Add(r)
	}
}
