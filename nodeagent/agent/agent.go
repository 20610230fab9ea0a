// Package agent is Skiff's node agent (the kubelet): it registers its Node,
// renews its Lease, watches the pods bound to it and runs them on
// containerd (package runtime) in per-pod network namespaces (package
// network). Its loop is level-triggered: every pass compares a pod's spec
// with what containerd and the agent's state folder say exists, so a
// restarted agent adopts running containers instead of restarting them,
// restarts what died meanwhile by policy, and tears down what belongs to
// pods deleted meanwhile. It also serves the kubelet API's
// /containerLogs, /exec, /attach and /portForward over HTTPS, which the API
// server proxies pods/log, exec, attach and portforward to.
//
// Design note (pause-less): there is no pause container. A pod's network
// namespace is a bind mount that the agent creates and records in
// <state>/pods/<uid>/sandbox.json; every container joins it by path.
package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/skiffhq/skiff/addons/logging/shipper"
	"github.com/skiffhq/skiff/nodeagent/crilog"
	"github.com/skiffhq/skiff/nodeagent/network"
	"github.com/skiffhq/skiff/nodeagent/proxy"
	"github.com/skiffhq/skiff/nodeagent/runtime"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
)

// Defaults.
const (
	DefaultPort          = 10250
	DefaultPodLogDir     = "/var/log/pods"
	DefaultClusterDNS    = "10.43.0.10"
	DefaultClusterDomain = "cluster.local"
	DefaultClusterCIDR   = "10.42.0.0/16"
	DefaultServiceCIDR   = "10.43.0.0/16"
)

// Options configures an Agent.
type Options struct {
	// NodeName defaults to the lower-cased hostname.
	NodeName string
	// NodeIP is the InternalIP the node advertises (and where the API
	// server reaches the agent's API). Default: the first global unicast
	// address of this machine.
	NodeIP string
	// StateDir holds the agent's own state (<data-dir>/agent).
	StateDir string
	// ImagesDir is the airgap folder whose *.tar are imported at start
	// (default <StateDir>/images).
	ImagesDir string
	// PodLogDir is where CRI log files go (default /var/log/pods).
	PodLogDir string
	// ContainerLogMaxSize rotates a container's log file at this many
	// bytes (default 10Mi as the kubelet's containerLogMaxSize; negative:
	// never); ContainerLogMaxFiles files are kept (default 5).
	ContainerLogMaxSize  int64
	ContainerLogMaxFiles int
	// ContainerdAddress is containerd's socket.
	ContainerdAddress string
	// ClusterCIDR is the cluster's pod range; a node without spec.podCIDR
	// takes its first /24. PodCIDR overrides both.
	ClusterCIDR, PodCIDR string
	// ServiceCIDR is the ClusterIP range; it gets a blackhole route
	// (default 10.43.0.0/16).
	ServiceCIDR string
	// EgressCIDRs are the destinations outside the cluster CIDR that pods
	// may reach, masqueraded to the node's address (default none).
	EgressCIDRs []string
	// PodCIDRWait, when > 0 and PodCIDR is empty, registers the node
	// without a pod range and waits this long for the node IPAM controller
	// to assign one before taking the cluster CIDR's first /24 itself.
	PodCIDRWait time.Duration
	// ClusterDNS and ClusterDomain configure ClusterFirst resolv.conf.
	ClusterDNS, ClusterDomain string
	// Bridge and NetNSDir are passed to the network manager.
	Bridge, NetNSDir string
	// ProxyMode runs the service proxy: "nftables", "userspace"
	// (proxy.Userspace), or "none"/"" for none. Proxy configures it
	// (NodeName is the agent's; ClusterCIDR and Logger default to its).
	ProxyMode string
	Proxy     proxy.Options
	// Logs configures the log shipper (default: on, to the API server's
	// embedded log store).
	Logs LogsOptions
	// Port of the agent's HTTPS API (0 picks a free port, <0 disables).
	Port int
	// ServingCert is the API's certificate; ClientCAs verify callers
	// (the API server presents a client certificate of the cluster CA).
	ServingCert *tls.Certificate
	ClientCAs   *x509.CertPool
	// GetServingCertificate, when set and ServingCert is not, gives the
	// API's certificate at each handshake (a joined agent's, issued and
	// renewed through CSRs: bootstrap.Serving).
	GetServingCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// LeaseInterval is how often the Lease is renewed (default 10s).
	LeaseInterval time.Duration
	// ResyncInterval re-checks every pod (default 10s).
	ResyncInterval time.Duration
	// VolumeStatsAggPeriod is how old a volume's measured disk usage may
	// get before it is walked again (default 1m, as the kubelet's
	// --volume-stats-agg-period).
	VolumeStatsAggPeriod time.Duration
	// ImageGC is the image garbage collection policy (imagegc.go; zero
	// fields take the kubelet's defaults).
	ImageGC ImageGCPolicy
	// PodPidsLimit bounds the processes and threads of each container
	// (the kubelet's --pod-max-pids bounds a pod cgroup; this agent makes
	// no pod cgroup, so the bound is per container). 0 takes
	// DefaultPodPidsLimit, negative means no bound (upstream's default).
	PodPidsLimit int64
	Logger       *slog.Logger
}

