// Package scales reads and writes the scale subresource of any workload
// kind a controller reference or a scaleTargetRef names — the built-in
// ones, ReplicationControllers, and custom resources whose definition
// declares subresources.scale — through discovery, as upstream's
// horizontal pod autoscaler and disruption controllers do.
package scales

import (
	"context"
	"fmt"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/scale"
)

// Client gets and updates scales by apiVersion and kind.
type Client struct {
	mapper *restmapper.DeferredDiscoveryRESTMapper
	scales scale.ScalesGetter
}

// New returns a client that discovers resources through cs (cached; the
// cache is dropped when a kind is not found, so new CRDs are seen).
func New(cs kubernetes.Interface) *Client {
	disc := memory.NewMemCacheClient(cs.Discovery())
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(disc)
	return &Client{
		mapper: mapper,
		scales: scale.New(cs.Discovery().RESTClient(), mapper, dynamic.LegacyAPIPathResolverFunc, scale.NewDiscoveryScaleKindResolver(disc)),
	}
}

// Resource maps apiVersion and kind to the group and resource whose scale
// is read (discovery is refreshed once if the kind is unknown).
func (c *Client) Resource(apiVersion, kind string) (schema.GroupResource, error) {
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return schema.GroupResource{}, fmt.Errorf("apiVersion %q: %w", apiVersion, err)
	}
	gk := schema.GroupKind{Group: gv.Group, Kind: kind}
	m, err := c.mapper.RESTMapping(gk, gv.Version)
	if apimeta.IsNoMatchError(err) {
		c.mapper.Reset()
		m, err = c.mapper.RESTMapping(gk, gv.Version)
	}
	if err != nil {
		return schema.GroupResource{}, fmt.Errorf("kind %s in %s: %w", kind, apiVersion, err)
	}
	return m.Resource.GroupResource(), nil
}

// Get reads the scale of the object kind/name of apiVersion in ns.
func (c *Client) Get(ctx context.Context, ns, apiVersion, kind, name string) (*autoscalingv1.Scale, schema.GroupResource, error) {
	gr, err := c.Resource(apiVersion, kind)
	if err != nil {
		return nil, gr, err
	}
	s, err := c.scales.Scales(ns).Get(ctx, gr, name, metav1.GetOptions{})
	if err != nil {
		return nil, gr, fmt.Errorf("scale of %s %s/%s: %w", gr, ns, name, err)
	}
	return s, gr, nil
}

// Update writes s (read with Get, so with its resourceVersion) back.
func (c *Client) Update(ctx context.Context, ns string, gr schema.GroupResource, s *autoscalingv1.Scale) (*autoscalingv1.Scale, error) {
	out, err := c.scales.Scales(ns).Update(ctx, gr, s, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("scale of %s %s/%s: %w", gr, ns, s.Name, err)
	}
	return out, nil
}
