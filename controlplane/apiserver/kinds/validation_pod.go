package kinds

import (
	"context"
	"fmt"
	"reflect"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Pod validation, following upstream's pkg/apis/core/validation: the pod
// spec rules (shared by every pod template) and the pod update rules.

func init() {
	validators[gk("", "Pod")] = func(_ context.Context, obj runtime.Object) field.ErrorList {
		pod := obj.(*corev1.Pod)
		return validatePodSpec(&pod.Spec, field.NewPath("spec"))
	}
	updateValidators[gk("", "Pod")] = func(_ context.Context, obj, old runtime.Object) field.ErrorList {
		return validatePodUpdate(obj.(*corev1.Pod), old.(*corev1.Pod))
	}
	validators[gk("", "PodTemplate")] = func(_ context.Context, obj runtime.Object) field.ErrorList {
		return validatePodTemplateSpec(&obj.(*corev1.PodTemplate).Template, field.NewPath("template"))
	}
}

var (
	supportedProtocols      = []string{string(corev1.ProtocolSCTP), string(corev1.ProtocolTCP), string(corev1.ProtocolUDP)}
	supportedRestartPolicy  = []string{string(corev1.RestartPolicyAlways), string(corev1.RestartPolicyOnFailure), string(corev1.RestartPolicyNever)}
	supportedDNSPolicy      = []string{string(corev1.DNSClusterFirstWithHostNet), string(corev1.DNSClusterFirst), string(corev1.DNSDefault), string(corev1.DNSNone)}
	supportedPullPolicy     = []string{string(corev1.PullAlways), string(corev1.PullIfNotPresent), string(corev1.PullNever)}
	supportedTermMsgPolicy  = []string{string(corev1.TerminationMessageFallbackToLogsOnError), string(corev1.TerminationMessageReadFile)}
	supportedHTTPSchemes    = []string{string(corev1.URISchemeHTTP), string(corev1.URISchemeHTTPS)}
	supportedHostPathTypes  = []string{"", string(corev1.HostPathDirectoryOrCreate), string(corev1.HostPathDirectory), string(corev1.HostPathFileOrCreate), string(corev1.HostPathFile), string(corev1.HostPathSocket), string(corev1.HostPathCharDev), string(corev1.HostPathBlockDev)}
	supportedTolerationOps  = []string{string(corev1.TolerationOpEqual), string(corev1.TolerationOpExists)}
	supportedTaintEffects   = []string{string(corev1.TaintEffectNoExecute), string(corev1.TaintEffectNoSchedule), string(corev1.TaintEffectPreferNoSchedule)}
	podUpdatableFieldsClaim = strings.Join([]string{
		"`spec.containers[*].image`",
		"`spec.initContainers[*].image`",
		"`spec.activeDeadlineSeconds`",
		"`spec.tolerations` (only additions to existing tolerations)",
		"`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
	}, ",")
)

func validateDNSLabel(value string, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range validation.IsDNS1123Label(value) {
		errs = append(errs, field.Invalid(fld, value, msg))
	}
	return errs
}

func validateNonnegative(v int64, fld *field.Path) field.ErrorList {
	return apimachineryvalidation.ValidateNonnegativeField(v, fld)
}

// validatePodTemplateSpec checks a template's labels, annotations and spec.
func validatePodTemplateSpec(t *corev1.PodTemplateSpec, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, metav1validation.ValidateLabels(t.Labels, fld.Child("metadata", "labels"))...)
	errs = append(errs, apimachineryvalidation.ValidateAnnotations(t.Annotations, fld.Child("metadata", "annotations"))...)
	errs = append(errs, validatePodSpec(&t.Spec, fld.Child("spec"))...)
	return errs
}

