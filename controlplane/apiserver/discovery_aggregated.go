package apiserver

import (
	"encoding/json"
	"mime"
	"net/http"
	"strings"

	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// aggregatedDiscoveryType is the media type of aggregated discovery (one
// response lists every group, version and resource), which kubectl and
// client-go ask for first.
const aggregatedDiscoveryType = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

// wantsAggregated reports whether the Accept header asks for aggregated
// discovery v2 before plain JSON.
func wantsAggregated(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if mt == "application/json" && params["g"] == "apidiscovery.k8s.io" && params["v"] == "v2" && params["as"] == "APIGroupDiscoveryList" {
			return true
		}
		if mt == "application/json" && params["as"] == "" {
			return false
		}
	}
	return false
}

// aggregated builds the discovery list for the core group (core=true) or
// the named groups.
func (s *Server) aggregated(core bool) *apidiscoveryv2.APIGroupDiscoveryList {
	out := &apidiscoveryv2.APIGroupDiscoveryList{
		TypeMeta: metav1.TypeMeta{Kind: "APIGroupDiscoveryList", APIVersion: "apidiscovery.k8s.io/v2"},
		Items:    []apidiscoveryv2.APIGroupDiscovery{},
	}
	for _, group := range s.reg.Groups() {
		if (group == "") != core {
			continue
		}
		g := apidiscoveryv2.APIGroupDiscovery{ObjectMeta: metav1.ObjectMeta{Name: group}}
		for _, v := range s.reg.Versions(group) {
			vd := apidiscoveryv2.APIVersionDiscovery{Version: v, Freshness: apidiscoveryv2.DiscoveryFreshnessCurrent}
			for _, res := range s.reg.List(group, v) {
				vd.Resources = append(vd.Resources, resourceDiscovery(res))
			}
			g.Versions = append(g.Versions, vd)
		}
		out.Items = append(out.Items, g)
	}
	if !core {
		s.withAggregatedDiscovery(out)
	}
	return out
}

func resourceDiscovery(res *registry.Resource) apidiscoveryv2.APIResourceDiscovery {
	scope := apidiscoveryv2.ScopeCluster
	if res.Namespaced {
		scope = apidiscoveryv2.ScopeNamespace
	}
	d := apidiscoveryv2.APIResourceDiscovery{
		Resource:         res.Plural,
		ResponseKind:     &metav1.GroupVersionKind{Group: res.Group, Version: res.Version, Kind: res.Kind},
		Scope:            scope,
		SingularResource: res.Singular,
		Verbs:            res.Verbs,
		ShortNames:       res.ShortNames,
		Categories:       res.Categories,
	}
	for _, e := range APIResourcesFor(res)[1:] {
		sub := strings.TrimPrefix(e.Name, res.Plural+"/")
		kind := &metav1.GroupVersionKind{Group: e.Group, Version: e.Version, Kind: e.Kind}
		if e.Group == "" && e.Version == "" {
			kind.Group, kind.Version = res.Group, res.Version
		}
		d.Subresources = append(d.Subresources, apidiscoveryv2.APISubresourceDiscovery{
			Subresource: sub, ResponseKind: kind, Verbs: e.Verbs,
		})
	}
	return d
}

func (s *Server) writeAggregated(w http.ResponseWriter, core bool) {
	b, err := json.Marshal(s.aggregated(core))
	if err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	w.Header().Set("Content-Type", aggregatedDiscoveryType)
	w.Header().Set("Vary", "Accept")
	_, _ = w.Write(b)
}
