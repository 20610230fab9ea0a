package ingress

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// bodyStallBackend answers with a head and the start of a body, then
// stalls until the proxy closes the connection (released counts those)
// or 10 s pass. /big sends bigBody bytes as fast as it can. /trickle sends a 5-byte body a byte every 400 ms: slower
// in total than the 1 s read timeout, never idle that long.
func bodyStallBackend(t *testing.T) (addr string, released *atomic.Int64) {
	released = new(atomic.Int64)
	stall := func(w http.ResponseWriter, r *http.Request) {
		http.NewResponseController(w).Flush()
		select {
		case <-r.Context().Done():
			released.Add(1)
		case <-time.After(10 * time.Second):
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/stall-length", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", "100")
		_, _ = io.WriteString(w, "first ten.")
		stall(w, r)
	})
	mux.HandleFunc("/stall-chunked", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "first part")
		stall(w, r)
	})
	// No Content-Type: the epoll loop waits for 512 body bytes to sniff
	// one before the head goes out.
	mux.HandleFunc("/stall-sniff", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		_, _ = io.WriteString(w, "first ten.")
		stall(w, r)
	})
	mux.HandleFunc("/trickle", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", "5")
		for i := range 5 {
			if i > 0 {
				time.Sleep(400 * time.Millisecond)
			}
			_, _ = w.Write([]byte{"abcde"[i]})
			http.NewResponseController(w).Flush()
		}
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", fmt.Sprint(bigBody))
		chunk := make([]byte, 64<<10)
		for range bigBody / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), released
}

// bigBody is more than the socket buffers between backend, proxy and
// client hold: a client that does not read stops the proxy reading.
const bigBody = 32 << 20

// slowReader waits longer than the read timeout before it reads a body:
// the proxy must not count the client's slowness against the backend.
func slowReader(r io.Reader) (int64, error) {
	time.Sleep(2 * time.Second)
	return io.Copy(io.Discard, r)
}

var stallPaths = []string{"/stall-length", "/stall-chunked", "/stall-sniff"}

// checkStallCut runs one stalled exchange: get returns the status and
// whether a whole answer arrived. A backend that stops sending mid-body
// for longer than the read timeout (1 s) must not hold the client: the
// client gets a 504 (when no head went out yet) or an answer cut short,
// within a few seconds, and the backend connection is closed.
func checkStallCut(t *testing.T, path string, released *atomic.Int64, get func() (code int, complete bool)) {
	t.Helper()
	before := released.Load()
	start := time.Now()
	code, complete := get()
	d := time.Since(start)
	if complete && code != http.StatusGatewayTimeout {
		t.Errorf("%s: a body stalled past the read timeout reached the client as a complete %d answer", path, code)
	}
	if d < 900*time.Millisecond || d > 5*time.Second {
		t.Errorf("%s: the client waited %v, want about the 1 s read timeout", path, d)
	}
	deadline := time.Now().Add(3 * time.Second)
	for released.Load() == before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if released.Load() == before {
		t.Errorf("%s: the stalled backend connection was not closed", path)
	}
}

// TestBodyReadTimeoutNetHTTP: through net/http's server, on the fast path
// (bodiless GET) and through ReverseProxy (a request with a body), the
// read timeout bounds each wait for the body as well as the head, and
// neither a slow trickle nor a slow client counts as a stalled backend.
func TestBodyReadTimeoutNetHTTP(t *testing.T) {
	addr, released := bodyStallBackend(t)
	e := newFastEnv(t, map[string]string{prefixNginx + "proxy-read-timeout": "1"}, addr)
	c := client(t)
	for _, viaReverseProxy := range []bool{false, true} {
		name := "fast path"
		if viaReverseProxy {
			name = "ReverseProxy"
		}
		t.Run(name, func(t *testing.T) {
			do := func(path string) (*http.Response, error) {
				method, body := http.MethodGet, io.Reader(nil)
				if viaReverseProxy {
					method, body = http.MethodPost, strings.NewReader("a body")
				}
				req, err := http.NewRequest(method, e.url+path, body)
				if err != nil {
					t.Fatal(err)
				}
				req.Host = "fast.test"
				return c.Do(req)
			}
			for _, path := range stallPaths {
				checkStallCut(t, path, released, func() (int, bool) {
					resp, err := do(path)
					if err != nil {
						return 0, false
					}
					defer resp.Body.Close()
					_, err = io.ReadAll(resp.Body)
					return resp.StatusCode, err == nil
				})
			}
			resp, err := do("/trickle")
			if err != nil {
				t.Fatalf("trickled answer: %v", err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || string(b) != "abcde" {
				t.Errorf("an answer slower than the read timeout but never idle that long: %q, %v", b, err)
			}
			if resp, err = do("/big"); err != nil {
				t.Fatalf("big answer: %v", err)
			}
			n, err := slowReader(resp.Body)
			resp.Body.Close()
			if err != nil || n != bigBody {
				t.Errorf("a big answer read by a slow client: %d of %d bytes, %v", n, bigBody, err)
			}
		})
	}
}

// TestBodyReadTimeoutLean: the same through the lean loop, with a
// goroutine per connection and in the epoll loop (which relays plain
// bodies itself and hands chunked ones to a goroutine).
func TestBodyReadTimeoutLean(t *testing.T) {
	forLeanModes(t, func(t *testing.T, epoll bool) {
		addr, released := bodyStallBackend(t)
		e := newFastEnv(t, map[string]string{prefixNginx + "proxy-read-timeout": "1"}, addr)
		front, _ := leanFront(t, e, epoll)
		for _, path := range stallPaths {
			rc := dialRaw(t, front)
			checkStallCut(t, path, released, func() (int, bool) {
				rc.send(fmt.Sprintf("GET %s HTTP/1.1\r\nHost: fast.test\r\n\r\n", path))
				resp, err := http.ReadResponse(rc.br, &http.Request{Method: http.MethodGet})
				if err != nil {
					return 0, false
				}
				_, err = io.ReadAll(resp.Body)
				return resp.StatusCode, err == nil
			})
		}
		rc := dialRaw(t, front)
		rc.send("GET /trickle HTTP/1.1\r\nHost: fast.test\r\n\r\n")
		if resp, body := rc.read(http.MethodGet); resp.StatusCode != 200 || body != "abcde" {
			t.Errorf("an answer slower than the read timeout but never idle that long: %d %q", resp.StatusCode, body)
		}
		rc.send("GET /big HTTP/1.1\r\nHost: fast.test\r\n\r\n")
		resp, err := http.ReadResponse(rc.br, &http.Request{Method: http.MethodGet})
		if err != nil {
			t.Fatalf("big answer: %v", err)
		}
		if n, err := slowReader(resp.Body); err != nil || n != bigBody {
			t.Errorf("a big answer read by a slow client: %d of %d bytes, %v", n, bigBody, err)
		}
	})
}