func validatePodSpec(s *corev1.PodSpec, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	vols, verrs := validateVolumes(s.Volumes, fld.Child("volumes"))
	errs = append(errs, verrs...)
	names := sets.New[string]()
	errs = append(errs, validateContainers(s.InitContainers, vols, names, fld.Child("initContainers"), true)...)
	if len(s.Containers) == 0 {
		errs = append(errs, field.Required(fld.Child("containers"), ""))
	}
	errs = append(errs, validateContainers(s.Containers, vols, names, fld.Child("containers"), false)...)
	switch s.RestartPolicy {
	case corev1.RestartPolicyAlways, corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever:
	case "":
		errs = append(errs, field.Required(fld.Child("restartPolicy"), ""))
	default:
		errs = append(errs, field.NotSupported(fld.Child("restartPolicy"), s.RestartPolicy, supportedRestartPolicy))
	}
	switch s.DNSPolicy {
	case corev1.DNSClusterFirstWithHostNet, corev1.DNSClusterFirst, corev1.DNSDefault:
	case corev1.DNSNone:
		if s.DNSConfig == nil {
			errs = append(errs, field.Required(fld.Child("dnsConfig"), fmt.Sprintf("must provide `dnsConfig` when `dnsPolicy` is %s", corev1.DNSNone)))
		}
	case "":
		errs = append(errs, field.Required(fld.Child("dnsPolicy"), ""))
	default:
		errs = append(errs, field.NotSupported(fld.Child("dnsPolicy"), s.DNSPolicy, supportedDNSPolicy))
	}
	if s.ActiveDeadlineSeconds != nil {
		if v := *s.ActiveDeadlineSeconds; v < 1 || v > 2147483647 {
			errs = append(errs, field.Invalid(fld.Child("activeDeadlineSeconds"), v, validation.InclusiveRangeError(1, 2147483647)))
		}
	}
	if s.TerminationGracePeriodSeconds != nil {
		errs = append(errs, validateNonnegative(*s.TerminationGracePeriodSeconds, fld.Child("terminationGracePeriodSeconds"))...)
	}
	if s.ServiceAccountName != "" {
		for _, msg := range apimachineryvalidation.NameIsDNSSubdomain(s.ServiceAccountName, false) {
			errs = append(errs, field.Invalid(fld.Child("serviceAccountName"), s.ServiceAccountName, msg))
		}
	}
	if s.NodeName != "" {
		for _, msg := range apimachineryvalidation.NameIsDNSSubdomain(s.NodeName, false) {
			errs = append(errs, field.Invalid(fld.Child("nodeName"), s.NodeName, msg))
		}
	}
	errs = append(errs, metav1validation.ValidateLabels(s.NodeSelector, fld.Child("nodeSelector"))...)
	if s.Hostname != "" {
		errs = append(errs, validateDNSLabel(s.Hostname, fld.Child("hostname"))...)
	}
	if s.Subdomain != "" {
		errs = append(errs, validateDNSLabel(s.Subdomain, fld.Child("subdomain"))...)
	}
	errs = append(errs, validateTolerations(s.Tolerations, fld.Child("tolerations"))...)
	return errs
}

// volumeSourceCount counts the set members of a volume source.
func volumeSourceCount(src *corev1.VolumeSource) int {
	n := 0
	v := reflect.ValueOf(src).Elem()
	for i := 0; i < v.NumField(); i++ {
		if f := v.Field(i); f.Kind() == reflect.Pointer && !f.IsNil() {
			n++
		}
	}
	return n
}

// volumeSourceNames lists the JSON names of the set members.
func volumeSourceNames(src *corev1.VolumeSource) []string {
	var out []string
	v := reflect.ValueOf(src).Elem()
	t := v.Type()
	for i := 0; i < v.NumField(); i++ {
		if f := v.Field(i); f.Kind() == reflect.Pointer && !f.IsNil() {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
			out = append(out, name)
		}
	}
	return out
}

func validateVolumes(vols []corev1.Volume, fld *field.Path) (map[string]corev1.VolumeSource, field.ErrorList) {
	var errs field.ErrorList
	out := map[string]corev1.VolumeSource{}
	for i := range vols {
		v := &vols[i]
		idx := fld.Index(i)
		namePath := idx.Child("name")
		switch {
		case v.Name == "":
			errs = append(errs, field.Required(namePath, ""))
		default:
			errs = append(errs, validateDNSLabel(v.Name, namePath)...)
			if _, dup := out[v.Name]; dup {
				errs = append(errs, field.Duplicate(namePath, v.Name))
			}
		}
		switch srcs := volumeSourceNames(&v.VolumeSource); {
		case len(srcs) == 0:
			errs = append(errs, field.Required(idx, "must specify a volume type"))
		case len(srcs) > 1:
			errs = append(errs, field.Forbidden(idx.Child(srcs[1]), "may not specify more than 1 volume type"))
		default:
			errs = append(errs, validateVolumeSource(&v.VolumeSource, idx)...)
		}
		if v.Name != "" {
			if _, dup := out[v.Name]; !dup {
				out[v.Name] = v.VolumeSource
			}
		}
	}
	return out, errs
}

