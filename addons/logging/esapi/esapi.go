// Package esapi serves the subset of Elasticsearch's REST API that log
// shippers and the dashboard use (root document, _bulk, _search, _count,
// index create/delete, _cat/indices) over an embedded log store
// (addons/logging/store). The server mounts it under /logs/ on the API
// server, so authentication and RBAC (nonResourceURLs) are the cluster's.
package esapi

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/skiffhq/skiff/addons/logging/store"
)

// Version is the Elasticsearch version the root document reports.
const Version = "8.19.7"

// DefaultMaxBodyBytes is Elasticsearch's http.max_content_length (100 MiB).
const DefaultMaxBodyBytes = 100 << 20

// Handler serves the API. Paths are relative to the mount point (the
// caller strips "/logs").
type Handler struct {
	Store *store.Store
	// MaxBodyBytes bounds request bodies, after decompression (default
	// 100 MiB); larger ones answer 413.
	MaxBodyBytes int64
	Logger       *slog.Logger
	// ClusterName is reported by the root document (default "skiff").
	ClusterName string
	// Peers, in an HA cluster, are the other servers' stores: searches,
	// counts and index lists cover them too, index deletions reach them
	// (cluster.go). Nil: this store alone.
	Peers *Peers
}

var _ http.Handler = (*Handler)(nil)

// ServeHTTP routes a request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	path := strings.Trim(r.URL.Path, "/")
	var parts []string
	if path != "" {
		parts = strings.Split(path, "/")
	}
	if err := h.route(w, r, parts); err != nil {
		writeError(w, err)
	}
}

func (h *Handler) route(w http.ResponseWriter, r *http.Request, parts []string) error {
	m := r.Method
	switch {
	case len(parts) == 0:
		if m == http.MethodGet || m == http.MethodHead {
			return h.root(w, r)
		}
	case parts[0] == "_bulk" && len(parts) == 1:
		if m == http.MethodPost || m == http.MethodPut {
			return h.bulk(w, r, "")
		}
	case len(parts) == 2 && parts[1] == "_bulk":
		if m == http.MethodPost || m == http.MethodPut {
			return h.bulk(w, r, parts[0])
		}
	case parts[0] == "_search" && len(parts) == 1:
		if m == http.MethodGet || m == http.MethodPost {
			return h.search(w, r, "")
		}
	case len(parts) == 2 && parts[1] == "_search":
		if m == http.MethodGet || m == http.MethodPost {
			return h.search(w, r, parts[0])
		}
	case parts[0] == "_count" && len(parts) == 1:
		if m == http.MethodGet || m == http.MethodPost {
			return h.count(w, r, "")
		}
	case len(parts) == 2 && parts[1] == "_count":
		if m == http.MethodGet || m == http.MethodPost {
			return h.count(w, r, parts[0])
		}
	case parts[0] == "_cat" && len(parts) >= 2 && parts[1] == "indices" && len(parts) <= 3:
		if m == http.MethodGet {
			pat := ""
			if len(parts) == 3 {
				pat = parts[2]
			}
			return h.catIndices(w, r, pat)
		}
	case (parts[0] == "_index_template" || parts[0] == "_ilm" || parts[0] == "_component_template") && len(parts) >= 2:
		// Templates and lifecycle policies are accepted for clients that
		// set them up on a fresh cluster; the store's own mapping and
		// retention apply.
		if m == http.MethodPut || m == http.MethodPost {
			_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
			return writeJSON(w, http.StatusOK, map[string]any{"acknowledged": true})
		}
		if m == http.MethodGet || m == http.MethodHead {
			return esError(http.StatusNotFound, "resource_not_found_exception", "templates and policies are not stored by the embedded log store")
		}
	case parts[0] == "_data_stream" && len(parts) == 2:
		if m == http.MethodPut {
			return h.createIndex(w, r, parts[1])
		}
		if m == http.MethodDelete {
			return h.deleteIndex(w, r, parts[1])
		}
	case len(parts) == 1 && !strings.HasPrefix(parts[0], "_"):
		switch m {
		case http.MethodPut:
			return h.createIndex(w, r, parts[0])
		case http.MethodDelete:
			return h.deleteIndex(w, r, parts[0])
		case http.MethodHead, http.MethodGet:
			return h.getIndex(w, r, parts[0])
		}
	default:
		return esError(http.StatusBadRequest, "invalid_index_name_exception", fmt.Sprintf("no handler found for uri [%s] and method [%s]", r.URL.Path, m))
	}
	return esError(http.StatusMethodNotAllowed, "method_not_allowed", fmt.Sprintf("Incorrect HTTP method for uri [%s] and method [%s]", r.URL.Path, m))
}

