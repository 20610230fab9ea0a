package proxy

// Userspace mode: the service proxy without nftables or iptables. The
// ClusterIPs are local addresses on the holder link (as in nftables mode),
// so the proxy simply listens on ClusterIP:port (and 0.0.0.0:nodePort) and
// copies bytes to an endpoint it picks round-robin. See README.md.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Userspace-mode defaults.
const (
	// DefaultUDPIdleTimeout ends a UDP session (one client address to one
	// endpoint) after this long without a datagram either way: conntrack's
	// timeout for unreplied UDP flows, which is what nftables mode gives.
	// (Upstream's userspace mode used --udp-timeout, 250ms.)
	DefaultUDPIdleTimeout = 30 * time.Second
	// DefaultDialTimeout bounds the connect to one endpoint before the next
	// one is tried.
	DefaultDialTimeout = time.Second
	// maxDialAttempts is how many endpoints one connection tries at most.
	maxDialAttempts = 4
)

// Userspace is the service proxy in userspace mode: one listening socket
// per ClusterIP service port (TCP and UDP) on the ClusterIP, which is a
// local address on the holder link, and one on 0.0.0.0 per NodePort;
// connections and UDP sessions are forwarded to endpoints chosen
// round-robin (sticky per client IP with sessionAffinity ClientIP). It
// needs no nftables; the endpoints are those BuildServicePorts chooses.
type Userspace struct {
	opts   Options
	log    *slog.Logger
	client kubernetes.Interface

	udpIdle     time.Duration
	dialTimeout time.Duration
	noLink      bool // tests: the VIPs are loopback addresses, no holder link

	kick        chan struct{}
	svcLister   cache.GenericLister
	sliceLister cache.GenericLister
	local       atomic.Pointer[map[string]bool] // this host's addresses

	ctx    context.Context // ends when Run ends: dials and sessions
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	vips     map[string]bool
	fronts   map[string]*frontend
	busy     map[string]bool       // listeners that could not bind (logged once)
	conns    map[net.Conn]struct{} // open proxied TCP connections (both ends)
	stopped  bool
	lastSync time.Time
	syncs    int
	lastErr  error
}

// NewUserspace checks the options; Run does the work. Table names the
// nftables-mode table that Run removes if a previous run left it.
func NewUserspace(client kubernetes.Interface, opts Options) (*Userspace, error) {
	if opts.Table == "" {
		opts.Table = DefaultTable
	}
	if opts.Interface == "" {
		opts.Interface = DefaultInterface
	}
	if opts.MinSyncPeriod <= 0 {
		opts.MinSyncPeriod = DefaultMinSyncPeriod
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	u := &Userspace{
		opts: opts, client: client, log: opts.Logger.With("component", "proxy", "mode", "userspace"),
		udpIdle: DefaultUDPIdleTimeout, dialTimeout: DefaultDialTimeout,
		kick: make(chan struct{}, 1), ctx: ctx, cancel: cancel,
		vips: map[string]bool{}, fronts: map[string]*frontend{}, conns: map[net.Conn]struct{}{}, busy: map[string]bool{},
	}
	u.refreshLocal()
	return u, nil
}

// Run watches Services and EndpointSlices and keeps the listeners in sync
// until ctx ends; then it closes every listener and proxied connection
// (they live in this process). The ClusterIPs stay on the holder link;
// Cleanup removes it.
func (u *Userspace) Run(ctx context.Context) error {
	defer u.shutdown()
	if !u.noLink {
		// A table left by nftables mode would DNAT ClusterIP traffic away
		// from the listeners. Kernels without nftables have none to delete.
		if c, err := nftables.New(); err == nil {
			if err := deleteTable(c, u.opts.Table); err != nil {
				u.log.Warn("could not remove the nftables-mode table", "table", u.opts.Table, "err", err)
			}
		}
		if err := ensureDummy(u.opts.Interface); err != nil {
			return err
		}
	}
	svcs, slices, stop, err := watchSources(ctx, u.client, u.Kick)
	if err != nil {
		return err
	}
	defer stop()
	u.svcLister, u.sliceLister = svcs, slices
	u.log.Info("service proxy started", "interface", u.opts.Interface)
	syncLoop(ctx, u.kick, u.opts.MinSyncPeriod, u.lastSyncTime, func() time.Duration {
		if err := u.Sync(); err != nil {
			u.log.Error("sync failed", "err", err)
			return time.Second
		}
		if u.portsBusy() {
			// Ports another socket holds are retried, less often.
			return 5 * time.Second
		}
		return 0
	})
	return nil
}

// lastSyncTime is when the last sync ended (for the debounce).
func (u *Userspace) lastSyncTime() time.Time {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.lastSync
}

// Kick asks for a sync.
func (u *Userspace) Kick() {
	select {
	case u.kick <- struct{}{}:
	default:
	}
}

// portsBusy says whether some listener could not bind.
func (u *Userspace) portsBusy() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.busy) > 0
}

