package dns

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// listenTest serves h through the add-on's own listener set-up
// (Server.listen: batched UDP on Linux, TCP) and returns the address.
func listenTest(t *testing.T, h *Handler, addr string) string {
	t.Helper()
	s := &Server{log: slog.New(slog.DiscardHandler), h: h}
	bound, err := s.listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, srv := range s.servers {
			_ = srv.Shutdown()
		}
	})
	return bound
}

// bigTable is testTable plus a headless service whose A answer (60
// endpoints) does not fit 512 bytes.
func bigTable() *table {
	tb := testTable()
	var eps []discoveryv1.Endpoint
	for i := range 60 {
		eps = append(eps, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.42.1.%d", i+1)}})
	}
	big := svc("ns1", "big", func(s *corev1.Service) { s.Spec.ClusterIP = corev1.ClusterIPNone })
	tb.apply(map[string]*service{"ns1/big": buildService(big, []*discoveryv1.EndpointSlice{slice("ns1", "big", nil, eps...)})}, nil)
	return tb
}

// TestBatchAnswersLikeFullPath sends a burst of hits (queries asked
// before) and misses (first queries, packets the fast path never takes)
// without waiting, so that the server reads them in batches, and checks
// every answer byte for byte against the full path's answer to the same
// query over TCP — except a truncated UDP answer, checked for TC within
// 512 bytes while TCP carries the whole answer.
func TestBatchAnswersLikeFullPath(t *testing.T) {
	h := newTestHandler(bigTable())
	addr := listenTest(t, h, "127.0.0.1:0")

	type query struct {
		name  string
		qtype uint16
		edns  bool
	}
	hits := []query{
		{"web.ns1.svc.cluster.local.", mdns.TypeA, false},
		{"WEB.ns1.svc.cluster.local.", mdns.TypeA, true},
		{"dual.ns1.svc.cluster.local.", mdns.TypeAAAA, false},
		{"_http._tcp.web.ns1.svc.cluster.local.", mdns.TypeSRV, true},
		{"nope.ns1.svc.cluster.local.", mdns.TypeA, false},
		{"hl.ns1.svc.cluster.local.", mdns.TypeA, false},
		{"big.ns1.svc.cluster.local.", mdns.TypeA, false}, // truncated
		{"big.ns1.svc.cluster.local.", mdns.TypeA, true},  // whole (EDNS 4096)
		{"20.0.43.10.in-addr.arpa.", mdns.TypePTR, false},
	}
	pack := func(q query, id uint16, mut func(*mdns.Msg)) []byte {
		m := new(mdns.Msg)
		m.SetQuestion(q.name, q.qtype)
		m.Id = id
		if q.edns {
			m.SetEdns0(4096, false)
		}
		if mut != nil {
			mut(m)
		}
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// Warm the fast path: one full-path answer per hit query.
	for _, q := range hits {
		c := &mdns.Client{Timeout: 5 * time.Second}
		m := new(mdns.Msg)
		if err := m.Unpack(pack(q, 1, nil)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Exchange(m, addr); err != nil {
			t.Fatalf("%s: %v", q.name, err)
		}
	}
	before := h.fast.hits.Load()

	// The burst: every hit four times, misses in between.
	cookie := func(m *mdns.Msg) {
		m.SetEdns0(1232, false)
		m.IsEdns0().Option = []mdns.EDNS0{&mdns.EDNS0_COOKIE{Code: mdns.EDNS0COOKIE, Cookie: "0102030405060708"}}
	}
	var burst [][]byte
	var truncated []uint16
	id := uint16(100)
	for round := range 4 {
		for _, q := range hits {
			burst = append(burst, pack(q, id, nil))
			if q.name == "big.ns1.svc.cluster.local." && !q.edns {
				truncated = append(truncated, id)
			}
			id++
		}
		// Misses: first queries (NXDOMAIN and NOERROR), a non-plain packet,
		// an undecodable question type for the full path.
		burst = append(burst,
			pack(query{fmt.Sprintf("new%d.ns1.svc.cluster.local.", round), mdns.TypeA, false}, id, nil),
			pack(query{"dual.ns1.svc.cluster.local.", mdns.TypeA, round%2 == 0}, id+1, nil),
			pack(query{"web.ns1.svc.cluster.local.", mdns.TypeTXT, false}, id+2, cookie),
			pack(query{"web.ns1.svc.cluster.local.", mdns.TypeOPT, false}, id+3, nil),
		)
		id += 4
	}
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.(*net.UDPConn).SetReadBuffer(1 << 20)
	sent := map[uint16][]byte{}
	for _, b := range burst {
		sent[binary.BigEndian.Uint16(b)] = b
		if _, err := conn.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	got := map[uint16][]byte{}
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 65536)
	for len(got) < len(burst) {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("%d of %d answers: %v", len(got), len(burst), err)
		}
		rid := binary.BigEndian.Uint16(buf)
		if _, ok := sent[rid]; !ok || got[rid] != nil {
			t.Fatalf("unexpected answer id %d", rid)
		}
		got[rid] = append([]byte(nil), buf[:n]...)
	}
	if d := h.fast.hits.Load() - before; d < int64(4*len(hits)) {
		t.Fatalf("fast path answered %d of the burst, want at least %d", d, 4*len(hits))
	}

	tcp := &mdns.Client{Net: "tcp", Timeout: 5 * time.Second}
	for rid, req := range sent {
		q := new(mdns.Msg)
		if err := q.Unpack(req); err != nil {
			t.Fatal(err)
		}
		ref, _, err := tcp.Exchange(q, addr)
		if err != nil {
			t.Fatalf("tcp %v: %v", q.Question, err)
		}
		ref.Id = rid
		want, err := ref.Pack()
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(truncated, rid) {
			r := new(mdns.Msg)
			if err := r.Unpack(got[rid]); err != nil {
				t.Fatal(err)
			}
			if !r.Truncated || len(got[rid]) > mdns.MinMsgSize || ref.Truncated || len(ref.Answer) != 60 {
				t.Fatalf("truncation: udp TC=%v %d bytes, tcp TC=%v %d answers", r.Truncated, len(got[rid]), ref.Truncated, len(ref.Answer))
			}
			continue
		}
		if !bytes.Equal(got[rid], want) {
			r := new(mdns.Msg)
			_ = r.Unpack(got[rid])
			t.Fatalf("id %d %v: udp answer\n%v\ndiffers from tcp\n%v", rid, q.Question, r, ref)
		}
	}
}

// TestWildcardRepliesFromQueriedAddress: a server on a wildcard address
// answers from the address each query was sent to (a connected client
// socket drops anything else), on the full path (first query) and the
// fast path (repeats), for IPv4 and, when the host has ::1, IPv6.
func TestWildcardRepliesFromQueriedAddress(t *testing.T) {
	h := newTestHandler(testTable())
	// Each host is asked its own spelling of the name, so that its first
	// query takes the full path.
	spelling := func(k int) string {
		b := []byte("web")
		for i := range b {
			if k&(1<<i) != 0 {
				b[i] -= 'a' - 'A'
			}
		}
		return string(b) + ".ns1.svc.cluster.local."
	}
	for ti, tc := range []struct {
		listen string
		dial   []string
	}{
		{"0.0.0.0:0", []string{"127.0.0.1", "127.0.0.2"}},
		{"[::]:0", []string{"::1", "127.0.0.3"}},
	} {
		t.Run(tc.listen, func(t *testing.T) {
			if tc.listen == "[::]:0" {
				c, err := net.ListenPacket("udp", "[::1]:0")
				if err != nil {
					t.Skipf("no IPv6 loopback: %v", err)
				}
				c.Close()
			}
			bound := listenTest(t, h, tc.listen)
			_, port, _ := net.SplitHostPort(bound)
			before := h.fast.hits.Load()
			for hi, host := range tc.dial {
				addr := net.JoinHostPort(host, port)
				name := spelling(ti*len(tc.dial) + hi)
				for i := range 3 {
					conn, err := net.Dial("udp", addr)
					if err != nil {
						t.Fatal(err)
					}
					c := &mdns.Conn{Conn: conn}
					m := new(mdns.Msg)
					m.SetQuestion(name, mdns.TypeA)
					m.Id = uint16(i + 1)
					_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
					if err := c.WriteMsg(m); err != nil {
						t.Fatal(err)
					}
					r, err := c.ReadMsg()
					conn.Close()
					if err != nil {
						t.Fatalf("%s, query %d: no answer from the queried address: %v", addr, i, err)
					}
					if r.Id != m.Id || len(r.Answer) != 1 || r.Question[0].Name != name {
						t.Fatalf("%s: answer %v", addr, r)
					}
				}
			}
			if h.fast.hits.Load()-before != int64(2*len(tc.dial)) {
				t.Fatalf("fast path answers: %d", h.fast.hits.Load()-before)
			}
		})
	}
}

// TestFastPathForwarded: a forwarded answer served from the cache is
// repeated by the fast path with its TTLs counted down exactly as the full
// path counts them (byte for byte the full path's answer over TCP), for
// positive and negative answers, and the fast path stops at the entry's
// prefetch window and expiry: there the full path answers (and
// prefetches, or asks upstream again).
func TestFastPathForwarded(t *testing.T) {
	t.Run("listener", func(t *testing.T) {
		testFastPathForwarded(t, func(h *Handler) string { return listenTest(t, h, "127.0.0.1:0") })
	})
	t.Run("udpconn", func(t *testing.T) {
		testFastPathForwarded(t, func(h *Handler) string { return serve(t, h) })
	})
}

func testFastPathForwarded(t *testing.T, serve func(*Handler) string) {
	up := startUpstream(t)
	h, clk := forwardingHandler(t, up, 100)
	addr := serve(h)
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	id := uint16(0)
	// ask returns the UDP answer's bytes and whether the fast path sent it.
	ask := func(name string, qtype uint16) ([]byte, bool) {
		t.Helper()
		id++
		m := new(mdns.Msg)
		m.SetQuestion(name, qtype)
		m.Id = id
		b, _ := m.Pack()
		before := h.fast.hits.Load()
		if _, err := conn.Write(b); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 4096)
		n, err := conn.Read(buf)
		if err != nil || binary.BigEndian.Uint16(buf) != id {
			t.Fatalf("%s: %v (%x)", name, err, buf[:n])
		}
		return buf[:n], h.fast.hits.Load() > before
	}
	// full is the full path's answer over TCP, with the UDP answer's ID.
	full := func(name string, qtype uint16) []byte {
		t.Helper()
		m := new(mdns.Msg)
		m.SetQuestion(name, qtype)
		r, _, err := (&mdns.Client{Net: "tcp", Timeout: 5 * time.Second}).Exchange(m, addr)
		if err != nil {
			t.Fatal(err)
		}
		r.Id = id
		b, _ := r.Pack()
		return b
	}
	ttl := func(b []byte, section int) uint32 {
		t.Helper()
		m := new(mdns.Msg)
		if err := m.Unpack(b); err != nil {
			t.Fatal(err)
		}
		rrs := m.Answer
		if section == 1 {
			rrs = m.Ns
		}
		if len(rrs) != 1 {
			t.Fatalf("answer %v", m)
		}
		return rrs[0].Header().Ttl
	}

	// Positive answer, TTL 60.
	if _, fast := ask("www.example.org.", mdns.TypeA); fast {
		t.Fatal("a cache miss answered by the fast path")
	}
	if _, fast := ask("www.example.org.", mdns.TypeA); fast {
		t.Fatal("the first cache hit answered by the fast path")
	}
	b, fast := ask("www.example.org.", mdns.TypeA)
	if !fast || ttl(b, 0) != 60 {
		t.Fatalf("fast=%v ttl=%d, want the fast path with 60", fast, ttl(b, 0))
	}
	clk.Add(25 * time.Second)
	b, fast = ask("www.example.org.", mdns.TypeA)
	if !fast || ttl(b, 0) != 35 || !bytes.Equal(b, full("www.example.org.", mdns.TypeA)) {
		t.Fatalf("after 25s: fast=%v ttl=%d, or not the full path's answer", fast, ttl(b, 0))
	}
	// 5s left, under a tenth of 60: the full path answers and prefetches.
	clk.Add(30 * time.Second)
	b, fast = ask("www.example.org.", mdns.TypeA)
	if fast || ttl(b, 0) != 5 {
		t.Fatalf("in the prefetch window: fast=%v ttl=%d", fast, ttl(b, 0))
	}
	deadline := time.Now().Add(10 * time.Second)
	for up.queries.Load() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no prefetch: upstream saw %d queries", up.queries.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Negative answer: NXDOMAIN with the SOA (TTL 300, negative TTL 30).
	ask("nx.example.org.", mdns.TypeA)
	ask("nx.example.org.", mdns.TypeA)
	clk.Add(20 * time.Second)
	b, fast = ask("nx.example.org.", mdns.TypeA)
	if !fast || ttl(b, 1) != 280 || !bytes.Equal(b, full("nx.example.org.", mdns.TypeA)) {
		t.Fatalf("negative answer after 20s: fast=%v soa ttl=%d, or not the full path's answer", fast, ttl(b, 1))
	}
	// Past its expiry: upstream again, never the old answer.
	n := up.queries.Load()
	clk.Add(31 * time.Second)
	b, fast = ask("nx.example.org.", mdns.TypeA)
	if fast || ttl(b, 1) != 300 || up.queries.Load() != n+1 {
		t.Fatalf("after expiry: fast=%v soa ttl=%d upstream queries %d (was %d)", fast, ttl(b, 1), up.queries.Load(), n)
	}
}

// TestTTLOffsets: the TTL fields found in a packed, compressed message
// are exactly its records' (not the OPT record's flags).
func TestTTLOffsets(t *testing.T) {
	m := new(mdns.Msg)
	m.SetQuestion("www.example.org.", mdns.TypeA)
	m.Response = true
	m.Compress = true
	for i := range 3 {
		m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: "www.example.org.", Rrtype: mdns.TypeA, Class: 1, Ttl: uint32(100 + i)}, A: net.IPv4(192, 0, 2, byte(i))})
	}
	m.Ns = append(m.Ns, &mdns.NS{Hdr: mdns.RR_Header{Name: "example.org.", Rrtype: mdns.TypeNS, Class: 1, Ttl: 200}, Ns: "ns.example.org."})
	m.SetEdns0(4096, true)
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	offs, vals, ok := ttlOffsets(b)
	if !ok || !slices.Equal(vals, []uint32{100, 101, 102, 200}) {
		t.Fatalf("ok=%v ttls %v", ok, vals)
	}
	for i, o := range offs {
		binary.BigEndian.PutUint32(b[o:], uint32(7+i))
	}
	var got mdns.Msg
	if err := got.Unpack(b); err != nil {
		t.Fatal(err)
	}
	if got.Answer[0].Header().Ttl != 7 || got.Answer[2].Header().Ttl != 9 || got.Ns[0].Header().Ttl != 10 || !got.IsEdns0().Do() {
		t.Fatalf("patched: %v", &got)
	}
	if _, _, ok := ttlOffsets(b[:len(b)-1]); ok {
		t.Fatal("a cut message parsed")
	}
}
