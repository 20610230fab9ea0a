// Package federation is the federation add-on: one host cluster places
// workloads on several member clusters (Skiff or any Kubernetes API) and
// fails over between them. Its API (federation.skiff.io/v1alpha1:
// MemberCluster, PropagationPolicy, ClusterPropagationPolicy,
// ResourceBinding) is served by the host as custom resources the add-on
// installs; members are reached only through their API with client-go.
// It runs as `skiff federation --kubeconfig HOST` or inside `skiff server
// --enable federation`. See README.md.
package federation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/skiffhq/skiff/addons/federation/apis/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
)

// Name is the add-on's name (`--enable federation`, logs, metrics).
const Name = "federation"

// Options configure the add-on. The zero value of each field is its
// default.
type Options struct {
	// Config reaches the host cluster. Required. The identity needs the
	// federation API, Secrets (member credentials and dependencies),
	// Events, CRDs and read/update on every kind it propagates.
	Config *rest.Config
	// HeartbeatInterval is how often each member is checked (default 10s).
	HeartbeatInterval time.Duration
	// FailureGrace is how long a Ready member may fail its checks before
	// it becomes NotReady and tainted (default 40s).
	FailureGrace time.Duration
	// RecoveryGrace is how long a NotReady member must pass its checks
	// before it is Ready again (default 30s).
	RecoveryGrace time.Duration
	// MemberTimeout bounds each call to a member (default 5s).
	MemberTimeout time.Duration
	// ResyncInterval is how often each federated object is re-applied and
	// its members' status collected (default 10s).
	ResyncInterval time.Duration
	// Workers reconcile host objects concurrently (default 4).
	Workers int
	// Registerer receives the add-on's metrics (nil = not registered).
	Registerer prometheus.Registerer
	// Logger receives diagnostics (default slog.Default()).
	Logger *slog.Logger
	// Now is the clock (tests; default time.Now).
	Now func() time.Time
}

func (o *Options) defaults() {
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = 10 * time.Second
	}
	if o.FailureGrace <= 0 {
		o.FailureGrace = 40 * time.Second
	}
	if o.RecoveryGrace <= 0 {
		o.RecoveryGrace = 30 * time.Second
	}
	if o.MemberTimeout <= 0 {
		o.MemberTimeout = 5 * time.Second
	}
	if o.ResyncInterval <= 0 {
		o.ResyncInterval = 10 * time.Second
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// objKey names a host object of a propagated kind.
type objKey struct {
	GVR       schema.GroupVersionResource
	Namespace string
	Name      string
}

// Controller is the add-on. Run may be called again after it returned
// (an elected server runs it once per term of its Lease): each call
// builds its informers, queue and member state anew.
type Controller struct {
	opts     Options
	log      *slog.Logger
	kube     kubernetes.Interface
	dyn      dynamic.Interface
	ext      apiextensionsclient.Interface
	mapper   *restmapper.DeferredDiscoveryRESTMapper
	metrics  *metrics
	ready    atomic.Bool
	running  atomic.Bool
	now      func() time.Time
	recorder record.EventRecorder

	// Set by each Run before its goroutines start.
	factory        dynamicinformer.DynamicSharedInformerFactory
	queue          workqueue.TypedRateLimitingInterface[objKey]
	memberInformer cache.SharedIndexInformer
	ppInformer     cache.SharedIndexInformer
	cppInformer    cache.SharedIndexInformer
	runCtx         context.Context
	// stopping counts member stops started by informer handlers; Run
	// waits for them before it returns.
	stopping sync.WaitGroup

	mu      sync.Mutex
	members map[string]*member
	// watched are the host kinds named by some policy.
	watched map[schema.GroupVersionResource]cache.SharedIndexInformer
	// lastEvent remembers each object's last per-member outcome, so events
	// are emitted on change only.
	lastEvent map[string]string
}

// New checks the options and builds the clients; Run starts the add-on.
func New(opts Options) (*Controller, error) {
	if opts.Config == nil {
		return nil, fmt.Errorf("federation: Options.Config is required")
	}
	opts.defaults()
	rc := rest.CopyConfig(opts.Config)
	if rc.UserAgent == "" {
		rc.UserAgent = "skiff-federation"
	}
	kc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("host client: %w", err)
	}
	dc, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("host dynamic client: %w", err)
	}
	ec, err := apiextensionsclient.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("host apiextensions client: %w", err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("host discovery client: %w", err)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	c := &Controller{
		opts:    opts,
		log:     opts.Logger.With("component", Name),
		kube:    kc,
		dyn:     dc,
		ext:     ec,
		mapper:  restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc)),
		metrics: m,
		now:     opts.Now,
	}
	return c, nil
}

// Ready reports whether the CRDs are established and the caches synced.
func (c *Controller) Ready() bool { return c.ready.Load() }

// ErrRunning is returned by Run while another Run of the same Controller
// has not returned.
var ErrRunning = errors.New("federation: the controller is already running")

