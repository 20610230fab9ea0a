package metrics

import (
	"context"
	"sort"
	"time"

	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
)

// Group is the resource metrics API group.
const Group = "metrics.k8s.io"

// StaleAnnotation marks NodeMetrics and PodMetrics whose node did not
// answer the latest scrape: the values are the last good ones.
const StaleAnnotation = "metrics.skiff.io/stale"

// Resources are metrics.k8s.io/v1beta1 nodes and pods as read-only virtual
// resources of the API server (registry.Resource Get/List), served from
// the latest snapshot. Labels are the node's and the pod's, and label
// selectors match them, as metrics-server.
func (c *Collector) Resources() []*registry.Resource {
	verbs := []string{"get", "list"}
	return []*registry.Resource{
		{
			Group: Group, Version: "v1beta1", Kind: "NodeMetrics", ListKind: "NodeMetricsList", Plural: "nodes", Singular: "",
			Verbs: verbs,
			New:   func() runtime.Object { return &metricsv1beta1.NodeMetrics{} },
			Get: func(_ context.Context, _, name string) (runtime.Object, error) {
				m, ok := c.NodeMetrics(name)
				if !ok {
					return nil, apierrors.NewNotFound(metricsv1beta1.Resource("nodes"), name)
				}
				return m, nil
			},
			List: func(_ context.Context, _ string, sel labels.Selector) (runtime.Object, error) {
				return c.NodeMetricsList(sel), nil
			},
		},
		{
			Group: Group, Version: "v1beta1", Kind: "PodMetrics", ListKind: "PodMetricsList", Plural: "pods", Singular: "",
			Namespaced: true, Verbs: verbs,
			New: func() runtime.Object { return &metricsv1beta1.PodMetrics{} },
			Get: func(_ context.Context, ns, name string) (runtime.Object, error) {
				m, ok := c.PodMetrics(ns, name)
				if !ok {
					return nil, apierrors.NewNotFound(metricsv1beta1.Resource("pods"), name)
				}
				return m, nil
			},
			List: func(_ context.Context, ns string, sel labels.Selector) (runtime.Object, error) {
				return c.PodMetricsList(ns, sel), nil
			},
		},
	}
}

func cpuQuantity(nanoCores int64) resource.Quantity {
	return *resource.NewScaledQuantity(nanoCores, resource.Nano)
}

func memQuantity(bytes int64) resource.Quantity {
	return *resource.NewQuantity(bytes, resource.BinarySI)
}

func (c *Collector) nodeMetrics(u *NodeUsage, now time.Time) (*metricsv1beta1.NodeMetrics, bool) {
	node, err := c.nodes.Get(u.Name)
	if err != nil {
		return nil, false
	}
	m := &metricsv1beta1.NodeMetrics{
		ObjectMeta: metav1.ObjectMeta{Name: u.Name, Labels: node.Labels, CreationTimestamp: metav1.NewTime(now)},
		Timestamp:  metav1.NewTime(u.Time), Window: metav1.Duration{Duration: u.Window},
		Usage: corev1.ResourceList{corev1.ResourceCPU: cpuQuantity(u.CPU), corev1.ResourceMemory: memQuantity(u.Memory)},
	}
	if u.Stale {
		m.Annotations = map[string]string{StaleAnnotation: "true"}
	}
	return m, true
}

// NodeMetrics is a node's latest metrics.k8s.io object.
func (c *Collector) NodeMetrics(name string) (*metricsv1beta1.NodeMetrics, bool) {
	u, ok := c.Latest().Nodes[name]
	if !ok {
		return nil, false
	}
	return c.nodeMetrics(u, time.Now())
}

// NodeMetricsList lists the nodes with metrics whose labels match sel.
func (c *Collector) NodeMetricsList(sel labels.Selector) *metricsv1beta1.NodeMetricsList {
	snap, now := c.Latest(), time.Now()
	out := &metricsv1beta1.NodeMetricsList{Items: make([]metricsv1beta1.NodeMetrics, 0, len(snap.Nodes))}
	for _, u := range snap.Nodes {
		m, ok := c.nodeMetrics(u, now)
		if ok && (sel == nil || sel.Matches(labels.Set(m.Labels))) {
			out.Items = append(out.Items, *m)
		}
	}
	sort.Slice(out.Items, func(i, j int) bool { return out.Items[i].Name < out.Items[j].Name })
	return out
}

func (c *Collector) podMetrics(u *PodUsage, now time.Time) (*metricsv1beta1.PodMetrics, bool) {
	pod, ok := c.pod(u)
	if !ok {
		return nil, false
	}
	m := &metricsv1beta1.PodMetrics{
		ObjectMeta: metav1.ObjectMeta{Name: u.Name, Namespace: u.Namespace, Labels: pod.Labels, CreationTimestamp: metav1.NewTime(now)},
		Timestamp:  metav1.NewTime(u.Time), Window: metav1.Duration{Duration: u.Window},
		Containers: make([]metricsv1beta1.ContainerMetrics, 0, len(u.Containers)),
	}
	for _, ct := range u.Containers {
		m.Containers = append(m.Containers, metricsv1beta1.ContainerMetrics{Name: ct.Name,
			Usage: corev1.ResourceList{corev1.ResourceCPU: cpuQuantity(ct.CPU), corev1.ResourceMemory: memQuantity(ct.Memory)}})
	}
	if u.Stale {
		m.Annotations = map[string]string{StaleAnnotation: "true"}
	}
	return m, true
}

// PodMetrics is a pod's latest metrics.k8s.io object.
func (c *Collector) PodMetrics(ns, name string) (*metricsv1beta1.PodMetrics, bool) {
	u, ok := c.Latest().Pods[ns+"/"+name]
	if !ok {
		return nil, false
	}
	return c.podMetrics(u, time.Now())
}

// PodMetricsList lists pods with metrics in ns ("" = all) whose labels
// match sel.
func (c *Collector) PodMetricsList(ns string, sel labels.Selector) *metricsv1beta1.PodMetricsList {
	snap, now := c.Latest(), time.Now()
	out := &metricsv1beta1.PodMetricsList{Items: []metricsv1beta1.PodMetrics{}}
	for _, u := range snap.Pods {
		if ns != "" && u.Namespace != ns {
			continue
		}
		m, ok := c.podMetrics(u, now)
		if ok && (sel == nil || sel.Matches(labels.Set(m.Labels))) {
			out.Items = append(out.Items, *m)
		}
	}
	sort.Slice(out.Items, func(i, j int) bool {
		a, b := out.Items[i], out.Items[j]
		return a.Namespace < b.Namespace || a.Namespace == b.Namespace && a.Name < b.Name
	})
	return out
}
