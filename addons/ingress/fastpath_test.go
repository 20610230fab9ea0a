package ingress

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"
)

// fastEnv is a Proxy behind a real HTTP server with one Ingress
// (prefix "/" on host fast.test, service "svc") whose endpoints are the
// given loopback addresses.
type fastEnv struct {
	t     testing.TB
	px    *Proxy
	m     *metrics
	url   string
	table *Table
}

func newFastEnv(t testing.TB, ann map[string]string, addrs ...string) *fastEnv {
	t.Helper()
	in := input(ing("fast", 1, "fast.test", p(prefix, "/", "svc")))
	in.Ingresses[0].Annotations = ann
	var port int32
	var ips []string
	for _, a := range addrs {
		h, ps, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(ps)
		if port != 0 && int32(n) != port {
			t.Fatal("endpoints must share a port")
		}
		port = int32(n)
		ips = append(ips, h)
	}
	for _, sl := range in.Slices {
		sl[0].Ports[0].Port = ptr.To(port)
		sl[0].Endpoints = nil
		for _, ip := range ips {
			sl[0].Endpoints = append(sl[0].Endpoints, sl0Endpoint(ip))
		}
	}
	table, _ := newBuilder().build(in)
	m := newMetrics(prometheus.NewRegistry())
	px := newProxy(m, slog.New(slog.DiscardHandler), 443)
	px.table.Store(table)
	front := httptest.NewServer(px)
	t.Cleanup(func() {
		front.Close()
		px.closeIdleConnections()
		px.closeTransports()
	})
	return &fastEnv{t: t, px: px, m: m, url: front.URL, table: table}
}

// endpoints of the route's backend, in address order.
func (e *fastEnv) endpoints() []*endpoint {
	return *e.table.Match("fast.test", "/").backend.pool.eps.Load()
}

func (e *fastEnv) idle() int {
	n := 0
	for _, ep := range e.endpoints() {
		n += ep.conns.idleCount()
	}
	return n
}

func (e *fastEnv) do(c *http.Client, method, uri string, hdr http.Header) (*http.Response, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+uri, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Host = "fast.test"
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, uri, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: body: %v", method, uri, err)
	}
	return resp, string(b)
}

func client(t *testing.T) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 8}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// countingBackend is an httptest server that counts the connections it
// accepted and the requests it served.
type countingBackend struct {
	*httptest.Server
	conns, reqs atomic.Int64
}

func newCountingBackend(t *testing.T, h http.Handler) *countingBackend {
	b := &countingBackend{}
	b.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.reqs.Add(1)
		h.ServeHTTP(w, r)
	}))
	b.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			b.conns.Add(1)
		}
	}
	b.Start()
	t.Cleanup(b.Close)
	return b
}

func (b *countingBackend) addr() string { return b.Listener.Addr().String() }

// TestFastPathReusesConnections: sequential GETs, HEADs and bodiless
// DELETEs all travel over one backend connection that the fast path's
// pool holds between requests.
func TestFastPathReusesConnections(t *testing.T) {
	be := newCountingBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		if r.Method != http.MethodHead {
			_, _ = io.WriteString(w, "hello")
		}
	}))
	e := newFastEnv(t, nil, be.addr())
	c := client(t)
	for i := range 30 {
		method := []string{"GET", "HEAD", "DELETE"}[i%3]
		resp, body := e.do(c, method, fmt.Sprintf("/r%d", i), nil)
		want := "hello"
		if method == "HEAD" {
			want = ""
		}
		if resp.StatusCode != 200 || body != want || resp.ContentLength != 5 {
			t.Fatalf("%s #%d: %d %q length %d", method, i, resp.StatusCode, body, resp.ContentLength)
		}
	}
	if n := be.conns.Load(); n != 1 {
		t.Errorf("backend accepted %d connections for 30 sequential requests, want 1", n)
	}
	if n := be.reqs.Load(); n != 30 {
		t.Errorf("backend served %d requests, want 30", n)
	}
	if n := e.idle(); n != 1 {
		t.Errorf("fast-path pool holds %d idle connections, want 1", n)
	}
}

