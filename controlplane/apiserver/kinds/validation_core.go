package kinds

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Validation of core/v1 kinds other than pods and replication controllers
// (upstream's pkg/apis/core/validation).

// maxSecretSize is the 1 MiB cap on a Secret's or ConfigMap's data.
const maxSecretSize = 1 * 1024 * 1024

// maxClientIPAffinitySeconds caps sessionAffinityConfig.clientIP.timeoutSeconds (one day).
const maxClientIPAffinitySeconds = 86400

func init() {
	validators[gk("", "Namespace")] = func(_ context.Context, obj runtime.Object) field.ErrorList {
		return validateLabelName(obj.(*corev1.Namespace).Name, apimachineryvalidation.NameIsDNSLabel)
	}
	validators[gk("", "Service")] = func(_ context.Context, obj runtime.Object) field.ErrorList {
		svc := obj.(*corev1.Service)
		errs := validateLabelName(svc.Name, apimachineryvalidation.NameIsDNS1035Label)
		return append(errs, validateServiceSpec(&svc.Spec, field.NewPath("spec"))...)
	}
	updateValidators[gk("", "Service")] = func(_ context.Context, obj, old runtime.Object) field.ErrorList {
		return validateServiceUpdate(obj.(*corev1.Service), old.(*corev1.Service))
	}
	validators[gk("", "ConfigMap")] = func(_ context.Context, obj runtime.Object) field.ErrorList {
		return validateConfigMap(obj.(*corev1.ConfigMap))
	}
	updateValidators[gk("", "ConfigMap")] = func(_ context.Context, obj, old runtime.Object) field.ErrorList {
		n, o := obj.(*corev1.ConfigMap), old.(*corev1.ConfigMap)
		if o.Immutable == nil || !*o.Immutable {
			return nil
		}
		var errs field.ErrorList
		if n.Immutable == nil || !*n.Immutable {
			errs = append(errs, field.Forbidden(field.NewPath("immutable"), "field is immutable when `immutable` is set"))
		}
		if !apiequality.Semantic.DeepEqual(n.Data, o.Data) {
			errs = append(errs, field.Forbidden(field.NewPath("data"), "field is immutable when `immutable` is set"))
		}
		if !apiequality.Semantic.DeepEqual(n.BinaryData, o.BinaryData) {
			errs = append(errs, field.Forbidden(field.NewPath("binaryData"), "field is immutable when `immutable` is set"))
		}
		return errs
	}
	validators[gk("", "Secret")] = func(_ context.Context, obj runtime.Object) field.ErrorList {
		return validateSecret(obj.(*corev1.Secret))
	}
	updateValidators[gk("", "Secret")] = func(_ context.Context, obj, old runtime.Object) field.ErrorList {
		n, o := obj.(*corev1.Secret), old.(*corev1.Secret)
		errs := apimachineryvalidation.ValidateImmutableField(n.Type, o.Type, field.NewPath("type"))
		if o.Immutable != nil && *o.Immutable {
			if n.Immutable == nil || !*n.Immutable {
				errs = append(errs, field.Forbidden(field.NewPath("immutable"), "field is immutable when `immutable` is set"))
			}
			if !apiequality.Semantic.DeepEqual(n.Data, o.Data) {
				errs = append(errs, field.Forbidden(field.NewPath("data"), "field is immutable when `immutable` is set"))
			}
		}
		return errs
	}
	validators[gk("", "PersistentVolume")] = func(_ context.Context, obj runtime.Object) field.ErrorList {
		return validatePV(obj.(*corev1.PersistentVolume))
	}
	updateValidators[gk("", "PersistentVolume")] = func(_ context.Context, obj, old runtime.Object) field.ErrorList {
		n, o := obj.(*corev1.PersistentVolume), old.(*corev1.PersistentVolume)
		spec := field.NewPath("spec")
		errs := apimachineryvalidation.ValidateImmutableField(n.Spec.VolumeMode, o.Spec.VolumeMode, spec.Child("volumeMode"))
		// The volume source may not change once created.
		if !apiequality.Semantic.DeepEqual(n.Spec.PersistentVolumeSource, o.Spec.PersistentVolumeSource) {
			errs = append(errs, field.Forbidden(spec.Child("persistentvolumesource"), "spec.persistentvolumesource is forbidden once set"))
		}
		if o.Spec.NodeAffinity != nil {
			errs = append(errs, apimachineryvalidation.ValidateImmutableField(n.Spec.NodeAffinity, o.Spec.NodeAffinity, spec.Child("nodeAffinity"))...)
		}
		return errs
	}
	validators[gk("", "PersistentVolumeClaim")] = func(_ context.Context, obj runtime.Object) field.ErrorList {
		return validatePVCSpec(&obj.(*corev1.PersistentVolumeClaim).Spec, field.NewPath("spec"), false)
	}
	updateValidators[gk("", "PersistentVolumeClaim")] = func(_ context.Context, obj, old runtime.Object) field.ErrorList {
		return validatePVCUpdate(obj.(*corev1.PersistentVolumeClaim), old.(*corev1.PersistentVolumeClaim))
	}
	validators[gk("", "Event")] = func(_ context.Context, obj runtime.Object) field.ErrorList {
		ev := obj.(*corev1.Event)
		var errs field.ErrorList
		if ns := ev.InvolvedObject.Namespace; ns != "" && ns != ev.Namespace {
			errs = append(errs, field.Invalid(field.NewPath("involvedObject", "namespace"), ns, "does not match event.namespace"))
		}
		if ev.Type != "" && ev.Type != corev1.EventTypeNormal && ev.Type != corev1.EventTypeWarning {
			errs = append(errs, field.Invalid(field.NewPath("type"), ev.Type, fmt.Sprintf("has invalid value: %v", ev.Type)))
		}
		return errs
	}
	validators[gk("", "Endpoints")] = func(_ context.Context, obj runtime.Object) field.ErrorList {
		ep := obj.(*corev1.Endpoints)
		var errs field.ErrorList
		for i, ss := range ep.Subsets {
			idx := field.NewPath("subsets").Index(i)
			for j, a := range append(append([]corev1.EndpointAddress{}, ss.Addresses...), ss.NotReadyAddresses...) {
				if _, err := netip.ParseAddr(a.IP); err != nil {
					p := idx.Child("addresses").Index(j)
					if j >= len(ss.Addresses) {
						p = idx.Child("notReadyAddresses").Index(j - len(ss.Addresses))
					}
					errs = append(errs, field.Invalid(p.Child("ip"), a.IP, "must be a valid IP address"))
				}
			}
			for j, p := range ss.Ports {
				pp := idx.Child("ports").Index(j)
				if len(ss.Ports) > 1 && p.Name == "" {
					errs = append(errs, field.Required(pp.Child("name"), ""))
				}
				for _, msg := range validation.IsValidPortNum(int(p.Port)) {
					errs = append(errs, field.Invalid(pp.Child("port"), p.Port, msg))
				}
				errs = append(errs, validateProtocol(p.Protocol, pp.Child("protocol"))...)
			}
		}
		return errs
	}
}

