package integration_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var (
	metav1GetOptions    = metav1.GetOptions{}
	metav1UpdateOptions = metav1.UpdateOptions{}
)

// TestWebsocketAndStreaming: an upgraded connection is tunneled both
// ways; a streamed answer reaches the client before the backend finished;
// a large upload streams through.
func TestWebsocketAndStreaming(t *testing.T) {
	e := start(t)
	up := websocket.Upgrader{}
	release := make(chan struct{})
	var uploaded atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			mt, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(mt, append([]byte("echo:"), msg...)); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "first\n")
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-time.After(20 * time.Second):
		}
		_, _ = io.WriteString(w, "second\n")
	})
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		uploaded.Store(n)
		fmt.Fprintf(w, "%d", n)
	})
	e.service("ws", backendWith(t, "127.0.0.2", mux))
	e.ingress("ws", nil, networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{rule("ws.example.com", path(prefix, "/", "ws"))}})
	waitFor(t, 20*time.Second, "route", func() (bool, string) {
		resp, _ := e.do("POST", "ws.example.com", "/upload", nil, strings.NewReader("x"))
		return resp.StatusCode == 200, resp.Status
	})

	d := websocket.Dialer{NetDial: func(string, string) (net.Conn, error) { return net.Dial("tcp", e.httpAddr) }, HandshakeTimeout: 5 * time.Second}
	c, resp, err := d.Dial("ws://ws.example.com/ws", nil)
	if err != nil {
		t.Fatalf("websocket dial: %v (%v)", err, resp)
	}
	defer c.Close()
	for i := range 3 {
		msg := fmt.Sprintf("hello %d", i)
		if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, got, err := c.ReadMessage()
		if err != nil || string(got) != "echo:"+msg {
			t.Fatalf("websocket echo: %q %v", got, err)
		}
	}

	// Streaming: the first chunk arrives while the backend still waits.
	req, _ := http.NewRequest("GET", "http://"+e.httpAddr+"/stream", nil)
	req.Host = "ws.example.com"
	sresp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer sresp.Body.Close()
	buf := make([]byte, 6)
	if _, err := io.ReadFull(sresp.Body, buf); err != nil || string(buf) != "first\n" {
		t.Fatalf("first chunk: %q %v", buf, err)
	}
	close(release)
	rest, _ := io.ReadAll(sresp.Body)
	if string(rest) != "second\n" {
		t.Fatalf("rest: %q", rest)
	}

	// A 64 MiB upload of unknown length streams through.
	const size = 64 << 20
	pr, pw := io.Pipe()
	go func() {
		chunk := bytes.Repeat([]byte("x"), 1<<20)
		for range size >> 20 {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
		_ = pw.Close()
	}()
	uresp, body := e.do("POST", "ws.example.com", "/upload", nil, pr)
	if uresp.StatusCode != 200 || string(body) != fmt.Sprint(size) {
		t.Fatalf("upload: %d %s", uresp.StatusCode, body)
	}
}

// TestBackendKilledMidLoad: steady GETs while one of two endpoints dies
// (before any EndpointSlice change): no request fails — connect failures
// are retried on the other endpoint and the dead one is ejected; once all
// are dead, GETs and POSTs fail fast with 502, nothing hangs.
func TestBackendKilledMidLoad(t *testing.T) {
	e := start(t)
	k1 := backend(t, "127.0.0.2", "k1")
	k2 := backend(t, "127.0.0.3", "k2")
	e.service("k", k1, k2)
	e.ingress("k", nil, networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{rule("k.example.com", path(prefix, "/", "k"))}})
	e.waitRoute("k.example.com", "/", "k1")
	e.waitRoute("k.example.com", "/", "k2")

	var ok, failed, afterKill, k1AfterKill atomic.Int64
	var killed atomic.Bool
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				wasKilled := killed.Load()
				req, _ := http.NewRequest("GET", "http://"+e.httpAddr+"/", nil)
				req.Host = "k.example.com"
				resp, err := e.client.Do(req)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%d %s", resp.StatusCode, b))
					continue
				}
				ok.Add(1)
				if wasKilled {
					afterKill.Add(1)
					if strings.Contains(string(b), `"backend":"k1"`) {
						k1AfterKill.Add(1)
					}
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	k1.Close() // listener closed, keep-alive connections dropped
	killed.Store(true)
	deadline := time.Now().Add(10 * time.Second)
	for afterKill.Load() < 300 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	t.Logf("requests: %d ok (%d after the kill), %d failed", ok.Load(), afterKill.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Errorf("%d requests failed, first: %v", failed.Load(), firstErr.Load())
	}
	if afterKill.Load() < 300 {
		t.Errorf("only %d requests after the kill", afterKill.Load())
	}
	if k1AfterKill.Load() != 0 {
		t.Errorf("%d answers from the killed backend", k1AfterKill.Load())
	}

	// Everything dead: fail fast with 502, for GET (retried) and POST.
	k2.Close()
	// (A POST may also meet a keep-alive connection the backend just
	// closed: it is not resent, the 502 then names the write error.)
	for _, m := range []string{"GET", "POST"} {
		start := time.Now()
		var body io.Reader
		want := "could not connect to backend default/k:80"
		if m == "POST" {
			body, want = strings.NewReader("body"), "default/k:80"
		}
		resp, b := e.do(m, "k.example.com", "/", nil, body)
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(b), want) {
			t.Errorf("%s with all endpoints dead: %d %s", m, resp.StatusCode, b)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s took %v", m, d)
		}
	}
}

