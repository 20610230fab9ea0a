package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"syscall"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// UDP has no connection to end: a flow that conntrack DNATed to an
// endpoint keeps going there as long as its client sends (every datagram
// renews the entry), after the endpoint left the service. As upstream
// kube-proxy does, the proxy deletes, after the table is written, the
// entries of a UDP service port (its ClusterIP and port, or its NodePort)
// that has endpoints and whose replies come from none of them: flows to
// an endpoint the port lost (the next datagram is DNATed to a live one),
// and flows made while the port had no endpoint (their datagrams were
// rejected, and the entry would keep them from being DNATed). This is
// reconciled against the whole conntrack table, not worked out from what
// changed, so that an endpoint that left while the proxy was down (an
// agent restart) is cleaned up by the new proxy's first sync. Flows of a
// service that is gone are deleted too (from what the previous sync
// programmed).
//
// The entries are read and deleted with ctnetlink on a socket of our own
// (a dump, filtered here, then one delete per entry in one send).

// ctnetlink numbers (linux/netfilter/nfnetlink_conntrack.h).
const (
	nfnlSubsysCtnetlink = 1
	ctMsgNew            = 0
	ctMsgGet            = 1
	ctMsgDelete         = 2
	ctaTupleOrig        = 1
	ctaTupleReply       = 2
	ctaTupleIP          = 1
	ctaTupleProto       = 2
	ctaIPv4Src          = 1
	ctaIPv4Dst          = 2
	ctaProtoNum         = 1
	ctaProtoSrcPort     = 2
	ctaProtoDstPort     = 3
	nlaTypeMask         = 0x3fff // without NLA_F_NESTED and NLA_F_NET_BYTEORDER
)

// ctTuple is one direction of an IPv4 conntrack entry.
type ctTuple struct {
	src, dst     [4]byte
	proto        uint8
	sport, dport uint16
}

// ctFlow is a conntrack entry: its two tuples, and the original tuple's
// attribute payload (what a delete names the entry by).
type ctFlow struct {
	orig, reply ctTuple
	origAttr    []byte
}

// ctFilter selects UDP entries to delete: those to port dport of dst (zero:
// any address, for NodePorts) whose replies come from replySrc (zero: from
// anyone).
type ctFilter struct {
	dst      [4]byte
	dport    uint16
	replySrc [4]byte
}

func (f ctFilter) match(fl *ctFlow) bool {
	if fl.orig.proto != unix.IPPROTO_UDP || fl.orig.dport != f.dport {
		return false
	}
	if f.dst != ([4]byte{}) && fl.orig.dst != f.dst {
		return false
	}
	return f.replySrc == ([4]byte{}) || fl.reply.src == f.replySrc
}

var errMalformed = errors.New("malformed netlink attribute")

// nlAttrs calls f with the type (flags masked off) and payload of each
// netlink attribute in b.
func nlAttrs(b []byte, f func(typ uint16, data []byte) error) error {
	for len(b) > 0 {
		if len(b) < 4 {
			return errMalformed
		}
		l := int(binary.NativeEndian.Uint16(b))
		if l < 4 || l > len(b) {
			return errMalformed
		}
		if err := f(binary.NativeEndian.Uint16(b[2:])&nlaTypeMask, b[4:l]); err != nil {
			return err
		}
		b = b[min(nlmsgAlign(l), len(b)):]
	}
	return nil
}

// parseTuple reads a CTA_TUPLE_* payload.
func parseTuple(b []byte) (ctTuple, error) {
	var t ctTuple
	err := nlAttrs(b, func(typ uint16, data []byte) error {
		switch typ {
		case ctaTupleIP:
			return nlAttrs(data, func(typ uint16, data []byte) error {
				if (typ == ctaIPv4Src || typ == ctaIPv4Dst) && len(data) != 4 {
					return errMalformed
				}
				switch typ {
				case ctaIPv4Src:
					copy(t.src[:], data)
				case ctaIPv4Dst:
					copy(t.dst[:], data)
				}
				return nil
			})
		case ctaTupleProto:
			return nlAttrs(data, func(typ uint16, data []byte) error {
				switch {
				case typ == ctaProtoNum && len(data) == 1:
					t.proto = data[0]
				case typ == ctaProtoSrcPort && len(data) == 2:
					t.sport = binary.BigEndian.Uint16(data)
				case typ == ctaProtoDstPort && len(data) == 2:
					t.dport = binary.BigEndian.Uint16(data)
				case typ == ctaProtoNum || typ == ctaProtoSrcPort || typ == ctaProtoDstPort:
					return errMalformed
				}
				return nil
			})
		}
		return nil
	})
	return t, err
}

