// Package node is the node authorizer and its NodeRestriction admission
// checks: a kubelet identity (user system:node:<name> in group
// system:nodes) may read and write its own Node and Lease and the pods
// bound to it, and get only the secrets, config maps, claims and service
// account tokens those pods reference. The pod → object graph is built
// from the API server's watch cache.
package node

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"

	"github.com/skiffhq/skiff/controlplane/authz/internal/mirror"
	"github.com/skiffhq/skiff/controlplane/storage"
	corev1 "k8s.io/api/core/v1"
)

// Kinds of objects a pod references.
const (
	kindSecret         = "secret"
	kindConfigMap      = "configmap"
	kindPVC            = "pvc"
	kindServiceAccount = "serviceaccount"
)

type podInfo struct {
	node string
	refs []string // kind/ns/name
}

// Graph records which node each pod is bound to and what it references.
type Graph struct {
	mu     sync.RWMutex
	pods   map[string]podInfo        // storage key suffix ns/name → info
	byNode map[string]map[string]int // node → ref → number of pods
}

// NewGraph returns an empty graph.
func NewGraph() *Graph {
	return &Graph{pods: map[string]podInfo{}, byNode: map[string]map[string]int{}}
}

// Follow keeps the graph in line with the pods in the watch cache until
// ctx ends; it returns once the pods were loaded.
func (g *Graph) Follow(ctx context.Context, c *storage.Cache, podPrefix string, log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	synced := make(chan struct{})
	var once sync.Once
	go mirror.Follow(ctx, c, podPrefix, &podHandler{g: g, prefix: podPrefix}, func() { once.Do(func() { close(synced) }) }, log.With("component", "node-authorizer"))
	select {
	case <-synced:
	case <-ctx.Done():
	}
}

type podHandler struct {
	g      *Graph
	prefix string
}

func (h *podHandler) Replace(objs []*storage.Object) {
	infos := make(map[string]podInfo, len(objs))
	for _, o := range objs {
		if info, ok := decodePod(o.Value); ok {
			infos[strings.TrimPrefix(o.Key, h.prefix)] = info
		}
	}
	h.g.mu.Lock()
	defer h.g.mu.Unlock()
	h.g.pods = map[string]podInfo{}
	h.g.byNode = map[string]map[string]int{}
	for k, info := range infos {
		h.g.setLocked(k, info, true)
	}
}

func (h *podHandler) Upsert(o *storage.Object) {
	info, ok := decodePod(o.Value)
	h.g.mu.Lock()
	defer h.g.mu.Unlock()
	h.g.setLocked(strings.TrimPrefix(o.Key, h.prefix), info, ok)
}

func (h *podHandler) Delete(key string) {
	h.g.mu.Lock()
	defer h.g.mu.Unlock()
	h.g.setLocked(strings.TrimPrefix(key, h.prefix), podInfo{}, false)
}

// SetPod records (or with ok=false removes) a pod; tests and callers
// without a cache feed the graph with it.
func (g *Graph) SetPod(pod *corev1.Pod) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.setLocked(pod.Namespace+"/"+pod.Name, podRefs(pod), true)
}

func (g *Graph) setLocked(key string, info podInfo, present bool) {
	if old, ok := g.pods[key]; ok {
		if refs := g.byNode[old.node]; refs != nil {
			for _, r := range old.refs {
				if refs[r]--; refs[r] <= 0 {
					delete(refs, r)
				}
			}
			if len(refs) == 0 {
				delete(g.byNode, old.node)
			}
		}
		delete(g.pods, key)
	}
	if !present {
		return
	}
	g.pods[key] = info
	if info.node == "" {
		return
	}
	refs := g.byNode[info.node]
	if refs == nil {
		refs = map[string]int{}
		g.byNode[info.node] = refs
	}
	for _, r := range info.refs {
		refs[r]++
	}
}

// References reports whether a pod bound to node references the object.
func (g *Graph) References(node, kind, ns, name string) bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.byNode[node][kind+"/"+ns+"/"+name] > 0
}

// Claims lists the claims ("namespace/name") pods bound to node use.
func (g *Graph) Claims(node string) []string {
	g.mu.RLock()
	defer g.mu.RUnlock()
	var out []string
	for r := range g.byNode[node] {
		if rest, ok := strings.CutPrefix(r, kindPVC+"/"); ok {
			out = append(out, rest)
		}
	}
	return out
}

// PodNode returns the node a pod is bound to ("" when unbound or unknown).
func (g *Graph) PodNode(ns, name string) string {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.pods[ns+"/"+name].node
}

func decodePod(b []byte) (podInfo, bool) {
	var pod corev1.Pod
	if err := json.Unmarshal(b, &pod); err != nil {
		return podInfo{}, false
	}
	return podRefs(&pod), true
}

// podRefs lists what a pod makes its node read: secrets and config maps of
// volumes (projected ones included), env, envFrom and image pull secrets,
// claims (ephemeral ones by their generated name) and the service account.
func podRefs(pod *corev1.Pod) podInfo {
	ns := pod.Namespace
	info := podInfo{node: pod.Spec.NodeName}
	seen := map[string]bool{}
	add := func(kind, name string) {
		if name == "" {
			return
		}
		r := kind + "/" + ns + "/" + name
		if !seen[r] {
			seen[r] = true
			info.refs = append(info.refs, r)
		}
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	add(kindServiceAccount, sa)
	for _, s := range pod.Spec.ImagePullSecrets {
		add(kindSecret, s.Name)
	}
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.Secret != nil:
			add(kindSecret, v.Secret.SecretName)
		case v.ConfigMap != nil:
			add(kindConfigMap, v.ConfigMap.Name)
		case v.PersistentVolumeClaim != nil:
			add(kindPVC, v.PersistentVolumeClaim.ClaimName)
		case v.Ephemeral != nil:
			add(kindPVC, pod.Name+"-"+v.Name)
		case v.Projected != nil:
			for _, src := range v.Projected.Sources {
				if src.Secret != nil {
					add(kindSecret, src.Secret.Name)
				}
				if src.ConfigMap != nil {
					add(kindConfigMap, src.ConfigMap.Name)
				}
			}
		case v.CSI != nil && v.CSI.NodePublishSecretRef != nil:
			add(kindSecret, v.CSI.NodePublishSecretRef.Name)
		}
	}
	var containers []corev1.Container
	containers = append(containers, pod.Spec.InitContainers...)
	containers = append(containers, pod.Spec.Containers...)
	for _, ec := range pod.Spec.EphemeralContainers {
		containers = append(containers, corev1.Container{Env: ec.Env, EnvFrom: ec.EnvFrom})
	}
	for _, c := range containers {
		for _, e := range c.EnvFrom {
			if e.SecretRef != nil {
				add(kindSecret, e.SecretRef.Name)
			}
			if e.ConfigMapRef != nil {
				add(kindConfigMap, e.ConfigMapRef.Name)
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			if e.ValueFrom.SecretKeyRef != nil {
				add(kindSecret, e.ValueFrom.SecretKeyRef.Name)
			}
			if e.ValueFrom.ConfigMapKeyRef != nil {
				add(kindConfigMap, e.ValueFrom.ConfigMapKeyRef.Name)
			}
		}
	}
	return info
}
