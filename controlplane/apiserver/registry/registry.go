// Package registry describes the resources the API server serves: their
// names, scope, verbs and the hooks (defaulting, validation, printing) that
// give each kind upstream Kubernetes semantics. Built-in kinds register at
// start; custom resources register when their CRD becomes Established.
package registry

import (
	"context"
	"sort"
	"strings"
	"sync"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Hooks give a kind its upstream behaviour. Every hook is optional.
type Hooks struct {
	// Default fills defaulted fields, as upstream's SetDefaults_*.
	Default func(obj runtime.Object)
	// PrepareForCreate clears what clients may not set on create (status of
	// most kinds) and fills server-set fields.
	PrepareForCreate func(ctx context.Context, obj runtime.Object)
	// PrepareForUpdate runs on the main resource's update, after the generic
	// code kept the old status (for kinds with a status subresource).
	PrepareForUpdate func(ctx context.Context, obj, old runtime.Object)
	// Validate checks a new object.
	Validate func(ctx context.Context, obj runtime.Object) field.ErrorList
	// ValidateUpdate checks an update (immutable fields and so on); the
	// object is also checked with Validate.
	ValidateUpdate func(ctx context.Context, obj, old runtime.Object) field.ErrorList
	// ValidateStatusUpdate checks an update through the status subresource.
	ValidateStatusUpdate func(ctx context.Context, obj, old runtime.Object) field.ErrorList
	// Table renders objects as upstream's server-side printers do.
	Table *TableConvertor
	// GracePeriod decides the deletion grace period (pods); nil = immediate.
	GracePeriod func(obj runtime.Object, requested *int64) int64
	// Scale maps the kind to and from autoscaling/v1 Scale.
	Scale *ScaleAccess
	// PrepareForDelete runs when a graceful or finalized deletion starts
	// (namespaces turn Terminating).
	PrepareForDelete func(ctx context.Context, obj runtime.Object)
	// PendingFinalization reports kind-specific finalization that must end
	// before the object is removed (namespaces' spec.finalizers).
	PendingFinalization func(obj runtime.Object) bool
	// FromStorage rewrites a stored object's JSON as this resource's
	// version serves it (custom resources served in several versions);
	// nil serves the stored bytes unchanged.
	FromStorage func(data []byte) []byte
	// ToStorage rewrites an encoded object into the storage version before
	// it is written; nil stores it as encoded.
	ToStorage func(data []byte) []byte
	// Prune removes the fields a decoded request object may not have
	// (custom resources: fields outside the schema) and returns their paths,
	// which fieldValidation reports as unknown fields.
	Prune func(obj runtime.Object) []string
}

// TableConvertor prints one kind.
type TableConvertor struct {
	Columns []metav1.TableColumnDefinition
	// Row returns the cells for one object, one per column (kubectl hides
	// columns with Priority > 0 unless -o wide).
	Row func(obj runtime.Object) []interface{}
}

// ScaleAccess reads and writes replicas for the scale subresource.
type ScaleAccess struct {
	// Get returns spec replicas, status replicas and the selector string.
	Get func(obj runtime.Object) (spec int32, status int32, selector string)
	// Set changes spec replicas.
	Set func(obj runtime.Object, replicas int32)
}

// Resource describes one served resource.
type Resource struct {
	Group      string
	Version    string
	Kind       string
	ListKind   string
	Plural     string
	Singular   string
	ShortNames []string
	Categories []string
	Namespaced bool
	// Verbs served on the resource (discovery).
	Verbs []string
	// Subresources served, e.g. "status", "scale", "binding".
	Subresources []string
	// StorageKeyPrefix is the etcd key prefix, ending in "/".
	StorageKeyPrefix string
	// New returns an empty typed object; nil means unstructured (CRs).
	New func() runtime.Object
	// SelectableFields lists the JSON paths usable in field selectors in
	// addition to metadata.name and metadata.namespace.
	SelectableFields map[string]string
	// HasSpec: generation is tracked and bumped when the spec changes.
	HasSpec bool
	// AllowCreateOnUpdate: PUT of a missing object creates it.
	AllowCreateOnUpdate bool
	// RequireRVOnUpdate: PUT without metadata.resourceVersion is rejected.
	RequireRVOnUpdate bool
	// Hooks add the kind's semantics.
	Hooks Hooks
	// StorageVersionHash appears in discovery.
	StorageVersionHash string
	// Schema is the OpenAPI v3 schema of a custom resource version (nil
	// for built-in kinds, whose schema comes from their Go types).
	Schema *apiextensionsv1.JSONSchemaProps
	// CRD is the definition a custom resource was registered from.
	CRD *apiextensionsv1.CustomResourceDefinition
	// Create, when set, makes the resource virtual: nothing is stored, only
	// POST to the collection is served and it answers Create's result with
	// 201 (TokenReview, SelfSubjectReview, access reviews). ns is the
	// request's namespace ("" for cluster-scoped); ctx carries the caller.
	Create func(ctx context.Context, ns string, obj runtime.Object) (runtime.Object, error)
	// Get and List, when set, make the resource virtual and read-only:
	// nothing is stored, get and list are answered from them
	// (metrics.k8s.io). ns is "" for cluster-scoped resources and for a
	// list across namespaces; List filters by the request's label
	// selector. Answer NotFound errors for missing objects.
	Get  func(ctx context.Context, ns, name string) (runtime.Object, error)
	List func(ctx context.Context, ns string, sel labels.Selector) (runtime.Object, error)
}

// GVR returns the group/version/resource.
func (r *Resource) GVR() schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: r.Group, Version: r.Version, Resource: r.Plural}
}