func validateMode(mode *int32, fld *field.Path) field.ErrorList {
	if mode != nil && (*mode > 0o777 || *mode < 0) {
		return field.ErrorList{field.Invalid(fld, *mode, "must be a number between 0 and 0777 (octal), both inclusive")}
	}
	return nil
}

func validateVolumeSource(src *corev1.VolumeSource, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch {
	case src.Secret != nil:
		p := fld.Child("secret")
		if src.Secret.SecretName == "" {
			errs = append(errs, field.Required(p.Child("secretName"), ""))
		}
		errs = append(errs, validateMode(src.Secret.DefaultMode, p.Child("defaultMode"))...)
		errs = append(errs, validateKeyToPaths(src.Secret.Items, p.Child("items"))...)
	case src.ConfigMap != nil:
		p := fld.Child("configMap")
		if src.ConfigMap.Name == "" {
			errs = append(errs, field.Required(p.Child("name"), ""))
		}
		errs = append(errs, validateMode(src.ConfigMap.DefaultMode, p.Child("defaultMode"))...)
		errs = append(errs, validateKeyToPaths(src.ConfigMap.Items, p.Child("items"))...)
	case src.DownwardAPI != nil:
		errs = append(errs, validateMode(src.DownwardAPI.DefaultMode, fld.Child("downwardAPI", "defaultMode"))...)
	case src.Projected != nil:
		errs = append(errs, validateMode(src.Projected.DefaultMode, fld.Child("projected", "defaultMode"))...)
	case src.HostPath != nil:
		p := fld.Child("hostPath")
		if src.HostPath.Path == "" {
			errs = append(errs, field.Required(p.Child("path"), ""))
		}
		if t := src.HostPath.Type; t != nil && !sets.New(supportedHostPathTypes...).Has(string(*t)) {
			errs = append(errs, field.NotSupported(p.Child("type"), *t, supportedHostPathTypes))
		}
	case src.PersistentVolumeClaim != nil:
		if src.PersistentVolumeClaim.ClaimName == "" {
			errs = append(errs, field.Required(fld.Child("persistentVolumeClaim", "claimName"), ""))
		}
	case src.EmptyDir != nil:
		if l := src.EmptyDir.SizeLimit; l != nil && l.Sign() < 0 {
			errs = append(errs, field.Forbidden(fld.Child("emptyDir", "sizeLimit"), "SizeLimit field must be a valid resource quantity"))
		}
	}
	return errs
}

func validateKeyToPaths(items []corev1.KeyToPath, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, it := range items {
		idx := fld.Index(i)
		if it.Key == "" {
			errs = append(errs, field.Required(idx.Child("key"), ""))
		}
		if it.Path == "" {
			errs = append(errs, field.Required(idx.Child("path"), ""))
		} else if strings.HasPrefix(it.Path, "/") {
			errs = append(errs, field.Invalid(idx.Child("path"), it.Path, "must be a relative path"))
		} else if sets.New(strings.Split(it.Path, "/")...).Has("..") {
			errs = append(errs, field.Invalid(idx.Child("path"), it.Path, "must not contain '..'"))
		}
		errs = append(errs, validateMode(it.Mode, idx.Child("mode"))...)
	}
	return errs
}

