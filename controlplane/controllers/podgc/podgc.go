// Package podgc is the pod garbage collector: it deletes terminated pods
// beyond a threshold, oldest first, and pods bound to nodes that no longer
// exist. See README.md.
package podgc

import (
	"context"
	"log/slog"
	"sort"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/controllers/internal/podutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// Name is upstream's name of the controller.
const Name = "pod-garbage-collector-controller"

// Config is what the collector needs.
type Config struct {
	Client    kubernetes.Interface
	Informers informers.SharedInformerFactory
	Logger    *slog.Logger
	// Threshold of terminated pods kept (<= 0: never collect them).
	Threshold int
	// Quarantine is how long a pod's node must be missing before the pod
	// is deleted (upstream's 40s).
	Quarantine time.Duration
	// Period between passes (upstream's 20s).
	Period time.Duration
}

// Controller is the pod garbage collector.
type Controller struct {
	cfg    Config
	log    *slog.Logger
	pods   corelisters.PodLister
	nodes  corelisters.NodeLister
	synced []cache.InformerSynced
	// missing records when each node was first seen missing.
	missing map[string]time.Time
	now     func() time.Time
}

var _ controllers.Controller = (*Controller)(nil)

// New returns the collector.
func New(cfg Config) *Controller {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Quarantine <= 0 {
		cfg.Quarantine = 40 * time.Second
	}
	if cfg.Period <= 0 {
		cfg.Period = 20 * time.Second
	}
	p, n := cfg.Informers.Core().V1().Pods(), cfg.Informers.Core().V1().Nodes()
	return &Controller{cfg: cfg, log: cfg.Logger.With("component", Name), pods: p.Lister(), nodes: n.Lister(),
		synced: []cache.InformerSynced{p.Informer().HasSynced, n.Informer().HasSynced}, missing: map[string]time.Time{}, now: time.Now}
}

// Name implements controllers.Controller.
func (c *Controller) Name() string { return Name }

// Run implements controllers.Controller: one pass every Period.
func (c *Controller) Run(ctx context.Context, _ int) error {
	if !controllers.WaitForSync(ctx, c.synced...) {
		return ctx.Err()
	}
	t := time.NewTicker(c.cfg.Period)
	defer t.Stop()
	for {
		c.Pass(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Pass runs one collection.
func (c *Controller) Pass(ctx context.Context) {
	pods, err := c.pods.List(labels.Everything())
	if err != nil {
		return
	}
	c.gcTerminated(ctx, pods)
	c.gcOrphaned(ctx, pods)
}

// TerminatedToDelete picks the oldest terminated pods beyond threshold.
func TerminatedToDelete(pods []*corev1.Pod, threshold int) []*corev1.Pod {
	if threshold <= 0 {
		return nil
	}
	var done []*corev1.Pod
	for _, p := range pods {
		if podutil.IsTerminated(p) && p.DeletionTimestamp == nil {
			done = append(done, p)
		}
	}
	n := len(done) - threshold
	if n <= 0 {
		return nil
	}
	sort.SliceStable(done, func(i, j int) bool {
		if done[i].CreationTimestamp.Equal(&done[j].CreationTimestamp) {
			return done[i].Name < done[j].Name
		}
		return done[i].CreationTimestamp.Before(&done[j].CreationTimestamp)
	})
	return done[:n]
}

func (c *Controller) gcTerminated(ctx context.Context, pods []*corev1.Pod) {
	for _, p := range TerminatedToDelete(pods, c.cfg.Threshold) {
		c.forceDelete(ctx, p, "terminated pod beyond the threshold")
	}
}

// gcOrphaned deletes pods bound to nodes that have been missing for the
// quarantine, checking the API server (not only the cache) first.
func (c *Controller) gcOrphaned(ctx context.Context, pods []*corev1.Pod) {
	now := c.now()
	seen := map[string]bool{}
	for _, p := range pods {
		node := p.Spec.NodeName
		if node == "" {
			continue
		}
		if _, err := c.nodes.Get(node); err == nil {
			delete(c.missing, node)
			continue
		}
		seen[node] = true
		first, ok := c.missing[node]
		if !ok {
			c.missing[node] = now
			continue
		}
		if now.Sub(first) < c.cfg.Quarantine {
			continue
		}
		if _, err := c.cfg.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			continue
		}
		c.forceDelete(ctx, p, "pod bound to a node that does not exist")
	}
	for node := range c.missing {
		if !seen[node] {
			delete(c.missing, node)
		}
	}
}

func (c *Controller) forceDelete(ctx context.Context, p *corev1.Pod, why string) {
	zero := int64(0)
	err := c.cfg.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero,
		Preconditions: &metav1.Preconditions{UID: &p.UID}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		c.log.Warn("delete pod", "pod", p.Namespace+"/"+p.Name, "err", err)
		return
	}
	c.log.Info("deleted pod", "pod", p.Namespace+"/"+p.Name, "reason", why)
}