// Synced reports how many syncs ran and the last one's error (a port that
// could not be bound counts).
func (u *Userspace) Synced() (int, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.syncs, u.lastErr
}

// Sync opens, updates and closes listeners from the informer caches now.
func (u *Userspace) Sync() error {
	objs, err := u.svcLister.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("proxy: list services: %w", err)
	}
	svcs := make([]*corev1.Service, 0, len(objs))
	for _, o := range objs {
		svcs = append(svcs, o.(*corev1.Service))
	}
	objs, err = u.sliceLister.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("proxy: list endpointslices: %w", err)
	}
	slices := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		slices = append(slices, o.(*discoveryv1.EndpointSlice))
	}
	return u.apply(BuildServicePorts(svcs, slices, u.opts.NodeName))
}

// Program sets the listeners for these objects without informers (a
// benchmark or another front end); Run must not be running. Stop ends it.
func (u *Userspace) Program(svcs []*corev1.Service, slices []*discoveryv1.EndpointSlice) error {
	if !u.noLink {
		if err := ensureDummy(u.opts.Interface); err != nil {
			return err
		}
	}
	if err := u.apply(BuildServicePorts(svcs, slices, u.opts.NodeName)); err != nil {
		return err
	}
	_, err := u.Synced()
	return err
}

// Stop closes the listeners and proxied connections of a Userspace driven
// by Program (Run does it itself when its context ends).
func (u *Userspace) Stop() { u.shutdown() }

// frontKey names a listening socket: protocol and local address.
func frontKey(proto corev1.Protocol, ip net.IP, port int32) string {
	return string(proto) + "/" + net.JoinHostPort(ip.String(), strconv.Itoa(int(port)))
}

// apply makes the listeners match sps. A service port without endpoints
// gets no listener, so the kernel refuses at once (TCP reset, ICMP port
// unreachable for UDP) as its ClusterIP is still a local address. Existing
// listeners only get their service port swapped: connections through them,
// and through closed ones, keep running. A port another socket holds (say
// a host process on the wildcard address at that port) does not fail the
// sync: it is logged once, kept in Synced's error and retried.
func (u *Userspace) apply(sps []*ServicePort) error {
	type want struct {
		sp       *ServicePort
		nodePort bool
		ip       net.IP
		port     int32
	}
	wants := map[string]want{}
	vips := map[string]bool{}
	for _, sp := range sps {
		vips[sp.ClusterIP.String()] = true
		if !sp.HasEndpoints || (sp.Protocol != corev1.ProtocolTCP && sp.Protocol != corev1.ProtocolUDP) {
			continue // SCTP is not proxied in userspace mode
		}
		wants[frontKey(sp.Protocol, sp.ClusterIP, sp.Port)] = want{sp: sp, ip: sp.ClusterIP, port: sp.Port}
		if sp.NodePort != 0 {
			wants[frontKey(sp.Protocol, net.IPv4zero, sp.NodePort)] = want{sp: sp, nodePort: true, ip: net.IPv4zero, port: sp.NodePort}
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.stopped {
		return errors.New("proxy: stopped")
	}
	var errs, busyErrs []error
	for k := range u.busy {
		if _, ok := wants[k]; !ok {
			delete(u.busy, k)
		}
	}
	for k, f := range u.fronts {
		if _, ok := wants[k]; !ok {
			f.close()
			delete(u.fronts, k)
		}
	}
	if !u.noLink {
		if err := syncAddresses(u.opts.Interface, u.vips, vips); err != nil {
			errs = append(errs, err)
		} else {
			u.vips = vips
		}
	}
	u.refreshLocal()
	for k, w := range wants {
		if f, ok := u.fronts[k]; ok {
			f.sp.Store(w.sp)
			f.prune()
			continue
		}
		f, err := u.listen(w.sp.Protocol, w.ip, w.port, w.nodePort)
		if err != nil {
			err = fmt.Errorf("proxy: service %s: %w", w.sp.Key(), err)
			busyErrs = append(busyErrs, err)
			if !u.busy[k] {
				u.log.Warn("cannot listen for a service port; retrying", "err", err)
				u.busy[k] = true
			}
			continue
		}
		if u.busy[k] {
			u.log.Info("listening for the service port now", "service", w.sp.Key(), "listener", k)
			delete(u.busy, k)
		}
		f.sp.Store(w.sp)
		u.fronts[k] = f
	}
	err := errors.Join(errs...)
	u.lastSync, u.lastErr = time.Now(), errors.Join(err, errors.Join(busyErrs...))
	u.syncs++
	return err
}

// refreshLocal snapshots this host's addresses (externalTrafficPolicy
// Local tells host clients from others by them).
func (u *Userspace) refreshLocal() {
	m := map[string]bool{}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				m[n.IP.String()] = true
			}
		}
	}
	u.local.Store(&m)
}