// validateLabelName applies a stricter name rule than the generic DNS
// subdomain one; failures the generic check reports are not repeated.
func validateLabelName(name string, fn apimachineryvalidation.ValidateNameFunc) field.ErrorList {
	if name == "" || len(apimachineryvalidation.NameIsDNSSubdomain(name, false)) > 0 {
		return nil
	}
	var errs field.ErrorList
	for _, msg := range fn(name, false) {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "name"), name, msg))
	}
	return errs
}

var (
	supportedServiceTypes = []string{string(corev1.ServiceTypeClusterIP), string(corev1.ServiceTypeExternalName), string(corev1.ServiceTypeLoadBalancer), string(corev1.ServiceTypeNodePort)}
	supportedAffinity     = []string{string(corev1.ServiceAffinityClientIP), string(corev1.ServiceAffinityNone)}
	supportedTrafficPol   = []string{string(corev1.ServiceExternalTrafficPolicyCluster), string(corev1.ServiceExternalTrafficPolicyLocal)}
	supportedFamilyPolicy = []string{string(corev1.IPFamilyPolicyPreferDualStack), string(corev1.IPFamilyPolicyRequireDualStack), string(corev1.IPFamilyPolicySingleStack)}
)

func validateServiceSpec(s *corev1.ServiceSpec, spec *field.Path) field.ErrorList {
	var errs field.ErrorList
	headless := s.ClusterIP == corev1.ClusterIPNone
	switch s.Type {
	case corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer:
	case corev1.ServiceTypeExternalName:
		if s.ClusterIP != "" {
			errs = append(errs, field.Forbidden(spec.Child("clusterIP"), "may not be set for ExternalName services"))
		}
		name := strings.TrimSuffix(s.ExternalName, ".")
		if name == "" {
			errs = append(errs, field.Required(spec.Child("externalName"), ""))
		} else {
			for _, msg := range validation.IsDNS1123Subdomain(name) {
				errs = append(errs, field.Invalid(spec.Child("externalName"), s.ExternalName, msg))
			}
		}
	case "":
		errs = append(errs, field.Required(spec.Child("type"), ""))
	default:
		errs = append(errs, field.NotSupported(spec.Child("type"), s.Type, supportedServiceTypes))
	}
	if headless && (s.Type == corev1.ServiceTypeNodePort || s.Type == corev1.ServiceTypeLoadBalancer) {
		errs = append(errs, field.Invalid(spec.Child("clusterIP"), s.ClusterIP, fmt.Sprintf("may not be set to 'None' for %s services", s.Type)))
	}
	if s.ClusterIP != "" && !headless && s.Type != corev1.ServiceTypeExternalName {
		if _, err := netip.ParseAddr(s.ClusterIP); err != nil {
			errs = append(errs, field.Invalid(spec.Child("clusterIP"), s.ClusterIP, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"))
		}
	}
	if len(s.Ports) == 0 && !headless && s.Type != corev1.ServiceTypeExternalName {
		errs = append(errs, field.Required(spec.Child("ports"), ""))
	}
	names := sets.New[string]()
	type portKey struct {
		port  int32
		proto corev1.Protocol
	}
	seen := map[portKey]bool{}
	for i := range s.Ports {
		p := &s.Ports[i]
		idx := spec.Child("ports").Index(i)
		if len(s.Ports) > 1 && p.Name == "" {
			errs = append(errs, field.Required(idx.Child("name"), ""))
		} else if p.Name != "" {
			errs = append(errs, validateDNSLabel(p.Name, idx.Child("name"))...)
			if names.Has(p.Name) {
				errs = append(errs, field.Duplicate(idx.Child("name"), p.Name))
			}
			names.Insert(p.Name)
		}
		for _, msg := range validation.IsValidPortNum(int(p.Port)) {
			errs = append(errs, field.Invalid(idx.Child("port"), p.Port, msg))
		}
		errs = append(errs, validateProtocol(p.Protocol, idx.Child("protocol"))...)
		errs = append(errs, validatePortNumOrName(p.TargetPort, idx.Child("targetPort"))...)
		if p.NodePort != 0 {
			if s.Type == corev1.ServiceTypeClusterIP {
				errs = append(errs, field.Forbidden(idx.Child("nodePort"), "may not be used when `type` is 'ClusterIP'"))
			}
			for _, msg := range validation.IsValidPortNum(int(p.NodePort)) {
				errs = append(errs, field.Invalid(idx.Child("nodePort"), p.NodePort, msg))
			}
		}
		k := portKey{p.Port, p.Protocol}
		if seen[k] {
			errs = append(errs, field.Duplicate(idx, fmt.Sprintf("%d/%s", p.Port, p.Protocol)))
		}
		seen[k] = true
	}
	switch s.SessionAffinity {
	case corev1.ServiceAffinityNone:
	case corev1.ServiceAffinityClientIP:
		if c := s.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			if t := *c.ClientIP.TimeoutSeconds; t <= 0 || t > maxClientIPAffinitySeconds {
				errs = append(errs, field.Invalid(spec.Child("sessionAffinityConfig", "clientIP", "timeoutSeconds"), t,
					fmt.Sprintf("must be greater than 0 and less than %d", maxClientIPAffinitySeconds)))
			}
		}
	case "":
		errs = append(errs, field.Required(spec.Child("sessionAffinity"), ""))
	default:
		errs = append(errs, field.NotSupported(spec.Child("sessionAffinity"), s.SessionAffinity, supportedAffinity))
	}
	if s.ExternalTrafficPolicy != "" {
		if s.Type != corev1.ServiceTypeNodePort && s.Type != corev1.ServiceTypeLoadBalancer {
			errs = append(errs, field.Invalid(spec.Child("externalTrafficPolicy"), s.ExternalTrafficPolicy, "may only be set when `type` is 'NodePort' or 'LoadBalancer'"))
		} else if !sets.New(supportedTrafficPol...).Has(string(s.ExternalTrafficPolicy)) {
			errs = append(errs, field.NotSupported(spec.Child("externalTrafficPolicy"), s.ExternalTrafficPolicy, supportedTrafficPol))
		}
	}
	if p := s.InternalTrafficPolicy; p != nil && !sets.New(supportedTrafficPol...).Has(string(*p)) {
		errs = append(errs, field.NotSupported(spec.Child("internalTrafficPolicy"), *p, supportedTrafficPol))
	}
	if p := s.IPFamilyPolicy; p != nil && !sets.New(supportedFamilyPolicy...).Has(string(*p)) {
		errs = append(errs, field.NotSupported(spec.Child("ipFamilyPolicy"), *p, supportedFamilyPolicy))
	}
	for i, f := range s.IPFamilies {
		if f != corev1.IPv4Protocol && f != corev1.IPv6Protocol {
			errs = append(errs, field.NotSupported(spec.Child("ipFamilies").Index(i), f, []string{string(corev1.IPv4Protocol), string(corev1.IPv6Protocol)}))
		}
	}
	return errs
}

func validateServiceUpdate(svc, old *corev1.Service) field.ErrorList {
	// The cluster IP may not change once allocated, except to or from
	// ExternalName; an update that leaves it empty keeps the old one.
	if old.Spec.Type == corev1.ServiceTypeExternalName || svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	if old.Spec.ClusterIP != "" && svc.Spec.ClusterIP != "" && svc.Spec.ClusterIP != old.Spec.ClusterIP {
		return field.ErrorList{field.Invalid(field.NewPath("spec", "clusterIPs").Index(0), svc.Spec.ClusterIP, "field is immutable")}
	}
	return nil
}

func validateConfigMap(cm *corev1.ConfigMap) field.ErrorList {
	var errs field.ErrorList
	total := 0
	for _, key := range sortedKeys(cm.Data) {
		p := field.NewPath("data").Key(key)
		for _, msg := range validation.IsConfigMapKey(key) {
			errs = append(errs, field.Invalid(p, key, msg))
		}
		if _, dup := cm.BinaryData[key]; dup {
			errs = append(errs, field.Invalid(p, key, "duplicate of key present in binaryData"))
		}
		total += len(cm.Data[key])
	}
	for _, key := range sortedKeys(cm.BinaryData) {
		for _, msg := range validation.IsConfigMapKey(key) {
			errs = append(errs, field.Invalid(field.NewPath("binaryData").Key(key), key, msg))
		}
		total += len(cm.BinaryData[key])
	}
	if total > maxSecretSize {
		errs = append(errs, field.TooLong(field.NewPath(""), "", maxSecretSize))
	}
	return errs
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func validateSecret(s *corev1.Secret) field.ErrorList {
	var errs field.ErrorList
	data := field.NewPath("data")
	total := 0
	for _, key := range sortedKeys(s.Data) {
		for _, msg := range validation.IsConfigMapKey(key) {
			errs = append(errs, field.Invalid(data.Key(key), key, msg))
		}
		total += len(s.Data[key])
	}
	if total > maxSecretSize {
		errs = append(errs, field.TooLong(data, "", maxSecretSize))
	}
	need := func(key string) {
		if _, ok := s.Data[key]; !ok {
			errs = append(errs, field.Required(data.Key(key), ""))
		}
	}
	switch s.Type {
	case corev1.SecretTypeServiceAccountToken:
		if s.Annotations[corev1.ServiceAccountNameKey] == "" {
			errs = append(errs, field.Required(field.NewPath("metadata", "annotations").Key(corev1.ServiceAccountNameKey), ""))
		}
	case corev1.SecretTypeDockercfg:
		need(corev1.DockerConfigKey)
		if v, ok := s.Data[corev1.DockerConfigKey]; ok && !json.Valid(v) {
			errs = append(errs, field.Invalid(data.Key(corev1.DockerConfigKey), "<secret contents redacted>", "invalid character in JSON"))
		}
	case corev1.SecretTypeDockerConfigJson:
		need(corev1.DockerConfigJsonKey)
		if v, ok := s.Data[corev1.DockerConfigJsonKey]; ok && !json.Valid(v) {
			errs = append(errs, field.Invalid(data.Key(corev1.DockerConfigJsonKey), "<secret contents redacted>", "invalid character in JSON"))
		}
	case corev1.SecretTypeBasicAuth:
		_, u := s.Data[corev1.BasicAuthUsernameKey]
		_, p := s.Data[corev1.BasicAuthPasswordKey]
		if !u && !p {
			errs = append(errs, field.Required(data.Key(corev1.BasicAuthUsernameKey), ""))
			errs = append(errs, field.Required(data.Key(corev1.BasicAuthPasswordKey), ""))
		}
	case corev1.SecretTypeSSHAuth:
		need(corev1.SSHAuthPrivateKey)
	case corev1.SecretTypeTLS:
		need(corev1.TLSCertKey)
		need(corev1.TLSPrivateKeyKey)
	}
	return errs
}

var supportedAccessModes = []string{string(corev1.ReadOnlyMany), string(corev1.ReadWriteMany), string(corev1.ReadWriteOnce), string(corev1.ReadWriteOncePod)}

func validateAccessModes(modes []corev1.PersistentVolumeAccessMode, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(modes) == 0 {
		return field.ErrorList{field.Required(fld, "")}
	}
	for _, m := range modes {
		if !sets.New(supportedAccessModes...).Has(string(m)) {
			errs = append(errs, field.NotSupported(fld, m, supportedAccessModes))
		}
	}
	if len(modes) > 1 && sets.New(modes...).Has(corev1.ReadWriteOncePod) {
		errs = append(errs, field.Forbidden(fld, "may not use ReadWriteOncePod with other access modes"))
	}
	return errs
}

func validateVolumeMode(m *corev1.PersistentVolumeMode, fld *field.Path) field.ErrorList {
	if m == nil || *m == corev1.PersistentVolumeBlock || *m == corev1.PersistentVolumeFilesystem {
		return nil
	}
	return field.ErrorList{field.NotSupported(fld, *m, []string{string(corev1.PersistentVolumeBlock), string(corev1.PersistentVolumeFilesystem)})}
}

func validatePV(pv *corev1.PersistentVolume) field.ErrorList {
	spec := field.NewPath("spec")
	errs := validateAccessModes(pv.Spec.AccessModes, spec.Child("accessModes"))
	if len(pv.Spec.Capacity) == 0 {
		errs = append(errs, field.Required(spec.Child("capacity"), ""))
	} else if _, ok := pv.Spec.Capacity[corev1.ResourceStorage]; !ok || len(pv.Spec.Capacity) > 1 {
		errs = append(errs, field.NotSupported(spec.Child("capacity"), capacityKeys(pv.Spec.Capacity), []string{string(corev1.ResourceStorage)}))
	} else if q := pv.Spec.Capacity[corev1.ResourceStorage]; q.Sign() <= 0 {
		errs = append(errs, field.Invalid(spec.Child("capacity").Key(string(corev1.ResourceStorage)), q.String(), "must be greater than zero"))
	}
	n := 0
	v := pv.Spec.PersistentVolumeSource
	for _, set := range []bool{v.GCEPersistentDisk != nil, v.AWSElasticBlockStore != nil, v.HostPath != nil, v.Glusterfs != nil,
		v.NFS != nil, v.RBD != nil, v.Quobyte != nil, v.ISCSI != nil, v.Cinder != nil, v.CephFS != nil, v.FC != nil,
		v.Flocker != nil, v.FlexVolume != nil, v.AzureFile != nil, v.VsphereVolume != nil, v.AzureDisk != nil,
		v.PhotonPersistentDisk != nil, v.PortworxVolume != nil, v.ScaleIO != nil, v.Local != nil, v.StorageOS != nil, v.CSI != nil} {
		if set {
			n++
		}
	}
	switch {
	case n == 0:
		errs = append(errs, field.Required(spec, "must specify a volume type"))
	case n > 1:
		errs = append(errs, field.Forbidden(spec, "may not specify more than 1 volume type"))
	}
	if hp := v.HostPath; hp != nil && hp.Path == "" {
		errs = append(errs, field.Required(spec.Child("hostPath", "path"), ""))
	}
	if l := v.Local; l != nil && l.Path == "" {
		errs = append(errs, field.Required(spec.Child("local", "path"), ""))
	}
	if c := v.CSI; c != nil {
		if c.Driver == "" {
			errs = append(errs, field.Required(spec.Child("csi", "driver"), ""))
		}
		if c.VolumeHandle == "" {
			errs = append(errs, field.Required(spec.Child("csi", "volumeHandle"), ""))
		}
	}
	switch pv.Spec.PersistentVolumeReclaimPolicy {
	case corev1.PersistentVolumeReclaimDelete, corev1.PersistentVolumeReclaimRecycle, corev1.PersistentVolumeReclaimRetain, "":
	default:
		errs = append(errs, field.NotSupported(spec.Child("persistentVolumeReclaimPolicy"), pv.Spec.PersistentVolumeReclaimPolicy,
			[]string{string(corev1.PersistentVolumeReclaimDelete), string(corev1.PersistentVolumeReclaimRecycle), string(corev1.PersistentVolumeReclaimRetain)}))
	}
	errs = append(errs, validateVolumeMode(pv.Spec.VolumeMode, spec.Child("volumeMode"))...)
	return errs
}

// validatePVCSpec checks a claim (template: a StatefulSet's claim template).
func validatePVCSpec(s *corev1.PersistentVolumeClaimSpec, spec *field.Path, template bool) field.ErrorList {
	errs := validateAccessModes(s.AccessModes, spec.Child("accessModes"))
	if s.Selector != nil {
		if _, err := metav1.LabelSelectorAsSelector(s.Selector); err != nil {
			errs = append(errs, field.Invalid(spec.Child("selector"), s.Selector, err.Error()))
		}
	}
	// Upstream names the path spec.resources[storage].
	q, ok := s.Resources.Requests[corev1.ResourceStorage]
	if !ok {
		if s.DataSource == nil || !template {
			errs = append(errs, field.Required(spec.Child("resources").Key(string(corev1.ResourceStorage)), ""))
		}
	} else if q.Sign() <= 0 {
		errs = append(errs, field.Invalid(spec.Child("resources").Key(string(corev1.ResourceStorage)), q.String(), "must be greater than zero"))
	}
	if s.StorageClassName != nil && *s.StorageClassName != "" {
		for _, msg := range apimachineryvalidation.NameIsDNSSubdomain(*s.StorageClassName, false) {
			errs = append(errs, field.Invalid(spec.Child("storageClassName"), *s.StorageClassName, msg))
		}
	}
	errs = append(errs, validateVolumeMode(s.VolumeMode, spec.Child("volumeMode"))...)
	return errs
}

func validatePVCUpdate(pvc, old *corev1.PersistentVolumeClaim) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	n := pvc.Spec.DeepCopy()
	o := old.Spec.DeepCopy()
	// The binder sets volumeName once; a claim created with an empty class
	// name may get one.
	if o.VolumeName == "" {
		o.VolumeName = n.VolumeName
	}
	if o.StorageClassName == nil {
		o.StorageClassName = n.StorageClassName
	}
	if old.Status.Phase == corev1.ClaimBound {
		newQ, oldQ := pvc.Spec.Resources.Requests[corev1.ResourceStorage], old.Spec.Resources.Requests[corev1.ResourceStorage]
		if newQ.Cmp(oldQ) < 0 {
			capQ, hasCap := old.Status.Capacity[corev1.ResourceStorage]
			if !hasCap || newQ.Cmp(capQ) < 0 {
				errs = append(errs, field.Forbidden(spec.Child("resources", "requests", "storage"), "field can not be less than status.capacity"))
			}
		}
		o.Resources.Requests = n.Resources.Requests
		o.VolumeAttributesClassName = n.VolumeAttributesClassName
	}
	if !apiequality.Semantic.DeepEqual(*n, *o) {
		errs = append(errs, field.Forbidden(spec, "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"))
	}
	return errs
}

func capacityKeys(l corev1.ResourceList) []string {
	out := make([]string, 0, len(l))
	for k := range l {
		out = append(out, string(k))
	}
	sort.Strings(out)
	return out
}
