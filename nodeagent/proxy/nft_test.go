package proxy

import (
	"encoding/binary"
	"fmt"
	"golang.org/x/sys/unix"
	"net"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	corev1 "k8s.io/api/core/v1"
)

func sampleServicePorts() []*ServicePort {
	ep := func(ip string, port int32) Endpoint { return Endpoint{IP: net.ParseIP(ip).To4(), Port: port} }
	a, b, c := ep("10.42.250.2", 8080), ep("10.42.250.3", 8080), ep("10.42.250.4", 53)
	return []*ServicePort{
		{Namespace: "default", Name: "web", Protocol: corev1.ProtocolTCP, ClusterIP: net.ParseIP("10.43.250.1").To4(), Port: 80,
			NodePort: 30080, Cluster: []Endpoint{a, b}, All: []Endpoint{a, b}, Local: []Endpoint{a}, HasEndpoints: true},
		{Namespace: "default", Name: "sticky", Protocol: corev1.ProtocolTCP, ClusterIP: net.ParseIP("10.43.250.2").To4(), Port: 80,
			Affinity: 30 * time.Second, Cluster: []Endpoint{a, b}, All: []Endpoint{a, b}, HasEndpoints: true},
		{Namespace: "default", Name: "dns", Protocol: corev1.ProtocolUDP, ClusterIP: net.ParseIP("10.43.250.3").To4(), Port: 53,
			Cluster: []Endpoint{c}, All: []Endpoint{c}, Local: []Endpoint{c}, HasEndpoints: true},
		{Namespace: "default", Name: "empty", Protocol: corev1.ProtocolTCP, ClusterIP: net.ParseIP("10.43.250.4").To4(), Port: 80,
			NodePort: 30081},
		{Namespace: "default", Name: "local", Protocol: corev1.ProtocolTCP, ClusterIP: net.ParseIP("10.43.250.5").To4(), Port: 80,
			NodePort: 30082, ExternalLocal: true, Cluster: nil, All: []Endpoint{b}, HasEndpoints: true},
		{Namespace: "default", Name: "local2", Protocol: corev1.ProtocolTCP, ClusterIP: net.ParseIP("10.43.250.6").To4(), Port: 80,
			NodePort: 30083, ExternalLocal: true, Cluster: []Endpoint{a, b}, All: []Endpoint{a, b}, Local: []Endpoint{a}, HasEndpoints: true},
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: programs nftables")
	}
}

