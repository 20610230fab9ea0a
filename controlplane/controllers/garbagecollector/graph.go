package garbagecollector

import (
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// node is what the collector knows of one object.
type node struct {
	gvr        schema.GroupVersionResource
	namespace  string
	name       string
	uid        types.UID
	owners     []metav1.OwnerReference
	finalizers []string
	deleting   bool
}

func (n *node) hasFinalizer(f string) bool {
	for _, x := range n.finalizers {
		if x == f {
			return true
		}
	}
	return false
}

// graph indexes objects by UID and owners to their dependents. Nodes are
// replaced, never mutated, so callers may keep the pointers they read.
type graph struct {
	mu         sync.RWMutex
	nodes      map[types.UID]*node
	dependents map[types.UID]map[types.UID]bool
}

func newGraph() *graph {
	return &graph{nodes: map[types.UID]*node{}, dependents: map[types.UID]map[types.UID]bool{}}
}

// upsert stores n and returns the node it replaced (nil if new).
func (g *graph) upsert(n *node) *node {
	g.mu.Lock()
	defer g.mu.Unlock()
	old := g.nodes[n.uid]
	if old != nil {
		g.unlink(old)
	}
	g.nodes[n.uid] = n
	for _, o := range n.owners {
		d := g.dependents[o.UID]
		if d == nil {
			d = map[types.UID]bool{}
			g.dependents[o.UID] = d
		}
		d[n.uid] = true
	}
	return old
}

func (g *graph) unlink(n *node) {
	for _, o := range n.owners {
		if d := g.dependents[o.UID]; d != nil {
			delete(d, n.uid)
			if len(d) == 0 {
				delete(g.dependents, o.UID)
			}
		}
	}
}

// remove drops the node with uid and returns it (nil if unknown).
func (g *graph) remove(uid types.UID) *node {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := g.nodes[uid]
	if n != nil {
		g.unlink(n)
		delete(g.nodes, uid)
	}
	return n
}

func (g *graph) get(uid types.UID) *node {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.nodes[uid]
}

// dependentsOf returns the known dependents of uid.
func (g *graph) dependentsOf(uid types.UID) []*node {
	g.mu.RLock()
	defer g.mu.RUnlock()
	var out []*node
	for d := range g.dependents[uid] {
		if n := g.nodes[d]; n != nil {
			out = append(out, n)
		}
	}
	return out
}

// dropResource forgets every node of gvr (its informer stopped).
func (g *graph) dropResource(gvr schema.GroupVersionResource) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for uid, n := range g.nodes {
		if n.gvr == gvr {
			g.unlink(n)
			delete(g.nodes, uid)
		}
	}
}
