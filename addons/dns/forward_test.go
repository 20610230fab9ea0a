package dns

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// upstream is a resolver the test runs on loopback (tests never send DNS
// traffic off the machine).
type upstream struct {
	addr    string
	queries atomic.Int64
}

func startUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.addr = serve(t, mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		u.queries.Add(1)
		m := new(mdns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		soa := &mdns.SOA{Hdr: mdns.RR_Header{Name: "example.org.", Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: 300},
			Ns: "ns.example.org.", Mbox: "h.example.org.", Minttl: 30}
		switch q.Name {
		case "www.example.org.":
			if q.Qtype == mdns.TypeA {
				m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60}, A: net.ParseIP("192.0.2.1")})
			} else {
				m.Ns = append(m.Ns, soa)
			}
		case "big.example.org.":
			for i := range 40 {
				m.Answer = append(m.Answer, &mdns.TXT{Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeTXT, Class: mdns.ClassINET, Ttl: 60},
					Txt: []string{fmt.Sprintf("record-%02d-padding-padding-padding", i)}})
			}
		default:
			m.Rcode = mdns.RcodeNameError
			m.Ns = append(m.Ns, soa)
		}
		if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
			size := mdns.MinMsgSize
			if o := r.IsEdns0(); o != nil {
				size = int(o.UDPSize())
			}
			m.Truncate(size)
		}
		_ = w.WriteMsg(m)
	}))
	return u
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func forwardingHandler(t *testing.T, up *upstream, capacity int) (*Handler, *fakeClock) {
	h := newTestHandler(testTable())
	clk := &fakeClock{now: time.Unix(1e9, 0)}
	c := newCache(capacity, time.Hour, 30*time.Minute)
	c.now = clk.Now
	h.fwd = newForwarder([]string{up.addr}, nil, c, h.m, 2*time.Second)
	return h, clk
}

func TestForwardAndCache(t *testing.T) {
	up := startUpstream(t)
	h, clk := forwardingHandler(t, up, 100)
	addr := serve(t, h)

	r := query(t, addr, "www.example.org.", mdns.TypeA)
	if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].Header().Ttl != 60 || !r.RecursionAvailable {
		t.Fatalf("forwarded answer: %v", r)
	}
	clk.Add(20 * time.Second)
	r = query(t, addr, "WWW.example.org.", mdns.TypeA)
	if len(r.Answer) != 1 || r.Answer[0].Header().Ttl != 40 || r.Question[0].Name != "WWW.example.org." {
		t.Fatalf("cached answer: %v", r)
	}
	if n := up.queries.Load(); n != 1 {
		t.Fatalf("upstream saw %d queries, want 1 (second from cache)", n)
	}
	clk.Add(41 * time.Second)
	query(t, addr, "www.example.org.", mdns.TypeA)
	if n := up.queries.Load(); n != 2 {
		t.Fatalf("upstream saw %d queries after expiry, want 2", n)
	}

	// Negative answers are cached for the SOA's negative TTL (30s).
	for range 2 {
		if r := query(t, addr, "nx.example.org.", mdns.TypeA); r.Rcode != mdns.RcodeNameError {
			t.Fatalf("rcode %s", mdns.RcodeToString[r.Rcode])
		}
	}
	if r := query(t, addr, "www.example.org.", mdns.TypeAAAA); r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 0 {
		t.Fatalf("NODATA: %v", r)
	}
	query(t, addr, "www.example.org.", mdns.TypeAAAA)
	if n := up.queries.Load(); n != 4 {
		t.Fatalf("upstream saw %d queries, want 4 (negative answers cached)", n)
	}
	clk.Add(31 * time.Second)
	query(t, addr, "nx.example.org.", mdns.TypeA)
	if n := up.queries.Load(); n != 5 {
		t.Fatalf("upstream saw %d queries, want 5 (negative entry expired)", n)
	}
}

func TestCacheBounded(t *testing.T) {
	up := startUpstream(t)
	h, _ := forwardingHandler(t, up, 8)
	addr := serve(t, h)
	for i := range 30 {
		query(t, addr, fmt.Sprintf("n%d.example.org.", i), mdns.TypeA)
	}
	if n := h.fwd.cache.len(); n > 8 {
		t.Fatalf("cache holds %d entries, capacity 8", n)
	}
}

