package apiserver

import (
	"net/http"

	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// serveVirtual serves a resource that is not stored (registry.Resource.Create
// is set): only create on the collection, answered with 201 and the object
// Create returns, as upstream's TokenReview and access review endpoints.
func (s *Server) serveVirtual(w http.ResponseWriter, r *http.Request, res *registry.Resource, info *RequestInfo, ns string) {
	gr := res.GVR().GroupResource()
	if info.Verb != "create" || info.Name != "" || info.Subresource != "" {
		writeStatus(w, statusFor(apierrors.NewMethodNotSupported(gr, info.Verb)))
		return
	}
	if res.Namespaced && ns == "" {
		writeStatus(w, statusFor(apierrors.NewGenericServerResponse(http.StatusNotFound, "", schemaGR(""), "", "the server could not find the requested resource", 0, false)))
		return
	}
	opts, err := parseWriteOpts(r)
	if err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	obj, warns, err := s.decodeRequestObject(r, res, opts.fv)
	if err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	out, err := res.Create(r.Context(), ns, obj)
	if err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	out.GetObjectKind().SetGroupVersionKind(res.GVK())
	addWarnings(w, warns)
	writeObj(w, r, http.StatusCreated, out)
}