func validateContainers(cs []corev1.Container, vols map[string]corev1.VolumeSource, names sets.Set[string], fld *field.Path, init bool) field.ErrorList {
	var errs field.ErrorList
	for i := range cs {
		c := &cs[i]
		idx := fld.Index(i)
		namePath := idx.Child("name")
		if c.Name == "" {
			errs = append(errs, field.Required(namePath, ""))
		} else {
			errs = append(errs, validateDNSLabel(c.Name, namePath)...)
			if names.Has(c.Name) {
				errs = append(errs, field.Duplicate(namePath, c.Name))
			}
			names.Insert(c.Name)
		}
		if c.Image == "" {
			errs = append(errs, field.Required(idx.Child("image"), ""))
		}
		if c.ImagePullPolicy != "" && !sets.New(supportedPullPolicy...).Has(string(c.ImagePullPolicy)) {
			errs = append(errs, field.NotSupported(idx.Child("imagePullPolicy"), c.ImagePullPolicy, supportedPullPolicy))
		}
		if c.TerminationMessagePolicy != "" && !sets.New(supportedTermMsgPolicy...).Has(string(c.TerminationMessagePolicy)) {
			errs = append(errs, field.NotSupported(idx.Child("terminationMessagePolicy"), c.TerminationMessagePolicy, supportedTermMsgPolicy))
		}
		errs = append(errs, validateContainerPorts(c.Ports, idx.Child("ports"))...)
		errs = append(errs, validateEnv(c.Env, idx.Child("env"))...)
		errs = append(errs, validateVolumeMounts(c.VolumeMounts, vols, idx.Child("volumeMounts"))...)
		errs = append(errs, validateResources(&c.Resources, idx.Child("resources"))...)
		restartable := init && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
		if init && !restartable {
			// Plain init containers run to completion: no probes.
			for name, p := range map[string]*corev1.Probe{"livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe, "startupProbe": c.StartupProbe} {
				if p != nil {
					errs = append(errs, field.Forbidden(idx.Child(name), "may not be set for init containers without restartPolicy=Always"))
				}
			}
		} else {
			errs = append(errs, validateProbe(c.LivenessProbe, idx.Child("livenessProbe"), true)...)
			errs = append(errs, validateProbe(c.ReadinessProbe, idx.Child("readinessProbe"), false)...)
			errs = append(errs, validateProbe(c.StartupProbe, idx.Child("startupProbe"), true)...)
		}
		if c.Lifecycle != nil {
			for name, h := range map[string]*corev1.LifecycleHandler{"postStart": c.Lifecycle.PostStart, "preStop": c.Lifecycle.PreStop} {
				if h != nil {
					errs = append(errs, validateHandler(handlerOf(h), idx.Child("lifecycle", name))...)
				}
			}
		}
	}
	return errs
}

func validateContainerPorts(ports []corev1.ContainerPort, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	names := sets.New[string]()
	for i, p := range ports {
		idx := fld.Index(i)
		if p.Name != "" {
			for _, msg := range validation.IsValidPortName(p.Name) {
				errs = append(errs, field.Invalid(idx.Child("name"), p.Name, msg))
			}
			if names.Has(p.Name) {
				errs = append(errs, field.Duplicate(idx.Child("name"), p.Name))
			}
			names.Insert(p.Name)
		}
		if p.ContainerPort == 0 {
			errs = append(errs, field.Required(idx.Child("containerPort"), ""))
		} else {
			for _, msg := range validation.IsValidPortNum(int(p.ContainerPort)) {
				errs = append(errs, field.Invalid(idx.Child("containerPort"), p.ContainerPort, msg))
			}
		}
		if p.HostPort != 0 {
			for _, msg := range validation.IsValidPortNum(int(p.HostPort)) {
				errs = append(errs, field.Invalid(idx.Child("hostPort"), p.HostPort, msg))
			}
		}
		errs = append(errs, validateProtocol(p.Protocol, idx.Child("protocol"))...)
	}
	return errs
}

func validateProtocol(p corev1.Protocol, fld *field.Path) field.ErrorList {
	switch p {
	case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
		return nil
	case "":
		return field.ErrorList{field.Required(fld, "")}
	}
	return field.ErrorList{field.NotSupported(fld, p, supportedProtocols)}
}

