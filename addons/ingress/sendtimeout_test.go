//go:build unix

package ingress

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The send timeout (proxy-send-timeout) bounds each wait while the
// request goes to the backend. These tests run backends that stop
// reading the request head on the fast, lean and epoll paths.

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

// TestSendTimeoutHeadStall: a request head (60 KB) that the backend does
// not read is given up on after the send timeout on the fast path (behind
// net/http's server) and in both lean loops: 504, the connection closed.
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
