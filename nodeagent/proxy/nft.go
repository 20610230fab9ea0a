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

// applyFull stages the whole table in one batch: create (so the delete
// cannot fail), delete, then everything anew, and flushes it as one
// netlink transaction: the kernel applies all of it or nothing.
func applyFull(c *nftables.Conn, cfg Config, sps []*ServicePort) error {
	t := &nftables.Table{Name: cfg.Table, Family: nftables.TableFamilyIPv4}
	c.AddTable(t)
	c.DelTable(t)
	if err := build(c, t, cfg, sps); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("proxy: nftables transaction: %w", err)
	}
	return nil
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

// newConn opens a netlink connection for a transaction of any size.
func newConn() (*nftables.Conn, error) {
	return nftables.New(nftables.WithSockOptions(func(c *netlink.Conn) error {
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
	}))
}

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

// build stages every chain, map and rule of the table.
func build(c *nftables.Conn, t *nftables.Table, cfg Config, sps []*ServicePort) error {
	c.AddTable(t)
	rule := func(ch *nftables.Chain, e ...expr.Any) { c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: e}) }
	chain := func(name string) *nftables.Chain { return c.AddChain(&nftables.Chain{Name: name, Table: t}) }
	base := func(name string, typ nftables.ChainType, hook *nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
		return c.AddChain(&nftables.Chain{Name: name, Table: t, Type: typ, Hooknum: hook, Priority: prio})
	}
	newSet := func(s *nftables.Set, elems []nftables.SetElement) (*nftables.Set, error) {
		s.Table = t
		// A netlink attribute's length is 16 bits: an element list past
		// 64 KiB wraps and the kernel misreads it, so big maps go in
		// chunks of elemChunk, one message each (same transaction).
		first := elems[:min(len(elems), elemChunk)]
		if err := c.AddSet(s, first); err != nil {
			return nil, fmt.Errorf("proxy: set %s: %w", s.Name, err)
		}
		for i := len(first); i < len(elems); i += elemChunk {
			if err := c.SetAddElements(s, elems[i:min(len(elems), i+elemChunk)]); err != nil {
				return nil, fmt.Errorf("proxy: set %s: %w", s.Name, err)
			}
		}
		return s, nil
	}

	// Fixed chains.
	markMasq := chain(chainMarkMasq)
	rule(markMasq,
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: native32(^masqMark), Xor: native32(masqMark)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1})
	masq := chain(chainMasquerading)
	rule(masq,
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: native32(masqMark), Xor: native32(0)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: native32(0)},
		verdict(expr.VerdictReturn, ""))
	rule(masq,
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: native32(^uint32(0)), Xor: native32(masqMark)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
		&expr.Masq{FullyRandom: true})
	reject := chain(chainReject)
	rule(reject, l4proto(1), &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Reject{Type: unix.NFT_REJECT_TCP_RST})
	rule(reject, &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 3 /* port unreachable */})

	// Per service port chains, collecting the map elements on the way.
	var svcElems, npElems, noEpElems, noNpElems, vipElems []nftables.SetElement
	seenVIP := map[string]bool{}
	for _, sp := range sps {
		proto, _ := protocolNumber(sp.Protocol)
		key := sp.Key()
		if !seenVIP[sp.ClusterIP.String()] {
			seenVIP[sp.ClusterIP.String()] = true
			vipElems = append(vipElems, nftables.SetElement{Key: []byte(sp.ClusterIP.To4())})
		}
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
					s, err := newSet(&nftables.Set{Name: shortName("aff", key+"__"+ep.String()), KeyType: nftables.TypeIPAddr,
						HasTimeout: true, Dynamic: true, Timeout: sp.Affinity}, nil)
					if err != nil {
						return err
					}
					affSets[ep.String()] = s
				}
			}
		}
		for _, ep := range eps {
			ch := chain(epChains[ep.String()])
			// Hairpin: a pod reaching itself through the service.
			rule(ch, loadSaddr(1), &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte(ep.IP.To4())},
				verdict(expr.VerdictJump, chainMarkMasq))
			if s := affSets[ep.String()]; s != nil {
				rule(ch, loadSaddr(1), &expr.Dynset{SrcRegKey: 1, SetName: s.Name, SetID: s.ID,
					Operation: unix.NFT_DYNSET_OP_UPDATE, Timeout: sp.Affinity})
			}
			port := make([]byte, 2)
			binary.BigEndian.PutUint16(port, uint16(ep.Port))
			rule(ch, l4proto(1), &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
				&expr.Immediate{Register: 1, Data: []byte(ep.IP.To4())},
				&expr.Immediate{Register: 2, Data: port},
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true})
		}
		// balance stages `[affinity gotos]; numgen random mod N vmap {...}`
		// into ch over eps.
		balance := func(ch *nftables.Chain, eps []Endpoint) error {
			for _, ep := range eps {
				if s := affSets[ep.String()]; s != nil {
					rule(ch, loadSaddr(1), &expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID},
						verdict(expr.VerdictGoto, epChains[ep.String()]))
				}
			}
			elems := make([]nftables.SetElement, len(eps))
			for i, ep := range eps {
				elems[i] = nftables.SetElement{Key: native32(uint32(i)),
					VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: epChains[ep.String()]}}
			}
			m, err := newSet(&nftables.Set{Anonymous: true, Constant: true, IsMap: true,
				KeyType: nftables.TypeInteger, DataType: nftables.TypeVerdict, KeyByteOrder: binaryutil.NativeEndian}, elems)
			if err != nil {
				return err
			}
			rule(ch, &expr.Numgen{Register: 1, Modulus: uint32(len(eps)), Type: unix.NFT_NG_RANDOM},
				&expr.Lookup{SourceRegister: 1, IsDestRegSet: true, DestRegister: 0, SetName: m.Name, SetID: m.ID})
			return nil
		}

		// Cluster chain.
		if len(sp.Cluster) > 0 {
			name := chainName("svc", key)
			ch := chain(name)
			if cfg.ClusterCIDR != nil {
				rule(ch, loadSaddr(1),
					&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte(cfg.ClusterCIDR.Mask), Xor: []byte{0, 0, 0, 0}},
					&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte(cfg.ClusterCIDR.IP.To4())},
					verdict(expr.VerdictJump, chainMarkMasq))
			}
			if err := balance(ch, sp.Cluster); err != nil {
				return err
			}
			svcElems = append(svcElems, nftables.SetElement{Key: ipKey, VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: name}})
		} else if sp.HasEndpoints {
			noEpElems = append(noEpElems, nftables.SetElement{Key: ipKey, VerdictData: dropV})
		} else {
			noEpElems = append(noEpElems, nftables.SetElement{Key: ipKey, VerdictData: rejectV})
		}

		// External (NodePort) chain.
		if sp.NodePort == 0 {
			continue
		}
		switch {
		case !sp.HasEndpoints:
			noNpElems = append(noNpElems, nftables.SetElement{Key: npKey, VerdictData: rejectV})
			continue
		case !sp.ExternalLocal:
			// Cluster policy: masquerade everything, any endpoint.
			name := chainName("ext", key)
			ch := chain(name)
			rule(ch, verdict(expr.VerdictJump, chainMarkMasq))
			if err := balance(ch, sp.All); err != nil {
				return err
			}
			npElems = append(npElems, nftables.SetElement{Key: npKey, VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: name}})
		default:
			// Local policy: traffic from this host may use any endpoint
			// (masqueraded); other traffic keeps its source and goes to
			// local endpoints only, or is dropped when there is none.
			hostName := chainName("exh", key)
			if err := balance(chain(hostName), sp.All); err != nil {
				return err
			}
			localName := chainName("exl", key)
			if len(sp.Local) > 0 {
				if err := balance(chain(localName), sp.Local); err != nil {
					return err
				}
			}
			name := chainName("ext", key)
			ch := chain(name)
			rule(ch, cat(addrTypeLocal(true), []expr.Any{verdict(expr.VerdictJump, chainMarkMasq)})...)
			rule(ch, cat(addrTypeLocal(true), []expr.Any{verdict(expr.VerdictGoto, hostName)})...)
			if len(sp.Local) > 0 {
				rule(ch, verdict(expr.VerdictGoto, localName))
			} else {
				rule(ch, verdict(expr.VerdictDrop, ""))
			}
			npElems = append(npElems, nftables.SetElement{Key: npKey, VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: name}})
		}
	}

	// Maps and sets.
	vmap := func(name string, kt nftables.SetDatatype, elems []nftables.SetElement) (*nftables.Set, error) {
		return newSet(&nftables.Set{Name: name, IsMap: true, Concatenation: true, KeyType: kt, DataType: nftables.TypeVerdict}, elems)
	}
	svcMap, err := vmap(mapServiceIPs, concatIPProtoPort, svcElems)
	if err != nil {
		return err
	}
	npMap, err := vmap(mapServiceNodePorts, concatProtoPort, npElems)
	if err != nil {
		return err
	}
	noEpMap, err := vmap(mapNoEndpointIPs, concatIPProtoPort, noEpElems)
	if err != nil {
		return err
	}
	noNpMap, err := vmap(mapNoEndpointNPs, concatProtoPort, noNpElems)
	if err != nil {
		return err
	}
	vips, err := newSet(&nftables.Set{Name: setClusterIPs, KeyType: nftables.TypeIPAddr}, vipElems)
	if err != nil {
		return err
	}

	// Dispatch: ClusterIPs by (daddr . proto . dport), NodePorts on local
	// addresses by (proto . dport).
	services := chain(chainServices)
	rule(services, vmapIPProtoPort(svcMap)...)
	nodePortMatch := addrTypeLocal(false)
	if !cfg.LocalhostNodePorts {
		nodePortMatch = cat(nodePortMatch, notLoopbackDaddr())
	}
	rule(services, cat(nodePortMatch, vmapProtoPort(npMap))...)

	check := chain(chainEndpointsCheck)
	rule(check, vmapIPProtoPort(noEpMap)...)
	rule(check, cat(nodePortMatch, vmapProtoPort(noNpMap))...)

	// Base chains, as upstream's priorities.
	for _, b := range []struct {
		name string
		hook *nftables.ChainHook
	}{{"nat-prerouting", nftables.ChainHookPrerouting}, {"nat-output", nftables.ChainHookOutput}} {
		rule(base(b.name, nftables.ChainTypeNAT, b.hook, nftables.ChainPriorityNATDest), verdict(expr.VerdictJump, chainServices))
	}
	rule(base("nat-postrouting", nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource),
		verdict(expr.VerdictJump, chainMasquerading))
	prio := nftables.ChainPriorityRef(-110)
	for _, b := range []struct {
		name string
		hook *nftables.ChainHook
	}{{"filter-input", nftables.ChainHookInput}, {"filter-forward", nftables.ChainHookForward}, {"filter-output", nftables.ChainHookOutput}} {
		ch := base(b.name, nftables.ChainTypeFilter, b.hook, prio)
		rule(ch, cat(ctStateNew(), []expr.Any{verdict(expr.VerdictJump, chainEndpointsCheck)})...)
		if b.hook == nftables.ChainHookInput {
			// Still addressed to a ClusterIP after DNAT: a port the
			// service does not have.
			// (New connections only: the reset the reject sends to a
			// host socket bound to the ClusterIP must get through.)
			rule(ch, cat(ctStateNew(), []expr.Any{loadDaddr(1), &expr.Lookup{SourceRegister: 1, SetName: vips.Name, SetID: vips.ID},
				verdict(expr.VerdictGoto, chainReject)})...)
			if cfg.LocalhostNodePorts {
				// route_localnet is on: only this host may talk to
				// 127.0.0.0/8 (upstream's "block incoming localnet
				// connections").
				rule(ch, loadDaddr(1),
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
