package metrics

import (
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Version is the served version of metrics.k8s.io.
const Version = "v1beta1"

// aggregatedDiscoveryType is the media type of aggregated discovery (v2).
const aggregatedDiscoveryType = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

// APIHandler serves metrics.k8s.io/v1beta1 over HTTP as an extension API
// server does (what `skiff metrics --secure-port` serves behind an
// APIService), from the same resources as Resources: discovery (/apis,
// also as aggregated discovery v2, /apis/metrics.k8s.io and its version),
// get and list of nodes and pods (all namespaces or one) with label
// selectors, Status errors (404, 405, 400 for a bad selector), and
// /healthz, /livez and /readyz (ready after the first scrape round). It
// does no authentication or authorization; wrap it (internal/extauth).
// JSON only; no watch, no field selectors, no tables, as the built-in
// resources.
func (c *Collector) APIHandler() http.Handler {
	h := &apiHandler{c: c, byPlural: map[string]*registry.Resource{}}
	for _, r := range c.Resources() {
		h.res = append(h.res, r)
		h.byPlural[r.Plural] = r
	}
	return h
}

type apiHandler struct {
	c        *Collector
	res      []*registry.Resource
	byPlural map[string]*registry.Resource
}

var notFound = apierrors.NewGenericServerResponse(http.StatusNotFound, "", schema.GroupResource{}, "", "the server could not find the requested resource", 0, false)

func (h *apiHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch p {
	case "/healthz", "/livez":
		writeText(w, http.StatusOK, "ok")
		return
	case "/readyz":
		if !h.c.Ready() {
			writeText(w, http.StatusServiceUnavailable, "no scrape round completed yet")
			return
		}
		writeText(w, http.StatusOK, "ok")
		return
	}
	parts := strings.Split(strings.Trim(p, "/"), "/")
	if len(parts) < 1 || parts[0] != "apis" || len(parts) > 1 && parts[1] != Group || len(parts) > 2 && parts[2] != Version {
		writeAPIStatus(w, notFound)
		return
	}
	if len(parts) <= 3 {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeAPIStatus(w, apierrors.NewMethodNotSupported(schema.GroupResource{}, strings.ToLower(r.Method)))
			return
		}
		switch len(parts) {
		case 1:
			if wantsAggregated(r.Header.Get("Accept")) {
				w.Header().Set("Vary", "Accept")
				writeJSON(w, http.StatusOK, aggregatedDiscoveryType, h.aggregatedDiscovery())
				return
			}
			writeJSON(w, http.StatusOK, "", &metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}, Groups: []metav1.APIGroup{apiGroup()}})
		case 2:
			g := apiGroup()
			g.TypeMeta = metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"}
			writeJSON(w, http.StatusOK, "", &g)
		case 3:
			writeJSON(w, http.StatusOK, "", h.resourceList())
		}
		return
	}
	h.serveResource(w, r, parts[3:])
}

// serveResource serves rest = [namespaces NS] PLURAL [NAME].
func (h *apiHandler) serveResource(w http.ResponseWriter, r *http.Request, rest []string) {
	ns := ""
	if rest[0] == "namespaces" && len(rest) >= 3 {
		ns, rest = rest[1], rest[2:]
	}
	res := h.byPlural[rest[0]]
	if res == nil || len(rest) > 2 || ns != "" && !res.Namespaced || ns == "" && len(rest) == 2 && res.Namespaced || len(rest) == 2 && rest[1] == "" {
		writeAPIStatus(w, notFound)
		return
	}
	gr := res.GVR().GroupResource()
	verb := "list"
	if len(rest) == 2 {
		verb = "get"
	} else if watch, _ := strconv.ParseBool(r.URL.Query().Get("watch")); watch {
		verb = "watch"
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		verb = strings.ToLower(r.Method)
		switch r.Method {
		case http.MethodPost:
			verb = "create"
		case http.MethodPut:
			verb = "update"
		case http.MethodDelete:
			verb = "delete"
		}
	}
	var (
		obj runtime.Object
		err error
		gvk = res.GVK()
	)
	switch verb {
	case "get":
		obj, err = res.Get(r.Context(), ns, rest[1])
	case "list":
		sel, perr := labels.Parse(r.URL.Query().Get("labelSelector"))
		if perr != nil {
			writeAPIStatus(w, apierrors.NewBadRequest("unable to parse requirement: "+perr.Error()))
			return
		}
		obj, err = res.List(r.Context(), ns, sel)
		gvk.Kind = res.ListKind
	default:
		writeAPIStatus(w, apierrors.NewMethodNotSupported(gr, verb))
		return
	}
	if err != nil {
		writeAPIStatus(w, asStatus(err))
		return
	}
	obj.GetObjectKind().SetGroupVersionKind(gvk)
	writeJSON(w, http.StatusOK, "", obj)
}

