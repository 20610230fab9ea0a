package dns

import (
	"bytes"
	"testing"

	mdns "github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
)

// TestFastPath: a repeated plain query is answered by the read loop with
// the same answer as the full path (its own ID, the question's spelling),
// a table change is never answered from before it, and unusual packets
// keep taking the full path. Both ways of reading UDP: the add-on's
// listener (batched on Linux) and a plain *net.UDPConn (one datagram at a
// time, as elsewhere).
func TestFastPath(t *testing.T) {
	t.Run("listener", func(t *testing.T) {
		testFastPath(t, func(h *Handler) string { return listenTest(t, h, "127.0.0.1:0") })
	})
	t.Run("udpconn", func(t *testing.T) {
		testFastPath(t, func(h *Handler) string { return serve(t, h) })
	})
}

func testFastPath(t *testing.T, serve func(*Handler) string) {
	tb := testTable()
	h := newTestHandler(tb)
	addr := serve(h)
	ask := func(name string, id uint16, edns bool) *mdns.Msg {
		t.Helper()
		m := new(mdns.Msg)
		m.SetQuestion(name, mdns.TypeA)
		m.Id = id
		if edns {
			m.SetEdns0(1232, false)
		}
		c := &mdns.Client{}
		r, _, err := c.Exchange(m, addr)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r.Id != id {
			t.Fatalf("%s: answer id %d, asked %d", name, r.Id, id)
		}
		return r
	}
	first := ask("web.ns1.svc.cluster.local.", 1, false)
	if h.fast.hits.Load() != 0 {
		t.Fatal("a first query was answered by the fast path")
	}
	second := ask("web.ns1.svc.cluster.local.", 2, false)
	if h.fast.hits.Load() != 1 {
		t.Fatalf("fast path answers: %d, want 1", h.fast.hits.Load())
	}
	first.Id = second.Id
	a, _ := first.Pack()
	b, _ := second.Pack()
	if !bytes.Equal(a, b) {
		t.Fatalf("fast answer differs:\n%v\nfull path:\n%v", second, first)
	}
	if len(second.Answer) != 1 || second.Answer[0].(*mdns.A).A.String() != "10.43.0.20" {
		t.Fatalf("answer: %v", second)
	}
	// Another spelling and EDNS are other requests: the full path first,
	// then the fast path, each echoing its own question.
	ask("WEB.ns1.svc.cluster.local.", 3, true)
	r := ask("WEB.ns1.svc.cluster.local.", 4, true)
	if h.fast.hits.Load() != 2 || r.Question[0].Name != "WEB.ns1.svc.cluster.local." || r.IsEdns0() == nil {
		t.Fatalf("hits %d, answer %v", h.fast.hits.Load(), r)
	}
	// NXDOMAIN is a cluster answer too.
	ask("nope.ns1.svc.cluster.local.", 5, false)
	if r := ask("nope.ns1.svc.cluster.local.", 6, false); r.Rcode != mdns.RcodeNameError || h.fast.hits.Load() != 3 {
		t.Fatalf("hits %d, answer %v", h.fast.hits.Load(), r)
	}

	// The table changes: the next answer is the new one.
	tb.apply(map[string]*service{"ns1/web": buildService(svc("ns1", "Web", func(s *corev1.Service) {
		s.Spec.ClusterIP = "10.43.0.99"
	}), nil)}, nil)
	r = ask("web.ns1.svc.cluster.local.", 7, false)
	if len(r.Answer) != 1 || r.Answer[0].(*mdns.A).A.String() != "10.43.0.99" {
		t.Fatalf("after the change: %v", r)
	}
	if h.fast.hits.Load() != 3 {
		t.Fatal("the first query after a change was answered by the fast path")
	}
}

func TestPlainQuery(t *testing.T) {
	pack := func(mut func(m *mdns.Msg)) []byte {
		m := new(mdns.Msg)
		m.SetQuestion("web.ns1.svc.cluster.local.", mdns.TypeA)
		if mut != nil {
			mut(m)
		}
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if !plainQuery(pack(nil)) || !plainQuery(pack(func(m *mdns.Msg) { m.SetEdns0(4096, true) })) {
		t.Fatal("plain queries rejected")
	}
	for name, pkt := range map[string][]byte{
		"response":  pack(func(m *mdns.Msg) { m.Response = true }),
		"opcode":    pack(func(m *mdns.Msg) { m.Opcode = mdns.OpcodeStatus }),
		"truncated": pack(func(m *mdns.Msg) { m.Truncated = true }),
		"two":       pack(func(m *mdns.Msg) { m.Question = append(m.Question, m.Question[0]) }),
		"edns option": pack(func(m *mdns.Msg) {
			m.SetEdns0(4096, false)
			m.IsEdns0().Option = []mdns.EDNS0{&mdns.EDNS0_COOKIE{Code: mdns.EDNS0COOKIE, Cookie: "0102030405060708"}}
		}),
		"escaped":  pack(func(m *mdns.Msg) { m.Question[0].Name = `we\.b.ns1.svc.cluster.local.` }),
		"trailing": append(pack(nil), 0),
		"short":    pack(nil)[:14],
		"extra record": pack(func(m *mdns.Msg) {
			m.Extra = append(m.Extra, &mdns.A{Hdr: mdns.RR_Header{Name: ".", Rrtype: mdns.TypeA, Class: 1}})
		}),
	} {
		if plainQuery(pkt) {
			t.Errorf("%s: taken as a plain query", name)
		}
	}
}

// FuzzPlainQuery: whatever plainQuery accepts, miekg/dns decodes and
// re-encodes to the same bytes — the fast path's key is then the same for
// the raw packet and for the request the handler saw.
func FuzzPlainQuery(f *testing.F) {
	m := new(mdns.Msg)
	m.SetQuestion("web.ns1.svc.cluster.local.", mdns.TypeA)
	b, _ := m.Pack()
	f.Add(b)
	m.SetEdns0(1232, true)
	b, _ = m.Pack()
	f.Add(b)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		if !plainQuery(pkt) {
			return
		}
		var msg mdns.Msg
		if err := msg.Unpack(pkt); err != nil {
			t.Fatalf("plain query does not decode: %v", err)
		}
		again, err := msg.Pack()
		if err != nil {
			t.Fatalf("plain query does not re-encode: %v", err)
		}
		if !bytes.Equal(again[2:], pkt[2:]) {
			t.Fatalf("re-encoded differently:\n%x\n%x", pkt, again)
		}
	})
}
