// Package volumebinding is the VolumeBinding scheduler plugin, as
// upstream's: a pod's bound claims restrict it to nodes their volumes'
// node affinity admits; its unbound WaitForFirstConsumer claims need, on
// the node, either an Available volume that matches (node affinity
// included) or a class with a provisioner. After a node is chosen,
// Reserve assumes the static volumes picked so concurrent pods do not take
// them, and PreBind binds them (PV claimRef) or asks for provisioning on
// the node (claim annotation volume.kubernetes.io/selected-node), then
// waits until the PV binder has bound every claim.
package volumebinding

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/persistentvolume"
	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
)

// Name of the plugin and its rejection reasons, as upstream.
const (
	Name                      = "VolumeBinding"
	ErrReasonBindConflict     = "node(s) didn't find available persistent volumes to bind"
	ErrReasonNodeConflict     = "node(s) had volume node affinity conflict"
	ErrReasonUnboundImmediate = "pod has unbound immediate PersistentVolumeClaims"
	ErrReasonNotEnoughSpace   = "node(s) did not have enough free storage"
	// NoProvisioner is the provisioner name of classes for static volumes only.
	NoProvisioner = "kubernetes.io/no-provisioner"
)

const stateKey = "PreFilter" + Name

func init() { framework.Register(Name, New) }

// Args are the plugin's arguments.
type Args struct {
	// BindTimeoutSeconds is how long PreBind waits for the claims to be
	// bound (default 600, as upstream).
	BindTimeoutSeconds int64 `json:"bindTimeoutSeconds,omitempty"`
}

// VolumeBinding is the plugin.
type VolumeBinding struct {
	client  kubernetes.Interface
	claims  corelisters.PersistentVolumeClaimLister
	volumes corelisters.PersistentVolumeLister
	classes storagelisters.StorageClassLister
	drivers storagelisters.CSIDriverLister
	caps    storagelisters.CSIStorageCapacityLister
	timeout time.Duration

	mu      sync.Mutex
	assumed map[string]types.UID // volume name → pod that picked it
}

var (
	_ framework.PreFilterPlugin   = (*VolumeBinding)(nil)
	_ framework.FilterPlugin      = (*VolumeBinding)(nil)
	_ framework.ReservePlugin     = (*VolumeBinding)(nil)
	_ framework.PreBindPlugin     = (*VolumeBinding)(nil)
	_ framework.EnqueueExtensions = (*VolumeBinding)(nil)
)

// New builds the plugin; its listers come from the scheduler's informers.
func New(raw json.RawMessage, h framework.Handle) (framework.Plugin, error) {
	args := Args{BindTimeoutSeconds: 600}
	if err := framework.DecodeArgs(raw, &args); err != nil {
		return nil, err
	}
	if args.BindTimeoutSeconds <= 0 {
		return nil, fmt.Errorf("%s: bindTimeoutSeconds must be positive", Name)
	}
	p := &VolumeBinding{
		client:  h.ClientSet(),
		timeout: time.Duration(args.BindTimeoutSeconds) * time.Second,
		assumed: map[string]types.UID{},
	}
	// Frameworks built for unit tests and benchmarks have no informers;
	// the plugin then rejects pods with claims and skips the others.
	if f := h.SharedInformerFactory(); f != nil {
		p.claims = f.Core().V1().PersistentVolumeClaims().Lister()
		p.volumes = f.Core().V1().PersistentVolumes().Lister()
		p.classes = f.Storage().V1().StorageClasses().Lister()
		p.drivers = f.Storage().V1().CSIDrivers().Lister()
		p.caps = f.Storage().V1().CSIStorageCapacities().Lister()
	}
	return p, nil
}

// Name implements framework.Plugin.
func (*VolumeBinding) Name() string { return Name }

// EventsToRegister implements framework.EnqueueExtensions.
func (*VolumeBinding) EventsToRegister() []framework.ClusterEvent {
	return []framework.ClusterEvent{
		framework.EventNodeAdd, framework.EventNodeUpdate,
		framework.EventPersistentVolumeChange, framework.EventPersistentVolumeClaimChange, framework.EventStorageClassChange,
		framework.EventCSIStorageCapacityChange,
	}
}

// claimToBind is an unbound WaitForFirstConsumer claim and its class.
type claimToBind struct {
	claim *corev1.PersistentVolumeClaim
	class *storagev1.StorageClass
}

// decision is what Filter found for one node.
type decision struct {
	static    map[string]*corev1.PersistentVolume // claim name → volume to bind
	provision []*corev1.PersistentVolumeClaim
}

