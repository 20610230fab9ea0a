// Package server wires the components of `skiff server`: etcd (embedded or
// external), the API server with its certificates and kubeconfig, and the
// control loops and add-ons that run beside it.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/skiffhq/skiff/addons/dns"
	"github.com/skiffhq/skiff/addons/federation"
	"github.com/skiffhq/skiff/addons/ingress"
	"github.com/skiffhq/skiff/addons/metrics"
	"github.com/skiffhq/skiff/controlplane/admission"
	"github.com/skiffhq/skiff/controlplane/apiserver"
	"github.com/skiffhq/skiff/controlplane/apiserver/crd"
	"github.com/skiffhq/skiff/controlplane/apiserver/kinds"
	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	"github.com/skiffhq/skiff/controlplane/etcdclient"
	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/controlplane/serviceip"
	"github.com/skiffhq/skiff/controlplane/storage"
	"github.com/skiffhq/skiff/internal/memtrim"
	"github.com/skiffhq/skiff/version"
	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Config is everything `skiff server` is told.
type Config struct {
	DataDir         string
	BindAddress     string
	HTTPSPort       int
	WriteKubeconfig string
	DisableAgent    bool
	ClusterCIDR     string
	ServiceCIDR     string
	// ProxyMode is the built-in agent's service proxy mode (nftables,
	// userspace, none; empty = none).
	ProxyMode string
	// PodMaxPids is the built-in agent's per-container process bound
	// (agent.Options.PodPidsLimit: 0 default, negative none).
	PodMaxPids int64
	// DatastoreEndpoints selects an external etcd; empty = embedded.
	DatastoreEndpoints []string
	DatastoreCAFile    string
	DatastoreCertFile  string
	DatastoreKeyFile   string
	// EtcdClientPort and EtcdPeerPort of the embedded etcd (0 = pick free).
	EtcdClientPort int
	EtcdPeerPort   int
	// ClusterInit starts the first server of an HA cluster: the embedded
	// etcd's peer port listens on AdvertiseAddress and the server serves
	// the join endpoints (ha.go). JoinServer (an API URL of a server of the
	// cluster) with Token (<data-dir>/server/token of that server) joins
	// one. AdvertiseAddress defaults to BindAddress, or else the host's
	// first global IPv4 address.
	ClusterInit      bool
	JoinServer       string
	Token            string
	AdvertiseAddress string
	// EtcdLogLevel is the embedded etcd's own log level (default "error").
	EtcdLogLevel string
	// EtcdUnsafeNoFsync runs the embedded etcd without fsync (see
	// storage.EmbeddedConfig.UnsafeNoFsync): only for test servers.
	EtcdUnsafeNoFsync bool
	// WatchCacheSize is the per-resource event history for watch resume.
	WatchCacheSize int
	// WatchBookmarkInterval is how often watchers that allow bookmarks get
	// one (0 = a minute, as upstream).
	WatchBookmarkInterval time.Duration
	// EtcdSnapshotScheduleCron takes etcd snapshots on this cron schedule
	// ("" = none; `skiff server` defaults to every 12 hours) into
	// EtcdSnapshotDir (default <data-dir>/snapshots), keeping the
	// EtcdSnapshotRetention newest (default 5).
	EtcdSnapshotScheduleCron string
	EtcdSnapshotRetention    int
	EtcdSnapshotDir          string
	// LogsMaxAge and LogsMaxBytes bound the embedded log store (0 = its
	// defaults: 7 days, no size limit).
	LogsMaxAge   time.Duration
	LogsMaxBytes int64
	// CertLifetime is the lifetime of the leaf certificates the server
	// issues itself (default a year); each is renewed, without a restart,
	// when less than CertRenewBefore of its lifetime remains (default 0.25).
	CertLifetime    time.Duration
	CertRenewBefore float64
	// Disable lists add-ons and loops not to start.
	Disable []string
	// Enable lists opt-in add-ons to start (federation).
	Enable []string
	Logger *slog.Logger

	// TokenAuthFile is upstream's static token CSV (--token-auth-file).
	TokenAuthFile string
	// MaxWatchesPerUser bounds one user's open watches (0: the API
	// server's default, < 0: no limit; system:masters is exempt).
	MaxWatchesPerUser int
	// StorageReserve is the free space an embedded etcd's data directory
	// keeps: below it every write is refused (507) before it reaches
	// etcd (0: storage.DefaultSpaceReserve; negative: no check).
	StorageReserve int64
	// ServiceAccountIssuer is the iss of service account tokens and the
	// API audience (default https://kubernetes.default.svc.cluster.local).
	ServiceAccountIssuer string

	// SecretsEncryption encrypts Secrets in etcd (--secrets-encryption)
	// with the key in <data-dir>/cred/encryption-config.json.
	SecretsEncryption bool
	// AuditLogPath enables the audit log (--audit-log-path; "-" = stdout).
	AuditLogPath string
	// AuditPolicyFile is an audit.k8s.io/v1 Policy (default: Metadata for all).
	AuditPolicyFile string

	// Controllers is the controller manager's --controllers list (empty = "*").
	Controllers []string
	// NodeMonitorGracePeriod is how long a node may go without renewing its
	// Lease or status before it is marked Unknown (default 40s).
	NodeMonitorGracePeriod time.Duration
	// ControllerManagerMetricsAddress serves the controller manager's
	// /metrics; empty = off.
	ControllerManagerMetricsAddress string

	// ClusterDNS is the cluster DNS service IP the DNS add-on serves once
	// it is local and pods' resolv.conf names (default: the 10th address
	// of ServiceCIDR, 10.43.0.10); DNSPort its port and the loopback
	// one (default 53); DNSListenAddress overrides the loopback host:port
	// (tests use 127.0.0.1:0); DNSUpstreams replace /etc/resolv.conf's.
	ClusterDNS       string
	DNSPort          int
	DNSListenAddress string
	DNSUpstreams     []string

	// AggregatorCheckInterval is how often the aggregation layer checks
	// every APIService's extension server (default 10 s).
	AggregatorCheckInterval time.Duration
	// MetricsResolution is the metrics add-on's scrape interval (default
	// 15s); MetricsScrapeURL, when set, says where a node's summary is read
	// (tests with hollow nodes).
	MetricsResolution time.Duration
	MetricsScrapeURL  func(*corev1.Node) (string, error)
	// MetricsRemoteWrite writes the add-on's usage series to a Prometheus
	// remote write endpoint (off without a URL).
	MetricsRemoteWrite metrics.RemoteWriteOptions

	// IngressHTTPPort and IngressHTTPSPort are the ingress add-on's ports
	// on IngressBindAddress (default 0.0.0.0); 0 turns a listener off and
	// both off (the zero Config, as in tests) do not start the add-on
	// (`skiff server` defaults to 80 and 443). IngressHTTPAddress and
	// IngressHTTPSAddress override with host:port (tests use 127.0.0.1:0).
	// IngressAccessLog receives JSON access logs ("-" = stdout, "" = off).
	// IngressLeanGoroutines and IngressClientBodyTimeout: see
	// ingress.Options.LeanGoroutines and ClientBodyTimeout.
	IngressHTTPPort          int
	IngressHTTPSPort         int
	IngressBindAddress       string
	IngressHTTPAddress       string
	IngressHTTPSAddress      string
	IngressAccessLog         string
	IngressLeanGoroutines    bool
	IngressClientBodyTimeout time.Duration

	// DashboardPort serves the dashboard (backend/) over HTTPS on
	// BindAddress with a serving certificate of the cluster CA; 0 = off
	// (the zero Config, as in tests; `skiff server` defaults to 8443).
	// DashboardAddress overrides with host:port (tests use 127.0.0.1:0).
	DashboardPort    int
	DashboardAddress string

	// EnableAdmissionPlugins and DisableAdmissionPlugins adjust the
	// default admission chain (upstream names; the order is fixed).
	EnableAdmissionPlugins  []string
	DisableAdmissionPlugins []string
}

