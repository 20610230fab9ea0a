package extauth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

func FuzzParseStringList(f *testing.F) {
	for _, s := range []string{"", " ", `[]`, `["X-Remote-User"]`, `["a","b"]`, `[1]`, `null`, `{"a":1}`, `["\u00e9"]`, `["a"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseStringList(s)
		if err != nil {
			return
		}
		// What parsed marshals back to the same list.
		b, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseStringList(string(b))
		if err != nil || len(again) != len(l) || len(l) > 0 && !reflect.DeepEqual(again, l) {
			t.Fatalf("%q: %q then %q (%v)", s, l, again, err)
		}
		if h, err := trimHeaders(l); err == nil {
			for _, n := range h {
				if n == "" || n != strings.TrimSpace(n) {
					t.Fatalf("header %q", n)
				}
			}
		}
	})
}

// FuzzUserFromHeaders: arbitrary header names and values never panic;
// the name is the first username header's; every auth header is removed.
func FuzzUserFromHeaders(f *testing.F) {
	f.Add("X-Remote-User", "alice", "X-Remote-Extra-Acme.com%2fProject", "p", "X-Remote-Group", "g")
	f.Add("x-remote-extra-", "", "X-Remote-Extra-%zz", "v", "X-Remote-Extra-%41", "w")
	f.Add("X-Remote-User", "", "X-Remote-Extra-A", "v", "Other", "o")
	cfg := &Config{UsernameHeaders: []string{"X-Remote-User", "X-User"}, GroupHeaders: []string{"X-Remote-Group"}, ExtraHeaderPrefixes: []string{"X-Remote-Extra-", "X-Extra-"}}
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2, k3, v3 string) {
		h := http.Header{}
		for _, kv := range [][2]string{{k1, v1}, {k2, v2}, {k3, v3}} {
			h[kv[0]] = append(h[kv[0]], kv[1])
		}
		want := firstValue(h, cfg.UsernameHeaders)
		u := userFromHeaders(h, cfg)
		if want == "" {
			if u != nil {
				t.Fatalf("user %+v without a name", u)
			}
			return
		}
		if u == nil || u.Name != want {
			t.Fatalf("user %+v, want name %q", u, want)
		}
		for _, g := range u.Groups {
			if g == "" {
				t.Fatal("empty group")
			}
		}
		for k := range h {
			for _, p := range cfg.ExtraHeaderPrefixes {
				if hasPrefixFold(k, p) {
					t.Fatalf("extra header %q left", k)
				}
			}
		}
		for _, n := range append(cfg.UsernameHeaders, cfg.GroupHeaders...) {
			if h.Get(n) != "" {
				t.Fatalf("header %q left", n)
			}
		}
	})
}

func FuzzRequestAttributes(f *testing.F) {
	for _, s := range []string{"/apis/metrics.k8s.io/v1beta1/nodes", "/api/v1/namespaces/a/pods/b/log", "/apis/g/v/watch", "/api/v1/proxy/x", "//api//v1//", "/apis/g/v/namespaces", "/api/v1/pods?fieldSelector=metadata.name%3D..", "/healthz"} {
		f.Add("GET", s)
	}
	f.Fuzz(func(t *testing.T, method, target string) {
		u, err := url.Parse(target)
		if err != nil || method == "" || strings.ContainsAny(method, " \t\r\n") {
			return
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.Method, r.URL = method, u
		a := RequestAttributes(r)
		if !a.IsResourceRequest {
			if a.Verb != strings.ToLower(method) || a.Resource != "" || a.APIGroup != "" || a.Name != "" {
				t.Fatalf("non-resource %+v", a)
			}
			return
		}
		// An empty segment is a version or resource "" (as upstream); the
		// prefix is api or apis, with a group for apis.
		parts := splitPath(u.Path)
		if len(parts) < 3 || parts[0] != "api" && parts[0] != "apis" || parts[0] == "apis" && (len(parts) < 4 || a.APIGroup != parts[1]) || parts[0] == "api" && a.APIGroup != "" {
			t.Fatalf("resource %+v of %q", a, u.Path)
		}
		if a.Name == "" && a.Verb == "get" || a.Name == "" && a.Verb == "delete" {
			t.Fatalf("verb %q without a name: %+v", a.Verb, a)
		}
	})
}

func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer  abc", "Basic x", "Bearer", "Bearer a b", " BEARER t "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, ok := bearerToken(http.Header{"Authorization": {s}})
		if ok && (tok == "" || strings.Contains(tok, " ")) {
			t.Fatalf("%q gave token %q", s, tok)
		}
	})
}