type stateData struct {
	bound   []*corev1.PersistentVolume
	toBind  []claimToBind
	volumes []*corev1.PersistentVolume // snapshot for matching

	mu    sync.Mutex
	nodes map[string]*decision
}

// Clone implements framework.StateData; decisions are per cycle, so the
// clone shares them.
func (s *stateData) Clone() framework.StateData { return s }

// PodClaimNames lists the claims a pod's volumes use (ephemeral volumes by
// their generated claim name).
func PodClaimNames(pod *corev1.Pod) []string {
	var out []string
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.PersistentVolumeClaim != nil:
			out = append(out, v.PersistentVolumeClaim.ClaimName)
		case v.Ephemeral != nil:
			out = append(out, pod.Name+"-"+v.Name)
		}
	}
	return out
}

// PreFilter implements framework.PreFilterPlugin: it sorts the pod's
// claims into bound ones and WaitForFirstConsumer ones to bind, and
// rejects pods with missing, deleted or unbound Immediate claims.
func (p *VolumeBinding) PreFilter(_ context.Context, state *framework.CycleState, pod *corev1.Pod) (*framework.PreFilterResult, *framework.Status) {
	names := PodClaimNames(pod)
	if len(names) == 0 {
		return nil, framework.NewStatus(framework.Skip)
	}
	if p.claims == nil {
		return nil, framework.AsStatus(fmt.Errorf("%s: no informers to read claims from", Name))
	}
	s := &stateData{nodes: map[string]*decision{}}
	for _, name := range names {
		c, err := p.claims.PersistentVolumeClaims(pod.Namespace).Get(name)
		if apierrors.IsNotFound(err) {
			return nil, framework.NewStatus(framework.UnschedulableAndUnresolvable, fmt.Sprintf("persistentvolumeclaim %q not found", name))
		}
		if err != nil {
			return nil, framework.AsStatus(err)
		}
		if c.DeletionTimestamp != nil {
			return nil, framework.NewStatus(framework.UnschedulableAndUnresolvable, fmt.Sprintf("persistentvolumeclaim %q is being deleted", name))
		}
		if c.Spec.VolumeName != "" && c.Annotations[persistentvolume.AnnBindCompleted] != "" {
			v, err := p.volumes.Get(c.Spec.VolumeName)
			if err != nil {
				return nil, framework.NewStatus(framework.UnschedulableAndUnresolvable, fmt.Sprintf("persistentvolume %q of claim %q: %v", c.Spec.VolumeName, name, err))
			}
			s.bound = append(s.bound, v)
			continue
		}
		var class *storagev1.StorageClass
		if cn := persistentvolume.ClaimClass(c); cn != "" {
			class, _ = p.classes.Get(cn)
		}
		if !persistentvolume.DelayedBinding(class) {
			return nil, framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReasonUnboundImmediate)
		}
		s.toBind = append(s.toBind, claimToBind{claim: c, class: class})
	}
	if len(s.toBind) > 0 {
		all, err := p.volumes.List(labels.Everything())
		if err != nil {
			return nil, framework.AsStatus(err)
		}
		p.mu.Lock()
		for _, v := range all {
			if owner, ok := p.assumed[v.Name]; !ok || owner == pod.UID {
				s.volumes = append(s.volumes, v)
			}
		}
		p.mu.Unlock()
		// Largest requests first, so a small claim does not take the
		// only volume a larger one fits.
		sort.SliceStable(s.toBind, func(i, j int) bool {
			a := s.toBind[i].claim.Spec.Resources.Requests[corev1.ResourceStorage]
			b := s.toBind[j].claim.Spec.Resources.Requests[corev1.ResourceStorage]
			return a.Cmp(b) > 0
		})
	}
	state.Write(stateKey, s)
	return nil, nil
}

// PreFilterExtensions implements framework.PreFilterPlugin.
func (*VolumeBinding) PreFilterExtensions() framework.PreFilterExtensions { return nil }

func readState(state *framework.CycleState) (*stateData, error) {
	d, err := state.Read(stateKey)
	if err != nil {
		return nil, fmt.Errorf("reading %q from cycleState: %w", stateKey, err)
	}
	s, ok := d.(*stateData)
	if !ok {
		return nil, fmt.Errorf("%q has type %T", stateKey, d)
	}
	return s, nil
}

