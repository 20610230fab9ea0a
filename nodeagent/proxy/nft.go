package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Names of the fixed objects of the table.
const (
	mapServiceIPs       = "service-ips"
	mapServiceNodePorts = "service-nodeports"
	mapNoEndpointIPs    = "no-endpoint-services"
	mapNoEndpointNPs    = "no-endpoint-nodeports"
	setClusterIPs       = "cluster-ips"
	mapEndpoints        = "service-endpoints"
	mapNodePortEPs      = "nodeport-endpoints"
	mapEndpointIndex    = "service-endpoint-index"
	mapNodePortIndex    = "nodeport-endpoint-index"
	setHairpin          = "hairpin-endpoints"
	chainServices       = "services"
	chainMarkMasq       = "mark-for-masquerade"
	chainMasquerading   = "masquerading"
	chainReject         = "reject-chain"
	chainEndpointsCheck = "endpoints-check"

	// masqMark is upstream's masquerade bit.
	masqMark uint32 = 0x4000
)

// Config is what the table is built with besides the service ports.
type Config struct {
	// Table is the name of the ip-family table.
	Table string
	// ClusterCIDR: traffic to a ClusterIP from outside it is masqueraded
	// (host-originated traffic), as upstream with --cluster-cidr.
	ClusterCIDR *net.IPNet
	// LocalhostNodePorts accepts NodePorts on 127.0.0.0/8 too.
	LocalhostNodePorts bool
}

// deleteTable removes the table if it exists.
func deleteTable(c *nftables.Conn, name string) error {
	t := &nftables.Table{Name: name, Family: nftables.TableFamilyIPv4}
	c.DelTable(t)
	if err := c.Flush(); err != nil && !errors.Is(err, syscall.ENOENT) && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("proxy: delete table %s: %w", name, err)
	}
	return nil
}

var (
	concatIPProtoPort = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	concatProtoPort   = nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)
	// concatEndpointKey is a service port's ClusterIP . proto . port and
	// an endpoint index; concatAddrPort an endpoint; concatAddrAddr the
	// source and destination of a hairpin connection.
	concatEndpointKey = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService, nftables.TypeInteger)
	concatNodePortKey = nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService, nftables.TypeInteger)
	concatAddrPort    = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
	concatAddrAddr    = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeIPAddr)
)

// batchBuffer is the netlink socket buffer (send and receive) forced on
// the proxy's connection: a full sync is one transaction, tens of
// megabytes for 10,000 services, far above the default 208 KiB (and
// wmem_max), as nft itself does with SO_SNDBUFFORCE.
const batchBuffer = 256 << 20

// newConn opens a lasting netlink connection (close it with CloseLasting)
// for a transaction of any size, in the named network namespace netns
// (empty: the caller's).
func newConn(netns string) (*nftables.Conn, error) {
	opts := []nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(func(c *netlink.Conn) error {
		rc, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = errors.Join(
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, batchBuffer),
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, batchBuffer))
		}); err != nil {
			return err
		}
		return serr
	})}
	if netns != "" {
		f, err := os.Open(netnsPath(netns))
		if err != nil {
			return nil, fmt.Errorf("proxy: network namespace: %w", err)
		}
		// The socket is opened in New; the namespace stays with it.
		defer f.Close()
		opts = append(opts, nftables.WithNetNSFd(int(f.Fd())))
	}
	return nftables.New(opts...)
}

// netnsPath is where iproute2 keeps the named namespace.
func netnsPath(name string) string { return "/run/netns/" + name }

// elemChunk elements of the largest kind (a 12-byte key and a verdict
// naming a chain of up to 200 bytes) stay well under 64 KiB.
const elemChunk = 200

func native32(v uint32) []byte { return binaryutil.NativeEndian.PutUint32(v) }

// keyIPProtoPort is a concatenated key; every part takes a 4-byte register.
func keyIPProtoPort(ip net.IP, proto byte, port int32) []byte {
	b := make([]byte, 12)
	copy(b, ip.To4())
	b[4] = proto
	binary.BigEndian.PutUint16(b[8:], uint16(port))
	return b
}