func apiGroup() metav1.APIGroup {
	gv := metav1.GroupVersionForDiscovery{GroupVersion: Group + "/" + Version, Version: Version}
	return metav1.APIGroup{Name: Group, Versions: []metav1.GroupVersionForDiscovery{gv}, PreferredVersion: gv}
}

func (h *apiHandler) resourceList() *metav1.APIResourceList {
	l := &metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: Group + "/" + Version}
	for _, r := range h.res {
		l.APIResources = append(l.APIResources, metav1.APIResource{
			Name: r.Plural, SingularName: r.Singular, Namespaced: r.Namespaced, Kind: r.Kind, Verbs: r.Verbs,
		})
	}
	return l
}

func (h *apiHandler) aggregatedDiscovery() *apidiscoveryv2.APIGroupDiscoveryList {
	v := apidiscoveryv2.APIVersionDiscovery{Version: Version, Freshness: apidiscoveryv2.DiscoveryFreshnessCurrent}
	for _, r := range h.res {
		scope := apidiscoveryv2.ScopeCluster
		if r.Namespaced {
			scope = apidiscoveryv2.ScopeNamespace
		}
		v.Resources = append(v.Resources, apidiscoveryv2.APIResourceDiscovery{
			Resource: r.Plural, SingularResource: r.Singular, Scope: scope, Verbs: r.Verbs,
			ResponseKind: &metav1.GroupVersionKind{Group: r.Group, Version: r.Version, Kind: r.Kind},
		})
	}
	return &apidiscoveryv2.APIGroupDiscoveryList{
		TypeMeta: metav1.TypeMeta{Kind: "APIGroupDiscoveryList", APIVersion: "apidiscovery.k8s.io/v2"},
		Items:    []apidiscoveryv2.APIGroupDiscovery{{ObjectMeta: metav1.ObjectMeta{Name: Group}, Versions: []apidiscoveryv2.APIVersionDiscovery{v}}},
	}
}

// wantsAggregated reports whether an Accept header asks for aggregated
// discovery v2 in JSON (as the aggregator and kubectl do, listing it
// before the legacy types).
func wantsAggregated(accept string) bool {
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if mt == "application/json" && params["g"] == "apidiscovery.k8s.io" && params["v"] == "v2" && params["as"] == "APIGroupDiscoveryList" {
			return true
		}
	}
	return false
}

func asStatus(err error) *apierrors.StatusError {
	if se, ok := err.(*apierrors.StatusError); ok {
		return se
	}
	return apierrors.NewInternalError(err)
}

func writeAPIStatus(w http.ResponseWriter, err *apierrors.StatusError) {
	st := err.ErrStatus
	st.TypeMeta = metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}
	st.Status = metav1.StatusFailure
	writeJSON(w, int(st.Code), "", &st)
}

func writeJSON(w http.ResponseWriter, code int, contentType string, v any) {
	if contentType == "" {
		contentType = "application/json"
	}
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"encoding the response failed","code":500}`)
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func writeText(w http.ResponseWriter, code int, s string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, s)
}
