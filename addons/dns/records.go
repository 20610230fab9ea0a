package dns

import (
	"net/netip"
	"sort"
	"strings"

	mdns "github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// serviceKind is how a Service is published.
type serviceKind int

const (
	kindClusterIP serviceKind = iota
	kindHeadless
	kindExternalName
)

// srvPort is one named port of a Service (or of an EndpointSlice for
// headless Services, whose clients connect to the endpoints directly).
type srvPort struct {
	name  string // lower case, without the leading "_"
	proto string // "tcp", "udp", "sctp"
	port  uint16
}

// endpoint is one ready address of a headless Service.
type endpoint struct {
	host  string // lower-case label: the endpoint's hostname or the dashed IP
	addr  netip.Addr
	ports []srvPort
}

// service is the immutable DNS view of one Service.
type service struct {
	name, ns string // lower case
	kind     serviceKind
	ips      []netip.Addr // cluster IPs
	external string       // FQDN target of an ExternalName Service
	ports    []srvPort    // named ports (cluster IP Services)
	eps      []endpoint   // ready endpoints (headless Services)
}

// fqdn is "<service>.<ns>.svc.<zone>".
func (s *service) fqdn(zone string) string {
	return s.name + "." + s.ns + ".svc." + zone
}

// exists reports whether "<service>.<ns>.svc.<zone>" exists at all: the
// specification answers NXDOMAIN for a headless Service without ready
// endpoints.
func (s *service) exists() bool {
	return s.kind != kindHeadless || len(s.eps) > 0
}

// hasProto reports whether a named port uses proto (the "_<proto>" empty
// non-terminal exists).
func (s *service) hasProto(proto string) bool {
	for _, p := range s.ports {
		if p.proto == proto {
			return true
		}
	}
	for _, e := range s.eps {
		for _, p := range e.ports {
			if p.proto == proto {
				return true
			}
		}
	}
	return false
}

// snapshot is an immutable record table. A new one is built and swapped in
// atomically whenever Services, EndpointSlices or Namespaces change; readers
// never lock.
type snapshot struct {
	serial     uint32
	services   map[string]*service // "<ns>/<name>" lower case
	namespaces map[string]bool     // known namespaces (lower case)
	ptr        map[netip.Addr][]string
}

func emptySnapshot() *snapshot {
	return &snapshot{services: map[string]*service{}, namespaces: map[string]bool{}, ptr: map[netip.Addr][]string{}}
}

func (s *snapshot) service(ns, name string) *service { return s.services[ns+"/"+name] }

// buildService computes the DNS view of svc from its EndpointSlices. It
// returns nil for a Service that publishes nothing (no cluster IP yet).
func buildService(svc *corev1.Service, slices []*discoveryv1.EndpointSlice) *service {
	out := &service{name: strings.ToLower(svc.Name), ns: strings.ToLower(svc.Namespace)}
	switch {
	case svc.Spec.Type == corev1.ServiceTypeExternalName:
		if svc.Spec.ExternalName == "" {
			return nil
		}
		out.kind = kindExternalName
		out.external = mdns.Fqdn(strings.ToLower(svc.Spec.ExternalName))
		return out
	case svc.Spec.ClusterIP == corev1.ClusterIPNone:
		out.kind = kindHeadless
		out.eps = readyEndpoints(svc, slices)
		return out
	}
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	for _, s := range ips {
		if a, err := netip.ParseAddr(s); err == nil {
			out.ips = append(out.ips, a.Unmap())
		}
	}
	if len(out.ips) == 0 {
		return nil
	}
	for _, p := range svc.Spec.Ports {
		if p.Name == "" {
			continue
		}
		out.ports = append(out.ports, srvPort{name: strings.ToLower(p.Name), proto: protoName(p.Protocol), port: uint16(p.Port)})
	}
	return out
}

func protoName(p corev1.Protocol) string {
	if p == "" {
		return "tcp"
	}
	return strings.ToLower(string(p))
}

// readyEndpoints collects the ready addresses of a headless Service's
// slices, one entry per address (an address in several slices counts once).
func readyEndpoints(svc *corev1.Service, slices []*discoveryv1.EndpointSlice) []endpoint {
	seen := map[netip.Addr]bool{}
	var eps []endpoint
	for _, sl := range slices {
		if sl.AddressType != discoveryv1.AddressTypeIPv4 && sl.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		var ports []srvPort
		for _, p := range sl.Ports {
			if p.Name == nil || *p.Name == "" || p.Port == nil {
				continue
			}
			proto := corev1.ProtocolTCP
			if p.Protocol != nil {
				proto = *p.Protocol
			}
			ports = append(ports, srvPort{name: strings.ToLower(*p.Name), proto: protoName(proto), port: uint16(*p.Port)})
		}
		for _, ep := range sl.Endpoints {
			// Ready is nil-means-ready, as upstream's EndpointSlice API says.
			ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
			if !ready && !svc.Spec.PublishNotReadyAddresses {
				continue
			}
			for _, s := range ep.Addresses {
				a, err := netip.ParseAddr(s)
				if err != nil || seen[a.Unmap()] {
					continue
				}
				a = a.Unmap()
				seen[a] = true
				host := ""
				if ep.Hostname != nil {
					host = strings.ToLower(*ep.Hostname)
				}
				if host == "" {
					host = dashed(a)
				}
				eps = append(eps, endpoint{host: host, addr: a, ports: ports})
			}
		}
	}
	sort.Slice(eps, func(i, j int) bool { return eps[i].addr.Less(eps[j].addr) })
	return eps
}

// dashed is the system-assigned hostname of an endpoint without one:
// its address with "." or ":" replaced by "-" (unique within a Service).
func dashed(a netip.Addr) string {
	r := strings.NewReplacer(".", "-", ":", "-")
	return r.Replace(a.String())
}

// addPTR records the reverse names of s into ptr.
func addPTR(ptr map[netip.Addr][]string, s *service, zone string) {
	switch s.kind {
	case kindClusterIP:
		for _, a := range s.ips {
			ptr[a] = append(ptr[a][:len(ptr[a]):len(ptr[a])], s.fqdn(zone))
		}
	case kindHeadless:
		for _, e := range s.eps {
			old := ptr[e.addr]
			ptr[e.addr] = append(old[:len(old):len(old)], e.host+"."+s.fqdn(zone))
		}
	}
}

// removePTR undoes addPTR.
func removePTR(ptr map[netip.Addr][]string, s *service, zone string) {
	drop := func(a netip.Addr, name string) {
		names := ptr[a]
		out := names[:0:0]
		for _, n := range names {
			if n != name {
				out = append(out, n)
			}
		}
		if len(out) == 0 {
			delete(ptr, a)
		} else {
			ptr[a] = out
		}
	}
	switch s.kind {
	case kindClusterIP:
		for _, a := range s.ips {
			drop(a, s.fqdn(zone))
		}
	case kindHeadless:
		for _, e := range s.eps {
			drop(e.addr, e.host+"."+s.fqdn(zone))
		}
	}
}

// reverseAddr parses an in-addr.arpa or ip6.arpa name (lower case, fully
// qualified) into the address it names.
func reverseAddr(name string) (netip.Addr, bool) {
	switch {
	case strings.HasSuffix(name, ".in-addr.arpa."):
		labels := strings.Split(strings.TrimSuffix(name, ".in-addr.arpa."), ".")
		if len(labels) != 4 {
			return netip.Addr{}, false
		}
		var b [4]byte
		for i, l := range labels {
			n, ok := octet(l)
			if !ok {
				return netip.Addr{}, false
			}
			b[3-i] = n
		}
		return netip.AddrFrom4(b), true
	case strings.HasSuffix(name, ".ip6.arpa."):
		labels := strings.Split(strings.TrimSuffix(name, ".ip6.arpa."), ".")
		if len(labels) != 32 {
			return netip.Addr{}, false
		}
		var b [16]byte
		for i, l := range labels {
			if len(l) != 1 {
				return netip.Addr{}, false
			}
			v := strings.IndexByte("0123456789abcdef", l[0])
			if v < 0 {
				return netip.Addr{}, false
			}
			pos := 31 - i
			if pos%2 == 0 {
				b[pos/2] |= byte(v) << 4
			} else {
				b[pos/2] |= byte(v)
			}
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}

func octet(s string) (byte, bool) {
	if s == "" || len(s) > 3 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if n > 255 {
		return 0, false
	}
	return byte(n), true
}
