package apiserver

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	"github.com/skiffhq/skiff/controlplane/storage"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
)

// objectKey returns the etcd key of one object.
func objectKey(res *registry.Resource, ns, name string) string {
	if res.Namespaced {
		return res.StorageKeyPrefix + ns + "/" + name
	}
	return res.StorageKeyPrefix + name
}

// scopePrefix returns the key prefix for a list in ns ("" = all).
func scopePrefix(res *registry.Resource, ns string) string {
	if res.Namespaced && ns != "" {
		return res.StorageKeyPrefix + ns + "/"
	}
	return res.StorageKeyPrefix
}

// selectors are a request's label and field selectors.
type selectors struct {
	label labels.Selector
	field fields.Selector
}

func (s selectors) empty() bool { return s.label.Empty() && s.field.Empty() }

func (s selectors) matches(a storage.Attrs) bool {
	if !s.label.Empty() && !s.label.Matches(labels.Set(a.Labels)) {
		return false
	}
	if !s.field.Empty() && !s.field.Matches(fields.Set(a.Fields)) {
		return false
	}
	return true
}

func parseSelectors(r *http.Request, res *registry.Resource) (selectors, error) {
	q := r.URL.Query()
	ls, err := labels.Parse(q.Get("labelSelector"))
	if err != nil {
		return selectors{}, badRequest("unable to parse requirement: %v", err)
	}
	fs, err := fields.ParseSelector(q.Get("fieldSelector"))
	if err != nil {
		return selectors{}, badRequest("invalid field selector: %v", err)
	}
	for _, req := range fs.Requirements() {
		if req.Field == "metadata.name" || req.Field == "metadata.namespace" {
			continue
		}
		if _, ok := res.SelectableFields[req.Field]; !ok {
			return selectors{}, badRequest("field label not supported: %s", req.Field)
		}
	}
	return selectors{label: ls, field: fs}, nil
}

// handleGet serves GET of one object.
func (s *Server) handleGet(w http.ResponseWriter, r *http.Request, res *registry.Resource, ns, name string) {
	key := objectKey(res, ns, name)
	var value []byte
	var rev int64
	var src *storage.Object
	if r.URL.Query().Get("resourceVersion") == "0" {
		o, _, ok := s.cache.Get(key)
		if !ok {
			writeStatus(w, statusFor(apierrors.NewNotFound(res.GVR().GroupResource(), name)))
			return
		}
		value, rev, src = o.Value, o.ModRev, o
	} else {
		kv, err := s.store.Get(r.Context(), key)
		if err != nil {
			writeStatus(w, statusFor(storageErr(err, res.GVR().GroupResource(), name)))
			return
		}
		value, rev = kv.Value, kv.ModRev
	}
	s.respondStored(w, r, res, value, rev, src, http.StatusOK)
}

// respondStored writes one stored object in the format the client asked for.
func (s *Server) respondStored(w http.ResponseWriter, r *http.Request, res *registry.Resource, value []byte, rev int64, src *storage.Object, code int) {
	out := outputOf(r)
	switch out.rep {
	case asTable:
		obj, err := fromStorage(res, value, rev)
		if err != nil {
			writeStatus(w, statusFor(err))
			return
		}
		t, err := s.toTable(res, []storedItem{{obj: obj}}, r, "", nil)
		if err != nil {
			writeStatus(w, statusFor(err))
			return
		}
		writeObj(w, r, code, t)
	case asPartialMeta:
		pm, err := partialMeta(res, value, rev)
		if err != nil {
			writeStatus(w, statusFor(err))
			return
		}
		writeObj(w, r, code, pm)
	default:
		if out.proto {
			raw, err := objectProto(res, value, rev, src)
			if err != nil {
				writeStatus(w, statusFor(err))
				return
			}
			writeProtoBytes(w, code, envelope(res.GroupVersion(), res.Kind, raw))
			return
		}
		writeJSONBytes(w, r, code, served(res, value, rev))
	}
}

// continueToken is upstream's opaque continue format.
type continueToken struct {
	APIVersion string `json:"v"`
	RV         int64  `json:"rv"`
	Start      string `json:"start"`
}

