// Package dns is the cluster DNS add-on: it serves the Kubernetes
// DNS-Based Service Discovery specification (schema 1.1.0) for the cluster
// zone from Service, EndpointSlice and Namespace informers, and forwards
// every other name to upstream resolvers through a bounded cache. It runs
// inside `skiff server` and alone as `skiff dns`.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"
	"k8s.io/client-go/kubernetes"
)

// Options configure the add-on. The zero value of each field is its default.
type Options struct {
	// Client reads Services, EndpointSlices and Namespaces. Required.
	Client kubernetes.Interface
	// Zone is the cluster domain (default "cluster.local").
	Zone string
	// Listen are host:port addresses served (UDP and TCP) from the start;
	// port 0 picks a free port shared by UDP and TCP (see Addrs).
	Listen []string
	// ClusterDNS is the cluster DNS service IP (e.g. 10.43.0.10). It is
	// served on ClusterDNSPort once the address is local to this host (the
	// node network assigns it); until then binding is retried.
	ClusterDNS     string
	ClusterDNSPort int // default 53
	// Upstreams are the resolvers (host or host:port) for names outside
	// the cluster zone; empty = the nameservers of ResolvConf.
	Upstreams []string
	// ResolvConf is read when Upstreams is empty (default /etc/resolv.conf).
	ResolvConf string
	// NoForward answers REFUSED for names outside the cluster zone.
	NoForward bool
	// StubDomains sends names under a zone to its own upstreams.
	StubDomains map[string][]string
	// TTL of cluster records and of their negative answers (default 5s).
	TTL time.Duration
	// CacheSize bounds the forwarding cache in entries (default 10000;
	// negative = no cache).
	CacheSize int
	// MaxTTL and MaxNegativeTTL cap cached positive and negative answers
	// (defaults 1h and 30m).
	MaxTTL, MaxNegativeTTL time.Duration
	// UpstreamTimeout bounds one upstream exchange (default 2s).
	UpstreamTimeout time.Duration
	// NoPodRecords turns off the deprecated a-b-c-d.<ns>.pod.<zone> records.
	NoPodRecords bool
	// Registerer receives the metrics (nil = a private registry, served by
	// HealthHandler's /metrics).
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Server is a running DNS add-on.
type Server struct {
	opts    Options
	log     *slog.Logger
	h       *Handler
	w       *watcher
	promReg *prometheus.Registry
	ready   atomic.Bool

	mu      sync.Mutex
	addrs   []string
	servers []*mdns.Server
	started chan struct{}
}

// New validates opts and builds the add-on; Run starts it.
func New(opts Options) (*Server, error) {
	if opts.Client == nil {
		return nil, errors.New("dns: a Kubernetes client is required")
	}
	if opts.Zone == "" {
		opts.Zone = "cluster.local"
	}
	if opts.ClusterDNSPort == 0 {
		opts.ClusterDNSPort = 53
	}
	if opts.ResolvConf == "" {
		opts.ResolvConf = "/etc/resolv.conf"
	}
	if opts.TTL <= 0 {
		opts.TTL = 5 * time.Second
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = 10000
	}
	if opts.MaxTTL <= 0 {
		opts.MaxTTL = time.Hour
	}
	if opts.MaxNegativeTTL <= 0 {
		opts.MaxNegativeTTL = 30 * time.Minute
	}
	if opts.UpstreamTimeout <= 0 {
		opts.UpstreamTimeout = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{opts: opts, log: opts.Logger.With("component", "dns"), started: make(chan struct{})}
	reg := opts.Registerer
	if reg == nil {
		s.promReg = prometheus.NewRegistry()
		reg = s.promReg
	}
	zone := mdns.Fqdn(strings.ToLower(opts.Zone))
	if _, ok := mdns.IsDomainName(zone); !ok {
		return nil, fmt.Errorf("dns: invalid zone %q", opts.Zone)
	}
	t := newTable(zone)
	m := newMetrics(reg)
	s.h = &Handler{zone: zone, t: t, ttl: uint32(opts.TTL / time.Second), podRecords: !opts.NoPodRecords, m: m}
	if opts.ClusterDNS != "" {
		a, err := netip.ParseAddr(opts.ClusterDNS)
		if err != nil {
			return nil, fmt.Errorf("dns: cluster DNS address: %w", err)
		}
		s.h.nsAddrs = []netip.Addr{a}
	}
	if !opts.NoForward {
		ups, err := upstreams(opts.Upstreams, opts.ResolvConf)
		if err != nil {
			return nil, err
		}
		var c *cache
		if opts.CacheSize > 0 {
			c = newCache(opts.CacheSize, opts.MaxTTL, opts.MaxNegativeTTL)
		}
		s.h.fwd = newForwarder(ups, opts.StubDomains, c, m, opts.UpstreamTimeout)
	}
	w, err := newWatcher(opts.Client, t)
	if err != nil {
		return nil, err
	}
	s.w = w
	return s, nil
}

// upstreams returns the configured resolvers as host:port, or the
// nameservers of resolvConf.
func upstreams(configured []string, resolvConf string) ([]string, error) {
	if len(configured) == 0 {
		cc, err := mdns.ClientConfigFromFile(resolvConf)
		if err != nil {
			return nil, fmt.Errorf("dns: upstreams from %s: %w", resolvConf, err)
		}
		for _, s := range cc.Servers {
			configured = append(configured, net.JoinHostPort(s, cc.Port))
		}
	}
	out := make([]string, 0, len(configured))
	for _, u := range configured {
		if _, _, err := net.SplitHostPort(u); err != nil {
			u = net.JoinHostPort(strings.Trim(u, "[]"), "53")
		}
		out = append(out, u)
	}
	return out, nil
}

// Handler returns the DNS handler (for tests and embedding).
func (s *Server) Handler() *Handler { return s.h }

// Ready reports whether the informers have synced and the first record
// table is published.
func (s *Server) Ready() bool { return s.ready.Load() }

// Addrs returns the bound Listen addresses (after Run has bound them).
func (s *Server) Addrs() []string {
	<-s.started
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.addrs...)
}

// Run serves until ctx ends. It fails if a Listen address cannot be bound.
func (s *Server) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer func() {
		s.mu.Lock()
		srvs := s.servers
		s.mu.Unlock()
		for _, srv := range srvs {
			_ = srv.Shutdown()
		}
		wg.Wait()
	}()
	startErr := func() error {
		defer close(s.started)
		for _, addr := range s.opts.Listen {
			bound, err := s.listen(addr)
			if err != nil {
				return err
			}
			s.mu.Lock()
			s.addrs = append(s.addrs, bound)
			s.mu.Unlock()
			s.log.Info("dns listening", "addr", bound)
		}
		return nil
	}()
	if startErr != nil {
		return startErr
	}
	errCh := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		errCh <- s.w.run(ctx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-s.w.ready:
			s.ready.Store(true)
			s.log.Info("dns records synced")
		case <-ctx.Done():
		}
	}()
	if s.opts.ClusterDNS != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.bindWhenLocal(ctx, s.opts.ClusterDNS)
		}()
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-errCh:
		if err != nil && ctx.Err() == nil {
			return err
		}
		<-ctx.Done()
		return nil
	}
}

