package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
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

// portObjects is what one service port owns in the table: its chains and
// affinity sets, and its element in a ClusterIP map and (with a NodePort)
// in a NodePort map.
type portObjects struct {
	chains []string
	sets   []string
	ipMap  string
	ipElem nftables.SetElement
	npMap  string // "" without a NodePort
	npElem nftables.SetElement
}

// port stages the chains and affinity sets of sp and returns what it
// owns; the map elements are left to the caller.
func (b *builder) port(sp *ServicePort) (*portObjects, error) {
	o := &portObjects{}
	chain := func(name string) *nftables.Chain {
		o.chains = append(o.chains, name)
		return b.chain(name)
	}
	proto, _ := protocolNumber(sp.Protocol)
	key := sp.Key()
	rejectV := &expr.Verdict{Kind: expr.VerdictGoto, Chain: chainReject}
	dropV := &expr.Verdict{Kind: expr.VerdictDrop}
	ipKey := keyIPProtoPort(sp.ClusterIP, proto, sp.Port)
	npKey := keyProtoPort(proto, sp.NodePort)

	// Endpoint chains (one per distinct endpoint of this port).
	epChains := map[string]string{}
	affSets := map[string]*nftables.Set{}
	var eps []Endpoint
	for _, list := range [][]Endpoint{sp.All, sp.Local} {
		for _, ep := range list {
			if _, ok := epChains[ep.String()]; ok {
				continue
			}
			eps = append(eps, ep)
			name := chainName("ep", key+"__"+ep.String())
			epChains[ep.String()] = name
			if sp.Affinity > 0 {
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
	}
	for _, ep := range eps {
		ch := chain(epChains[ep.String()])
		// Hairpin: a pod reaching itself through the service.
		b.rule(ch, loadSaddr(1), &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte(ep.IP.To4())},
			verdict(expr.VerdictJump, chainMarkMasq))
		if s := affSets[ep.String()]; s != nil {
			b.rule(ch, loadSaddr(1), &expr.Dynset{SrcRegKey: 1, SetName: s.Name, SetID: s.ID,
				Operation: unix.NFT_DYNSET_OP_UPDATE, Timeout: sp.Affinity})
		}
		port := make([]byte, 2)
		binary.BigEndian.PutUint16(port, uint16(ep.Port))
		b.rule(ch, l4proto(1), &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
			&expr.Immediate{Register: 1, Data: []byte(ep.IP.To4())},
			&expr.Immediate{Register: 2, Data: port},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true})
	}
	// balance stages `[affinity gotos]` and a uniform random choice of
	// one of eps into ch. Upstream writes the choice as `numgen random
	// mod N vmap { 0 : goto ep-…, … }`; each such anonymous map is a set
	// of the table, and the kernel's loop check for every jump or goto
	// added (nf_tables_check_loops) walks all sets of the table, so
	// 10,000 services cost 10,000² set visits per transaction. The same
	// choice without a set: `numgen random mod (N-i) == 0 goto ep-i` for
	// i < N-1 (each rule draws anew: probability 1/(N-i) of what is
	// left), then `goto ep-(N-1)`, as iptables mode's statistic rules.
	balance := func(ch *nftables.Chain, eps []Endpoint) {
		for _, ep := range eps {
			if s := affSets[ep.String()]; s != nil {
				b.rule(ch, loadSaddr(1), &expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID},
					verdict(expr.VerdictGoto, epChains[ep.String()]))
			}
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

	// Cluster chain.
	o.ipMap = mapNoEndpointIPs
	switch {
	case len(sp.Cluster) > 0:
		name := chainName("svc", key)
		ch := chain(name)
		if b.cfg.ClusterCIDR != nil {
			b.rule(ch, loadSaddr(1),
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte(b.cfg.ClusterCIDR.Mask), Xor: []byte{0, 0, 0, 0}},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte(b.cfg.ClusterCIDR.IP.To4())},
				verdict(expr.VerdictJump, chainMarkMasq))
		}
		balance(ch, sp.Cluster)
		o.ipMap = mapServiceIPs
		o.ipElem = nftables.SetElement{Key: ipKey, VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: name}}
	case sp.HasEndpoints:
		o.ipElem = nftables.SetElement{Key: ipKey, VerdictData: dropV}
	default:
		o.ipElem = nftables.SetElement{Key: ipKey, VerdictData: rejectV}
	}

	// External (NodePort) chain.
	if sp.NodePort == 0 {
		return o, nil
	}
	o.npMap = mapServiceNodePorts
	switch {
	case !sp.HasEndpoints:
		o.npMap = mapNoEndpointNPs
		o.npElem = nftables.SetElement{Key: npKey, VerdictData: rejectV}
		return o, nil
	case !sp.ExternalLocal:
		// Cluster policy: masquerade everything, any endpoint.
		name := chainName("ext", key)
		ch := chain(name)
		b.rule(ch, verdict(expr.VerdictJump, chainMarkMasq))
		balance(ch, sp.All)
		o.npElem = nftables.SetElement{Key: npKey, VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: name}}
	default:
		// Local policy: traffic from this host may use any endpoint
		// (masqueraded); other traffic keeps its source and goes to
		// local endpoints only, or is dropped when there is none.
		hostName := chainName("exh", key)
		balance(chain(hostName), sp.All)
		localName := chainName("exl", key)
		if len(sp.Local) > 0 {
			balance(chain(localName), sp.Local)
		}
		name := chainName("ext", key)
		ch := chain(name)
		b.rule(ch, cat(addrTypeLocal(true), []expr.Any{verdict(expr.VerdictJump, chainMarkMasq)})...)
		b.rule(ch, cat(addrTypeLocal(true), []expr.Any{verdict(expr.VerdictGoto, hostName)})...)
		if len(sp.Local) > 0 {
			b.rule(ch, verdict(expr.VerdictGoto, localName))
		} else {
			b.rule(ch, verdict(expr.VerdictDrop, ""))
		}
		o.npElem = nftables.SetElement{Key: npKey, VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: name}}
	}
	return o, nil
}

// fixedChains stages the chains every service jumps to.
func (b *builder) fixedChains() {
	markMasq := b.chain(chainMarkMasq)
	b.rule(markMasq,
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: native32(^masqMark), Xor: native32(masqMark)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1})
	masq := b.chain(chainMasquerading)
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
