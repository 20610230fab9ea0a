// Package namespace is the namespace controller: it empties namespaces that
// are being deleted and then finalizes them. See README.md.
package namespace

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/metadata"
)

// Name is the controller's name (and its --disable name).
const Name = "namespace-controller"

// Config is what the controller needs.
type Config struct {
	Client   kubernetes.Interface
	Metadata metadata.Interface
	Logger   *slog.Logger
	// Recheck is how soon a namespace whose content is still going away is
	// looked at again (default 2s; upstream estimates from grace periods).
	Recheck time.Duration
}

// Controller deletes the content of terminating namespaces.
type Controller struct {
	cfg    Config
	log    *slog.Logger
	lister corelisters.NamespaceLister
}

var _ controllers.Controller = (*Controller)(nil)

// New returns the controller.
func New(cfg Config) *Controller {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Recheck <= 0 {
		cfg.Recheck = 2 * time.Second
	}
	return &Controller{cfg: cfg, log: cfg.Logger.With("component", Name)}
}

// Name implements controllers.Controller.
func (c *Controller) Name() string { return Name }

// Run implements controllers.Controller.
func (c *Controller) Run(ctx context.Context, workers int) error {
	f := informers.NewSharedInformerFactory(c.cfg.Client, 5*time.Minute)
	inf := f.Core().V1().Namespaces()
	q := controllers.NewQueue(Name)
	enqueue := controllers.Enqueue(q)
	// Only namespaces being deleted need work.
	h := enqueue
	h.AddFunc = func(obj any) {
		if ns, ok := obj.(*corev1.Namespace); ok && ns.DeletionTimestamp != nil {
			enqueue.AddFunc(obj)
		}
	}
	h.UpdateFunc = func(_, obj any) { h.AddFunc(obj) }
	h.DeleteFunc = nil
	if _, err := inf.Informer().AddEventHandler(h); err != nil {
		return err
	}
	c.lister = inf.Lister()
	f.Start(ctx.Done())
	defer f.Shutdown()
	if !controllers.WaitForSync(ctx, inf.Informer().HasSynced) {
		return ctx.Err()
	}
	controllers.RunWorkers(ctx, q, workers, c.log, c.Reconcile)
	return nil
}

// Reconcile deletes what is left in namespace key and finalizes it once
// nothing remains.
func (c *Controller) Reconcile(ctx context.Context, key string) (controllers.Result, error) {
	ns, err := c.lister.Get(key)
	if apierrors.IsNotFound(err) {
		return controllers.Result{}, nil
	}
	if err != nil {
		return controllers.Result{}, err
	}
	if ns.DeletionTimestamp == nil || !hasFinalizer(ns) {
		return controllers.Result{}, nil
	}
	st := c.deleteContent(ctx, ns.Name)
	if err := c.writeConditions(ctx, ns, st); err != nil && !apierrors.IsNotFound(err) {
		return controllers.Result{}, err
	}
	if st.err != nil {
		return controllers.Result{}, st.err
	}
	if len(st.remaining) > 0 {
		return controllers.Result{RequeueAfter: c.cfg.Recheck}, nil
	}
	return controllers.Result{}, c.finalize(ctx, ns.Name)
}

func hasFinalizer(ns *corev1.Namespace) bool {
	for _, f := range ns.Spec.Finalizers {
		if f == corev1.FinalizerKubernetes {
			return true
		}
	}
	return false
}

// finalize removes the "kubernetes" finalizer through the finalize
// subresource; the API server then deletes the namespace.
func (c *Controller) finalize(ctx context.Context, name string) error {
	cur, err := c.cfg.Client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	next := cur.DeepCopy()
	next.Spec.Finalizers = nil
	for _, f := range cur.Spec.Finalizers {
		if f != corev1.FinalizerKubernetes {
			next.Spec.Finalizers = append(next.Spec.Finalizers, f)
		}
	}
	_, err = c.cfg.Client.CoreV1().Namespaces().Finalize(ctx, next, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err == nil {
		c.log.Info("namespace finalized", "namespace", name)
	}
	return err
}

// sweep is the outcome of one pass over a namespace's content.
type sweep struct {
	discoveryErr error
	deleteErrs   []error
	// remaining counts objects per resource; finalizers counts objects
	// per finalizer name among them.
	remaining  map[string]int
	finalizers map[string]int
	err        error
}

// deleteContent deletes every namespaced object in ns and reports what is
// still there.
func (c *Controller) deleteContent(ctx context.Context, ns string) sweep {
	st := sweep{remaining: map[string]int{}, finalizers: map[string]int{}}
	lists, err := c.cfg.Client.Discovery().ServerPreferredNamespacedResources()
	if err != nil {
		// Partial discovery (an aggregated API down) still lets us delete
		// the rest; the namespace waits until discovery is complete.
		st.discoveryErr = err
		if !discovery.IsGroupDiscoveryFailedError(err) {
			st.err = fmt.Errorf("discover resources: %w", err)
			return st
		}
	}
	var deleteErrs []error
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range l.APIResources {
			verbs := sets.New(r.Verbs...)
			if strings.Contains(r.Name, "/") || !verbs.HasAll("list", "delete") {
				continue
			}
			gvr := gv.WithResource(r.Name)
			n, fins, err := c.deleteResource(ctx, gvr, ns, verbs.Has("deletecollection"))
			if err != nil {
				deleteErrs = append(deleteErrs, fmt.Errorf("%s: %w", gvr.GroupResource(), err))
				continue
			}
			if n > 0 {
				st.remaining[gvr.GroupResource().String()] += n
			}
			for f, k := range fins {
				st.finalizers[f] += k
			}
		}
	}
	st.deleteErrs = deleteErrs
	switch {
	case len(deleteErrs) > 0:
		st.err = errors.Join(deleteErrs...)
	case st.discoveryErr != nil:
		st.err = fmt.Errorf("discover resources: %w", st.discoveryErr)
	}
	return st
}