// Defaults fills unset fields with k3s-like defaults.
func (c *Config) Defaults() {
	if c.DataDir == "" {
		c.DataDir = "/var/lib/skiff"
	}
	if c.BindAddress == "" {
		c.BindAddress = "0.0.0.0"
	}
	if c.WriteKubeconfig == "" {
		c.WriteKubeconfig = filepath.Join(c.DataDir, "admin.kubeconfig")
	}
	if c.ClusterCIDR == "" {
		c.ClusterCIDR = "10.42.0.0/16"
	}
	if c.ServiceCIDR == "" {
		c.ServiceCIDR = "10.43.0.0/16"
	}
	if c.ClusterDNS == "" {
		c.ClusterDNS = clusterDNSIP(c.ServiceCIDR)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Server is a running `skiff server`.
type Server struct {
	cfg       Config
	log       *slog.Logger
	etcd      *storage.Embedded
	etcdCli   *clientv3.Client
	store     *storage.Store
	cache     *storage.Cache
	api       *apiserver.Server
	ca        *pki.CA
	certs     *pki.Rotator
	etcdCerts *pki.Rotator // the embedded etcd's CA and leaves (etcdtls.go)
	// frontProxyCerts issues frontProxy, the aggregator's client
	// certificate to extension API servers (aggregation.go).
	frontProxyCerts *pki.Rotator
	frontProxy      *pki.Leaf
	lease           *identityLease // this server's identity Lease, in HA (peers.go)
	// etcdClientFiles are the embedded etcd's CA and the client
	// certificate the operator commands use (recorded by recordDatastore).
	etcdClientFiles etcdclient.Info
	httpSrv         *http.Server
	listener        net.Listener
	url             string
	kubeconfig      string
	cancel          context.CancelFunc
	// runCtx ends when the server stops (loops started after Start use it).
	runCtx     context.Context
	clusterDNS clusterDNS
	logs       logsAddon
	wg         sync.WaitGroup
	stopOnce   sync.Once
	errCh      chan error
	services   *serviceip.Allocator
	authz      *authorization
	metrics    *metrics.Collector
	dns        *dns.Server
	ingress    *ingress.Server
	// dashboardURL is where the dashboard listens ("" = off).
	dashboardURL string
	ha           *haState               // nil outside an HA cluster (ha.go)
	federation   *federation.Controller // nil unless enabled (federation.go)
}

// Start brings the server up and returns once it is ready to serve.
func Start(ctx context.Context, cfg Config) (_ *Server, err error) {
	cfg.Defaults()
	runCtx, cancel := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "server"), cancel: cancel, runCtx: runCtx, errCh: make(chan error, 4)}
	defer func() {
		if err != nil {
			s.Stop()
			s.undoJoin()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	if err := s.prepareHA(ctx); err != nil {
		return nil, err
	}
	tlsDir := filepath.Join(cfg.DataDir, "tls")
	s.ca, err = pki.LoadOrCreateCA(tlsDir, "server-ca", "skiff-server-ca")
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	if err := s.ensureServerToken(); err != nil {
		return nil, err
	}
	s.certs = s.newRotator(tlsDir)
	if err := s.setupFrontProxy(); err != nil {
		return nil, err
	}
	if err := s.startDatastore(ctx); err != nil {
		return nil, err
	}
	s.store = storage.NewStore(s.etcdCli, nil)
	if s.etcd != nil {
		s.store.SetLeaderCheck(s.etcd.HasLeader)
		if cfg.StorageReserve >= 0 {
			s.store.SetSpaceCheck(storage.NewSpaceGuard(s.etcdDataDir(), uint64(cfg.StorageReserve), s.log).Check)
		}
	}
	if err := s.setupSecretsEncryption(runCtx); err != nil {
		return nil, err
	}
	if err := s.runMigrations(ctx); err != nil {
		return nil, err
	}
	s.cache = storage.NewCache(s.store, storage.CacheOptions{HistorySize: cfg.WatchCacheSize, BookmarkInterval: cfg.WatchBookmarkInterval, Logger: cfg.Logger})
	reg := registry.New()
	kinds.Register(reg)
	crd.InstallDefinitionHooks(reg)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.cache.Run(runCtx)
	}()
	select {
	case <-s.cache.Ready():
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(60 * time.Second):
		return nil, errors.New("watch cache did not load in 60s")
	}

	host := cfg.BindAddress
	if host == "0.0.0.0" || host == "::" || host == "" {
		host = "127.0.0.1"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.BindAddress, strconv.Itoa(cfg.HTTPSPort)))
	if err != nil {
		return nil, fmt.Errorf("listen on %s:%d: %w", cfg.BindAddress, cfg.HTTPSPort, err)
	}
	s.listener = ln
	port := ln.Addr().(*net.TCPAddr).Port
	s.url = "https://" + net.JoinHostPort(host, strconv.Itoa(port))

	authenticator, installAuthn, err := s.newAuthenticator(tlsDir, reg)
	if err != nil {
		return nil, err
	}
	auditMW, err := s.openAudit(runCtx)
	if err != nil {
		return nil, err
	}
	s.authz = newAuthorization(reg)
	chain, err := admission.New(admission.Config{
		Store:    s.store,
		Cache:    s.cache,
		Registry: reg,
		Logger:   cfg.Logger,
		Enable:   cfg.EnableAdmissionPlugins,
		Disable:  cfg.DisableAdmissionPlugins,
		Internal: append([]apiserver.AdmissionPlugin{crd.Admission{}}, s.authz.admission()...),
	})
	if err != nil {
		return nil, fmt.Errorf("admission: %w", err)
	}
	s.api = apiserver.New(apiserver.Config{
		Audit:           auditMW,
		Store:           s.store,
		Cache:           s.cache,
		Registry:        reg,
		Logger:          cfg.Logger,
		Version:         version.Info(),
		ExternalAddress: net.JoinHostPort(host, strconv.Itoa(port)),
		Authenticator:   authenticator,
		Authorizer:      s.authz.chain,
		Admission:       chain.Plugins(),
		// One user's watches are bounded; system:masters is exempt.
		MaxWatchesPerUser: cfg.MaxWatchesPerUser,
	})
	installAuthn(s.api)
	if err := s.startLogStore(runCtx); err != nil {
		return nil, err
	}
	s.api.SyncCache()
	reg.OnChange(s.api.SyncCache)
	if err := s.followAuthorization(runCtx); err != nil {
		return nil, err
	}
	if err := s.setupServices(); err != nil {
		return nil, err
	}

	serving, err := s.servingLeaf()
	if err != nil {
		return nil, err
	}
	s.httpSrv = &http.Server{
		Handler:           s.haHandler(s.api.Handler()),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: 2000},
		TLSConfig: &tls.Config{
			GetCertificate: serving.GetCertificate,
			ClientAuth:     tls.RequestClientCert,
			ClientCAs:      s.ca.Pool(),
			MinVersion:     tls.VersionTLS12,
			NextProtos:     []string{"h2", "http/1.1"},
		},
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.httpSrv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.errCh <- fmt.Errorf("https server: %w", err)
		}
	}()

	if err := s.writeAdminKubeconfig(); err != nil {
		return nil, err
	}
	if err := s.bootstrap(ctx); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	if err := s.startIdentityLease(runCtx); err != nil {
		return nil, err
	}
	if err := chain.Start(runCtx, s.api.Ensure); err != nil {
		return nil, fmt.Errorf("admission: %w", err)
	}
	s.startLoops(runCtx)
	s.startCertRotation(runCtx)
	if err := s.startSnapshots(runCtx); err != nil {
		return nil, err
	}
	if err := s.startCRDController(runCtx); err != nil {
		return nil, err
	}
	if err := s.startAggregator(runCtx); err != nil {
		return nil, err
	}
	s.api.SetReady(true)
	s.joinDone()
	s.log.Info("skiff server ready", "url", s.url, "kubeconfig", s.kubeconfig)
	return s, nil
}

