package resourcequota

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/skiffhq/skiff/controlplane/admission/internal/objects"
	"github.com/skiffhq/skiff/controlplane/storage"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Controller keeps every quota's status.hard equal to spec.hard and its
// status.used equal to a recount of the namespace, after deletions (which
// admission does not see), quota changes, and on a periodic resync.
type Controller struct {
	r      *objects.Reader
	log    *slog.Logger
	resync time.Duration

	mu    sync.Mutex
	dirty map[string]bool
	kick  chan struct{}
	// seen remembers since when each quota has been at its revision:
	// usage is only lowered on a quota admission has not charged for a
	// while, so a recount never forgets an object admitted but not yet
	// stored.
	seen map[string]seenRev
}

type seenRev struct {
	rev   int64
	since time.Time
}

// settle is how long a quota must stay unwritten before usage may drop.
const settle = 2 * time.Second

// watched are the resources whose changes can lower usage at once.
var watched = []struct{ group, plural string }{
	{"", "resourcequotas"}, {"", "pods"}, {"", "services"}, {"", "persistentvolumeclaims"},
	{"", "configmaps"}, {"", "secrets"}, {"", "replicationcontrollers"},
}

// NewController returns the controller; resyncSeconds 0 means 5 minutes.
func NewController(r *objects.Reader, log *slog.Logger, resyncSeconds int) *Controller {
	if log == nil {
		log = slog.Default()
	}
	d := time.Duration(resyncSeconds) * time.Second
	if d <= 0 {
		d = 5 * time.Minute
	}
	return &Controller{r: r, log: log.With("component", "resourcequota-controller"), resync: d, dirty: map[string]bool{}, kick: make(chan struct{}, 1), seen: map[string]seenRev{}}
}

// Run recounts until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	for _, w := range watched {
		go c.watch(ctx, w.group, w.plural)
	}
	c.enqueueAll()
	tick := time.NewTicker(c.resync)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			c.enqueueAll()
		case <-c.kick:
		}
		// Let a burst of events settle into one recount per namespace.
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
		c.mu.Lock()
		batch := c.dirty
		c.dirty = map[string]bool{}
		c.mu.Unlock()
		for ns := range batch {
			if err := c.Sync(ctx, ns); err != nil && ctx.Err() == nil {
				c.log.Warn("recount quota usage", "namespace", ns, "err", err)
				c.enqueue(ns)
			}
		}
	}
}

func (c *Controller) enqueue(ns string) {
	c.mu.Lock()
	c.dirty[ns] = true
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *Controller) enqueueAll() {
	quotas, err := objects.List[corev1.ResourceQuota](c.r, "", "resourcequotas", "")
	if err != nil {
		return
	}
	for _, q := range quotas {
		c.enqueue(q.Namespace)
	}
}

// watch enqueues the namespace of every deletion (and of every quota or
// pod change) under group/plural.
func (c *Controller) watch(ctx context.Context, group, plural string) {
	prefix := c.r.Prefix(group, plural)
	if prefix == "" {
		return
	}
	for ctx.Err() == nil {
		w, err := c.r.Cache.Watch(prefix, storage.WatchOptions{FromRev: c.r.Cache.Rev()})
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
				continue
			}
		}
		handle := func(e *storage.Event) {
			if e.Type == storage.Bookmark {
				return
			}
			if e.Type != storage.Deleted && plural != "resourcequotas" && plural != "pods" {
				return
			}
			o := e.Object
			if o == nil {
				o = e.Prev
			}
			if o == nil {
				return
			}
			rest := strings.TrimPrefix(o.Key, prefix)
			if i := strings.IndexByte(rest, '/'); i > 0 {
				c.enqueue(rest[:i])
			}
		}
		for _, e := range w.Pending() {
			handle(e)
		}
	loop:
		for {
			select {
			case <-ctx.Done():
				w.Stop()
				return
			case e, ok := <-w.Events():
				if !ok {
					break loop
				}
				handle(e)
			}
		}
		// The watcher fell behind: recount everything and watch again.
		c.enqueueAll()
	}
}

