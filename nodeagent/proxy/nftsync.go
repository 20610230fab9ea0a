package proxy

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"time"

	"github.com/google/nftables"
)

// syncer programs the table and remembers what it programmed, so that a
// sync after the first one only rewrites what changed (upstream's partial
// sync): the chains of service ports that changed are flushed and
// refilled, chains and affinity sets no longer needed deleted, map
// elements added and removed. A full sync replaces the whole table. Every
// sync is one netlink transaction: the kernel applies all of it or none.
type syncer struct {
	cfg Config
	// ports is what the table holds by service port key; nil until a
	// full sync succeeded (and again after any failed sync, so the next
	// one is full).
	ports map[string]*programmed
	vips  map[string]bool
	// hairpin counts the service ports using each endpoint address (an
	// element of the hairpin set while above zero).
	hairpin map[ip4]int
	// haveCluster and haveNodePort count the index chains in the table.
	haveCluster, haveNodePort uint32
	// picks are the shared pick chains in the table.
	picks map[string]bool
}

type programmed struct {
	sp  *ServicePort
	obj *portObjects
}

// SyncInfo says what a sync did.
type SyncInfo struct {
	// Full: the whole table was rewritten.
	Full bool
	// Changed and Removed count the service ports written and deleted.
	Changed, Removed int
	// Table is the time the nftables transaction took (staging and
	// kernel), Addresses the ClusterIP link's update.
	Table, Addresses time.Duration
}

func (s *syncer) table() *nftables.Table {
	return &nftables.Table{Name: s.cfg.Table, Family: nftables.TableFamilyIPv4}
}

// sync programs sps: a full sync when asked or when the table's state is
// not known, a partial one otherwise.
func (s *syncer) sync(c *txn, sps []*ServicePort, full bool) (SyncInfo, error) {
	var st SyncInfo
	var err error
	if full || s.ports == nil {
		st, err = s.full(c, sps)
	} else {
		st, err = s.partial(c, sps)
	}
	if err != nil {
		s.ports, s.vips, s.hairpin = nil, nil, nil
	}
	return st, err
}

// full stages the whole table in one transaction: create (so the delete
// cannot fail), delete, then everything anew.
func (s *syncer) full(c *txn, sps []*ServicePort) (SyncInfo, error) {
	t := s.table()
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	b := &builder{c: c, t: t, cfg: s.cfg, picks: map[string]bool{}}
	if err := b.fixedChains(); err != nil {
		return SyncInfo{}, err
	}
	ports := make(map[string]*programmed, len(sps))
	elems := map[string][]nftables.SetElement{mapServiceIPs: make([]nftables.SetElement, 0, len(sps))}
	vips := make(map[string]bool, len(sps))
	hairpin := map[ip4]int{}
	vipElems := make([]nftables.SetElement, 0, len(sps))
	// The endpoint maps' elements are staged a chunk at a time as the
	// ports come (one slice of them all would be copied over and over).
	epElems := &chunker{b: b, s: endpointMapDef(t, mapEndpoints)}
	npElems := &chunker{b: b, s: endpointMapDef(t, mapNodePortEPs)}
	for _, sp := range sps {
		o, err := b.port(sp)
		if err != nil {
			return SyncInfo{}, err
		}
		ports[sp.Key()] = &programmed{sp: sp, obj: o}
		if err := errors.Join(epElems.add(o.epElems), npElems.add(o.npElems)); err != nil {
			return SyncInfo{}, err
		}
		for _, ip := range o.hairpin {
			hairpin[ip]++
		}
		elems[o.ipMap] = append(elems[o.ipMap], o.ipElem)
		if o.npMap != "" {
			elems[o.npMap] = append(elems[o.npMap], o.npElem)
		}
		if v := sp.ClusterIP.String(); !vips[v] {
			vips[v] = true
			vipElems = append(vipElems, nftables.SetElement{Key: []byte(sp.ClusterIP.To4())})
		}
	}
	if err := errors.Join(b.indexChains(false, 0, b.needCluster), b.indexChains(true, 0, b.needNodePort),
		epElems.flush(), npElems.flush()); err != nil {
		return SyncInfo{}, err
	}
	if err := b.elems(hairpinSetDef(t), hairpinElems(slices.SortedFunc(maps.Keys(hairpin), compareIP4)), false); err != nil {
		return SyncInfo{}, err
	}
	if err := b.dispatch(elems, vipElems); err != nil {
		return SyncInfo{}, err
	}
	if err := c.Flush(); err != nil {
		return SyncInfo{}, fmt.Errorf("proxy: nftables transaction: %w", err)
	}
	s.ports, s.vips, s.hairpin = ports, vips, hairpin
	s.haveCluster, s.haveNodePort, s.picks = b.needCluster, b.needNodePort, b.picks
	return SyncInfo{Full: true, Changed: len(sps)}, nil
}

