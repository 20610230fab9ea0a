package failover

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// testServer is a loopback listener that counts accepted connections and
// keeps them open until the test ends or kill.
type testServer struct {
	l    net.Listener
	addr string

	mu       sync.Mutex
	accepted []net.Conn
}

func listen(t *testing.T) *testServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{l: l, addr: l.Addr().String()}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.accepted = append(s.accepted, c)
			s.mu.Unlock()
		}
	}()
	t.Cleanup(s.kill)
	return s
}

func (s *testServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.accepted)
}

// accepts waits until s has accepted n connections (accepting runs on
// its own goroutine) and reports whether that is how many it accepted.
func (s *testServer) accepts(n int) bool {
	for deadline := time.Now().Add(5 * time.Second); s.count() < n && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	return s.count() == n
}

// kill stops listening but leaves the accepted connections open, as a
// server cut off from the network would: only the balancer closes them.
func (s *testServer) kill() { _ = s.l.Close() }

func newTest(t *testing.T, check CheckFunc, servers ...string) *Balancer {
	t.Helper()
	b, err := New(Options{Servers: servers, Check: check, DialTimeout: time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// closedByBalancer reports whether c was closed on the client side.
func closedByBalancer(t *testing.T, c net.Conn) bool {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	return errors.Is(err, net.ErrClosed)
}

func TestDialFailsOverWhenCurrentRefuses(t *testing.T) {
	s1, s2, s3 := listen(t), listen(t), listen(t)
	b := newTest(t, nil, s1.addr, s2.addr, s3.addr)
	ctx := context.Background()

	c1, err := b.DialContext(ctx, "tcp", "ignored:443")
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	if b.Current() != s1.addr || b.Conns(s1.addr) != 1 {
		t.Fatalf("current %s with %d conns, want the first server with 1", b.Current(), b.Conns(s1.addr))
	}

	s1.kill()
	c2, err := b.DialContext(ctx, "tcp", "ignored:443")
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got := b.Current(); got != s2.addr {
		t.Fatalf("after the first server refused: current %s, want %s", got, s2.addr)
	}
	if c2.RemoteAddr().String() != s2.addr {
		t.Fatalf("dialed %s, want %s", c2.RemoteAddr(), s2.addr)
	}
	// The connection to the server left behind is closed, so that a
	// client holding it (an HTTP/2 connection, a watch) dials again.
	if !closedByBalancer(t, c1) || b.Conns(s1.addr) != 0 {
		t.Fatal("the connection to the failed server is still open")
	}
	// New connections keep going to the new current server.
	for range 3 {
		c, err := b.DialContext(ctx, "tcp", "")
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	if !s2.accepts(4) || s3.count() != 0 {
		t.Fatalf("accepted: second server %d, third %d; want 4 and 0", s2.count(), s3.count())
	}

	// Order wraps around: with the second down too, the third, and with
	// all down, an error naming every attempt.
	s2.kill()
	if _, err := b.DialContext(ctx, "tcp", ""); err != nil || b.Current() != s3.addr {
		t.Fatalf("current %s (err %v), want %s", b.Current(), err, s3.addr)
	}
	s3.kill()
	_, err = b.DialContext(ctx, "tcp", "")
	if err == nil || strings.Count(err.Error(), "connection refused") != 3 {
		t.Fatalf("all servers down: %v, want three refusals", err)
	}
	if b.Current() != s3.addr {
		t.Fatalf("current moved to %s with every server down", b.Current())
	}
}

func TestHealthCheckLeavesAfterTwoFailures(t *testing.T) {
	s1, s2, s3 := listen(t), listen(t), listen(t)
	var mu sync.Mutex
	down := map[string]bool{}
	var checked []string
	check := func(_ context.Context, s string) error {
		mu.Lock()
		defer mu.Unlock()
		checked = append(checked, s)
		if down[s] {
			return errors.New("not ready")
		}
		return nil
	}
	b := newTest(t, check, s1.addr, s2.addr, s3.addr)
	ctx := context.Background()
	c1, err := b.DialContext(ctx, "tcp", "")
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()

	b.CheckOnce(ctx, time.Second)
	if b.Current() != s1.addr {
		t.Fatal("a healthy server was left")
	}
	// The first server still accepts connections but is not ready (lost
	// quorum, say); the second is down as well: the third is chosen.
	mu.Lock()
	down[s1.addr], down[s2.addr] = true, true
	checked = nil
	mu.Unlock()
	b.CheckOnce(ctx, time.Second)
	if b.Current() != s1.addr || closedByBalancer(t, c1) {
		t.Fatal("left after one failed check")
	}
	b.CheckOnce(ctx, time.Second)
	if b.Current() != s3.addr {
		t.Fatalf("after two failed checks: current %s, want %s", b.Current(), s3.addr)
	}
	mu.Lock()
	if want := []string{s1.addr, s1.addr, s2.addr, s3.addr}; !slices.Equal(checked, want) {
		t.Errorf("checked %v, want %v", checked, want)
	}
	mu.Unlock()
	if !closedByBalancer(t, c1) {
		t.Fatal("the connection to the unhealthy server is still open")
	}
	c3, err := b.DialContext(ctx, "tcp", "")
	if err != nil {
		t.Fatal(err)
	}
	c3.Close()
	if !s3.accepts(1) {
		t.Fatalf("the third server accepted %d connections, want 1", s3.count())
	}

	// With no healthy server, the balancer stays where it is and keeps
	// its connections: closing them would gain nothing.
	mu.Lock()
	down[s3.addr] = true
	mu.Unlock()
	c4, err := b.DialContext(ctx, "tcp", "")
	if err != nil {
		t.Fatal(err)
	}
	defer c4.Close()
	for range 3 {
		b.CheckOnce(ctx, time.Second)
	}
	if b.Current() != s3.addr || closedByBalancer(t, c4) {
		t.Fatalf("with every server unhealthy: current %s; want it kept, with its connections", b.Current())
	}
}

func TestLearnedServers(t *testing.T) {
	s1, s2 := listen(t), listen(t)
	b := newTest(t, nil, s1.addr)
	learned := make(chan []string, 1)
	learned <- []string{s2.addr, s1.addr, s2.addr}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Run(ctx, 10*time.Millisecond, func(context.Context) ([]string, error) {
			select {
			case l := <-learned:
				return l, nil
			default:
				return nil, errors.New("API unreachable") // keeps the last list
			}
		}, time.Millisecond)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for len(b.Servers()) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("servers %v: the learned one was not added", b.Servers())
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // failed learns in between
	if got, want := b.Servers(), []string{s1.addr, s2.addr}; !slices.Equal(got, want) {
		t.Fatalf("servers %v, want %v (configured first, no duplicates)", got, want)
	}
	// The health loop (TCP checks here) leaves the configured server when
	// it dies, for the learned one.
	s1.kill()
	for b.Current() != s2.addr {
		if time.Now().After(deadline) {
			t.Fatalf("current %s: the loop did not move to the learned server", b.Current())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// An empty list learned later (Endpoints not written yet) is ignored;
	// a configured server is never dropped.
	learned <- nil
	b.SetLearned(nil)
	if got := b.Servers(); !slices.Equal(got, []string{s1.addr}) {
		t.Fatalf("servers %v after the learned list emptied, want the configured one", got)
	}
	if b.Current() != s2.addr {
		t.Fatal("the current server changed because it was no longer listed")
	}
	cancel()
	<-done
}

// TestDialRacingFailover: a connection dialed to a server the health loop
// leaves meanwhile is not kept: the dial retries on the new current one.
func TestDialRacingFailover(t *testing.T) {
	s1, s2 := listen(t), listen(t)
	b := newTest(t, nil, s1.addr, s2.addr)
	c := &conn{b: b, server: s1.addr}
	// The health loop moved to s2 after order() returned [s1 s2].
	b.mu.Lock()
	b.current = s2.addr
	b.mu.Unlock()
	if b.track(c, s1.addr) {
		t.Fatal("a connection to the server just left was kept")
	}
	if b.Conns(s1.addr) != 0 {
		t.Fatal("it is tracked")
	}
	c2 := &conn{b: b, server: s2.addr}
	if !b.track(c2, s1.addr) || b.Conns(s2.addr) != 1 {
		t.Fatal("a connection to the new current server was refused")
	}
}

func TestHostPort(t *testing.T) {
	for in, want := range map[string]string{
		"https://10.0.0.1:6443":   "10.0.0.1:6443",
		"https://server.example":  "server.example:443",
		"https://[fd00::1]:6443/": "[fd00::1]:6443",
		"127.0.0.1:6443":          "127.0.0.1:6443",
	} {
		if got, err := HostPort(in); err != nil || got != want {
			t.Errorf("HostPort(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "server", "ftp://x:1", "https://:6443", "https://a:b:c"} {
		if got, err := HostPort(bad); err == nil {
			t.Errorf("HostPort(%q) = %q, want an error", bad, got)
		}
	}
	if _, err := New(Options{}); err == nil {
		t.Error("New without servers succeeded")
	}
	if _, err := New(Options{Servers: []string{"no-port"}}); err == nil {
		t.Error("New with a server without a port succeeded")
	}
}

var _ io.Closer = (*conn)(nil)

// TestReadyzCheckReusesConnection: health checks of a healthy server share
// one connection (one TLS handshake, not one per interval); a failed check
// drops it, and the next check connects anew.
func TestReadyzCheckReusesConnection(t *testing.T) {
	var (
		mu      sync.Mutex
		newConn int
		failing bool
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path != "/readyz" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		if failing {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			mu.Lock()
			newConn++
			mu.Unlock()
		}
	}
	srv.StartTLS()
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	check := ReadyzCheck(&tls.Config{RootCAs: pool, ServerName: "example.com"})
	server := strings.TrimPrefix(srv.URL, "https://")
	conns := func() int {
		mu.Lock()
		defer mu.Unlock()
		return newConn
	}
	ctx := context.Background()
	for i := range 5 {
		if err := check(ctx, server); err != nil {
			t.Fatalf("check %d: %v", i, err)
		}
	}
	if n := conns(); n != 1 {
		t.Fatalf("5 passing checks opened %d connections, want 1", n)
	}
	mu.Lock()
	failing = true
	mu.Unlock()
	if err := check(ctx, server); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("check of a failing server = %v, want a 503 error", err)
	}
	mu.Lock()
	failing = false
	mu.Unlock()
	if err := check(ctx, server); err != nil {
		t.Fatal(err)
	}
	if n := conns(); n != 2 {
		t.Fatalf("after a failed check: %d connections in all, want 2 (the failure drops the old one)", n)
	}
}
