package apiserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// MaxBodyBytes is the largest request body accepted, as kube-apiserver's 3 MiB.
const MaxBodyBytes = 3 << 20

// readBody reads a request body up to MaxBodyBytes, answering 413 past it.
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, badRequest("request body is required")
	}
	if r.ContentLength > MaxBodyBytes {
		return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("limit is %d bytes", MaxBodyBytes))
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return nil, badRequest("reading request body: %v", err)
	}
	if len(data) > MaxBodyBytes {
		return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("limit is %d bytes", MaxBodyBytes))
	}
	return data, nil
}

// mediaType returns the request's Content-Type without parameters.
func mediaType(r *http.Request) string {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return "application/json"
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return ct
	}
	return mt
}

// toJSON converts a JSON or YAML body to JSON.
func toJSON(r *http.Request, data []byte) ([]byte, error) {
	switch mt := mediaType(r); mt {
	case "application/json", "*/*", "application/merge-patch+json", "application/json-patch+json",
		"application/strategic-merge-patch+json":
		return data, nil
	case "application/vnd.kubernetes.protobuf":
		return protobufToJSON(data)
	case "application/yaml", "application/apply-patch+yaml":
		j, err := yaml.YAMLToJSON(data)
		if err != nil {
			return nil, badRequest("invalid YAML: %v", err)
		}
		return j, nil
	default:
		return nil, apierrors.NewGenericServerResponse(http.StatusUnsupportedMediaType, "", schemaGR(""), "",
			fmt.Sprintf("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got %q)", mt), 0, false)
	}
}

// protoScheme knows every built-in kind that clients may send as protobuf.
// It is built on first use, not at package init: every process of the one
// binary initialises this package, and the scheme (~0.5 MB of heap) is
// the API server's alone (a node agent never uses it).
var protoScheme = sync.OnceValue(func() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	return s
})

var protoSerializer = sync.OnceValue(func() *protobuf.Serializer {
	return protobuf.NewSerializer(protoScheme(), protoScheme())
})

// protobufToJSON converts a Kubernetes protobuf body (the "k8s\x00"
// envelope kubectl and client-go send for built-in types) to JSON.
func protobufToJSON(data []byte) ([]byte, error) {
	obj, gvk, err := protoSerializer().Decode(data, nil, nil)
	if err != nil {
		return nil, badRequest("invalid protobuf body: %v", err)
	}
	if gvk != nil {
		obj.GetObjectKind().SetGroupVersionKind(*gvk)
	}
	out, err := json.Marshal(obj)
	if err != nil {
		return nil, badRequest("invalid protobuf body: %v", err)
	}
	return out, nil
}

// decodeOptions come from the fieldValidation query parameter.
type fieldValidation string

const (
	fieldIgnore fieldValidation = "Ignore"
	fieldWarn   fieldValidation = "Warn"
	fieldStrict fieldValidation = "Strict"
)

func fieldValidationFrom(r *http.Request) (fieldValidation, error) {
	switch v := r.URL.Query().Get("fieldValidation"); v {
	case "", "Warn":
		return fieldWarn, nil
	case "Ignore":
		return fieldIgnore, nil
	case "Strict":
		return fieldStrict, nil
	default:
		return "", badRequest("fieldValidation parameter unsupported: %q", v)
	}
}

