// Package nodeipam is the node IPAM controller (upstream
// "node-ipam-controller" with the range allocator): it gives every Node
// without one a pod range (spec.podCIDR/podCIDRs, a /24 of --cluster-cidr by
// default) and takes it back when the Node is deleted. See README.md.
package nodeipam

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
)

// Name is upstream's name of the controller.
const Name = "node-ipam-controller"

// Default node mask sizes, as upstream's --node-cidr-mask-size-ipv4/-ipv6.
const (
	DefaultMaskSizeIPv4 = 24
	DefaultMaskSizeIPv6 = 64
)

// fullRetry is how long a node waits for a range when the cluster CIDR is full.
const fullRetry = 10 * time.Second

// Config is what the controller needs.
type Config struct {
	Client    kubernetes.Interface
	Informers informers.SharedInformerFactory
	// Recorder receives CIDRNotAvailable events (optional).
	Recorder record.EventRecorder
	Logger   *slog.Logger
	// ClusterCIDR is the pod range, comma separated for dual stack (at most
	// one per IP family), e.g. "10.42.0.0/16".
	ClusterCIDR string
	// MaskSizeIPv4 and MaskSizeIPv6 are the node range sizes (24, 64).
	MaskSizeIPv4, MaskSizeIPv6 int
}

type owned struct {
	uid   types.UID
	cidrs []string
}

// Controller is the node IPAM controller.
type Controller struct {
	cfg    Config
	log    *slog.Logger
	nodes  corelisters.NodeLister
	synced cache.InformerSynced
	queue  workqueue.TypedRateLimitingInterface[string]

	mu     sync.Mutex
	sets   []*CIDRSet
	owners map[string]string // cidr -> node name
	byNode map[string]owned  // node name -> what it holds
}

var _ controllers.Controller = (*Controller)(nil)

// ParseClusterCIDRs splits and validates a --cluster-cidr value.
func ParseClusterCIDRs(s string, v4Mask, v6Mask int) ([]*CIDRSet, error) {
	if v4Mask == 0 {
		v4Mask = DefaultMaskSizeIPv4
	}
	if v6Mask == 0 {
		v6Mask = DefaultMaskSizeIPv6
	}
	var sets []*CIDRSet
	families := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		_, n, err := net.ParseCIDR(part)
		if err != nil {
			return nil, fmt.Errorf("nodeipam: cluster CIDR %q: %w", part, err)
		}
		_, bits := n.Mask.Size()
		if families[bits] {
			return nil, fmt.Errorf("nodeipam: cluster CIDR %q: at most one range per IP family", s)
		}
		families[bits] = true
		mask := v4Mask
		if bits == 128 {
			mask = v6Mask
		}
		set, err := NewCIDRSet(n, mask)
		if err != nil {
			return nil, err
		}
		sets = append(sets, set)
	}
	if len(sets) == 0 {
		return nil, errors.New("nodeipam: no cluster CIDR")
	}
	return sets, nil
}

// New returns the controller; it fails on an invalid cluster CIDR.
func New(cfg Config) (*Controller, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	sets, err := ParseClusterCIDRs(cfg.ClusterCIDR, cfg.MaskSizeIPv4, cfg.MaskSizeIPv6)
	if err != nil {
		return nil, err
	}
	inf := cfg.Informers.Core().V1().Nodes()
	c := &Controller{cfg: cfg, log: cfg.Logger.With("component", Name), nodes: inf.Lister(), synced: inf.Informer().HasSynced,
		queue: controllers.NewQueue(Name), sets: sets, owners: map[string]string{}, byNode: map[string]owned{}}
	add := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			c.queue.Add(key)
		}
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: add,
		UpdateFunc: func(old, cur any) {
			o, ok1 := old.(*corev1.Node)
			n, ok2 := cur.(*corev1.Node)
			if !ok1 || !ok2 || o.UID != n.UID || !slices.Equal(podCIDRs(o), podCIDRs(n)) || len(podCIDRs(n)) == 0 {
				add(cur)
			}
		},
		DeleteFunc: add,
	}); err != nil {
		return nil, fmt.Errorf("nodeipam: node handler: %w", err)
	}
	return c, nil
}

// Name implements controllers.Controller.
func (c *Controller) Name() string { return Name }

// Run implements controllers.Controller. Allocation is serial (one worker
// whatever is asked), so two nodes can never be given the same range.
func (c *Controller) Run(ctx context.Context, _ int) error {
	defer c.queue.ShutDown()
	if !controllers.WaitForSync(ctx, c.synced) {
		return ctx.Err()
	}
	// Rebuild the allocation from the nodes that exist before handing out
	// anything: the oldest holder of a range keeps it.
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("nodeipam: list nodes: %w", err)
	}
	sort.Slice(nodes, func(i, j int) bool {
		if !nodes[i].CreationTimestamp.Equal(&nodes[j].CreationTimestamp) {
			return nodes[i].CreationTimestamp.Before(&nodes[j].CreationTimestamp)
		}
		return nodes[i].Name < nodes[j].Name
	})
	c.mu.Lock()
	for _, n := range nodes {
		c.occupyLocked(n)
	}
	c.mu.Unlock()
	c.log.Info("node IPAM started", "clusterCIDR", c.cfg.ClusterCIDR, "nodes", len(nodes))
	controllers.RunWorkers(ctx, c.queue, 1, c.log, c.Reconcile)
	return nil
}

