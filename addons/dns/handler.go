package dns

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// SchemaVersion is the Kubernetes DNS-Based Service Discovery
// specification version served as the dns-version TXT record.
const SchemaVersion = "1.1.0"

const (
	maxUDPSize  = 4096 // the largest EDNS0 payload we answer with
	maxCNAMEDep = 8
)

// Handler answers DNS queries: the cluster zone from the record table,
// reverse names of cluster addresses, and everything else through the
// forwarder (when one is configured).
type Handler struct {
	zone       string // "cluster.local." lower case
	t          *table
	fwd        *forwarder
	nsAddrs    []netip.Addr // addresses of ns.dns.<zone> (the cluster DNS IP)
	ttl        uint32
	podRecords bool
	m          *metrics
	fast       fastCache // answers for the UDP fast path (fastpath.go)
}

var _ mdns.Handler = (*Handler)(nil)

// ServeDNS implements mdns.Handler.
func (h *Handler) ServeDNS(w mdns.ResponseWriter, r *mdns.Msg) {
	start := time.Now()
	proto := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		proto = "tcp"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	snap := h.t.load()
	m, source, hit := h.answer(ctx, r, snap)
	if proto == "udp" {
		size := mdns.MinMsgSize
		if opt := r.IsEdns0(); opt != nil && int(opt.UDPSize()) > size {
			size = min(int(opt.UDPSize()), maxUDPSize)
		}
		m.Truncate(size)
		cluster := source == srcCluster && !hasCNAME(m)
		if cluster || !hit.stored.IsZero() {
			// Deterministic from the snapshot (no forwarded CNAME
			// target), or from a cache entry with TTLs counting down:
			// kept for the fast path.
			if packed, err := m.Pack(); err == nil {
				if cluster {
					h.remember(snap, r, packed)
				} else {
					h.rememberForwarded(r, packed, hit)
				}
				_, _ = w.Write(packed)
				h.m.observe(proto, source, m.Rcode, time.Since(start))
				return
			}
		}
	}
	_ = w.WriteMsg(m)
	h.m.observe(proto, source, m.Rcode, time.Since(start))
}

// Sources of an answer, for the metrics' "source" label.
const (
	srcCluster = "cluster"
	srcForward = "forward"
	srcError   = "error"
)

// hasCNAME reports whether m's answer holds a CNAME (whose target may
// have been resolved upstream).
func hasCNAME(m *mdns.Msg) bool {
	for _, rr := range m.Answer {
		if rr.Header().Rrtype == mdns.TypeCNAME {
			return true
		}
	}
	return false
}