// TestFastPathHeadersMatchReverseProxy: the backend sees the same
// request line and headers from the fast path as from ReverseProxy and
// http.Transport (hop-by-hop headers dropped, forwarding headers
// appended, Te: trailers kept, bad query parameters cleaned, rewrite).
func TestFastPathHeadersMatchReverseProxy(t *testing.T) {
	type seen struct {
		uri    string
		host   string
		header http.Header
	}
	got := make(chan seen, 1)
	be := newCountingBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.RequestURI, r.Host, r.Header.Clone()}
	}))
	for _, ann := range []map[string]string{nil, {prefixNginx + "rewrite-target": "/base"}} {
		e := newFastEnv(t, ann, be.addr())
		c := client(t)
		for _, tc := range []struct {
			method, uri string
			hdr         http.Header
		}{
			{"GET", "/a/b?x=1&y=2", nil},
			{"GET", "/sp%20ace?bad=%zz&semi=1;2", nil},
			{"HEAD", "/", http.Header{"X-Forwarded-For": {"10.1.1.1", "10.2.2.2"}, "Forwarded": {"for=10.1.1.1"}}},
			{"DELETE", "/d", http.Header{"Connection": {"X-Hop, keep-alive"}, "X-Hop": {"secret"}, "Te": {"trailers"}, "X-Request-Id": {"client-id"}, "Keep-Alive": {"timeout=5"}}},
			{"POST", "/p", http.Header{"Cookie": {"a=b"}}},
			{"OPTIONS", "/o", http.Header{"User-Agent": {"agent/1"}, "X-Multi": {"a", "b"}, "Proxy-Authorization": {"Basic eA=="}}},
		} {
			var res [2]seen
			for i, off := range []bool{false, true} {
				e.px.fastOff = off
				hdr := tc.hdr.Clone()
				if hdr == nil {
					hdr = http.Header{}
				}
				hdr.Set("X-Request-Id", "fixed-"+tc.uri) // same on both paths
				resp, _ := e.do(c, tc.method, tc.uri, hdr)
				if resp.StatusCode != 200 {
					t.Fatalf("%s %s (slow=%v): %d", tc.method, tc.uri, off, resp.StatusCode)
				}
				res[i] = <-got
			}
			fast, slow := res[0], res[1]
			if fast.uri != slow.uri || fast.host != slow.host {
				t.Errorf("%s %s: fast path sent %s (Host %s), ReverseProxy %s (Host %s)", tc.method, tc.uri, fast.uri, fast.host, slow.uri, slow.host)
			}
			// The Go client sends its own User-Agent and Accept-Encoding;
			// the backend's view must match header by header.
			keys := func(h http.Header) []string {
				var ks []string
				for k := range h {
					ks = append(ks, k)
				}
				slices.Sort(ks)
				return ks
			}
			if !slices.Equal(keys(fast.header), keys(slow.header)) {
				t.Errorf("%s %s: header names differ:\nfast %v\nslow %v", tc.method, tc.uri, keys(fast.header), keys(slow.header))
			}
			for k, v := range slow.header {
				if fv := fast.header[k]; strings.Join(fv, ",") != strings.Join(v, ",") {
					t.Errorf("%s %s: %s: fast %q, ReverseProxy %q", tc.method, tc.uri, k, fv, v)
				}
			}
			if fast.header.Get("X-Hop") != "" || fast.header.Get("X-Forwarded-For") == "" || fast.header.Get("Forwarded") == "" {
				t.Errorf("%s %s: forwarding headers %v", tc.method, tc.uri, fast.header)
			}
		}
		if e.idle() == 0 {
			t.Error("the fast path was not taken (its pool is empty)")
		}
	}
}

