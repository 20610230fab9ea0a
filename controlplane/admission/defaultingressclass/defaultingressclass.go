// Package defaultingressclass is upstream's DefaultIngressClass admission
// plugin: an Ingress created without spec.ingressClassName (and without
// the deprecated kubernetes.io/ingress.class annotation) gets the default
// IngressClass, the one annotated
// ingressclass.kubernetes.io/is-default-class=true (the newest when
// several are marked).
package defaultingressclass

import (
	"context"

	"github.com/skiffhq/skiff/controlplane/admission/internal/objects"
	"github.com/skiffhq/skiff/controlplane/apiserver"
	networkingv1 "k8s.io/api/networking/v1"
)

const (
	// IsDefaultAnnotation marks the default class.
	IsDefaultAnnotation   = "ingressclass.kubernetes.io/is-default-class"
	legacyClassAnnotation = "kubernetes.io/ingress.class"
)

// Plugin is the DefaultIngressClass admission plugin.
type Plugin struct{ r *objects.Reader }

var _ apiserver.AdmissionPlugin = (*Plugin)(nil)

// New returns the plugin.
func New(r *objects.Reader) *Plugin { return &Plugin{r: r} }

// Name implements apiserver.AdmissionPlugin.
func (p *Plugin) Name() string { return "DefaultIngressClass" }

// Admit implements apiserver.AdmissionPlugin.
func (p *Plugin) Admit(ctx context.Context, a *apiserver.Attributes) error {
	if a.Operation != apiserver.OpCreate || a.Subresource != "" || a.Resource == nil ||
		a.Resource.Group != "networking.k8s.io" || a.Resource.Plural != "ingresses" {
		return nil
	}
	ing, ok := a.Object.(*networkingv1.Ingress)
	if !ok || ing.Spec.IngressClassName != nil {
		return nil
	}
	if _, ok := ing.Annotations[legacyClassAnnotation]; ok {
		return nil
	}
	best, err := objects.NewestDefault(p.r, "networking.k8s.io", "ingressclasses", func(c *networkingv1.IngressClass) bool {
		return c.Annotations[IsDefaultAnnotation] == "true"
	})
	if err != nil {
		return err
	}
	if best != nil {
		name := best.Name
		ing.Spec.IngressClassName = &name
	}
	return nil
}

// Validate implements apiserver.AdmissionPlugin.
func (p *Plugin) Validate(context.Context, *apiserver.Attributes) error { return nil }
