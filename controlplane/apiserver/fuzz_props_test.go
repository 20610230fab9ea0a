package apiserver

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"reflect"
	"testing"

	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	"github.com/skiffhq/skiff/controlplane/storage"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
)

// Property fuzz targets beside the crash-only ones in fuzz_test.go.
// Seeds: testdata/fuzz/<FuzzName>/ (crashers found are kept there).

// FuzzDecodeRoundTrip: a body the API server accepts (JSON or YAML, typed
// or unstructured kind) encodes to bytes that decode again to the same
// encoding — what is stored reads back unchanged.
func FuzzDecodeRoundTrip(f *testing.F) {
	for _, s := range []string{
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","labels":{"x":"y"}},"spec":{"containers":[{"name":"c","image":"i","resources":{"limits":{"cpu":"100m"}}}]}}`,
		`{"metadata":{"name":"a","annotations":{"k":"v"}},"spec":{"n":1.5e300,"s":"\u0000"}}`,
		"apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\nspec:\n  containers:\n  - name: c\n    image: i\n    ports:\n    - containerPort: 80\n",
		"metadata: {name: a}\nspec: {x: [1, 2, {y: null}]}\n",
	} {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, body []byte, yamlBody bool) {
		ct := "application/json"
		if yamlBody {
			ct = "application/yaml"
		}
		for _, res := range []*registry.Resource{fuzzPods, fuzzCR} {
			r := httptest.NewRequest("POST", "/api/v1/namespaces/default/pods", bytes.NewReader(body))
			r.Header.Set("Content-Type", ct)
			obj, _, err := (&Server{}).decodeRequestObject(r, res, fieldIgnore)
			if err != nil {
				if st := statusFor(err); st.Code < 400 || st.Code >= 500 {
					t.Fatalf("decode error with code %d: %v", st.Code, err)
				}
				continue
			}
			enc1, err := encode(res, obj)
			if err != nil {
				t.Fatalf("decoded object does not encode: %v", err)
			}
			obj2, _, err := decodeObjectJSON(enc1, res, fieldStrict)
			if err != nil {
				t.Fatalf("encoded object does not decode again (strict): %v\n%s", err, enc1)
			}
			enc2, err := encode(res, obj2)
			if err != nil {
				t.Fatalf("re-decoded object does not encode: %v", err)
			}
			if !bytes.Equal(enc1, enc2) {
				t.Fatalf("round trip changed the object:\n%s\n%s", enc1, enc2)
			}
		}
	})
}

