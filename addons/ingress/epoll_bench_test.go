//go:build linux

package ingress

import (
	"bytes"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// rawBackend answers every request head it reads with answer (a
// keep-alive backend that allocates nothing per request, so that the
// allocations a benchmark counts are the proxy's).
func rawBackend(tb testing.TB, answer func(head []byte) []byte) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				buf := make([]byte, 16<<10)
				n := 0
				for {
					if i := bytes.Index(buf[:n], []byte("\r\n\r\n")); i >= 0 {
						if _, err := c.Write(answer(buf[:i+4])); err != nil {
							return
						}
						n = copy(buf, buf[i+4:n])
						continue
					}
					m, err := c.Read(buf[n:])
					if err != nil {
						return
					}
					n += m
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// rawClient sends req and reads one answer with a Content-Length (no
// allocation per request); it returns the answer's head and body,
// valid until the next call.
type rawClient struct {
	c    net.Conn
	buf  []byte
	n    int // bytes in buf
	used int // bytes of the previous answer
}

func (rc *rawClient) do(req []byte) (head, body []byte, err error) {
	rc.n = copy(rc.buf, rc.buf[rc.used:rc.n])
	rc.used = 0
	if _, err := rc.c.Write(req); err != nil {
		return nil, nil, err
	}
	for {
		if i := bytes.Index(rc.buf[:rc.n], []byte("\r\n\r\n")); i >= 0 {
			head = rc.buf[:i+4]
			cl := -1
			if j := bytes.Index(head, []byte("\r\nContent-Length: ")); j >= 0 {
				v := head[j+len("\r\nContent-Length: "):]
				v = v[:bytes.IndexByte(v, '\r')]
				cl, _ = strconv.Atoi(string(v))
			}
			if cl < 0 {
				return nil, nil, fmt.Errorf("no Content-Length in %q", head)
			}
			if rc.n >= i+4+cl {
				rc.used = i + 4 + cl
				return head, rc.buf[i+4 : i+4+cl], nil
			}
		}
		if rc.n == len(rc.buf) {
			return nil, nil, fmt.Errorf("answer too long")
		}
		m, err := rc.c.Read(rc.buf[rc.n:])
		if err != nil {
			return nil, nil, err
		}
		rc.n += m
	}
}

// BenchmarkEpollGETRaw: keep-alive GETs of a 128-byte answer through the
// epoll loop, with a client and backend that allocate nothing per
// request: allocs/op and B/op are the proxy's.
func BenchmarkEpollGETRaw(b *testing.B) {
	if !epollSupported {
		b.Skip("no epoll loop")
	}
	body := strings.Repeat("x", 128)
	answer := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: Mon, 02 Jan 2006 15:04:05 GMT\r\nContent-Length: 128\r\n\r\n" + body)
	be := rawBackend(b, func([]byte) []byte { return answer })
	e := newFastEnv(b, nil, be)
	addr, _ := leanFront(b, e, true)
	req := []byte("GET /bench?x=1 HTTP/1.1\r\nHost: fast.test\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	b.ReportAllocs()
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		rc := &rawClient{c: c, buf: make([]byte, 8<<10)}
		for pb.Next() {
			_, got, err := rc.do(req)
			if err != nil {
				b.Error(err)
				return
			}
			if len(got) != len(body) {
				b.Errorf("body %q", got)
				return
			}
		}
	})
}