// TestApplyFullKernel programs a table covering every rule shape into the
// real kernel, reads it back over netlink and checks the maps, then
// replaces it atomically with a smaller one and deletes it.
func TestApplyFullKernel(t *testing.T) {
	needRoot(t)
	table := fmt.Sprintf("skiff_proxy_t%d", os.Getpid())
	t.Cleanup(func() {
		c, err := nftables.New()
		if err == nil {
			_ = deleteTable(c, table)
		}
	})
	_, cidr, _ := net.ParseCIDR("10.42.0.0/16")
	cfg := Config{Table: table, ClusterCIDR: cidr, LocalhostNodePorts: true}
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := applyFull(cfg, sampleServicePorts()); err != nil {
		t.Fatalf("apply: %v", err)
	}
	elems := mapElems(t, table)
	want := map[string][]string{
		mapServiceIPs: {
			"10.43.250.1 . tcp . 80 -> goto pick-cluster-2-0",
			"10.43.250.2 . tcp . 80 -> goto svc-*-default/sticky/tcp/80",
			"10.43.250.3 . udp . 53 -> goto pick-cluster-1-0",
			"10.43.250.6 . tcp . 80 -> goto pick-cluster-2-0",
		},
		mapServiceNodePorts: {
			"tcp . 30080 -> goto pick-nodeport-2-0",
			"tcp . 30082 -> goto ext-*-default/local/tcp/80",
			"tcp . 30083 -> goto ext-*-default/local2/tcp/80",
		},
		mapNoEndpointIPs: {
			"10.43.250.4 . tcp . 80 -> goto reject-chain",
			"10.43.250.5 . tcp . 80 -> drop",
		},
		mapNoEndpointNPs: {"tcp . 30081 -> goto reject-chain"},
	}
	for m, w := range want {
		if got := elems[m]; strings.Join(got, "\n") != strings.Join(w, "\n") {
			t.Errorf("map %s:\n got %q\nwant %q", m, got, w)
		}
	}
	// Without affinity the endpoints are elements of two maps (ClusterIP
	// . proto . port . index and proto . nodePort . index -> address .
	// port), each distinct endpoint list once: local2's NodePort traffic
	// from the host uses All (0, 1), from outside Local (2).
	wantEps := []string{
		"10.43.250.1 . tcp . 80 . 0 -> 10.42.250.2 . 8080",
		"10.43.250.1 . tcp . 80 . 1 -> 10.42.250.3 . 8080",
		"10.43.250.3 . udp . 53 . 0 -> 10.42.250.4 . 53",
		"10.43.250.6 . tcp . 80 . 0 -> 10.42.250.2 . 8080",
		"10.43.250.6 . tcp . 80 . 1 -> 10.42.250.3 . 8080",
		"tcp . 30080 . 0 -> 10.42.250.2 . 8080",
		"tcp . 30080 . 1 -> 10.42.250.3 . 8080",
		"tcp . 30082 . 0 -> 10.42.250.3 . 8080",
		"tcp . 30083 . 0 -> 10.42.250.2 . 8080",
		"tcp . 30083 . 1 -> 10.42.250.3 . 8080",
		"tcp . 30083 . 2 -> 10.42.250.2 . 8080",
	}
	if got := endpointElems(t, table); !slices.Equal(got, wantEps) {
		t.Errorf("endpoint map:\n got %q\nwant %q", got, wantEps)
	}
	if got, want := hairpinKeys(t, table), []string{"10.42.250.2 . 10.42.250.2", "10.42.250.3 . 10.42.250.3", "10.42.250.4 . 10.42.250.4"}; !slices.Equal(got, want) {
		t.Errorf("hairpin set: %q, want %q", got, want)
	}
	chains := chainNames(t, table)
	for _, want := range []string{"ep-*-default/sticky/tcp/80__10.42.250.2:8080", "ep-*-default/sticky/tcp/80__10.42.250.3:8080",
		"svc-*-default/sticky/tcp/80", "ext-*-default/local2/tcp/80", "nat-output", "filter-input",
		"endpoint-0", "endpoint-1", "nodeport-endpoint-0", "nodeport-endpoint-1", "nodeport-endpoint-2"} {
		if !chains[want] {
			t.Errorf("chain %s missing (have %v)", want, chains)
		}
	}
	for ch := range chains {
		if strings.Contains(ch, "-*-") && !strings.Contains(ch, "/sticky/") && !strings.HasPrefix(ch, "ext-*-default/local") {
			t.Errorf("chain %s: only services with affinity or externalTrafficPolicy Local have chains", ch)
		}
	}
	if chains["endpoint-2"] || chains["nodeport-endpoint-3"] {
		t.Errorf("more index chains than indexes used: %v", chains)
	}
	// The rules' shapes: shared pick chains draw a random index per
	// endpoint count and first index, looked up in the shared index
	// map; the index chains DNAT through the endpoint maps.
	rules := ruleExprs(t, table)
	for ch, want := range map[string][]string{
		"pick-cluster-2-0":            {"jump mark-for-masquerade", "numgen(mod 2 offset 0) lookup(service-endpoint-index)"},
		"pick-nodeport-1-0":           {"jump mark-for-masquerade", "numgen(mod 1 offset 0) lookup(nodeport-endpoint-index)"},
		"pick-local-1-2":              {"numgen(mod 1 offset 2) lookup(nodeport-endpoint-index)"},
		"ext-*-default/local2/tcp/80": {"goto pick-nodeport-2-0", "goto pick-local-1-2"},
		"ext-*-default/local/tcp/80":  {"goto pick-nodeport-1-0", "drop"},
	} {
		if got := rules[ch]; !slices.Equal(got, want) {
			t.Errorf("chain %s: %q, want %q", ch, got, want)
		}
	}
	if got := rules["endpoint-1"]; len(got) != 1 || got[0] != "lookup(service-endpoints) dnat" {
		t.Errorf("index chain endpoint-1: %q", got)
	}
	if got := rules["nodeport-endpoint-2"]; len(got) != 1 || got[0] != "lookup(nodeport-endpoints) dnat" {
		t.Errorf("index chain nodeport-endpoint-2: %q", got)
	}
	sets, _ := c.GetSets(&nftables.Table{Name: table, Family: nftables.TableFamilyIPv4})
	aff := 0
	for _, s := range sets {
		if strings.HasPrefix(s.Name, "aff-") {
			aff++
			if !s.HasTimeout || s.Timeout != 30*time.Second {
				t.Errorf("affinity set %s: timeout %v %v", s.Name, s.HasTimeout, s.Timeout)
			}
		}
	}
	if aff != 2 {
		t.Errorf("%d affinity sets, want 2 (one per endpoint of sticky)", aff)
	}

	// Replace with one service: the rest is gone in the same transaction.
	if err := applyFull(cfg, sampleServicePorts()[2:3]); err != nil {
		t.Fatalf("reapply: %v", err)
	}
	elems = mapElems(t, table)
	if got := elems[mapServiceIPs]; len(got) != 1 || !strings.HasPrefix(got[0], "10.43.250.3 . udp . 53") {
		t.Errorf("after replace: %q", got)
	}
	if len(elems[mapNoEndpointIPs])+len(elems[mapServiceNodePorts]) != 0 {
		t.Errorf("after replace, leftovers: %v", elems)
	}
	if err := deleteTable(c, table); err != nil {
		t.Fatal(err)
	}
	if ok, err := TableExists(table); err != nil || ok {
		t.Fatalf("table still there after delete (%v, %v)", ok, err)
	}
	if err := deleteTable(c, table); err != nil {
		t.Fatalf("deleting a missing table: %v", err)
	}
}

