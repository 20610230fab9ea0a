package apiserver

import (
	"net/http"
	"slices"
	"strings"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Aggregator routes group/versions registered by APIServices with a
// service to extension API servers (package aggregator). The server asks
// it before its own registry, so an APIService overrides a built-in
// group/version, as upstream's aggregator sits in front of the built-in
// API.
type Aggregator interface {
	// Proxied reports whether group/version belongs to an extension API
	// server.
	Proxied(group, version string) bool
	// ServeHTTP forwards an authenticated, authorized request under
	// /apis/<group>/<version> to the extension API server.
	ServeHTTP(w http.ResponseWriter, r *http.Request)
	// Groups is the discovery of the aggregated groups: priority order,
	// versions by preference, resources as the extension server last
	// reported them (none yet for a version never reached).
	Groups() []AggregatedGroup
}

// AggregatedGroup is one API group served by extension API servers.
type AggregatedGroup struct {
	Name     string
	Versions []AggregatedVersion
}

// AggregatedVersion is one registered version of an aggregated group.
type AggregatedVersion struct {
	Version string
	// Available is the APIService's Available condition.
	Available bool
	// Resources as the extension server's /apis/<group>/<version> listed
	// them at its last successful check.
	Resources []metav1.APIResource
}

// SetAggregator installs the aggregation layer (nil removes it).
func (s *Server) SetAggregator(a Aggregator) {
	if a == nil {
		s.aggregator.Store(nil)
		return
	}
	s.aggregator.Store(&a)
}

func (s *Server) agg() Aggregator {
	if p := s.aggregator.Load(); p != nil {
		return *p
	}
	return nil
}

// proxied serves r through the aggregator when its path is under an
// aggregated /apis/<group>/<version>, and reports whether it did.
func (s *Server) proxied(w http.ResponseWriter, r *http.Request) bool {
	a := s.agg()
	if a == nil {
		return false
	}
	parts := splitPath(r.URL.Path)
	if len(parts) < 3 || parts[0] != "apis" || !a.Proxied(parts[1], parts[2]) {
		return false
	}
	a.ServeHTTP(w, r)
	return true
}

// aggregatedGroup returns the discovery document of group merged from the
// registry's versions and the aggregated ones (aggregated first when the
// same version is both: the APIService wins).
func (s *Server) aggregatedGroup(name string) (metav1.APIGroup, bool) {
	g, ok := s.apiGroup(name)
	a := s.agg()
	if a == nil {
		return g, ok
	}
	for _, ag := range a.Groups() {
		if ag.Name != name {
			continue
		}
		if !ok {
			g = metav1.APIGroup{TypeMeta: metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"}, Name: name}
		}
		var vs []metav1.GroupVersionForDiscovery
		for _, v := range ag.Versions {
			vs = append(vs, metav1.GroupVersionForDiscovery{GroupVersion: name + "/" + v.Version, Version: v.Version})
		}
		for _, v := range g.Versions {
			if !slices.ContainsFunc(vs, func(x metav1.GroupVersionForDiscovery) bool { return x.Version == v.Version }) {
				vs = append(vs, v)
			}
		}
		g.Versions = vs
		if len(vs) > 0 {
			g.PreferredVersion = vs[0]
		}
		return g, len(vs) > 0
	}
	return g, ok
}

// withAggregatedGroups adds the aggregated groups to the legacy /apis list.
func (s *Server) withAggregatedGroups(list *metav1.APIGroupList) {
	a := s.agg()
	if a == nil {
		return
	}
	for _, ag := range a.Groups() {
		g, ok := s.aggregatedGroup(ag.Name)
		if !ok {
			continue
		}
		g.TypeMeta = metav1.TypeMeta{}
		if i := slices.IndexFunc(list.Groups, func(x metav1.APIGroup) bool { return x.Name == ag.Name }); i >= 0 {
			list.Groups[i] = g
		} else {
			list.Groups = append(list.Groups, g)
		}
	}
}

// withAggregatedDiscovery adds the aggregated groups to aggregated
// discovery (v2). A version whose server has not answered yet is listed
// without resources and marked Stale, as upstream does.
func (s *Server) withAggregatedDiscovery(out *apidiscoveryv2.APIGroupDiscoveryList) {
	a := s.agg()
	if a == nil {
		return
	}
	for _, ag := range a.Groups() {
		i := slices.IndexFunc(out.Items, func(x apidiscoveryv2.APIGroupDiscovery) bool { return x.Name == ag.Name })
		if i < 0 {
			out.Items = append(out.Items, apidiscoveryv2.APIGroupDiscovery{ObjectMeta: metav1.ObjectMeta{Name: ag.Name}})
			i = len(out.Items) - 1
		}
		g := &out.Items[i]
		var vs []apidiscoveryv2.APIVersionDiscovery
		for _, v := range ag.Versions {
			vd := apidiscoveryv2.APIVersionDiscovery{Version: v.Version, Freshness: apidiscoveryv2.DiscoveryFreshnessCurrent}
			if !v.Available || v.Resources == nil {
				vd.Freshness = apidiscoveryv2.DiscoveryFreshnessStale
			}
			vd.Resources = discoveryFromList(ag.Name, v.Version, v.Resources)
			vs = append(vs, vd)
		}
		for _, v := range g.Versions {
			if !slices.ContainsFunc(vs, func(x apidiscoveryv2.APIVersionDiscovery) bool { return x.Version == v.Version }) {
				vs = append(vs, v)
			}
		}
		g.Versions = vs
	}
}

// discoveryFromList turns a legacy APIResourceList's entries into
// aggregated discovery resources, subresources ("a/b") under their parent.
func discoveryFromList(group, version string, list []metav1.APIResource) []apidiscoveryv2.APIResourceDiscovery {
	var out []apidiscoveryv2.APIResourceDiscovery
	index := map[string]int{}
	kindOf := func(e metav1.APIResource) *metav1.GroupVersionKind {
		k := &metav1.GroupVersionKind{Group: e.Group, Version: e.Version, Kind: e.Kind}
		if k.Group == "" && k.Version == "" {
			k.Group, k.Version = group, version
		}
		return k
	}
	for _, e := range list {
		if parent, sub, ok := strings.Cut(e.Name, "/"); ok {
			i, found := index[parent]
			if !found {
				continue
			}
			out[i].Subresources = append(out[i].Subresources, apidiscoveryv2.APISubresourceDiscovery{Subresource: sub, ResponseKind: kindOf(e), Verbs: e.Verbs})
			continue
		}
		scope := apidiscoveryv2.ScopeCluster
		if e.Namespaced {
			scope = apidiscoveryv2.ScopeNamespace
		}
		index[e.Name] = len(out)
		out = append(out, apidiscoveryv2.APIResourceDiscovery{Resource: e.Name, ResponseKind: kindOf(e), Scope: scope,
			SingularResource: e.SingularName, Verbs: e.Verbs, ShortNames: e.ShortNames, Categories: e.Categories})
	}
	return out
}
