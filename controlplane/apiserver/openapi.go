package apiserver

import (
	"bytes"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	openapi_v2 "github.com/google/gnostic-models/openapiv2"
	openapi_v3 "github.com/google/gnostic-models/openapiv3"
	"google.golang.org/protobuf/proto"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Media types of the OpenAPI documents, as kube-apiserver serves them.
const (
	mimeOpenAPIV2Proto   = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
	mimeOpenAPIV3Proto   = "application/com.github.proto-openapi.spec.v3@v1.0+protobuf"
	mimeOpenAPIV2ProtoRT = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
	mimeOpenAPIV3ProtoRT = "application/com.github.proto-openapi.spec.v3.v1.0+protobuf"
)

// openAPICache holds the generated OpenAPI documents until the set of
// served resources changes. The v3 documents are generated together (the
// discovery root carries each one's hash); the v2 document and the
// protobuf forms are generated when first asked for.
type openAPICache struct {
	mu   sync.Mutex
	v3   map[string]*openAPIDoc
	root *openAPIDoc
	v2   *openAPIDoc
}

// openAPIDoc is one served document.
type openAPIDoc struct {
	json     []byte
	etag     string
	modified time.Time

	pbOnce sync.Once
	pb     []byte
	pbErr  error
}

func newOpenAPIDoc(data []byte) *openAPIDoc {
	return &openAPIDoc{json: data, etag: fmt.Sprintf("%X", sha512.Sum512(data)), modified: time.Now()}
}

// proto returns the gnostic protobuf encoding of the document.
func (d *openAPIDoc) proto(v oaVersion) ([]byte, error) {
	d.pbOnce.Do(func() {
		var msg proto.Message
		var err error
		if v == oaV2 {
			msg, err = openapi_v2.ParseDocument(d.json)
		} else {
			msg, err = openapi_v3.ParseDocument(d.json)
		}
		if err != nil {
			d.pbErr = fmt.Errorf("openapi v%d protobuf: %w", v, err)
			return
		}
		d.pb, d.pbErr = proto.Marshal(msg)
	})
	return d.pb, d.pbErr
}

func (c *openAPICache) invalidate() {
	c.mu.Lock()
	c.v3, c.root, c.v2 = nil, nil, nil
	c.mu.Unlock()
}

func (s *Server) openAPIVersion() string {
	if v := s.cfg.Version.GitVersion; v != "" {
		return v
	}
	return "unversioned"
}

// openAPIV3Docs returns the v3 documents by discovery path and the root,
// generating them when the registry changed.
func (s *Server) openAPIV3Docs() (map[string]*openAPIDoc, *openAPIDoc, error) {
	c := s.openapi
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.v3 != nil {
		return c.v3, c.root, nil
	}
	byGV, keys := resourcesByGV(s.reg.All())
	docs := make(map[string]*openAPIDoc, len(keys))
	type rootEntry struct {
		ServerRelativeURL string `json:"serverRelativeURL"`
	}
	root := map[string]rootEntry{}
	for _, k := range keys {
		b := newDocBuilder(oaV3, s.openAPIVersion())
		for _, r := range byGV[k] {
			if err := b.addResource(r); err != nil {
				return nil, nil, err
			}
		}
		data, err := b.marshal()
		if err != nil {
			return nil, nil, fmt.Errorf("openapi v3 %s: %w", k, err)
		}
		d := newOpenAPIDoc(data)
		docs[k] = d
		root[k] = rootEntry{ServerRelativeURL: v3URL(k, d.etag)}
	}
	rootJSON, err := json.Marshal(map[string]any{"paths": root})
	if err != nil {
		return nil, nil, fmt.Errorf("openapi v3 root: %w", err)
	}
	c.v3, c.root = docs, newOpenAPIDoc(rootJSON)
	return c.v3, c.root, nil
}

func v3URL(gvPath, etag string) string {
	return "/openapi/v3/" + gvPath + "?" + url.Values{"hash": {etag}}.Encode()
}

func (s *Server) openAPIV2Doc() (*openAPIDoc, error) {
	c := s.openapi
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.v2 != nil {
		return c.v2, nil
	}
	b := newDocBuilder(oaV2, s.openAPIVersion())
	for _, r := range s.reg.All() {
		if err := b.addResource(r); err != nil {
			return nil, err
		}
	}
	data, err := b.marshal()
	if err != nil {
		return nil, fmt.Errorf("openapi v2: %w", err)
	}
	c.v2 = newOpenAPIDoc(data)
	return c.v2, nil
}

// negotiateOpenAPI picks JSON or protobuf from the Accept header; ok is
// false when neither is acceptable.
func negotiateOpenAPI(accept string, protoTypes ...string) (useProto, ok bool) {
	if strings.TrimSpace(accept) == "" {
		return false, true
	}
	for _, clause := range strings.Split(accept, ",") {
		// Not mime.ParseMediaType: the protobuf types contain '@'.
		mt, _, _ := strings.Cut(clause, ";")
		mt = strings.ToLower(strings.TrimSpace(mt))
		switch {
		case mt == "application/json" || mt == "application/*" || mt == "*/*":
			return false, true
		case mt == "application/vnd.kubernetes.protobuf":
			return true, true
		}
		for _, p := range protoTypes {
			if mt == p {
				return true, true
			}
		}
	}
	return false, false
}

func notAcceptable(w http.ResponseWriter, accept string) {
	writeStatus(w, statusFor(apierrors.NewGenericServerResponse(http.StatusNotAcceptable, "", schemaGR(""), "",
		fmt.Sprintf("only the following media types are accepted: application/json, protobuf; got %q", accept), 0, false)))
}

func serveOpenAPIError(w http.ResponseWriter, err error) {
	writeStatus(w, statusFor(apierrors.NewInternalError(err)))
}

// serveOpenAPI writes d as JSON or protobuf with its ETag (http.ServeContent
// answers If-None-Match with 304).
func serveOpenAPI(w http.ResponseWriter, r *http.Request, d *openAPIDoc, v oaVersion) {
	protoType, protoRT := mimeOpenAPIV2Proto, mimeOpenAPIV2ProtoRT
	if v == oaV3 {
		protoType, protoRT = mimeOpenAPIV3Proto, mimeOpenAPIV3ProtoRT
	}
	useProto, ok := negotiateOpenAPI(r.Header.Get("Accept"), protoType, protoRT)
	w.Header().Add("Vary", "Accept")
	if !ok {
		notAcceptable(w, r.Header.Get("Accept"))
		return
	}
	data, ct := d.json, "application/json"
	if useProto {
		pb, err := d.proto(v)
		if err != nil {
			serveOpenAPIError(w, err)
			return
		}
		data, ct = pb, protoRT
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Etag", `"`+d.etag+`"`)
	http.ServeContent(w, r, "", d.modified, bytes.NewReader(data))
}

func (s *Server) openAPIV2(w http.ResponseWriter, r *http.Request) {
	d, err := s.openAPIV2Doc()
	if err != nil {
		serveOpenAPIError(w, err)
		return
	}
	serveOpenAPI(w, r, d, oaV2)
}

func (s *Server) openAPIV3Root(w http.ResponseWriter, r *http.Request) {
	_, root, err := s.openAPIV3Docs()
	if err != nil {
		serveOpenAPIError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Etag", `"`+root.etag+`"`)
	http.ServeContent(w, r, "", root.modified, bytes.NewReader(root.json))
}

func (s *Server) openAPIV3Doc(w http.ResponseWriter, r *http.Request) {
	gvPath := strings.Trim(chi.URLParam(r, "*"), "/")
	docs, _, err := s.openAPIV3Docs()
	if err != nil {
		serveOpenAPIError(w, err)
		return
	}
	d, found := docs[gvPath]
	if !found {
		writeStatus(w, statusFor(apierrors.NewGenericServerResponse(http.StatusNotFound, "", schemaGR(""), "", "the server could not find the requested resource", 0, false)))
		return
	}
	if hash := r.URL.Query().Get("hash"); hash != "" {
		if hash != d.etag {
			// A stale hash: send the client to the current document.
			http.Redirect(w, r, v3URL(gvPath, d.etag), http.StatusMovedPermanently)
			return
		}
		// Hash-addressed documents never change.
		w.Header().Set("Cache-Control", "public, immutable")
		w.Header().Set("Expires", time.Now().AddDate(1, 0, 0).UTC().Format(http.TimeFormat))
	}
	serveOpenAPI(w, r, d, oaV3)
}