func validateEnv(env []corev1.EnvVar, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, e := range env {
		idx := fld.Index(i)
		if e.Name == "" {
			errs = append(errs, field.Required(idx.Child("name"), ""))
		} else {
			for _, msg := range validation.IsRelaxedEnvVarName(e.Name) {
				errs = append(errs, field.Invalid(idx.Child("name"), e.Name, msg))
			}
		}
		if vf := e.ValueFrom; vf != nil {
			n := 0
			if vf.FieldRef != nil {
				n++
				if vf.FieldRef.FieldPath == "" {
					errs = append(errs, field.Required(idx.Child("valueFrom", "fieldRef", "fieldPath"), ""))
				}
			}
			if vf.ResourceFieldRef != nil {
				n++
				if vf.ResourceFieldRef.Resource == "" {
					errs = append(errs, field.Required(idx.Child("valueFrom", "resourceFieldRef", "resource"), ""))
				}
			}
			if vf.ConfigMapKeyRef != nil {
				n++
				if vf.ConfigMapKeyRef.Key == "" {
					errs = append(errs, field.Required(idx.Child("valueFrom", "configMapKeyRef", "key"), ""))
				}
			}
			if vf.SecretKeyRef != nil {
				n++
				if vf.SecretKeyRef.Key == "" {
					errs = append(errs, field.Required(idx.Child("valueFrom", "secretKeyRef", "key"), ""))
				}
			}
			if vf.FileKeyRef != nil {
				n++
			}
			switch {
			case n == 0:
				errs = append(errs, field.Invalid(idx.Child("valueFrom"), "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"))
			case n > 1:
				errs = append(errs, field.Invalid(idx.Child("valueFrom"), "", "may not have more than one field specified at a time"))
			}
			if e.Value != "" && n > 0 {
				errs = append(errs, field.Invalid(idx.Child("valueFrom"), "", "may not be specified when `value` is not empty"))
			}
		}
	}
	return errs
}

func validateVolumeMounts(mounts []corev1.VolumeMount, vols map[string]corev1.VolumeSource, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	paths := sets.New[string]()
	for i, m := range mounts {
		idx := fld.Index(i)
		if m.Name == "" {
			errs = append(errs, field.Required(idx.Child("name"), ""))
		} else if _, ok := vols[m.Name]; !ok {
			errs = append(errs, field.NotFound(idx.Child("name"), m.Name))
		}
		if m.MountPath == "" {
			errs = append(errs, field.Required(idx.Child("mountPath"), ""))
		} else {
			if paths.Has(m.MountPath) {
				errs = append(errs, field.Invalid(idx.Child("mountPath"), m.MountPath, "must be unique"))
			}
			paths.Insert(m.MountPath)
		}
		if m.SubPath != "" {
			if strings.HasPrefix(m.SubPath, "/") {
				errs = append(errs, field.Invalid(idx.Child("subPath"), m.SubPath, "must be a relative path"))
			} else if sets.New(strings.Split(m.SubPath, "/")...).Has("..") {
				errs = append(errs, field.Invalid(idx.Child("subPath"), m.SubPath, "must not contain '..'"))
			}
		}
		// subPathExpr is checked as written, as upstream (the kubelet checks
		// the expanded path again).
		if m.SubPathExpr != "" {
			if m.SubPath != "" {
				errs = append(errs, field.Invalid(idx.Child("subPathExpr"), m.SubPathExpr, "subPathExpr and subPath are mutually exclusive"))
			}
			if strings.HasPrefix(m.SubPathExpr, "/") {
				errs = append(errs, field.Invalid(idx.Child("subPathExpr"), m.SubPathExpr, "must be a relative path"))
			}
			if sets.New(strings.Split(m.SubPathExpr, "/")...).Has("..") {
				errs = append(errs, field.Invalid(idx.Child("subPathExpr"), m.SubPathExpr, "must not contain '..'"))
			}
		}
	}
	return errs
}

func validateResources(r *corev1.ResourceRequirements, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	for name, q := range r.Limits {
		if q.Sign() < 0 {
			errs = append(errs, field.Invalid(fld.Child("limits").Key(string(name)), q.String(), "must be greater than or equal to 0"))
		}
	}
	for name, q := range r.Requests {
		p := fld.Child("requests").Key(string(name))
		if q.Sign() < 0 {
			errs = append(errs, field.Invalid(p, q.String(), "must be greater than or equal to 0"))
		}
		if lim, ok := r.Limits[name]; ok && q.Cmp(lim) > 0 {
			errs = append(errs, field.Invalid(p, q.String(), fmt.Sprintf("must be less than or equal to %s limit of %s", name, lim.String())))
		}
	}
	return errs
}

// handler is the union of probe and lifecycle actions.
type handler struct {
	exec      *corev1.ExecAction
	httpGet   *corev1.HTTPGetAction
	tcpSocket *corev1.TCPSocketAction
	grpc      *corev1.GRPCAction
	sleep     *corev1.SleepAction
}

func handlerOf(h *corev1.LifecycleHandler) handler {
	return handler{exec: h.Exec, httpGet: h.HTTPGet, tcpSocket: h.TCPSocket, sleep: h.Sleep}
}

