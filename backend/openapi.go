package backend

import (
	"net/http"
	"regexp"
	"strings"

	"github.com/go-chi/chi/v5"
)

// openAPIGV is a group version document path of /openapi/v3: api/v1 or
// apis/<group>/<version>.
var openAPIGV = regexp.MustCompile(`^(api/v1|apis/[a-z0-9]([-a-z0-9.]*[a-z0-9])?/v[a-z0-9]+)$`)

// openAPIRoot passes the API server's OpenAPI v3 discovery document
// (GET /openapi/v3) on to the browser, read as the session's user (or
// with the member's credentials) like every other request: the YAML
// editor finds its group version's document there.
func (s *Server) openAPIRoot(w http.ResponseWriter, r *http.Request) {
	t, ok := s.targetFor(w, r)
	if !ok {
		return
	}
	b, err := t.discovery.RESTClient().Get().AbsPath("/openapi/v3").SetHeader("Accept", "application/json").Do(r.Context()).Raw()
	if err != nil {
		writeAPIError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}

// openAPIDoc passes one group version's OpenAPI v3 document on (JSON;
// CRD schemas included as the API server publishes them). A request with
// the discovery document's hash is immutable and may be kept by the
// browser for this user.
func (s *Server) openAPIDoc(w http.ResponseWriter, r *http.Request) {
	gv := strings.Trim(chi.URLParam(r, "*"), "/")
	if !openAPIGV.MatchString(gv) {
		writeError(w, http.StatusBadRequest, "bad OpenAPI v3 group version path "+gv)
		return
	}
	t, ok := s.targetFor(w, r)
	if !ok {
		return
	}
	req := t.discovery.RESTClient().Get().AbsPath("/openapi/v3", gv).SetHeader("Accept", "application/json")
	hash := r.URL.Query().Get("hash")
	if hash != "" {
		req = req.Param("hash", hash)
	}
	b, err := req.Do(r.Context()).Raw()
	if err != nil {
		writeAPIError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if hash != "" {
		w.Header().Set("Cache-Control", "private, max-age=86400, immutable")
	} else {
		w.Header().Set("Cache-Control", "no-store")
	}
	_, _ = w.Write(b)
}
