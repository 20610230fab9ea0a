//go:build unix

package ingress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// The send timeout (proxy-send-timeout) bounds each wait while the
// request goes to the backend. These tests run backends that stop
// reading (the request head or a large body) and one that reads slowly
// but steadily, through the ReverseProxy path (bodies) and the fast, lean
// and epoll paths (heads).

// listenSmall listens on 127.0.0.1 with a small receive buffer, so that a
// backend that does not read fills it soon.
func listenSmall(t *testing.T, rcvbuf int) net.Listener {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
		}); err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// smallSendBuffer makes the proxy dial backends with a small send buffer
// (loopback sockets otherwise start with megabytes), so that its writes
// wait as soon as a backend stops reading.
func smallSendBuffer(px *Proxy, sndbuf int) {
	px.dialer.Control = func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, sndbuf)
		}); err != nil {
			return err
		}
		return serr
	}
}

// stopReadingBackend accepts connections, reads at most first bytes of
// each, then stops reading until release is closed; it then drains the
// connection for up to 3 s and counts in closed those the proxy had
// closed (EOF or reset: not a read deadline).
type stopReadingBackend struct {
	addr    string
	accepts atomic.Int64
	closed  atomic.Int64
	release chan struct{}
}

func newStopReadingBackend(t *testing.T, ln net.Listener, first int64) *stopReadingBackend {
	b := &stopReadingBackend{addr: ln.Addr().String(), release: make(chan struct{})}
	t.Cleanup(func() {
		select {
		case <-b.release:
		default:
			close(b.release)
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.accepts.Add(1)
			go func() {
				defer c.Close()
				_, _ = io.CopyN(io.Discard, c, first)
				<-b.release
				_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
				_, err := io.Copy(io.Discard, c)
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					b.closed.Add(1)
				}
			}()
		}
	}()
	return b
}

// checkReleased lets the backend drain and waits for it to have seen the
// proxy close every connection it got.
func (b *stopReadingBackend) checkReleased(t *testing.T) {
	t.Helper()
	close(b.release)
	deadline := time.Now().Add(5 * time.Second)
	for b.closed.Load() < b.accepts.Load() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n, c := b.accepts.Load(), b.closed.Load(); n == 0 || c < n {
		t.Errorf("the backend got %d connections, the proxy closed %d of them", n, c)
	}
}

