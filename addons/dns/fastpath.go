package dns

import (
	"encoding/binary"
	"net"
	"strings"
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
	mu        sync.RWMutex
	snap      *snapshot
	answers   map[string][]byte         // request bytes after the ID -> packed answer
	forwarded map[string]*fastForwarded // the same for answers from the forwarding cache
	hits      atomic.Int64              // answers sent by the fast path
}

// fastForwarded is a forwarded answer from the cache, packed, with its
// TTLs counting down: each TTL field (at ttls[i]) is base[i] minus the
// whole seconds since stored, at least 0, as the forwarding cache
// computes them. It is repeated until until, then the full path answers
// again (expiry, prefetch).
type fastForwarded struct {
	msg           []byte
	ttls          []uint16
	base          []uint32
	stored, until time.Time
}

// appendLocked appends to dst the stored answer to the request pkt (an
// answer computed from snap, with pkt's ID), if there is one. c.mu must
// be read-locked. Only plain queries are stored, and a packet with the
// same bytes after the ID is the same plain query, so pkt needs no check
// of its own.
func (c *fastCache) appendLocked(dst []byte, snap *snapshot, pkt []byte, now func() time.Time) ([]byte, int, bool) {
	if len(pkt) < 12 {
		return dst, 0, false
	}
	off := len(dst)
	if c.snap == snap {
		if stored, ok := c.answers[string(pkt[2:])]; ok {
			dst = append(dst, stored...)
			dst[off], dst[off+1] = pkt[0], pkt[1]
			return dst, fastCluster, true
		}
	}
	e, ok := c.forwarded[string(pkt[2:])]
	if !ok {
		return dst, 0, false
	}
	t := now()
	if !t.Before(e.until) {
		return dst, 0, false
	}
	age := uint32(t.Sub(e.stored) / time.Second)
	dst = append(dst, e.msg...)
	dst[off], dst[off+1] = pkt[0], pkt[1]
	for i, at := range e.ttls {
		ttl := e.base[i]
		if ttl > age {
			ttl -= age
		} else {
			ttl = 0
		}
		binary.BigEndian.PutUint32(dst[off+int(at):], ttl)
	}
	return dst, fastForward, true
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

// storeForwarded keeps e for key; when the map is full, the entries past
// their time are dropped, or all of them.
func (c *fastCache) storeForwarded(key string, e *fastForwarded) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.forwarded == nil {
		c.forwarded = make(map[string]*fastForwarded)
	}
	if _, ok := c.forwarded[key]; !ok && len(c.forwarded) >= fastMaxEntries {
		for k, old := range c.forwarded {
			if !e.stored.Before(old.until) {
				delete(c.forwarded, k)
			}
		}
		if len(c.forwarded) >= fastMaxEntries {
			c.forwarded = make(map[string]*fastForwarded)
		}
	}
	c.forwarded[key] = e
}

// ttlOffsets returns the offsets and values of the TTL fields of every
// record of the packed message msg (not OPT's, which holds flags).
func ttlOffsets(msg []byte) ([]uint16, []uint32, bool) {
	if len(msg) < 12 || len(msg) > 0xFFFF {
		return nil, nil, false
	}
	qd := int(binary.BigEndian.Uint16(msg[4:]))
	rrs := int(binary.BigEndian.Uint16(msg[6:])) + int(binary.BigEndian.Uint16(msg[8:])) + int(binary.BigEndian.Uint16(msg[10:]))
	off := 12
	for range qd {
		if off = skipName(msg, off); off < 0 || off+4 > len(msg) {
			return nil, nil, false
		}
		off += 4
	}
	var offs []uint16
	var vals []uint32
	for range rrs {
		if off = skipName(msg, off); off < 0 || off+10 > len(msg) {
			return nil, nil, false
		}
		if binary.BigEndian.Uint16(msg[off:]) != mdns.TypeOPT {
			offs = append(offs, uint16(off+4))
			vals = append(vals, binary.BigEndian.Uint32(msg[off+4:]))
		}
		off += 10 + int(binary.BigEndian.Uint16(msg[off+8:]))
		if off > len(msg) {
			return nil, nil, false
		}
	}
	return offs, vals, off == len(msg)
}

