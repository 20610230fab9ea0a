// Package podsecurity is upstream's PodSecurity admission plugin: the
// namespace labels pod-security.kubernetes.io/enforce, audit and warn
// (each with a -version label) choose the privileged, baseline or
// restricted Pod Security Standard. Enforce rejects violating pods with
// upstream's 403 message, warn adds Warning headers and audit adds the
// pod-security.kubernetes.io/audit-violations audit annotation (both also
// for workload resources with pod templates), and configured usernames, runtime
// classes and namespaces are exempt.
package podsecurity

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/skiffhq/skiff/controlplane/admission/internal/objects"
	"github.com/skiffhq/skiff/controlplane/apiserver"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Levels of the Pod Security Standards.
const (
	Privileged = "privileged"
	Baseline   = "baseline"
	Restricted = "restricted"
	Latest     = "latest"

	labelPrefix = "pod-security.kubernetes.io/"
)

// Policy is one mode's level and version.
type Policy struct {
	Level   string `json:"level"`
	Version string `json:"version"`
}

func (p Policy) String() string { return p.Level + ":" + p.Version }

// Config is the plugin's configuration (upstream's
// PodSecurityConfiguration): defaults for namespaces without labels, and
// exemptions.
type Config struct {
	Enforce Policy
	Audit   Policy
	Warn    Policy
	// Exempt usernames, runtime class names and namespaces are never
	// evaluated.
	ExemptUsernames      []string
	ExemptRuntimeClasses []string
	ExemptNamespaces     []string
}

// DefaultConfig is privileged:latest for every mode, with kube-system
// exempt (its components run privileged pods).
func DefaultConfig() Config {
	d := Policy{Level: Privileged, Version: Latest}
	return Config{Enforce: d, Audit: d, Warn: d, ExemptNamespaces: []string{"kube-system"}}
}

// Plugin is the PodSecurity admission plugin.
type Plugin struct {
	r   *objects.Reader
	cfg Config
}

var _ apiserver.AdmissionPlugin = (*Plugin)(nil)

// New returns the plugin.
func New(r *objects.Reader, cfg Config) (*Plugin, error) {
	for _, p := range []*Policy{&cfg.Enforce, &cfg.Audit, &cfg.Warn} {
		if p.Level == "" {
			p.Level = Privileged
		}
		if p.Version == "" {
			p.Version = Latest
		}
		if !validLevel(p.Level) || !validVersion(p.Version) {
			return nil, fmt.Errorf("invalid PodSecurity default %s", p)
		}
	}
	return &Plugin{r: r, cfg: cfg}, nil
}

// Name implements apiserver.AdmissionPlugin.
func (p *Plugin) Name() string { return "PodSecurity" }

// Admit implements apiserver.AdmissionPlugin.
func (p *Plugin) Admit(context.Context, *apiserver.Attributes) error { return nil }

var versionRE = regexp.MustCompile(`^v1\.(0|[1-9][0-9]*)$`)

func validLevel(l string) bool { return l == Privileged || l == Baseline || l == Restricted }

func validVersion(v string) bool { return v == Latest || versionRE.MatchString(v) }

// policies reads a namespace's labels; invalid values count as
// restricted:latest, as upstream.
func (p *Plugin) policies(labels map[string]string) (enforce, audit, warn Policy) {
	read := func(mode string, def Policy) Policy {
		pol := def
		if l, ok := labels[labelPrefix+mode]; ok {
			if !validLevel(l) {
				return Policy{Level: Restricted, Version: Latest}
			}
			pol = Policy{Level: l, Version: Latest}
		}
		if v, ok := labels[labelPrefix+mode+"-version"]; ok {
			if !validVersion(v) {
				return Policy{Level: Restricted, Version: Latest}
			}
			pol.Version = v
		}
		return pol
	}
	return read("enforce", p.cfg.Enforce), read("audit", p.cfg.Audit), read("warn", p.cfg.Warn)
}

