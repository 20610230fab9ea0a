package dns

import (
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
)

// The UDP fast path. A cluster answer is a function of the request's
// bytes after the ID and of the record table's snapshot, so the packed
// answer to a plain query (one question of ordinary labels, at most a bare
// OPT record) is kept, keyed by those bytes, until the snapshot changes.
// A repeated query is then answered from the socket read loop itself: the
// ID patched into a copy of the stored answer, with no decoding, handler,
// encoding or goroutine. Everything else (first queries, forwarded names,
// odd packets) takes miekg/dns's path unchanged; the stored answers are
// exactly what that path produced.

// fastMaxEntries bounds the answers kept; past it the map starts over.
const fastMaxEntries = 50000

type fastCache struct {
	mu      sync.RWMutex
	snap    *snapshot
	answers map[string][]byte // request bytes after the ID -> packed answer
	hits    atomic.Int64      // answers sent by the fast path
}

// lookup returns the stored answer for a request's bytes after the ID,
// if it was computed from snap.
func (c *fastCache) lookup(snap *snapshot, key []byte) []byte {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.snap != snap {
		return nil
	}
	return c.answers[string(key)]
}

// store keeps answer for key, computed from snap.
func (c *fastCache) store(snap *snapshot, key string, answer []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.snap != snap || len(c.answers) >= fastMaxEntries {
		c.snap, c.answers = snap, make(map[string][]byte)
	}
	c.answers[key] = answer
}

// plainQuery reports whether pkt is a query the fast path may answer: a
// 12-byte header with QR, opcode, TC and the answer and authority counts
// zero, exactly one question whose name is uncompressed labels of
// letters, digits, '-' and '_', and either nothing else or one OPT record
// for the root with no options. These are exactly the requests that
// miekg/dns decodes and re-encodes byte for byte.
func plainQuery(pkt []byte) bool {
	if len(pkt) < 12+1+4 {
		return false
	}
	flags := binary.BigEndian.Uint16(pkt[2:])
	if flags&(1<<15) != 0 || (flags>>11)&0xF != 0 || flags&(1<<9) != 0 {
		return false // a response, another opcode, truncated
	}
	qd, an, ns, ar := binary.BigEndian.Uint16(pkt[4:]), binary.BigEndian.Uint16(pkt[6:]), binary.BigEndian.Uint16(pkt[8:]), binary.BigEndian.Uint16(pkt[10:])
	if qd != 1 || an != 0 || ns != 0 || ar > 1 {
		return false
	}
	off, nameLen := 12, 0
	for {
		if off >= len(pkt) {
			return false
		}
		l := int(pkt[off])
		off++
		if l == 0 {
			break
		}
		if l > 63 || off+l > len(pkt) {
			return false // compression pointers and extended labels too
		}
		for _, c := range pkt[off : off+l] {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
		off += l
		if nameLen += l + 1; nameLen > 254 {
			return false
		}
	}
	off += 4 // type, class
	if ar == 0 {
		return off == len(pkt)
	}
	// OPT: root name, type 41, class (UDP size), TTL, RDLENGTH 0.
	return off+11 == len(pkt) && pkt[off] == 0 &&
		binary.BigEndian.Uint16(pkt[off+1:]) == mdns.TypeOPT &&
		binary.BigEndian.Uint16(pkt[off+9:]) == 0
}

// fastReader answers repeated plain queries in the read loop and hands
// every other packet to miekg/dns.
type fastReader struct {
	mdns.Reader
	h   *Handler
	buf []byte // one read loop per server: reused for every packet
	out []byte
}

var _ mdns.PacketConnReader = (*fastReader)(nil)

func (h *Handler) decorateReader(r mdns.Reader) mdns.Reader {
	return &fastReader{Reader: r, h: h, buf: make([]byte, maxUDPSize+1), out: make([]byte, 0, maxUDPSize)}
}

// ReadUDP implements mdns.Reader.
func (f *fastReader) ReadUDP(conn *net.UDPConn, _ time.Duration) ([]byte, *mdns.SessionUDP, error) {
	// No read deadline: Shutdown closes the socket, which ends the read.
	for {
		n, sess, err := mdns.ReadFromSessionUDP(conn, f.buf)
		if err != nil {
			return nil, nil, err
		}
		pkt := f.buf[:n]
		if f.answer(conn, pkt, sess) {
			continue
		}
		return append([]byte(nil), pkt...), sess, nil
	}
}

// ReadPacketConn implements mdns.PacketConnReader (non-UDPConn sockets do
// not take the fast path).
func (f *fastReader) ReadPacketConn(conn net.PacketConn, timeout time.Duration) ([]byte, net.Addr, error) {
	return f.Reader.(mdns.PacketConnReader).ReadPacketConn(conn, timeout)
}

// answer writes the stored answer to pkt, if there is one.
func (f *fastReader) answer(conn *net.UDPConn, pkt []byte, sess *mdns.SessionUDP) bool {
	if len(pkt) < 12 || !plainQuery(pkt) {
		return false
	}
	start := time.Now()
	stored := f.h.fast.lookup(f.h.t.load(), pkt[2:])
	if stored == nil {
		return false
	}
	f.out = append(f.out[:0], stored...)
	copy(f.out[:2], pkt[:2])
	_, _ = mdns.WriteToSessionUDP(conn, f.out, sess)
	f.h.fast.hits.Add(1)
	f.h.m.observe("udp", srcCluster, int(stored[3]&0xF), time.Since(start))
	return true
}

// remember stores the packed answer to r (a UDP request answered from
// snap) for the fast path, when r is a plain query.
func (h *Handler) remember(snap *snapshot, r *mdns.Msg, packed []byte) {
	req, err := r.Pack()
	if err != nil || !plainQuery(req) {
		return
	}
	h.fast.store(snap, string(req[2:]), packed)
}
