// Package esapi serves the subset of Elasticsearch's REST API that log
// shippers and the dashboard use (root document, _bulk, _search, _count,
// index create/delete, _cat/indices) over an embedded log store
// (addons/logging/store). The server mounts it under /logs/ on the API
// server, so authentication and RBAC (nonResourceURLs) are the cluster's.
package esapi

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	// The tz database for date_histogram time_zone IDs, whatever the host has.
	_ "time/tzdata"

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
	return h.readBodyInto(r, nil)
}

// readBodyInto is readBody into buf (from its start), which it grows as
// needed: the result may be buf or a new slice. With a known
// Content-Length and no gzip, one buffer of that size is read into.
func (h *Handler) readBodyInto(r *http.Request, buf []byte) ([]byte, error) {
	limit := h.maxBody()
	if r.ContentLength > limit {
		return buf[:0], tooLarge(limit)
	}
	var body io.Reader = r.Body
	// The buffer is made this large at first (a body may announce more
	// than it sends: beyond maxBodyHint it grows as the bytes come).
	hint := int64(512)
	switch strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))) {
	case "", "identity":
		if r.ContentLength > 0 {
			hint = min(r.ContentLength, maxBodyHint)
		}
	case "gzip", "x-gzip":
		gr := gzipReaders.Get().(*gzipReader)
		defer gzipReaders.Put(gr)
		zr, err := gr.reset(io.LimitReader(r.Body, limit+1))
		if err != nil {
			return buf[:0], esError(http.StatusBadRequest, "parse_exception", "bad gzip body: "+err.Error())
		}
		defer gr.release()
		body = zr
		if r.ContentLength > 0 {
			hint = min(4*r.ContentLength, maxBodyHint)
		}
	default:
		return buf[:0], esError(http.StatusUnsupportedMediaType, "illegal_argument_exception", "unsupported Content-Encoding")
	}
	// One byte beyond the hint: a body of the announced length then ends
	// without growing the buffer to see its end.
	b, err := readAllInto(buf[:0], io.LimitReader(body, limit+1), int(hint)+1)
	if err != nil {
		return b[:0], esError(http.StatusBadRequest, "parse_exception", "reading the request body: "+err.Error())
	}
	if int64(len(b)) > limit {
		return b[:0], tooLarge(limit)
	}
	return b, nil
}

// maxBodyHint bounds the buffer made for a body before its bytes arrive.
const maxBodyHint = 8 << 20

// readAllInto is io.ReadAll appending to b, whose capacity it first makes
// at least size.
func readAllInto(b []byte, r io.Reader, size int) ([]byte, error) {
	if cap(b) < size {
		b = make([]byte, 0, size)
	}
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)] // grow as append does
		}
	}
}

// gzipReader is a pooled gzip reader with its input buffer.
type gzipReader struct {
	br *bufio.Reader
	zr *gzip.Reader
}

var gzipReaders = sync.Pool{New: func() any { return &gzipReader{br: bufio.NewReaderSize(nil, 32<<10)} }}

// reset starts reading a gzip stream from r.
func (g *gzipReader) reset(r io.Reader) (*gzip.Reader, error) {
	g.br.Reset(r)
	var err error
	if g.zr == nil {
		g.zr, err = gzip.NewReader(g.br)
	} else {
		err = g.zr.Reset(g.br)
	}
	if err != nil {
		g.br.Reset(nil)
		return nil, err
	}
	return g.zr, nil
}

// release lets go of the request's body before the reader goes back to
// the pool.
func (g *gzipReader) release() {
	_ = g.zr.Close()
	g.br.Reset(nil)
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
