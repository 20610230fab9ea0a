package apiserver

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"testing"

	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

var fuzzPods = &registry.Resource{Group: "", Version: "v1", Kind: "Pod", Plural: "pods", Namespaced: true,
	New: func() runtime.Object { return &corev1.Pod{} }}

var fuzzCR = &registry.Resource{Group: "example.com", Version: "v1", Kind: "Widget", Plural: "widgets", Namespaced: true}

// FuzzDecodeObject feeds arbitrary bodies through request decoding for a
// typed and an unstructured kind: it must return an object or a 4xx
// error, never panic.
func FuzzDecodeObject(f *testing.F) {
	for _, s := range []string{
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{"containers":[{"name":"c","image":"i"}]}}`,
		`{"metadata":{"name":"a","labels":{"x":"y"}},"spec":{"unknown":1}}`,
		`{"apiVersion":"v2","kind":"Pod"}`, `[]`, `{`, `{"metadata":"x"}`, `null`, `{"a":1,"a":2}`,
		"apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n",
	} {
		f.Add([]byte(s), "application/json")
		f.Add([]byte(s), "application/yaml")
	}
	f.Fuzz(func(t *testing.T, body []byte, ct string) {
		for _, res := range []*registry.Resource{fuzzPods, fuzzCR} {
			for _, fv := range []fieldValidation{fieldStrict, fieldWarn, fieldIgnore} {
				r := httptest.NewRequest("POST", "/api/v1/namespaces/default/pods", bytes.NewReader(body))
				r.Header.Set("Content-Type", ct)
				obj, _, err := (&Server{}).decodeRequestObject(r, res, fv)
				if err != nil {
					st := statusFor(err)
					if st.Code < 400 || st.Code >= 500 {
						t.Fatalf("decode error with code %d: %v", st.Code, err)
					}
					continue
				}
				if obj == nil {
					t.Fatal("nil object without error")
				}
				if _, err := encode(res, obj); err != nil {
					t.Fatalf("decoded object does not encode: %v", err)
				}
			}
		}
	})
}

// FuzzPatch applies arbitrary patches of every type to a deployment: a
// patch either applies or fails with a 4xx, never panics or 500s.
func FuzzPatch(f *testing.F) {
	cur := []byte(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d","labels":{"a":"b"}},"spec":{"replicas":1,"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"x"},{"name":"d","image":"y"}]}}}}`)
	f.Add([]byte(`[{"op":"replace","path":"/spec/replicas","value":3}]`), 0)
	f.Add([]byte(`{"spec":{"template":{"spec":{"containers":[{"name":"c","image":"z"}]}}}}`), 1)
	f.Add([]byte(`{"spec":{"template":{"spec":{"containers":[{"$patch":"delete","name":"c"}]}}}}`), 2)
	f.Add([]byte(`{"metadata":{"$deleteFromPrimitiveList/finalizers":["x"]}}`), 2)
	f.Add([]byte("spec:\n  replicas: 2\n"), 3)
	f.Add([]byte(`[{"op":"move","from":"/spec","path":"/spec/x"}]`), 0)
	types := []string{jsonPatchType, mergePatchType, strategicPatchType, applyPatchType}
	f.Fuzz(func(t *testing.T, patch []byte, kind int) {
		if kind < 0 {
			kind = -kind
		}
		pt := types[kind%len(types)]
		out, err := applyPatch(pt, cur, patch, &appsv1.Deployment{})
		if err != nil {
			st := statusFor(err)
			if st.Code < 400 || st.Code >= 500 {
				t.Fatalf("patch error with code %d: %v", st.Code, err)
			}
			return
		}
		if !json.Valid(out) && pt != jsonPatchType {
			t.Fatalf("patch result is not JSON: %q", out)
		}
	})
}

