package ingress

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestLeanFailures: through the lean loop (both modes) a refusing
// endpoint is retried elsewhere and ejected, a backend slower than the
// read timeout gets 504, an answer cut short reaches the client cut
// short (the connection closes), and a chunked answer — which the epoll
// loop hands to a goroutine — is relayed with the pipelined request
// behind it answered after it on the same connection.
func TestLeanFailures(t *testing.T) {
	forLeanModes(t, func(t *testing.T, epoll bool) {
		mux := http.NewServeMux()
		mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
		mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		})
		mux.HandleFunc("/short", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100")
			_, _ = io.WriteString(w, "only ten b")
			http.NewResponseController(w).Flush()
			panic(http.ErrAbortHandler)
		})
		mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "part one,")
			http.NewResponseController(w).Flush()
			_, _ = io.WriteString(w, "part two")
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
		addr, ls := leanFront(t, e, epoll)

		rc := dialRaw(t, addr)
		for i := range 4 {
			rc.send("GET /ok HTTP/1.1\r\nHost: fast.test\r\n\r\n")
			if resp, body := rc.read("GET"); resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("GET #%d with one dead endpoint: %d %q", i, resp.StatusCode, body)
			}
		}
		e.checkEjected(t, dead)

		rc.send("GET /slow HTTP/1.1\r\nHost: fast.test\r\n\r\n")
		if resp, body := rc.read("GET"); resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(body, "did not answer in time") {
			t.Errorf("slow backend: %d %q", resp.StatusCode, body)
		}

		rc.send("GET /chunked HTTP/1.1\r\nHost: fast.test\r\n\r\nGET /ok HTTP/1.1\r\nHost: fast.test\r\n\r\n")
		if resp, body := rc.read("GET"); resp.StatusCode != 200 || body != "part one,part two" {
			t.Errorf("chunked answer: %d %q", resp.StatusCode, body)
		}
		if resp, body := rc.read("GET"); resp.StatusCode != 200 || body != "ok" {
			t.Errorf("pipelined after the chunked answer: %d %q", resp.StatusCode, body)
		}

		rc.send("GET /short HTTP/1.1\r\nHost: fast.test\r\n\r\n")
		// Either the head or the body is cut: never a complete answer.
		if resp, err := http.ReadResponse(rc.br, &http.Request{Method: "GET"}); err == nil {
			if b, err := io.ReadAll(resp.Body); err == nil {
				t.Errorf("an answer cut short reached the client as complete: %d %q", resp.StatusCode, b)
			}
		}
		if !rc.closedByServer() {
			t.Error("the connection stays open after an answer cut short")
		}

		if n := counterValue(t, e.m.requests.WithLabelValues("default", "fast", "svc", "200")); n != 7 {
			t.Errorf("requests_total{code=200} = %v, want 7 (the cut answer started as 200)", n)
		}
		if n := counterValue(t, e.m.requests.WithLabelValues("default", "fast", "svc", "504")); n != 1 {
			t.Errorf("requests_total{code=504} = %v, want 1", n)
		}
		if n := ls.served.Load(); n != 8 {
			t.Errorf("lean loop served %d requests, want 8", n)
		}
		if h := ls.handedOff.Load(); h != 0 {
			t.Errorf("%d connections handed to net/http, want 0", h)
		}
	})
}