// endpointElems renders the endpoint maps' elements (ClusterIP, then
// NodePort), sorted.
func endpointElems(t *testing.T, table string) []string {
	t.Helper()
	var out []string
	protos := map[byte]string{6: "tcp", 17: "udp", 132: "sctp"}
	for _, e := range elements(t, table, mapEndpoints) {
		k, v := e.Key, e.Val
		out = append(out, fmt.Sprintf("%s . %s . %d . %d -> %s . %d", net.IP(k[:4]), protos[k[4]], binary.BigEndian.Uint16(k[8:]),
			binary.NativeEndian.Uint32(k[12:]), net.IP(v[:4]), binary.BigEndian.Uint16(v[4:])))
	}
	for _, e := range elements(t, table, mapNodePortEPs) {
		k, v := e.Key, e.Val
		out = append(out, fmt.Sprintf("%s . %d . %d -> %s . %d", protos[k[0]], binary.BigEndian.Uint16(k[4:]),
			binary.NativeEndian.Uint32(k[8:]), net.IP(v[:4]), binary.BigEndian.Uint16(v[4:])))
	}
	sort.Strings(out)
	return out
}

// hairpinKeys renders the hairpin set's elements, sorted.
func hairpinKeys(t *testing.T, table string) []string {
	t.Helper()
	var out []string
	for _, e := range elements(t, table, setHairpin) {
		out = append(out, fmt.Sprintf("%s . %s", net.IP(e.Key[:4]), net.IP(e.Key[4:8])))
	}
	sort.Strings(out)
	return out
}

// elements reads the elements of the table's set or map name.
func elements(t *testing.T, table, name string) []nftables.SetElement {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.GetSetByName(&nftables.Table{Name: table, Family: nftables.TableFamilyIPv4}, name)
	if err != nil {
		t.Fatalf("set %s: %v", name, err)
	}
	es, err := c.GetSetElements(s)
	if err != nil {
		t.Fatalf("elements of %s: %v", name, err)
	}
	return es
}