// DefaultPodPidsLimit is the process bound of a container unless
// configured: well above what services use, well below a kernel's
// pid_max (32768 on many machines), so a fork bomb in one pod leaves the
// node able to start processes.
const DefaultPodPidsLimit = 4096

func (o *Options) defaults() error {
	if o.PodPidsLimit == 0 {
		o.PodPidsLimit = DefaultPodPidsLimit
	}
	if o.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("agent: hostname: %w", err)
		}
		o.NodeName = strings.ToLower(h)
	}
	if o.StateDir == "" {
		return errors.New("agent: StateDir is required")
	}
	if o.ImagesDir == "" {
		o.ImagesDir = filepath.Join(o.StateDir, "images")
	}
	if o.PodLogDir == "" {
		o.PodLogDir = DefaultPodLogDir
	}
	if o.ContainerLogMaxSize == 0 {
		o.ContainerLogMaxSize = crilog.DefaultMaxSize
	}
	if o.ContainerLogMaxFiles == 0 {
		o.ContainerLogMaxFiles = crilog.DefaultMaxFiles
	}
	if o.ClusterCIDR == "" {
		o.ClusterCIDR = DefaultClusterCIDR
	}
	if o.ServiceCIDR == "" {
		o.ServiceCIDR = DefaultServiceCIDR
	}
	if o.ClusterDNS == "" {
		o.ClusterDNS = DefaultClusterDNS
	}
	if o.ClusterDomain == "" {
		o.ClusterDomain = DefaultClusterDomain
	}
	if o.NodeIP == "" {
		o.NodeIP = defaultNodeIP()
	}
	if o.LeaseInterval <= 0 {
		o.LeaseInterval = 10 * time.Second
	}
	if o.ResyncInterval <= 0 {
		o.ResyncInterval = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return o.ImageGC.defaults()
}

func defaultNodeIP() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() && !strings.HasPrefix(n.IP.String(), "10.42.") {
				return n.IP.String()
			}
		}
	}
	return "127.0.0.1"
}