func keyProtoPort(proto byte, port int32) []byte {
	b := make([]byte, 8)
	b[0] = proto
	binary.BigEndian.PutUint16(b[4:], uint16(port))
	return b
}

// Expression helpers.
func loadDaddr(reg uint32) expr.Any {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}
}

func loadSaddr(reg uint32) expr.Any {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}
}

func loadDport(reg uint32) expr.Any {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}
}

func l4proto(reg uint32) expr.Any { return &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg} }

func verdict(kind expr.VerdictKind, chain string) expr.Any {
	return &expr.Verdict{Kind: kind, Chain: chain}
}

// addrTypeLocal matches `fib <saddr|daddr> type local`.
func addrTypeLocal(saddr bool) []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: 1, FlagSADDR: saddr, FlagDADDR: !saddr, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: native32(unix.RTN_LOCAL)},
	}
}

// notLoopbackDaddr matches `ip daddr != 127.0.0.0/8`.
func notLoopbackDaddr() []expr.Any {
	return []expr.Any{
		loadDaddr(1),
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{127, 0, 0, 0}},
	}
}

// vmapIPProtoPort is `ip daddr . meta l4proto . th dport vmap @m`.
func vmapIPProtoPort(m *nftables.Set) []expr.Any {
	return []expr.Any{
		loadDaddr(unix.NFT_REG32_00), l4proto(unix.NFT_REG32_01), loadDport(unix.NFT_REG32_02),
		&expr.Lookup{SourceRegister: unix.NFT_REG32_00, IsDestRegSet: true, DestRegister: 0, SetName: m.Name, SetID: m.ID},
	}
}

// vmapProtoPort is `meta l4proto . th dport vmap @m`.
func vmapProtoPort(m *nftables.Set) []expr.Any {
	return []expr.Any{
		l4proto(unix.NFT_REG32_00), loadDport(unix.NFT_REG32_01),
		&expr.Lookup{SourceRegister: unix.NFT_REG32_00, IsDestRegSet: true, DestRegister: 0, SetName: m.Name, SetID: m.ID},
	}
}

func ctStateNew() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: native32(expr.CtStateBitNEW), Xor: native32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: native32(0)},
	}
}

func cat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// builder stages objects of the table into one transaction.
type builder struct {
	c   *txn
	t   *nftables.Table
	cfg Config
	// haveChains and haveSets are objects already in the table (a partial
	// sync flushed the chains earlier in the same transaction): they are
	// refilled or kept, not added.
	haveChains, haveSets map[string]bool
	// picks are the pick chains in the table or staged.
	picks map[string]bool
	// pickNames caches pickChain's names.
	pickNames map[pickKey]string
	// needCluster and needNodePort are the endpoint indexes the staged
	// service ports use (one more than the highest), for which
	// index chains must exist.
	needCluster, needNodePort uint32
}

func (b *builder) rule(ch *nftables.Chain, e ...expr.Any) {
	b.c.AddRule(&nftables.Rule{Table: b.t, Chain: ch, Exprs: e})
}

func (b *builder) chain(name string) *nftables.Chain {
	ch := &nftables.Chain{Name: name, Table: b.t}
	if b.haveChains[name] {
		return ch
	}
	return b.c.AddChain(ch)
}

func (b *builder) base(name string, typ nftables.ChainType, hook *nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
	return b.c.AddChain(&nftables.Chain{Name: name, Table: b.t, Type: typ, Hooknum: hook, Priority: prio})
}

// newSet stages set s with elems.
func (b *builder) newSet(s *nftables.Set, elems []nftables.SetElement) (*nftables.Set, error) {
	s.Table = b.t
	// A netlink attribute's length is 16 bits: an element list past
	// 64 KiB wraps and the kernel misreads it, so big maps go in chunks
	// of elemChunk, one message each (same transaction).
	first := elems[:min(len(elems), elemChunk)]
	if err := b.c.AddSet(s, first); err != nil {
		return nil, fmt.Errorf("proxy: set %s: %w", s.Name, err)
	}
	if err := b.elems(s, elems[len(first):], false); err != nil {
		return nil, err
	}
	return s, nil
}

