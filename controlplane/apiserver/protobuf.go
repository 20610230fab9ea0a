package apiserver

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	"github.com/skiffhq/skiff/controlplane/storage"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Content negotiation as kube-apiserver's: built-in kinds are served as
// JSON, YAML or Kubernetes protobuf ("k8s\x00" + runtime.Unknown) as the
// Accept header asks; custom resources have no protobuf form and fall back
// to the next acceptable type (JSON for client-go's
// "application/vnd.kubernetes.protobuf, application/json"). Tables are
// JSON or YAML only; PartialObjectMetadata(List) may be protobuf for any
// resource, as upstream.

// protobufMediaType is the Kubernetes protobuf content type.
const protobufMediaType = "application/vnd.kubernetes.protobuf"

// output is the negotiated encoding of a resource request's responses.
type output struct {
	rep   negotiated
	proto bool
	// ok is false when no acceptable representation exists (406).
	ok bool
}

type outputKey struct{}

// withOutput records the negotiated output in the request's context.
func withOutput(ctx context.Context, o output) context.Context {
	return context.WithValue(ctx, outputKey{}, o)
}

// outputOf returns the output negotiated for r (by serveAPI), or
// negotiates it as for a resource without protobuf.
func outputOf(r *http.Request) output {
	if o, ok := r.Context().Value(outputKey{}).(output); ok {
		return o
	}
	return negotiateOutput(r.Header.Get("Accept"), false)
}

type acceptClause struct {
	mt     string
	params map[string]string
	q      float64
}

// negotiateOutput picks the first acceptable clause of an Accept header
// (ordered by quality, as upstream's goautoneg). builtIn says the
// resource's objects have a protobuf form.
func negotiateOutput(accept string, builtIn bool) output {
	if strings.TrimSpace(accept) == "" {
		return output{rep: asJSON, ok: true}
	}
	var clauses []acceptClause
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if v, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f
			}
		}
		if q <= 0 {
			continue
		}
		clauses = append(clauses, acceptClause{mt: mt, params: params, q: q})
	}
	sort.SliceStable(clauses, func(i, j int) bool {
		if clauses[i].q != clauses[j].q {
			return clauses[i].q > clauses[j].q
		}
		return wildness(clauses[i].mt) < wildness(clauses[j].mt)
	})
	for _, c := range clauses {
		var proto bool
		switch c.mt {
		case "application/json", "application/yaml", "*/*", "application/*":
		case protobufMediaType:
			proto = true
		default:
			continue
		}
		as := c.params["as"]
		if as == "" {
			if proto && !builtIn {
				continue
			}
			return output{rep: asJSON, proto: proto, ok: true}
		}
		if c.params["g"] != "meta.k8s.io" {
			continue
		}
		switch as {
		case "Table":
			if proto {
				continue
			}
			return output{rep: asTable, ok: true}
		case "PartialObjectMetadata":
			return output{rep: asPartialMeta, proto: proto, ok: true}
		case "PartialObjectMetadataList":
			return output{rep: asPartialMetaList, proto: proto, ok: true}
		}
	}
	if !strings.Contains(accept, protobufMediaType) {
		// Skiff's answer before protobuf: JSON whatever was asked.
		return output{rep: asJSON, ok: true}
	}
	return output{}
}

func wildness(mt string) int {
	switch {
	case mt == "*/*":
		return 2
	case strings.HasSuffix(mt, "/*"):
		return 1
	}
	return 0
}

// protoMessage is a gogo-generated protobuf message (every built-in kind).
type protoMessage interface {
	Size() int
	MarshalToSizedBuffer([]byte) (int, error)
}

// hasProtobuf says res's objects have a protobuf form clients may send
// and receive.
func hasProtobuf(res *registry.Resource) bool {
	if res.New == nil {
		return false
	}
	if _, ok := res.New().(protoMessage); !ok {
		return false
	}
	return protoScheme().Recognizes(res.GVK())
}

// protoResponse marks a response writer whose errors (Status) are encoded
// as protobuf because the client negotiated protobuf.
type protoResponse struct{ http.ResponseWriter }