func (s *Server) startDatastore(ctx context.Context) error {
	cfg := s.cfg
	endpoints := cfg.DatastoreEndpoints
	var tlsCfg *tls.Config
	if len(endpoints) == 0 {
		et, err := s.newEtcdTLS()
		if err != nil {
			return err
		}
		var e *storage.Embedded
		name, err := s.etcdMemberName()
		if err != nil {
			return err
		}
		peerHost := "127.0.0.1"
		if s.ha != nil {
			peerHost = s.advertiseAddress()
		}
		var peerURL string
		// A port picked free may be taken (by another process, or as the
		// local end of an outbound connection) before etcd binds it: pick
		// again, a few times.
		for attempt := 1; ; attempt++ {
			cp, pp := cfg.EtcdClientPort, cfg.EtcdPeerPort
			if cp == 0 {
				if cp, err = freePort(); err != nil {
					return err
				}
			}
			if pp == 0 {
				if pp, err = freePort(); err != nil {
					return err
				}
			}
			peerURL = "https://" + net.JoinHostPort(peerHost, strconv.Itoa(pp))
			ecfg := storage.EmbeddedConfig{
				Dir:       s.etcdDataDir(),
				Name:      name,
				ClientURL: fmt.Sprintf("https://127.0.0.1:%d", cp),
				PeerURL:   peerURL,
				ClientTLS: et.files(et.server),
				PeerTLS:   et.files(et.peer),
				Logger:    cfg.Logger,
				LogLevel:  cfg.EtcdLogLevel,
				// Only test servers set it.
				UnsafeNoFsync: cfg.EtcdUnsafeNoFsync,
			}
			joining := s.ha != nil && s.ha.join != nil
			if joining {
				e, err = s.startJoinedEtcd(ctx, ecfg)
			} else {
				e, err = storage.StartEmbedded(ctx, ecfg)
			}
			picked := cfg.EtcdClientPort == 0 || cfg.EtcdPeerPort == 0
			if err == nil || joining || !picked || attempt == 3 || !errors.Is(err, syscall.EADDRINUSE) {
				break
			}
			s.log.Warn("embedded etcd: a picked port was taken, picking again", "err", err)
		}
		if err != nil {
			return err
		}
		s.etcd = e
		if s.ha != nil && s.ha.join == nil {
			if err := s.advertisePeerURL(ctx, peerURL); err != nil {
				return err
			}
		}
		endpoints = e.Endpoints()
		client := et.files(et.client)
		s.etcdClientFiles = etcdclient.Info{CAFile: client.TrustedCAFile, CertFile: client.CertFile, KeyFile: client.KeyFile}
	} else if cfg.DatastoreCAFile != "" || cfg.DatastoreCertFile != "" {
		t, err := datastoreTLS(cfg)
		if err != nil {
			return err
		}
		tlsCfg = t
	}
	if s.etcd != nil {
		// This process runs the member: talk to it in-process. The
		// client port (mutual TLS) is for the other processes and the
		// operator commands recorded below.
		s.etcdCli = s.etcd.Client()
	} else {
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:          endpoints,
			DialTimeout:        10 * time.Second,
			TLS:                tlsCfg,
			MaxCallRecvMsgSize: 1 << 30,
			MaxCallSendMsgSize: 4 << 20,
		})
		if err != nil {
			return fmt.Errorf("etcd client: %w", err)
		}
		s.etcdCli = cli
	}
	cli := s.etcdCli
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := cli.Get(cctx, "/registry/health"); err != nil {
		return fmt.Errorf("etcd at %v is not reachable: %w", endpoints, err)
	}
	return s.recordDatastore(endpoints)
}

