package streaming_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/nodeagent/streaming"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/client-go/util/exec"
)

// server runs a fake "command": it echoes stdin to stdout upper-cased,
// writes "err" to stderr, records resizes, and exits with the code given
// as its first argument.
func server(t *testing.T, resizes chan<- streaming.TerminalSize) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/exec", func(w http.ResponseWriter, r *http.Request) {
		opts, err := streaming.ParseOptions(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		streaming.ServeRemoteCommand(w, r, opts, streaming.Config{}, func(ctx context.Context, s streaming.Streams) error {
			if s.Resize != nil {
				// A tty session ends after its first resize.
				select {
				case sz := <-s.Resize:
					resizes <- sz
				case <-time.After(10 * time.Second):
				}
			}
			if s.Stdin != nil {
				b, _ := io.ReadAll(s.Stdin)
				_, _ = s.Stdout.Write(bytes.ToUpper(b))
			} else if s.Stdout != nil {
				_, _ = io.WriteString(s.Stdout, "hi\n")
			}
			if s.Stderr != nil {
				_, _ = io.WriteString(s.Stderr, "err\n")
			}
			var code int
			_, _ = fmt.Sscan(opts.Command[0], &code)
			if code != 0 {
				return streaming.ExitError{Code: code}
			}
			return nil
		})
	})
	mux.HandleFunc("/portForward", func(w http.ResponseWriter, r *http.Request) {
		streaming.ServePortForward(w, r, "test", streaming.Config{}, func(ctx context.Context, port uint16) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
		})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

type executor struct {
	name string
	new  func(cfg *rest.Config, u *url.URL) (remotecommand.Executor, error)
}

var executors = []executor{
	{"websocket", func(cfg *rest.Config, u *url.URL) (remotecommand.Executor, error) {
		return remotecommand.NewWebSocketExecutor(cfg, "GET", u.String())
	}},
	{"spdy", func(cfg *rest.Config, u *url.URL) (remotecommand.Executor, error) {
		return remotecommand.NewSPDYExecutor(cfg, "POST", u)
	}},
}

func execURL(base string, q string) *url.URL {
	u, _ := url.Parse(base + "/exec?" + q)
	return u
}

type sizes struct {
	once bool
}

func (s *sizes) Next() *remotecommand.TerminalSize {
	if s.once {
		select {}
	}
	s.once = true
	return &remotecommand.TerminalSize{Width: 120, Height: 40}
}

func TestRemoteCommand(t *testing.T) {
	for _, ex := range executors {
		t.Run(ex.name, func(t *testing.T) {
			resizes := make(chan streaming.TerminalSize, 8)
			srv := server(t, resizes)
			cfg := &rest.Config{Host: srv.URL}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()

			// Output and exit code.
			e, err := ex.new(cfg, execURL(srv.URL, "command=3&stdout=true&stderr=true"))
			if err != nil {
				t.Fatal(err)
			}
			var out, errOut bytes.Buffer
			err = e.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &out, Stderr: &errOut})
			var ce exec.CodeExitError
			if !errors.As(err, &ce) || ce.Code != 3 {
				t.Fatalf("want exit code 3, got %v", err)
			}
			if out.String() != "hi\n" || errOut.String() != "err\n" {
				t.Fatalf("stdout %q stderr %q", out.String(), errOut.String())
			}

			// Stdin reaches the command and its end is seen; exit 0.
			e, _ = ex.new(cfg, execURL(srv.URL, "command=0&stdin=true&stdout=true"))
			out.Reset()
			if err := e.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: strings.NewReader("hello stdin"), Stdout: &out}); err != nil {
				t.Fatal(err)
			}
			if out.String() != "HELLO STDIN" {
				t.Fatalf("stdout %q", out.String())
			}

			// A tty: stderr is not a stream, resizes arrive.
			e, _ = ex.new(cfg, execURL(srv.URL, "command=0&stdout=true&tty=true&stderr=true"))
			out.Reset()
			if err := e.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &out, Tty: true, TerminalSizeQueue: &sizes{}}); err != nil {
				t.Fatal(err)
			}
			select {
			case sz := <-resizes:
				if sz.Width != 120 || sz.Height != 40 {
					t.Fatalf("resize %+v", sz)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no resize event")
			}
		})
	}
}

func TestRemoteCommandNoStreams(t *testing.T) {
	srv := server(t, nil)
	resp, err := http.Get(srv.URL + "/exec?command=0")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestPortForward(t *testing.T) {
	// The "pod": an echo server on loopback.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	podPort := ln.Addr().(*net.TCPAddr).Port
	srv := server(t, nil)
	cfg := &rest.Config{Host: srv.URL}
	u, _ := url.Parse(srv.URL + "/portForward")
	dialers := map[string]func() (httpstream.Dialer, error){
		"spdy": func() (httpstream.Dialer, error) {
			tr, up, err := spdy.RoundTripperFor(cfg)
			if err != nil {
				return nil, err
			}
			return spdy.NewDialer(up, &http.Client{Transport: tr}, "POST", u), nil
		},
		"tunnel": func() (httpstream.Dialer, error) { return portforward.NewSPDYOverWebsocketDialer(u, cfg) },
	}
	for name, mk := range dialers {
		t.Run(name, func(t *testing.T) {
			d, err := mk()
			if err != nil {
				t.Fatal(err)
			}
			stop, ready := make(chan struct{}), make(chan struct{})
			pf, err := portforward.NewOnAddresses(d, []string{"127.0.0.1"}, []string{fmt.Sprintf("0:%d", podPort)}, stop, ready, io.Discard, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); _ = pf.ForwardPorts() }()
			defer func() { close(stop); wg.Wait() }()
			select {
			case <-ready:
			case <-time.After(10 * time.Second):
				t.Fatal("port-forward not ready")
			}
			ports, err := pf.GetPorts()
			if err != nil || len(ports) != 1 {
				t.Fatalf("ports %v %v", ports, err)
			}
			for i := range 2 { // two connections over one session
				c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", ports[0].Local))
				if err != nil {
					t.Fatal(err)
				}
				msg := fmt.Sprintf("ping %d", i)
				_, _ = c.Write([]byte(msg))
				buf := make([]byte, len(msg))
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
					t.Fatalf("echo %q %v", buf, err)
				}
				c.Close()
			}
		})
	}
}