// answer computes the response to r from the table snapshot snap; a
// forwarded answer from the cache comes with the entry's times.
func (h *Handler) answer(ctx context.Context, r *mdns.Msg, snap *snapshot) (*mdns.Msg, string, cacheHit) {
	m := new(mdns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = h.fwd != nil
	if opt := r.IsEdns0(); opt != nil {
		m.SetEdns0(maxUDPSize, false)
		if opt.Version() != 0 {
			m.Rcode = mdns.RcodeBadVers
			return m, srcError, cacheHit{}
		}
	}
	if r.Opcode != mdns.OpcodeQuery {
		m.Rcode = mdns.RcodeNotImplemented
		return m, srcError, cacheHit{}
	}
	if len(r.Question) != 1 {
		m.Rcode = mdns.RcodeFormatError
		return m, srcError, cacheHit{}
	}
	q := r.Question[0]
	switch q.Qtype {
	case mdns.TypeNone, mdns.TypeOPT, mdns.TypeTSIG, mdns.TypeTKEY:
		m.Rcode = mdns.RcodeFormatError
		return m, srcError, cacheHit{}
	case mdns.TypeAXFR, mdns.TypeIXFR:
		m.Rcode = mdns.RcodeRefused
		return m, srcError, cacheHit{}
	case mdns.TypeMAILA, mdns.TypeMAILB:
		m.Rcode = mdns.RcodeNotImplemented
		return m, srcError, cacheHit{}
	}
	if q.Qclass != mdns.ClassINET {
		m.Rcode = mdns.RcodeRefused
		return m, srcError, cacheHit{}
	}
	name := strings.ToLower(q.Name)
	if _, ok := mdns.IsDomainName(name); !ok || !mdns.IsFqdn(name) {
		m.Rcode = mdns.RcodeFormatError
		return m, srcError, cacheHit{}
	}
	if mdns.IsSubDomain(h.zone, name) {
		h.zoneAnswer(ctx, m, q, name, snap)
		return m, srcCluster, cacheHit{}
	}
	if a, ok := reverseAddr(name); ok {
		if names := snap.ptr[a]; len(names) > 0 {
			m.Authoritative = true
			if q.Qtype == mdns.TypePTR || q.Qtype == mdns.TypeANY {
				for _, n := range names {
					m.Answer = append(m.Answer, &mdns.PTR{Hdr: h.hdr(q.Name, mdns.TypePTR), Ptr: n})
				}
			}
			return m, srcCluster, cacheHit{}
		}
	}
	if h.fwd == nil {
		m.Rcode = mdns.RcodeRefused
		return m, srcError, cacheHit{}
	}
	resp, hit, err := h.fwd.forward(ctx, r)
	if err != nil {
		m.Rcode = mdns.RcodeServerFailure
		return m, srcError, cacheHit{}
	}
	return resp, srcForward, hit
}

func (h *Handler) hdr(owner string, t uint16) mdns.RR_Header {
	return mdns.RR_Header{Name: owner, Rrtype: t, Class: mdns.ClassINET, Ttl: h.ttl}
}

func (h *Handler) soa(serial uint32) *mdns.SOA {
	return &mdns.SOA{
		Hdr:     h.hdr(h.zone, mdns.TypeSOA),
		Ns:      "ns.dns." + h.zone,
		Mbox:    "hostmaster." + h.zone,
		Serial:  serial,
		Refresh: 7200,
		Retry:   1800,
		Expire:  86400,
		Minttl:  h.ttl,
	}
}

// zoneAnswer fills m for a name inside the cluster zone.
func (h *Handler) zoneAnswer(ctx context.Context, m *mdns.Msg, q mdns.Question, name string, snap *snapshot) {
	m.Authoritative = true
	rel := strings.TrimSuffix(strings.TrimSuffix(name, h.zone), ".")
	var labels []string
	if rel != "" {
		labels = strings.Split(rel, ".")
	}
	for _, l := range labels {
		if l == "*" {
			// Wildcard queries (once served by kube-dns) are not served.
			m.Authoritative = false
			m.Rcode = mdns.RcodeRefused
			return
		}
	}
	rrs, extra, exists := h.lookup(labels, q.Name, snap)
	if !exists {
		m.Rcode = mdns.RcodeNameError
		m.Ns = []mdns.RR{h.soa(snap.serial)}
		return
	}
	// A CNAME answers every type but CNAME itself, and is followed.
	if len(rrs) == 1 && rrs[0].Header().Rrtype == mdns.TypeCNAME && q.Qtype != mdns.TypeCNAME && q.Qtype != mdns.TypeANY {
		m.Answer = rrs
		h.chase(ctx, m, q, rrs[0].(*mdns.CNAME).Target, snap, 0)
		return
	}
	for _, rr := range rrs {
		if q.Qtype == mdns.TypeANY || rr.Header().Rrtype == q.Qtype {
			m.Answer = append(m.Answer, rr)
		}
	}
	if len(m.Answer) == 0 {
		m.Ns = []mdns.RR{h.soa(snap.serial)} // NODATA
		return
	}
	if q.Qtype == mdns.TypeSRV || q.Qtype == mdns.TypeNS {
		m.Extra = append(m.Extra, extra...)
	}
}

// chase appends the records of a CNAME target: from the table when it is
// in the cluster zone, otherwise through the forwarder.
func (h *Handler) chase(ctx context.Context, m *mdns.Msg, q mdns.Question, target string, snap *snapshot, depth int) {
	if depth >= maxCNAMEDep {
		return
	}
	if mdns.IsSubDomain(h.zone, target) {
		sub := new(mdns.Msg)
		h.zoneAnswer(ctx, sub, mdns.Question{Name: target, Qtype: q.Qtype, Qclass: q.Qclass}, target, snap)
		m.Answer = append(m.Answer, sub.Answer...)
		return
	}
	if h.fwd == nil {
		return
	}
	req := new(mdns.Msg)
	req.SetQuestion(target, q.Qtype)
	resp, _, err := h.fwd.forward(ctx, req)
	if err != nil {
		return
	}
	m.Answer = append(m.Answer, resp.Answer...)
}

// lookup returns every record owned by the name whose labels (left of the
// zone) are given, the additional records for SRV/NS answers, and whether
// the name exists (an empty non-terminal exists and has no records).
func (h *Handler) lookup(labels []string, owner string, snap *snapshot) (rrs, extra []mdns.RR, exists bool) {
	n := len(labels)
	if n == 0 {
		ns := &mdns.NS{Hdr: h.hdr(owner, mdns.TypeNS), Ns: "ns.dns." + h.zone}
		soa := h.soa(snap.serial)
		soa.Hdr.Name = owner
		return []mdns.RR{soa, ns}, h.addrRecords("ns.dns."+h.zone, h.nsAddrs), true
	}
	switch labels[n-1] {
	case "dns-version":
		if n == 1 {
			return []mdns.RR{&mdns.TXT{Hdr: h.hdr(owner, mdns.TypeTXT), Txt: []string{SchemaVersion}}}, nil, true
		}
	case "dns":
		switch {
		case n == 1:
			return nil, nil, true
		case n == 2 && labels[0] == "ns":
			return h.addrRecords(owner, h.nsAddrs), nil, true
		}
	case "svc":
		return h.lookupSvc(labels[:n-1], owner, snap)
	case "pod":
		if !h.podRecords {
			return nil, nil, false
		}
		switch n {
		case 1:
			return nil, nil, true
		case 2:
			return nil, nil, snap.namespaces[labels[0]]
		case 3:
			a, ok := undash(labels[0])
			if !ok {
				return nil, nil, false
			}
			return h.addrRecords(owner, []netip.Addr{a}), nil, true
		}
	}
	return nil, nil, false
}

// lookupSvc handles names under svc.<zone>; labels exclude "svc".
func (h *Handler) lookupSvc(labels []string, owner string, snap *snapshot) (rrs, extra []mdns.RR, exists bool) {
	n := len(labels)
	switch n {
	case 0:
		return nil, nil, true
	case 1:
		return nil, nil, snap.namespaces[labels[0]]
	}
	s := snap.service(labels[n-1], labels[n-2])
	if s == nil || !s.exists() {
		return nil, nil, false
	}
	switch n {
	case 2: // <service>.<ns>
		switch s.kind {
		case kindExternalName:
			return []mdns.RR{&mdns.CNAME{Hdr: h.hdr(owner, mdns.TypeCNAME), Target: s.external}}, nil, true
		case kindClusterIP:
			return h.addrRecords(owner, s.ips), nil, true
		default:
			addrs := make([]netip.Addr, len(s.eps))
			for i, e := range s.eps {
				addrs[i] = e.addr
			}
			return h.addrRecords(owner, addrs), nil, true
		}
	case 3: // _<proto>.<service>.<ns> or <hostname>.<service>.<ns>
		l := labels[0]
		if p, ok := strings.CutPrefix(l, "_"); ok {
			return nil, nil, s.hasProto(p)
		}
		if s.kind != kindHeadless {
			return nil, nil, false
		}
		var addrs []netip.Addr
		for _, e := range s.eps {
			if e.host == l {
				addrs = append(addrs, e.addr)
			}
		}
		return h.addrRecords(owner, addrs), nil, len(addrs) > 0
	case 4: // _<port>._<proto>.<service>.<ns>
		port, ok1 := strings.CutPrefix(labels[0], "_")
		proto, ok2 := strings.CutPrefix(labels[1], "_")
		if !ok1 || !ok2 {
			return nil, nil, false
		}
		return h.srv(s, port, proto, owner)
	}
	return nil, nil, false
}

// srv builds the SRV records of a named port and their address records.
func (h *Handler) srv(s *service, port, proto, owner string) (rrs, extra []mdns.RR, exists bool) {
	type target struct {
		name string
		port uint16
		addr []netip.Addr
	}
	var ts []target
	switch s.kind {
	case kindClusterIP:
		for _, p := range s.ports {
			if p.name == port && p.proto == proto {
				ts = append(ts, target{s.fqdn(h.zone), p.port, s.ips})
			}
		}
	case kindHeadless:
		for _, e := range s.eps {
			for _, p := range e.ports {
				if p.name == port && p.proto == proto {
					ts = append(ts, target{e.host + "." + s.fqdn(h.zone), p.port, []netip.Addr{e.addr}})
				}
			}
		}
	}
	if len(ts) == 0 {
		return nil, nil, false
	}
	weight := uint16(max(1, 100/len(ts)))
	for _, t := range ts {
		rrs = append(rrs, &mdns.SRV{Hdr: h.hdr(owner, mdns.TypeSRV), Priority: 0, Weight: weight, Port: t.port, Target: t.name})
		extra = append(extra, h.addrRecords(t.name, t.addr)...)
	}
	return rrs, extra, true
}

func (h *Handler) addrRecords(owner string, addrs []netip.Addr) []mdns.RR {
	out := make([]mdns.RR, 0, len(addrs))
	for _, a := range addrs {
		if a.Is4() {
			out = append(out, &mdns.A{Hdr: h.hdr(owner, mdns.TypeA), A: a.AsSlice()})
		} else {
			out = append(out, &mdns.AAAA{Hdr: h.hdr(owner, mdns.TypeAAAA), AAAA: a.AsSlice()})
		}
	}
	return out
}

// undash parses the "a-b-c-d" (or dashed IPv6) label of a pod record.
func undash(l string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(strings.ReplaceAll(l, "-", ".")); err == nil && a.Is4() {
		return a, true
	}
	if a, err := netip.ParseAddr(strings.ReplaceAll(l, "-", ":")); err == nil && a.Is6() && !a.Is4In6() {
		return a, true
	}
	return netip.Addr{}, false
}
