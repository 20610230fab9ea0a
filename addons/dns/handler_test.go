package dns

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ptr[T any](v T) *T { return &v }

func svc(ns, name string, mut func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	mut(s)
	return s
}

func slice(ns, svcName string, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: svcName + "-x", Labels: map[string]string{discoveryv1.LabelServiceName: svcName}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       ports,
		Endpoints:   eps,
	}
}

// testTable loads a fixed set of services into a table.
func testTable() *table {
	t := newTable("cluster.local.")
	web := svc("ns1", "Web", func(s *corev1.Service) {
		s.Spec.ClusterIP = "10.43.0.20"
		s.Spec.Ports = []corev1.ServicePort{
			{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80},
			{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53},
			{Port: 8080},
		}
	})
	dual := svc("ns1", "dual", func(s *corev1.Service) {
		s.Spec.ClusterIP = "10.43.0.21"
		s.Spec.ClusterIPs = []string{"10.43.0.21", "fd00::21"}
	})
	hl := svc("ns1", "hl", func(s *corev1.Service) { s.Spec.ClusterIP = corev1.ClusterIPNone })
	hlSlices := []*discoveryv1.EndpointSlice{slice("ns1", "hl",
		[]discoveryv1.EndpointPort{{Name: ptr("http"), Protocol: ptr(corev1.ProtocolTCP), Port: ptr(int32(8080))}},
		discoveryv1.Endpoint{Addresses: []string{"10.42.0.5"}, Hostname: ptr("pet-0"), Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}},
		discoveryv1.Endpoint{Addresses: []string{"10.42.0.6"}},
		discoveryv1.Endpoint{Addresses: []string{"10.42.0.7"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(false)}},
	)}
	empty := svc("ns1", "empty", func(s *corev1.Service) { s.Spec.ClusterIP = corev1.ClusterIPNone })
	ext := svc("ns1", "ext", func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeExternalName
		s.Spec.ExternalName = "web.ns1.svc.cluster.local"
	})
	t.apply(map[string]*service{
		"ns1/web":   buildService(web, nil),
		"ns1/dual":  buildService(dual, nil),
		"ns1/hl":    buildService(hl, hlSlices),
		"ns1/empty": buildService(empty, nil),
		"ns1/ext":   buildService(ext, nil),
	}, map[string]bool{"ns1": true, "default": true})
	return t
}

// serve starts a real miekg/dns server with h on loopback UDP and TCP.
func serve(t *testing.T, h mdns.Handler) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		pc.Close()
		t.Skipf("tcp port %s taken: %v", addr, err)
	}
	udp := &mdns.Server{PacketConn: pc, Handler: h}
	if hh, ok := h.(*Handler); ok {
		udp.DecorateReader = hh.decorateReader // as the add-on serves UDP
	}
	for _, srv := range []*mdns.Server{udp, {Listener: ln, Handler: h}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return addr
}

func newTestHandler(t *table) *Handler {
	return &Handler{zone: "cluster.local.", t: t, ttl: 5, podRecords: true, m: newMetrics(prometheus.NewRegistry())}
}

func query(t *testing.T, addr, name string, qtype uint16) *mdns.Msg {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	c := &mdns.Client{Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("query %s %s: %v", name, mdns.TypeToString[qtype], err)
	}
	return r
}

// rdata renders the answer section without owner, TTL and class.
func rdata(rrs []mdns.RR) []string {
	var out []string
	for _, rr := range rrs {
		f := strings.Fields(rr.String())
		out = append(out, strings.Join(append([]string{f[0]}, f[3:]...), " "))
	}
	slices.Sort(out)
	return out
}