// FuzzPatchIdempotent: merge patches (RFC 7386) are idempotent — applying
// an accepted patch a second time changes nothing — and every accepted
// patch of every type yields a JSON object.
func FuzzPatchIdempotent(f *testing.F) {
	cur := []byte(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d","labels":{"a":"b"},"finalizers":["x","y"]},"spec":{"replicas":1,"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"x","env":[{"name":"A","value":"1"}]},{"name":"d","image":"y"}]}}}}`)
	f.Add([]byte(`{"spec":{"replicas":null,"template":{"spec":{"containers":[{"name":"c","image":"z"}]}}}}`), uint8(1))
	f.Add([]byte(`{"metadata":{"labels":{"a":null,"b":"c"}}}`), uint8(1))
	f.Add([]byte(`{"spec":{"template":{"spec":{"containers":[{"name":"c","env":[{"name":"B","value":"2"}]}]}}}}`), uint8(2))
	f.Add([]byte(`{"metadata":{"$setElementOrder/finalizers":["y","x"]}}`), uint8(2))
	f.Add([]byte(`[{"op":"add","path":"/metadata/labels/z","value":"1"},{"op":"test","path":"/spec/replicas","value":1}]`), uint8(0))
	f.Add([]byte("metadata:\n  annotations:\n    k: v\n"), uint8(3))
	types := []string{jsonPatchType, mergePatchType, strategicPatchType, applyPatchType}
	f.Fuzz(func(t *testing.T, patch []byte, kind uint8) {
		pt := types[int(kind)%len(types)]
		out, err := applyPatch(pt, cur, patch, &appsv1.Deployment{})
		if err != nil {
			if st := statusFor(err); st.Code < 400 || st.Code >= 500 {
				t.Fatalf("%s: error with code %d: %v", pt, st.Code, err)
			}
			return
		}
		var v any
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatalf("%s: result is not JSON: %v\n%s", pt, err, out)
		}
		if pt != mergePatchType {
			return
		}
		if _, ok := v.(map[string]any); !ok {
			t.Fatalf("merge patch turned the object into %T", v)
		}
		again, err := applyPatch(pt, out, patch, &appsv1.Deployment{})
		if err != nil {
			t.Fatalf("merge patch applied once but not twice: %v", err)
		}
		var w any
		if err := json.Unmarshal(again, &w); err != nil {
			t.Fatalf("second merge result is not JSON: %v", err)
		}
		if !reflect.DeepEqual(v, w) {
			t.Fatalf("merge patch is not idempotent:\nonce:  %s\ntwice: %s", out, again)
		}
	})
}

// FuzzSelectors parses labelSelector and fieldSelector query parameters
// as list and watch requests do: a bad selector is a 400, a good one
// matches without panicking and prints as a selector that parses back to
// the same selector.
func FuzzSelectors(f *testing.F) {
	pods := &registry.Resource{Group: "", Version: "v1", Kind: "Pod", Plural: "pods", Namespaced: true,
		New:              func() runtime.Object { return &corev1.Pod{} },
		SelectableFields: map[string]string{"spec.nodeName": "spec.nodeName", "status.phase": "status.phase"}}
	for _, s := range [][2]string{
		{"app=web,tier!=db", "metadata.name=a"},
		{"env in (prod, qa),!legacy", "spec.nodeName!=n1,status.phase=Running"},
		{"x notin (a,b),y", `metadata.name=a\,b`},
		{"a.b/c==d,e>1,f<2", `metadata.namespace==default`},
		{"", `spec.nodeName=\=`},
		{"!", "x"},
	} {
		f.Add(s[0], s[1])
	}
	attrs := storage.Attrs{Labels: map[string]string{"app": "web", "env": "prod", "e": "5"},
		Fields: map[string]string{"metadata.name": "a", "metadata.namespace": "default", "spec.nodeName": "n1", "status.phase": "Running"}}
	f.Fuzz(func(t *testing.T, ls, fs string) {
		q := url.Values{"labelSelector": {ls}, "fieldSelector": {fs}}
		r := httptest.NewRequest("GET", "/api/v1/pods?"+q.Encode(), nil)
		sel, err := parseSelectors(r, pods)
		if err != nil {
			if st := statusFor(err); st.Code != 400 {
				t.Fatalf("selector error with code %d: %v", st.Code, err)
			}
			return
		}
		m := sel.matches(attrs)
		l2, err := labels.Parse(sel.label.String())
		if err != nil {
			t.Fatalf("label selector %q prints as %q, which does not parse: %v", ls, sel.label.String(), err)
		}
		if l2.String() != sel.label.String() {
			t.Fatalf("label selector does not round-trip: %q -> %q -> %q", ls, sel.label.String(), l2.String())
		}
		f2, err := fields.ParseSelector(sel.field.String())
		if err != nil {
			t.Fatalf("field selector %q prints as %q, which does not parse: %v", fs, sel.field.String(), err)
		}
		if f2.String() != sel.field.String() {
			t.Fatalf("field selector does not round-trip: %q -> %q -> %q", fs, sel.field.String(), f2.String())
		}
		if (selectors{label: l2, field: f2}).matches(attrs) != m {
			t.Fatalf("reparsed selectors match differently: %q %q", ls, fs)
		}
	})
}
