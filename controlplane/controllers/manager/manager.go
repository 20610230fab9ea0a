// Package manager is Skiff's controller manager: it runs the enabled
// controllers (upstream kube-controller-manager names) on one shared informer
// factory, optionally behind leader election on a Lease, and serves the
// workqueue metrics of its loops on its own /metrics. See README.md.
package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/leaderelect"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
)

// DefaultMetricsBindAddress is where a standalone controller manager serves
// /metrics (upstream's port).
const DefaultMetricsBindAddress = "127.0.0.1:10257"

// Config is everything the controller manager is told.
type Config struct {
	// RestConfig is the manager's client identity (required).
	RestConfig *rest.Config
	// Controllers is the --controllers list ("*", "foo", "-foo"); empty = "*".
	Controllers []string
	// Disable turns off more controllers by name (the server's --disable).
	Disable []string
	// LeaderElect runs the controllers only while holding the Lease.
	LeaderElect bool
	// Recampaign campaigns again after the Lease is lost, for a manager
	// inside a process that must not exit (skiff server); otherwise Run
	// returns an error then, as upstream's component exits.
	Recampaign bool
	// LeaseNamespace/LeaseName name the Lease (default kube-system/kube-controller-manager).
	LeaseNamespace, LeaseName string
	// Identity in the Lease (default hostname_uuid).
	Identity string
	// LeaseDuration, RenewDeadline, RetryPeriod as upstream (15s, 10s, 2s).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// MetricsBindAddress serves /metrics and /healthz; empty = off.
	MetricsBindAddress string
	// RootCA is the cluster CA bundle published as kube-root-ca.crt.
	RootCA []byte
	// TerminatedPodGCThreshold is how many terminated pods may exist before
	// PodGC deletes the oldest (default 12500; <0 disables).
	TerminatedPodGCThreshold int
	// PodGCQuarantine is how long a pod's node must be missing before PodGC
	// deletes it (default 40s).
	PodGCQuarantine time.Duration
	// PodGCPeriod is the time between PodGC passes (default 20s).
	PodGCPeriod time.Duration
	// ClusterCIDR is the pod range node IPAM splits into node ranges
	// (--cluster-cidr; comma separated for dual stack). Empty turns node
	// IPAM off, as upstream's --allocate-node-cidrs=false.
	ClusterCIDR string
	// NodeLifecycle tunes node failure detection and eviction; zero
	// fields get upstream's defaults.
	NodeLifecycle NodeLifecycleConfig
	// StorageDir is where the built-in local-path provisioner keeps volume
	// directories (<data-dir>/storage); empty leaves local-path claims to
	// an external provisioner.
	StorageDir string
	// ResyncPeriod of the shared informers (default 12h as upstream's minimum).
	ResyncPeriod time.Duration
	Logger       *slog.Logger
}

func (c *Config) defaults() {
	if c.LeaseNamespace == "" {
		c.LeaseNamespace = "kube-system"
	}
	if c.LeaseName == "" {
		c.LeaseName = "kube-controller-manager"
	}
	if c.Identity == "" {
		host, _ := os.Hostname()
		c.Identity = host + "_" + uuid.NewString()
	}
	if c.LeaseDuration <= 0 {
		c.LeaseDuration = 15 * time.Second
	}
	if c.RenewDeadline <= 0 {
		c.RenewDeadline = 10 * time.Second
	}
	if c.RetryPeriod <= 0 {
		c.RetryPeriod = 2 * time.Second
	}
	if c.TerminatedPodGCThreshold == 0 {
		c.TerminatedPodGCThreshold = 12500
	}
	if c.PodGCQuarantine <= 0 {
		c.PodGCQuarantine = 40 * time.Second
	}
	if c.ResyncPeriod <= 0 {
		c.ResyncPeriod = 12 * time.Hour
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Spec describes one controller the manager can run.
type Spec struct {
	// Name is upstream's canonical name (e.g. "replicaset-controller").
	Name string
	// Aliases are the other accepted names (e.g. "replicaset").
	Aliases []string
	// Workers is the number of concurrent reconciles.
	Workers int
	// DisabledByDefault controllers run only when named explicitly.
	DisabledByDefault bool
	// New builds the controller; it registers its informers on ctx.Informers.
	New func(ctx *Context) (controllers.Controller, error)
}

// Context is what controller constructors get from the manager.
type Context struct {
	Client     kubernetes.Interface
	RestConfig *rest.Config
	Informers  informers.SharedInformerFactory
	Config     *Config
	Logger     *slog.Logger
	events     record.EventBroadcaster
}

// Recorder returns an event recorder reporting as component.
func (c *Context) Recorder(component string) record.EventRecorder {
	return c.events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: component})
}

// Manager runs controllers.
type Manager struct {
	cfg      Config
	specs    []Spec
	enabled  []Spec
	log      *slog.Logger
	client   kubernetes.Interface
	metricLn net.Listener

	mu      sync.Mutex
	leading bool
}