func (u *Userspace) isLocal(ip net.IP) bool {
	return ip.IsLoopback() || (*u.local.Load())[ip.String()]
}

// shutdown closes every listener and proxied connection and waits for
// their goroutines.
func (u *Userspace) shutdown() {
	u.cancel()
	u.mu.Lock()
	u.stopped = true
	for k, f := range u.fronts {
		f.close()
		delete(u.fronts, k)
	}
	for c := range u.conns {
		_ = c.Close()
	}
	u.mu.Unlock()
	u.wg.Wait()
}

func (u *Userspace) track(cs ...net.Conn) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.stopped {
		return false
	}
	for _, c := range cs {
		u.conns[c] = struct{}{}
	}
	return true
}

func (u *Userspace) untrack(cs ...net.Conn) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, c := range cs {
		delete(u.conns, c)
	}
}

// frontend is one listening socket of a service port.
type frontend struct {
	u        *Userspace
	nodePort bool
	sp       atomic.Pointer[ServicePort]
	bal      balancer
	ln       *net.TCPListener
	pc       *net.UDPConn
	wildcard bool // UDP on 0.0.0.0: replies need the right source address

	mu       sync.Mutex
	sessions map[string]*udpSession
}

// listen opens the socket; its goroutine runs until close.
func (u *Userspace) listen(proto corev1.Protocol, ip net.IP, port int32, nodePort bool) (*frontend, error) {
	f := &frontend{u: u, nodePort: nodePort, bal: balancer{aff: map[string]affinity{}}}
	addr := net.JoinHostPort(ip.String(), strconv.Itoa(int(port)))
	var lc net.ListenConfig
	switch proto {
	case corev1.ProtocolTCP:
		ln, err := lc.Listen(u.ctx, "tcp4", addr)
		if err != nil {
			return nil, err
		}
		f.ln = ln.(*net.TCPListener)
		u.wg.Add(1)
		go f.serveTCP()
	case corev1.ProtocolUDP:
		f.wildcard = ip.IsUnspecified()
		if f.wildcard {
			lc.Control = func(_, _ string, c syscall.RawConn) error {
				var serr error
				if err := c.Control(func(fd uintptr) {
					serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
				}); err != nil {
					return err
				}
				return serr
			}
		}
		pc, err := lc.ListenPacket(u.ctx, "udp4", addr)
		if err != nil {
			return nil, err
		}
		f.pc = pc.(*net.UDPConn)
		f.sessions = map[string]*udpSession{}
		u.wg.Add(1)
		go f.serveUDP()
	}
	u.log.Debug("listening", "proto", proto, "addr", addr)
	return f, nil
}

// close stops the listener (accepted TCP connections keep running) and
// ends the UDP sessions, which belong to the socket.
func (f *frontend) close() {
	if f.ln != nil {
		_ = f.ln.Close()
	}
	if f.pc != nil {
		_ = f.pc.Close()
		f.mu.Lock()
		for _, s := range f.sessions {
			_ = s.be.Close()
		}
		f.mu.Unlock()
	}
}

