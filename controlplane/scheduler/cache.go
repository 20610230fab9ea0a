package scheduler

import (
	"fmt"
	"sync"

	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// podState is what the cache knows of a pod it accounts.
type podState struct {
	pod     *corev1.Pod
	info    *framework.PodInfo
	assumed bool
}

// schedCache holds the nodes and the pods bound or assumed to them, fed by
// informers and by the scheduler's own assumptions. Every change bumps a
// generation so that snapshots copy only what changed.
type schedCache struct {
	mu           sync.RWMutex
	nodes        map[string]*framework.NodeInfo
	order        []string // names of nodes with a Node object, in arrival order
	pods         map[types.UID]*podState
	generation   int64
	structureGen int64
	imagesGen    int64
}

func newCache() *schedCache {
	return &schedCache{nodes: map[string]*framework.NodeInfo{}, pods: map[types.UID]*podState{}}
}

func (c *schedCache) touch(ni *framework.NodeInfo) {
	c.generation++
	ni.Generation = c.generation
}

func (c *schedCache) nodeInfo(name string) *framework.NodeInfo {
	ni, ok := c.nodes[name]
	if !ok {
		ni = framework.NewNodeInfo()
		c.nodes[name] = ni
	}
	return ni
}

// AddNode adds or replaces a node.
func (c *schedCache) AddNode(node *corev1.Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ni := c.nodeInfo(node.Name)
	old := ni.Node()
	if old == nil {
		c.order = append(c.order, node.Name)
		c.structureGen++
	}
	if old == nil || !sameImages(old, node) {
		c.imagesGen++
	}
	ni.SetNode(node)
	c.touch(ni)
}

func sameImages(a, b *corev1.Node) bool {
	if len(a.Status.Images) != len(b.Status.Images) {
		return false
	}
	for i := range a.Status.Images {
		x, y := a.Status.Images[i], b.Status.Images[i]
		if x.SizeBytes != y.SizeBytes || len(x.Names) != len(y.Names) {
			return false
		}
		for j := range x.Names {
			if x.Names[j] != y.Names[j] {
				return false
			}
		}
	}
	return true
}

// RemoveNode forgets a node (its pods stay accounted until removed).
func (c *schedCache) RemoveNode(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ni, ok := c.nodes[name]
	if !ok {
		return
	}
	ni.RemoveNode()
	if len(ni.Pods) == 0 {
		delete(c.nodes, name)
	}
	for i, n := range c.order {
		if n == name {
			c.order = append(c.order[:i], c.order[i+1:]...)
			break
		}
	}
	c.structureGen++
	c.imagesGen++
	c.generation++
}

// AssumePod accounts pod (with spec.nodeName set) before it is bound.
func (c *schedCache) AssumePod(pod *corev1.Pod) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.pods[pod.UID]; ok {
		return fmt.Errorf("pod %s/%s (%s) is already in the cache", pod.Namespace, pod.Name, pod.UID)
	}
	pi := framework.NewPodInfo(pod)
	ni := c.nodeInfo(pod.Spec.NodeName)
	ni.AddPodInfo(pi)
	c.touch(ni)
	c.pods[pod.UID] = &podState{pod: pod, info: pi, assumed: true}
	return nil
}

// ForgetPod drops an assumed pod whose binding failed.
func (c *schedCache) ForgetPod(pod *corev1.Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.pods[pod.UID]
	if !ok || !st.assumed {
		return
	}
	c.removeLocked(st.pod)
	delete(c.pods, pod.UID)
}

// IsAssumed reports whether pod is assumed and not yet confirmed.
func (c *schedCache) IsAssumed(pod *corev1.Pod) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	st, ok := c.pods[pod.UID]
	return ok && st.assumed
}

// AddPod accounts a bound pod seen by the informer, confirming an
// assumption about it.
func (c *schedCache) AddPod(pod *corev1.Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.pods[pod.UID]; ok {
		c.removeLocked(st.pod)
	}
	pi := framework.NewPodInfo(pod)
	ni := c.nodeInfo(pod.Spec.NodeName)
	ni.AddPodInfo(pi)
	c.touch(ni)
	c.pods[pod.UID] = &podState{pod: pod, info: pi}
}

// UpdatePod replaces a bound pod.
func (c *schedCache) UpdatePod(pod *corev1.Pod) { c.AddPod(pod) }

// RemovePod forgets a bound pod.
func (c *schedCache) RemovePod(pod *corev1.Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.pods[pod.UID]
	if !ok {
		return
	}
	c.removeLocked(st.pod)
	delete(c.pods, pod.UID)
}

func (c *schedCache) removeLocked(pod *corev1.Pod) {
	ni, ok := c.nodes[pod.Spec.NodeName]
	if !ok {
		return
	}
	ni.RemovePod(pod)
	c.touch(ni)
	if ni.Node() == nil && len(ni.Pods) == 0 {
		delete(c.nodes, pod.Spec.NodeName)
	}
}