// Flush flushes the underlying writer (watch streams).
func (p *protoResponse) Flush() {
	if f, ok := p.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap returns the underlying writer for http.ResponseController.
func (p *protoResponse) Unwrap() http.ResponseWriter { return p.ResponseWriter }

// encodeProto encodes a typed object in the Kubernetes protobuf envelope.
func encodeProto(obj runtime.Object) ([]byte, error) {
	if obj.GetObjectKind().GroupVersionKind().Kind == "" {
		kinds, _, err := protoScheme().ObjectKinds(obj)
		if err != nil || len(kinds) == 0 {
			return nil, fmt.Errorf("no kind for %T: %w", obj, err)
		}
		obj.GetObjectKind().SetGroupVersionKind(kinds[0])
	}
	var buf bytes.Buffer
	if err := protoSerializer().Encode(obj, &buf); err != nil {
		return nil, fmt.Errorf("encode %T as protobuf: %w", obj, err)
	}
	return buf.Bytes(), nil
}

// envelope wraps a raw protobuf message in the Kubernetes envelope.
func envelope(apiVersion, kind string, raw []byte) []byte {
	u := runtime.Unknown{TypeMeta: runtime.TypeMeta{APIVersion: apiVersion, Kind: kind}, Raw: raw}
	out := make([]byte, 4+u.Size())
	copy(out, "k8s\x00")
	n, _ := u.MarshalToSizedBuffer(out[4:])
	// MarshalToSizedBuffer fills from the end.
	return append(out[:4], out[len(out)-n:]...)
}

// jsonToProto converts a JSON object of a kind the scheme knows to the
// protobuf envelope.
func jsonToProto(data []byte) ([]byte, error) {
	tm, err := typeMetaOf(data)
	if err != nil {
		return nil, err
	}
	gvk := schema.FromAPIVersionAndKind(tm.APIVersion, tm.Kind)
	obj, err := protoScheme().New(gvk)
	if err != nil {
		return nil, fmt.Errorf("no protobuf form for %s: %w", gvk, err)
	}
	if err := json.Unmarshal(data, obj); err != nil {
		return nil, fmt.Errorf("decode %s: %w", gvk, err)
	}
	obj.GetObjectKind().SetGroupVersionKind(gvk)
	return encodeProto(obj)
}

func writeProtoBytes(w http.ResponseWriter, code int, data []byte) {
	w.Header().Set("Content-Type", protobufMediaType)
	w.WriteHeader(code)
	_, _ = w.Write(data)
}

// objectProto returns the raw protobuf message (no envelope) of a stored
// object at rev. src, when set, is the watch cache's copy of the same
// revision, which keeps the encoding for the next reader.
func objectProto(res *registry.Resource, value []byte, rev int64, src *storage.Object) ([]byte, error) {
	enc := func(*storage.Object) ([]byte, error) {
		obj, err := fromStorage(res, value, rev)
		if err != nil {
			return nil, err
		}
		m, ok := obj.(protoMessage)
		if !ok {
			return nil, fmt.Errorf("%s has no protobuf form", res.Kind)
		}
		out := make([]byte, m.Size())
		n, err := m.MarshalToSizedBuffer(out)
		if err != nil {
			return nil, fmt.Errorf("encode %s as protobuf: %w", res.Kind, err)
		}
		return out[len(out)-n:], nil
	}
	// Versions sharing a bucket render objects differently: only the
	// stored version's encoding is kept.
	if src != nil && src.ModRev == rev && res.Hooks.FromStorage == nil {
		return src.AltEncoded(enc)
	}
	return enc(nil)
}

// listLayouts caches, per list type, whether its protobuf message is
// {metadata = 1; items = 2}, which encodeProtoList writes directly.
var listLayouts sync.Map // reflect.Type -> bool

func plainListLayout(obj runtime.Object) bool {
	t := reflect.TypeOf(obj)
	if v, ok := listLayouts.Load(t); ok {
		return v.(bool)
	}
	ok := false
	if st := t.Elem(); st.Kind() == reflect.Struct {
		md, mok := st.FieldByName("ListMeta")
		items, iok := st.FieldByName("Items")
		ok = mok && iok && strings.HasPrefix(md.Tag.Get("protobuf"), "bytes,1,opt,name=metadata") &&
			strings.HasPrefix(items.Tag.Get("protobuf"), "bytes,2,rep,name=items") &&
			items.Type.Kind() == reflect.Slice && items.Type.Elem().Kind() == reflect.Struct
	}
	listLayouts.Store(t, ok)
	return ok
}

// encodeProtoList writes a list of stored objects as the kind's protobuf
// List message, from each item's (memoised) encoding.
func encodeProtoList(res *registry.Resource, lr *listResult) ([]byte, error) {
	gvk := res.GVK().GroupVersion().WithKind(res.ListKind)
	listObj, err := protoScheme().New(gvk)
	if err != nil {
		return nil, fmt.Errorf("no protobuf list for %s: %w", gvk, err)
	}
	lm := metav1.ListMeta{ResourceVersion: strconv.FormatInt(lr.rev, 10), Continue: lr.cont, RemainingItemCount: lr.remaining}
	if !plainListLayout(listObj) {
		items := make([]runtime.Object, 0, len(lr.items))
		for _, it := range lr.items {
			obj, err := fromStorage(res, it.value, it.rev)
			if err != nil {
				return nil, err
			}
			items = append(items, obj)
		}
		if err := meta.SetList(listObj, items); err != nil {
			return nil, err
		}
		la, err := meta.ListAccessor(listObj)
		if err != nil {
			return nil, err
		}
		la.SetResourceVersion(lm.ResourceVersion)
		la.SetContinue(lm.Continue)
		la.SetRemainingItemCount(lm.RemainingItemCount)
		listObj.GetObjectKind().SetGroupVersionKind(gvk)
		return encodeProto(listObj)
	}
	md, err := lm.Marshal()
	if err != nil {
		return nil, err
	}
	size := 1 + uvarintLen(uint64(len(md))) + len(md)
	raws := make([][]byte, len(lr.items))
	for i, it := range lr.items {
		b, err := objectProto(res, it.value, it.rev, it.src)
		if err != nil {
			return nil, err
		}
		raws[i] = b
		size += 1 + uvarintLen(uint64(len(b))) + len(b)
	}
	msg := make([]byte, 0, size)
	msg = appendField(msg, 1, md)
	for _, b := range raws {
		msg = appendField(msg, 2, b)
	}
	return envelope(res.GroupVersion(), res.ListKind, msg), nil
}

func appendField(b []byte, field int, data []byte) []byte {
	b = append(b, byte(field<<3|2))
	b = binary.AppendUvarint(b, uint64(len(data)))
	return append(b, data...)
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// protoFrame is one frame of a protobuf watch stream: a big-endian
// length and a raw (unenveloped) metav1.WatchEvent whose object is an
// enveloped object.
func protoFrame(typ string, embedded []byte) []byte {
	ev := metav1.WatchEvent{Type: typ, Object: runtime.RawExtension{Raw: embedded}}
	n := ev.Size()
	out := make([]byte, 4+n)
	binary.BigEndian.PutUint32(out, uint32(n))
	m, _ := ev.MarshalToSizedBuffer(out[4:])
	if m != n {
		return nil
	}
	return out
}

// protoEvent renders a watch event as a protobuf frame.
func protoEvent(res *registry.Resource, e *storage.Event) ([]byte, error) {
	if e.Type == storage.Bookmark {
		obj := newObject(res)
		acc, err := meta.Accessor(obj)
		if err != nil {
			return nil, err
		}
		acc.SetResourceVersion(strconv.FormatInt(e.Rev, 10))
		if e.InitialEventsEnd {
			acc.SetAnnotations(map[string]string{metav1.InitialEventsAnnotationKey: "true"})
		}
		b, err := encodeProto(obj)
		if err != nil {
			return nil, err
		}
		return protoFrame(string(e.Type), b), nil
	}
	raw, err := objectProto(res, e.Object.Value, e.Rev, e.Object)
	if err != nil {
		return nil, err
	}
	return protoFrame(string(e.Type), envelope(res.GroupVersion(), res.Kind, raw)), nil
}

// protoStatusFrame renders an ERROR watch event carrying st.
func protoStatusFrame(st *metav1.Status) []byte {
	st.Kind, st.APIVersion = "Status", "v1"
	b, err := encodeProto(st)
	if err != nil {
		return nil
	}
	return protoFrame("ERROR", b)
}

// decodeProtoObject decodes a protobuf request body for res. Malformed
// bodies are 400s (never a panic).
func decodeProtoObject(data []byte, res *registry.Resource) (obj runtime.Object, err error) {
	defer func() {
		if v := recover(); v != nil {
			obj, err = nil, badRequest("invalid protobuf body: %v", v)
		}
	}()
	into := newObject(res)
	out, gvk, err := protoSerializer().Decode(data, nil, into)
	if err != nil {
		return nil, badRequest("invalid protobuf body: %v", err)
	}
	if gvk == nil {
		return nil, badRequest("invalid protobuf body: no kind")
	}
	gv := res.GroupVersion()
	if gvk.GroupVersion().String() != gv {
		return nil, badRequest("the API version in the data (%s) does not match the expected API version (%s)", gvk.GroupVersion().String(), gv)
	}
	if gvk.Kind != res.Kind {
		return nil, badRequest("the kind in the data (%s) does not match the expected kind (%s)", gvk.Kind, res.Kind)
	}
	if out != into {
		return nil, badRequest("invalid protobuf body: decoded %T, want %T", out, into)
	}
	into.GetObjectKind().SetGroupVersionKind(res.GVK())
	return into, nil
}

func notAcceptableMedia(builtIn bool) error {
	types := "application/json, application/yaml"
	if builtIn {
		types += ", " + protobufMediaType
	}
	return apierrors.NewGenericServerResponse(http.StatusNotAcceptable, "", schemaGR(""), "",
		"only the following media types are accepted: "+types, 0, false)
}