func validateHandler(h handler, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	n := 0
	check := func(set bool, name string, more func(*field.Path) field.ErrorList) {
		if !set {
			return
		}
		if n > 0 {
			errs = append(errs, field.Forbidden(fld.Child(name), "may not specify more than 1 handler type"))
		} else {
			errs = append(errs, more(fld.Child(name))...)
		}
		n++
	}
	check(h.exec != nil, "exec", func(p *field.Path) field.ErrorList {
		if len(h.exec.Command) == 0 {
			return field.ErrorList{field.Required(p.Child("command"), "")}
		}
		return nil
	})
	check(h.httpGet != nil, "httpGet", func(p *field.Path) field.ErrorList {
		var e field.ErrorList
		if h.httpGet.Path == "" {
			e = append(e, field.Required(p.Child("path"), ""))
		}
		e = append(e, validatePortNumOrName(h.httpGet.Port, p.Child("port"))...)
		if s := h.httpGet.Scheme; s != corev1.URISchemeHTTP && s != corev1.URISchemeHTTPS {
			e = append(e, field.NotSupported(p.Child("scheme"), s, supportedHTTPSchemes))
		}
		return e
	})
	check(h.tcpSocket != nil, "tcpSocket", func(p *field.Path) field.ErrorList {
		return validatePortNumOrName(h.tcpSocket.Port, p.Child("port"))
	})
	check(h.grpc != nil, "grpc", func(p *field.Path) field.ErrorList {
		var e field.ErrorList
		for _, msg := range validation.IsValidPortNum(int(h.grpc.Port)) {
			e = append(e, field.Invalid(p.Child("port"), h.grpc.Port, msg))
		}
		return e
	})
	check(h.sleep != nil, "sleep", func(p *field.Path) field.ErrorList {
		if h.sleep.Seconds < 0 {
			return field.ErrorList{field.Invalid(p.Child("seconds"), h.sleep.Seconds, "must be non-negative integer")}
		}
		return nil
	})
	if n == 0 {
		errs = append(errs, field.Required(fld, "must specify a handler type"))
	}
	return errs
}

func validateProbe(p *corev1.Probe, fld *field.Path, successMustBeOne bool) field.ErrorList {
	if p == nil {
		return nil
	}
	errs := validateHandler(handler{exec: p.Exec, httpGet: p.HTTPGet, tcpSocket: p.TCPSocket, grpc: p.GRPC}, fld)
	errs = append(errs, validateNonnegative(int64(p.InitialDelaySeconds), fld.Child("initialDelaySeconds"))...)
	errs = append(errs, validateNonnegative(int64(p.TimeoutSeconds), fld.Child("timeoutSeconds"))...)
	errs = append(errs, validateNonnegative(int64(p.PeriodSeconds), fld.Child("periodSeconds"))...)
	errs = append(errs, validateNonnegative(int64(p.SuccessThreshold), fld.Child("successThreshold"))...)
	errs = append(errs, validateNonnegative(int64(p.FailureThreshold), fld.Child("failureThreshold"))...)
	if successMustBeOne && p.SuccessThreshold != 1 {
		errs = append(errs, field.Invalid(fld.Child("successThreshold"), p.SuccessThreshold, "must be 1"))
	}
	if p.TerminationGracePeriodSeconds != nil && *p.TerminationGracePeriodSeconds <= 0 {
		errs = append(errs, field.Invalid(fld.Child("terminationGracePeriodSeconds"), *p.TerminationGracePeriodSeconds, "must be greater than 0"))
	}
	return errs
}

// validatePortNumOrName accepts a port number 1-65535 or an IANA_SVC_NAME.
func validatePortNumOrName(port intstr.IntOrString, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch port.Type {
	case intstr.Int:
		for _, msg := range validation.IsValidPortNum(port.IntValue()) {
			errs = append(errs, field.Invalid(fld, port.IntValue(), msg))
		}
	case intstr.String:
		for _, msg := range validation.IsValidPortName(port.StrVal) {
			errs = append(errs, field.Invalid(fld, port.StrVal, msg))
		}
	default:
		errs = append(errs, field.InternalError(fld, fmt.Errorf("unknown type: %v", port.Type)))
	}
	return errs
}

