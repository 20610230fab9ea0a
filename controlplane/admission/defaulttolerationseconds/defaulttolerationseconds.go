// Package defaulttolerationseconds is upstream's DefaultTolerationSeconds
// admission plugin: every pod gets NoExecute tolerations of the
// node.kubernetes.io/not-ready and node.kubernetes.io/unreachable taints
// for 300 seconds unless it already tolerates them, so that taint-based
// eviction gives pods on a lost node five minutes before they are deleted.
package defaulttolerationseconds

import (
	"context"

	"github.com/skiffhq/skiff/controlplane/apiserver"
	corev1 "k8s.io/api/core/v1"
)

// DefaultSeconds is upstream's default for both tolerations
// (--default-not-ready-toleration-seconds, --default-unreachable-toleration-seconds).
const DefaultSeconds = int64(300)

// Plugin is the DefaultTolerationSeconds admission plugin.
type Plugin struct {
	notReady, unreachable int64
}

var _ apiserver.AdmissionPlugin = (*Plugin)(nil)

// New returns the plugin with upstream's 300 seconds for both taints.
func New() *Plugin { return &Plugin{notReady: DefaultSeconds, unreachable: DefaultSeconds} }

// Name implements apiserver.AdmissionPlugin.
func (p *Plugin) Name() string { return "DefaultTolerationSeconds" }

// Admit implements apiserver.AdmissionPlugin: pods being created or
// updated (not their subresources) get the missing tolerations.
func (p *Plugin) Admit(_ context.Context, a *apiserver.Attributes) error {
	if a.Resource == nil || a.Resource.Group != "" || a.Resource.Plural != "pods" || a.Subresource != "" {
		return nil
	}
	if a.Operation != apiserver.OpCreate && a.Operation != apiserver.OpUpdate {
		return nil
	}
	pod, ok := a.Object.(*corev1.Pod)
	if !ok {
		return nil
	}
	AddDefaults(&pod.Spec, p.notReady, p.unreachable)
	return nil
}

// Validate implements apiserver.AdmissionPlugin.
func (p *Plugin) Validate(context.Context, *apiserver.Attributes) error { return nil }

// AddDefaults appends the not-ready and unreachable NoExecute tolerations
// that spec lacks. A toleration with an empty key (all taints) or an empty
// effect (all effects) counts as tolerating, as upstream.
func AddDefaults(spec *corev1.PodSpec, notReadySeconds, unreachableSeconds int64) {
	notReady, unreachable := false, false
	for _, t := range spec.Tolerations {
		if t.Effect != "" && t.Effect != corev1.TaintEffectNoExecute {
			continue
		}
		if t.Key == "" || t.Key == corev1.TaintNodeNotReady {
			notReady = true
		}
		if t.Key == "" || t.Key == corev1.TaintNodeUnreachable {
			unreachable = true
		}
	}
	if !notReady {
		spec.Tolerations = append(spec.Tolerations, corev1.Toleration{Key: corev1.TaintNodeNotReady,
			Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &notReadySeconds})
	}
	if !unreachable {
		spec.Tolerations = append(spec.Tolerations, corev1.Toleration{Key: corev1.TaintNodeUnreachable,
			Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &unreachableSeconds})
	}
}