// FuzzWithRV checks the resourceVersion splice on arbitrary JSON objects:
// valid JSON stays valid, and the version reads back.
func FuzzWithRV(f *testing.F) {
	f.Add([]byte(`{"kind":"Pod","metadata":{"name":"a"}}`))
	f.Add([]byte(`{"metadata":{}}`))
	f.Add([]byte(`{"data":{"metadata":{"x":1}},"metadata":{"name":"\"metadata\":{"}}`))
	f.Add([]byte(` { "metadata" : { } } `))
	f.Fuzz(func(t *testing.T, data []byte) {
		out := withRV(data, 42)
		var m map[string]interface{}
		if json.Unmarshal(data, &m) != nil {
			return
		}
		md, ok := m["metadata"].(map[string]interface{})
		if !ok {
			if !bytes.Equal(out, data) {
				t.Fatalf("changed an object without metadata object")
			}
			return
		}
		if _, had := md["resourceVersion"]; had {
			return
		}
		var back map[string]interface{}
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("invalid JSON after splice: %v\n%s", err, out)
		}
		if rv := back["metadata"].(map[string]interface{})["resourceVersion"]; rv != "42" {
			t.Fatalf("resourceVersion = %v", rv)
		}
	})
}

// FuzzRequestInfo parses arbitrary paths.
func FuzzRequestInfo(f *testing.F) {
	for _, p := range []string{"/api/v1/namespaces/a/pods/b/status", "/apis/apps/v1/watch/deployments", "/api", "//", "/apis/x", "/api/v1/namespaces/a/finalize"} {
		f.Add(p, "GET")
	}
	f.Fuzz(func(t *testing.T, path, method string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.URL.Path = path
		r.Method = method
		info := ParseRequestInfo(r)
		if info.IsResourceRequest && info.APIVersion == "" {
			t.Fatalf("resource request without version: %+v", info)
		}
	})
}

// FuzzDecodeProtobuf feeds arbitrary protobuf bodies through request
// decoding for a typed kind (and a custom resource, which has no protobuf
// form): it must return an object of the endpoint's kind or a 4xx error,
// never panic or 500.
func FuzzDecodeProtobuf(f *testing.F) {
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "a", Labels: map[string]string{"x": "y"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i"}}},
	}
	var buf bytes.Buffer
	if err := protoSerializer().Encode(pod, &buf); err != nil {
		f.Fatal(err)
	}
	valid := buf.Bytes()
	buf.Reset()
	if err := protoSerializer().Encode(&appsv1.Deployment{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"}}, &buf); err != nil {
		f.Fatal(err)
	}
	for _, s := range [][]byte{
		valid, valid[:len(valid)/2], buf.Bytes(), []byte("k8s\x00"), []byte("k8s\x00\xff\xff"),
		[]byte("k8s\x00\x0a\x06\x0a\x02v1\x12\x00"), []byte("k8s\x00\x12\x05\x0a\x03\x0a\x01\xff"), {}, []byte("{}"),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, res := range []*registry.Resource{fuzzPods, fuzzCR} {
			r := httptest.NewRequest("POST", "/api/v1/namespaces/default/pods", bytes.NewReader(body))
			r.Header.Set("Content-Type", protobufMediaType)
			obj, _, err := (&Server{}).decodeRequestObject(r, res, fieldStrict)
			if err != nil {
				st := statusFor(err)
				if st.Code < 400 || st.Code >= 500 {
					t.Fatalf("decode error with code %d: %v", st.Code, err)
				}
				continue
			}
			if res != fuzzPods {
				t.Fatalf("a %s decoded from protobuf", res.Kind)
			}
			if _, ok := obj.(*corev1.Pod); !ok {
				t.Fatalf("decoded %T, want a Pod", obj)
			}
			if _, err := encode(res, obj); err != nil {
				t.Fatalf("decoded object does not encode as JSON: %v", err)
			}
			if _, err := encodeProto(obj); err != nil {
				t.Fatalf("decoded object does not encode as protobuf: %v", err)
			}
		}
	})
}