// rawExchange sends head on a new connection to front, then body (if
// any, streamed in a goroutine), and reads the answer head; it reports
// the status (0 when the connection ended without one) and how long the
// answer took.
func rawExchange(t *testing.T, front, head string, body io.Reader) (code int, msg string, took time.Duration) {
	t.Helper()
	c, err := net.Dial("tcp", front)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	start := time.Now()
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	if body != nil {
		go func() { _, _ = io.Copy(c, body) }()
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	took = time.Since(start)
	if err != nil {
		return 0, err.Error(), took
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(b), took
}

// zeros is an endless body.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestSendTimeoutBodyStall: a backend that takes the first MiB of a
// 64 MiB body and then stops reading is given up on after the send
// timeout (1 s): the client gets 504 within a few seconds and the
// backend connection is closed. Through net/http's server and through
// the lean loops (which hand requests with bodies to it).
func TestSendTimeoutBodyStall(t *testing.T) {
	const size = 64 << 20
	head := "POST /upload HTTP/1.1\r\nHost: fast.test\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n"
	check := func(t *testing.T, front string, b *stopReadingBackend) {
		code, msg, took := rawExchange(t, front, head, io.LimitReader(zeros{}, size))
		if code != http.StatusGatewayTimeout || !strings.Contains(msg, "stopped taking the request") {
			t.Errorf("a backend that stopped reading the body: %d %q, want 504", code, msg)
		}
		if took < 900*time.Millisecond || took > 5*time.Second {
			t.Errorf("the client waited %v, want about the 1 s send timeout", took)
		}
		b.checkReleased(t)
	}
	ann := map[string]string{prefixNginx + "proxy-send-timeout": "1"}
	t.Run("net/http", func(t *testing.T) {
		b := newStopReadingBackend(t, listenSmall(t, 64<<10), 1<<20)
		e := newFastEnv(t, ann, b.addr)
		check(t, strings.TrimPrefix(e.url, "http://"), b)
	})
	forLeanModes(t, func(t *testing.T, epoll bool) {
		b := newStopReadingBackend(t, listenSmall(t, 64<<10), 1<<20)
		e := newFastEnv(t, ann, b.addr)
		front, _ := leanFront(t, e, epoll)
		check(t, front, b)
	})
}

// TestSendTimeoutHeadStall: a request head (60 KB) that the backend does
// not read is given up on after the send timeout on the fast path (behind
// net/http's server), in both lean loops and, for a request with a body,
// in the Transport (ReverseProxy): 504, the connection closed.
func TestSendTimeoutHeadStall(t *testing.T) {
	head := "GET /x HTTP/1.1\r\nHost: fast.test\r\nX-Pad: " + strings.Repeat("p", 60000) + "\r\n\r\n"
	ann := map[string]string{prefixSkiff + "proxy-send-timeout": "1"}
	checkHead := func(t *testing.T, front, head string, b *stopReadingBackend) {
		t.Helper()
		code, msg, took := rawExchange(t, front, head, nil)
		if code != http.StatusGatewayTimeout || !strings.Contains(msg, "stopped taking the request") {
			t.Errorf("a backend that does not read the request head: %d %q, want 504", code, msg)
		}
		if took < 900*time.Millisecond || took > 5*time.Second {
			t.Errorf("the client waited %v, want about the 1 s send timeout", took)
		}
		b.checkReleased(t)
	}
	t.Run("fast path", func(t *testing.T) {
		b := newStopReadingBackend(t, listenSmall(t, 4096), 0)
		e := newFastEnv(t, ann, b.addr)
		smallSendBuffer(e.px, 4096)
		checkHead(t, strings.TrimPrefix(e.url, "http://"), head, b)
	})
	// With a body the request goes through ReverseProxy: the Transport's
	// head write waits (before any of the body is read).
	t.Run("ReverseProxy", func(t *testing.T) {
		b := newStopReadingBackend(t, listenSmall(t, 4096), 0)
		e := newFastEnv(t, ann, b.addr)
		smallSendBuffer(e.px, 4096)
		checkHead(t, strings.TrimPrefix(e.url, "http://"),
			strings.Replace(head, "GET /x HTTP/1.1\r\n", "POST /x HTTP/1.1\r\nContent-Length: 4\r\n", 1)+"body", b)
	})
	forLeanModes(t, func(t *testing.T, epoll bool) {
		b := newStopReadingBackend(t, listenSmall(t, 4096), 0)
		e := newFastEnv(t, ann, b.addr)
		smallSendBuffer(e.px, 4096)
		front, ls := leanFront(t, e, epoll)
		checkHead(t, front, head, b)
		if ls.served.Load() == 0 {
			t.Error("the lean loop did not serve the request itself")
		}
	})
}

// TestSendTimeoutH2CFlowControl: an h2c backend that stops reading a
// body stops granting HTTP/2 flow-control window; the proxy's socket
// writes never wait, the Transport does. The send timeout still ends the
// exchange: 504, the backend's stream reset.
func TestSendTimeoutH2CFlowControl(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var released atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.CopyN(io.Discard, r.Body, 1<<20)
		select {
		case <-r.Context().Done():
			released.Add(1)
		case <-time.After(15 * time.Second):
		}
	})}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	e := newFastEnv(t, map[string]string{prefixNginx + "proxy-send-timeout": "1"}, ln.Addr().String())
	e.table.Match("fast.test", "/").backend.h2c = true // (as appProtocol kubernetes.io/h2c; before any request)
	const size = 64 << 20
	code, msg, took := rawExchange(t, strings.TrimPrefix(e.url, "http://"),
		"POST /upload HTTP/1.1\r\nHost: fast.test\r\nContent-Length: "+strconv.Itoa(size)+"\r\n\r\n", io.LimitReader(zeros{}, size))
	if code != http.StatusGatewayTimeout || !strings.Contains(msg, "stopped taking the request") {
		t.Errorf("an h2c backend that stopped reading the body: %d %q, want 504", code, msg)
	}
	if took < 900*time.Millisecond || took > 5*time.Second {
		t.Errorf("the client waited %v, want about the 1 s send timeout", took)
	}
	deadline := time.Now().Add(3 * time.Second)
	for released.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if released.Load() == 0 {
		t.Error("the backend's stream was not ended")
	}
}