// NodeCount counts nodes with a Node object.
func (c *schedCache) NodeCount() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.order)
}

// Snapshot is a cycle's consistent view of the cache.
type Snapshot struct {
	infos         map[string]*framework.NodeInfo
	list          []*framework.NodeInfo
	withAffinity  []*framework.NodeInfo
	withReqAnti   []*framework.NodeInfo
	generation    int64
	structureGen  int64
	imagesGen     int64
	imageCounts   map[string]*framework.ImageStateSummary
	nodeImageKeys map[string]map[string]*framework.ImageStateSummary
}

// NewSnapshot returns an empty snapshot.
func NewSnapshot() *Snapshot {
	return &Snapshot{infos: map[string]*framework.NodeInfo{}, structureGen: -1, imagesGen: -1}
}

// NewSnapshotFrom builds a snapshot of the given nodes and pods (tests).
func NewSnapshotFrom(pods []*corev1.Pod, nodes []*corev1.Node) *Snapshot {
	c := newCache()
	for _, n := range nodes {
		c.AddNode(n)
	}
	for _, p := range pods {
		c.AddPod(p)
	}
	s := NewSnapshot()
	c.UpdateSnapshot(s)
	return s
}

var _ framework.SharedLister = (*Snapshot)(nil)

// List returns the nodes in a stable order.
func (s *Snapshot) List() []*framework.NodeInfo { return s.list }

// Get returns a node's info.
func (s *Snapshot) Get(name string) (*framework.NodeInfo, error) {
	if ni, ok := s.infos[name]; ok && ni.Node() != nil {
		return ni, nil
	}
	return nil, fmt.Errorf("nodeinfo not found for node name %q", name)
}

// HavePodsWithAffinityList lists nodes with pods that have (anti-)affinity.
func (s *Snapshot) HavePodsWithAffinityList() []*framework.NodeInfo { return s.withAffinity }

// HavePodsWithRequiredAntiAffinityList lists nodes with pods that have
// required anti-affinity.
func (s *Snapshot) HavePodsWithRequiredAntiAffinityList() []*framework.NodeInfo {
	return s.withReqAnti
}

// UpdateSnapshot copies the nodes that changed since s was last updated.
func (c *schedCache) UpdateSnapshot(s *Snapshot) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.generation == s.generation && c.structureGen == s.structureGen && c.imagesGen == s.imagesGen {
		return
	}
	changed := false
	for name, ni := range c.nodes {
		if ni.Node() == nil {
			continue
		}
		if ni.Generation > s.generation || s.infos[name] == nil {
			s.infos[name] = ni.Clone()
			changed = true
		}
	}
	if c.structureGen != s.structureGen {
		for name, ni := range s.infos {
			if cur, ok := c.nodes[name]; !ok || cur.Node() == nil {
				delete(s.infos, name)
				_ = ni
			}
		}
		changed = true
	}
	if c.imagesGen != s.imagesGen {
		s.rebuildImages()
	} else if s.nodeImageKeys != nil {
		for name, ni := range s.infos {
			if m := s.nodeImageKeys[name]; m != nil {
				ni.ImageStates = m
			}
		}
	}
	if changed || c.structureGen != s.structureGen {
		s.list = s.list[:0]
		s.withAffinity = s.withAffinity[:0]
		s.withReqAnti = s.withReqAnti[:0]
		for _, name := range c.order {
			ni := s.infos[name]
			if ni == nil {
				continue
			}
			s.list = append(s.list, ni)
			if len(ni.PodsWithAffinity) > 0 {
				s.withAffinity = append(s.withAffinity, ni)
			}
			if len(ni.PodsWithRequiredAntiAffinity) > 0 {
				s.withReqAnti = append(s.withReqAnti, ni)
			}
		}
	}
	s.generation, s.structureGen, s.imagesGen = c.generation, c.structureGen, c.imagesGen
}

// rebuildImages recounts on how many nodes each image is present.
func (s *Snapshot) rebuildImages() {
	counts := map[string]*framework.ImageStateSummary{}
	for _, ni := range s.infos {
		for _, img := range ni.Node().Status.Images {
			for _, name := range img.Names {
				n := framework.NormalizedImageName(name)
				st := counts[n]
				if st == nil {
					st = &framework.ImageStateSummary{Size: img.SizeBytes}
					counts[n] = st
				}
				st.NumNodes++
			}
		}
	}
	s.imageCounts = counts
	s.nodeImageKeys = map[string]map[string]*framework.ImageStateSummary{}
	for name, ni := range s.infos {
		m := map[string]*framework.ImageStateSummary{}
		for _, img := range ni.Node().Status.Images {
			for _, n := range img.Names {
				n = framework.NormalizedImageName(n)
				m[n] = counts[n]
			}
		}
		s.nodeImageKeys[name] = m
		ni.ImageStates = m
	}
}
