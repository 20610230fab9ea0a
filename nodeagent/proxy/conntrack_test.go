package proxy

import (
	"encoding/binary"
	"net"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// attr encodes one netlink attribute.
func attr(typ uint16, data []byte) []byte {
	b := make([]byte, 4, 4+len(data)+3)
	binary.NativeEndian.PutUint16(b, uint16(4+len(data)))
	binary.NativeEndian.PutUint16(b[2:], typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func tupleAttr(typ uint16, t ctTuple) []byte {
	port := func(p uint16) []byte { return binary.BigEndian.AppendUint16(nil, p) }
	ip := slices.Concat(attr(ctaIPv4Src, t.src[:]), attr(ctaIPv4Dst, t.dst[:]))
	proto := slices.Concat(attr(ctaProtoNum, []byte{t.proto}), attr(ctaProtoSrcPort, port(t.sport)), attr(ctaProtoDstPort, port(t.dport)))
	return attr(typ|unix.NLA_F_NESTED, slices.Concat(attr(ctaTupleIP|unix.NLA_F_NESTED, ip), attr(ctaTupleProto|unix.NLA_F_NESTED, proto)))
}

func v4(s string) [4]byte { return [4]byte(net.ParseIP(s).To4()) }

func TestParseFlow(t *testing.T) {
	orig := ctTuple{src: v4("10.42.0.5"), dst: v4("10.43.0.10"), proto: unix.IPPROTO_UDP, sport: 40000, dport: 53}
	reply := ctTuple{src: v4("10.42.0.9"), dst: v4("10.42.0.5"), proto: unix.IPPROTO_UDP, sport: 5353, dport: 40000}
	b := slices.Concat(tupleAttr(ctaTupleOrig, orig), tupleAttr(ctaTupleReply, reply), attr(7, []byte{1, 2, 3, 4})) // CTA_STATUS
	fl, err := parseFlow(b)
	if err != nil {
		t.Fatal(err)
	}
	if fl.orig != orig || fl.reply != reply {
		t.Fatalf("parsed %+v / %+v, want %+v / %+v", fl.orig, fl.reply, orig, reply)
	}
	// The delete names the entry by the original tuple's payload.
	if again, err := parseTuple(fl.origAttr); err != nil || again != orig {
		t.Fatalf("origAttr parses to %+v, %v", again, err)
	}
	// A truncated message is an error, not a panic or a zero tuple.
	for n := range len(b) {
		if _, err := parseFlow(b[:n]); err == nil && n < len(tupleAttr(ctaTupleOrig, orig))+len(tupleAttr(ctaTupleReply, reply)) {
			t.Fatalf("parseFlow of %d of %d bytes: no error", n, len(b))
		}
	}
	f := ctFilter{dst: orig.dst, dport: 53, replySrc: reply.src}
	if !f.match(fl) {
		t.Fatal("filter on VIP, port and endpoint does not match")
	}
	for _, miss := range []ctFilter{
		{dst: orig.dst, dport: 54, replySrc: reply.src},
		{dst: v4("10.43.0.11"), dport: 53},
		{dst: orig.dst, dport: 53, replySrc: v4("10.42.0.10")},
	} {
		if miss.match(fl) {
			t.Fatalf("filter %+v matches", miss)
		}
	}
	if !(ctFilter{dport: 53}).match(fl) {
		t.Fatal("any-address filter does not match")
	}
	fl.orig.proto = unix.IPPROTO_TCP
	if f.match(fl) {
		t.Fatal("a TCP flow matches")
	}
}

func FuzzParseFlow(f *testing.F) {
	orig := ctTuple{src: v4("10.42.0.5"), dst: v4("10.43.0.10"), proto: unix.IPPROTO_UDP, sport: 1, dport: 53}
	f.Add(slices.Concat(tupleAttr(ctaTupleOrig, orig), tupleAttr(ctaTupleReply, orig)))
	f.Add([]byte{4, 0, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		fl, err := parseFlow(b)
		if err == nil && fl.origAttr == nil {
			t.Fatal("a flow without its original tuple parsed")
		}
	})
}

func TestStaleUDP(t *testing.T) {
	sp := func(has bool, eps ...string) *ServicePort {
		s := &ServicePort{Namespace: "ns", Name: "dns", Protocol: corev1.ProtocolUDP, ClusterIP: net.ParseIP("10.43.0.10"), Port: 53, NodePort: 30053, HasEndpoints: has}
		for _, e := range eps {
			s.Cluster = append(s.Cluster, Endpoint{IP: net.ParseIP(e), Port: 5353})
		}
		return s
	}
	tcp := &ServicePort{Namespace: "ns", Name: "web", Protocol: corev1.ProtocolTCP, ClusterIP: net.ParseIP("10.43.0.20"), Port: 80,
		Cluster: []Endpoint{{IP: net.ParseIP("10.42.0.7"), Port: 80}}, HasEndpoints: true}
	// Flows from a pod: to the VIP or to the NodePort on the node's
	// address, answered by an endpoint (DNATed) or by the address itself
	// (not DNATed: made while the port had no endpoint); one to another
	// UDP port; and a TCP flow to the web service's VIP.
	flow := func(dst string, dport uint16, replySrc string) *ctFlow {
		return &ctFlow{orig: ctTuple{src: v4("10.42.0.5"), dst: v4(dst), proto: unix.IPPROTO_UDP, sport: 40000, dport: dport},
			reply: ctTuple{src: v4(replySrc), dst: v4("10.42.0.5"), proto: unix.IPPROTO_UDP, sport: 5353, dport: 40000}}
	}
	flows := map[string]*ctFlow{
		"vip→1":       flow("10.43.0.10", 53, "10.42.0.1"),
		"vip→2":       flow("10.43.0.10", 53, "10.42.0.2"),
		"vip→none":    flow("10.43.0.10", 53, "10.43.0.10"),
		"nodeport→1":  flow("10.250.0.2", 30053, "10.42.0.1"),
		"nodeport→2":  flow("10.250.0.2", 30053, "10.42.0.2"),
		"other port":  flow("10.43.0.10", 54, "10.42.0.9"),
		"tcp web→old": {orig: ctTuple{dst: v4("10.43.0.20"), proto: unix.IPPROTO_TCP, dport: 80}, reply: ctTuple{src: v4("10.42.0.99")}},
	}
	for _, tc := range []struct {
		name      string
		prev, cur []*ServicePort
		want      []string // the flows deleted
	}{
		{"unchanged", []*ServicePort{sp(true, "10.42.0.1", "10.42.0.2")}, []*ServicePort{sp(true, "10.42.0.1", "10.42.0.2")}, []string{"vip→none"}},
		{"endpoint removed", []*ServicePort{sp(true, "10.42.0.1", "10.42.0.2")}, []*ServicePort{sp(true, "10.42.0.1")},
			[]string{"nodeport→2", "vip→2", "vip→none"}},
		// The restart case: the endpoint left before this proxy's first
		// sync; its flows are found all the same.
		{"first sync", nil, []*ServicePort{sp(true, "10.42.0.1")}, []string{"nodeport→2", "vip→2", "vip→none"}},
		{"first endpoint", []*ServicePort{sp(false)}, []*ServicePort{sp(true, "10.42.0.1")}, []string{"nodeport→2", "vip→2", "vip→none"}},
		// Nothing to send the flows to instead: left alone.
		{"last endpoint removed", []*ServicePort{sp(true, "10.42.0.1")}, []*ServicePort{sp(false)}, nil},
		{"service removed", []*ServicePort{sp(true, "10.42.0.1", "10.42.0.2")}, nil,
			[]string{"nodeport→1", "nodeport→2", "vip→1", "vip→2"}},
		{"TCP is left alone", []*ServicePort{tcp}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stale := staleUDP(udpPorts(tc.prev), udpPorts(tc.cur))
			var got []string
			for name, fl := range flows {
				if stale(fl) {
					got = append(got, name)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("deleted %q, want %q", got, tc.want)
			}
		})
	}
	if !sameUDP(udpPorts([]*ServicePort{sp(true, "10.42.0.1")}), udpPorts([]*ServicePort{sp(true, "10.42.0.1")})) ||
		sameUDP(udpPorts([]*ServicePort{sp(true, "10.42.0.1")}), udpPorts([]*ServicePort{sp(true, "10.42.0.2")})) {
		t.Error("sameUDP does not compare the endpoints")
	}
}
