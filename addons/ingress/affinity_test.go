package ingress

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// namedBackends starts n loopback backends answering their own name, on
// one port of 127.0.0.1, .2, ... (a Service's endpoints share a port).
func namedBackends(t *testing.T, n int) ([]*httptest.Server, []string) {
	t.Helper()
	for try := 0; ; try++ {
		var lns []net.Listener
		port := "0"
		for i := range n {
			ln, err := net.Listen("tcp", net.JoinHostPort(fmt.Sprintf("127.0.0.%d", i+1), port))
			if err != nil {
				break
			}
			lns = append(lns, ln)
			_, port, _ = net.SplitHostPort(ln.Addr().String())
		}
		if len(lns) < n {
			for _, ln := range lns {
				ln.Close()
			}
			if try == 20 {
				t.Fatal("no port free on every loopback address")
			}
			continue
		}
		var srvs []*httptest.Server
		var addrs []string
		for i, ln := range lns {
			name := fmt.Sprintf("b%d", i)
			s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.WriteString(w, name)
			}))
			s.Listener.Close()
			s.Listener = ln
			s.Start()
			t.Cleanup(s.Close)
			srvs = append(srvs, s)
			addrs = append(addrs, ln.Addr().String())
		}
		return srvs, addrs
	}
}

// TestAffinityCookie: with affinity: cookie the first answer sets the
// cookie (name, path, Max-Age, HttpOnly as the annotations say), requests
// bringing it back stay on that endpoint, an unknown value is replaced,
// and a client whose endpoint went away is served by another and given
// its cookie. Without the annotation the same requests alternate.
func TestAffinityCookie(t *testing.T) {
	srvs, addrs := namedBackends(t, 3)
	c := client(t)
	get := func(e *fastEnv, cookie string) (string, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, e.url+"/", nil)
		req.Host = "fast.test"
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
		return string(b), resp.Header.Get("Set-Cookie")
	}

	plain := newFastEnv(t, nil, addrs...)
	seen := map[string]bool{}
	for range 3 {
		name, set := get(plain, "route=whatever")
		seen[name] = true
		if set != "" {
			t.Errorf("Set-Cookie %q without affinity", set)
		}
	}
	if len(seen) != 3 {
		t.Fatalf("round-robin without affinity reached %v", seen)
	}

	e := newFastEnv(t, map[string]string{
		prefixNginx + "affinity": "cookie", prefixNginx + "session-cookie-name": "route",
		prefixNginx + "session-cookie-max-age": "60",
	}, addrs...)
	first, set := get(e, "")
	ck, err := http.ParseSetCookie(set)
	if err != nil || ck.Name != "route" || ck.Path != "/" || ck.MaxAge != 60 || !ck.HttpOnly || len(ck.Value) != 32 {
		t.Fatalf("Set-Cookie %q (%v), want route=<32 hex>; Path=/; Max-Age=60; HttpOnly", set, err)
	}
	for range 6 {
		name, again := get(e, "route="+ck.Value)
		if name != first || again != "" {
			t.Fatalf("with the cookie: served by %s (first %s), Set-Cookie %q", name, first, again)
		}
	}
	if _, set := get(e, "route=0123"); !strings.HasPrefix(set, "route=") {
		t.Errorf("an unknown cookie value was not replaced: %q", set)
	}
	// The client's endpoint goes away: another serves it, with a new cookie.
	for i := range srvs {
		if first == fmt.Sprintf("b%d", i) {
			srvs[i].Close()
		}
	}
	name, set := get(e, "route="+ck.Value)
	if name == first {
		t.Fatalf("served by %s, which was closed", name)
	}
	moved, err := http.ParseSetCookie(set)
	if err != nil || moved.Value == ck.Value {
		t.Fatalf("after its endpoint went: Set-Cookie %q (%v), want a new value", set, err)
	}
	for range 3 {
		if again, _ := get(e, "route="+moved.Value); again != name {
			t.Fatalf("with the new cookie: served by %s, want %s", again, name)
		}
	}
}

