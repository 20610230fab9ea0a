// Package metrics is the resource metrics add-on (metrics-server and
// Heapster's model in one): it scrapes every node agent's stats summary
// (/stats/summary) concurrently, derives CPU rates from cumulative usage,
// keeps the latest usage of nodes, pods and containers, an in-memory
// history of fixed size per series (nodes, namespaces, workloads, pods,
// containers) for the dashboard, and serves metrics.k8s.io/v1beta1
// NodeMetrics and PodMetrics so that `kubectl top` works: built into the
// API server (Resources) inside `skiff server`, or over HTTP (APIHandler)
// as an extension API server behind API aggregation when it runs alone as
// `skiff metrics` (see extserver).
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
)

// Defaults.
const (
	DefaultInterval = 15 * time.Second
	DefaultTimeout  = 10 * time.Second
	DefaultHistory  = time.Hour
	DefaultWorkers  = 64
)

// Options configure the add-on. The zero value of each field is its default.
type Options struct {
	// Client lists and watches nodes and pods. Required.
	Client kubernetes.Interface
	// Scraper reads node summaries. Required (see HTTPScraper).
	Scraper Scraper
	// Interval between scrape rounds (default 15s, metrics-server's
	// --metric-resolution).
	Interval time.Duration
	// Timeout of one node's scrape (default 10s, at most Interval).
	Timeout time.Duration
	// Workers scrape concurrently (default 64).
	Workers int
	// MaxStale is how long a node that stopped answering keeps being served
	// with its last values, marked stale (default 2×Interval); after that
	// it has no metrics (kubectl top shows it as unknown), never zeros.
	MaxStale time.Duration
	// History is how far back the history reaches (default 1h): it keeps
	// History/Interval rounds per series.
	History time.Duration
	// RemoteWrite, when its URL is set, writes the usage series (the
	// UsageCollector's) to a Prometheus remote write receiver every round.
	RemoteWrite RemoteWriteOptions
	// Registerer receives the add-on's own metrics and the cluster usage
	// in the kubelet's metric names (UsageCollector); nil = none.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Collector is a running metrics add-on.
type Collector struct {
	opts    Options
	log     *slog.Logger
	nodes   corelisters.NodeLister
	pods    corelisters.PodLister
	factory informers.SharedInformerFactory
	history *History
	metrics *addonMetrics
	usage   *usageCollector
	rw      *remoteWriter // nil = no remote write
	ready   atomic.Bool

	mu    sync.Mutex // rounds
	state map[string]*nodeState
	last  atomic.Pointer[Snapshot]
}

// New validates opts and builds the collector; Run starts it.
func New(opts Options) (*Collector, error) {
	if opts.Client == nil {
		return nil, errors.New("metrics: a Kubernetes client is required")
	}
	if opts.Scraper == nil {
		return nil, errors.New("metrics: a scraper is required")
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	opts.Timeout = min(opts.Timeout, opts.Interval)
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	if opts.MaxStale <= 0 {
		opts.MaxStale = 2 * opts.Interval
	}
	if opts.History <= 0 {
		opts.History = DefaultHistory
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	m, err := newAddonMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	f := informers.NewSharedInformerFactory(opts.Client, 0)
	c := &Collector{
		opts: opts, log: opts.Logger.With("component", "metrics"),
		nodes: f.Core().V1().Nodes().Lister(), pods: f.Core().V1().Pods().Lister(), factory: f,
		history: NewHistory(int((opts.History + opts.Interval - 1) / opts.Interval)),
		metrics: m, state: map[string]*nodeState{},
	}
	c.usage = &usageCollector{c: c}
	if err := registerUsage(opts.Registerer, c.usage); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if opts.RemoteWrite.Enabled() {
		if c.rw, err = newRemoteWriter(opts.RemoteWrite, opts.Registerer, c.log); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	c.last.Store(&Snapshot{Nodes: map[string]*NodeUsage{}, Pods: map[string]*PodUsage{}, Volumes: map[string]*VolumeUsage{}})
	return c, nil
}

// registerUsage registers the usage collector, replacing one of an earlier
// collector (an add-on restarted in the same process).
func registerUsage(reg prometheus.Registerer, u prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	err := reg.Register(u)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		reg.Unregister(are.ExistingCollector)
		err = reg.Register(u)
	}
	return err
}

// Run scrapes every Interval until ctx ends.
func (c *Collector) Run(ctx context.Context) error {
	defer c.factory.Shutdown()
	if err := c.Sync(ctx); err != nil {
		return err
	}
	c.log.Info("metrics add-on running", "interval", c.opts.Interval, "history_rounds", c.history.Size(), "remote_write", c.rw != nil)
	if c.rw != nil {
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() { c.rw.run(ctx) })
	}
	t := time.NewTicker(c.opts.Interval)
	defer t.Stop()
	for {
		c.round(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Sync starts the node and pod informers (until ctx ends) and waits for
// their caches. Run calls it; a benchmark calls it and then Round.
func (c *Collector) Sync(ctx context.Context) error {
	c.factory.Start(ctx.Done())
	for typ, ok := range c.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("metrics: %v informer did not sync", typ)
		}
	}
	return nil
}

// Round runs one scrape round now (Run does every Interval); not while
// Run runs. For benchmarks and tools, after Sync.
func (c *Collector) Round(ctx context.Context) { c.round(ctx) }

// RecordLatest records the latest snapshot in the history again, as a
// round at t whose scrapes returned the same values: a benchmark fills an
// hour of history without an hour of scrapes. Not while Run runs.
func (c *Collector) RecordLatest(t time.Time) {
	snap := *c.Latest()
	snap.Time = t
	c.record(&snap)
}

// Ready reports whether a first scrape round has completed (/readyz).
func (c *Collector) Ready() bool { return c.ready.Load() }

// Interval is the scrape interval.
func (c *Collector) Interval() time.Duration { return c.opts.Interval }