// ruleExprs renders each chain's rules (by hash-elided chain name) as a
// short text of the expressions that matter for the layout.
func ruleExprs(t *testing.T, table string) map[string][]string {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tb := &nftables.Table{Name: table, Family: nftables.TableFamilyIPv4}
	chs, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, ch := range chs {
		if ch.Table.Name != table {
			continue
		}
		rules, err := c.GetRules(tb, ch)
		if err != nil {
			t.Fatalf("rules of %s: %v", ch.Name, err)
		}
		for _, r := range rules {
			var parts []string
			for _, e := range r.Exprs {
				switch e := e.(type) {
				case *expr.Numgen:
					parts = append(parts, fmt.Sprintf("numgen(mod %d offset %d)", e.Modulus, e.Offset))
				case *expr.Lookup:
					parts = append(parts, "lookup("+e.SetName+")")
				case *expr.NAT:
					parts = append(parts, "dnat")
				case *expr.Dynset:
					parts = append(parts, "update("+e.SetName+")")
				case *expr.Verdict:
					v := map[expr.VerdictKind]string{expr.VerdictJump: "jump", expr.VerdictGoto: "goto", expr.VerdictDrop: "drop", expr.VerdictReturn: "return"}[e.Kind]
					if e.Chain != "" {
						v += " " + elideHash(e.Chain)
					}
					parts = append(parts, v)
				}
			}
			out[elideHash(ch.Name)] = append(out[elideHash(ch.Name)], strings.Join(parts, " "))
		}
	}
	return out
}

// mapElems renders the verdict maps' elements with hashes elided.
func mapElems(t *testing.T, table string) map[string][]string {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tb := &nftables.Table{Name: table, Family: nftables.TableFamilyIPv4}
	out := map[string][]string{}
	for _, name := range []string{mapServiceIPs, mapServiceNodePorts, mapNoEndpointIPs, mapNoEndpointNPs} {
		s, err := c.GetSetByName(tb, name)
		if err != nil {
			t.Fatalf("set %s: %v", name, err)
		}
		es, err := c.GetSetElements(s)
		if err != nil {
			t.Fatalf("elements of %s: %v", name, err)
		}
		for _, e := range es {
			k := e.Key
			var key string
			proto := map[byte]string{6: "tcp", 17: "udp", 132: "sctp"}
			if len(k) == 12 {
				key = fmt.Sprintf("%s . %s . %d", net.IP(k[:4]), proto[k[4]], int(k[8])<<8|int(k[9]))
			} else {
				key = fmt.Sprintf("%s . %d", proto[k[0]], int(k[4])<<8|int(k[5]))
			}
			v := decodeVerdict(e.Val)
			out[name] = append(out[name], key+" -> "+v)
		}
		sort.Strings(out[name])
	}
	return out
}

func chainNames(t *testing.T, table string) map[string]bool {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	chs, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, ch := range chs {
		if ch.Table.Name == table {
			out[elideHash(ch.Name)] = true
		}
	}
	return out
}

// elideHash turns "svc-ABCDEFGH-key" into "svc-*-key".
func elideHash(s string) string {
	parts := strings.SplitN(s, "-", 3)
	if len(parts) == 3 && len(parts[1]) == 8 && strings.ToUpper(parts[1]) == parts[1] {
		return parts[0] + "-*-" + parts[2]
	}
	return s
}

// decodeVerdict reads a set element's NFTA_DATA_VERDICT payload (the
// library hands it over raw): netlink attributes NFTA_VERDICT_CODE and
// NFTA_VERDICT_CHAIN.
func decodeVerdict(b []byte) string {
	code, chain := int32(1), ""
	for len(b) >= 4 {
		l := int(binary.LittleEndian.Uint16(b))
		typ := binary.LittleEndian.Uint16(b[2:]) &^ 0xc000
		if l < 4 || l > len(b) {
			break
		}
		data := b[4:l]
		switch typ {
		case unix.NFTA_VERDICT_CODE:
			code = int32(binary.BigEndian.Uint32(data))
		case unix.NFTA_VERDICT_CHAIN:
			chain = strings.TrimRight(string(data), "\x00")
		}
		b = b[min(len(b), (l+3)&^3):]
	}
	switch code {
	case unix.NFT_GOTO:
		return "goto " + elideHash(chain)
	case unix.NFT_JUMP:
		return "jump " + elideHash(chain)
	case 0:
		return "drop"
	}
	return fmt.Sprintf("verdict %d", code)
}
