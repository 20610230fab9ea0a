package ingress

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// leanFront serves e's proxy on a loopback listener through the lean
// loop, with the same http.Server settings as the add-on (handoff).
func leanFront(t testing.TB, e *fastEnv, epoll bool) (string, *leanServer) {
	t.Helper()
	return leanFrontWith(t, e, epoll, nil)
}

// forLeanModes runs f against the lean loop with a goroutine per
// connection and with the epoll loops (the default; Options.LeanGoroutines turns them off).
func forLeanModes(t *testing.T, f func(t *testing.T, epoll bool)) {
	for _, m := range []struct {
		name  string
		epoll bool
	}{{"goroutines", false}, {"epoll", true}} {
		t.Run(m.name, func(t *testing.T) {
			if m.epoll && !epollSupported {
				t.Skip("no epoll loop on this platform")
			}
			f(t, m.epoll)
		})
	}
}

// backendIdle: idle backend connections of the lean front's pools (the
// epoll loops keep their own).
func backendIdle(e *fastEnv, ls *leanServer) int {
	return e.idle() + ls.epollIdle()
}

// leanFrontWith lets the test change the http.Server's settings first.
func leanFrontWith(t testing.TB, e *fastEnv, epoll bool, set func(*http.Server)) (string, *leanServer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{proxy: e.px, log: slog.New(slog.DiscardHandler)}
	srv := s.httpServer()
	if set != nil {
		set(srv)
	}
	ls := newLeanServer(e.px, srv, s.log)
	ls.useEpoll = epoll
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = ls.Serve(ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = ls.Shutdown(ctx)
		<-done
	})
	return ln.Addr().String(), ls
}

// rawConn is a client connection that writes raw heads and reads
// answers with http.ReadResponse.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second)) // a hung test fails instead of hanging
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (rc *rawConn) send(s string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatal(err)
	}
}

func (rc *rawConn) read(method string) (*http.Response, string) {
	rc.t.Helper()
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: method})
	if err != nil {
		rc.t.Fatalf("read answer: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		rc.t.Fatalf("read body: %v", err)
	}
	return resp, string(b)
}

// closedByServer: the next read sees the end of the connection.
func (rc *rawConn) closedByServer() bool {
	_, err := rc.br.ReadByte()
	return err == io.EOF
}

func echoPathBackend(t *testing.T) *countingBackend {
	return newCountingBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		switch r.URL.Path {
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
			return
		case "/notmodified":
			w.Header().Set("ETag", `"v1"`)
			w.WriteHeader(http.StatusNotModified)
			return
		case "/chunked":
			w.Header().Del("Content-Type")
			w.Header().Set("Trailer", "X-Sum")
			for i := range 3 {
				fmt.Fprintf(w, "part%d;", i)
				http.NewResponseController(w).Flush()
			}
			w.Header().Set("X-Sum", "3 parts")
			return
		case "/sniff":
			w.Header().Del("Content-Type")
			_, _ = io.WriteString(w, "<html><body>hi</body></html>")
			return
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s %s body=%q", r.Method, r.URL.Path, b)
			return
		}
		fmt.Fprintf(w, "%s %s", r.Method, r.RequestURI)
	}))
}