// GVK returns the group/version/kind.
func (r *Resource) GVK() schema.GroupVersionKind {
	return schema.GroupVersionKind{Group: r.Group, Version: r.Version, Kind: r.Kind}
}

// GroupVersion returns "group/version", or "v1" for the core group.
func (r *Resource) GroupVersion() string {
	return r.GVK().GroupVersion().String()
}

// HasSubresource reports whether sub is served.
func (r *Resource) HasSubresource(sub string) bool {
	for _, s := range r.Subresources {
		if s == sub {
			return true
		}
	}
	return false
}

// Registry holds the served resources; it is safe for concurrent use.
type Registry struct {
	mu        sync.RWMutex
	resources map[schema.GroupVersionResource]*Resource
	// preferred versions per group, in priority order.
	versions map[string][]string
	onChange []func()
	// all is All's sorted answer, built on first use after a change.
	all []*Resource
}

// New returns an empty registry.
func New() *Registry {
	return &Registry{resources: map[schema.GroupVersionResource]*Resource{}, versions: map[string][]string{}}
}

// Add registers or replaces a resource.
func (g *Registry) Add(r *Resource) {
	if r.ListKind == "" {
		r.ListKind = r.Kind + "List"
	}
	if r.Singular == "" {
		r.Singular = strings.ToLower(r.Kind)
	}
	if r.StorageKeyPrefix == "" {
		r.StorageKeyPrefix = DefaultKeyPrefix(r.Group, r.Plural)
	}
	g.mu.Lock()
	g.resources[r.GVR()] = r
	g.all = nil
	found := false
	for _, v := range g.versions[r.Group] {
		if v == r.Version {
			found = true
		}
	}
	if !found {
		g.versions[r.Group] = append(g.versions[r.Group], r.Version)
		sortVersions(g.versions[r.Group])
	}
	cbs := append([]func(){}, g.onChange...)
	g.mu.Unlock()
	for _, cb := range cbs {
		cb()
	}
}

// Remove unregisters a resource.
func (g *Registry) Remove(gvr schema.GroupVersionResource) {
	g.mu.Lock()
	delete(g.resources, gvr)
	g.all = nil
	still := false
	for k := range g.resources {
		if k.Group == gvr.Group && k.Version == gvr.Version {
			still = true
		}
	}
	if !still {
		vs := g.versions[gvr.Group]
		out := vs[:0]
		for _, v := range vs {
			if v != gvr.Version {
				out = append(out, v)
			}
		}
		if len(out) == 0 {
			delete(g.versions, gvr.Group)
		} else {
			g.versions[gvr.Group] = out
		}
	}
	cbs := append([]func(){}, g.onChange...)
	g.mu.Unlock()
	for _, cb := range cbs {
		cb()
	}
}

// OnChange registers a callback run after every Add or Remove.
func (g *Registry) OnChange(cb func()) {
	g.mu.Lock()
	g.onChange = append(g.onChange, cb)
	g.mu.Unlock()
}

// Get finds a resource by group, version and plural name.
func (g *Registry) Get(group, version, plural string) (*Resource, bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	r, ok := g.resources[schema.GroupVersionResource{Group: group, Version: version, Resource: plural}]
	return r, ok
}

// ByKind finds a resource by its group/version/kind.
func (g *Registry) ByKind(gvk schema.GroupVersionKind) (*Resource, bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	for _, r := range g.resources {
		if r.Group == gvk.Group && r.Version == gvk.Version && r.Kind == gvk.Kind {
			return r, true
		}
	}
	return nil, false
}

// Groups returns the served group names, "" (core) first, then sorted.
func (g *Registry) Groups() []string {
	g.mu.RLock()
	defer g.mu.RUnlock()
	out := make([]string, 0, len(g.versions))
	for k := range g.versions {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return groupLess(out[i], out[j]) })
	return out
}

// Versions returns the served versions of a group, preferred first.
func (g *Registry) Versions(group string) []string {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return append([]string(nil), g.versions[group]...)
}