func (h *Handler) root(w http.ResponseWriter, r *http.Request) error {
	name := h.ClusterName
	if name == "" {
		name = "skiff"
	}
	return writeJSON(w, http.StatusOK, map[string]any{
		"name":         name,
		"cluster_name": name,
		"cluster_uuid": "skiff-embedded-log-store",
		"version": map[string]any{
			"number":                              Version,
			"build_flavor":                        "default",
			"build_type":                          "skiff",
			"build_hash":                          "",
			"build_date":                          "2025-01-01T00:00:00.000Z",
			"build_snapshot":                      false,
			"lucene_version":                      "9.12.2",
			"minimum_wire_compatibility_version":  "7.17.0",
			"minimum_index_compatibility_version": "7.0.0",
		},
		"tagline": "You Know, for Search",
	})
}

func (h *Handler) maxBody() int64 {
	if h.MaxBodyBytes > 0 {
		return h.MaxBodyBytes
	}
	return DefaultMaxBodyBytes
}

// readBody reads a request body (gzip-decoded when Content-Encoding says
// so), answering 413 beyond the limit.
func (h *Handler) readBody(r *http.Request) ([]byte, error) {
	limit := h.maxBody()
	if r.ContentLength > limit {
		return nil, tooLarge(limit)
	}
	var body io.Reader = r.Body
	switch strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))) {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(io.LimitReader(r.Body, limit+1))
		if err != nil {
			return nil, esError(http.StatusBadRequest, "parse_exception", "bad gzip body: "+err.Error())
		}
		defer zr.Close()
		body = zr
	default:
		return nil, esError(http.StatusUnsupportedMediaType, "illegal_argument_exception", "unsupported Content-Encoding")
	}
	b, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, esError(http.StatusBadRequest, "parse_exception", "reading the request body: "+err.Error())
	}
	if int64(len(b)) > limit {
		return nil, tooLarge(limit)
	}
	return b, nil
}

func tooLarge(limit int64) error {
	return esError(http.StatusRequestEntityTooLarge, "content_too_long_exception", fmt.Sprintf("request body is larger than the limit of [%d] bytes", limit))
}

// apiError is an error answered in Elasticsearch's format.
type apiError struct {
	status int
	typ    string
	reason string
}

func (e *apiError) Error() string { return e.typ + ": " + e.reason }

func esError(status int, typ, reason string) error {
	return &apiError{status: status, typ: typ, reason: reason}
}

func writeError(w http.ResponseWriter, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		switch {
		case errors.Is(err, store.ErrIndexNotFound):
			ae = &apiError{http.StatusNotFound, "index_not_found_exception", err.Error()}
		case errors.Is(err, store.ErrIndexExists):
			ae = &apiError{http.StatusBadRequest, "resource_already_exists_exception", err.Error()}
		case errors.Is(err, store.ErrBadIndexName):
			ae = &apiError{http.StatusBadRequest, "invalid_index_name_exception", err.Error()}
		default:
			ae = &apiError{http.StatusInternalServerError, "exception", err.Error()}
		}
	}
	cause := map[string]any{"type": ae.typ, "reason": ae.reason}
	_ = writeJSON(w, ae.status, map[string]any{
		"error":  map[string]any{"root_cause": []any{cause}, "type": ae.typ, "reason": ae.reason},
		"status": ae.status,
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeRaw(w, status, b)
}

func writeRaw(w http.ResponseWriter, status int, b []byte) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
	return nil
}
