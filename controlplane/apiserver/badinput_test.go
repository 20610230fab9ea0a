package apiserver_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/skiffhq/skiff/internal/testserver"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// rawClient sends hand-written HTTP requests with the admin credentials.
func rawClient(t *testing.T, s *testserver.Server) (*http.Client, string) {
	t.Helper()
	tr, err := rest.TransportFor(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Transport: tr}, s.Config.Host
}

func do(t *testing.T, c *http.Client, method, url, ct string, body []byte) (int, metav1.Status, []byte) {
	t.Helper()
	code, _, data := rawReq(t, c, method, url, "", ct, body)
	var st metav1.Status
	_ = json.Unmarshal(data, &st)
	return code, st, data
}

// TestBadInputAnswers4xxStatus sends malformed and hostile bodies: every
// one gets a 4xx Kubernetes Status with a clear message, and nothing is
// stored.
func TestBadInputAnswers4xxStatus(t *testing.T) {
	s := testserver.Start(t)
	c, host := rawClient(t, s)
	cms := host + "/api/v1/namespaces/default/configmaps"
	big := `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"big"},"data":{"x":"` + strings.Repeat("a", 3<<20) + `"}}`
	cases := []struct {
		name, method, url, ct, body string
		code                        int
		msg                         string
	}{
		{"malformed json", "POST", cms, "application/json", `{"metadata":`, 400, "invalid JSON"},
		{"not an object", "POST", cms, "application/json", `[1,2]`, 400, "must be a JSON or YAML object"},
		{"malformed yaml", "POST", cms, "application/yaml", "metadata: [\n  name", 400, "YAML"},
		{"garbage protobuf", "POST", cms, "application/vnd.kubernetes.protobuf", "k8s\x00\xff\xff", 400, "protobuf"},
		{"unknown media type", "POST", cms, "text/plain", `{}`, 415, "unknown format"},
		{"too large", "POST", cms, "application/json", big, 413, ""},
		{"wrong kind", "POST", cms, "application/json", `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}`, 400, "does not match the expected kind"},
		{"wrong apiVersion", "POST", cms, "application/json", `{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"x"}}`, 400, "does not match the expected API version"},
		{"invalid name", "POST", cms, "application/json", `{"metadata":{"name":"Bad_Name"}}`, 422, "metadata.name"},
		{"missing name", "POST", cms, "application/json", `{"metadata":{}}`, 422, "name or generateName is required"},
		{"namespace mismatch", "POST", cms, "application/json", `{"metadata":{"name":"x","namespace":"kube-system"}}`, 400, "does not match the namespace"},
		{"unknown resource", "GET", host + "/api/v1/namespaces/default/gizmos", "", "", 404, "could not find"},
		{"unknown group", "GET", host + "/apis/nope.example.com/v1/things", "", "", 404, "could not find"},
		{"strict unknown field", "POST", cms + "?fieldValidation=Strict", "application/json", `{"metadata":{"name":"x"},"bogus":1}`, 400, "bogus"},
		{"strict duplicate field", "POST", cms + "?fieldValidation=Strict", "application/json", `{"metadata":{"name":"x"},"data":{},"data":{}}`, 400, "duplicate"},
		{"bad fieldValidation", "POST", cms + "?fieldValidation=Loud", "application/json", `{"metadata":{"name":"x"}}`, 400, "fieldValidation"},
		{"bad dryRun", "POST", cms + "?dryRun=Some", "application/json", `{"metadata":{"name":"x"}}`, 400, "dryRun"},
		{"bad label selector", "GET", cms + "?labelSelector=a%20in%20(", "", "", 400, ""},
		{"bad limit", "GET", cms + "?limit=-3", "", "", 400, "limit"},
		{"bad watch rv", "GET", cms + "?watch=1&resourceVersion=abc", "", "", 400, "resourceVersion"},
		{"bad patch type", "PATCH", cms + "/x", "application/xml", `<x/>`, 415, ""},
		{"bad json patch", "PATCH", host + "/api/v1/namespaces/default/configmaps/exists", "application/json-patch+json", `{"op":"add"}`, 400, "JSON patch"},
		{"bad propagation", "DELETE", host + "/api/v1/namespaces/default/configmaps/exists?propagationPolicy=Sideways", "", "", 400, "propagationPolicy"},
		{"name mismatch on put", "PUT", host + "/api/v1/namespaces/default/configmaps/exists", "application/json", `{"metadata":{"name":"other"}}`, 400, "does not match the name on the URL"},
	}
	if code, st, _ := do(t, c, "POST", cms, "application/json", []byte(`{"metadata":{"name":"exists"}}`)); code != 201 {
		t.Fatalf("seed: %d %s", code, st.Message)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, st, raw := do(t, c, tc.method, tc.url, tc.ct, []byte(tc.body))
			if code != tc.code {
				t.Fatalf("code %d, want %d: %s", code, tc.code, raw)
			}
			if st.Kind != "Status" || st.APIVersion != "v1" || st.Status != metav1.StatusFailure || int(st.Code) != tc.code {
				t.Fatalf("not a failure Status: %s", raw)
			}
			if !strings.Contains(st.Message, tc.msg) {
				t.Fatalf("message %q does not mention %q", st.Message, tc.msg)
			}
		})
	}
	// Nothing but the seed was stored.
	code, _, raw := do(t, c, "GET", cms, "", nil)
	var list struct {
		Items []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		} `json:"items"`
	}
	if code != 200 || json.Unmarshal(raw, &list) != nil {
		t.Fatalf("list after bad input: %d %s", code, raw)
	}
	for _, it := range list.Items {
		// kube-root-ca.crt is published into every namespace by a controller.
		if it.Metadata.Name != "exists" && it.Metadata.Name != "kube-root-ca.crt" {
			t.Fatalf("bad input stored %q: %s", it.Metadata.Name, raw)
		}
	}
	// 422 carries field causes.
	_, st, _ := do(t, c, "POST", cms, "application/json", []byte(`{"metadata":{"name":"Bad_Name"}}`))
	if st.Details == nil || len(st.Details.Causes) == 0 || st.Details.Causes[0].Field != "metadata.name" {
		t.Fatalf("422 without causes: %+v", st.Details)
	}
}

func TestUnauthenticatedRequestsAreRejected(t *testing.T) {
	s := testserver.Start(t)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: mustTLS(t, s)}}
	for _, path := range []string{"/api/v1/namespaces", "/apis", "/api", "/openapi/v2", "/metrics"} {
		code, st, raw := do(t, c, "GET", s.Config.Host+path, "", nil)
		if code != 401 || st.Reason != metav1.StatusReasonUnauthorized {
			t.Errorf("%s without credentials: %d %s", path, code, raw)
		}
	}
	for _, path := range []string{"/healthz", "/livez", "/readyz", "/version"} {
		if code, _, raw := do(t, c, "GET", s.Config.Host+path, "", nil); code != 200 {
			t.Errorf("%s: %d %s", path, code, raw)
		}
	}
}