// partial stages only the differences from what the last sync left:
//  1. the map elements of changed and removed service ports are deleted;
//  2. all their chains are flushed (which drops every reference between
//     them and to their affinity sets);
//  3. the changed ones are refilled, new chains and sets added;
//  4. chains and affinity sets no longer used are deleted;
//  5. the new map elements and ClusterIPs are added, stale ClusterIPs
//     deleted.
func (s *syncer) partial(c *txn, sps []*ServicePort) (SyncInfo, error) {
	t := s.table()
	var st SyncInfo
	want := make(map[string]bool, len(sps))
	var changed []*ServicePort
	vips := make(map[string]bool, len(s.vips))
	for _, sp := range sps {
		k := sp.Key()
		want[k] = true
		vips[sp.ClusterIP.String()] = true
		// The same object (Program's change tracking kept it): unchanged.
		if old := s.ports[k]; old == nil || (old.sp != sp && !old.sp.equal(sp)) {
			changed = append(changed, sp)
		}
	}
	var gone []string
	for k := range s.ports {
		if !want[k] {
			gone = append(gone, k)
		}
	}
	var vipAdd, vipDel []nftables.SetElement
	for v := range vips {
		if !s.vips[v] {
			vipAdd = append(vipAdd, nftables.SetElement{Key: []byte(net.ParseIP(v).To4())})
		}
	}
	for v := range s.vips {
		if !vips[v] {
			vipDel = append(vipDel, nftables.SetElement{Key: []byte(net.ParseIP(v).To4())})
		}
	}
	if len(changed) == 0 && len(gone) == 0 && len(vipAdd) == 0 && len(vipDel) == 0 {
		return st, nil
	}
	slices.Sort(gone)

	b := &builder{c: c, t: t, cfg: s.cfg, haveChains: map[string]bool{}, haveSets: map[string]bool{}, picks: maps.Clone(s.picks)}
	// The old objects of every service port touched.
	var olds []*portObjects
	for _, sp := range changed {
		if old := s.ports[sp.Key()]; old != nil {
			olds = append(olds, old.obj)
		}
	}
	for _, k := range gone {
		olds = append(olds, s.ports[k].obj)
	}
	// 1. Old map elements.
	del := map[string][]nftables.SetElement{}
	// hairpin is the change of the use counts (applied when the
	// transaction went through).
	hairpin := map[ip4]int{}
	for _, o := range olds {
		for _, e := range o.epElems {
			del[mapEndpoints] = append(del[mapEndpoints], nftables.SetElement{Key: e.Key})
		}
		for _, e := range o.npElems {
			del[mapNodePortEPs] = append(del[mapNodePortEPs], nftables.SetElement{Key: e.Key})
		}
		for _, ip := range o.hairpin {
			hairpin[ip]--
		}
		del[o.ipMap] = append(del[o.ipMap], nftables.SetElement{Key: o.ipElem.Key})
		if o.npMap != "" {
			del[o.npMap] = append(del[o.npMap], nftables.SetElement{Key: o.npElem.Key})
		}
	}
	for _, name := range sortedKeys(del) {
		if err := b.elems(elemsDef(t, name), del[name], true); err != nil {
			return st, err
		}
	}
	// 2. Flush the old chains.
	for _, o := range olds {
		for _, ch := range o.chains {
			c.FlushChain(&nftables.Chain{Name: ch, Table: t})
			b.haveChains[ch] = true
		}
		for _, set := range o.sets {
			b.haveSets[set] = true
		}
	}
	// 3. Refill.
	ports := make(map[string]*programmed, len(sps))
	for k, p := range s.ports {
		if want[k] {
			ports[k] = p
		}
	}
	add := map[string][]nftables.SetElement{}
	usedChains, usedSets := map[string]bool{}, map[string]bool{}
	for _, sp := range changed {
		o, err := b.port(sp)
		if err != nil {
			return st, err
		}
		ports[sp.Key()] = &programmed{sp: sp, obj: o}
		for _, ch := range o.chains {
			usedChains[ch] = true
		}
		for _, set := range o.sets {
			usedSets[set] = true
		}
		add[o.ipMap] = append(add[o.ipMap], o.ipElem)
		if o.npMap != "" {
			add[o.npMap] = append(add[o.npMap], o.npElem)
		}
		add[mapEndpoints] = append(add[mapEndpoints], o.epElems...)
		add[mapNodePortEPs] = append(add[mapNodePortEPs], o.npElems...)
		for _, ip := range o.hairpin {
			hairpin[ip]++
		}
	}
	// 4. Delete what is no longer used (every reference to it went in
	// steps 1 and 2).
	for _, o := range olds {
		for _, ch := range o.chains {
			if !usedChains[ch] {
				c.DelChain(&nftables.Chain{Name: ch, Table: t})
				usedChains[ch] = true // once
			}
		}
	}
	for _, o := range olds {
		for _, set := range o.sets {
			if !usedSets[set] {
				c.DelSet(&nftables.Set{Name: set, Table: t})
				usedSets[set] = true
			}
		}
	}
	// 5. New elements (and index chains for indexes not seen before),
	// ClusterIPs.
	if err := errors.Join(b.indexChains(false, s.haveCluster, b.needCluster), b.indexChains(true, s.haveNodePort, b.needNodePort)); err != nil {
		return st, err
	}
	for _, name := range sortedKeys(add) {
		if err := b.elems(elemsDef(t, name), add[name], false); err != nil {
			return st, err
		}
	}
	var pinAdd, pinDel []ip4
	for ip, d := range hairpin {
		was := s.hairpin[ip]
		switch n := was + d; {
		case n > 0 && was <= 0:
			pinAdd = append(pinAdd, ip)
		case n <= 0 && was > 0:
			pinDel = append(pinDel, ip)
		}
	}
	slices.SortFunc(pinAdd, compareIP4)
	slices.SortFunc(pinDel, compareIP4)
	if err := b.elems(hairpinSetDef(t), hairpinElems(pinDel), true); err != nil {
		return st, err
	}
	if err := b.elems(hairpinSetDef(t), hairpinElems(pinAdd), false); err != nil {
		return st, err
	}
	if err := b.elems(vipSetDef(t), vipDel, true); err != nil {
		return st, err
	}
	if err := b.elems(vipSetDef(t), vipAdd, false); err != nil {
		return st, err
	}
	if err := c.Flush(); err != nil {
		return st, fmt.Errorf("proxy: nftables transaction (partial): %w", err)
	}
	for ip, d := range hairpin {
		if n := s.hairpin[ip] + d; n > 0 {
			s.hairpin[ip] = n
		} else {
			delete(s.hairpin, ip)
		}
	}
	s.ports, s.vips = ports, vips
	s.haveCluster, s.haveNodePort = max(s.haveCluster, b.needCluster), max(s.haveNodePort, b.needNodePort)
	s.picks = b.picks
	st.Changed, st.Removed = len(changed), len(gone)
	return st, nil
}

