package dns

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	mdns "github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// Batched UDP (Linux): each read loop receives up to batchSize datagrams
// with one recvmmsg, answers those the fast path knows into one buffer and
// sends the answers with one sendmmsg; the other datagrams are handed to
// miekg/dns one by one (fastReader.ReadPacketConn). A socket bound to a
// specific address needs no control messages (the kernel replies from that
// address); a wildcard socket receives each datagram's destination
// (IP_PKTINFO / IPV6_PKTINFO) and replies from it.

const batchSize = 32

// mmsghdr is struct mmsghdr (the padding after n follows Msghdr's alignment).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// oobSize holds one IPv4 or IPv6 packet-info control message.
var oobSize = unix.CmsgSpace(max(unix.SizeofInet4Pktinfo, unix.SizeofInet6Pktinfo))

// batchConn is a UDP socket read and written in batches. Its read side
// (next) belongs to the one read loop of its server; WriteTo (miekg/dns's
// answers) may be called from any goroutine.
type batchConn struct {
	*net.UDPConn
	h       *Handler
	rc      syscall.RawConn
	pktinfo bool // wildcard address: reply from each datagram's destination

	bufs  []byte // batchSize receive buffers of maxUDPSize+1
	names []unix.RawSockaddrAny
	oobs  []byte // batchSize control buffers of oobSize (pktinfo only)
	souts []byte // batchSize rewritten control messages for the replies
	riov  []unix.Iovec
	rh    []mmsghdr
	siov  []unix.Iovec
	sh    []mmsghdr
	arena []byte // the batch's answers, back to back

	replies []batchReply
	tally   fastBatch
	pending []int // datagrams of the last batch for miekg/dns
	pend    int   // next index into pending

	recvFn, sendFn func(fd uintptr) bool
	nowFn          func() time.Time // b.now
	nowT           time.Time
	nowSet         bool
	rn, sn, soff   int
	rerr, serr     error
}

// batchReply is one fast answer of a batch: datagram slot, place in arena.
type batchReply struct {
	slot, off, n, source int
}

// udpConn returns c as miekg/dns serves it: batched.
func udpConn(h *Handler, c *net.UDPConn, pktinfo bool) (net.PacketConn, error) {
	return newBatchConn(h, c, pktinfo)
}

// newBatchConn wraps c (bound to an address, a wildcard one when pktinfo)
// for batched reads and writes.
func newBatchConn(h *Handler, c *net.UDPConn, pktinfo bool) (*batchConn, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("dns: raw socket: %w", err)
	}
	b := &batchConn{
		UDPConn: c, h: h, rc: rc, pktinfo: pktinfo,
		bufs:  make([]byte, batchSize*(maxUDPSize+1)),
		names: make([]unix.RawSockaddrAny, batchSize),
		riov:  make([]unix.Iovec, batchSize),
		rh:    make([]mmsghdr, batchSize),
		siov:  make([]unix.Iovec, batchSize),
		sh:    make([]mmsghdr, batchSize),
		arena: make([]byte, 0, batchSize*512),
	}
	if pktinfo {
		if err := setPktinfo(rc); err != nil {
			return nil, err
		}
		b.oobs = make([]byte, batchSize*oobSize)
		b.souts = make([]byte, batchSize*oobSize)
	}
	for i := range batchSize {
		b.riov[i].Base = &b.bufs[i*(maxUDPSize+1)]
		b.riov[i].SetLen(maxUDPSize + 1)
		h := &b.rh[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.Iov = &b.riov[i]
		h.SetIovlen(1)
		if pktinfo {
			h.Control = &b.oobs[i*oobSize]
		}
	}
	b.recvFn, b.sendFn, b.nowFn = b.recvmmsg, b.sendmmsg, b.now
	return b, nil
}

// now is the forwarded answers' clock, read at most once per batch.
func (b *batchConn) now() time.Time {
	if !b.nowSet {
		b.nowT, b.nowSet = b.h.now(), true
	}
	return b.nowT
}

// setPktinfo asks for each datagram's destination address, IPv4 and IPv6
// (a dual-stack socket gets either); one of them must work.
func setPktinfo(rc syscall.RawConn) error {
	var err4, err6 error
	if err := rc.Control(func(fd uintptr) {
		err4 = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
		err6 = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
	}); err != nil {
		return fmt.Errorf("dns: packet info: %w", err)
	}
	if err4 != nil && err6 != nil {
		return fmt.Errorf("dns: packet info: %w", err4)
	}
	return nil
}