func encodeContinue(prefix, nextKey string, rev int64) string {
	b, _ := json.Marshal(continueToken{APIVersion: "meta.k8s.io/v1", RV: rev, Start: strings.TrimPrefix(nextKey, prefix)})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeContinue(tok, prefix string) (string, int64, error) {
	data, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return "", 0, badRequest("continue key is not valid: %v", err)
	}
	var c continueToken
	if err := json.Unmarshal(data, &c); err != nil || c.APIVersion != "meta.k8s.io/v1" || c.RV <= 0 {
		return "", 0, badRequest("continue key is not valid")
	}
	if strings.Contains(c.Start, "..") || strings.HasPrefix(c.Start, "/") {
		return "", 0, badRequest("continue key is not valid: invalid start")
	}
	return prefix + c.Start, c.RV, nil
}

// storedItem is one object of a list response.
type storedItem struct {
	value []byte
	rev   int64
	obj   any // decoded lazily for tables
	// src is the watch cache's object, when the item came from it: it
	// keeps the item's protobuf encoding.
	src *storage.Object
}

// listResult is a list ready to be written.
type listResult struct {
	items     []storedItem
	rev       int64
	cont      string
	remaining *int64
}

// handleList serves LIST (and hands WATCH to handleWatch).
func (s *Server) handleList(w http.ResponseWriter, r *http.Request, res *registry.Resource, ns string) {
	sel, err := parseSelectors(r, res)
	if err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	lr, err := s.list(r.Context(), r, res, ns, sel)
	if err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	s.respondList(w, r, res, lr)
}

func (s *Server) list(ctx context.Context, r *http.Request, res *registry.Resource, ns string, sel selectors) (*listResult, error) {
	q := r.URL.Query()
	rv := q.Get("resourceVersion")
	match := q.Get("resourceVersionMatch")
	cont := q.Get("continue")
	var limit int64
	if l := q.Get("limit"); l != "" {
		n, err := strconv.ParseInt(l, 10, 64)
		if err != nil || n < 0 {
			return nil, badRequest("invalid limit %q", l)
		}
		limit = n
	}
	switch match {
	case "", "NotOlderThan", "Exact":
	default:
		return nil, badRequest("invalid resourceVersionMatch %q", match)
	}
	if match != "" && rv == "" {
		return nil, badRequest("resourceVersionMatch is forbidden unless resourceVersion is provided")
	}
	if cont != "" && rv != "" && rv != "0" {
		return nil, badRequest("specifying resource version is not allowed when using continue")
	}
	prefix := scopePrefix(res, ns)
	if cont != "" || (limit > 0 && rv == "") || match == "Exact" {
		var start string
		var atRev int64
		if cont != "" {
			k, rev, err := decodeContinue(cont, prefix)
			if err != nil {
				return nil, err
			}
			start, atRev = k, rev
		} else if match == "Exact" {
			n, err := strconv.ParseInt(rv, 10, 64)
			if err != nil {
				return nil, badRequest("invalid resourceVersion %q", rv)
			}
			atRev = n
		}
		return s.listFromEtcd(ctx, res, prefix, start, atRev, limit, sel)
	}
	if rv == "" {
		if _, err := s.cache.WaitFresh(ctx); err != nil {
			// The cache cannot prove it is current: read etcd instead.
			return s.listFromEtcd(ctx, res, prefix, "", 0, 0, sel)
		}
	} else if rv != "0" {
		n, err := strconv.ParseInt(rv, 10, 64)
		if err != nil {
			return nil, badRequest("invalid resourceVersion %q", rv)
		}
		if err := s.cache.WaitRev(ctx, n); err != nil {
			return nil, apierrors.NewTimeoutError(fmt.Sprintf("Too large resource version: %d, current: %d", n, s.cache.Rev()), 1)
		}
	}
	var pred func(*storage.Object) bool
	if !sel.empty() {
		pred = func(o *storage.Object) bool { return sel.matches(o.Attrs) }
	}
	objs, rev, err := s.cache.List(res.StorageKeyPrefix, prefix, pred)
	if err != nil {
		return nil, err
	}
	out := &listResult{rev: rev, items: make([]storedItem, len(objs))}
	for i, o := range objs {
		out.items[i] = storedItem{value: o.Value, rev: o.ModRev, src: o}
	}
	return out, nil
}