// elems stages the addition (or deletion) of elems to s, in chunks.
func (b *builder) elems(s *nftables.Set, elems []nftables.SetElement, del bool) error {
	for i := 0; i < len(elems); i += elemChunk {
		chunk := elems[i:min(len(elems), i+elemChunk)]
		var err error
		if del {
			err = b.c.SetDeleteElements(s, chunk)
		} else {
			err = b.c.SetAddElements(s, chunk)
		}
		if err != nil {
			return fmt.Errorf("proxy: set %s: %w", s.Name, err)
		}
	}
	return nil
}

// mapDef is the definition of one of the four dispatch verdict maps.
func mapDef(t *nftables.Table, name string) *nftables.Set {
	kt := concatIPProtoPort
	if name == mapServiceNodePorts || name == mapNoEndpointNPs {
		kt = concatProtoPort
	}
	return &nftables.Set{Table: t, Name: name, IsMap: true, Concatenation: true, KeyType: kt, DataType: nftables.TypeVerdict}
}

func vipSetDef(t *nftables.Table) *nftables.Set {
	return &nftables.Set{Table: t, Name: setClusterIPs, KeyType: nftables.TypeIPAddr}
}

// endpointMapDef is the map (mapEndpoints or mapNodePortEPs) from a
// service port's endpoint index to the endpoint: `ClusterIP . proto .
// port . index : addr . port`, or `proto . nodePort . index : addr .
// port`.
func endpointMapDef(t *nftables.Table, name string) *nftables.Set {
	kt := concatEndpointKey
	if name == mapNodePortEPs {
		kt = concatNodePortKey
	}
	return &nftables.Set{Table: t, Name: name, IsMap: true, Concatenation: true, KeyType: kt, DataType: concatAddrPort}
}

// indexMapDef is the verdict map (mapEndpointIndex or mapNodePortIndex)
// from an endpoint index to the index chain that DNATs to it.
func indexMapDef(t *nftables.Table, name string) *nftables.Set {
	return &nftables.Set{Table: t, Name: name, IsMap: true, KeyType: nftables.TypeInteger, DataType: nftables.TypeVerdict}
}

// indexChain names the chain of endpoint index i (of NodePort traffic
// with nodePort).
func indexChain(nodePort bool, i uint32) string {
	if nodePort {
		return fmt.Sprintf("nodeport-endpoint-%d", i)
	}
	return fmt.Sprintf("endpoint-%d", i)
}

// hairpinSetDef is the set of `ep . ep` for every endpoint address: a
// DNATed connection from an endpoint to itself is masqueraded.
func hairpinSetDef(t *nftables.Table) *nftables.Set {
	return &nftables.Set{Table: t, Name: setHairpin, Concatenation: true, KeyType: concatAddrAddr}
}

// portObjects is what one service port owns in the table: its chains and
// affinity sets, its element in a ClusterIP map and (with a NodePort)
// in a NodePort map, its elements in the endpoint map and the endpoint
// addresses it needs in the hairpin set.
type portObjects struct {
	chains  []string
	sets    []string
	ipMap   string
	ipElem  nftables.SetElement
	npMap   string // "" without a NodePort
	npElem  nftables.SetElement
	epElems []nftables.SetElement // in mapEndpoints
	npElems []nftables.SetElement // in mapNodePortEPs
	hairpin []ip4
}

// endpointKey is mapEndpoints' key of index i of the service port (ip,
// proto, port).
func endpointKey(ip net.IP, proto byte, port int32, i uint32) []byte {
	return append(keyIPProtoPort(ip, proto, port), native32(i)...)
}

// nodePortEndpointKey is mapNodePortEPs' key of index i of NodePort
// (proto, nodePort).
func nodePortEndpointKey(proto byte, nodePort int32, i uint32) []byte {
	return append(keyProtoPort(proto, nodePort), native32(i)...)
}