// next returns the next datagram for miekg/dns, answering every datagram
// the fast path knows on the way.
func (b *batchConn) next() ([]byte, net.Addr, error) {
	for {
		if b.pend < len(b.pending) {
			i := b.pending[b.pend]
			b.pend++
			if len(b.packet(i)) > maxUDPSize {
				b.oversize(i)
				continue
			}
			pkt := append([]byte(nil), b.packet(i)...)
			return pkt, b.addr(i), nil
		}
		n, err := b.recv()
		if err != nil {
			return nil, nil, err
		}
		b.pending, b.pend = b.pending[:0], 0
		b.answer(n)
	}
}

func (b *batchConn) packet(i int) []byte {
	off := i * (maxUDPSize + 1)
	return b.bufs[off : off+int(b.rh[i].n)]
}

// oversize answers datagram i, longer than the largest message read
// (the kernel cut it to maxUDPSize+1 bytes), with FORMERR: its header's
// ID, opcode and RD, no sections. A response is dropped.
func (b *batchConn) oversize(i int) {
	start := time.Now()
	pkt := b.packet(i)
	if pkt[2]&0x80 != 0 {
		return
	}
	var reply [12]byte
	copy(reply[:2], pkt[:2])
	reply[2] = 0x80 | pkt[2]&0x79 // QR, the opcode and RD of the query
	reply[3] = mdns.RcodeFormatError
	if _, err := b.WriteTo(reply[:], b.addr(i)); err == nil {
		b.h.m.observe("udp", srcError, mdns.RcodeFormatError, time.Since(start))
	}
}

// recv receives up to batchSize datagrams, waiting for the first.
func (b *batchConn) recv() (int, error) {
	for i := range b.rh {
		h := &b.rh[i].hdr
		h.Namelen = unix.SizeofSockaddrAny
		if b.pktinfo {
			h.SetControllen(oobSize)
		}
		h.Flags = 0
		b.rh[i].n = 0
	}
	if err := b.rc.Read(b.recvFn); err != nil {
		return 0, err
	}
	return b.rn, b.rerr
}

func (b *batchConn) recvmmsg(fd uintptr) bool {
	for {
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.rh[0])), uintptr(len(b.rh)), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			b.rn, b.rerr = int(n), nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // wait until readable
		default:
			b.rn, b.rerr = 0, os.NewSyscallError("recvmmsg", errno)
		}
		return true
	}
}

// answer answers the first n received datagrams from the fast path, in
// one sendmmsg, and queues the others for miekg/dns.
func (b *batchConn) answer(n int) {
	start := time.Now()
	snap := b.h.t.load()
	b.nowSet = false
	b.arena, b.replies = b.arena[:0], b.replies[:0]
	f := &b.h.fast
	f.mu.RLock()
	for i := range n {
		off := len(b.arena)
		var source int
		var ok bool
		b.arena, source, ok = f.appendLocked(b.arena, snap, b.packet(i), b.nowFn)
		if !ok {
			b.pending = append(b.pending, i)
			continue
		}
		b.replies = append(b.replies, batchReply{slot: i, off: off, n: len(b.arena) - off, source: source})
	}
	f.mu.RUnlock()
	if len(b.replies) == 0 {
		return
	}
	for j, r := range b.replies {
		// Set only now: appending may have moved the arena.
		b.siov[j].Base = &b.arena[r.off]
		b.siov[j].SetLen(r.n)
		rh, sh := &b.rh[r.slot].hdr, &b.sh[j].hdr
		sh.Name, sh.Namelen = rh.Name, rh.Namelen
		sh.Iov = &b.siov[j]
		sh.SetIovlen(1)
		sh.Control = nil
		sh.SetControllen(0)
		if b.pktinfo {
			if oob := replyOOB(b.souts[j*oobSize:(j+1)*oobSize], b.oobs[r.slot*oobSize:r.slot*oobSize+int(rh.Controllen)]); len(oob) > 0 {
				sh.Control = &oob[0]
				sh.SetControllen(len(oob))
			}
		}
	}
	f.hits.Add(int64(len(b.replies))) // before the answers leave (tests read it)
	b.send(len(b.replies))
	for _, r := range b.replies {
		b.tally.add(r.source, int(b.arena[r.off+3]&0xF))
	}
	b.h.m.observeFast(&b.tally, time.Since(start))
}

