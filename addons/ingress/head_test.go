package ingress

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"
)

func parseString(s string) (*requestHead, int, error) {
	h := &requestHead{}
	n, err := parseRequestHead([]byte(s), h)
	return h, n, err
}

func TestParseRequestHead(t *testing.T) {
	h, n, err := parseString("GET /a/b?x=1 HTTP/1.1\r\nhost: Fast.Test\r\nx-multi-WORD: a \r\nX-Multi-Word:\tb\r\nContent-Length: 0\r\n\r\nGET /next")
	if err != nil {
		t.Fatal(err)
	}
	if want := len("GET /a/b?x=1 HTTP/1.1\r\nhost: Fast.Test\r\nx-multi-WORD: a \r\nX-Multi-Word:\tb\r\nContent-Length: 0\r\n\r\n"); n != want {
		t.Errorf("head length %d, want %d", n, want)
	}
	if string(h.method) != "GET" || string(h.target) != "/a/b?x=1" || h.minor != 1 || string(h.host) != "Fast.Test" {
		t.Errorf("parsed %q %q 1.%d host %q", h.method, h.target, h.minor, h.host)
	}
	var got []string
	for _, f := range h.fields {
		got = append(got, string(f.name)+"="+string(f.value))
	}
	if want := "Host=Fast.Test|X-Multi-Word=a|X-Multi-Word=b|Content-Length=0"; strings.Join(got, "|") != want {
		t.Errorf("fields %q, want %q", strings.Join(got, "|"), want)
	}

	for _, tc := range []struct {
		name, head string
		want       error // errHeadIncomplete, errHeadHandoff or nil for a 400
		code       int
	}{
		{"incomplete", "GET / HTTP/1.1\r\nHost: a\r\n", errHeadIncomplete, 0},
		{"incomplete CR", "GET / HTTP/1.1\r\nHost: a\r", errHeadIncomplete, 0},
		{"no request line spaces", "GET\r\n\r\n", nil, 400},
		{"HTTP/0.9", "GET /\r\n\r\n", nil, 400},
		{"bad version", "GET / HTXP/1.1\r\n\r\n", nil, 400},
		{"extra space", "GET / x HTTP/1.1\r\n\r\n", nil, 400},
		{"bad method", "G(T / HTTP/1.1\r\n\r\n", nil, 400},
		{"control char in target", "GET /\x01 HTTP/1.1\r\n\r\n", nil, 400},
		{"no colon", "GET / HTTP/1.1\r\nHost a\r\n\r\n", nil, 400},
		{"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", nil, 400},
		{"empty name", "GET / HTTP/1.1\r\n: a\r\n\r\n", nil, 400},
		{"NUL in value", "GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", nil, 400},
		{"DEL in value", "GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n", nil, 400},
		{"h2c preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", errHeadHandoff, 0},
		{"HTTP/1.2", "GET / HTTP/1.2\r\n\r\n", errHeadHandoff, 0},
		{"absolute form", "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", errHeadHandoff, 0},
		{"escaped path", "GET /a%20b HTTP/1.1\r\nHost: a\r\n\r\n", errHeadHandoff, 0},
		{"double slash", "GET //a HTTP/1.1\r\nHost: a\r\n\r\n", errHeadHandoff, 0},
		{"asterisk", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", errHeadHandoff, 0},
		{"obs-fold", "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", errHeadHandoff, 0},
		{"bare LF", "GET / HTTP/1.1\nHost: a\n\n", errHeadHandoff, 0},
		{"bare LF in headers", "GET / HTTP/1.1\r\nHost: a\n\r\n", errHeadHandoff, 0},
		{"bare CR", "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", errHeadHandoff, 0},
		{"bare CR incomplete", "GET / HTTP/1.1\r\nX: a\rb", errHeadHandoff, 0},
		{"leading CRLF", "\r\nGET / HTTP/1.1\r\n\r\n", errHeadHandoff, 0},
		{"body", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", errHeadHandoff, 0},
		{"two Content-Length", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n", errHeadHandoff, 0},
		{"Content-Length 00", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 00\r\n\r\n", errHeadHandoff, 0},
		{"Content-Length and chunked", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", errHeadHandoff, 0},
		{"chunked", "POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: chunked\r\n\r\n", errHeadHandoff, 0},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", errHeadHandoff, 0},
	} {
		_, _, err := parseString(tc.head)
		var he *headError
		switch {
		case tc.want != nil && !errors.Is(err, tc.want):
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		case tc.want == nil && (!errors.As(err, &he) || he.code != tc.code):
			t.Errorf("%s: %v, want a %d", tc.name, err, tc.code)
		}
	}
}

// FuzzParseRequestHead: the parser never panics, and a head it accepts
// is one net/http reads the same way: same method, target, version,
// Host and headers, and no body (so the lean path and net/http never
// frame a request differently).
func FuzzParseRequestHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a/b?x=1&y=%zz HTTP/1.1\r\nHost: fast.test:80\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
		"HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
		"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\nhello",
		"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n\tX: a\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: \x00\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX : b\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"GET /~user/a(b)*c,d;e=f:g@h!$&'+ HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
		"GET /?q=\"<>\" HTTP/1.1\r\nHost: a\r\nX-Empty:\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nTransfer-Encoding: identity\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in := append([]byte(nil), b...)
		h := &requestHead{}
		n, err := parseRequestHead(in, h)
		if err != nil {
			var he *headError
			if !errors.Is(err, errHeadIncomplete) && !errors.Is(err, errHeadHandoff) && !errors.As(err, &he) {
				t.Fatalf("unexpected error type %T %v", err, err)
			}
			if he != nil && he.code != 400 {
				t.Fatalf("head error %d", he.code)
			}
			return
		}
		if n <= 0 || n > len(b) || !bytes.HasSuffix(b[:n], []byte("\r\n\r\n")) {
			t.Fatalf("head length %d of %d bytes", n, len(b))
		}
		req, rerr := http.ReadRequest(bufio.NewReader(bytes.NewReader(b[:n])))
		if rerr != nil {
			t.Fatalf("the lean parser accepted %q, net/http refuses it: %v", b[:n], rerr)
		}
		if req.Method != string(h.method) || req.RequestURI != string(h.target) || req.ProtoMinor != h.minor || req.ProtoMajor != 1 {
			t.Fatalf("request line: net/http %s %s %s, lean %q %q 1.%d", req.Method, req.RequestURI, req.Proto, h.method, h.target, h.minor)
		}
		if req.ContentLength != 0 || len(req.TransferEncoding) != 0 || req.Body != http.NoBody {
			t.Fatalf("net/http sees a body (length %d, TE %v) in %q", req.ContentLength, req.TransferEncoding, b[:n])
		}
		if h.hasHost && req.Host != string(h.host) {
			t.Fatalf("Host: net/http %q, lean %q", req.Host, h.host)
		}
		lean := http.Header{}
		for _, fl := range h.fields {
			if string(fl.name) == "Host" {
				continue
			}
			lean[string(fl.name)] = append(lean[string(fl.name)], string(fl.value))
		}
		delete(req.Header, "Host")
		if len(lean) != len(req.Header) {
			t.Fatalf("headers: net/http %q, lean %q", req.Header, lean)
		}
		for k, v := range req.Header {
			if strings.Join(v, "\x00") != strings.Join(lean[k], "\x00") {
				t.Fatalf("header %s: net/http %q, lean %q", k, v, lean[k])
			}
		}
	})
}