// ComponentConfig returns a client config for an in-process component
// with its own identity (least privilege: one user per component).
func (s *Server) ComponentConfig(user string, groups []string) (*rest.Config, error) {
	return s.componentConfig(user, groups)
}

// URL returns the API server's URL.
func (s *Server) URL() string { return s.url }

// Kubeconfig returns the admin kubeconfig path.
func (s *Server) Kubeconfig() string { return s.kubeconfig }

// AdminConfig returns a client config for the admin user.
func (s *Server) AdminConfig() (*rest.Config, error) {
	return clientcmd.BuildConfigFromFlags("", s.kubeconfig)
}

// API returns the API server (for in-process wiring and tests).
func (s *Server) API() *apiserver.Server { return s.api }

// Store returns the storage (for tests and benchmarks).
func (s *Server) Store() *storage.Store { return s.store }

// Errors reports fatal errors of background parts.
func (s *Server) Errors() <-chan error { return s.errCh }

// Stop shuts everything down in reverse order. Safe to call twice.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		s.stopIdentityLease()
		if s.api != nil {
			s.api.SetReady(false)
		}
		if s.httpSrv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = s.httpSrv.Shutdown(ctx)
			cancel()
			_ = s.httpSrv.Close()
		} else if s.listener != nil {
			_ = s.listener.Close()
		}
		s.cancel()
		s.wg.Wait()
		// The embedded member owns its in-process client and closes it
		// before itself; a client of an external datastore is ours.
		if s.etcdCli != nil && s.etcd == nil {
			_ = s.etcdCli.Close()
		}
		s.etcd.Close()
	})
}

// Run starts the server and blocks until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	s, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.Stop()
	go memtrim.ReleaseAfter(ctx, 10*time.Second, s.log, false)
	select {
	case <-ctx.Done():
		s.log.Info("shutting down")
		return nil
	case err := <-s.errCh:
		return err
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func servingHosts() []string {
	hosts := []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}
	if h, err := os.Hostname(); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	return hosts
}

func servingIPs(cfg Config) []net.IP {
	ips := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}
	if ip := net.ParseIP(cfg.BindAddress); ip != nil && !ip.IsUnspecified() {
		ips = append(ips, ip)
	}
	if _, cidr, err := net.ParseCIDR(cfg.ServiceCIDR); err == nil {
		first := make(net.IP, len(cidr.IP))
		copy(first, cidr.IP)
		first[len(first)-1]++
		ips = append(ips, first)
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.IsGlobalUnicast() {
				ips = append(ips, n.IP)
			}
		}
	}
	return ips
}