func TestClusterRecords(t *testing.T) {
	h := newTestHandler(testTable())
	h.nsAddrs = nil
	addr := serve(t, h)
	const soa = "cluster.local. SOA ns.dns.cluster.local. hostmaster.cluster.local."
	cases := []struct {
		name   string
		qtype  uint16
		rcode  int
		answer []string
		negSOA bool
	}{
		{"dns-version.cluster.local.", mdns.TypeTXT, mdns.RcodeSuccess, []string{`dns-version.cluster.local. TXT "1.1.0"`}, false},
		{"dns-version.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, nil, true},
		{"web.ns1.svc.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, []string{"web.ns1.svc.cluster.local. A 10.43.0.20"}, false},
		{"WEB.Ns1.svc.Cluster.Local.", mdns.TypeA, mdns.RcodeSuccess, []string{"WEB.Ns1.svc.Cluster.Local. A 10.43.0.20"}, false},
		{"web.ns1.svc.cluster.local.", mdns.TypeAAAA, mdns.RcodeSuccess, nil, true},
		{"dual.ns1.svc.cluster.local.", mdns.TypeAAAA, mdns.RcodeSuccess, []string{"dual.ns1.svc.cluster.local. AAAA fd00::21"}, false},
		{"dual.ns1.svc.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, []string{"dual.ns1.svc.cluster.local. A 10.43.0.21"}, false},
		{"_http._tcp.web.ns1.svc.cluster.local.", mdns.TypeSRV, mdns.RcodeSuccess, []string{"_http._tcp.web.ns1.svc.cluster.local. SRV 0 100 80 web.ns1.svc.cluster.local."}, false},
		{"_dns._udp.web.ns1.svc.cluster.local.", mdns.TypeSRV, mdns.RcodeSuccess, []string{"_dns._udp.web.ns1.svc.cluster.local. SRV 0 100 53 web.ns1.svc.cluster.local."}, false},
		{"_http._udp.web.ns1.svc.cluster.local.", mdns.TypeSRV, mdns.RcodeNameError, nil, true},
		{"_tcp.web.ns1.svc.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, nil, true}, // empty non-terminal
		{"_sctp.web.ns1.svc.cluster.local.", mdns.TypeA, mdns.RcodeNameError, nil, true},
		{"20.0.43.10.in-addr.arpa.", mdns.TypePTR, mdns.RcodeSuccess, []string{"20.0.43.10.in-addr.arpa. PTR web.ns1.svc.cluster.local."}, false},
		{"1.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", mdns.TypePTR, mdns.RcodeSuccess,
			[]string{"1.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa. PTR dual.ns1.svc.cluster.local."}, false},
		{"hl.ns1.svc.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, []string{"hl.ns1.svc.cluster.local. A 10.42.0.5", "hl.ns1.svc.cluster.local. A 10.42.0.6"}, false},
		{"pet-0.hl.ns1.svc.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, []string{"pet-0.hl.ns1.svc.cluster.local. A 10.42.0.5"}, false},
		{"10-42-0-6.hl.ns1.svc.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, []string{"10-42-0-6.hl.ns1.svc.cluster.local. A 10.42.0.6"}, false},
		{"10-42-0-7.hl.ns1.svc.cluster.local.", mdns.TypeA, mdns.RcodeNameError, nil, true}, // not ready
		{"_http._tcp.hl.ns1.svc.cluster.local.", mdns.TypeSRV, mdns.RcodeSuccess, []string{
			"_http._tcp.hl.ns1.svc.cluster.local. SRV 0 50 8080 10-42-0-6.hl.ns1.svc.cluster.local.",
			"_http._tcp.hl.ns1.svc.cluster.local. SRV 0 50 8080 pet-0.hl.ns1.svc.cluster.local.",
		}, false},
		{"5.0.42.10.in-addr.arpa.", mdns.TypePTR, mdns.RcodeSuccess, []string{"5.0.42.10.in-addr.arpa. PTR pet-0.hl.ns1.svc.cluster.local."}, false},
		{"empty.ns1.svc.cluster.local.", mdns.TypeA, mdns.RcodeNameError, nil, true}, // headless, no ready endpoints
		{"ext.ns1.svc.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, []string{
			"ext.ns1.svc.cluster.local. CNAME web.ns1.svc.cluster.local.", "web.ns1.svc.cluster.local. A 10.43.0.20"}, false},
		{"ext.ns1.svc.cluster.local.", mdns.TypeCNAME, mdns.RcodeSuccess, []string{"ext.ns1.svc.cluster.local. CNAME web.ns1.svc.cluster.local."}, false},
		{"nope.ns1.svc.cluster.local.", mdns.TypeA, mdns.RcodeNameError, nil, true},
		{"ns1.svc.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, nil, true},         // existing namespace: NODATA
		{"nons.svc.cluster.local.", mdns.TypeA, mdns.RcodeNameError, nil, true},      // unknown namespace
		{"svc.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, nil, true},             // empty non-terminal
		{"web.ns1.cluster.local.", mdns.TypeA, mdns.RcodeNameError, nil, true},       // not a schema name
		{"x.web.ns1.svc.cluster.local.", mdns.TypeA, mdns.RcodeNameError, nil, true}, // hostnames only for headless
		{"10-1-2-3.ns1.pod.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, []string{"10-1-2-3.ns1.pod.cluster.local. A 10.1.2.3"}, false},
		{"10-1-2-300.ns1.pod.cluster.local.", mdns.TypeA, mdns.RcodeNameError, nil, true},
		{"cluster.local.", mdns.TypeNS, mdns.RcodeSuccess, []string{"cluster.local. NS ns.dns.cluster.local."}, false},
		{"cluster.local.", mdns.TypeSOA, mdns.RcodeSuccess, []string{soa + " 1 7200 1800 86400 5"}, false},
		{"cluster.local.", mdns.TypeA, mdns.RcodeSuccess, nil, true},
		{"*.ns1.svc.cluster.local.", mdns.TypeA, mdns.RcodeRefused, nil, false},
		{"*.svc.cluster.local.", mdns.TypeSRV, mdns.RcodeRefused, nil, false},
		{"example.org.", mdns.TypeA, mdns.RcodeRefused, nil, false}, // no forwarder configured
	}
	for _, c := range cases {
		t.Run(c.name+"/"+mdns.TypeToString[c.qtype], func(t *testing.T) {
			r := query(t, addr, c.name, c.qtype)
			if r.Rcode != c.rcode {
				t.Fatalf("rcode %s, want %s\n%v", mdns.RcodeToString[r.Rcode], mdns.RcodeToString[c.rcode], r)
			}
			if got := rdata(r.Answer); !slices.Equal(got, c.answer) {
				t.Fatalf("answer\n%q\nwant\n%q", got, c.answer)
			}
			if c.negSOA {
				if len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != mdns.TypeSOA || r.Ns[0].Header().Name != "cluster.local." {
					t.Fatalf("negative answer without the zone SOA in authority: %v", r.Ns)
				}
			}
			if strings.HasSuffix(strings.ToLower(c.name), "cluster.local.") && c.rcode != mdns.RcodeRefused && !r.Authoritative {
				t.Fatal("cluster answer is not authoritative")
			}
			if r.Question[0].Name != c.name {
				t.Fatalf("question %q echoed as %q", c.name, r.Question[0].Name)
			}
		})
	}
}

func TestSRVAdditional(t *testing.T) {
	addr := serve(t, newTestHandler(testTable()))
	r := query(t, addr, "_http._tcp.hl.ns1.svc.cluster.local.", mdns.TypeSRV)
	want := []string{"10-42-0-6.hl.ns1.svc.cluster.local. A 10.42.0.6", "pet-0.hl.ns1.svc.cluster.local. A 10.42.0.5"}
	if got := rdata(r.Extra); !slices.Equal(got, want) {
		t.Fatalf("additional %q, want %q", got, want)
	}
}

// TestIncrementalUpdate checks that a snapshot swap replaces one service
// (and its reverse records) and leaves the old snapshot intact.
func TestIncrementalUpdate(t *testing.T) {
	tb := testTable()
	old := tb.load()
	moved := buildService(svc("ns1", "web", func(s *corev1.Service) { s.Spec.ClusterIP = "10.43.0.99" }), nil)
	tb.apply(map[string]*service{"ns1/web": moved, "ns1/dual": nil}, nil)
	cur := tb.load()
	if got := cur.service("ns1", "web").ips[0].String(); got != "10.43.0.99" {
		t.Fatalf("web ip %s", got)
	}
	if cur.service("ns1", "dual") != nil {
		t.Fatal("dual not deleted")
	}
	if len(cur.ptr[mustAddr("10.43.0.20")]) != 0 || len(cur.ptr[mustAddr("10.43.0.99")]) != 1 {
		t.Fatalf("ptr not updated: %v", cur.ptr)
	}
	if old.service("ns1", "web").ips[0].String() != "10.43.0.20" || len(old.ptr[mustAddr("10.43.0.20")]) != 1 {
		t.Fatal("old snapshot was modified")
	}
	if cur.serial != old.serial+1 {
		t.Fatalf("serial %d after %d", cur.serial, old.serial)
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