// Run installs the API, starts the informers, member heartbeats and
// workers, and blocks until ctx ends; it returns once everything it
// started has stopped, and may then be called again. Calls must not
// overlap (ErrRunning).
func (c *Controller) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer c.running.Store(false)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := InstallCRDs(ctx, c.ext); err != nil {
		return fmt.Errorf("federation: %w", err)
	}
	c.mapper.Reset()
	bc := record.NewBroadcaster(record.WithContext(ctx))
	bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.kube.CoreV1().Events("")})
	c.recorder = bc.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "skiff-federation"})

	// Everything below is this run's own: a previous run shut its
	// factory and queue down for good.
	c.runCtx = ctx
	c.factory = dynamicinformer.NewDynamicSharedInformerFactory(c.dyn, 0)
	c.queue = workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[objKey](), workqueue.TypedRateLimitingQueueConfig[objKey]{Name: Name})
	c.mu.Lock()
	c.members = map[string]*member{}
	c.watched = map[schema.GroupVersionResource]cache.SharedIndexInformer{}
	c.lastEvent = map[string]string{}
	c.mu.Unlock()
	var wg sync.WaitGroup
	defer func() {
		// Stop in order: workers and loops, the informers and their
		// handlers (no member is started after that), the members'
		// heartbeats (their gauges removed: another server reports
		// them now), then the event sink.
		c.ready.Store(false)
		cancel()
		c.queue.ShutDown()
		wg.Wait()
		c.factory.Shutdown()
		c.stopping.Wait()
		c.mu.Lock()
		names := make([]string, 0, len(c.members))
		for n := range c.members {
			names = append(names, n)
		}
		c.mu.Unlock()
		for _, n := range names {
			c.stopMember(n)
		}
		bc.Shutdown()
	}()

	c.memberInformer = c.factory.ForResource(v1alpha1.MemberClusterGVR).Informer()
	c.ppInformer = c.factory.ForResource(v1alpha1.PropagationPolicyGVR).Informer()
	c.cppInformer = c.factory.ForResource(v1alpha1.ClusterPropagationPolicyGVR).Informer()
	_, _ = c.memberInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(o any) {
			if u, ok := o.(*unstructured.Unstructured); ok {
				c.startMember(u.GetName())
				c.enqueueAll()
			}
		},
		UpdateFunc: func(old, o any) {
			ou, _ := old.(*unstructured.Unstructured)
			nu, _ := o.(*unstructured.Unstructured)
			if ou == nil || nu == nil {
				return
			}
			// Status writes (every heartbeat) change neither labels nor
			// generation; readiness changes are enqueued by the heartbeat.
			if ou.GetGeneration() != nu.GetGeneration() || !maps.Equal(ou.GetLabels(), nu.GetLabels()) ||
				(ou.GetDeletionTimestamp() == nil) != (nu.GetDeletionTimestamp() == nil) {
				c.enqueueAll()
			}
		},
		DeleteFunc: func(o any) {
			if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = d.Obj
			}
			if u, ok := o.(*unstructured.Unstructured); ok {
				c.stopping.Add(1)
				go func() {
					defer c.stopping.Done()
					c.stopMember(u.GetName())
				}()
				c.enqueueAll()
			}
		},
	})
	policyChanged := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.policiesChanged() },
		UpdateFunc: func(any, any) { c.policiesChanged() },
		DeleteFunc: func(any) { c.policiesChanged() },
	}
	_, _ = c.ppInformer.AddEventHandler(policyChanged)
	_, _ = c.cppInformer.AddEventHandler(policyChanged)
	c.factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), c.memberInformer.HasSynced, c.ppInformer.HasSynced, c.cppInformer.HasSynced) {
		return ctx.Err()
	}
	c.policiesChanged()

	for range c.opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c.processNext(ctx) {
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.policyStatusLoop(ctx)
	}()
	c.ready.Store(true)
	c.log.Info("federation controller started", "heartbeat", c.opts.HeartbeatInterval, "failureGrace", c.opts.FailureGrace, "recoveryGrace", c.opts.RecoveryGrace)
	<-ctx.Done()
	return nil
}

func (c *Controller) processNext(ctx context.Context) bool {
	key, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(key)
	requeue, err := c.reconcile(ctx, key)
	switch {
	case err != nil:
		c.metrics.reconciles.WithLabelValues("error").Inc()
		if ctx.Err() == nil {
			c.log.Debug("reconcile failed", "resource", key.GVR.Resource, "namespace", key.Namespace, "name", key.Name, "err", err)
		}
		c.queue.AddRateLimited(key)
	default:
		c.metrics.reconciles.WithLabelValues("ok").Inc()
		c.queue.Forget(key)
		if requeue {
			c.queue.AddAfter(key, c.opts.ResyncInterval)
		}
	}
	return true
}

// enqueueAll queues every object of every watched kind (placement inputs
// changed: a member, its readiness, or a policy).
func (c *Controller) enqueueAll() {
	c.mu.Lock()
	inf := make(map[schema.GroupVersionResource]cache.SharedIndexInformer, len(c.watched))
	for k, v := range c.watched {
		inf[k] = v
	}
	c.mu.Unlock()
	for gvr, i := range inf {
		for _, o := range i.GetStore().List() {
			if u, ok := o.(*unstructured.Unstructured); ok {
				c.queue.Add(objKey{GVR: gvr, Namespace: u.GetNamespace(), Name: u.GetName()})
			}
		}
	}
}