// chunker stages elements to add to a set a chunk (elemChunk) at a time.
type chunker struct {
	b   *builder
	s   *nftables.Set
	buf []nftables.SetElement
}

// add stages es, sending full chunks on.
func (c *chunker) add(es []nftables.SetElement) error {
	for _, e := range es {
		if c.buf == nil {
			c.buf = make([]nftables.SetElement, 0, elemChunk)
		}
		c.buf = append(c.buf, e)
		if len(c.buf) == elemChunk {
			if err := c.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// flush stages what is left.
func (c *chunker) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	err := c.b.elems(c.s, c.buf, false)
	c.buf = nil
	return err
}

// elemsDef is the definition of the map or set name whose elements a
// partial sync changes.
func elemsDef(t *nftables.Table, name string) *nftables.Set {
	if name == mapEndpoints || name == mapNodePortEPs {
		return endpointMapDef(t, name)
	}
	return mapDef(t, name)
}

// hairpinElems are the hairpin set's elements `ip . ip` of ips.
func hairpinElems(ips []ip4) []nftables.SetElement {
	out := make([]nftables.SetElement, 0, len(ips))
	for _, ip := range ips {
		out = append(out, nftables.SetElement{Key: append(ip[:len(ip):len(ip)], ip[:]...)})
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// applyFull replaces the table (in our network namespace) with sps in
// one transaction, keeping no state.
func applyFull(cfg Config, sps []*ServicePort) error {
	c, err := newTxn("")
	if err != nil {
		return err
	}
	_, err = (&syncer{cfg: cfg}).full(c, sps)
	return err
}
