package dns

import (
	"encoding/binary"
	"log/slog"
	"net"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// FuzzServerPackets sends arbitrary raw packets to the add-on's real UDP
// listener (Server.listen: the miekg server, the handler and whatever
// reader it installs). Every reply to the fuzzed packet must unpack, be a
// response with the packet's ID and fit the UDP limit; a packet may also
// be dropped. A valid probe sent after it must still be answered, so a
// packet that crashes or wedges the server fails.
func FuzzServerPackets(f *testing.F) {
	for _, name := range []string{"web.ns1.svc.cluster.local.", "_http._tcp.hl.ns1.svc.cluster.local.", "20.0.43.10.in-addr.arpa.", "cluster.local."} {
		for _, qt := range []uint16{mdns.TypeA, mdns.TypeAAAA, mdns.TypeSRV, mdns.TypePTR, mdns.TypeANY} {
			m := new(mdns.Msg)
			m.SetQuestion(name, qt)
			m.Id = 0x1234
			if qt == mdns.TypeSRV {
				m.SetEdns0(4096, true)
			}
			b, _ := m.Pack()
			f.Add(b)
		}
	}
	f.Add([]byte{0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1}) // compression loop
	f.Add([]byte{0x12, 0x34, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0})                      // a response
	f.Add([]byte{0x12})

	// The add-on's own listener set-up, so the fuzzed path is the served one.
	s := &Server{log: slog.New(slog.DiscardHandler), h: newTestHandler(testTable())}
	addr, err := s.listen("127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	defer func() {
		for _, srv := range s.servers {
			_ = srv.Shutdown()
		}
	}()

	f.Fuzz(func(t *testing.T, pkt []byte) {
		if len(pkt) > maxUDPSize {
			pkt = pkt[:maxUDPSize]
		}
		c, err := net.Dial("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var id uint16
		if len(pkt) >= 2 {
			id = binary.BigEndian.Uint16(pkt)
		}
		probe := new(mdns.Msg)
		probe.SetQuestion("web.ns1.svc.cluster.local.", mdns.TypeA)
		probe.Id = id ^ 0xffff
		pb, _ := probe.Pack()
		if _, err := c.Write(pkt); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(pb); err != nil {
			t.Fatal(err)
		}
		limit := mdns.MinMsgSize
		if q := new(mdns.Msg); q.Unpack(pkt) == nil {
			if o := q.IsEdns0(); o != nil && int(o.UDPSize()) > limit {
				limit = min(int(o.UDPSize()), maxUDPSize)
			}
		}
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		buf := make([]byte, 65536)
		for {
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("no answer to the probe after packet %x: %v", pkt, err)
			}
			r := new(mdns.Msg)
			if err := r.Unpack(buf[:n]); err != nil {
				t.Fatalf("reply does not unpack: %v (%x)", err, buf[:n])
			}
			if !r.Response {
				t.Fatalf("reply without the QR bit: %v", r)
			}
			if r.Id == probe.Id && len(r.Question) == 1 && r.Question[0].Name == probe.Question[0].Name {
				if r.Rcode != mdns.RcodeSuccess || len(r.Answer) == 0 {
					t.Fatalf("probe answered with rcode %d and %d answers", r.Rcode, len(r.Answer))
				}
				return
			}
			if r.Id != id {
				t.Fatalf("reply with id %#x to a packet with id %#x", r.Id, id)
			}
			if n > limit {
				t.Fatalf("udp reply of %d bytes exceeds %d", n, limit)
			}
		}
	})
}