// New validates cfg and, when metrics are on, binds their listener.
func New(cfg Config) (*Manager, error) {
	return NewWithSpecs(cfg, Specs())
}

// NewWithSpecs is New with an explicit controller table.
func NewWithSpecs(cfg Config, specs []Spec) (*Manager, error) {
	cfg.defaults()
	if cfg.RestConfig == nil {
		return nil, errors.New("controller manager: no client config")
	}
	sel, err := ParseSelection(cfg.Controllers, specs)
	if err != nil {
		return nil, fmt.Errorf("--controllers: %w", err)
	}
	sel.Disable(cfg.Disable, specs)
	m := &Manager{cfg: cfg, specs: specs, log: cfg.Logger.With("component", "controller-manager")}
	for _, s := range specs {
		if sel.Enabled(s) {
			m.enabled = append(m.enabled, s)
		}
	}
	rc := rest.CopyConfig(cfg.RestConfig)
	if m.client, err = kubernetes.NewForConfig(rc); err != nil {
		return nil, fmt.Errorf("controller manager client: %w", err)
	}
	if cfg.MetricsBindAddress != "" {
		if m.metricLn, err = net.Listen("tcp", cfg.MetricsBindAddress); err != nil {
			return nil, fmt.Errorf("metrics listener: %w", err)
		}
	}
	return m, nil
}

// Enabled lists the canonical names of the controllers that will run.
func (m *Manager) Enabled() []string {
	out := make([]string, 0, len(m.enabled))
	for _, s := range m.enabled {
		out = append(out, s.Name)
	}
	return out
}

// MetricsAddr is the bound metrics address, or "" when metrics are off.
func (m *Manager) MetricsAddr() string {
	if m.metricLn == nil {
		return ""
	}
	return m.metricLn.Addr().String()
}

// Leading reports whether this manager currently runs its controllers.
func (m *Manager) Leading() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.leading
}

func (m *Manager) setLeading(v bool) {
	m.mu.Lock()
	m.leading = v
	m.mu.Unlock()
}

// Run blocks until ctx ends (or, under leader election without
// Recampaign, until the lease is lost, which returns an error as upstream
// exits).
func (m *Manager) Run(ctx context.Context) error {
	if m.metricLn != nil {
		srv := m.metricsServer()
		go func() { _ = srv.Serve(m.metricLn) }()
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
	}
	if len(m.enabled) == 0 {
		<-ctx.Done()
		return nil
	}
	if !m.cfg.LeaderElect {
		return m.runControllers(ctx)
	}
	var runErr error
	err := leaderelect.Run(ctx, leaderelect.Config{
		Client: m.client.CoordinationV1(), Namespace: m.cfg.LeaseNamespace, Name: m.cfg.LeaseName,
		Identity: m.cfg.Identity, LeaseDuration: m.cfg.LeaseDuration, RenewDeadline: m.cfg.RenewDeadline,
		RetryPeriod: m.cfg.RetryPeriod, Again: m.cfg.Recampaign, Logger: m.log,
	}, func(lctx context.Context) {
		if err := m.runControllers(lctx); err != nil {
			m.log.Error("controllers", "err", err)
			runErr = err
		}
	})
	if runErr != nil && !m.cfg.Recampaign {
		return runErr
	}
	return err
}

func (m *Manager) metricsServer() *http.Server {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
}

// runControllers builds every enabled controller on one informer factory,
// starts it and runs the loops until ctx ends.
func (m *Manager) runControllers(ctx context.Context) error {
	m.setLeading(true)
	defer m.setLeading(false)
	events := record.NewBroadcaster(record.WithContext(ctx))
	events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: m.client.CoreV1().Events("")})
	defer events.Shutdown()
	factory := informers.NewSharedInformerFactory(m.client, m.cfg.ResyncPeriod)
	cctx := &Context{Client: m.client, RestConfig: m.cfg.RestConfig, Informers: factory, Config: &m.cfg, Logger: m.cfg.Logger, events: events}
	type running struct {
		spec Spec
		c    controllers.Controller
	}
	var loops []running
	for _, s := range m.enabled {
		c, err := s.New(cctx)
		if err != nil {
			return fmt.Errorf("start %s: %w", s.Name, err)
		}
		loops = append(loops, running{s, c})
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	var wg sync.WaitGroup
	for _, l := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.log.Debug("starting controller", "controller", l.spec.Name)
			if err := l.c.Run(ctx, max(l.spec.Workers, 1)); err != nil && ctx.Err() == nil {
				m.log.Error("controller stopped", "controller", l.spec.Name, "err", err)
			}
		}()
	}
	m.log.Info("controllers started", "controllers", m.Enabled())
	<-ctx.Done()
	wg.Wait()
	return nil
}