// addrPort is an endpoint as the endpoint map's data (address . port).
func addrPort(ep Endpoint) []byte {
	b := make([]byte, 8)
	copy(b, ep.IP.To4())
	binary.BigEndian.PutUint16(b[4:], uint16(ep.Port))
	return b
}

// lists gives each distinct endpoint list of a service port (All, Local,
// Cluster, which is one of the two after BuildServicePorts) its range of
// indexes in the endpoint map.
type lists struct {
	eps  [][]Endpoint
	offs []uint32
	next uint32
}

// offset returns the first index of eps, registering it if new.
func (l *lists) offset(eps []Endpoint) (uint32, bool) {
	for i, have := range l.eps {
		if sameEndpoints(have, eps) {
			return l.offs[i], false
		}
	}
	off := l.next
	l.eps, l.offs = append(l.eps, eps), append(l.offs, off)
	l.next += uint32(len(eps))
	return off, true
}

// port stages what sp needs and returns what it owns; the map and set
// elements are left to the caller.
//
// Without session affinity a service port has no chain of its own (but
// with externalTrafficPolicy Local): its map element goes to a shared
// pick chain for its number of endpoints N and their first index K in
// the endpoint map, `pick-cluster-N-K` (ClusterIPs; masquerade marks for
// sources outside the cluster CIDR first), `pick-nodeport-N-K`
// (NodePorts; masquerade marks) or `pick-local-N-K` (NodePort traffic to
// local endpoints, no mark), whose rule `numgen random mod N offset K
// vmap @service-endpoint-index` (upstream's `numgen random mod N vmap`,
// into one shared map) goes to index chain `endpoint-i`: `dnat to ip
// daddr . meta l4proto . th dport . i map @service-endpoints`
// (NodePorts: `nodeport-endpoint-i`, `meta l4proto . th dport . i`,
// @nodeport-endpoints). A service port costs map elements only. The
// lookups are in few shared chains on purpose: the kernel checks every
// element added to a map against every chain bound to it, and for every
// chain that newly binds a map walks the map and the list of its
// bindings, so a lookup per service chain makes a big sync quadratic.
//
// With ClientIP affinity the service port keeps chains of its own and
// every endpoint a chain, which records the client in the endpoint's
// affinity set (affinityEndpoints).
func (b *builder) port(sp *ServicePort) (*portObjects, error) {
	o := &portObjects{hairpin: endpointIPs(sp)}
	proto, _ := protocolNumber(sp.Protocol)
	key := sp.Key()
	rejectV := &expr.Verdict{Kind: expr.VerdictGoto, Chain: chainReject}
	dropV := &expr.Verdict{Kind: expr.VerdictDrop}
	gotoV := func(name string) *expr.Verdict { return &expr.Verdict{Kind: expr.VerdictGoto, Chain: name} }
	ipKey := keyIPProtoPort(sp.ClusterIP, proto, sp.Port)
	npKey := keyProtoPort(proto, sp.NodePort)
	chain := func(name string) *nftables.Chain {
		o.chains = append(o.chains, name)
		return b.chain(name)
	}

	// target returns the chain that sends traffic of kind to one of eps:
	// a shared pick chain, or with affinity a chain of the service port
	// named with prefix.
	var target func(kind pickKind, eps []Endpoint, prefix string) string
	if sp.Affinity > 0 {
		fill, err := b.affinityEndpoints(sp, o, chain)
		if err != nil {
			return nil, err
		}
		target = func(kind pickKind, eps []Endpoint, prefix string) string {
			name := chainName(prefix, key)
			ch := chain(name)
			b.markRule(ch, kind)
			fill(ch, eps)
			return name
		}
	} else {
		var cluster, nodePort lists
		target = func(kind pickKind, eps []Endpoint, _ string) string {
			ls, elems, need := &nodePort, &o.npElems, &b.needNodePort
			if kind == pickCluster {
				ls, elems, need = &cluster, &o.epElems, &b.needCluster
			}
			off, isNew := ls.offset(eps)
			if isNew {
				*elems = slices.Grow(*elems, len(eps))
				for i, ep := range eps {
					k := nodePortEndpointKey(proto, sp.NodePort, off+uint32(i))
					if kind == pickCluster {
						k = endpointKey(sp.ClusterIP, proto, sp.Port, off+uint32(i))
					}
					*elems = append(*elems, nftables.SetElement{Key: k, Val: addrPort(ep)})
				}
			}
			*need = max(*need, ls.next)
			return b.pick(kind, uint32(len(eps)), off)
		}
	}

	o.ipMap = mapNoEndpointIPs
	switch {
	case len(sp.Cluster) > 0:
		o.ipMap = mapServiceIPs
		o.ipElem = nftables.SetElement{Key: ipKey, VerdictData: gotoV(target(pickCluster, sp.Cluster, "svc"))}
	case sp.HasEndpoints:
		o.ipElem = nftables.SetElement{Key: ipKey, VerdictData: dropV}
	default:
		o.ipElem = nftables.SetElement{Key: ipKey, VerdictData: rejectV}
	}

	if sp.NodePort == 0 {
		return o, nil
	}
	o.npMap = mapServiceNodePorts
	switch {
	case !sp.HasEndpoints:
		o.npMap = mapNoEndpointNPs
		o.npElem = nftables.SetElement{Key: npKey, VerdictData: rejectV}
	case !sp.ExternalLocal:
		// Cluster policy: masquerade everything, any endpoint.
		o.npElem = nftables.SetElement{Key: npKey, VerdictData: gotoV(target(pickNodePort, sp.All, "ext"))}
	default:
		// Local policy: traffic from this host may use any endpoint
		// (masqueraded); other traffic keeps its source and goes to
		// local endpoints only, or is dropped when there is none.
		host := target(pickNodePort, sp.All, "exh")
		local := ""
		if len(sp.Local) > 0 {
			local = target(pickLocal, sp.Local, "exl")
		}
		name := chainName("ext", key)
		ch := chain(name)
		b.rule(ch, cat(addrTypeLocal(true), []expr.Any{verdict(expr.VerdictGoto, host)})...)
		if local != "" {
			b.rule(ch, verdict(expr.VerdictGoto, local))
		} else {
			b.rule(ch, verdict(expr.VerdictDrop, ""))
		}
		o.npElem = nftables.SetElement{Key: npKey, VerdictData: gotoV(name)}
	}
	return o, nil
}