// TestLeanMatchesNetHTTP: for the same raw request the backend sees the
// same request head from the lean loop as from net/http's server with the
// fast path, and the client gets the same answer head and body.
func TestLeanMatchesNetHTTP(t *testing.T) {
	forLeanModes(t, func(t *testing.T, epoll bool) {
		type seen struct {
			uri, host string
			header    http.Header
		}
		got := make(chan seen, 1)
		inner := echoPathBackend(t)
		be := newCountingBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got <- seen{r.RequestURI, r.Host, r.Header.Clone()}
			inner.Config.Handler.ServeHTTP(w, r)
		}))
		e := newFastEnv(t, nil, be.addr())
		leanAddr, ls := leanFront(t, e, epoll)
		netAddr := strings.TrimPrefix(e.url, "http://")
		for _, tc := range []struct{ method, head string }{
			{"GET", "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: fast.test\r\nUser-Agent: ua/1\r\n\r\n"},
			{"GET", "GET /q?bad=%zz&semi=1;2 HTTP/1.1\r\nHost: FAST.test:80\r\nX-Multi: a\r\nx-multi: b\r\n\r\n"},
			{"HEAD", "HEAD / HTTP/1.1\r\nHost: fast.test\r\nX-Forwarded-For: 10.1.1.1\r\nX-Forwarded-For: 10.2.2.2\r\nForwarded: for=10.1.1.1\r\n\r\n"},
			{"DELETE", "DELETE /d HTTP/1.1\r\nHost: fast.test\r\nConnection: X-Hop, keep-alive\r\nX-Hop: secret\r\nTe: trailers\r\nKeep-Alive: timeout=5\r\n\r\n"},
			{"POST", "POST /p HTTP/1.1\r\nHost: fast.test\r\nContent-Length: 0\r\nCookie: a=b\r\n\r\n"},
			{"OPTIONS", "OPTIONS /o HTTP/1.1\r\nHost: fast.test\r\nProxy-Authorization: Basic eA==\r\nX-Empty:\r\n\r\n"},
			{"GET", "GET /nocontent HTTP/1.1\r\nHost: fast.test\r\n\r\n"},
			{"GET", "GET /notmodified HTTP/1.1\r\nHost: fast.test\r\nIf-None-Match: \"v1\"\r\n\r\n"},
			{"GET", "GET /chunked HTTP/1.1\r\nHost: fast.test\r\nTe: trailers\r\n\r\n"},
			{"GET", "GET /sniff HTTP/1.1\r\nHost: fast.test\r\n\r\n"},
			{"GET", "GET /close HTTP/1.1\r\nHost: fast.test\r\nConnection: close\r\n\r\n"},
			{"GET", "GET /ten HTTP/1.0\r\nHost: fast.test\r\n\r\n"},
			{"GET", "GET /ten-ka HTTP/1.0\r\nHost: fast.test\r\nConnection: keep-alive\r\n\r\n"},
			{"GET", "GET /ten-chunked HTTP/1.0\r\nHost: fast.test\r\n\r\n"},
			{"HEAD", "HEAD /chunked HTTP/1.1\r\nHost: fast.test\r\n\r\n"},
		} {
			var sent [2]seen
			var heads [2]*http.Response
			var bodies [2]string
			var closed [2]bool
			for i, addr := range []string{leanAddr, netAddr} {
				rc := dialRaw(t, addr)
				rc.send(strings.Replace(tc.head, "\r\n\r\n", "\r\nX-Request-Id: fixed\r\n\r\n", 1))
				heads[i], bodies[i] = rc.read(tc.method)
				sent[i] = <-got
				closed[i] = heads[i].Close
			}
			name := strings.SplitN(tc.head, "\r\n", 2)[0]
			l, n := sent[0], sent[1]
			if l.uri != n.uri || l.host != n.host {
				t.Errorf("%s: backend got %s (Host %s) from the lean loop, %s (Host %s) via net/http", name, l.uri, l.host, n.uri, n.host)
			}
			if !equalHeaders(l.header, n.header) {
				t.Errorf("%s: backend headers differ:\nlean     %q\nnet/http %q", name, l.header, n.header)
			}
			lh, nh := heads[0], heads[1]
			delete(lh.Header, "Date")
			delete(nh.Header, "Date")
			if lh.StatusCode != nh.StatusCode || !equalHeaders(lh.Header, nh.Header) || bodies[0] != bodies[1] ||
				lh.ContentLength != nh.ContentLength || !slices.Equal(lh.TransferEncoding, nh.TransferEncoding) || closed[0] != closed[1] ||
				!equalHeaders(lh.Trailer, nh.Trailer) {
				t.Errorf("%s: answers differ:\nlean     %d %q len %d te %v close %v trailer %q body %q\nnet/http %d %q len %d te %v close %v trailer %q body %q", name,
					lh.StatusCode, lh.Header, lh.ContentLength, lh.TransferEncoding, closed[0], lh.Trailer, bodies[0],
					nh.StatusCode, nh.Header, nh.ContentLength, nh.TransferEncoding, closed[1], nh.Trailer, bodies[1])
			}
		}
		if ls.handedOff.Load() != 0 || ls.served.Load() == 0 {
			t.Errorf("lean loop served %d requests and handed %d connections off, want all served there", ls.served.Load(), ls.handedOff.Load())
		}
	})
}

func equalHeaders(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if strings.Join(v, "\x00") != strings.Join(b[k], "\x00") {
			return false
		}
	}
	return true
}