// TestReconfigurationUnderLoad: a rolling replacement of the endpoints
// (new backend added, old one removed from the EndpointSlices, then shut
// down) and repeated Ingress edits while GETs run: no request fails.
func TestReconfigurationUnderLoad(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	v1 := backend(t, "127.0.0.2", "v1")
	e.service("roll", v1)
	e.ingress("roll", nil, networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{rule("roll.example.com", path(prefix, "/", "roll"))}})
	e.waitRoute("roll.example.com", "/", "v1")

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var last sync.Map // goroutine → last backend
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", "http://"+e.httpAddr+"/", nil)
				req.Host = "roll.example.com"
				resp, err := e.client.Do(req)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%d %s", resp.StatusCode, b))
					continue
				}
				ok.Add(1)
				last.Store(g, strings.Contains(string(b), `"backend":"v2"`))
			}
		})
	}
	cs := e.ts.Client.NetworkingV1().Ingresses(e.ns)
	for i := range 10 {
		ing, err := cs.Get(ctx, "roll", metav1GetOptions)
		if err != nil {
			t.Fatal(err)
		}
		ing.Spec.Rules[0].HTTP.Paths = append(ing.Spec.Rules[0].HTTP.Paths[:1], path(prefix, fmt.Sprintf("/p%d", i), "roll"))
		if _, err := cs.Update(ctx, ing, metav1UpdateOptions); err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Millisecond)
	}
	v2 := backend(t, "127.0.0.3", "v2")
	e.endpoints("roll", v1, v2)
	time.Sleep(200 * time.Millisecond)
	e.endpoints("roll", v2)
	waitFor(t, 20*time.Second, "only v2 answers", func() (bool, string) {
		_, ec, _ := e.get("roll.example.com", "/")
		return ec.Backend == "v2", ec.Backend
	})
	v1.Close()
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d requests ok, %d failed", ok.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Errorf("%d requests failed, first: %v", failed.Load(), firstErr.Load())
	}
	last.Range(func(k, v any) bool {
		if v != true {
			t.Errorf("worker %v last answered by v1", k)
		}
		return true
	})
}

// TestBadRequests: oversize headers and malformed requests are refused
// by the listener; routes keep working.
func TestBadRequests(t *testing.T) {
	e := start(t)
	e.service("ok", backend(t, "127.0.0.2", "ok"))
	e.ingress("ok", nil, networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{rule("ok.example.com", path(prefix, "/", "ok"))}})
	e.waitRoute("ok.example.com", "/", "ok")
	resp, _ := e.do("GET", "ok.example.com", "/", http.Header{"X-Big": {strings.Repeat("x", 100<<10)}}, nil)
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("100 KiB header: %d", resp.StatusCode)
	}
	for _, raw := range []string{"THIS IS NOT HTTP AT ALL, REALLY\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "GET / HTTP/1.1\r\nHost: ok.example.com\r\nContent-Length: -5\r\n\r\n"} {
		c, err := net.Dial("tcp", e.httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.WriteString(c, raw)
		b, _ := io.ReadAll(c)
		c.Close()
		if !strings.HasPrefix(string(b), "HTTP/1.1 400") {
			t.Errorf("%q: %.40q", raw, b)
		}
	}
	e.waitRoute("ok.example.com", "/", "ok")
}