// deleteResource deletes the objects of one resource in ns and returns how
// many are still there and their finalizers.
func (c *Controller) deleteResource(ctx context.Context, gvr schema.GroupVersionResource, ns string, collection bool) (int, map[string]int, error) {
	cli := c.cfg.Metadata.Resource(gvr).Namespace(ns)
	bg := metav1.DeletePropagationBackground
	opts := metav1.DeleteOptions{PropagationPolicy: &bg}
	ignorable := func(err error) bool {
		return err == nil || apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err) || apierrors.IsConflict(err)
	}
	if collection {
		if err := cli.DeleteCollection(ctx, opts, metav1.ListOptions{}); !ignorable(err) {
			return 0, nil, err
		}
	}
	list, err := cli.List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, err
	}
	fins := map[string]int{}
	for i := range list.Items {
		it := &list.Items[i]
		if it.DeletionTimestamp == nil {
			if err := cli.Delete(ctx, it.Name, opts); !ignorable(err) {
				return 0, nil, err
			}
		}
		for _, f := range it.Finalizers {
			fins[f]++
		}
	}
	return len(list.Items), fins, nil
}

// writeConditions records the deletion's progress in status.conditions as
// upstream's namespace controller does.
func (c *Controller) writeConditions(ctx context.Context, ns *corev1.Namespace, st sweep) error {
	type cond struct {
		t       corev1.NamespaceConditionType
		bad     bool
		reason  string
		message string
	}
	conds := []cond{
		{corev1.NamespaceDeletionDiscoveryFailure, st.discoveryErr != nil, "ResourcesDiscovered", "All resources successfully discovered"},
		{corev1.NamespaceDeletionGVParsingFailure, false, "ParsedGroupVersions", "All legacy kube types successfully parsed"},
		{corev1.NamespaceDeletionContentFailure, len(st.deleteErrs) > 0, "ContentDeleted", "All content successfully deleted, may be waiting on finalization"},
		{corev1.NamespaceContentRemaining, len(st.remaining) > 0, "ContentRemoved", "All content successfully removed"},
		{corev1.NamespaceFinalizersRemaining, len(st.finalizers) > 0, "ContentHasNoFinalizers", "All content-preserving finalizers finished"},
	}
	if st.discoveryErr != nil {
		conds[0].reason, conds[0].message = "DiscoveryFailed", fmt.Sprintf("Discovery failed for some groups: %v", st.discoveryErr)
	}
	if len(st.deleteErrs) > 0 {
		conds[2].reason, conds[2].message = "ContentDeletionFailed", fmt.Sprintf("Failed to delete all resource types, %d remaining: %v", len(st.deleteErrs), errors.Join(st.deleteErrs...))
	}
	if len(st.remaining) > 0 {
		var parts []string
		for gr, n := range st.remaining {
			parts = append(parts, fmt.Sprintf("%s has %d resource instances", gr, n))
		}
		sort.Strings(parts)
		conds[3].reason, conds[3].message = "SomeResourcesRemain", "Some resources are remaining: "+strings.Join(parts, ", ")
	}
	if len(st.finalizers) > 0 {
		var parts []string
		for f, n := range st.finalizers {
			parts = append(parts, fmt.Sprintf("%s in %d resource instances", f, n))
		}
		sort.Strings(parts)
		conds[4].reason, conds[4].message = "SomeFinalizersRemain", "Some content in the namespace has finalizers remaining: "+strings.Join(parts, ", ")
	}
	next := ns.DeepCopy()
	changed := false
	for _, cd := range conds {
		status := corev1.ConditionFalse
		if cd.bad {
			status = corev1.ConditionTrue
		}
		found := false
		for i := range next.Status.Conditions {
			x := &next.Status.Conditions[i]
			if x.Type != cd.t {
				continue
			}
			found = true
			if x.Status != status || x.Reason != cd.reason || x.Message != cd.message {
				x.Status, x.Reason, x.Message, x.LastTransitionTime = status, cd.reason, cd.message, metav1.Now()
				changed = true
			}
		}
		if !found {
			next.Status.Conditions = append(next.Status.Conditions, corev1.NamespaceCondition{
				Type: cd.t, Status: status, Reason: cd.reason, Message: cd.message, LastTransitionTime: metav1.Now(),
			})
			changed = true
		}
	}
	if !changed {
		return nil
	}
	_, err := c.cfg.Client.CoreV1().Namespaces().UpdateStatus(ctx, next, metav1.UpdateOptions{})
	return err
}