// TestLeanConnections: keep-alive reuse, pipelining, Connection: close,
// HTTP/1.0, and a connection handed to net/http when a request with a
// body comes after lean ones (and kept there).
func TestLeanConnections(t *testing.T) {
	forLeanModes(t, func(t *testing.T, epoll bool) {
		be := echoPathBackend(t)
		e := newFastEnv(t, nil, be.addr())
		addr, ls := leanFront(t, e, epoll)

		rc := dialRaw(t, addr)
		for i := range 3 {
			rc.send(fmt.Sprintf("GET /k%d HTTP/1.1\r\nHost: fast.test\r\n\r\n", i))
			if resp, body := rc.read("GET"); resp.StatusCode != 200 || body != fmt.Sprintf("GET /k%d", i) {
				t.Fatalf("keep-alive request %d: %d %q", i, resp.StatusCode, body)
			}
		}
		// Pipelined: three heads in one write, answers in order.
		rc.send("GET /p1 HTTP/1.1\r\nHost: fast.test\r\n\r\nHEAD /p2 HTTP/1.1\r\nHost: fast.test\r\n\r\nGET /p3 HTTP/1.1\r\nHost: fast.test\r\n\r\n")
		for _, want := range []struct{ method, body string }{{"GET", "GET /p1"}, {"HEAD", ""}, {"GET", "GET /p3"}} {
			if resp, body := rc.read(want.method); resp.StatusCode != 200 || body != want.body {
				t.Fatalf("pipelined %s: %d %q, want %q", want.method, resp.StatusCode, body, want.body)
			}
		}
		if n := ls.served.Load(); n != 6 {
			t.Errorf("lean loop served %d requests, want 6", n)
		}
		// A body, then (pipelined behind it) a bodiless request: both go to
		// net/http with the connection, in order.
		rc.send("POST /echo HTTP/1.1\r\nHost: fast.test\r\nContent-Length: 5\r\n\r\nhelloGET /after HTTP/1.1\r\nHost: fast.test\r\n\r\n")
		if resp, body := rc.read("POST"); resp.StatusCode != 200 || body != `POST /echo body="hello"` {
			t.Fatalf("body request after lean ones: %d %q", resp.StatusCode, body)
		}
		if resp, body := rc.read("GET"); resp.StatusCode != 200 || body != "GET /after" {
			t.Fatalf("request after the handoff: %d %q", resp.StatusCode, body)
		}
		rc.send("GET /later HTTP/1.1\r\nHost: fast.test\r\n\r\n")
		if resp, body := rc.read("GET"); resp.StatusCode != 200 || body != "GET /later" {
			t.Fatalf("later request on the handed-off connection: %d %q", resp.StatusCode, body)
		}
		if h, n := ls.handedOff.Load(), ls.served.Load(); h != 1 || n != 6 {
			t.Errorf("handed off %d connections, served %d requests; want 1 and still 6 (the connection stays with net/http)", h, n)
		}

		// Connection: close and HTTP/1.0 close after the answer; HTTP/1.0
		// with keep-alive stays.
		for _, tc := range []struct {
			head  string
			close bool
		}{
			{"GET /c HTTP/1.1\r\nHost: fast.test\r\nConnection: close\r\n\r\n", true},
			{"GET /c HTTP/1.0\r\nHost: fast.test\r\n\r\n", true},
			{"GET /c HTTP/1.0\r\nHost: fast.test\r\nConnection: Keep-Alive\r\n\r\n", false},
		} {
			rc := dialRaw(t, addr)
			rc.send(tc.head)
			resp, body := rc.read("GET")
			if resp.StatusCode != 200 || body != "GET /c" {
				t.Fatalf("%q: %d %q", tc.head, resp.StatusCode, body)
			}
			if tc.close != resp.Close {
				t.Errorf("%q: answer says close=%v", tc.head, resp.Close)
			}
			if tc.close && !rc.closedByServer() {
				t.Errorf("%q: connection left open", tc.head)
			}
			if !tc.close {
				rc.send(tc.head)
				if resp, body := rc.read("GET"); resp.StatusCode != 200 || body != "GET /c" {
					t.Errorf("%q again: %d %q", tc.head, resp.StatusCode, body)
				}
			}
		}
		// One connection of the fast path's pool, one of http.Transport's
		// (the request with a body). The epoll loops keep pools of their
		// own: one connection per loop at most, and net/http's fast path
		// (the requests after the handoff) one more.
		pools := int64(1)
		if epoll {
			pools = int64(len(ls.epoll.loops)) + 1
		}
		if n, idle := be.conns.Load(), int64(backendIdle(e, ls)); n < 2 || n > pools+1 || idle != n-1 {
			t.Errorf("backend accepted %d connections, %d idle in the lean pools; want 2 to %d and all but one idle", n, idle, pools+1)
		}
	})
}