// Filter implements framework.FilterPlugin.
func (p *VolumeBinding) Filter(_ context.Context, state *framework.CycleState, _ *corev1.Pod, ni *framework.NodeInfo) *framework.Status {
	s, err := readState(state)
	if err != nil {
		return framework.AsStatus(err)
	}
	node := ni.Node()
	if node == nil {
		return framework.NewStatus(framework.UnschedulableAndUnresolvable, "node not found")
	}
	for _, v := range s.bound {
		if !persistentvolume.NodeAffinityMatches(v, node) {
			return framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReasonNodeConflict)
		}
	}
	if len(s.toBind) == 0 {
		return nil
	}
	d := &decision{static: map[string]*corev1.PersistentVolume{}}
	taken := map[string]bool{}
	for _, tb := range s.toBind {
		var free []*corev1.PersistentVolume
		for _, v := range s.volumes {
			if !taken[v.Name] {
				free = append(free, v)
			}
		}
		v, err := persistentvolume.FindMatch(tb.claim, free, node, true)
		if err != nil {
			return framework.AsStatus(err)
		}
		if v != nil {
			taken[v.Name] = true
			d.static[tb.claim.Name] = v
			continue
		}
		if !canProvision(tb.class, node) {
			return framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReasonBindConflict)
		}
		enough, err := p.hasEnoughCapacity(tb.claim, tb.class, node)
		if err != nil {
			return framework.AsStatus(err)
		}
		if !enough {
			return framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReasonNotEnoughSpace)
		}
		d.provision = append(d.provision, tb.claim)
	}
	s.mu.Lock()
	s.nodes[node.Name] = d
	s.mu.Unlock()
	return nil
}

// hasEnoughCapacity is upstream's storage capacity check: when the
// class's provisioner declares capacity tracking (CSIDriver
// storageCapacity: true), some CSIStorageCapacity of the class visible
// from the node must have room for the claim's request.
func (p *VolumeBinding) hasEnoughCapacity(c *corev1.PersistentVolumeClaim, class *storagev1.StorageClass, node *corev1.Node) (bool, error) {
	req, ok := c.Spec.Resources.Requests[corev1.ResourceStorage]
	if !ok {
		return true, nil
	}
	tracked, err := persistentvolume.CapacityTracked(p.drivers, class.Provisioner)
	if err != nil || !tracked {
		return !tracked, err
	}
	all, err := p.caps.List(labels.Everything())
	if err != nil {
		return false, err
	}
	return persistentvolume.HasEnoughCapacity(all, class.Name, node, req.Value()), nil
}

// canProvision reports whether class may provision a volume on node: it
// has a provisioner and its allowedTopologies (if any) admit the node.
func canProvision(class *storagev1.StorageClass, node *corev1.Node) bool {
	if class == nil || class.Provisioner == "" || class.Provisioner == NoProvisioner {
		return false
	}
	if len(class.AllowedTopologies) == 0 {
		return true
	}
	for _, term := range class.AllowedTopologies {
		ok := true
		for _, e := range term.MatchLabelExpressions {
			v, has := node.Labels[e.Key]
			found := false
			for _, want := range e.Values {
				found = found || has && v == want
			}
			ok = ok && found
		}
		if ok {
			return true
		}
	}
	return false
}

// Reserve implements framework.ReservePlugin: the static volumes chosen
// on the node are assumed for the pod until PreBind has bound them.
func (p *VolumeBinding) Reserve(_ context.Context, state *framework.CycleState, pod *corev1.Pod, nodeName string) *framework.Status {
	s, err := readState(state)
	if err != nil {
		return nil // PreFilter skipped: no claims
	}
	s.mu.Lock()
	d := s.nodes[nodeName]
	s.mu.Unlock()
	if d == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, v := range d.static {
		if owner, ok := p.assumed[v.Name]; ok && owner != pod.UID {
			return framework.NewStatus(framework.Unschedulable, ErrReasonBindConflict)
		}
	}
	for _, v := range d.static {
		p.assumed[v.Name] = pod.UID
	}
	return nil
}

// Unreserve implements framework.ReservePlugin.
func (p *VolumeBinding) Unreserve(_ context.Context, _ *framework.CycleState, pod *corev1.Pod, _ string) {
	p.forget(pod.UID)
}

func (p *VolumeBinding) forget(uid types.UID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, owner := range p.assumed {
		if owner == uid {
			delete(p.assumed, name)
		}
	}
}

