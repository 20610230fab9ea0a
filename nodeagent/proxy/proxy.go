// Package proxy is the node agent's service proxy (kube-proxy's job) in
// nftables mode: Services and EndpointSlices (discovery.k8s.io/v1) are
// watched through client-go informers and programmed into one nftables
// table owned by Skiff (ip family, default "skiff_proxy"), written through
// netlink (github.com/google/nftables, never the nft binary).
//
// The first sync (and one every FullSyncPeriod, and the one after a
// failure) rebuilds the whole table; the others rewrite only the chains
// and map elements of service ports that changed (upstream's partial
// sync). Every sync is one netlink transaction, which the kernel applies
// atomically. Dispatch is by verdict maps
// keyed on (daddr . l4proto . dport) for ClusterIPs and (l4proto . dport)
// on local addresses for NodePorts, so the per-packet cost does not grow
// with the number of services; each service port has its own chain that
// picks an endpoint with `numgen random`, and each endpoint a chain that
// DNATs to it. Traffic from the host and hairpin traffic is marked and
// masqueraded in postrouting, services without endpoints are rejected
// (TCP reset / ICMP port unreachable), as upstream's nftables mode.
//
// The service CIDR has a blackhole route on Skiff nodes, so a socket on the
// host cannot even connect to a ClusterIP (the route lookup at connect()
// fails before any netfilter hook). The proxy therefore gives every
// ClusterIP a local /32 route in the local table through a dummy
// interface (kube-proxy's IPVS mode puts addresses on kube-ipvs0; routes
// scale, a device's address list does not): the local route wins over
// the blackhole, output DNAT rewrites the destination, and packets to
// ports a service does not have are rejected in the input hook. The
// blackhole route stays untouched.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Defaults.
const (
	DefaultTable         = "skiff_proxy"
	DefaultInterface     = "skiff-svc0"
	DefaultMinSyncPeriod = 100 * time.Millisecond
	// DefaultFullSyncPeriod is upstream's: a full resync every hour repairs
	// whatever changed the table behind the proxy's back.
	DefaultFullSyncPeriod = time.Hour
	routeLocalnet         = "/proc/sys/net/ipv4/conf/all/route_localnet"
)

// Options configures a Proxy.
type Options struct {
	// NodeName decides which endpoints are local.
	NodeName string
	// ClusterCIDR is the pod range: ClusterIP traffic from elsewhere (the
	// host) is masqueraded.
	ClusterCIDR string
	// Table is the nftables table (ip family); Interface the dummy link
	// holding the ClusterIPs.
	Table, Interface string
	// MinSyncPeriod debounces changes (default 100ms).
	MinSyncPeriod time.Duration
	// FullSyncPeriod is the time after which a sync rewrites the whole
	// table rather than what changed (default 1h).
	FullSyncPeriod time.Duration
	// NetNS is a named network namespace (`ip netns`, /run/netns/NAME)
	// to program instead of the agent's own; for benchmarks and tests.
	NetNS string
	// NoLocalhostNodePorts turns NodePorts on 127.0.0.0/8 off; on by
	// default, which needs net.ipv4.conf.all.route_localnet=1 (set at
	// start, as upstream's iptables mode).
	NoLocalhostNodePorts bool
	Logger               *slog.Logger
}

// Proxy programs the node's service table.
type Proxy struct {
	opts   Options
	cfg    Config
	log    *slog.Logger
	client kubernetes.Interface

	svcLister   cache.GenericLister
	sliceLister cache.GenericLister
	kick        chan struct{}

	mu        sync.Mutex
	nft       syncer
	vips      map[string]bool // ClusterIPs routed locally through the dummy interface
	linkReady bool
	lastSync  time.Time
	lastFull  time.Time
	forceFull bool
	syncs     int
	lastErr   error
	lastStats SyncInfo
	// udp are the UDP service ports the last sync programmed (nil before
	// the first): what their conntrack entries are checked against.
	udp map[string]udpPort

	// built caches each Service's ServicePorts by namespace/name with
	// the objects they were computed from (only Program touches it).
	built map[string]*builtService
}

// builtService is what one Service's ServicePorts were computed from.
type builtService struct {
	svc    *corev1.Service
	slices []*discoveryv1.EndpointSlice
	sps    []*ServicePort
}