// skipName returns the offset after the (possibly compressed) name at
// off, or -1.
func skipName(msg []byte, off int) int {
	for off < len(msg) {
		l := int(msg[off])
		switch {
		case l == 0:
			return off + 1
		case l&0xC0 == 0xC0:
			if off+2 > len(msg) {
				return -1
			}
			return off + 2
		case l&0xC0 != 0:
			return -1
		}
		off += 1 + l
	}
	return -1
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
// every other packet to miekg/dns. On a *batchConn (Linux) it reads and
// answers whole batches; on a *net.UDPConn one packet at a time.
type fastReader struct {
	mdns.Reader
	h   *Handler
	buf []byte // one read loop per server: reused for every packet
	out []byte
}

var _ mdns.PacketConnReader = (*fastReader)(nil)

func (h *Handler) decorateReader(r mdns.Reader) mdns.Reader {
	return &fastReader{Reader: r, h: h}
}

// ReadUDP implements mdns.Reader.
func (f *fastReader) ReadUDP(conn *net.UDPConn, _ time.Duration) ([]byte, *mdns.SessionUDP, error) {
	if f.buf == nil {
		f.buf, f.out = make([]byte, maxUDPSize+1), make([]byte, 0, maxUDPSize)
	}
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

// ReadPacketConn implements mdns.PacketConnReader: a *batchConn is read
// in batches, other sockets do not take the fast path.
func (f *fastReader) ReadPacketConn(conn net.PacketConn, timeout time.Duration) ([]byte, net.Addr, error) {
	if b, ok := conn.(*batchConn); ok {
		return b.next()
	}
	return f.Reader.(mdns.PacketConnReader).ReadPacketConn(conn, timeout)
}

// answer writes the stored answer to pkt, if there is one.
func (f *fastReader) answer(conn *net.UDPConn, pkt []byte, sess *mdns.SessionUDP) bool {
	start := time.Now()
	snap := f.h.t.load()
	f.h.fast.mu.RLock()
	out, source, ok := f.h.fast.appendLocked(f.out[:0], snap, pkt, f.h.now)
	f.h.fast.mu.RUnlock()
	if !ok {
		return false
	}
	f.out = out
	f.h.fast.hits.Add(1) // before the answer leaves (tests read it)
	_, _ = mdns.WriteToSessionUDP(conn, out, sess)
	var tally fastBatch
	tally.add(source, int(out[3]&0xF))
	f.h.m.observeFast(&tally, time.Since(start))
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

// rememberForwarded stores the packed answer to r (a UDP request answered
// from the forwarding cache entry hit) for the fast path, when r is a
// plain query for a name that can never become a cluster answer (not a
// reverse name, which a Service's address may take over).
func (h *Handler) rememberForwarded(r *mdns.Msg, packed []byte, hit cacheHit) {
	name := strings.ToLower(r.Question[0].Name)
	if strings.HasSuffix(name, ".in-addr.arpa.") || strings.HasSuffix(name, ".ip6.arpa.") {
		return
	}
	req, err := r.Pack()
	if err != nil || !plainQuery(req) {
		return
	}
	offs, vals, ok := ttlOffsets(packed)
	if !ok {
		return
	}
	for i := range vals {
		vals[i] += hit.age // the TTLs at age 0 (a TTL cut to 0 stays 0 from then on)
	}
	h.fast.storeForwarded(string(req[2:]), &fastForwarded{msg: packed, ttls: offs, base: vals, stored: hit.stored, until: hit.fastUntil()})
}

// now is the forwarding cache's clock (tests set it), else the time.
func (h *Handler) now() time.Time {
	if h.fwd != nil && h.fwd.cache != nil {
		return h.fwd.cache.now()
	}
	return time.Now()
}