// parseFlow reads the attributes of a conntrack entry message (after its
// nfgenmsg header).
func parseFlow(b []byte) (*ctFlow, error) {
	fl := &ctFlow{}
	var seen int
	err := nlAttrs(b, func(typ uint16, data []byte) error {
		var err error
		switch typ {
		case ctaTupleOrig:
			fl.orig, err = parseTuple(data)
			fl.origAttr = append([]byte(nil), data...)
			seen |= 1
		case ctaTupleReply:
			fl.reply, err = parseTuple(data)
			seen |= 2
		}
		return err
	})
	if err == nil && seen != 3 {
		err = fmt.Errorf("conntrack entry without both tuples: %w", errMalformed)
	}
	return fl, err
}

// ctRequest is a ctnetlink message of type msg with an AF_INET nfgenmsg
// and the attribute payload attrs.
func ctRequest(msg uint16, flags uint16, seq uint32, attrs []byte) []byte {
	b := make([]byte, unix.NLMSG_HDRLEN+4, unix.NLMSG_HDRLEN+4+len(attrs)+4)
	b = append(b, attrs...)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], nfnlSubsysCtnetlink<<8|msg)
	ne.PutUint16(b[6:], flags)
	ne.PutUint32(b[8:], seq)
	b[unix.NLMSG_HDRLEN] = unix.AF_INET // nfgen_family; version and res_id 0
	for len(b)%unix.NLMSG_ALIGNTO != 0 {
		b = append(b, 0)
	}
	return b
}

// deleteConntrack deletes the IPv4 conntrack entries of netns (empty: ours)
// that stale says to delete, and returns how many it deleted. An entry
// that is gone meanwhile is no error.
func deleteConntrack(netns string, stale func(*ctFlow) bool) (int, error) {
	fd, err := nlSocket(netns)
	if err != nil {
		return 0, fmt.Errorf("proxy: conntrack socket: %w", err)
	}
	defer unix.Close(fd)
	if err := errors.Join(
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20),
		unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1),
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 60}),
	); err != nil {
		return 0, fmt.Errorf("proxy: conntrack socket options: %w", err)
	}
	sa := &unix.SockaddrNetlink{Family: unix.AF_NETLINK}
	if err := unix.Sendto(fd, ctRequest(ctMsgGet, unix.NLM_F_REQUEST|unix.NLM_F_DUMP, 1, nil), 0, sa); err != nil {
		return 0, fmt.Errorf("proxy: conntrack dump: %w", err)
	}
	var del [][]byte
	rbuf := make([]byte, 64<<10)
dump:
	for {
		n, _, err := unix.Recvfrom(fd, rbuf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("proxy: conntrack dump: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(rbuf[:n])
		if err != nil {
			return 0, fmt.Errorf("proxy: conntrack dump: %w", err)
		}
		for _, m := range msgs {
			switch {
			case m.Header.Type == unix.NLMSG_DONE:
				break dump
			case m.Header.Type == unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if code := int32(binary.NativeEndian.Uint32(m.Data)); code != 0 {
						return 0, fmt.Errorf("proxy: conntrack dump: %w", syscall.Errno(-code))
					}
				}
			case m.Header.Type == nfnlSubsysCtnetlink<<8|ctMsgNew && len(m.Data) >= 4:
				fl, err := parseFlow(m.Data[4:])
				if err != nil {
					return 0, fmt.Errorf("proxy: conntrack dump: %w", err)
				}
				if stale(fl) {
					del = append(del, fl.origAttr)
				}
			}
		}
	}
	if len(del) == 0 {
		return 0, nil
	}
	var buf []byte
	for i, orig := range del {
		attr := make([]byte, 4, 4+len(orig))
		binary.NativeEndian.PutUint16(attr, uint16(4+len(orig)))
		binary.NativeEndian.PutUint16(attr[2:], ctaTupleOrig|unix.NLA_F_NESTED)
		attr = append(attr, orig...)
		flags := uint16(unix.NLM_F_REQUEST)
		if i == len(del)-1 {
			flags |= unix.NLM_F_ACK // the end of the replies
		}
		buf = append(buf, ctRequest(ctMsgDelete, flags, uint32(i+2), attr)...)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, max(len(buf)+(64<<10), 1<<20)); err != nil {
		return 0, fmt.Errorf("proxy: conntrack socket options: %w", err)
	}
	if err := unix.Sendto(fd, buf, 0, sa); err != nil {
		return 0, fmt.Errorf("proxy: conntrack delete (%d entries): %w", len(del), err)
	}
	gone := 0
	err = readErrors(fd, uint32(len(del)+1), func(_ uint32, errno syscall.Errno) error {
		if errno == unix.ENOENT {
			gone++
			return nil
		}
		return fmt.Errorf("proxy: conntrack delete: %w", errno)
	})
	return len(del) - gone, err
}

