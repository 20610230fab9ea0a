package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/skiffhq/skiff/addons/logging/esapi"
	"github.com/skiffhq/skiff/addons/logging/store"
)

// tally counts a probe's answers and keeps each failure with its time.
type tally struct {
	mu       sync.Mutex
	OK       int
	Failures []string
}

func (tl *tally) record(msg string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if msg == "" {
		tl.OK++
	} else {
		tl.Failures = append(tl.Failures, time.Now().Format("15:04:05.000")+" "+msg)
	}
}

// HTTPProbe sends GETs for Host to URL without pause; anything but a 200
// is a failure.
type HTTPProbe struct {
	tally
	URL, Host string
	Client    *http.Client
}

// Once sends one request and returns what went wrong ("" for a 200).
func (p *HTTPProbe) Once(ctx context.Context) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL, nil)
	if err != nil {
		return err.Error()
	}
	req.Host = p.Host
	resp, err := p.Client.Do(req)
	if err != nil {
		return err.Error()
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return ""
}

// Run probes until ctx ends, pausing 50 ms after a failure.
func (p *HTTPProbe) Run(ctx context.Context) {
	for ctx.Err() == nil {
		msg := p.Once(ctx)
		if ctx.Err() != nil {
			return
		}
		p.record(msg)
		if msg != "" {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// DNSProbe asks Server for Name's A record every 5 ms; an error or an
// answer other than exactly Want is a failure.
type DNSProbe struct {
	tally
	Server, Name, Want string
}

// Once asks once and returns what went wrong ("" for the right answer).
func (p *DNSProbe) Once(ctx context.Context) string {
	m := new(dns.Msg)
	m.SetQuestion(p.Name, dns.TypeA)
	r, _, err := (&dns.Client{Timeout: 2 * time.Second}).ExchangeContext(ctx, m, p.Server)
	switch {
	case err != nil:
		return err.Error()
	case r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1:
		return fmt.Sprintf("rcode %s, %d answers", dns.RcodeToString[r.Rcode], len(r.Answer))
	}
	if a, ok := r.Answer[0].(*dns.A); !ok || a.A.String() != p.Want {
		return fmt.Sprintf("answer %v, want %s", r.Answer[0], p.Want)
	}
	return ""
}

// Run probes until ctx ends.
func (p *DNSProbe) Run(ctx context.Context) {
	for ctx.Err() == nil {
		msg := p.Once(ctx)
		if ctx.Err() != nil {
			return
		}
		p.record(msg)
		time.Sleep(5 * time.Millisecond)
	}
}

// LogSink is a log store with its Elasticsearch API on an address, for
// agents to ship to.
type LogSink struct {
	st  *store.Store
	srv *http.Server
}

// StartLogSink opens a log store in dir and serves it on addr.
func StartLogSink(dir, addr string) (*LogSink, error) {
	st, err := store.Open(store.Options{Dir: dir})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("log sink: %w", err)
	}
	s := &LogSink{st: st, srv: &http.Server{Handler: &esapi.Handler{Store: st}, ReadHeaderTimeout: 10 * time.Second}}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Close stops serving and closes the store.
func (s *LogSink) Close() error {
	_ = s.srv.Close()
	return s.st.Close()
}

// Seqs counts, per pod, how often each "seq N" line is in the store.
func (s *LogSink) Seqs(ctx context.Context) (map[string]map[int]int, error) {
	body := `{"size":10000,"query":{"match_all":{}}}`
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/*/_search", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	s.srv.Handler.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		return nil, fmt.Errorf("search: %d %s", rec.Code, rec.Body.String())
	}
	var res struct {
		Hits struct {
			Hits []struct {
				Source struct {
					Message    string `json:"message"`
					Kubernetes struct {
						PodName string `json:"pod_name"`
					} `json:"kubernetes"`
				} `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
		return nil, err
	}
	out := map[string]map[int]int{}
	for _, h := range res.Hits.Hits {
		var n int
		if _, err := fmt.Sscanf(strings.TrimSpace(h.Source.Message), "seq %d", &n); err != nil {
			continue
		}
		pod := h.Source.Kubernetes.PodName
		if out[pod] == nil {
			out[pod] = map[int]int{}
		}
		out[pod][n]++
	}
	return out, nil
}