// ip4 is an IPv4 address as a map key.
type ip4 [4]byte

// compareIP4 orders addresses.
func compareIP4(a, b ip4) int { return bytes.Compare(a[:], b[:]) }

// endpointIPs are the distinct endpoint addresses of sp.
func endpointIPs(sp *ServicePort) []ip4 {
	out := make([]ip4, 0, len(sp.All))
	for _, list := range [][]Endpoint{sp.All, sp.Local, sp.Cluster} {
		for _, ep := range list {
			if ip := ip4(ep.IP.To4()); !slices.Contains(out, ip) {
				out = append(out, ip)
			}
		}
	}
	return out
}

// pickKind says which traffic a pick chain serves.
type pickKind int

const (
	// pickCluster: ClusterIP traffic, masquerade marks for sources
	// outside the cluster CIDR.
	pickCluster pickKind = iota
	// pickNodePort: NodePort traffic, all masquerade-marked.
	pickNodePort
	// pickLocal: NodePort traffic kept to local endpoints, unmarked.
	pickLocal
)

// markRule stages into ch the masquerade mark rule of kind, if any.
func (b *builder) markRule(ch *nftables.Chain, kind pickKind) {
	switch {
	case kind == pickNodePort:
		b.rule(ch, verdict(expr.VerdictJump, chainMarkMasq))
	case kind == pickCluster && b.cfg.ClusterCIDR != nil:
		b.rule(ch, loadSaddr(1),
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte(b.cfg.ClusterCIDR.Mask), Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte(b.cfg.ClusterCIDR.IP.To4())},
			verdict(expr.VerdictJump, chainMarkMasq))
	}
}