// Sync recounts the usage of every quota in ns and writes the status of
// those that changed.
func (c *Controller) Sync(ctx context.Context, ns string) error {
	quotas, err := objects.List[corev1.ResourceQuota](c.r, "", "resourcequotas", ns)
	if err != nil || len(quotas) == 0 {
		return err
	}
	pods, err := objects.List[corev1.Pod](c.r, "", "pods", ns)
	if err != nil {
		return err
	}
	svcs, err := objects.List[corev1.Service](c.r, "", "services", ns)
	if err != nil {
		return err
	}
	pvcs, err := objects.List[corev1.PersistentVolumeClaim](c.r, "", "persistentvolumeclaims", ns)
	if err != nil {
		return err
	}
	for _, q := range quotas {
		if err := c.syncQuota(ctx, q, pods, svcs, pvcs); err != nil {
			return err
		}
	}
	return nil
}

func (c *Controller) syncQuota(ctx context.Context, q *corev1.ResourceQuota, pods []*corev1.Pod, svcs []*corev1.Service, pvcs []*corev1.PersistentVolumeClaim) error {
	total := corev1.ResourceList{}
	add := func(l corev1.ResourceList) {
		for k, v := range l {
			t := total[k]
			t.Add(v)
			total[k] = t
		}
	}
	for _, p := range pods {
		if scopesMatch(q, p) {
			add(usage("", "pods", p))
		}
	}
	scoped := len(q.Spec.Scopes) > 0 || q.Spec.ScopeSelector != nil
	if !scoped {
		for _, s := range svcs {
			add(usage("", "services", s))
		}
		for _, p := range pvcs {
			add(usage("", "persistentvolumeclaims", p))
		}
	}
	used := corev1.ResourceList{}
	for k := range q.Spec.Hard {
		if v, ok := total[k]; ok {
			used[k] = v
			continue
		}
		n := int64(0)
		if !scoped {
			if prefix := c.countPrefix(k); prefix != "" {
				var err error
				if n, err = c.r.Count(prefix, q.Namespace, nil); err != nil {
					return err
				}
			}
		}
		used[k] = *resource.NewQuantity(n, resource.DecimalSI)
	}
	if equality.Semantic.DeepEqual(q.Status.Hard, q.Spec.Hard) && equality.Semantic.DeepEqual(q.Status.Used, used) {
		return nil
	}
	for attempt := 0; attempt < 8; attempt++ {
		cur, rev, err := objects.GetFresh[corev1.ResourceQuota](ctx, c.r, "", "resourcequotas", q.Namespace, q.Name)
		if errors.Is(err, objects.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		cur.Status.Hard = q.Spec.Hard.DeepCopy()
		if !equality.Semantic.DeepEqual(cur.Spec.Hard, q.Spec.Hard) {
			// The quota changed since the recount: the next event recounts.
			c.enqueue(q.Namespace)
			return nil
		}
		if lowers(cur.Status.Used, used) && !c.settled(q.Namespace+"/"+q.Name, rev) {
			go func() {
				time.Sleep(settle)
				c.enqueue(q.Namespace)
			}()
			return nil
		}
		cur.Status.Used = used
		err = c.r.CompareAndSwap(ctx, c.r.Key("", "resourcequotas", q.Namespace, q.Name), cur, rev)
		if errors.Is(err, storage.ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("write quota %s/%s status: %w", q.Namespace, q.Name, err)
		}
		return nil
	}
	c.enqueue(q.Namespace)
	return nil
}

// countPrefix maps an object-count resource name to its storage prefix.
func (c *Controller) countPrefix(k corev1.ResourceName) string {
	name := string(k)
	for plural, legacy := range legacyCounts {
		if legacy == k {
			return c.r.Prefix("", plural)
		}
	}
	if !strings.HasPrefix(name, "count/") {
		return ""
	}
	res := strings.TrimPrefix(name, "count/")
	plural, group, _ := strings.Cut(res, ".")
	return c.r.Prefix(group, plural)
}

// settled reports whether the quota at key has stayed at rev for settle.
func (c *Controller) settled(key string, rev int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.seen[key]
	if !ok || s.rev != rev {
		c.seen[key] = seenRev{rev: rev, since: time.Now()}
		return false
	}
	return time.Since(s.since) >= settle
}

// lowers reports whether next drops any usage below cur.
func lowers(cur, next corev1.ResourceList) bool {
	for k, v := range cur {
		if n, ok := next[k]; ok && n.Cmp(v) < 0 {
			return true
		}
	}
	return false
}
