package apiserver

import (
	"net/http"
	"strings"

	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func (s *Server) serverAddresses() []metav1.ServerAddressByClientCIDR {
	if s.cfg.ExternalAddress == "" {
		return nil
	}
	return []metav1.ServerAddressByClientCIDR{{ClientCIDR: "0.0.0.0/0", ServerAddress: s.cfg.ExternalAddress}}
}

func (s *Server) discoveryCore(w http.ResponseWriter, r *http.Request) {
	if wantsAggregated(r) {
		s.writeAggregated(w, true)
		return
	}
	writeObj(w, r, http.StatusOK, &metav1.APIVersions{
		TypeMeta:                   metav1.TypeMeta{Kind: "APIVersions"},
		Versions:                   s.reg.Versions(""),
		ServerAddressByClientCIDRs: s.serverAddresses(),
	})
}

func (s *Server) apiGroup(name string) (metav1.APIGroup, bool) {
	vs := s.reg.Versions(name)
	if len(vs) == 0 {
		return metav1.APIGroup{}, false
	}
	g := metav1.APIGroup{TypeMeta: metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"}, Name: name}
	for _, v := range vs {
		g.Versions = append(g.Versions, metav1.GroupVersionForDiscovery{GroupVersion: name + "/" + v, Version: v})
	}
	g.PreferredVersion = g.Versions[0]
	return g, true
}

func (s *Server) discoveryGroups(w http.ResponseWriter, r *http.Request) {
	if wantsAggregated(r) {
		s.writeAggregated(w, false)
		return
	}
	list := &metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}, Groups: []metav1.APIGroup{}}
	for _, name := range s.reg.Groups() {
		if name == "" {
			continue
		}
		if g, ok := s.apiGroup(name); ok {
			g.TypeMeta = metav1.TypeMeta{}
			list.Groups = append(list.Groups, g)
		}
	}
	s.withAggregatedGroups(list)
	writeObj(w, r, http.StatusOK, list)
}

// serveDiscoveryPath answers /api/v1, /apis/<group> and /apis/<group>/<version>.
func (s *Server) serveDiscoveryPath(w http.ResponseWriter, r *http.Request, info *RequestInfo) {
	notFound := func() {
		writeStatus(w, statusFor(apierrors.NewGenericServerResponse(http.StatusNotFound, "", schemaGR(""), "", "the server could not find the requested resource", 0, false)))
	}
	if r.Method != http.MethodGet {
		notFound()
		return
	}
	parts := splitPath(r.URL.Path)
	switch {
	case len(parts) == 2 && parts[0] == "api":
		s.resourceList(w, r, "", parts[1])
	case len(parts) == 2 && parts[0] == "apis":
		g, ok := s.aggregatedGroup(parts[1])
		if !ok {
			notFound()
			return
		}
		writeObj(w, r, http.StatusOK, &g)
	case len(parts) == 3 && parts[0] == "apis":
		s.resourceList(w, r, parts[1], parts[2])
	default:
		notFound()
	}
}

func (s *Server) resourceList(w http.ResponseWriter, r *http.Request, group, version string) {
	resources := s.reg.List(group, version)
	if len(resources) == 0 {
		writeStatus(w, statusFor(apierrors.NewGenericServerResponse(http.StatusNotFound, "", schemaGR(""), "", "the server could not find the requested resource", 0, false)))
		return
	}
	gv := version
	if group != "" {
		gv = group + "/" + version
	}
	list := &metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: gv}
	for _, res := range resources {
		list.APIResources = append(list.APIResources, APIResourcesFor(res)...)
	}
	writeObj(w, r, http.StatusOK, list)
}

// APIResourcesFor returns the discovery entries of a resource and its subresources.
func APIResourcesFor(res *registry.Resource) []metav1.APIResource {
	out := []metav1.APIResource{{
		Name:               res.Plural,
		SingularName:       res.Singular,
		Namespaced:         res.Namespaced,
		Kind:               res.Kind,
		Verbs:              res.Verbs,
		ShortNames:         res.ShortNames,
		Categories:         res.Categories,
		StorageVersionHash: res.StorageVersionHash,
	}}
	for _, sub := range res.Subresources {
		e := metav1.APIResource{Name: res.Plural + "/" + sub, Namespaced: res.Namespaced, Kind: res.Kind}
		switch sub {
		case "status":
			e.Verbs = []string{"get", "patch", "update"}
		case "scale":
			e.Group, e.Version, e.Kind = "autoscaling", "v1", "Scale"
			e.Verbs = []string{"get", "patch", "update"}
		case "binding":
			e.Kind = "Binding"
			e.Verbs = []string{"create"}
		case "eviction":
			e.Group, e.Version, e.Kind = "policy", "v1", "Eviction"
			e.Verbs = []string{"create"}
		case "finalize":
			e.Verbs = []string{"update"}
		case "token":
			e.Group, e.Version, e.Kind = "authentication.k8s.io", "v1", "TokenRequest"
			e.Verbs = []string{"create"}
		case "log":
			e.Verbs = []string{"get"}
		case "exec", "attach", "portforward":
			e.Kind = strings.ToUpper(sub[:1]) + sub[1:] + "Options"
			if sub == "portforward" {
				e.Kind = "PodPortForwardOptions"
			} else if sub == "exec" {
				e.Kind = "PodExecOptions"
			} else {
				e.Kind = "PodAttachOptions"
			}
			e.Verbs = []string{"create", "get"}
		case "proxy":
			e.Verbs = []string{"create", "delete", "get", "patch", "update"}
		default:
			e.Verbs = []string{"get"}
		}
		out = append(out, e)
	}
	return out
}