// decodeInto decodes JSON into obj (typed or unstructured), honouring the
// field validation directive. It returns warnings for unknown fields in Warn
// mode.
func decodeInto(data []byte, obj runtime.Object, fv fieldValidation) ([]string, error) {
	if !looksLikeObject(data) {
		return nil, badRequest("the body of the request must be a JSON or YAML object")
	}
	if u, ok := obj.(*unstructured.Unstructured); ok {
		var m map[string]interface{}
		strictErrs, err := kjson.UnmarshalStrict(data, &m, kjson.DisallowDuplicateFields)
		if err != nil {
			return nil, badRequest("invalid JSON: %v", cleanJSONErr(err))
		}
		if len(strictErrs) > 0 && fv == fieldStrict {
			return nil, badRequest("strict decoding error: %s", joinErrs(strictErrs))
		}
		u.Object = m
		var warns []string
		if fv == fieldWarn {
			for _, e := range strictErrs {
				warns = append(warns, e.Error())
			}
		}
		return warns, nil
	}
	strictErrs, err := kjson.UnmarshalStrict(data, obj)
	if err != nil {
		return nil, badRequest("invalid JSON: %v", cleanJSONErr(err))
	}
	if len(strictErrs) > 0 {
		if fv == fieldStrict {
			return nil, badRequest("strict decoding error: %s", joinErrs(strictErrs))
		}
		if fv == fieldWarn {
			var warns []string
			for _, e := range strictErrs {
				warns = append(warns, e.Error())
			}
			return warns, nil
		}
	}
	return nil, nil
}

func looksLikeObject(data []byte) bool {
	t := bytes.TrimSpace(data)
	return len(t) > 0 && t[0] == '{'
}

func cleanJSONErr(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s at offset %d", se.Error(), se.Offset)
	}
	return err.Error()
}

func joinErrs(errs []error) string {
	s := make([]string, len(errs))
	for i, e := range errs {
		s[i] = e.Error()
	}
	return strings.Join(s, ", ")
}

// typeMetaOf reads apiVersion and kind from JSON without decoding the rest.
func typeMetaOf(data []byte) (metav1.TypeMeta, error) {
	var tm metav1.TypeMeta
	if err := json.Unmarshal(data, &tm); err != nil {
		return tm, badRequest("invalid JSON: %v", cleanJSONErr(err))
	}
	return tm, nil
}

// newObject returns an empty object of res's kind with its type set.
func newObject(res *registry.Resource) runtime.Object {
	if res.New == nil {
		u := &unstructured.Unstructured{Object: map[string]interface{}{}}
		u.SetGroupVersionKind(res.GVK())
		return u
	}
	obj := res.New()
	obj.GetObjectKind().SetGroupVersionKind(res.GVK())
	return obj
}

// encode marshals an object with its apiVersion and kind.
func encode(res *registry.Resource, obj runtime.Object) ([]byte, error) {
	obj.GetObjectKind().SetGroupVersionKind(res.GVK())
	return json.Marshal(obj)
}

// toStorage marshals an object without its resourceVersion (which etcd's
// revision supplies on every read).
func toStorage(res *registry.Resource, obj runtime.Object) ([]byte, error) {
	acc, err := meta.Accessor(obj)
	if err != nil {
		return nil, err
	}
	rv := acc.GetResourceVersion()
	acc.SetResourceVersion("")
	defer acc.SetResourceVersion(rv)
	data, err := encode(res, obj)
	if err == nil && res.Hooks.ToStorage != nil {
		data = res.Hooks.ToStorage(data)
	}
	return data, err
}

// fromStorage decodes a stored value and sets its resourceVersion.
func fromStorage(res *registry.Resource, value []byte, rev int64) (runtime.Object, error) {
	if conv := res.Hooks.FromStorage; conv != nil {
		value = conv(value)
	}
	obj := newObject(res)
	if u, ok := obj.(*unstructured.Unstructured); ok {
		var m map[string]interface{}
		if err := kjson.UnmarshalCaseSensitivePreserveInts(value, &m); err != nil {
			return nil, fmt.Errorf("decode stored %s: %w", res.Kind, err)
		}
		u.Object = m
	} else if err := json.Unmarshal(value, obj); err != nil {
		return nil, fmt.Errorf("decode stored %s: %w", res.Kind, err)
	}
	obj.GetObjectKind().SetGroupVersionKind(res.GVK())
	acc, err := meta.Accessor(obj)
	if err != nil {
		return nil, err
	}
	acc.SetResourceVersion(strconv.FormatInt(rev, 10))
	return obj, nil
}