// TestFastPathStreamsBodies: an answer of unknown length reaches the
// client chunk by chunk while the backend is still writing; chunked and
// Content-Length answers, trailers, 204 and 304 keep the connection
// usable (one backend connection throughout).
func TestFastPathStreamsBodies(t *testing.T) {
	release := make(chan struct{})
	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
	mux := http.NewServeMux()
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "first\n")
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
		_, _ = io.WriteString(w, "second\n")
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(big)))
		_, _ = io.WriteString(w, big)
	})
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		for i := range 5 {
			fmt.Fprintf(w, "part%d;", i)
			http.NewResponseController(w).Flush()
		}
		w.Header().Set("X-Sum", "5 parts")
	})
	mux.HandleFunc("/nocontent", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("/notmodified", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		w.WriteHeader(http.StatusNotModified)
	})
	be := newCountingBackend(t, mux)
	e := newFastEnv(t, nil, be.addr())
	c := client(t)

	req, _ := http.NewRequest("GET", e.url+"/stream", nil)
	req.Host = "fast.test"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first\n" {
		t.Fatalf("first chunk before the backend finished: %q %v", buf, err)
	}
	close(release)
	rest, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(rest) != "second\n" {
		t.Fatalf("rest of the stream: %q", rest)
	}

	resp, body := e.do(c, "GET", "/big", nil)
	if body != big || resp.ContentLength != int64(len(big)) {
		t.Errorf("1 MiB answer: %d bytes, Content-Length %d", len(body), resp.ContentLength)
	}
	resp, body = e.do(c, "GET", "/chunked", nil)
	if body != "part0;part1;part2;part3;part4;" || resp.Trailer.Get("X-Sum") != "5 parts" {
		t.Errorf("chunked answer: %q, trailer %q", body, resp.Trailer)
	}
	resp, body = e.do(c, "GET", "/nocontent", nil)
	if resp.StatusCode != http.StatusNoContent || body != "" {
		t.Errorf("204: %d %q", resp.StatusCode, body)
	}
	resp, body = e.do(c, "GET", "/notmodified", http.Header{"If-None-Match": {`"v1"`}})
	if resp.StatusCode != http.StatusNotModified || body != "" || resp.Header.Get("ETag") != `"v1"` {
		t.Errorf("304: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	resp, body = e.do(c, "GET", "/big", nil)
	if resp.StatusCode != 200 || len(body) != len(big) {
		t.Errorf("after the bodiless answers: %d, %d bytes", resp.StatusCode, len(body))
	}
	if n := be.conns.Load(); n != 1 {
		t.Errorf("backend accepted %d connections, want 1 (reused after each answer)", n)
	}
}

// oneShotBackend answers one request per connection, keep-alive in its
// headers, and then closes the connection, as a backend whose keep-alive
// timeout just expired. closed receives after each close.
type oneShotBackend struct {
	ln          net.Listener
	conns, reqs atomic.Int64
	closed      chan struct{}
}

func newOneShotBackend(t *testing.T) *oneShotBackend {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &oneShotBackend{ln: ln, closed: make(chan struct{}, 16)}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.conns.Add(1)
			go func() {
				defer func() { _ = c.Close(); b.closed <- struct{}{} }()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				b.reqs.Add(1)
				_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Method: %s\r\n\r\nok", req.Method)
			}()
		}
	}()
	return b
}

// TestFastPathBackendClosedIdleConnection: the backend closes a
// keep-alive connection after the first answer. The next GET (idempotent)
// meets the dead connection and is sent again on a new one; a bodiless
// POST on a dead connection is not resent (502); after the connection
// sat idle past the stale check, even a POST gets a fresh connection.
func TestFastPathBackendClosedIdleConnection(t *testing.T) {
	be := newOneShotBackend(t)
	e := newFastEnv(t, nil, be.ln.Addr().String())
	c := client(t)
	wait := func() {
		t.Helper()
		select {
		case <-be.closed:
		case <-time.After(5 * time.Second):
			t.Fatal("backend did not close")
		}
		time.Sleep(20 * time.Millisecond) // the FIN reached the proxy's socket
	}

	if resp, body := e.do(c, "GET", "/1", nil); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("first GET: %d %q", resp.StatusCode, body)
	}
	wait()
	if e.idle() != 1 {
		t.Fatalf("pool holds %d connections, want the one the backend closed", e.idle())
	}
	if resp, body := e.do(c, "GET", "/2", nil); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("GET on a connection the backend closed: %d %q", resp.StatusCode, body)
	}
	if n := be.conns.Load(); n != 2 {
		t.Errorf("backend connections after the retried GET: %d, want 2", n)
	}
	if ep := e.endpoints()[0]; ep.ejected(time.Now().UnixNano()) {
		t.Error("a closed keep-alive connection ejected the endpoint")
	}
	wait()

	reqs := be.reqs.Load()
	resp, body := e.do(c, "POST", "/3", nil)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "default/svc:80") {
		t.Errorf("POST on a closed connection: %d %q, want 502", resp.StatusCode, body)
	}
	if n := be.conns.Load(); n != 2 || be.reqs.Load() != reqs {
		t.Errorf("the POST was resent: %d connections, %d requests", n, be.reqs.Load()-reqs)
	}

	// A connection idle longer than the stale check is looked at first.
	if resp, _ := e.do(c, "GET", "/4", nil); resp.StatusCode != 200 {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
	wait()
	time.Sleep(staleCheckAfterIdle + 100*time.Millisecond)
	resp, body = e.do(c, "POST", "/5", nil)
	if resp.StatusCode != 200 || body != "ok" || resp.Header.Get("X-Method") != "POST" {
		t.Errorf("POST after the idle connection was closed: %d %q", resp.StatusCode, body)
	}
}