// slowReaderBackend reads each request body 64 KiB at a time with a pause
// between reads (well under the send timeout, while the whole body takes
// longer than it), then answers with the byte count.
func slowReaderBackend(t *testing.T, pause time.Duration) string {
	ln := listenSmall(t, 64<<10)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 64<<10)
		var n int64
		for {
			m, err := io.ReadFull(r.Body, buf)
			n += int64(m)
			if err != nil {
				break
			}
			time.Sleep(pause)
		}
		fmt.Fprint(w, n)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestSendTimeoutSlowSteadyReader: a backend that reads a 4 MiB body in
// about 3 s, never pausing near the 1 s send timeout, gets all of it;
// the read timeout (1 s too) runs only once the body is sent, so it does
// not cut the upload either.
func TestSendTimeoutSlowSteadyReader(t *testing.T) {
	const size = 4 << 20
	addr := slowReaderBackend(t, 45*time.Millisecond)
	e := newFastEnv(t, map[string]string{prefixNginx + "proxy-send-timeout": "1", prefixNginx + "proxy-read-timeout": "1"}, addr)
	smallSendBuffer(e.px, 64<<10)
	start := time.Now()
	code, msg, took := rawExchange(t, strings.TrimPrefix(e.url, "http://"),
		"POST /upload HTTP/1.1\r\nHost: fast.test\r\nContent-Length: "+strconv.Itoa(size)+"\r\n\r\n", io.LimitReader(zeros{}, size))
	if code != http.StatusOK || msg != strconv.Itoa(size) {
		t.Fatalf("a slow but steady reader: %d %q after %v, want 200 %d", code, msg, took, size)
	}
	if d := time.Since(start); d < 1500*time.Millisecond {
		t.Errorf("the upload took %v: too fast to show that the send and read timeouts are per wait", d)
	}
}

// TestClientBodyTimeout: a client that stops sending its body is answered
// 408 after the proxy's client body timeout (Options.ClientBodyTimeout),
// whatever the read timeout.
func TestClientBodyTimeout(t *testing.T) {
	addr := slowReaderBackend(t, 0)
	e := newFastEnv(t, nil, addr)
	e.px.clientBodyTimeout = 500 * time.Millisecond
	code, msg, took := rawExchange(t, strings.TrimPrefix(e.url, "http://"),
		"POST /upload HTTP/1.1\r\nHost: fast.test\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("x", 1000), nil)
	if code != http.StatusRequestTimeout || !strings.Contains(msg, "500ms") {
		t.Errorf("a client that stopped sending its body: %d %q, want 408 naming 500ms", code, msg)
	}
	if took < 400*time.Millisecond || took > 4*time.Second {
		t.Errorf("answered after %v, want about 500 ms", took)
	}
}

// TestSendTimeoutAnnotation: proxy-send-timeout is read under both
// prefixes (skiff.io first) as seconds or a duration; a bad value is a
// problem (an InvalidAnnotation event) and the default applies.
func TestSendTimeoutAnnotation(t *testing.T) {
	for _, c := range []struct {
		ann     map[string]string
		want    time.Duration
		problem bool
	}{
		{nil, 0, false},
		{map[string]string{prefixNginx + "proxy-send-timeout": "5"}, 5 * time.Second, false},
		{map[string]string{prefixSkiff + "proxy-send-timeout": "7", prefixNginx + "proxy-send-timeout": "5"}, 7 * time.Second, false},
		{map[string]string{prefixSkiff + "proxy-send-timeout": "1500ms"}, 1500 * time.Millisecond, false},
		{map[string]string{prefixNginx + "proxy-send-timeout": "soon"}, 0, true},
		{map[string]string{prefixNginx + "proxy-send-timeout": "0"}, 0, true},
		{map[string]string{prefixNginx + "proxy-send-timeout": "-3"}, 0, true},
	} {
		i := ing("send", 0, "send.test", p(prefix, "/", "svc"))
		i.Annotations = c.ann
		tb, problems := newBuilder().build(input(i))
		rt := tb.Match("send.test", "/")
		if rt == nil {
			t.Fatalf("%v: no route", c.ann)
		}
		if rt.cfg.sendTimeout != c.want {
			t.Errorf("%v: send timeout %v, want %v", c.ann, rt.cfg.sendTimeout, c.want)
		}
		var got []string
		for _, pr := range problems {
			if pr.Reason == "InvalidAnnotation" && strings.Contains(pr.Message, "proxy-send-timeout") {
				got = append(got, pr.Message)
			}
		}
		if (len(got) > 0) != c.problem {
			t.Errorf("%v: InvalidAnnotation problems %q, want one: %v", c.ann, got, c.problem)
		}
		want := c.want
		if want == 0 {
			want = defaultSendTimeout
		}
		if d := sendTimeoutOf(rt.cfg); d != want {
			t.Errorf("%v: effective send timeout %v, want %v", c.ann, d, want)
		}
	}
}

// TestSendWriterNoDeadlineWhenNotBlocked: a write that does not block
// leaves no write deadline behind (the fast paths pay no timer for the
// send timeout), and a write that waited clears its deadline afterwards.
func TestSendWriterNoDeadlineWhenNotBlocked(t *testing.T) {
	ln := listenSmall(t, 4096)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	peer := <-accepted
	defer peer.Close()
	guard := time.AfterFunc(10*time.Second, func() { c.Close() }) // a write that never times out fails instead of hanging
	defer guard.Stop()
	pc := newPconn(c)
	pc.sw.timeout = 200 * time.Millisecond
	if _, err := pc.sw.Write([]byte("small")); err != nil {
		t.Fatal(err)
	}
	if pc.sw.armed {
		t.Error("a write that did not block set a deadline")
	}
	// Fill the socket: the peer does not read, the write times out.
	_, err = pc.sw.Write(make([]byte, 64<<20))
	if !errors.Is(err, errSendTimeout) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a write the peer never takes: %v, want errSendTimeout", err)
	}
}