// Agent is a running node agent.
type Agent struct {
	opts    Options
	log     *slog.Logger
	client  kubernetes.Interface
	rt      *runtime.Runtime
	net     *network.Manager
	podCIDR string
	// seen: when each pod was first seen, for the pod start traces
	// (trace.go); kept only with debug logging on.
	seen    podSeen
	queue   workqueue.TypedRateLimitingInterface[types.UID]
	pods    cache.Indexer
	rec     record.EventRecorder
	bcast   record.EventBroadcaster
	api     *apiServer
	probes  *probeManager
	summary summaryState   // /stats/summary (stats.go)
	sources *sourceWatcher // volumes' ConfigMaps and Secrets (sourcewatch.go)
	imageGC *imageGC       // imagegc.go

	shipper    *shipper.Shipper // logs.go
	shipEvents lazyEvents
	reg        *prometheus.Registry
	regOnce    sync.Once

	mu      sync.Mutex
	backoff map[string]time.Time // uid/container → image pull retry time
	pullN   map[string]int
	mountN  map[types.UID]int // failed volume setups in a row (mountBackoff)
	waiting map[types.UID]map[string]corev1.ContainerStateWaiting
	tokens  map[string]cachedToken // projected service account tokens (files.go)

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

const uidIndex = "uid"

// Start connects to containerd, imports the airgap images, registers the
// node and starts the loops. It returns once the pod informer has synced.
func Start(ctx context.Context, rc *rest.Config, opts Options) (*Agent, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	cfg := rest.CopyConfig(rc)
	if cfg.UserAgent == "" {
		cfg.UserAgent = "skiff-agent/" + opts.NodeName
	}
	if cfg.QPS == 0 && cfg.RateLimiter == nil {
		// The kubelet's kubeAPIQPS/kubeAPIBurst defaults; client-go's own
		// (5/10) throttle status updates and events once a node starts
		// more than a few pods.
		cfg.QPS, cfg.Burst = 50, 100
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("agent: client: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a := &Agent{
		opts: opts, log: opts.Logger.With("component", "agent", "node", opts.NodeName), client: cs, cancel: cancel,
		backoff: map[string]time.Time{}, pullN: map[string]int{}, waiting: map[types.UID]map[string]corev1.ContainerStateWaiting{},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[types.UID](200*time.Millisecond, 10*time.Second),
			workqueue.TypedRateLimitingQueueConfig[types.UID]{Name: "agent"}),
	}
	a.summary.du.interval = opts.VolumeStatsAggPeriod
	a.imageGC = newImageGC(opts.ImageGC)
	ok := false
	defer func() {
		if !ok {
			a.Stop()
		}
	}()
	for _, d := range []string{opts.StateDir, opts.ImagesDir, a.podsDir(), opts.PodLogDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
	}
	if err := a.newLogShipper(cfg); err != nil {
		return nil, err
	}
	rot := crilog.Rotation{MaxSize: opts.ContainerLogMaxSize, MaxFiles: opts.ContainerLogMaxFiles}
	if a.shipper != nil {
		rot.Retainer = a.shipper
	}
	a.rt, err = runtime.New(ctx, runtime.Options{Address: opts.ContainerdAddress, Logger: opts.Logger, OnExit: a.containerExited,
		LogRotation: rot, Node: opts.NodeName})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if err := a.importAirgap(ctx); err != nil {
		return nil, err
	}
	if err := a.rt.Adopt(ctx); err != nil {
		return nil, fmt.Errorf("agent: adopt containers: %w", err)
	}
	if err := a.startAPI(); err != nil {
		return nil, err
	}
	node, err := a.registerNode(ctx)
	if err != nil {
		return nil, err
	}
	a.podCIDR = node.Spec.PodCIDR
	a.net, err = network.New(network.Options{
		StateDir: filepath.Join(opts.StateDir, "network"), PodCIDR: a.podCIDR, Bridge: opts.Bridge,
		NetNSDir: opts.NetNSDir, Logger: opts.Logger,
		ClusterCIDR: opts.ClusterCIDR, ServiceCIDR: opts.ServiceCIDR, EgressCIDRs: opts.EgressCIDRs,
	})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}

	a.bcast = record.NewBroadcaster(record.WithContext(runCtx))
	a.bcast.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	a.rec = a.bcast.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: opts.NodeName})

	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
		lo.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", opts.NodeName).String()
	}))
	inf := factory.Core().V1().Pods().Informer()
	if err := inf.AddIndexers(cache.Indexers{uidIndex: func(obj any) ([]string, error) {
		return []string{string(obj.(*corev1.Pod).UID)}, nil
	}}); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(o any) {
			if p, ok := o.(*corev1.Pod); ok && a.log.Enabled(runCtx, slog.LevelDebug) {
				a.seen.note(p.UID)
			}
			a.enqueue(o)
		},
		UpdateFunc: func(_, o any) { a.enqueue(o) },
		DeleteFunc: func(o any) {
			if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = t.Obj
			}
			a.enqueue(o)
		},
	})
	a.pods = inf.GetIndexer()
	a.sources = newSourceWatcher(runCtx, cs, func(uid types.UID) { a.queue.Add(uid) }, a.log)
	factory.Start(runCtx.Done())
	syncCtx, cancelSync := context.WithTimeout(ctx, 60*time.Second)
	defer cancelSync()
	if !cache.WaitForCacheSync(syncCtx.Done(), inf.HasSynced) {
		return nil, errors.New("agent: pod informer did not sync")
	}

	if err := a.startProxy(runCtx); err != nil {
		return nil, err
	}
	a.startLogShipper(runCtx)
	a.startRoutes(runCtx, cs)
	a.probes = newProbeManager(runCtx, a)
	a.wg.Add(4)
	go func() { defer a.wg.Done(); a.imageGCLoop(runCtx) }()
	go func() { defer a.wg.Done(); a.heartbeat(runCtx) }()
	go func() { defer a.wg.Done(); a.resync(runCtx) }()
	go func() { defer a.wg.Done(); a.work(runCtx) }()
	a.resyncAll(runCtx, 0)
	ok = true
	a.log.Info("node agent ready", "podCIDR", a.podCIDR, "nodeIP", opts.NodeIP, "api", a.APIAddress())
	return a, nil
}

