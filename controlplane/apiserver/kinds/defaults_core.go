package kinds

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Defaulting of core/v1 kinds other than pods (upstream's
// pkg/apis/core/v1/defaults.go).

func init() {
	defaulters[gk("", "ReplicationController")] = func(obj runtime.Object) {
		rc := obj.(*corev1.ReplicationController)
		if t := rc.Spec.Template; t != nil && len(t.Labels) > 0 {
			if len(rc.Spec.Selector) == 0 {
				rc.Spec.Selector = copyStringMap(t.Labels)
			}
			if len(rc.Labels) == 0 {
				rc.Labels = copyStringMap(t.Labels)
			}
		}
		if rc.Spec.Replicas == nil {
			rc.Spec.Replicas = ptrTo(int32(1))
		}
		defaultPodTemplate(rc.Spec.Template)
	}
	defaulters[gk("", "Service")] = func(obj runtime.Object) { defaultService(obj.(*corev1.Service)) }
	defaulters[gk("", "Secret")] = func(obj runtime.Object) {
		s := obj.(*corev1.Secret)
		if s.Type == "" {
			s.Type = corev1.SecretTypeOpaque
		}
		// stringData is a write-only convenience: it is merged into data
		// (winning over data) and never stored, as upstream's conversion.
		if len(s.StringData) > 0 {
			if s.Data == nil {
				s.Data = map[string][]byte{}
			}
			for k, v := range s.StringData {
				s.Data[k] = []byte(v)
			}
			s.StringData = nil
		}
	}
	defaulters[gk("", "PersistentVolume")] = func(obj runtime.Object) {
		pv := obj.(*corev1.PersistentVolume)
		if pv.Spec.PersistentVolumeReclaimPolicy == "" {
			pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimRetain
		}
		if pv.Spec.VolumeMode == nil {
			pv.Spec.VolumeMode = ptrTo(corev1.PersistentVolumeFilesystem)
		}
		if pv.Status.Phase == "" {
			pv.Status.Phase = corev1.VolumePending
		}
		if hp := pv.Spec.HostPath; hp != nil && hp.Type == nil {
			hp.Type = ptrTo(corev1.HostPathUnset)
		}
	}
	defaulters[gk("", "PersistentVolumeClaim")] = func(obj runtime.Object) {
		pvc := obj.(*corev1.PersistentVolumeClaim)
		defaultPVCSpec(&pvc.Spec)
		if pvc.Status.Phase == "" {
			pvc.Status.Phase = corev1.ClaimPending
		}
	}
	defaulters[gk("", "Endpoints")] = func(obj runtime.Object) {
		ep := obj.(*corev1.Endpoints)
		for i := range ep.Subsets {
			for j := range ep.Subsets[i].Ports {
				if ep.Subsets[i].Ports[j].Protocol == "" {
					ep.Subsets[i].Ports[j].Protocol = corev1.ProtocolTCP
				}
			}
		}
	}
	defaulters[gk("discovery.k8s.io", "EndpointSlice")] = func(obj runtime.Object) {
		es := obj.(*discoveryv1.EndpointSlice)
		for i := range es.Ports {
			if es.Ports[i].Name == nil {
				es.Ports[i].Name = ptrTo("")
			}
			if es.Ports[i].Protocol == nil {
				es.Ports[i].Protocol = ptrTo(corev1.ProtocolTCP)
			}
		}
	}
	defaulters[gk("", "Namespace")] = func(obj runtime.Object) {
		ns := obj.(*corev1.Namespace)
		if ns.Status.Phase == "" {
			ns.Status.Phase = corev1.NamespaceActive
		}
	}
	defaulters[gk("", "LimitRange")] = func(obj runtime.Object) {
		lr := obj.(*corev1.LimitRange)
		// A container limit range's max fills a missing default, and the
		// default fills a missing defaultRequest (SetDefaults_LimitRangeItem).
		for i := range lr.Spec.Limits {
			item := &lr.Spec.Limits[i]
			if item.Type != corev1.LimitTypeContainer {
				continue
			}
			for k, v := range item.Max {
				if _, ok := item.Default[k]; !ok {
					if item.Default == nil {
						item.Default = corev1.ResourceList{}
					}
					item.Default[k] = v.DeepCopy()
				}
			}
			for k, v := range item.Default {
				if _, ok := item.DefaultRequest[k]; !ok {
					if item.DefaultRequest == nil {
						item.DefaultRequest = corev1.ResourceList{}
					}
					item.DefaultRequest[k] = v.DeepCopy()
				}
			}
		}
	}
}

func copyStringMap(in map[string]string) map[string]string {
	out := make(map[string]string, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}

func defaultService(svc *corev1.Service) {
	s := &svc.Spec
	if s.SessionAffinity == "" {
		s.SessionAffinity = corev1.ServiceAffinityNone
	}
	if s.SessionAffinity == corev1.ServiceAffinityNone {
		s.SessionAffinityConfig = nil
	}
	if s.Type == "" {
		s.Type = corev1.ServiceTypeClusterIP
	}
	for i := range s.Ports {
		p := &s.Ports[i]
		if p.Protocol == "" {
			p.Protocol = corev1.ProtocolTCP
		}
		if p.TargetPort == intstr.FromInt32(0) || p.TargetPort == intstr.FromString("") {
			p.TargetPort = intstr.FromInt32(p.Port)
		}
	}
	if s.Type == corev1.ServiceTypeNodePort || s.Type == corev1.ServiceTypeLoadBalancer {
		if s.ExternalTrafficPolicy == "" {
			s.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
		}
	}
	if s.Type != corev1.ServiceTypeExternalName && s.InternalTrafficPolicy == nil {
		s.InternalTrafficPolicy = ptrTo(corev1.ServiceInternalTrafficPolicyCluster)
	}
	if s.SessionAffinity == corev1.ServiceAffinityClientIP {
		if s.SessionAffinityConfig == nil {
			s.SessionAffinityConfig = &corev1.SessionAffinityConfig{}
		}
		if s.SessionAffinityConfig.ClientIP == nil {
			s.SessionAffinityConfig.ClientIP = &corev1.ClientIPConfig{}
		}
		if s.SessionAffinityConfig.ClientIP.TimeoutSeconds == nil {
			s.SessionAffinityConfig.ClientIP.TimeoutSeconds = ptrTo(corev1.DefaultClientIPServiceAffinitySeconds)
		}
	}
	if s.Type == corev1.ServiceTypeLoadBalancer && s.AllocateLoadBalancerNodePorts == nil {
		s.AllocateLoadBalancerNodePorts = ptrTo(true)
	}
	// clusterIP(s), ipFamilies and ipFamilyPolicy are filled by the
	// service IP allocator (controlplane/serviceip), which knows the
	// cluster's family.
}
