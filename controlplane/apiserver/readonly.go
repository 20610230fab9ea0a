package apiserver

import (
	"net/http"

	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
)

// serveReadOnly serves a virtual read-only resource (registry.Resource.Get
// and List are set): get and list only, as metrics-server's
// metrics.k8s.io. Label selectors are passed to List; field selectors
// are not applied; there is no watch.
func (s *Server) serveReadOnly(w http.ResponseWriter, r *http.Request, res *registry.Resource, info *RequestInfo, ns string) {
	gr := res.GVR().GroupResource()
	if info.Subresource != "" {
		writeStatus(w, statusFor(apierrors.NewGenericServerResponse(http.StatusNotFound, "", schemaGR(""), "", "the server could not find the requested resource", 0, false)))
		return
	}
	switch {
	case info.Verb == "get" && res.Get != nil:
		obj, err := res.Get(r.Context(), ns, info.Name)
		if err != nil {
			writeStatus(w, statusFor(err))
			return
		}
		obj.GetObjectKind().SetGroupVersionKind(res.GVK())
		writeObj(w, r, http.StatusOK, obj)
	case info.Verb == "list" && res.List != nil:
		sel, err := labels.Parse(r.URL.Query().Get("labelSelector"))
		if err != nil {
			writeStatus(w, statusFor(badRequest("unable to parse requirement: %v", err)))
			return
		}
		obj, err := res.List(r.Context(), ns, sel)
		if err != nil {
			writeStatus(w, statusFor(err))
			return
		}
		obj.GetObjectKind().SetGroupVersionKind(res.GVK().GroupVersion().WithKind(res.ListKind))
		writeObj(w, r, http.StatusOK, obj)
	default:
		writeStatus(w, statusFor(apierrors.NewMethodNotSupported(gr, info.Verb)))
	}
}