func (s *Server) listFromEtcd(ctx context.Context, res *registry.Resource, prefix, start string, rev, limit int64, sel selectors) (*listResult, error) {
	out := &listResult{}
	batch := limit
	if batch <= 0 || batch > 10000 {
		batch = 10000
	}
	if !sel.empty() && batch < 100 {
		batch = 100
	}
	for {
		page, err := s.store.List(ctx, prefix, start, rev, batch)
		if err != nil {
			if errors.Is(err, storage.ErrExpired) {
				return nil, apierrors.NewResourceExpired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.")
			}
			return nil, err
		}
		rev = page.Rev
		out.rev = rev
		for i, kv := range page.KVs {
			if !sel.empty() {
				a, err := s.attrsFor(res, kv.Key, kv.Value)
				if err != nil || !sel.matches(a) {
					if limit > 0 && int64(len(out.items)) == limit {
						break
					}
					continue
				}
			}
			out.items = append(out.items, storedItem{value: kv.Value, rev: kv.ModRev})
			if limit > 0 && int64(len(out.items)) == limit {
				more := page.More || i < len(page.KVs)-1
				if more {
					out.cont = encodeContinue(prefix, kv.Key+"\x00", rev)
					if sel.empty() {
						rem := page.Remaining + int64(len(page.KVs)-1-i)
						out.remaining = &rem
					}
				}
				return out, nil
			}
		}
		if !page.More || len(page.KVs) == 0 {
			return out, nil
		}
		start = page.KVs[len(page.KVs)-1].Key + "\x00"
	}
}

// respondList writes a list in the requested format.
func (s *Server) respondList(w http.ResponseWriter, r *http.Request, res *registry.Resource, lr *listResult) {
	switch negotiate(r) {
	case asTable:
		t, err := s.toTable(res, lr.items, r, lr.cont, lr.remaining)
		if err != nil {
			writeStatus(w, statusFor(err))
			return
		}
		t.ResourceVersion = strconv.FormatInt(lr.rev, 10)
		writeObj(w, r, http.StatusOK, t)
		return
	case asPartialMeta, asPartialMetaList:
		pl, err := partialMetaList(res, lr)
		if err != nil {
			writeStatus(w, statusFor(err))
			return
		}
		writeObj(w, r, http.StatusOK, pl)
		return
	}
	if outputOf(r).proto {
		b, err := encodeProtoList(res, lr)
		if err != nil {
			writeStatus(w, statusFor(err))
			return
		}
		writeProtoBytes(w, http.StatusOK, b)
		return
	}
	var buf bytes.Buffer
	size := 256
	for _, it := range lr.items {
		size += len(it.value) + 40
	}
	buf.Grow(size)
	buf.WriteString(`{"kind":`)
	writeJSONString(&buf, res.ListKind)
	buf.WriteString(`,"apiVersion":`)
	writeJSONString(&buf, res.GroupVersion())
	buf.WriteString(`,"metadata":{"resourceVersion":"`)
	buf.WriteString(strconv.FormatInt(lr.rev, 10))
	buf.WriteByte('"')
	if lr.cont != "" {
		buf.WriteString(`,"continue":`)
		writeJSONString(&buf, lr.cont)
	}
	if lr.remaining != nil {
		buf.WriteString(`,"remainingItemCount":`)
		buf.WriteString(strconv.FormatInt(*lr.remaining, 10))
	}
	buf.WriteString(`},"items":[`)
	for i, it := range lr.items {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(served(res, it.value, it.rev))
	}
	buf.WriteString("]}")
	writeJSONBytes(w, r, http.StatusOK, buf.Bytes())
}

func writeJSONString(buf *bytes.Buffer, s string) {
	b, _ := json.Marshal(s)
	buf.Write(b)
}