// ServeOn serves DNS on host at the cluster DNS port as well, from the
// moment host is an address of this machine until ctx ends. `skiff
// server` passes the pod bridge's gateway of its node agent: the kube-dns
// Service's endpoint, where pods' queries to the cluster DNS IP are sent.
func (s *Server) ServeOn(ctx context.Context, host string) {
	go s.bindWhenLocal(ctx, host)
}

// bindWhenLocal binds host at the cluster DNS port once it is an address
// of this machine, retrying every 250ms while it is not (EADDRNOTAVAIL):
// the cluster DNS IP appears with the service proxy's dummy link, a
// bridge gateway with the first pod.
func (s *Server) bindWhenLocal(ctx context.Context, host string) {
	addr := net.JoinHostPort(host, strconv.Itoa(s.opts.ClusterDNSPort))
	logged := false
	for {
		bound, err := s.listen(addr)
		if err == nil {
			s.log.Info("dns listening", "addr", bound)
			return
		}
		if !logged {
			level := slog.LevelWarn
			if errors.Is(err, syscall.EADDRNOTAVAIL) {
				level = slog.LevelInfo
			}
			s.log.Log(ctx, level, "dns address not local yet; retrying", "addr", addr, "err", err)
			logged = true
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// listen binds UDP and TCP on addr (the same port when addr's port is 0)
// and starts serving; it returns the bound address.
func (s *Server) listen(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("dns: listen address %q: %w", addr, err)
	}
	var pc net.PacketConn
	var ln net.Listener
	for attempt := 0; ; attempt++ {
		pc, err = reusePort.ListenPacket(context.Background(), "udp", addr)
		if err != nil {
			return "", fmt.Errorf("dns: %w", err)
		}
		udpPort := strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port)
		ln, err = net.Listen("tcp", net.JoinHostPort(host, udpPort))
		if err == nil {
			break
		}
		_ = pc.Close()
		if port != "0" || attempt >= 10 {
			return "", fmt.Errorf("dns: %w", err)
		}
	}
	bound := pc.LocalAddr().String()
	// One UDP socket per CPU on the same address (SO_REUSEPORT: the
	// kernel spreads clients over them), each with its own read loop, so
	// that the fast path is not one goroutine's work.
	pcs := []net.PacketConn{pc}
	for range runtime.GOMAXPROCS(0) - 1 {
		more, err := reusePort.ListenPacket(context.Background(), "udp", bound)
		if err != nil {
			s.log.Debug("dns: one more UDP socket", "err", err)
			break
		}
		pcs = append(pcs, more)
	}
	srvs := []*mdns.Server{{Listener: ln, Handler: s.h, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}}
	// A wildcard socket must reply from each query's destination (packet
	// information); a specific address needs nothing per datagram.
	wildcard := pc.LocalAddr().(*net.UDPAddr).IP.IsUnspecified()
	for i, c := range pcs {
		served, err := udpConn(s.h, c.(*net.UDPConn), wildcard)
		if err != nil {
			for _, c := range pcs[i:] {
				_ = c.Close()
			}
			if i == 0 {
				_ = ln.Close()
				return "", err
			}
			s.log.Debug("dns: one more UDP socket", "err", err)
			break
		}
		srvs = append(srvs, &mdns.Server{PacketConn: served, Handler: s.h, UDPSize: maxUDPSize, DecorateReader: s.h.decorateReader})
	}
	s.mu.Lock()
	s.servers = append(s.servers, srvs...)
	s.mu.Unlock()
	for _, srv := range srvs {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() {
			if err := srv.ActivateAndServe(); err != nil {
				s.log.Debug("dns server stopped", "err", err)
			}
		}()
		<-started // so that Shutdown finds it started
	}
	return bound, nil
}

// reusePort binds UDP sockets with SO_REUSEPORT, so that several sockets
// of this process share one address.
var reusePort = net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	return serr
}}

// HealthHandler serves /healthz (the process is up), /readyz (records are
// synced) and, when the metrics use a private registry, /metrics.
func (s *Server) HealthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.Ready() {
			http.Error(w, "dns records not synced", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	if s.promReg != nil {
		mux.Handle("/metrics", promhttp.HandlerFor(s.promReg, promhttp.HandlerOpts{}))
	}
	return mux
}