// send sends the first n prepared answers; an answer the kernel refuses
// is dropped (as a lost datagram would be).
func (b *batchConn) send(n int) {
	b.sn, b.soff = n, 0
	for b.soff < b.sn {
		if err := b.rc.Write(b.sendFn); err != nil {
			return // closed
		}
		if b.serr != nil {
			b.soff++ // skip the datagram that failed
		}
	}
}

func (b *batchConn) sendmmsg(fd uintptr) bool {
	for {
		n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.sh[b.soff])), uintptr(b.sn-b.soff), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			b.soff += int(n)
			b.serr = nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // wait until writable
		default:
			b.serr = errno
		}
		return true
	}
}

// replyOOB writes into dst the control message that makes a reply leave
// from the destination of the datagram whose control messages are in:
// IP_PKTINFO with that source, or IPV6_PKTINFO with that address. It
// returns nil when in holds no packet information.
func replyOOB(dst, in []byte) []byte {
	for len(in) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&in[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(in) {
			return nil
		}
		data := in[unix.CmsgLen(0):l]
		switch {
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			got := (*unix.Inet4Pktinfo)(unsafe.Pointer(&data[0]))
			// ipi_addr is the datagram's destination: the reply's source.
			info := unix.Inet4Pktinfo{Spec_dst: got.Addr}
			return putCmsg(dst, unix.IPPROTO_IP, unix.IP_PKTINFO, unsafe.Slice((*byte)(unsafe.Pointer(&info)), unix.SizeofInet4Pktinfo))
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			got := (*unix.Inet6Pktinfo)(unsafe.Pointer(&data[0]))
			info := unix.Inet6Pktinfo{Addr: got.Addr}
			return putCmsg(dst, unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, unsafe.Slice((*byte)(unsafe.Pointer(&info)), unix.SizeofInet6Pktinfo))
		}
		sp := unix.CmsgSpace(l - unix.CmsgLen(0))
		if sp >= len(in) {
			return nil
		}
		in = in[sp:]
	}
	return nil
}

// putCmsg writes one control message into dst and returns it.
func putCmsg(dst []byte, level, typ int32, data []byte) []byte {
	sp := unix.CmsgSpace(len(data))
	dst = dst[:sp]
	clear(dst)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&dst[0]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(len(data)))
	copy(dst[unix.CmsgLen(0):], data)
	return dst
}

// addr returns the sender of datagram i for miekg/dns's answer (WriteTo):
// a *net.UDPAddr, or on a wildcard socket a *replyAddr that also holds
// the source the answer must leave from.
func (b *batchConn) addr(i int) net.Addr {
	ua := sockaddrUDP(&b.names[i])
	if !b.pktinfo {
		return ua
	}
	h := &b.rh[i].hdr
	var buf [64]byte
	oob := replyOOB(buf[:min(len(buf), oobSize)], b.oobs[i*oobSize:i*oobSize+int(h.Controllen)])
	return &replyAddr{UDPAddr: ua, oob: append([]byte(nil), oob...)}
}

// replyAddr is a client's address with the control message that sends
// from the address it queried.
type replyAddr struct {
	*net.UDPAddr
	oob []byte
}

// WriteTo implements net.PacketConn, for miekg/dns's answers.
func (b *batchConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if ra, ok := addr.(*replyAddr); ok {
		n, _, err := b.WriteMsgUDP(p, ra.oob, ra.UDPAddr)
		return n, err
	}
	return b.UDPConn.WriteTo(p, addr)
}

// sockaddrUDP converts a received sockaddr_in or sockaddr_in6.
func sockaddrUDP(sa *unix.RawSockaddrAny) *net.UDPAddr {
	switch sa.Addr.Family {
	case unix.AF_INET:
		in := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&in.Port))[:])
		return &net.UDPAddr{IP: net.IP(append([]byte(nil), in.Addr[:]...)), Port: int(port)}
	case unix.AF_INET6:
		in := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&in.Port))[:])
		ua := &net.UDPAddr{IP: net.IP(append([]byte(nil), in.Addr[:]...)), Port: int(port)}
		if in.Scope_id != 0 {
			ua.Zone = strconv.FormatUint(uint64(in.Scope_id), 10)
			if ifi, err := net.InterfaceByIndex(int(in.Scope_id)); err == nil {
				ua.Zone = ifi.Name
			}
		}
		return ua
	}
	return &net.UDPAddr{}
}