// served returns stored JSON as res's version serves it (see
// registry.Hooks.FromStorage), with its resourceVersion set to rev.
func served(res *registry.Resource, value []byte, rev int64) []byte {
	if conv := res.Hooks.FromStorage; conv != nil {
		value = conv(value)
	}
	return withRV(value, rev)
}

// withRV returns stored JSON with metadata.resourceVersion set to rev,
// without decoding the object: it finds the top-level "metadata" object and
// inserts the field first.
func withRV(value []byte, rev int64) []byte {
	i := topLevelValue(value, "metadata")
	rvField := `"resourceVersion":"` + strconv.FormatInt(rev, 10) + `"`
	if i < 0 || value[i] != '{' {
		return value
	}
	out := make([]byte, 0, len(value)+len(rvField)+1)
	out = append(out, value[:i+1]...)
	out = append(out, rvField...)
	j := i + 1
	for j < len(value) && isSpace(value[j]) {
		j++
	}
	if j < len(value) && value[j] != '}' {
		out = append(out, ',')
	}
	out = append(out, value[i+1:]...)
	return out
}

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\t' || c == '\r' }

// topLevelValue returns the offset of the value of key in the top-level JSON
// object data, or -1.
func topLevelValue(data []byte, key string) int {
	i := 0
	n := len(data)
	skipWS := func() {
		for i < n && isSpace(data[i]) {
			i++
		}
	}
	skipWS()
	if i >= n || data[i] != '{' {
		return -1
	}
	i++
	for i < n {
		skipWS()
		if i < n && data[i] == '}' {
			return -1
		}
		if i >= n || data[i] != '"' {
			return -1
		}
		ks := i + 1
		i = skipString(data, i)
		if i < 0 {
			return -1
		}
		k := data[ks : i-1]
		skipWS()
		if i >= n || data[i] != ':' {
			return -1
		}
		i++
		skipWS()
		if string(k) == key {
			return i
		}
		i = skipValue(data, i)
		if i < 0 {
			return -1
		}
		skipWS()
		if i < n && data[i] == ',' {
			i++
		}
	}
	return -1
}

// skipString returns the offset just past the string starting at data[i].
func skipString(data []byte, i int) int {
	i++
	for i < len(data) {
		switch data[i] {
		case '\\':
			i += 2
			continue
		case '"':
			return i + 1
		}
		i++
	}
	return -1
}

// skipValue returns the offset just past the JSON value starting at data[i].
func skipValue(data []byte, i int) int {
	if i >= len(data) {
		return -1
	}
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for i < len(data) {
			switch data[i] {
			case '"':
				i = skipString(data, i)
				if i < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	default:
		for i < len(data) && data[i] != ',' && data[i] != '}' && data[i] != ']' && !isSpace(data[i]) {
			i++
		}
		return i
	}
}

// writeJSONBytes writes an object given as JSON in the negotiated format:
// protobuf when negotiated and the kind has one, else JSON (or YAML when
// asked).
func writeJSONBytes(w http.ResponseWriter, r *http.Request, code int, data []byte) {
	if outputOf(r).proto {
		if b, err := jsonToProto(data); err == nil {
			writeProtoBytes(w, code, b)
			return
		}
	}
	if wantsYAML(r) {
		if y, err := yaml.JSONToYAML(data); err == nil {
			w.Header().Set("Content-Type", "application/yaml")
			w.WriteHeader(code)
			_, _ = w.Write(y)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(data)
}

func wantsYAML(r *http.Request) bool {
	acc := r.Header.Get("Accept")
	return strings.HasPrefix(acc, "application/yaml")
}

// writeObj writes an object in the negotiated format (see writeJSONBytes).
func writeObj(w http.ResponseWriter, r *http.Request, code int, obj any) {
	if ro, ok := obj.(runtime.Object); ok && outputOf(r).proto {
		if b, err := encodeProto(ro); err == nil {
			writeProtoBytes(w, code, b)
			return
		}
	}
	data, err := json.Marshal(obj)
	if err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	writeJSONBytes(w, r, code, data)
}