// pickKey is what a pick chain is for.
type pickKey struct {
	kind   pickKind
	n, off uint32
}

// pickChain names the shared pick chain of kind for n endpoints from
// index off.
func pickChain(kind pickKind, n, off uint32) string {
	return fmt.Sprintf("pick-%s-%d-%d", [...]string{"cluster", "nodeport", "local"}[kind], n, off)
}

// pick returns the shared pick chain of kind for n endpoints from index
// off, staging it if the table does not have it yet: the mark rule, then
// `numgen random mod n offset off vmap @<index map>`.
func (b *builder) pick(kind pickKind, n, off uint32) string {
	k := pickKey{kind, n, off}
	if name, ok := b.pickNames[k]; ok {
		return name
	}
	name := pickChain(kind, n, off)
	if b.pickNames == nil {
		b.pickNames = map[pickKey]string{}
	}
	b.pickNames[k] = name
	if b.picks[name] {
		return name
	}
	b.picks[name] = true
	ch := b.chain(name)
	b.markRule(ch, kind)
	idxMap := mapNodePortIndex
	if kind == pickCluster {
		idxMap = mapEndpointIndex
	}
	b.rule(ch, &expr.Numgen{Register: 1, Modulus: n, Offset: off, Type: unix.NFT_NG_RANDOM},
		&expr.Lookup{SourceRegister: 1, IsDestRegSet: true, DestRegister: 0, SetName: idxMap})
	return name
}

// indexChains stages the index chains [from, to) of NodePort traffic
// (nodePort) or of ClusterIPs, and their elements in the index map.
// Chain i: `meta l4proto . th dport . i` (NodePorts) or `ip daddr . meta
// l4proto . th dport . i` (ClusterIPs) looked up in the endpoint map,
// DNAT to the address . port found.
func (b *builder) indexChains(nodePort bool, from, to uint32) error {
	if from >= to {
		return nil
	}
	epMap, idxMap := mapEndpoints, mapEndpointIndex
	if nodePort {
		epMap, idxMap = mapNodePortEPs, mapNodePortIndex
	}
	var elems []nftables.SetElement
	for i := from; i < to; i++ {
		name := indexChain(nodePort, i)
		var key []expr.Any
		if nodePort {
			key = []expr.Any{l4proto(unix.NFT_REG32_00), loadDport(unix.NFT_REG32_01),
				&expr.Immediate{Register: unix.NFT_REG32_02, Data: native32(i)}}
		} else {
			key = []expr.Any{loadDaddr(unix.NFT_REG32_00), l4proto(unix.NFT_REG32_01), loadDport(unix.NFT_REG32_02),
				&expr.Immediate{Register: unix.NFT_REG32_03, Data: native32(i)}}
		}
		b.rule(b.chain(name), cat(key, []expr.Any{
			&expr.Lookup{SourceRegister: unix.NFT_REG32_00, IsDestRegSet: true, DestRegister: unix.NFT_REG32_00, SetName: epMap},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: unix.NFT_REG32_00, RegProtoMin: unix.NFT_REG32_01, Specified: true},
		})...)
		elems = append(elems, nftables.SetElement{Key: native32(i), VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: name}})
	}
	return b.elems(indexMapDef(b.t, idxMap), elems, false)
}

