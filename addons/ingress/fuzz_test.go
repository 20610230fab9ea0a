package ingress

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// fuzzAnnotations are the annotation names the add-on reads.
var fuzzAnnotations = []string{"rewrite-target", "proxy-body-size", "auth-type", "enable-cors", "cors-allow-origin",
	"cors-allow-methods", "cors-allow-headers", "cors-expose-headers", "cors-max-age", "cors-allow-credentials",
	"canary", "canary-by-header", "canary-by-header-value", "canary-weight", "canary-weight-total",
	"limit-rps", "limit-burst-multiplier", "force-ssl-redirect", "ssl-redirect", "use-regex"}

// FuzzIngressRequest builds a route table from a fuzzed Ingress (host,
// path, path type, one annotation) next to a fixed catch-all Ingress and
// sends a fuzzed request through the real proxy to loopback backends.
// The table must build, routing must obey the spec's path semantics
// (an Exact rule only matches its path, a Prefix rule only element-wise
// prefixes), and the proxy must answer with a valid status without
// panicking.
func FuzzIngressRequest(f *testing.F) {
	f.Add("/foo", uint8(1), "foo.example.com", uint8(0), "/bar", "foo.example.com:80", "/foo/x")
	f.Add("/foo/", uint8(1), "*.example.com", uint8(1), "1k", "a.example.com", "/foo")
	f.Add("/exact", uint8(0), "", uint8(3), "true", "x", "/exact")
	f.Add("/api/(.*)", uint8(2), "", uint8(19), "true", "h", "/api/v1")
	f.Add("/", uint8(1), "[::1]", uint8(15), "0", "[::1]:8080", "/")
	f.Add("/a", uint8(1), "h.test", uint8(12), "X-Canary", "H.TEST.", "/a/b")
	f.Add("/a", uint8(1), "h.test", uint8(17), "true", "h.test", "/a")
	f.Add("/(a|b)/(.*)", uint8(2), "", uint8(0), "/$2/$1/$9", "x", "/b/c/d")

	backend := func(name string) (*httptest.Server, int32) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Backend", name)
			_, _ = io.WriteString(w, name)
		}))
		_, p, _ := net.SplitHostPort(srv.Listener.Addr().String())
		port, _ := strconv.Atoi(p)
		return srv, int32(port)
	}
	fzSrv, fzPort := backend("fz")
	defer fzSrv.Close()
	fbSrv, fbPort := backend("fallback")
	defer fbSrv.Close()

	types3 := []networkingv1.PathType{networkingv1.PathTypeExact, networkingv1.PathTypePrefix, networkingv1.PathTypeImplementationSpecific}
	m := newMetrics(prometheus.NewRegistry())
	f.Fuzz(func(t *testing.T, rulePath string, pt uint8, host string, ann uint8, annValue, reqHost, reqPath string) {
		pathType := types3[int(pt)%len(types3)]
		fz := ing("fz", 1, host, p(pathType, rulePath, "fz-svc"))
		fz.Annotations = map[string]string{prefixNginx + fuzzAnnotations[int(ann)%len(fuzzAnnotations)]: annValue}
		fb := ing("fallback", 2, "", p(networkingv1.PathTypePrefix, "/", "fb-svc"))
		in := input(fz, fb)
		// Point the endpoints at the loopback backends (tests send traffic
		// only to loopback).
		for id, slices := range in.Slices {
			port := fbPort
			if id.Name == "fz-svc" {
				port = fzPort
			}
			slices[0].Endpoints[0].Addresses = []string{"127.0.0.1"}
			slices[0].Ports[0].Port = ptr.To(port)
		}
		table, _ := newBuilder().build(in)
		if table == nil {
			t.Fatal("no table")
		}
		rt := table.Match(reqHost, reqPath)
		if rt != nil && rt.ingress == (types.NamespacedName{Namespace: "default", Name: "fz"}) && rt.re == nil {
			path := reqPath
			if path == "" {
				path = "/"
			}
			switch rt.pathType {
			case networkingv1.PathTypeExact:
				if rt.path != path {
					t.Fatalf("Exact rule %q matched path %q", rt.path, path)
				}
			case networkingv1.PathTypePrefix:
				if !prefixMatch(rt.path, path) {
					t.Fatalf("Prefix rule %q matched path %q", rt.path, path)
				}
			}
		}

		px := newProxy(m, slog.New(slog.DiscardHandler), 443)
		px.table.Store(table)
		req := &http.Request{Method: "GET", URL: &url.URL{Path: reqPath, RawPath: ""}, Host: reqHost,
			Header: http.Header{"Origin": {annValue}, "X-Canary": {"always"}}, RemoteAddr: "127.0.0.1:5555", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
		req = req.WithContext(t.Context())
		rec := httptest.NewRecorder()
		px.ServeHTTP(rec, req)
		if rec.Code < 100 || rec.Code > 599 {
			t.Fatalf("status %d", rec.Code)
		}
		if rt == nil && rec.Code != http.StatusNotFound {
			t.Fatalf("no route but status %d", rec.Code)
		}
		if got := rec.Header().Get("X-Backend"); got != "" && rt != nil && rt.canary == nil {
			want := "fallback"
			if rt.backend != nil && rt.backend.service == "fz-svc" {
				want = "fz"
			}
			if got != want && !strings.HasPrefix(rec.Body.String(), want) {
				t.Fatalf("request for route %s reached backend %s", want, got)
			}
		}
		px.h1.CloseIdleConnections()
	})
}