// Stop stops the agent's loops and closes its connections. Containers
// keep running: a new Agent on the same state adopts them.
func (a *Agent) Stop() {
	if a.rt != nil {
		// Output copying stops first: what reached the log files is then
		// all the log shipper has to finish, and no file rotates while the
		// shipper is stopped. The next Agent copies the rest.
		a.rt.Detach()
	}
	if a.cancel != nil {
		a.cancel()
	}
	a.queue.ShutDown()
	a.wg.Wait()
	if a.probes != nil {
		a.probes.wait()
	}
	if a.api != nil {
		a.api.close()
	}
	if a.bcast != nil {
		a.bcast.Shutdown()
	}
	if a.rt != nil {
		_ = a.rt.Close()
		a.rt = nil
	}
}

// NodeName is the node's name.
func (a *Agent) NodeName() string { return a.opts.NodeName }

// Network is the agent's network manager (tests use it to clean up).
func (a *Agent) Network() *network.Manager { return a.net }

// Runtime is the agent's container runtime.
func (a *Agent) Runtime() *runtime.Runtime { return a.rt }

func (a *Agent) podsDir() string { return filepath.Join(a.opts.StateDir, "pods") }

func (a *Agent) enqueue(o any) {
	if p, ok := o.(*corev1.Pod); ok {
		a.queue.Add(p.UID)
	}
}

func (a *Agent) containerExited(id string) {
	c, err := a.rt.Get(context.Background(), id)
	if err == nil && c.Labels[runtime.LabelPodUID] != "" && a.ours(c) {
		a.queue.Add(types.UID(c.Labels[runtime.LabelPodUID]))
	}
}

// importAirgap imports every *.tar of the images folder (k3s's airgap
// convention) and pins the images (runtime.LabelPinned, as k3s does), so
// that image garbage collection keeps them.
func (a *Agent) importAirgap(ctx context.Context) error {
	files, err := filepath.Glob(filepath.Join(a.opts.ImagesDir, "*.tar"))
	if err != nil {
		return fmt.Errorf("agent: airgap images: %w", err)
	}
	for _, f := range files {
		names, err := a.rt.ImportFile(ctx, f)
		if err != nil {
			return fmt.Errorf("agent: import %s: %w", f, err)
		}
		for _, n := range names {
			if err := a.rt.PinImage(ctx, n); err != nil {
				return fmt.Errorf("agent: %w", err)
			}
		}
		a.log.Info("imported airgap images", "file", f, "images", names)
	}
	return nil
}

func (a *Agent) resync(ctx context.Context) {
	t := time.NewTicker(a.opts.ResyncInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.resyncAll(ctx, a.opts.ResyncInterval)
		}
	}
}