// affinityEndpoints stages, for a service port with ClientIP affinity,
// an affinity set and a chain per endpoint (`update @aff { ip saddr }`,
// DNAT), and returns the function that fills a choosing chain: the
// affinity lookups first, then a uniform random goto. Upstream writes
// the choice as `numgen random mod N vmap { 0 : goto ep-…, … }`; every
// such anonymous map is a set of the table, which the kernel's loop
// check walks for every jump or goto added, so the choice here is
// `numgen random mod (N-i) == 0 goto ep-i` for i < N-1 (each rule draws
// anew: probability 1/(N-i) of what is left), then `goto ep-(N-1)`, as
// iptables mode's statistic rules.
func (b *builder) affinityEndpoints(sp *ServicePort, o *portObjects, chain func(string) *nftables.Chain) (func(*nftables.Chain, []Endpoint), error) {
	proto, _ := protocolNumber(sp.Protocol)
	key := sp.Key()
	epChains := map[string]string{}
	affSets := map[string]*nftables.Set{}
	var eps []Endpoint
	for _, list := range [][]Endpoint{sp.All, sp.Local, sp.Cluster} {
		for _, ep := range list {
			if _, ok := epChains[ep.String()]; ok {
				continue
			}
			eps = append(eps, ep)
			epChains[ep.String()] = chainName("ep", key+"__"+ep.String())
			s := &nftables.Set{Name: shortName("aff", key+"__"+ep.String()), KeyType: nftables.TypeIPAddr,
				HasTimeout: true, Dynamic: true, Timeout: sp.Affinity, Table: b.t}
			o.sets = append(o.sets, s.Name)
			if !b.haveSets[s.Name] {
				if _, err := b.newSet(s, nil); err != nil {
					return nil, err
				}
			}
			affSets[ep.String()] = s
		}
	}
	for _, ep := range eps {
		ch := chain(epChains[ep.String()])
		s := affSets[ep.String()]
		b.rule(ch, loadSaddr(1), &expr.Dynset{SrcRegKey: 1, SetName: s.Name, SetID: s.ID,
			Operation: unix.NFT_DYNSET_OP_UPDATE, Timeout: sp.Affinity})
		port := make([]byte, 2)
		binary.BigEndian.PutUint16(port, uint16(ep.Port))
		b.rule(ch, l4proto(1), &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
			&expr.Immediate{Register: 1, Data: []byte(ep.IP.To4())},
			&expr.Immediate{Register: 2, Data: port},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true})
	}
	fill := func(ch *nftables.Chain, eps []Endpoint) {
		for _, ep := range eps {
			s := affSets[ep.String()]
			b.rule(ch, loadSaddr(1), &expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID},
				verdict(expr.VerdictGoto, epChains[ep.String()]))
		}
		for i, ep := range eps {
			left := len(eps) - i
			if left == 1 {
				b.rule(ch, verdict(expr.VerdictGoto, epChains[ep.String()]))
				break
			}
			b.rule(ch, &expr.Numgen{Register: 1, Modulus: uint32(left), Type: unix.NFT_NG_RANDOM},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: native32(0)},
				verdict(expr.VerdictGoto, epChains[ep.String()]))
		}
	}
	return fill, nil
}

// fixedChains stages the endpoint map and hairpin set (empty) and the
// chains every service jumps to.
func (b *builder) fixedChains() error {
	for _, m := range []*nftables.Set{endpointMapDef(b.t, mapEndpoints), endpointMapDef(b.t, mapNodePortEPs),
		indexMapDef(b.t, mapEndpointIndex), indexMapDef(b.t, mapNodePortIndex)} {
		if _, err := b.newSet(m, nil); err != nil {
			return err
		}
	}
	hairpin, err := b.newSet(hairpinSetDef(b.t), nil)
	if err != nil {
		return err
	}
	markMasq := b.chain(chainMarkMasq)
	b.rule(markMasq,
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: native32(^masqMark), Xor: native32(masqMark)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1})
	masq := b.chain(chainMasquerading)
	// Hairpin (an endpoint reaching itself through a service): after
	// DNAT, source and destination are the same endpoint address.
	b.rule(masq,
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: native32(0x20), Xor: native32(0)}, // IPS_DST_NAT
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: native32(0)},
		loadSaddr(unix.NFT_REG32_00), loadDaddr(unix.NFT_REG32_01),
		&expr.Lookup{SourceRegister: unix.NFT_REG32_00, SetName: hairpin.Name, SetID: hairpin.ID},
		verdict(expr.VerdictJump, chainMarkMasq))
	b.rule(masq,
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: native32(masqMark), Xor: native32(0)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: native32(0)},
		verdict(expr.VerdictReturn, ""))
	b.rule(masq,
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: native32(^uint32(0)), Xor: native32(masqMark)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
		&expr.Masq{FullyRandom: true})
	reject := b.chain(chainReject)
	b.rule(reject, l4proto(1), &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Reject{Type: unix.NFT_REJECT_TCP_RST})
	b.rule(reject, &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 3 /* port unreachable */})
	return nil
}