// endpoints are the endpoints a client may reach through this frontend:
// the cluster endpoints for a ClusterIP, for a NodePort all of them, or
// the local ones for outside clients with externalTrafficPolicy Local.
func (f *frontend) endpoints(sp *ServicePort, client net.IP) []Endpoint {
	switch {
	case !f.nodePort:
		return sp.Cluster
	case sp.ExternalLocal && !f.u.isLocal(client):
		return sp.Local
	}
	return sp.All
}

// prune ends UDP sessions to endpoints the service port no longer has
// (nftables mode flushes their conntrack entries; new datagrams pick a
// live endpoint).
func (f *frontend) prune() {
	if f.pc == nil {
		return
	}
	sp := f.sp.Load()
	live := map[string]bool{}
	for _, l := range [][]Endpoint{sp.Cluster, sp.All, sp.Local} {
		for _, ep := range l {
			live[ep.String()] = true
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.sessions {
		if !live[s.ep.String()] {
			_ = s.be.Close()
		}
	}
}

func (f *frontend) serveTCP() {
	defer f.u.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			f.u.log.Warn("accept", "addr", f.ln.Addr(), "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		f.u.wg.Add(1)
		go f.handleTCP(c.(*net.TCPConn))
	}
}

// refuse resets a connection (SO_LINGER 0), the closest a listening socket
// gets to the kernel's refusal.
func refuse(c *net.TCPConn) {
	_ = c.SetLinger(0)
	_ = c.Close()
}

func (f *frontend) handleTCP(c *net.TCPConn) {
	defer f.u.wg.Done()
	client := c.RemoteAddr().(*net.TCPAddr).IP
	sp := f.sp.Load()
	eps := f.endpoints(sp, client)
	if len(eps) == 0 {
		refuse(c)
		return
	}
	d := net.Dialer{Timeout: f.u.dialTimeout}
	var be *net.TCPConn
	for i, ep := range f.bal.order(eps, client.String(), sp.Affinity) {
		if i == maxDialAttempts {
			break
		}
		bc, err := d.DialContext(f.u.ctx, "tcp4", ep.String())
		if err == nil {
			f.bal.chose(client.String(), ep, sp.Affinity)
			be = bc.(*net.TCPConn)
			break
		}
		f.u.log.Debug("endpoint failed, trying the next", "service", sp.Key(), "endpoint", ep.String(), "err", err)
	}
	if be == nil {
		refuse(c)
		return
	}
	if !f.u.track(c, be) {
		_ = be.Close()
		refuse(c)
		return
	}
	defer f.u.untrack(c, be)
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(be, c) // splice on Linux
		_ = be.CloseWrite()
		close(done)
	}()
	_, _ = io.Copy(c, be)
	_ = c.CloseWrite()
	<-done
	_ = c.Close()
	_ = be.Close()
}

// udpSession is one client address's flow to one endpoint.
type udpSession struct {
	client *net.UDPAddr
	src    net.IP // the address the client sent to (wildcard sockets)
	ep     Endpoint
	be     *net.UDPConn
	last   atomic.Int64 // unix nanoseconds of the last datagram
}

func (f *frontend) serveUDP() {
	defer f.u.wg.Done()
	buf := make([]byte, 65535)
	oob := make([]byte, 128)
	for {
		n, oobn, _, from, err := f.pc.ReadMsgUDP(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ECONNREFUSED from an earlier reply
		}
		s := f.session(from, oob[:oobn])
		if s == nil {
			continue // nowhere to go: dropped
		}
		s.last.Store(time.Now().UnixNano())
		_, _ = s.be.Write(buf[:n])
	}
}

// session returns the client's session, creating one to the next endpoint.
func (f *frontend) session(from *net.UDPAddr, oob []byte) *udpSession {
	key := from.String()
	f.mu.Lock()
	s := f.sessions[key]
	f.mu.Unlock()
	if s != nil {
		return s
	}
	sp := f.sp.Load()
	eps := f.endpoints(sp, from.IP)
	if len(eps) == 0 {
		return nil
	}
	for i, ep := range f.bal.order(eps, from.IP.String(), sp.Affinity) {
		if i == maxDialAttempts {
			break
		}
		be, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: ep.IP, Port: int(ep.Port)})
		if err != nil {
			continue
		}
		f.bal.chose(from.IP.String(), ep, sp.Affinity)
		s = &udpSession{client: from, ep: ep, be: be}
		s.last.Store(time.Now().UnixNano())
		if f.wildcard {
			s.src = pktinfoDst(oob)
		}
		break
	}
	if s == nil {
		return nil
	}
	f.mu.Lock()
	if f.u.ctx.Err() != nil {
		f.mu.Unlock()
		_ = s.be.Close()
		return nil
	}
	f.sessions[key] = s
	f.mu.Unlock()
	f.u.wg.Add(1)
	go f.replies(s, sp.Affinity)
	return s
}

