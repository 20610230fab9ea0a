package ingress

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// upgradeBackend answers every request with 101 and then, on /silent,
// sends nothing; on /chatty, a byte every 300 ms. closed receives a path
// when the proxy closed that tunnel's backend connection.
func upgradeBackend(t *testing.T) (addr string, closed chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	closed = make(chan string, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				if _, err := io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n"); err != nil {
					return
				}
				gone := make(chan struct{})
				go func() {
					_, _ = io.Copy(io.Discard, c) // ends when the proxy closes
					close(gone)
				}()
				tick := time.NewTicker(300 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-gone:
						closed <- req.URL.Path
						return
					case <-tick.C:
						if req.URL.Path == "/chatty" {
							if _, err := io.WriteString(c, "x"); err != nil {
								return
							}
						}
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), closed
}

// TestUpgradeReadTimeout: an upgraded connection (WebSocket) whose backend
// sends nothing for proxy-read-timeout is closed, both ways, as nginx
// does; one whose backend keeps talking outlives the timeout.
func TestUpgradeReadTimeout(t *testing.T) {
	addr, closed := upgradeBackend(t)
	e := newFastEnv(t, map[string]string{prefixNginx + "proxy-read-timeout": "1"}, addr)
	open := func(path string) (net.Conn, *bufio.Reader) {
		t.Helper()
		c, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(15 * time.Second))
		if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: fast.test\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("%s: %v %v, want 101", path, resp, err)
		}
		return c, br
	}

	start := time.Now()
	_, br := open("/silent")
	if n, err := br.Read(make([]byte, 1)); err == nil {
		t.Fatalf("a silent tunnel gave %d bytes", n)
	}
	if took := time.Since(start); took < 900*time.Millisecond || took > 5*time.Second {
		t.Errorf("the silent tunnel closed after %v, want about the 1 s read timeout", took)
	}
	select {
	case p := <-closed:
		if p != "/silent" {
			t.Errorf("backend connection of %s closed", p)
		}
	case <-time.After(5 * time.Second):
		t.Error("the silent tunnel's backend connection was not closed")
	}

	c, br := open("/chatty")
	_ = c.SetReadDeadline(time.Now().Add(2500 * time.Millisecond))
	got, err := io.ReadAll(br)
	if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Errorf("a talking tunnel ended within 2.5 s: %v", err)
	}
	if len(got) < 4 {
		t.Errorf("a talking tunnel passed %d bytes in 2.5 s", len(got))
	}
	select {
	case p := <-closed:
		t.Errorf("the backend connection of %s was closed", p)
	default:
	}
}
