package streaming_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/skiffhq/skiff/nodeagent/streaming"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FuzzParseOptions: any exec/attach query parses to options with at least
// one stream and never both a tty and stderr, or is refused.
func FuzzParseOptions(f *testing.F) {
	for _, q := range []string{"stdin=true&stdout=true&tty=true&command=sh", "input=1&output=1&error=1&command=ls&command=-l",
		"stderr=1&tty=1", "", "stdout=maybe", "command=%00"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		r := &http.Request{URL: &url.URL{Path: "/exec/ns/pod/c", RawQuery: q}}
		o, err := streaming.ParseOptions(r)
		if err != nil {
			return
		}
		if !o.Stdin && !o.Stdout && !o.Stderr {
			t.Fatal("options without any stream accepted")
		}
		if o.TTY && o.Stderr {
			t.Fatal("tty with a separate stderr")
		}
	})
}

// FuzzRemoteCommandFrames sends arbitrary frames over a real v5.channel.k8s.io
// WebSocket session (stdin, stdout and a tty, so the resize channel is
// read): whatever the frames, the session ends when the client closes
// stdin, stdout carries exactly the stdin bytes the client sent (the
// command echoes them), and the final status is Success. Frames on
// unknown or write-only channels and bad resize messages must not wedge or
// crash the session.
//
// The input is a sequence of frames, each a length byte followed by that
// many bytes (channel byte first). Stream-close signals (255) other than
// for the resize channel are left out: the test sends stdin's close itself.
func FuzzRemoteCommandFrames(f *testing.F) {
	f.Add([]byte("\x06\x00hello\x02\x00\n"))
	f.Add([]byte("\x1c\x04{\"Width\":80,\"Height\":24}\x06\x00abcde"))
	f.Add([]byte("\x05\x04nope\x1c\x04{\"Width\":80,\"Height\":24}\x04\x00xyz"))
	f.Add([]byte("\x03\x09ab\x03\x01ab\x03\x03ab\x02\xff\x04\x03\x00ok"))
	f.Add([]byte("\x00\x01\x00\x02\x04\x00"))
	mux := http.NewServeMux()
	mux.HandleFunc("/exec", func(w http.ResponseWriter, r *http.Request) {
		opts, err := streaming.ParseOptions(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		streaming.ServeRemoteCommand(w, r, opts, streaming.Config{}, func(ctx context.Context, s streaming.Streams) error {
			go func() {
				for range s.Resize {
				}
			}()
			_, err := io.Copy(s.Stdout, s.Stdin)
			return err
		})
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http") + "/exec?stdin=1&stdout=1&tty=1&command=cat"
	f.Fuzz(func(t *testing.T, in []byte) {
		d := websocket.Dialer{Subprotocols: []string{"v5.channel.k8s.io"}, HandshakeTimeout: 10 * time.Second}
		conn, resp, err := d.Dial(wsURL, nil)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer conn.Close()
		if resp.Header.Get("Sec-WebSocket-Protocol") != "v5.channel.k8s.io" {
			t.Fatalf("protocol %q", resp.Header.Get("Sec-WebSocket-Protocol"))
		}
		var want bytes.Buffer
		deadline := time.Now().Add(30 * time.Second)
		_ = conn.SetWriteDeadline(deadline)
		for len(in) > 0 {
			n := int(in[0])
			in = in[1:]
			n = min(n, len(in))
			frame := in[:n]
			in = in[n:]
			if len(frame) > 0 && frame[0] == 255 && !(len(frame) == 2 && frame[1] == 4) {
				continue
			}
			if len(frame) > 0 && frame[0] == 0 {
				want.Write(frame[1:])
			}
			if err := conn.WriteMessage(websocket.BinaryMessage, frame); err != nil {
				t.Fatalf("write: %v", err)
			}
		}
		if err := conn.WriteMessage(websocket.BinaryMessage, []byte{255, 0}); err != nil {
			t.Fatalf("write close: %v", err)
		}
		_ = conn.SetReadDeadline(deadline)
		var got bytes.Buffer
		for {
			_, msg, err := conn.ReadMessage()
			if err != nil {
				t.Fatalf("session ended without a status (stdout so far %d of %d bytes): %v", got.Len(), want.Len(), err)
			}
			if len(msg) == 0 {
				continue
			}
			switch msg[0] {
			case 1:
				got.Write(msg[1:])
				continue
			case 3:
			default:
				t.Fatalf("frame on channel %d", msg[0])
			}
			if len(msg) == 1 {
				continue // the "session established" frame
			}
			var st metav1.Status
			if err := json.Unmarshal(msg[1:], &st); err != nil {
				t.Fatalf("bad status %q: %v", msg[1:], err)
			}
			if st.Status != metav1.StatusSuccess {
				t.Fatalf("status %+v", st)
			}
			break
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("stdout %q, want %q", got.Bytes(), want.Bytes())
		}
	})
}