// TestFastPathFailures: a refused connect is retried on the other
// endpoint and ejects the dead one; a slow backend gets 504 after the
// read timeout; a client that goes away frees the backend connection at
// once; an answer cut short aborts the client's connection; metrics count
// every code.
func TestFastPathFailures(t *testing.T) {
	var cancelled atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			cancelled.Add(1)
		case <-time.After(5 * time.Second):
		}
	})
	mux.HandleFunc("/short", func(w http.ResponseWriter, r *http.Request) {
		// Chunked: without the abort, the client would get a clean end.
		_, _ = io.WriteString(w, "only ten b")
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	})
	// Two endpoints on one port: 127.0.0.1 serves, 127.0.0.2 refuses.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	live := &httptest.Server{Listener: ln, Config: &http.Server{Handler: mux}}
	live.Start()
	t.Cleanup(live.Close)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	dead := net.JoinHostPort("127.0.0.2", port)
	e := newFastEnv(t, map[string]string{prefixNginx + "proxy-read-timeout": "1"}, ln.Addr().String(), dead)
	c := client(t)

	for i := range 4 {
		if resp, body := e.do(c, "GET", "/ok", nil); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("GET #%d with one dead endpoint: %d %q", i, resp.StatusCode, body)
		}
	}
	e.checkEjected(t, dead)

	start := time.Now()
	resp, body := e.do(c, "GET", "/slow", nil)
	if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(body, "did not answer in time") {
		t.Errorf("slow backend: %d %q", resp.StatusCode, body)
	}
	if d := time.Since(start); d < time.Second || d > 4*time.Second {
		t.Errorf("504 after %v, want the 1 s read timeout", d)
	}

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", e.url+"/slow", nil)
	req.Host = "fast.test"
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = c.Do(req) })
	time.Sleep(200 * time.Millisecond)
	before := cancelled.Load()
	cancel()
	wg.Wait()
	deadline := time.Now().Add(700 * time.Millisecond) // well before the 1 s read timeout
	for cancelled.Load() == before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if cancelled.Load() == before {
		t.Error("the backend kept waiting after the client went away")
	}

	req, _ = http.NewRequest("GET", e.url+"/short", nil)
	req.Host = "fast.test"
	if resp, err := c.Do(req); err == nil {
		b, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if rerr == nil {
			t.Errorf("an answer cut short reached the client as complete: %d %q", resp.StatusCode, b)
		}
	}

	if resp, _ := e.do(c, "GET", "/ok", nil); resp.StatusCode != 200 {
		t.Errorf("after the failures: %d", resp.StatusCode)
	}
	if n := counterValue(t, e.m.requests.WithLabelValues("default", "fast", "svc", "200")); n != 6 {
		t.Errorf("requests_total{code=200} = %v, want 6 (the cut answer started as 200)", n)
	}
	if n := counterValue(t, e.m.requests.WithLabelValues("default", "fast", "svc", "504")); n != 1 {
		t.Errorf("requests_total{code=504} = %v, want 1", n)
	}
}

func sl0Endpoint(ip string) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{ip}}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// BenchmarkProxyGET: keep-alive GETs of a 128-byte answer through the
// proxy (fast path, or ReverseProxy with -fastoff semantics via the
// sub-benchmark), client, proxy and backend in this process.
func BenchmarkProxyGET(b *testing.B) {
	body := strings.Repeat("x", 128)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, body)
	}))
	defer be.Close()
	for _, name := range []string{"lean", "epoll", "fast", "reverseproxy"} {
		b.Run(name, func(b *testing.B) {
			e := newFastEnv(b, nil, be.Listener.Addr().String())
			e.px.fastOff = name == "reverseproxy"
			url := e.url
			if name == "lean" || name == "epoll" {
				addr, _ := leanFront(b, e, name == "epoll")
				url = "http://" + addr
			}
			tr := &http.Transport{MaxIdleConnsPerHost: 64}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}
			b.ReportAllocs()
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest("GET", url+"/", nil)
					req.Host = "fast.test"
					resp, err := c.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}

// checkEjected: the endpoint at dead, which refused connections, is
// ejected and the connect errors were counted.
func (e *fastEnv) checkEjected(t *testing.T, dead string) {
	t.Helper()
	var deadEp *endpoint
	for _, ep := range e.endpoints() {
		if ep.addr == dead {
			deadEp = ep
		}
	}
	if deadEp == nil || !deadEp.ejected(time.Now().UnixNano()) {
		t.Error("the refusing endpoint is not ejected")
	}
	if n := counterValue(t, e.m.connectErrors.WithLabelValues("default", "svc")); n < 1 {
		t.Errorf("connect errors counted: %v", n)
	}
}