// TestLeanBadHeads: malformed heads get 400 with a reason, oversize ones
// 431, and a client that sends half a head is disconnected after the
// header timeout (slowloris).
func TestLeanBadHeads(t *testing.T) {
	forLeanModes(t, func(t *testing.T, epoll bool) {
		be := echoPathBackend(t)
		e := newFastEnv(t, nil, be.addr())
		addr, _ := leanFront(t, e, epoll)

		for _, tc := range []struct {
			head, want string
			code       int
		}{
			{"GET / HTTP/1.1\r\nHost fast.test\r\n\r\n", "malformed header line", 400},
			{"GET /\x01 HTTP/1.1\r\nHost: fast.test\r\n\r\n", "control character", 400},
			{"GET / HTTP/1.1\r\nHost: fast.test\r\nX-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n", "exceed 64 KiB", 431},
			{"GET / HTTP/1.1\r\nHost: fast.test\r\n" + strings.Repeat("X-Many: "+strings.Repeat("b", 100)+"\r\n", 700), "exceed 64 KiB", 431},
		} {
			rc := dialRaw(t, addr)
			go func() { _, _ = io.WriteString(rc.c, tc.head) }()
			resp, body := rc.read("GET")
			if resp.StatusCode != tc.code || !strings.Contains(body, tc.want) || !resp.Close {
				t.Errorf("%.40q: %d %q close=%v, want %d with %q", tc.head, resp.StatusCode, body, resp.Close, tc.code, tc.want)
			}
		}

		addr, _ = leanFrontWith(t, e, epoll, func(s *http.Server) { s.ReadHeaderTimeout = 200 * time.Millisecond })
		// A fresh connection and a kept-alive one that starts a head and
		// stalls.
		rc := dialRaw(t, addr)
		rc.send("GET / HTTP/1.1\r\nHost: fast.t")
		if !rc.closedByServer() {
			t.Error("a stalled head on a new connection was not cut off")
		}
		rc = dialRaw(t, addr)
		rc.send("GET / HTTP/1.1\r\nHost: fast.test\r\n\r\n")
		rc.read("GET")
		rc.send("GET / HTTP/1.1\r\nX-Slow: ")
		if !rc.closedByServer() {
			t.Error("a stalled head on a kept-alive connection was not cut off")
		}
	})
}

// TestLeanHandoffProtocols: WebSocket upgrades, h2c with prior
// knowledge, Expect and requests for routes with annotations the lean
// loop leaves to net/http still work through the plain listener.
func TestLeanHandoffProtocols(t *testing.T) {
	forLeanModes(t, func(t *testing.T, epoll bool) {
		be := newCountingBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Upgrade") == "websocket" {
				sum := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
				w.Header().Set("Upgrade", "websocket")
				w.Header().Set("Connection", "Upgrade")
				w.Header().Set("Sec-WebSocket-Accept", base64.StdEncoding.EncodeToString(sum[:]))
				w.WriteHeader(http.StatusSwitchingProtocols)
				c, brw, err := http.NewResponseController(w).Hijack()
				if err != nil {
					return
				}
				defer c.Close()
				line, _ := brw.ReadString('\n')
				_, _ = brw.WriteString("echo:" + line)
				_ = brw.Flush()
				return
			}
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, b)
		}))
		e := newFastEnv(t, nil, be.addr())
		addr, ls := leanFront(t, e, epoll)

		rc := dialRaw(t, addr)
		rc.send("GET /ws HTTP/1.1\r\nHost: fast.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
		resp, err := http.ReadResponse(rc.br, &http.Request{Method: "GET"})
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-Websocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
			t.Fatalf("websocket upgrade: %v %v", resp, err)
		}
		rc.send("ping\n")
		if line, err := rc.br.ReadString('\n'); err != nil || line != "echo:ping\n" {
			t.Fatalf("through the tunnel: %q %v", line, err)
		}

		h2c := &http.Transport{Protocols: new(http.Protocols)}
		h2c.Protocols.SetUnencryptedHTTP2(true)
		defer h2c.CloseIdleConnections()
		req, _ := http.NewRequest("POST", "http://"+addr+"/h2", strings.NewReader("body"))
		req.Host = "fast.test"
		resp, err = (&http.Client{Transport: h2c, Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("h2c: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || string(b) != "POST /h2 body" {
			t.Errorf("h2c: %s %q", resp.Proto, b)
		}

		rc = dialRaw(t, addr)
		rc.send("PUT /x HTTP/1.1\r\nHost: fast.test\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
		if resp, err := http.ReadResponse(rc.br, &http.Request{Method: "PUT"}); err != nil || resp.StatusCode != 100 {
			t.Fatalf("Expect: %v %v", resp, err)
		}
		rc.send("abc")
		// net/http's own 100 went first; the backend's may be passed on too.
		resp, body := rc.read("PUT")
		for resp.StatusCode == http.StatusContinue {
			resp, body = rc.read("PUT")
		}
		if resp.StatusCode != 200 || body != "PUT /x abc" {
			t.Errorf("after 100-continue: %d %q", resp.StatusCode, body)
		}
		if n := ls.handedOff.Load(); n != 3 {
			t.Errorf("%d connections handed off, want 3", n)
		}
	})
}
