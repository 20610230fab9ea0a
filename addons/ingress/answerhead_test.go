package ingress

import (
	"bufio"
	"bytes"
	"net/http"
	"reflect"
	"testing"
)

var plainAnswerSeeds = []string{
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\nDate: Wed, 02 Dec 2026 10:00:00 GMT\r\n\r\nhello",
	"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 204 No Content\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
	"HTTP/1.1 304 Not Modified\r\nEtag: \"x\"\r\nContent-Length: 7\r\n\r\n",
	"HTTP/1.1 404\r\ncontent-length: 3\r\nset-cookie: a=b\r\nSet-Cookie: c=d\r\n\r\nno!",
	"HTTP/1.1 500 Internal Server Error\r\nContent-Length:  12 \t\r\nX-Empty:\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx",
	"HTTP/1.1 200 OK\r\n\r\n",
	"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
	"HTTP/1.1 200 OK\r\nA: b\rc\r\nContent-Length: 1\r\n\r\nx",
	"HTTP/1.1 200 OK\r\n folded: x\r\nContent-Length: 1\r\n\r\nx",
	"HTTP/1.1 200 OK\nContent-Length: 1\n\nx",
	"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx",
	"HTTP/1.1 200 OK\r\nX-Utf8: caf\xc3\xa9\r\nContent-Length: 1\r\n\r\nx",
}

// TestParsePlainAnswer: the common heads are taken (with what
// http.ReadResponse makes of them, see the fuzz test), the others left to
// http.ReadResponse.
func TestParsePlainAnswer(t *testing.T) {
	for _, c := range []struct {
		head string
		req  *http.Request
		want bool
	}{
		{plainAnswerSeeds[0], leanOther, true},
		{plainAnswerSeeds[1], leanOther, true},
		{plainAnswerSeeds[2], leanOther, true},
		{plainAnswerSeeds[3], leanOther, true},
		{plainAnswerSeeds[4], leanOther, true},
		{plainAnswerSeeds[5], leanOther, true},
		{plainAnswerSeeds[6], leanOther, false},  // chunked
		{plainAnswerSeeds[7], leanOther, false},  // Connection
		{plainAnswerSeeds[8], leanOther, false},  // read until close
		{plainAnswerSeeds[8], leanHEAD, true},    // ... but not for HEAD
		{plainAnswerSeeds[9], leanOther, false},  // HTTP/1.0
		{plainAnswerSeeds[10], leanOther, false}, // 1xx
		{plainAnswerSeeds[11], leanOther, false}, // two Content-Lengths
		{plainAnswerSeeds[12], leanOther, false}, // lone CR
		{plainAnswerSeeds[13], leanOther, false}, // obs-fold
		{plainAnswerSeeds[14], leanOther, false}, // bare LF
		{plainAnswerSeeds[15], leanOther, false},
		{plainAnswerSeeds[16], leanOther, false},                       // non-ASCII value
		{"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n", leanOther, false}, // incomplete
	} {
		resp, n, ok := parsePlainAnswer([]byte(c.head), c.req)
		if ok != c.want {
			t.Errorf("%q (%s): taken %v, want %v", c.head, c.req.Method, ok, c.want)
			continue
		}
		if ok {
			checkLikeReadResponse(t, []byte(c.head), c.req, resp, n)
		}
	}
	resp, _, _ := parsePlainAnswer([]byte(plainAnswerSeeds[4]), leanOther)
	if got := resp.Header["Set-Cookie"]; len(got) != 2 || got[0] != "a=b" || got[1] != "c=d" {
		t.Errorf("Set-Cookie: %q", got)
	}
}