// udpPort is what a sync programmed for one UDP service port.
type udpPort struct {
	vip            [4]byte
	port, nodePort uint16
	has            bool
	eps            map[[4]byte]bool
}

// udpPorts are the UDP service ports of sps by key.
func udpPorts(sps []*ServicePort) map[string]udpPort {
	out := map[string]udpPort{}
	for _, sp := range sps {
		if sp.Protocol != corev1.ProtocolUDP {
			continue
		}
		u := udpPort{port: uint16(sp.Port), nodePort: uint16(sp.NodePort), has: sp.HasEndpoints, eps: map[[4]byte]bool{}}
		if ip := sp.ClusterIP.To4(); ip != nil {
			u.vip = [4]byte(ip)
		}
		for _, set := range [][]Endpoint{sp.Cluster, sp.All, sp.Local} {
			for _, e := range set {
				if ip := e.IP.To4(); ip != nil {
					u.eps[[4]byte(ip)] = true
				}
			}
		}
		out[sp.Key()] = u
	}
	return out
}

// sameUDP says whether two syncs programmed the same UDP service ports.
func sameUDP(a, b map[string]udpPort) bool {
	return maps.EqualFunc(a, b, func(x, y udpPort) bool {
		return x.vip == y.vip && x.port == y.port && x.nodePort == y.nodePort && x.has == y.has && maps.Equal(x.eps, y.eps)
	})
}

// goneUDP are the filters for the flows of the UDP service ports of prev
// that cur no longer has.
func goneUDP(prev, cur map[string]udpPort) []ctFilter {
	var out []ctFilter
	for k, old := range prev {
		if _, ok := cur[k]; ok {
			continue
		}
		for ip := range old.eps {
			if old.vip != ([4]byte{}) {
				out = append(out, ctFilter{dst: old.vip, dport: old.port, replySrc: ip})
			}
			if old.nodePort != 0 {
				out = append(out, ctFilter{dport: old.nodePort, replySrc: ip})
			}
		}
	}
	return out
}

// staleUDP says which conntrack entries to delete once the UDP service
// ports cur are programmed (prev: what the sync before programmed, nil on
// the first): see the top of this file.
func staleUDP(prev, cur map[string]udpPort) func(*ctFlow) bool {
	type frontend struct {
		dst  [4]byte
		port uint16
	}
	vips := map[frontend]map[[4]byte]bool{}
	nodePorts := map[uint16]map[[4]byte]bool{}
	for _, u := range cur {
		if !u.has || len(u.eps) == 0 {
			continue // nothing to send a flow to instead
		}
		if u.vip != ([4]byte{}) {
			vips[frontend{u.vip, u.port}] = u.eps
		}
		if u.nodePort != 0 {
			nodePorts[u.nodePort] = u.eps
		}
	}
	gone := goneUDP(prev, cur)
	return func(fl *ctFlow) bool {
		if fl.orig.proto != unix.IPPROTO_UDP {
			return false
		}
		if eps, ok := vips[frontend{fl.orig.dst, fl.orig.dport}]; ok && !eps[fl.reply.src] {
			return true
		}
		if eps, ok := nodePorts[fl.orig.dport]; ok && !eps[fl.reply.src] {
			return true
		}
		for _, f := range gone {
			if f.match(fl) {
				return true
			}
		}
		return false
	}
}