// New checks the options; Run does the work.
func New(client kubernetes.Interface, opts Options) (*Proxy, error) {
	if opts.Table == "" {
		opts.Table = DefaultTable
	}
	if opts.Interface == "" {
		opts.Interface = DefaultInterface
	}
	if opts.MinSyncPeriod <= 0 {
		opts.MinSyncPeriod = DefaultMinSyncPeriod
	}
	if opts.FullSyncPeriod <= 0 {
		opts.FullSyncPeriod = DefaultFullSyncPeriod
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cfg := Config{Table: opts.Table, LocalhostNodePorts: !opts.NoLocalhostNodePorts}
	if opts.ClusterCIDR != "" {
		_, n, err := net.ParseCIDR(opts.ClusterCIDR)
		if err != nil || n.IP.To4() == nil {
			return nil, fmt.Errorf("proxy: cluster CIDR %q is not an IPv4 CIDR", opts.ClusterCIDR)
		}
		n.IP = n.IP.To4()
		cfg.ClusterCIDR = n
	}
	return &Proxy{
		opts: opts, cfg: cfg, nft: syncer{cfg: cfg}, client: client, kick: make(chan struct{}, 1), vips: map[string]bool{},
		log: opts.Logger.With("component", "proxy", "mode", "nftables"),
	}, nil
}

// Run watches Services and EndpointSlices and keeps the table in sync
// until ctx ends. It leaves the table in place (existing connections and
// services keep working across an agent restart); Cleanup removes it.
func (p *Proxy) Run(ctx context.Context) error {
	if p.cfg.LocalhostNodePorts {
		if err := os.WriteFile(routeLocalnet, []byte("1"), 0o644); err != nil {
			return fmt.Errorf("proxy: route_localnet for localhost NodePorts: %w", err)
		}
	}
	svcs, slices, stop, err := watchSources(ctx, p.client, p.Kick)
	if err != nil {
		return err
	}
	defer stop()
	p.svcLister, p.sliceLister = svcs, slices
	p.log.Info("service proxy started", "table", p.opts.Table, "interface", p.opts.Interface)
	syncLoop(ctx, p.kick, p.opts.MinSyncPeriod, p.lastSyncTime, func() time.Duration {
		if err := p.Sync(); err != nil {
			p.log.Error("sync failed", "err", err)
			return time.Second
		}
		return 0
	})
	return nil
}

// lastSyncTime is when the last sync ended (for the debounce).
func (p *Proxy) lastSyncTime() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastSync
}

// Kick asks for a sync.
func (p *Proxy) Kick() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Sync programs the table from the informer caches now.
func (p *Proxy) Sync() error {
	var svcs []*corev1.Service
	objs, err := p.svcLister.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("proxy: list services: %w", err)
	}
	for _, o := range objs {
		svcs = append(svcs, o.(*corev1.Service))
	}
	var slices []*discoveryv1.EndpointSlice
	objs, err = p.sliceLister.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("proxy: list endpointslices: %w", err)
	}
	for _, o := range objs {
		slices = append(slices, o.(*discoveryv1.EndpointSlice))
	}
	return p.Program(svcs, slices)
}

// Program programs the table and the dummy link for the given Services
// and EndpointSlices (what Sync does with the informer caches' content).
// Calls must not overlap. The objects are taken as immutable, as an
// informer cache hands them out: a change is a new object, and a Service
// whose object and EndpointSlice objects are the ones of the previous call
// is not looked at again.
func (p *Proxy) Program(svcs []*corev1.Service, slices []*discoveryv1.EndpointSlice) error {
	start := time.Now()
	sps := p.servicePorts(svcs, slices)
	st, err := p.apply(sps)
	p.mu.Lock()
	p.lastSync, p.lastErr, p.lastStats = time.Now(), err, st
	if err == nil && st.Full {
		p.lastFull = p.lastSync
	}
	p.syncs++
	p.mu.Unlock()
	if err == nil {
		p.log.Debug("synced", "servicePorts", len(sps), "full", st.Full, "changed", st.Changed, "removed", st.Removed, "took", time.Since(start))
	}
	return err
}