// Allocated returns the ranges held by each node, for tests and debugging.
func (c *Controller) Allocated() map[string][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string][]string, len(c.byNode))
	for n, o := range c.byNode {
		out[n] = append([]string(nil), o.cidrs...)
	}
	return out
}

func podCIDRs(n *corev1.Node) []string {
	if len(n.Spec.PodCIDRs) > 0 {
		return n.Spec.PodCIDRs
	}
	if n.Spec.PodCIDR != "" {
		return []string{n.Spec.PodCIDR}
	}
	return nil
}

// Reconcile makes sure the node named key holds a range, or that a
// deleted node's ranges are free again.
func (c *Controller) Reconcile(ctx context.Context, key string) (controllers.Result, error) {
	node, err := c.nodes.Get(key)
	if apierrors.IsNotFound(err) {
		c.mu.Lock()
		c.releaseLocked(key)
		c.mu.Unlock()
		return controllers.Result{}, nil
	}
	if err != nil {
		return controllers.Result{}, err
	}
	if len(podCIDRs(node)) == 0 {
		// The cache may not show a range written a moment ago: ask the API
		// server before handing out another one.
		node, err = c.cfg.Client.CoreV1().Nodes().Get(ctx, key, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return controllers.Result{}, nil // the delete event follows
		}
		if err != nil {
			return controllers.Result{}, fmt.Errorf("get node %s: %w", key, err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(podCIDRs(node)) > 0 {
		c.occupyLocked(node)
		return controllers.Result{}, nil
	}
	if o, ok := c.byNode[key]; ok && o.uid != node.UID {
		c.releaseLocked(key)
	}
	var got []*net.IPNet
	for _, s := range c.sets {
		n, err := s.Allocate()
		if err != nil {
			for i, g := range got {
				_ = c.sets[i].Release(g)
			}
			c.log.Warn("no pod range left for node", "node", key, "clusterCIDR", c.cfg.ClusterCIDR)
			if c.cfg.Recorder != nil {
				c.cfg.Recorder.Eventf(node, corev1.EventTypeNormal, "CIDRNotAvailable", "Node %s status is now: CIDRNotAvailable", key)
			}
			return controllers.Result{RequeueAfter: fullRetry}, nil
		}
		got = append(got, n)
	}
	cidrs := make([]string, len(got))
	for i, g := range got {
		cidrs[i] = g.String()
		c.owners[cidrs[i]] = key
	}
	c.byNode[key] = owned{uid: node.UID, cidrs: cidrs}
	upd := node.DeepCopy()
	upd.Spec.PodCIDR, upd.Spec.PodCIDRs = cidrs[0], cidrs
	// The write happens under the lock: a concurrent delete of the node is
	// processed after it, and so releases what was just written.
	if _, err := c.cfg.Client.CoreV1().Nodes().Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		c.releaseLocked(key)
		if apierrors.IsNotFound(err) {
			return controllers.Result{}, nil
		}
		if c.cfg.Recorder != nil && !apierrors.IsConflict(err) {
			c.cfg.Recorder.Eventf(node, corev1.EventTypeWarning, "CIDRAssignmentFailed", "Node %s status is now: CIDRAssignmentFailed", key)
		}
		return controllers.Result{}, fmt.Errorf("set pod CIDR of node %s: %w", key, err)
	}
	c.log.Info("allocated pod CIDR", "node", key, "podCIDRs", cidrs)
	return controllers.Result{}, nil
}

// occupyLocked records the ranges node holds (those inside the cluster
// CIDR); a range another live node already holds is reported, not taken.
func (c *Controller) occupyLocked(node *corev1.Node) {
	if o, ok := c.byNode[node.Name]; ok && o.uid != node.UID {
		c.releaseLocked(node.Name)
	}
	var mine []string
	for _, s := range podCIDRs(node) {
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			continue
		}
		set := c.setFor(n)
		if set == nil {
			continue // outside the cluster CIDR: not ours to manage
		}
		key := n.String()
		if holder, ok := c.owners[key]; ok && holder != node.Name {
			c.log.Warn("node's pod CIDR is already allocated to another node", "node", node.Name, "podCIDR", key, "holder", holder)
			continue
		}
		if _, err := set.Occupy(n); err != nil {
			continue
		}
		c.owners[key] = node.Name
		mine = append(mine, key)
	}
	// Ranges the node held before but no longer lists are free again.
	if o, ok := c.byNode[node.Name]; ok {
		for _, old := range o.cidrs {
			if !slices.Contains(mine, old) {
				c.releaseOneLocked(node.Name, old)
			}
		}
	}
	if len(mine) == 0 {
		delete(c.byNode, node.Name)
		return
	}
	c.byNode[node.Name] = owned{uid: node.UID, cidrs: mine}
}

func (c *Controller) setFor(n *net.IPNet) *CIDRSet {
	for _, s := range c.sets {
		if s.Contains(n) {
			return s
		}
	}
	return nil
}

func (c *Controller) releaseLocked(node string) {
	o, ok := c.byNode[node]
	if !ok {
		return
	}
	for _, cidr := range o.cidrs {
		c.releaseOneLocked(node, cidr)
	}
	delete(c.byNode, node)
	c.log.Info("released pod CIDR", "node", node, "podCIDRs", o.cidrs)
}

func (c *Controller) releaseOneLocked(node, cidr string) {
	if c.owners[cidr] != node {
		return
	}
	delete(c.owners, cidr)
	if _, n, err := net.ParseCIDR(cidr); err == nil {
		if s := c.setFor(n); s != nil {
			_ = s.Release(n)
		}
	}
}