// checkLikeReadResponse: http.ReadResponse reads data the same way and
// consumes the same head.
func checkLikeReadResponse(t *testing.T, data []byte, req *http.Request, got *http.Response, n int) {
	t.Helper()
	src := bytes.NewReader(data)
	br := bufio.NewReaderSize(src, len(data)+16)
	want, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatalf("%q taken, but http.ReadResponse: %v", data, err)
	}
	consumed := len(data) - br.Buffered() - src.Len()
	if n != consumed {
		t.Errorf("%q: head of %d bytes, ReadResponse read %d", data, n, consumed)
	}
	if got.Status != want.Status || got.StatusCode != want.StatusCode || got.Proto != want.Proto ||
		got.ProtoMajor != want.ProtoMajor || got.ProtoMinor != want.ProtoMinor || got.ContentLength != want.ContentLength ||
		got.Close != want.Close || len(want.TransferEncoding) != 0 || want.Trailer != nil || got.Request != want.Request ||
		(got.Body == http.NoBody) != (want.Body == http.NoBody) {
		t.Errorf("%q:\n got %q %d %s %d.%d cl=%d close=%v nobody=%v\nwant %q %d %s %d.%d cl=%d close=%v nobody=%v te=%v trailer=%v", data,
			got.Status, got.StatusCode, got.Proto, got.ProtoMajor, got.ProtoMinor, got.ContentLength, got.Close, got.Body == http.NoBody,
			want.Status, want.StatusCode, want.Proto, want.ProtoMajor, want.ProtoMinor, want.ContentLength, want.Close, want.Body == http.NoBody,
			want.TransferEncoding, want.Trailer)
	}
	if !reflect.DeepEqual(got.Header, want.Header) {
		t.Errorf("%q: header\n got %q\nwant %q", data, got.Header, want.Header)
	}
}

// FuzzParsePlainAnswer: every head parsePlainAnswer takes is one
// http.ReadResponse reads the same way.
func FuzzParsePlainAnswer(f *testing.F) {
	for _, s := range plainAnswerSeeds {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, head bool) {
		req := leanOther
		if head {
			req = leanHEAD
		}
		resp, n, ok := parsePlainAnswer(data, req)
		// Into a reused plainAnswer that held another answer, from a
		// buffer overwritten afterwards: the same result.
		var a plainAnswer
		if _, _, ok := parsePlainAnswerInto(&a, []byte(plainAnswerSeeds[4]), leanOther); !ok {
			t.Fatal("seed 4 not taken")
		}
		buf := bytes.Clone(data)
		resp2, n2, ok2 := parsePlainAnswerInto(&a, buf, req)
		clear(buf)
		if ok2 != ok {
			t.Fatalf("%q: taken %v fresh, %v reused", data, ok, ok2)
		}
		if !ok {
			return
		}
		checkLikeReadResponse(t, data, req, resp, n)
		checkLikeReadResponse(t, data, req, resp2, n2)
	})
}

// TestParsePlainAnswerReuse: answers parsed one after the other into one
// plainAnswer (more headers, fewer, none, repeated names) each come out
// as http.ReadResponse reads them, whatever the one before held.
func TestParsePlainAnswerReuse(t *testing.T) {
	var a plainAnswer
	for round := range 3 {
		for i, s := range plainAnswerSeeds {
			for _, req := range []*http.Request{leanOther, leanHEAD} {
				buf := []byte(s)
				resp, n, ok := parsePlainAnswerInto(&a, buf, req)
				_, _, want := parsePlainAnswer([]byte(s), req)
				if ok != want {
					t.Fatalf("round %d seed %d: taken %v, fresh %v", round, i, ok, want)
				}
				if !ok {
					continue
				}
				clear(buf) // the answer must not point into the read buffer
				if resp != &a.resp {
					t.Errorf("seed %d: the Response was not reused", i)
				}
				checkLikeReadResponse(t, []byte(s), req, resp, n)
			}
		}
	}
	// A head over the reuse bounds gets its own memory.
	big := "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"
	for i := range plainAnswerReuseLines + 1 {
		big += "X-H" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + ": v\r\n"
	}
	big += "\r\n"
	resp, n, ok := parsePlainAnswerInto(&a, []byte(big), leanOther)
	if !ok || resp == &a.resp {
		t.Fatalf("big head: taken %v, reused %v", ok, resp == &a.resp)
	}
	checkLikeReadResponse(t, []byte(big), leanOther, resp, n)
}

// TestParsePlainAnswerAllocs: a reused plainAnswer takes no allocation
// for a common answer head.
func TestParsePlainAnswerAllocs(t *testing.T) {
	var a plainAnswer
	head := []byte(plainAnswerSeeds[0])
	if n := testing.AllocsPerRun(100, func() {
		if _, _, ok := parsePlainAnswerInto(&a, head, leanOther); !ok {
			t.Fatal("not taken")
		}
	}); n != 0 {
		t.Errorf("%v allocations per parse, want 0", n)
	}
}