func validateTolerations(ts []corev1.Toleration, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, t := range ts {
		idx := fld.Index(i)
		if t.Key != "" {
			errs = append(errs, metav1validation.ValidateLabelName(t.Key, idx.Child("key"))...)
		}
		if t.Key == "" && t.Operator != corev1.TolerationOpExists {
			errs = append(errs, field.Invalid(idx.Child("operator"), t.Operator, "operator must be Exists when `key` is empty, which means \"match all values and all keys\""))
		}
		if t.TolerationSeconds != nil && t.Effect != corev1.TaintEffectNoExecute {
			errs = append(errs, field.Invalid(idx.Child("effect"), t.Effect, "effect must be 'NoExecute' when `tolerationSeconds` is set"))
		}
		switch t.Operator {
		case corev1.TolerationOpEqual, "":
		case corev1.TolerationOpExists:
			if t.Value != "" {
				errs = append(errs, field.Invalid(idx.Child("operator"), t.Value, "value must be empty when `operator` is 'Exists'"))
			}
		default:
			errs = append(errs, field.NotSupported(idx.Child("operator"), t.Operator, supportedTolerationOps))
		}
		if t.Effect != "" && !sets.New(supportedTaintEffects...).Has(string(t.Effect)) {
			errs = append(errs, field.NotSupported(idx.Child("effect"), t.Effect, supportedTaintEffects))
		}
	}
	return errs
}

// validatePodUpdate allows only upstream's mutable pod spec fields to change.
func validatePodUpdate(pod, old *corev1.Pod) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	if len(pod.Spec.Containers) != len(old.Spec.Containers) || len(pod.Spec.InitContainers) != len(old.Spec.InitContainers) {
		return field.ErrorList{field.Forbidden(spec, "pod updates may not change fields other than "+podUpdatableFieldsClaim)}
	}
	munged := pod.Spec.DeepCopy()
	// An emptied image is reported by the pod spec validation.
	for i := range munged.Containers {
		munged.Containers[i].Image = old.Spec.Containers[i].Image
	}
	for i := range munged.InitContainers {
		munged.InitContainers[i].Image = old.Spec.InitContainers[i].Image
	}
	// activeDeadlineSeconds may be set, or lowered, never removed or raised.
	if o := old.Spec.ActiveDeadlineSeconds; o != nil {
		n := pod.Spec.ActiveDeadlineSeconds
		switch {
		case n == nil:
			errs = append(errs, field.Invalid(spec.Child("activeDeadlineSeconds"), n, "must not update from a positive integer to nil value"))
		case *n > *o:
			errs = append(errs, field.Invalid(spec.Child("activeDeadlineSeconds"), *n, "must be less than or equal to previous value"))
		}
	}
	munged.ActiveDeadlineSeconds = old.Spec.ActiveDeadlineSeconds
	if tolerationsAdded(old.Spec.Tolerations, pod.Spec.Tolerations) {
		munged.Tolerations = old.Spec.Tolerations
	}
	if o, n := old.Spec.TerminationGracePeriodSeconds, pod.Spec.TerminationGracePeriodSeconds; o != nil && *o < 0 && n != nil && *n == 1 {
		munged.TerminationGracePeriodSeconds = o
	}
	// Scheduling gates may only be removed.
	if gatesRemoved(old.Spec.SchedulingGates, pod.Spec.SchedulingGates) {
		munged.SchedulingGates = old.Spec.SchedulingGates
	}
	if !apiequality.Semantic.DeepEqual(*munged, old.Spec) {
		errs = append(errs, field.Forbidden(spec, "pod updates may not change fields other than "+podUpdatableFieldsClaim))
	}
	return errs
}

// tolerationsAdded reports whether every old toleration is still present;
// only tolerationSeconds of an existing toleration may change.
func tolerationsAdded(old, cur []corev1.Toleration) bool {
	for _, o := range old {
		found := false
		for _, c := range cur {
			if c.Key == o.Key && c.Operator == o.Operator && c.Value == o.Value && c.Effect == o.Effect {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func gatesRemoved(old, cur []corev1.PodSchedulingGate) bool {
	have := sets.New[string]()
	for _, g := range old {
		have.Insert(g.Name)
	}
	for _, g := range cur {
		if !have.Has(g.Name) {
			return false
		}
	}
	return true
}
