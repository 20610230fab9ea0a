package ingress

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// keepHandler is an access log handler that keeps every record as it
// came (a handler may keep records: their strings must not change).
type keepHandler struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *keepHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *keepHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r)
	h.mu.Unlock()
	return nil
}
func (h *keepHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *keepHandler) WithGroup(string) slog.Handler      { return h }

// TestLeanReuseAcrossRequests: many keep-alive requests on each of
// several concurrent connections (some pipelined), with different paths,
// queries, request IDs and answers of different header counts back to
// back, each get their own answer: the memory the connections reuse from
// one request to the next (request state, request IDs, answer heads)
// never shows one request's data in another's answer, backend request or
// access log record.
func TestLeanReuseAcrossRequests(t *testing.T) {
	forLeanModes(t, func(t *testing.T, epoll bool) {
		be := newCountingBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n, _ := strconv.Atoi(r.Header.Get("X-N"))
			for k := range n {
				w.Header().Set(fmt.Sprintf("X-Echo-%d", k), fmt.Sprintf("%s-%d", r.URL.Path, k))
			}
			body := r.URL.RequestURI() + "|" + r.Header.Get("X-Request-Id") + "|" + r.Header.Get("X-Tag")
			switch n {
			case 0:
				w.Header().Set("Content-Type", "text/plain")
			case 3:
				w.WriteHeader(http.StatusNoContent) // no body, fewer headers
				return
			case 4:
				body = strings.Repeat(body, 40) // a longer body: several reads
			}
			// n 1, 2: no Content-Type (sniffed)
			_, _ = io.WriteString(w, body)
		}))
		e := newFastEnv(t, nil, be.addr())
		logs := &keepHandler{}
		e.px.accessLog = slog.New(logs)
		addr, _ := leanFront(t, e, epoll)

		const conns, reqs = 6, 120
		var mu sync.Mutex
		seenID := map[string]string{} // uri -> the answer's X-Request-Id
		var wg sync.WaitGroup
		for ci := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Error(err)
					return
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				br := bufio.NewReader(c)
				type sent struct {
					uri, rid, tag string
					n             int
				}
				head := func(i int) (string, sent) {
					s := sent{uri: fmt.Sprintf("/c%d/r%d/%s?q=%d", ci, i, strings.Repeat("p", i%37), i), n: (i + ci) % 5}
					s.tag = fmt.Sprintf("tag-%d-%d-%s", ci, i, strings.Repeat("t", (i*7)%50))
					var b strings.Builder
					fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: fast.test\r\nX-N: %d\r\nX-Tag: %s\r\n", s.uri, s.n, s.tag)
					if i%3 == 0 {
						s.rid = fmt.Sprintf("client-%d-%d", ci, i)
						fmt.Fprintf(&b, "X-Request-Id: %s\r\n", s.rid)
					}
					if i%4 == 1 {
						b.WriteString("User-Agent: agent-" + strconv.Itoa(i) + "\r\n")
					}
					b.WriteString("\r\n")
					return b.String(), s
				}
				for i := 0; i < reqs; {
					// Every fifth round sends two requests in one write.
					batch := 1
					if i%5 == 4 && i+1 < reqs {
						batch = 2
					}
					var wire string
					var want []sent
					for j := range batch {
						h, s := head(i + j)
						wire += h
						want = append(want, s)
					}
					i += batch
					if _, err := io.WriteString(c, wire); err != nil {
						t.Error(err)
						return
					}
					for _, s := range want {
						resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
						if err != nil {
							t.Errorf("%s: %v", s.uri, err)
							return
						}
						body, err := io.ReadAll(resp.Body)
						resp.Body.Close()
						if err != nil {
							t.Errorf("%s: body: %v", s.uri, err)
							return
						}
						rid := resp.Header.Get("X-Request-Id")
						if s.rid != "" && rid != s.rid || s.rid == "" && len(rid) != 32 {
							t.Errorf("%s: X-Request-Id %q, sent %q", s.uri, rid, s.rid)
						}
						for k := range 5 {
							got := resp.Header.Get(fmt.Sprintf("X-Echo-%d", k))
							want := ""
							if k < s.n {
								want = fmt.Sprintf("%s-%d", s.uri[:strings.IndexByte(s.uri, '?')], k)
							}
							if got != want {
								t.Errorf("%s: X-Echo-%d %q, want %q", s.uri, k, got, want)
							}
						}
						wantBody := s.uri + "|" + rid + "|" + s.tag
						switch s.n {
						case 3:
							wantBody = ""
							if resp.StatusCode != http.StatusNoContent {
								t.Errorf("%s: status %d", s.uri, resp.StatusCode)
							}
						case 4:
							wantBody = strings.Repeat(wantBody, 40)
						}
						if string(body) != wantBody {
							t.Errorf("%s: body %q, want %q", s.uri, body, wantBody)
						}
						ct := resp.Header.Get("Content-Type")
						if s.n != 3 && ct != "text/plain; charset=utf-8" && ct != "text/plain" {
							t.Errorf("%s: Content-Type %q", s.uri, ct)
						}
						mu.Lock()
						seenID[s.uri] = rid
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		// The records were kept as they came: each still names its own
		// request.
		deadline := time.Now().Add(5 * time.Second)
		for {
			logs.mu.Lock()
			n := len(logs.recs)
			logs.mu.Unlock()
			if n >= conns*reqs || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		logs.mu.Lock()
		defer logs.mu.Unlock()
		if len(logs.recs) != conns*reqs {
			t.Fatalf("%d access records, want %d", len(logs.recs), conns*reqs)
		}
		for _, r := range logs.recs {
			a := map[string]string{}
			r.Attrs(func(at slog.Attr) bool {
				a[at.Key] = at.Value.String()
				return true
			})
			if a["host"] != "fast.test" || a["method"] != "GET" {
				t.Errorf("record %v: host %q method %q", a, a["host"], a["method"])
			}
			if want, ok := seenID[a["uri"]]; !ok || a["request_id"] != want {
				t.Errorf("record for %q: request_id %q, the answer had %q", a["uri"], a["request_id"], want)
			}
			ri, _ := strconv.Atoi(a["uri"][strings.Index(a["uri"], "/r")+2 : strings.LastIndexByte(a["uri"], '/')])
			if wantUA := "agent-" + strconv.Itoa(ri); ri%4 == 1 && a["user_agent"] != wantUA {
				t.Errorf("record for %q: user_agent %q", a["uri"], a["user_agent"])
			}
		}
	})
}