// servicePorts is BuildServicePorts, recomputed only for the Services
// whose object or EndpointSlices changed since the last call (by
// identity): per-object change tracking, so that one change costs one
// Service's work plus a pass over the object pointers.
func (p *Proxy) servicePorts(svcs []*corev1.Service, epSlices []*discoveryv1.EndpointSlice) []*ServicePort {
	bySvc := make(map[string][]*discoveryv1.EndpointSlice, len(svcs))
	for _, s := range epSlices {
		if s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		if name := s.Labels[discoveryv1.LabelServiceName]; name != "" {
			k := s.Namespace + "/" + name
			bySvc[k] = append(bySvc[k], s)
		}
	}
	next := make(map[string]*builtService, len(svcs))
	var out []*ServicePort
	for _, svc := range svcs {
		k := svc.Namespace + "/" + svc.Name
		sl := bySvc[k]
		b := p.built[k]
		if b == nil || b.svc != svc || !sameObjects(b.slices, sl) {
			b = &builtService{svc: svc, slices: sl, sps: BuildServicePorts([]*corev1.Service{svc}, sl, p.opts.NodeName)}
		}
		next[k] = b
		out = append(out, b.sps...)
	}
	p.built = next
	slices.SortFunc(out, func(a, b *ServicePort) int { return strings.Compare(a.Key(), b.Key()) })
	return out
}

// sameObjects says whether a and b hold the same objects, in any order.
func sameObjects[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// ForceFullSync makes the next sync rewrite the whole table.
func (p *Proxy) ForceFullSync() {
	p.mu.Lock()
	p.forceFull = true
	p.mu.Unlock()
}

// apply programs sps: table first (new VIPs must be DNATed the moment
// they become local addresses), then the dummy interface's addresses.
func (p *Proxy) apply(sps []*ServicePort) (st SyncInfo, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.linkReady {
		if err := ensureDummyIn(p.opts.NetNS, p.opts.Interface); err != nil {
			return SyncInfo{}, err
		}
		p.linkReady = true
	}
	c, err := newTxn(p.opts.NetNS)
	if err != nil {
		return SyncInfo{}, err
	}
	full := p.forceFull || time.Since(p.lastFull) >= p.opts.FullSyncPeriod
	start := time.Now()
	st, err = p.nft.sync(c, sps, full)
	st.Table = time.Since(start)
	if err != nil {
		return st, err
	}
	start = time.Now()
	defer func() { st.Addresses = time.Since(start) }()
	p.forceFull = false
	want := map[string]bool{}
	for _, sp := range sps {
		want[sp.ClusterIP.String()] = true
	}
	if err := syncAddressesIn(p.opts.NetNS, p.opts.Interface, p.vips, want); err != nil {
		p.vips = map[string]bool{} // read them back next time
		return st, err
	}
	p.vips = want
	p.deleteStaleUDP(sps)
	return st, nil
}

// deleteStaleUDP deletes the conntrack entries of UDP flows that the
// table just written would not send where they go (see conntrack.go): at
// the first sync (flows made before this proxy ran) and whenever the UDP
// service ports changed. A failure is logged: the entries then live out
// their timeout.
func (p *Proxy) deleteStaleUDP(sps []*ServicePort) {
	udp := udpPorts(sps)
	prev := p.udp
	p.udp = udp
	if prev != nil && sameUDP(prev, udp) {
		return
	}
	n, err := deleteConntrack(p.opts.NetNS, staleUDP(prev, udp))
	if err != nil {
		p.log.Warn("delete stale UDP conntrack entries", "err", err)
		return
	}
	if n > 0 {
		p.log.Debug("deleted stale UDP conntrack entries", "entries", n)
	}
}

// LastSync says what the last sync did.
func (p *Proxy) LastSync() SyncInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastStats
}

// Synced reports how many syncs ran and the last one's error.
func (p *Proxy) Synced() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.syncs, p.lastErr
}

// Cleanup removes everything the proxy made: its table and its dummy
// interface (with the ClusterIPs on it). It works on a fresh Proxy too
// (agent start-up in another mode, tests).
func Cleanup(opts Options) error {
	if opts.Table == "" {
		opts.Table = DefaultTable
	}
	if opts.Interface == "" {
		opts.Interface = DefaultInterface
	}
	var errs []error
	c, err := newConn(opts.NetNS)
	if err != nil {
		errs = append(errs, fmt.Errorf("proxy: netlink: %w", err))
	} else {
		if err := deleteTable(c, opts.Table); err != nil {
			errs = append(errs, err)
		}
		_ = c.CloseLasting()
	}
	if err := deleteDummy(opts.NetNS, opts.Interface); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// TableExists reports whether the table is in the kernel.
func TableExists(name string) (bool, error) {
	c, err := nftables.New()
	if err != nil {
		return false, err
	}
	ts, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return false, err
	}
	for _, t := range ts {
		if t.Name == name {
			return true, nil
		}
	}
	return false, nil
}

func isNotExist(out []byte) bool {
	s := string(out)
	return strings.Contains(s, "Cannot find device") || strings.Contains(s, "does not exist")
}