func TestTruncation(t *testing.T) {
	up := startUpstream(t)
	h, _ := forwardingHandler(t, up, 100)
	addr := serve(t, h)

	// Plain UDP: 512 bytes, so the 40 TXT records are cut and TC is set.
	r := query(t, addr, "big.example.org.", mdns.TypeTXT)
	if !r.Truncated || len(r.Answer) >= 40 {
		t.Fatalf("udp without EDNS0: truncated=%v answers=%d", r.Truncated, len(r.Answer))
	}
	// EDNS0 with 4096 bytes: everything fits.
	m := new(mdns.Msg)
	m.SetQuestion("big.example.org.", mdns.TypeTXT)
	m.SetEdns0(4096, false)
	r, _, err := (&mdns.Client{Timeout: 5 * time.Second}).Exchange(m, addr)
	if err != nil {
		t.Fatal(err)
	}
	if r.Truncated || len(r.Answer) != 40 || r.IsEdns0() == nil {
		t.Fatalf("udp with EDNS0: truncated=%v answers=%d opt=%v", r.Truncated, len(r.Answer), r.IsEdns0())
	}
	// TCP: everything.
	m = new(mdns.Msg)
	m.SetQuestion("big.example.org.", mdns.TypeTXT)
	r, _, err = (&mdns.Client{Net: "tcp", Timeout: 5 * time.Second}).Exchange(m, addr)
	if err != nil {
		t.Fatal(err)
	}
	if r.Truncated || len(r.Answer) != 40 {
		t.Fatalf("tcp: truncated=%v answers=%d", r.Truncated, len(r.Answer))
	}
}

func TestUpstreamDown(t *testing.T) {
	h := newTestHandler(testTable())
	// A closed loopback port: the exchange fails fast.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := pc.LocalAddr().String()
	pc.Close()
	h.fwd = newForwarder([]string{dead}, nil, newCache(10, time.Hour, time.Hour), h.m, 500*time.Millisecond)
	addr := serve(t, h)
	if r := query(t, addr, "www.example.org.", mdns.TypeA); r.Rcode != mdns.RcodeServerFailure {
		t.Fatalf("rcode %s, want SERVFAIL", mdns.RcodeToString[r.Rcode])
	}
	// Cluster names still answer.
	if r := query(t, addr, "web.ns1.svc.cluster.local.", mdns.TypeA); r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("cluster answer with upstream down: %v", r)
	}
}

func TestStubDomain(t *testing.T) {
	up := startUpstream(t)
	h := newTestHandler(testTable())
	h.fwd = newForwarder([]string{"127.0.0.1:1"}, map[string][]string{"Example.org": {up.addr}}, nil, h.m, time.Second)
	addr := serve(t, h)
	if r := query(t, addr, "www.example.org.", mdns.TypeA); r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("stub domain answer: %v", r)
	}
}

// TestPrefetch: an entry hit twice with less than a tenth of its TTL left
// is refreshed in the background once, so the query after the old expiry
// is still a cache hit.
func TestPrefetch(t *testing.T) {
	up := startUpstream(t)
	h, clk := forwardingHandler(t, up, 100)
	addr := serve(t, h)
	query(t, addr, "www.example.org.", mdns.TypeA) // miss: stored with TTL 60
	clk.Add(10 * time.Second)
	query(t, addr, "www.example.org.", mdns.TypeA) // hit 1, 50s left
	if n := up.queries.Load(); n != 1 {
		t.Fatalf("upstream saw %d queries, want 1", n)
	}
	clk.Add(45 * time.Second)
	if r := query(t, addr, "www.example.org.", mdns.TypeA); len(r.Answer) != 1 || r.Answer[0].Header().Ttl != 5 {
		t.Fatalf("hit 2 near expiry: %v", r)
	}
	deadline := time.Now().Add(5 * time.Second)
	for up.queries.Load() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no prefetch: upstream saw %d queries", up.queries.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Wait for the refreshed entry to be stored, then pass the old expiry.
	for {
		m, _ := h.fwd.cache.get("www.example.org./1/1")
		if m != nil && len(m.Answer) == 1 && m.Answer[0].Header().Ttl == 60 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the refreshed entry was not stored: %v", m)
		}
		time.Sleep(10 * time.Millisecond)
	}
	clk.Add(10 * time.Second)
	r := query(t, addr, "www.example.org.", mdns.TypeA)
	if len(r.Answer) != 1 || r.Answer[0].Header().Ttl != 50 {
		t.Fatalf("after the old expiry: %v", r)
	}
	if n := up.queries.Load(); n != 2 {
		t.Fatalf("upstream saw %d queries, want 2 (one prefetch, then hits)", n)
	}
}