// dispatch stages the maps (with their elements), the ClusterIP set and
// the chains using them, down to the base chains.
func (b *builder) dispatch(elems map[string][]nftables.SetElement, vips []nftables.SetElement) error {
	maps := map[string]*nftables.Set{}
	for _, name := range []string{mapServiceIPs, mapServiceNodePorts, mapNoEndpointIPs, mapNoEndpointNPs} {
		s, err := b.newSet(mapDef(b.t, name), elems[name])
		if err != nil {
			return err
		}
		maps[name] = s
	}
	vipSet, err := b.newSet(vipSetDef(b.t), vips)
	if err != nil {
		return err
	}

	// ClusterIPs by (daddr . proto . dport), NodePorts on local addresses
	// by (proto . dport).
	services := b.chain(chainServices)
	b.rule(services, vmapIPProtoPort(maps[mapServiceIPs])...)
	nodePortMatch := addrTypeLocal(false)
	if !b.cfg.LocalhostNodePorts {
		nodePortMatch = cat(nodePortMatch, notLoopbackDaddr())
	}
	b.rule(services, cat(nodePortMatch, vmapProtoPort(maps[mapServiceNodePorts]))...)

	check := b.chain(chainEndpointsCheck)
	b.rule(check, vmapIPProtoPort(maps[mapNoEndpointIPs])...)
	b.rule(check, cat(nodePortMatch, vmapProtoPort(maps[mapNoEndpointNPs]))...)

	// Base chains, as upstream's priorities.
	for _, bc := range []struct {
		name string
		hook *nftables.ChainHook
	}{{"nat-prerouting", nftables.ChainHookPrerouting}, {"nat-output", nftables.ChainHookOutput}} {
		b.rule(b.base(bc.name, nftables.ChainTypeNAT, bc.hook, nftables.ChainPriorityNATDest), verdict(expr.VerdictJump, chainServices))
	}
	b.rule(b.base("nat-postrouting", nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource),
		verdict(expr.VerdictJump, chainMasquerading))
	prio := nftables.ChainPriorityRef(-110)
	for _, bc := range []struct {
		name string
		hook *nftables.ChainHook
	}{{"filter-input", nftables.ChainHookInput}, {"filter-forward", nftables.ChainHookForward}, {"filter-output", nftables.ChainHookOutput}} {
		ch := b.base(bc.name, nftables.ChainTypeFilter, bc.hook, prio)
		b.rule(ch, cat(ctStateNew(), []expr.Any{verdict(expr.VerdictJump, chainEndpointsCheck)})...)
		if bc.hook == nftables.ChainHookInput {
			// Still addressed to a ClusterIP after DNAT: a port the
			// service does not have.
			// (New connections only: the reset the reject sends to a
			// host socket bound to the ClusterIP must get through.)
			b.rule(ch, cat(ctStateNew(), []expr.Any{loadDaddr(1), &expr.Lookup{SourceRegister: 1, SetName: vipSet.Name, SetID: vipSet.ID},
				verdict(expr.VerdictGoto, chainReject)})...)
			if b.cfg.LocalhostNodePorts {
				// route_localnet is on: only this host may talk to
				// 127.0.0.0/8 (upstream's "block incoming localnet
				// connections").
				b.rule(ch, loadDaddr(1),
					&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{127, 0, 0, 0}},
					loadSaddr(1),
					&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
					&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{127, 0, 0, 0}},
					&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
					&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: native32(0x20), Xor: native32(0)}, // IPS_DST_NAT
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: native32(0)},
					verdict(expr.VerdictDrop, ""))
			}
		}
	}
	return nil
}
