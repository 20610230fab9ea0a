package apiserver

import (
	"net/http"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// openAPICache holds the generated OpenAPI documents until the set of
// served resources changes.
type openAPICache struct {
	mu   sync.Mutex
	docs map[string][]byte
}

func (c *openAPICache) invalidate() {
	c.mu.Lock()
	c.docs = nil
	c.mu.Unlock()
}

func (s *Server) openAPIV2(w http.ResponseWriter, r *http.Request) {
	writeStatus(w, statusFor(apierrors.NewGenericServerResponse(http.StatusNotFound, "", schemaGR(""), "", "the server could not find the requested resource", 0, false)))
}

func (s *Server) openAPIV3Root(w http.ResponseWriter, r *http.Request) {
	writeStatus(w, statusFor(apierrors.NewGenericServerResponse(http.StatusNotFound, "", schemaGR(""), "", "the server could not find the requested resource", 0, false)))
}

func (s *Server) openAPIV3Doc(w http.ResponseWriter, r *http.Request) {
	writeStatus(w, statusFor(apierrors.NewGenericServerResponse(http.StatusNotFound, "", schemaGR(""), "", "the server could not find the requested resource", 0, false)))
}