// PreBind implements framework.PreBindPlugin: it binds the chosen static
// volumes to their claims, annotates claims to provision with the node,
// and waits until the PV binder reports every claim Bound.
func (p *VolumeBinding) PreBind(ctx context.Context, state *framework.CycleState, pod *corev1.Pod, nodeName string) *framework.Status {
	s, err := readState(state)
	if err != nil {
		return nil
	}
	s.mu.Lock()
	d := s.nodes[nodeName]
	s.mu.Unlock()
	if d == nil {
		return nil
	}
	defer p.forget(pod.UID)
	for claimName, v := range d.static {
		if err := p.bindVolume(ctx, pod.Namespace, claimName, v.Name); err != nil {
			return framework.AsStatus(err)
		}
	}
	selected := map[string]int64{} // claim → resourceVersion with our choice
	for _, c := range d.provision {
		rv, err := p.selectNode(ctx, c.Namespace, c.Name, nodeName)
		if err != nil {
			return framework.AsStatus(err)
		}
		selected[c.Name] = rv
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	for {
		// A claim version at or after the one carrying our node choice
		// that no longer carries it: the provisioner gave the choice back
		// (the node cannot have the volume), and the pod must be placed
		// again, as upstream.
		for _, pc := range d.provision {
			c, err := p.claims.PersistentVolumeClaims(pc.Namespace).Get(pc.Name)
			if err != nil || c.Spec.VolumeName != "" || c.Annotations[persistentvolume.AnnSelectedNode] == nodeName {
				continue
			}
			if rv, err := strconv.ParseInt(c.ResourceVersion, 10, 64); err == nil && rv >= selected[pc.Name] {
				return framework.AsStatus(fmt.Errorf("binding volumes: selectedNode annotation reset for PVC %q", pc.Name))
			}
		}
		pending := ""
		for _, tb := range s.toBind {
			c, err := p.claims.PersistentVolumeClaims(pod.Namespace).Get(tb.claim.Name)
			if err != nil || c.Spec.VolumeName == "" || c.Annotations[persistentvolume.AnnBindCompleted] == "" {
				pending = tb.claim.Name
				break
			}
		}
		if pending == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return framework.AsStatus(fmt.Errorf("binding volumes: claim %q not bound: %w", pending, ctx.Err()))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// bindVolume sets the volume's claimRef, as upstream's scheduler does; the
// PV binder completes the claim side.
func (p *VolumeBinding) bindVolume(ctx context.Context, ns, claimName, volumeName string) error {
	c, err := p.client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, claimName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("claim %s/%s: %w", ns, claimName, err)
	}
	v, err := p.client.CoreV1().PersistentVolumes().Get(ctx, volumeName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("volume %s: %w", volumeName, err)
	}
	if persistentvolume.BoundToClaim(v, c) && v.Spec.ClaimRef.UID == c.UID {
		return nil
	}
	if v.Spec.ClaimRef != nil && !persistentvolume.BoundToClaim(v, c) {
		return fmt.Errorf("volume %s was taken by claim %s/%s", volumeName, v.Spec.ClaimRef.Namespace, v.Spec.ClaimRef.Name)
	}
	if v.Annotations == nil {
		v.Annotations = map[string]string{}
	}
	v.Annotations[persistentvolume.AnnBoundByController] = "yes"
	v.Spec.ClaimRef = &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: ns, Name: claimName, UID: c.UID, ResourceVersion: c.ResourceVersion}
	if _, err := p.client.CoreV1().PersistentVolumes().Update(ctx, v, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("bind volume %s to claim %s/%s: %w", volumeName, ns, claimName, err)
	}
	return nil
}

// selectNode annotates the claim with the node its volume must be
// provisioned on and returns the claim's resourceVersion that carries the
// choice (or that is already bound).
func (p *VolumeBinding) selectNode(ctx context.Context, ns, name, node string) (int64, error) {
	c, err := p.client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return 0, fmt.Errorf("claim %s/%s: %w", ns, name, err)
	}
	if c.Annotations[persistentvolume.AnnSelectedNode] != node && c.Spec.VolumeName == "" {
		if c.Annotations == nil {
			c.Annotations = map[string]string{}
		}
		c.Annotations[persistentvolume.AnnSelectedNode] = node
		if c, err = p.client.CoreV1().PersistentVolumeClaims(ns).Update(ctx, c, metav1.UpdateOptions{}); err != nil {
			return 0, fmt.Errorf("select node %s for claim %s/%s: %w", node, ns, name, err)
		}
	}
	rv, err := strconv.ParseInt(c.ResourceVersion, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("claim %s/%s: resourceVersion %q: %w", ns, name, c.ResourceVersion, err)
	}
	return rv, nil
}