// replies copies the endpoint's datagrams back to the client until the
// session is idle for the timeout, the endpoint refuses (ICMP port
// unreachable: the next datagram picks another endpoint) or the session is
// closed.
func (f *frontend) replies(s *udpSession, affinity time.Duration) {
	defer f.u.wg.Done()
	defer func() {
		f.mu.Lock()
		if f.sessions[s.client.String()] == s {
			delete(f.sessions, s.client.String())
		}
		f.mu.Unlock()
		_ = s.be.Close()
	}()
	var oob []byte
	if s.src != nil {
		oob = unix.PktInfo4(&unix.Inet4Pktinfo{Spec_dst: [4]byte(s.src.To4())})
	}
	buf := make([]byte, 65535)
	for {
		_ = s.be.SetReadDeadline(time.Unix(0, s.last.Load()).Add(f.u.udpIdle))
		n, err := s.be.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && time.Since(time.Unix(0, s.last.Load())) < f.u.udpIdle {
				continue
			}
			if errors.Is(err, syscall.ECONNREFUSED) {
				f.bal.forget(s.client.IP.String())
			}
			return
		}
		s.last.Store(time.Now().UnixNano())
		if _, _, err := f.pc.WriteMsgUDP(buf[:n], oob, s.client); err != nil && errors.Is(err, net.ErrClosed) {
			return
		}
	}
}

// pktinfoDst is the destination address of a datagram from its IP_PKTINFO
// control message.
func pktinfoDst(oob []byte) net.IP {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	for _, m := range msgs {
		if m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_PKTINFO && len(m.Data) >= unix.SizeofInet4Pktinfo {
			var a [4]byte
			copy(a[:], m.Data[8:12]) // Inet4Pktinfo.Addr, after Ifindex and Spec_dst
			return net.IP(a[:])
		}
	}
	return nil
}

// balancer picks endpoints round-robin, sticky per client IP when the
// service has sessionAffinity ClientIP (the stickiness ends after the
// timeout without a new connection, or when the endpoint is gone).
type balancer struct {
	mu    sync.Mutex
	next  uint64
	picks uint64
	aff   map[string]affinity
}

type affinity struct {
	ep   string
	last time.Time
}

// order returns eps in the order to try: the client's sticky endpoint or
// the next in turn first, then the others (failover).
func (b *balancer) order(eps []Endpoint, client string, ttl time.Duration) []Endpoint {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.picks++
	if b.picks%1024 == 0 {
		for k, a := range b.aff {
			if now.Sub(a.last) >= ttl {
				delete(b.aff, k)
			}
		}
	}
	start := -1
	if ttl > 0 {
		if a, ok := b.aff[client]; ok && now.Sub(a.last) < ttl {
			for i, ep := range eps {
				if ep.String() == a.ep {
					start = i
					b.aff[client] = affinity{ep: a.ep, last: now}
					break
				}
			}
		}
	}
	if start < 0 {
		start = int(b.next % uint64(len(eps)))
		b.next++
	}
	out := make([]Endpoint, 0, len(eps))
	out = append(out, eps[start:]...)
	return append(out, eps[:start]...)
}

// chose records the endpoint a client got (with affinity).
func (b *balancer) chose(client string, ep Endpoint, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	b.mu.Lock()
	b.aff[client] = affinity{ep: ep.String(), last: time.Now()}
	b.mu.Unlock()
}

// forget drops a client's stickiness (its endpoint failed).
func (b *balancer) forget(client string) {
	b.mu.Lock()
	delete(b.aff, client)
	b.mu.Unlock()
}