// Evaluate returns the failed checks of a pod at level.
func Evaluate(level string, meta map[string]string, spec *corev1.PodSpec) []string {
	var rs []result
	switch level {
	case Baseline:
		rs = baseline(meta, spec)
	case Restricted:
		rs = restricted(meta, spec)
	default:
		return nil
	}
	sortResults(rs)
	out := make([]string, len(rs))
	for i, r := range rs {
		if r.detail == "" {
			out[i] = r.reason
		} else {
			out[i] = r.reason + " (" + r.detail + ")"
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Validate implements apiserver.AdmissionPlugin.
func (p *Plugin) Validate(ctx context.Context, a *apiserver.Attributes) error {
	if a.Resource == nil || (a.Operation != apiserver.OpCreate && a.Operation != apiserver.OpUpdate) {
		return nil
	}
	if a.Resource.Group == "" && a.Resource.Plural == "namespaces" && a.Subresource == "" {
		p.checkNamespace(ctx, a)
		return nil
	}
	meta, spec, isPod := podSpecOf(a)
	if spec == nil {
		return nil
	}
	if isPod {
		// Pods are evaluated when created and when ephemeral containers
		// are added; other updates cannot change what is checked.
		if a.Operation == apiserver.OpUpdate && a.Subresource != "ephemeralcontainers" {
			return nil
		}
	} else if a.Subresource != "" {
		return nil
	}
	if contains(p.cfg.ExemptNamespaces, a.Namespace) {
		return nil
	}
	if a.User != nil && contains(p.cfg.ExemptUsernames, a.User.Name) {
		return nil
	}
	if spec.RuntimeClassName != nil && contains(p.cfg.ExemptRuntimeClasses, *spec.RuntimeClassName) {
		return nil
	}
	ns, err := objects.Get[corev1.Namespace](p.r, "", "namespaces", "", a.Namespace)
	if err != nil {
		return nil // NamespaceLifecycle reports missing namespaces
	}
	enforce, audit, warn := p.policies(ns.Labels)
	if isPod {
		apiserver.AddAuditAnnotation(ctx, "pod-security.kubernetes.io/enforce-policy", enforce.String())
	}
	if audit.Level != Privileged {
		if fails := Evaluate(audit.Level, meta, spec); len(fails) > 0 {
			apiserver.AddAuditAnnotation(ctx, "pod-security.kubernetes.io/audit-violations",
				fmt.Sprintf("would violate PodSecurity %q: %s", audit.String(), strings.Join(fails, ", ")))
		}
	}
	if isPod && enforce.Level != Privileged {
		if fails := Evaluate(enforce.Level, meta, spec); len(fails) > 0 {
			return apierrors.NewForbidden(a.Resource.GVR().GroupResource(), a.Name,
				fmt.Errorf("violates PodSecurity %q: %s", enforce.String(), strings.Join(fails, ", ")))
		}
	}
	if warn.Level != Privileged {
		if fails := Evaluate(warn.Level, meta, spec); len(fails) > 0 {
			apiserver.AddWarning(ctx, fmt.Sprintf("would violate PodSecurity %q: %s", warn.String(), strings.Join(fails, ", ")))
		}
	}
	return nil
}

// checkNamespace warns about existing pods that a new enforce level
// would reject, as upstream does when the label changes.
func (p *Plugin) checkNamespace(ctx context.Context, a *apiserver.Attributes) {
	ns, ok := a.Object.(*corev1.Namespace)
	if !ok || a.Operation != apiserver.OpUpdate || contains(p.cfg.ExemptNamespaces, ns.Name) {
		return
	}
	enforce, _, _ := p.policies(ns.Labels)
	if old, ok := a.OldObject.(*corev1.Namespace); ok {
		before, _, _ := p.policies(old.Labels)
		if before == enforce {
			return
		}
	}
	if enforce.Level == Privileged {
		return
	}
	pods, err := objects.List[corev1.Pod](p.r, "", "pods", ns.Name)
	if err != nil {
		return
	}
	var lines []string
	for _, pod := range pods {
		if pod.Spec.RuntimeClassName != nil && contains(p.cfg.ExemptRuntimeClasses, *pod.Spec.RuntimeClassName) {
			continue
		}
		if fails := Evaluate(enforce.Level, pod.Annotations, &pod.Spec); len(fails) > 0 {
			lines = append(lines, pod.Name+": "+strings.Join(reasonsOnly(fails), ", "))
		}
	}
	if len(lines) == 0 {
		return
	}
	apiserver.AddWarning(ctx, fmt.Sprintf("existing pods in namespace %q violate the new PodSecurity enforce level %q", ns.Name, enforce.String()))
	sort.Strings(lines)
	for _, l := range lines {
		apiserver.AddWarning(ctx, l)
	}
}

func reasonsOnly(fails []string) []string {
	out := make([]string, len(fails))
	for i, f := range fails {
		if j := strings.Index(f, " ("); j > 0 {
			f = f[:j]
		}
		out[i] = f
	}
	return out
}

// podSpecOf finds the pod spec of a pod or of a workload's pod template.
func podSpecOf(a *apiserver.Attributes) (map[string]string, *corev1.PodSpec, bool) {
	switch o := a.Object.(type) {
	case *corev1.Pod:
		return o.Annotations, &o.Spec, true
	case *corev1.PodTemplate:
		return o.Template.Annotations, &o.Template.Spec, false
	case *corev1.ReplicationController:
		if o.Spec.Template != nil {
			return o.Spec.Template.Annotations, &o.Spec.Template.Spec, false
		}
	case *appsv1.Deployment:
		return o.Spec.Template.Annotations, &o.Spec.Template.Spec, false
	case *appsv1.ReplicaSet:
		return o.Spec.Template.Annotations, &o.Spec.Template.Spec, false
	case *appsv1.StatefulSet:
		return o.Spec.Template.Annotations, &o.Spec.Template.Spec, false
	case *appsv1.DaemonSet:
		return o.Spec.Template.Annotations, &o.Spec.Template.Spec, false
	case *batchv1.Job:
		return o.Spec.Template.Annotations, &o.Spec.Template.Spec, false
	case *batchv1.CronJob:
		return o.Spec.JobTemplate.Spec.Template.Annotations, &o.Spec.JobTemplate.Spec.Template.Spec, false
	}
	return nil, nil, false
}