// TestClientBodyTimeoutOption: New gives the proxy Options.ClientBodyTimeout,
// the default when unset, and refuses a negative one. (The client is never
// used: the server is not run.)
func TestClientBodyTimeoutOption(t *testing.T) {
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: "https://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		set, want time.Duration
		fails     bool
	}{
		{0, DefaultClientBodyTimeout, false},
		{5 * time.Second, 5 * time.Second, false},
		{-time.Second, 0, true},
	} {
		s, err := New(Options{Client: cs, ClientBodyTimeout: c.set})
		if c.fails {
			if err == nil {
				t.Errorf("ClientBodyTimeout %v: no error", c.set)
			}
			continue
		}
		if err != nil {
			t.Fatalf("ClientBodyTimeout %v: %v", c.set, err)
		}
		if got := s.Handler().clientBodyTimeout; got != c.want {
			t.Errorf("ClientBodyTimeout %v: the proxy waits %v, want %v", c.set, got, c.want)
		}
	}
}

// TestSendTimeoutTransportsLetGo: the Transports made for a route's
// proxy-send-timeout live as long as a route of the table uses that
// timeout, and are let go with the last one.
func TestSendTimeoutTransportsLetGo(t *testing.T) {
	px := newProxy(newMetrics(prometheus.NewRegistry()), slog.New(slog.DiscardHandler), 443)
	table := func(ann map[string]string) *Table {
		i := ing("send", 0, "send.test", p(prefix, "/", "svc"))
		i.Annotations = ann
		tb, _ := newBuilder().build(input(i))
		return tb
	}
	five := map[string]string{prefixNginx + "proxy-send-timeout": "5"}
	tb := table(five)
	px.setTable(tb)
	cfg := tb.Match("send.test", "/").cfg
	tr := px.transport(cfg, false)
	if tr == px.h1 {
		t.Fatal("a route with a 5 s send timeout got the default Transport")
	}
	if _, ok := px.others.Load(5 * time.Second); !ok {
		t.Fatal("no Transports kept for 5 s")
	}
	px.setTable(table(five))
	if px.transport(cfg, false) != tr {
		t.Fatal("a table that still uses 5 s made its Transports anew")
	}
	px.setTable(table(nil))
	if _, ok := px.others.Load(5 * time.Second); ok {
		t.Fatal("the Transports for 5 s are kept after the last route using it went")
	}
}
