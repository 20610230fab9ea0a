package dns

import (
	"net"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// rawExchange sends b over UDP and returns the reply (nil on timeout).
func rawExchange(t *testing.T, addr string, b []byte) *mdns.Msg {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	m := new(mdns.Msg)
	if err := m.Unpack(buf[:n]); err != nil {
		t.Fatalf("unpack reply: %v", err)
	}
	return m
}

func pack(t *testing.T, m *mdns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBadInput(t *testing.T) {
	addr := serve(t, newTestHandler(testTable()))
	q := func(mut func(*mdns.Msg)) []byte {
		m := new(mdns.Msg)
		m.SetQuestion("web.ns1.svc.cluster.local.", mdns.TypeA)
		mut(m)
		return pack(t, m)
	}
	twoQ := q(func(m *mdns.Msg) { m.Question = append(m.Question, m.Question[0]) })
	truncated := q(func(*mdns.Msg) {})
	truncated = truncated[:len(truncated)-3]
	cases := []struct {
		name  string
		b     []byte
		rcode int // -1 = no reply expected
	}{
		{"garbage shorter than a header", []byte{1, 2, 3}, -1},
		{"question cut short", truncated, mdns.RcodeFormatError},
		{"two questions", twoQ, mdns.RcodeFormatError},
		{"update opcode", q(func(m *mdns.Msg) { m.Opcode = mdns.OpcodeUpdate }), mdns.RcodeNotImplemented},
		{"status opcode", q(func(m *mdns.Msg) { m.Opcode = mdns.OpcodeStatus }), mdns.RcodeNotImplemented},
		{"chaos class", q(func(m *mdns.Msg) { m.Question[0].Qclass = mdns.ClassCHAOS }), mdns.RcodeRefused},
		{"any class", q(func(m *mdns.Msg) { m.Question[0].Qclass = mdns.ClassANY }), mdns.RcodeRefused},
		{"zone transfer", q(func(m *mdns.Msg) { m.Question[0].Qtype = mdns.TypeAXFR }), mdns.RcodeRefused},
		{"OPT as qtype", q(func(m *mdns.Msg) { m.Question[0].Qtype = mdns.TypeOPT }), mdns.RcodeFormatError},
		{"MAILB", q(func(m *mdns.Msg) { m.Question[0].Qtype = mdns.TypeMAILB }), mdns.RcodeNotImplemented},
		{"unknown type is NODATA", q(func(m *mdns.Msg) { m.Question[0].Qtype = 65280 }), mdns.RcodeSuccess},
		{"response bit set", q(func(m *mdns.Msg) { m.Response = true }), -1},
		{"EDNS version 1", q(func(m *mdns.Msg) { m.SetEdns0(1232, false); m.IsEdns0().SetVersion(1) }), mdns.RcodeBadVers},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := rawExchange(t, addr, c.b)
			switch {
			case c.rcode < 0 && r != nil:
				t.Fatalf("unexpected reply %v", r)
			case c.rcode >= 0 && r == nil:
				t.Fatal("no reply")
			case c.rcode >= 0 && r.Rcode != c.rcode:
				t.Fatalf("rcode %s, want %s", mdns.RcodeToString[r.Rcode], mdns.RcodeToString[c.rcode])
			}
			// The server keeps serving.
			if r := query(t, addr, "web.ns1.svc.cluster.local.", mdns.TypeA); len(r.Answer) != 1 {
				t.Fatalf("server stopped answering: %v", r)
			}
		})
	}
}

// recorder is a ResponseWriter that keeps the packed reply.
type recorder struct{ out []byte }

func (r *recorder) LocalAddr() net.Addr         { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }
func (r *recorder) RemoteAddr() net.Addr        { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4444} }
func (r *recorder) Write(b []byte) (int, error) { r.out = b; return len(b), nil }
func (r *recorder) WriteMsg(m *mdns.Msg) error {
	b, err := m.Pack()
	r.out = b
	return err
}
func (r *recorder) Close() error        { return nil }
func (r *recorder) TsigStatus() error   { return nil }
func (r *recorder) TsigTimersOnly(bool) {}
func (r *recorder) Hijack()             {}

// FuzzServeDNS feeds arbitrary packets to the handler the way the server
// does (unpack, then ServeDNS): it must never panic, and every reply must
// pack and fit the UDP limit the query allows.
func FuzzServeDNS(f *testing.F) {
	for _, name := range []string{"web.ns1.svc.cluster.local.", "_http._tcp.hl.ns1.svc.cluster.local.", "20.0.43.10.in-addr.arpa.", "ext.ns1.svc.cluster.local.", "*.svc.cluster.local.", "cluster.local."} {
		for _, qt := range []uint16{mdns.TypeA, mdns.TypeSRV, mdns.TypePTR, mdns.TypeANY, mdns.TypeNS} {
			m := new(mdns.Msg)
			m.SetQuestion(name, qt)
			if qt == mdns.TypeANY {
				m.SetEdns0(1232, true)
			}
			b, _ := m.Pack()
			f.Add(b)
		}
	}
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1})
	h := newTestHandler(testTable())
	f.Fuzz(func(t *testing.T, b []byte) {
		m := new(mdns.Msg)
		if err := m.Unpack(b); err != nil || m.Response {
			return
		}
		w := &recorder{}
		h.ServeDNS(w, m)
		if w.out == nil {
			t.Fatal("no reply written")
		}
		limit := mdns.MinMsgSize
		if o := m.IsEdns0(); o != nil && int(o.UDPSize()) > limit {
			limit = min(int(o.UDPSize()), maxUDPSize)
		}
		if len(w.out) > limit {
			t.Fatalf("udp reply of %d bytes exceeds %d", len(w.out), limit)
		}
	})
}

// TestOversizeQuery: a UDP query longer than the largest message the
// add-on reads (4096 bytes) is answered FORMERR by the listener the
// add-on serves with, and the server keeps serving; one within the limit
// is answered.
func TestOversizeQuery(t *testing.T) {
	addr := listenTest(t, newTestHandler(testTable()), "127.0.0.1:0")
	for _, c := range []struct {
		size  int
		rcode int
	}{{maxUDPSize, mdns.RcodeSuccess}, {maxUDPSize + 1, mdns.RcodeFormatError}, {9000, mdns.RcodeFormatError}} {
		m := new(mdns.Msg)
		m.SetQuestion("web.ns1.svc.cluster.local.", mdns.TypeA)
		m.SetEdns0(maxUDPSize, false)
		b := pack(t, m)
		// Pad the OPT record with an EDNS0 padding option up to c.size.
		pad := c.size - len(b) - 4
		b = append(b, 0, 12, byte(pad>>8), byte(pad))
		b = append(b, make([]byte, pad)...)
		b[len(b)-pad-4-2], b[len(b)-pad-4-1] = byte((pad+4)>>8), byte(pad+4) // OPT RDLENGTH
		r := rawExchange(t, addr, b)
		if r == nil {
			t.Fatalf("%d bytes: no reply", c.size)
		}
		if r.Rcode != c.rcode {
			t.Fatalf("%d bytes: rcode %s, want %s", c.size, mdns.RcodeToString[r.Rcode], mdns.RcodeToString[c.rcode])
		}
		if r.Id != m.Id {
			t.Fatalf("%d bytes: reply id %d, want %d", c.size, r.Id, m.Id)
		}
		if r := query(t, addr, "web.ns1.svc.cluster.local.", mdns.TypeA); len(r.Answer) != 1 {
			t.Fatalf("server stopped answering after %d bytes: %v", c.size, r)
		}
	}
}