// resyncAll enqueues every pod the API bound here and every pod that
// still has containers or a sandbox here (orphans get torn down), each
// once. With spread > 0 the pods are enqueued evenly over that long
// instead of all at once: a periodic pass then costs the workers a
// steady trickle of syncs, and a pod created meanwhile waits behind at
// most a few of them, not behind every pod of the node.
func (a *Agent) resyncAll(ctx context.Context, spread time.Duration) {
	var uids []types.UID
	seen := map[types.UID]bool{}
	add := func(uid types.UID) {
		if uid != "" && !seen[uid] {
			seen[uid] = true
			uids = append(uids, uid)
		}
	}
	for _, o := range a.pods.List() {
		if p, ok := o.(*corev1.Pod); ok {
			add(p.UID)
		}
	}
	if labels, err := a.rt.ContainerLabels(ctx); err == nil {
		for _, l := range labels {
			if a.oursByLabels(l) {
				add(types.UID(l[runtime.LabelPodUID]))
			}
		}
	} else if ctx.Err() == nil {
		a.log.Warn("resync: list containers", "err", err)
	}
	if ents, err := os.ReadDir(a.podsDir()); err == nil {
		for _, e := range ents {
			add(types.UID(e.Name()))
		}
	}
	for i, uid := range uids {
		if spread <= 0 {
			a.queue.Add(uid)
			continue
		}
		a.queue.AddAfter(uid, spread*time.Duration(i)/time.Duration(len(uids)))
	}
}

// work runs the pod syncs: syncWorkers at a time, each UID in one sync
// at a time (the queue's guarantee). A pod that is going away is synced
// on a goroutine of its own, off the workers, as the kubelet gives every
// pod a worker of its own: its sync mostly waits out the grace period of
// containers that ignore SIGTERM, and a wave of deletions (a rollout, a
// namespace deleted) would otherwise hold every worker for that long
// while new pods wait behind it. The queue still counts the UID as being
// processed until that goroutine is done with it. At most
// maxTeardowns such syncs run at once; the others wait on their own
// goroutines, not on a worker.
func (a *Agent) work(ctx context.Context) {
	var wg sync.WaitGroup
	teardowns := make(chan struct{}, maxTeardowns)
	for i := 0; i < syncWorkers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				uid, shut := a.queue.Get()
				if shut {
					return
				}
				if a.goingAway(uid) {
					wg.Add(1)
					go func() {
						defer wg.Done()
						teardowns <- struct{}{}
						defer func() { <-teardowns }()
						a.syncOne(ctx, uid)
					}()
					continue
				}
				a.syncOne(ctx, uid)
			}
		}()
	}
	<-ctx.Done()
	a.queue.ShutDown()
	wg.Wait()
}

// syncWorkers bounds the syncs of pods that are not going away (starts,
// restarts, status): on a node of two cores more than a few concurrent
// sandbox and container creations only queue in containerd and the CNI
// plugins.
const syncWorkers = 4

// maxTeardowns bounds the syncs of pods going away that run at once:
// enough that grace periods are waited out side by side, few enough
// that their CNI DELs and containerd deletes do not all pile onto the
// node at the same moment.
const maxTeardowns = 32

// goingAway reports whether uid's sync will tear its pod down: the pod
// is gone from the API or marked for deletion.
func (a *Agent) goingAway(uid types.UID) bool {
	pod := a.podByUID(uid)
	return pod == nil || pod.DeletionTimestamp != nil
}

// syncOne syncs uid once and tells the queue what comes next for it.
func (a *Agent) syncOne(ctx context.Context, uid types.UID) {
	defer a.queue.Done(uid)
	after, err := a.syncPod(ctx, uid)
	switch {
	case err != nil && ctx.Err() == nil:
		a.log.Warn("sync pod", "uid", uid, "err", err)
		a.queue.AddRateLimited(uid)
	case after > 0:
		a.queue.Forget(uid)
		a.queue.AddAfter(uid, after)
	default:
		a.queue.Forget(uid)
	}
}

func (a *Agent) podByUID(uid types.UID) *corev1.Pod {
	objs, err := a.pods.ByIndex(uidIndex, string(uid))
	if err != nil || len(objs) == 0 {
		return nil
	}
	return objs[0].(*corev1.Pod)
}

// podByName finds a pod of this node.
func (a *Agent) podByName(ns, name string) *corev1.Pod {
	o, ok, err := a.pods.GetByKey(ns + "/" + name)
	if err != nil || !ok {
		return nil
	}
	return o.(*corev1.Pod)
}