// List returns the resources of one group version, sorted by plural.
func (g *Registry) List(group, version string) []*Resource {
	g.mu.RLock()
	defer g.mu.RUnlock()
	var out []*Resource
	for k, r := range g.resources {
		if k.Group == group && k.Version == version {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Plural < out[j].Plural })
	return out
}

// All returns every resource, sorted by group (as discovery orders them),
// version and plural. The slice is the caller's.
func (g *Registry) All() []*Resource {
	g.mu.RLock()
	all := g.all
	g.mu.RUnlock()
	if all == nil {
		g.mu.Lock()
		if g.all == nil {
			g.all = g.sortedLocked()
		}
		all = g.all
		g.mu.Unlock()
	}
	return append([]*Resource(nil), all...)
}

// StorageKeyPrefix returns the storage key prefix of a group's resource
// (any served version), or "" when it is not served.
func (g *Registry) StorageKeyPrefix(group, plural string) string {
	g.mu.RLock()
	defer g.mu.RUnlock()
	for _, v := range g.versions[group] {
		if r, ok := g.resources[schema.GroupVersionResource{Group: group, Version: v, Resource: plural}]; ok {
			return r.StorageKeyPrefix
		}
	}
	return ""
}

func (g *Registry) sortedLocked() []*Resource {
	out := make([]*Resource, 0, len(g.resources))
	for _, r := range g.resources {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Group != out[j].Group {
			return groupLess(out[i].Group, out[j].Group)
		}
		if out[i].Version != out[j].Version {
			return out[i].Version < out[j].Version
		}
		return out[i].Plural < out[j].Plural
	})
	return out
}

// DefaultKeyPrefix is upstream's etcd key layout: core and most built-in
// groups use /registry/<plural>/, other groups /registry/<group>/<plural>/.
func DefaultKeyPrefix(group, plural string) string {
	switch group {
	case "", "apps", "batch", "autoscaling", "policy", "networking.k8s.io", "storage.k8s.io",
		"rbac.authorization.k8s.io", "scheduling.k8s.io", "coordination.k8s.io", "discovery.k8s.io",
		"events.k8s.io", "certificates.k8s.io", "admissionregistration.k8s.io", "node.k8s.io",
		"flowcontrol.apiserver.k8s.io":
		return "/registry/" + plural + "/"
	}
	return "/registry/" + group + "/" + plural + "/"
}

// groupLess orders the core group first, then built-in groups as upstream
// discovery does (roughly), then the rest alphabetically.
func groupLess(a, b string) bool {
	pa, pb := groupPriority(a), groupPriority(b)
	if pa != pb {
		return pa < pb
	}
	return a < b
}

var builtinOrder = []string{"", "apiregistration.k8s.io", "apps", "events.k8s.io", "authentication.k8s.io",
	"authorization.k8s.io", "autoscaling", "batch", "certificates.k8s.io", "networking.k8s.io", "policy",
	"rbac.authorization.k8s.io", "storage.k8s.io", "admissionregistration.k8s.io", "apiextensions.k8s.io",
	"scheduling.k8s.io", "coordination.k8s.io", "node.k8s.io", "discovery.k8s.io", "flowcontrol.apiserver.k8s.io"}

func groupPriority(g string) int {
	for i, b := range builtinOrder {
		if b == g {
			return i
		}
	}
	return len(builtinOrder)
}

// sortVersions orders versions as Kubernetes does: GA > beta > alpha, higher
// numbers first.
func sortVersions(vs []string) {
	sort.SliceStable(vs, func(i, j int) bool { return versionLess(vs[j], vs[i]) })
}

// versionLess reports whether version a has lower priority than b.
func versionLess(a, b string) bool {
	ma, ka, na := parseVersion(a)
	mb, kb, nb := parseVersion(b)
	if ka != kb {
		return ka < kb
	}
	if ma != mb {
		return ma < mb
	}
	return na < nb
}

// parseVersion splits "v2beta1" into (2, 1 [beta], 1). Kind: 0 other, 1 alpha, 2 beta, 3 GA.
func parseVersion(v string) (major int, kind int, minor int) {
	if !strings.HasPrefix(v, "v") {
		return 0, 0, 0
	}
	s := v[1:]
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		major = major*10 + int(s[i]-'0')
		i++
	}
	if i == 0 {
		return 0, 0, 0
	}
	rest := s[i:]
	switch {
	case rest == "":
		return major, 3, 0
	case strings.HasPrefix(rest, "beta"):
		kind, rest = 2, rest[4:]
	case strings.HasPrefix(rest, "alpha"):
		kind, rest = 1, rest[5:]
	default:
		return 0, 0, 0
	}
	for j := 0; j < len(rest); j++ {
		if rest[j] < '0' || rest[j] > '9' {
			return 0, 0, 0
		}
		minor = minor*10 + int(rest[j]-'0')
	}
	return major, kind, minor
}
