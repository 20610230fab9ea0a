package rbac

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"

	"github.com/skiffhq/skiff/controlplane/authz/internal/mirror"
	"github.com/skiffhq/skiff/controlplane/storage"
	rbacv1 "k8s.io/api/rbac/v1"
)

// Prefixes are the storage key prefixes of the four RBAC resources.
type Prefixes struct {
	Roles, ClusterRoles, RoleBindings, ClusterRoleBindings string
}

// Index holds every RBAC object in memory, with bindings indexed by
// subject so a decision looks only at the bindings that name the caller.
// It is safe for concurrent use.
type Index struct {
	mu           sync.RWMutex
	roles        map[string]*rbacv1.Role        // ns/name
	clusterRoles map[string]*rbacv1.ClusterRole // name
	rbs          map[string]*rbacv1.RoleBinding // ns/name
	crbs         map[string]*rbacv1.ClusterRoleBinding
	// rbBySubject is keyed by namespace + "\x00" + subject key.
	rbBySubject  map[string][]*rbacv1.RoleBinding
	crbBySubject map[string][]*rbacv1.ClusterRoleBinding
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{
		roles:        map[string]*rbacv1.Role{},
		clusterRoles: map[string]*rbacv1.ClusterRole{},
		rbs:          map[string]*rbacv1.RoleBinding{},
		crbs:         map[string]*rbacv1.ClusterRoleBinding{},
		rbBySubject:  map[string][]*rbacv1.RoleBinding{},
		crbBySubject: map[string][]*rbacv1.ClusterRoleBinding{},
	}
}