// TestAffinityAnnotations: defaults, the cookie's attributes and bad
// values (reported, the default kept).
func TestAffinityAnnotations(t *testing.T) {
	for _, c := range []struct {
		ann     map[string]string
		want    string // Set-Cookie without the value; "" = no affinity
		problem string
	}{
		{map[string]string{"affinity": "cookie"}, "INGRESSCOOKIE=; Path=/app; HttpOnly", ""},
		{map[string]string{"affinity": "cookie", "session-cookie-path": "/", "session-cookie-secure": "true", "session-cookie-samesite": "Strict", "session-cookie-domain": "example.test"},
			"INGRESSCOOKIE=; Path=/; Domain=example.test; HttpOnly; Secure; SameSite=Strict", ""},
		{map[string]string{"affinity": "ip"}, "", "affinity"},
		{map[string]string{"affinity": "cookie", "session-cookie-name": "a b"}, "INGRESSCOOKIE=; Path=/app; HttpOnly", "session-cookie-name"},
		{map[string]string{"affinity": "cookie", "session-cookie-max-age": "-1"}, "INGRESSCOOKIE=; Path=/app; HttpOnly", "session-cookie-max-age"},
		{map[string]string{"affinity": "cookie", "session-cookie-samesite": "Sometimes"}, "INGRESSCOOKIE=; Path=/app; HttpOnly", "session-cookie-samesite"},
	} {
		i := ing("aff", 0, "aff.test", p(prefix, "/app", "svc"))
		i.Annotations = map[string]string{}
		for k, v := range c.ann {
			i.Annotations[prefixNginx+k] = v
		}
		tb, problems := newBuilder().build(input(i))
		rt := tb.Match("aff.test", "/app/x")
		if rt == nil {
			t.Fatalf("%v: no route", c.ann)
		}
		got := ""
		if a := rt.cfg.affinity; a != nil {
			got = a.setCookie(&endpoint{}, rt)
		}
		if got != c.want {
			t.Errorf("%v: Set-Cookie %q, want %q", c.ann, got, c.want)
		}
		var reported string
		for _, pr := range problems {
			if pr.Reason == "InvalidAnnotation" {
				reported += pr.Message
			}
		}
		if c.problem == "" && reported != "" || c.problem != "" && !strings.Contains(reported, c.problem) {
			t.Errorf("%v: problems %q, want one naming %q", c.ann, reported, c.problem)
		}
	}
}

// TestAffinityLean: the lean loop (both modes) hands routes with affinity
// to the ReverseProxy path, so they get their cookie there too.
func TestAffinityLean(t *testing.T) {
	forLeanModes(t, func(t *testing.T, epoll bool) {
		_, addrs := namedBackends(t, 2)
		e := newFastEnv(t, map[string]string{prefixNginx + "affinity": "cookie"}, addrs...)
		front, _ := leanFront(t, e, epoll)
		rc := dialRaw(t, front)
		rc.send("GET / HTTP/1.1\r\nHost: fast.test\r\n\r\n")
		resp, first := rc.read(http.MethodGet)
		ck, err := http.ParseSetCookie(resp.Header.Get("Set-Cookie"))
		if err != nil || ck.Name != "INGRESSCOOKIE" {
			t.Fatalf("lean loop: Set-Cookie %q (%v)", resp.Header.Get("Set-Cookie"), err)
		}
		for range 4 {
			rc := dialRaw(t, front)
			rc.send("GET / HTTP/1.1\r\nHost: fast.test\r\nCookie: INGRESSCOOKIE=" + ck.Value + "\r\n\r\n")
			if _, name := rc.read(http.MethodGet); name != first {
				t.Fatalf("lean loop with the cookie: served by %s, want %s", name, first)
			}
		}
	})
}