// Follow keeps the index in line with the watch cache until ctx ends. It
// returns once all four resources were loaded; the following goes on in
// the background.
func (ix *Index) Follow(ctx context.Context, c *storage.Cache, p Prefixes, log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "rbac-index")
	var wg sync.WaitGroup
	for _, h := range []struct {
		prefix string
		h      mirror.Handler
	}{
		{p.Roles, kindHandler[rbacv1.Role]{ix: ix, prefix: p.Roles, set: ix.setRole}},
		{p.ClusterRoles, kindHandler[rbacv1.ClusterRole]{ix: ix, prefix: p.ClusterRoles, set: ix.setClusterRole}},
		{p.RoleBindings, kindHandler[rbacv1.RoleBinding]{ix: ix, prefix: p.RoleBindings, set: ix.setRoleBinding}},
		{p.ClusterRoleBindings, kindHandler[rbacv1.ClusterRoleBinding]{ix: ix, prefix: p.ClusterRoleBindings, set: ix.setClusterRoleBinding}},
	} {
		wg.Add(1)
		var once sync.Once
		go mirror.Follow(ctx, c, h.prefix, h.h, func() { once.Do(wg.Done) }, log)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// kindHandler decodes one RBAC kind and stores it with set (nil = delete).
type kindHandler[T any] struct {
	ix     *Index
	prefix string
	set    func(key string, obj *T)
}

func (h kindHandler[T]) decode(o *storage.Object) *T {
	var obj T
	if err := json.Unmarshal(o.Value, &obj); err != nil {
		return nil
	}
	return &obj
}

func (h kindHandler[T]) Replace(objs []*storage.Object) {
	h.ix.mu.Lock()
	defer h.ix.mu.Unlock()
	h.ix.clearKind(h.prefix, any((*T)(nil)))
	for _, o := range objs {
		if obj := h.decode(o); obj != nil {
			h.set(strings.TrimPrefix(o.Key, h.prefix), obj)
		}
	}
}

func (h kindHandler[T]) Upsert(o *storage.Object) {
	obj := h.decode(o)
	if obj == nil {
		return
	}
	h.ix.mu.Lock()
	defer h.ix.mu.Unlock()
	h.set(strings.TrimPrefix(o.Key, h.prefix), obj)
}

func (h kindHandler[T]) Delete(key string) {
	h.ix.mu.Lock()
	defer h.ix.mu.Unlock()
	h.set(strings.TrimPrefix(key, h.prefix), nil)
}

// clearKind empties the maps of one kind. Caller holds mu.
func (ix *Index) clearKind(_ string, kind any) {
	switch kind.(type) {
	case *rbacv1.Role:
		ix.roles = map[string]*rbacv1.Role{}
	case *rbacv1.ClusterRole:
		ix.clusterRoles = map[string]*rbacv1.ClusterRole{}
	case *rbacv1.RoleBinding:
		ix.rbs = map[string]*rbacv1.RoleBinding{}
		ix.rbBySubject = map[string][]*rbacv1.RoleBinding{}
	case *rbacv1.ClusterRoleBinding:
		ix.crbs = map[string]*rbacv1.ClusterRoleBinding{}
		ix.crbBySubject = map[string][]*rbacv1.ClusterRoleBinding{}
	}
}

// The set* methods store (obj != nil) or remove one object. Callers hold mu.

func (ix *Index) setRole(key string, obj *rbacv1.Role) {
	if obj == nil {
		delete(ix.roles, key)
		return
	}
	ix.roles[key] = obj
}

func (ix *Index) setClusterRole(key string, obj *rbacv1.ClusterRole) {
	if obj == nil {
		delete(ix.clusterRoles, key)
		return
	}
	ix.clusterRoles[key] = obj
}

func (ix *Index) setRoleBinding(key string, obj *rbacv1.RoleBinding) {
	if old := ix.rbs[key]; old != nil {
		for _, sk := range subjectKeys(old.Subjects, old.Namespace) {
			k := old.Namespace + "\x00" + sk
			ix.rbBySubject[k] = without(ix.rbBySubject[k], old)
			if len(ix.rbBySubject[k]) == 0 {
				delete(ix.rbBySubject, k)
			}
		}
		delete(ix.rbs, key)
	}
	if obj == nil {
		return
	}
	ix.rbs[key] = obj
	for _, sk := range subjectKeys(obj.Subjects, obj.Namespace) {
		k := obj.Namespace + "\x00" + sk
		ix.rbBySubject[k] = append(ix.rbBySubject[k], obj)
	}
}

func (ix *Index) setClusterRoleBinding(key string, obj *rbacv1.ClusterRoleBinding) {
	if old := ix.crbs[key]; old != nil {
		for _, sk := range subjectKeys(old.Subjects, "") {
			ix.crbBySubject[sk] = without(ix.crbBySubject[sk], old)
			if len(ix.crbBySubject[sk]) == 0 {
				delete(ix.crbBySubject, sk)
			}
		}
		delete(ix.crbs, key)
	}
	if obj == nil {
		return
	}
	ix.crbs[key] = obj
	for _, sk := range subjectKeys(obj.Subjects, "") {
		ix.crbBySubject[sk] = append(ix.crbBySubject[sk], obj)
	}
}

func without[T comparable](list []T, x T) []T {
	out := list[:0:0]
	for _, v := range list {
		if v != x {
			out = append(out, v)
		}
	}
	return out
}

// subjectKeys are the index keys of a binding's subjects; a subject
// appearing twice is indexed once.
func subjectKeys(subjects []rbacv1.Subject, bindingNS string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range subjects {
		var k string
		switch s.Kind {
		case rbacv1.UserKind:
			k = "u:" + s.Name
		case rbacv1.GroupKind:
			k = "g:" + s.Name
		case rbacv1.ServiceAccountKind:
			ns := s.Namespace
			if ns == "" {
				ns = bindingNS
			}
			if ns == "" {
				continue
			}
			k = "u:" + ServiceAccountUser(ns, s.Name)
		default:
			continue
		}
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// callerKeys are the subject keys that name a caller.
func callerKeys(user string, groups []string) []string {
	out := make([]string, 0, 1+len(groups))
	out = append(out, "u:"+user)
	for _, g := range groups {
		out = append(out, "g:"+g)
	}
	return out
}

// RoleRefRules resolves a binding's roleRef in namespace ns ("" for a
// ClusterRoleBinding): the rules it grants, or a NotFound error.
func (ix *Index) RoleRefRules(ref rbacv1.RoleRef, ns string) ([]rbacv1.PolicyRule, error) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.roleRules(ref, ns)
}

// ClusterRole returns a cluster role by name (a shared object: do not mutate).
func (ix *Index) ClusterRole(name string) (*rbacv1.ClusterRole, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	r, ok := ix.clusterRoles[name]
	return r, ok
}

// ClusterRoles returns every cluster role (shared objects: do not mutate).
func (ix *Index) ClusterRoles() []*rbacv1.ClusterRole {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	out := make([]*rbacv1.ClusterRole, 0, len(ix.clusterRoles))
	for _, r := range ix.clusterRoles {
		out = append(out, r)
	}
	return out
}
