package ingress

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

// debounce is how long the watcher waits after a change for more changes
// before it rebuilds: short, because reconfiguration latency counts.
const debounce = 5 * time.Millisecond

// watcher feeds the Proxy: informer handlers only poke; one worker lists
// the caches, builds a Table and swaps it in, then reports problems as
// events and writes status.loadBalancer.
type watcher struct {
	cs       kubernetes.Interface
	opts     *Options
	log      *slog.Logger
	proxy    *Proxy
	m        *metrics
	b        *builder
	factory  informers.SharedInformerFactory
	ings     networkinglisters.IngressLister
	classes  networkinglisters.IngressClassLister
	services corelisters.ServiceLister
	slices   discoverylisters.EndpointSliceLister
	secrets  corelisters.SecretLister
	nodes    corelisters.NodeLister // nil when addresses are configured

	recorder record.EventRecorder
	reported map[types.NamespacedName]map[string]bool // problems already sent as events

	// wrote holds, per served Ingress (UID), the status.loadBalancer.ingress
	// this process wrote there or found there already; released the
	// Ingresses no longer served that updateStatus has dealt with (see
	// there). Both forget Ingresses that are gone.
	wrote    map[types.UID][]networkingv1.IngressLoadBalancerIngress
	released map[types.UID]bool

	kick  chan struct{}
	ready chan struct{}
}

func newWatcher(cs kubernetes.Interface, opts *Options, p *Proxy, m *metrics, log *slog.Logger) *watcher {
	f := informers.NewSharedInformerFactory(cs, 0)
	w := &watcher{
		cs: cs, opts: opts, log: log, proxy: p, m: m, b: newBuilder(), factory: f,
		ings:     f.Networking().V1().Ingresses().Lister(),
		classes:  f.Networking().V1().IngressClasses().Lister(),
		services: f.Core().V1().Services().Lister(),
		slices:   f.Discovery().V1().EndpointSlices().Lister(),
		secrets:  f.Core().V1().Secrets().Lister(),
		reported: map[types.NamespacedName]map[string]bool{},
		wrote:    map[types.UID][]networkingv1.IngressLoadBalancerIngress{},
		released: map[types.UID]bool{},
		kick:     make(chan struct{}, 1),
		ready:    make(chan struct{}),
	}
	infs := []toolscache.SharedIndexInformer{
		f.Networking().V1().Ingresses().Informer(),
		f.Networking().V1().IngressClasses().Informer(),
		f.Core().V1().Services().Informer(),
		f.Discovery().V1().EndpointSlices().Informer(),
		f.Core().V1().Secrets().Informer(),
	}
	if len(opts.PublishAddresses) == 0 && !opts.NoStatus {
		w.nodes = f.Core().V1().Nodes().Lister()
		infs = append(infs, f.Core().V1().Nodes().Informer())
	}
	h := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { w.poke() },
		UpdateFunc: func(any, any) { w.poke() },
		DeleteFunc: func(any) { w.poke() },
	}
	for _, inf := range infs {
		_, _ = inf.AddEventHandler(h)
	}
	return w
}

func (w *watcher) poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *watcher) run(ctx context.Context) error {
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: w.cs.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	w.recorder = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "skiff-ingress"})

	w.factory.Start(ctx.Done())
	defer w.factory.Shutdown()
	for typ, ok := range w.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("ingress: %v informer did not sync", typ)
		}
	}
	w.sync(ctx)
	close(w.ready)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.kick:
		}
		// Collect a burst of changes into one rebuild.
		t := time.NewTimer(debounce)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		select {
		case <-w.kick:
		default:
		}
		w.sync(ctx)
	}
}

// sync builds and swaps one table, then reports.
func (w *watcher) sync(ctx context.Context) {
	start := time.Now()
	in, err := w.input()
	if err != nil {
		w.log.Error("ingress: listing caches", "err", err)
		return
	}
	t, problems := w.b.build(in)
	w.proxy.setTable(t)
	w.m.reloads.Inc()
	w.m.reloadSeconds.Observe(time.Since(start).Seconds())
	w.log.Debug("ingress route table swapped", "ingresses", len(in.Ingresses), "took", time.Since(start))
	w.report(in, problems)
	if !w.opts.NoStatus {
		w.updateStatus(ctx, in)
	}
}

func (w *watcher) input() (*Input, error) {
	in := &Input{
		Controller:        w.opts.Controller,
		ClassName:         w.opts.ClassName,
		WatchWithoutClass: w.opts.WatchWithoutClass,
		Services:          map[types.NamespacedName]*corev1.Service{},
		Slices:            map[types.NamespacedName][]*discoveryv1.EndpointSlice{},
		Secrets:           map[types.NamespacedName]*corev1.Secret{},
		DefaultCert:       w.opts.defaultCert,
	}
	var err error
	if in.Ingresses, err = w.ings.List(labels.Everything()); err != nil {
		return nil, err
	}
	if in.Classes, err = w.classes.List(labels.Everything()); err != nil {
		return nil, err
	}
	// Only what the served Ingresses reference is looked up.
	for _, ing := range in.Ingresses {
		if !in.Ours(ing) {
			continue
		}
		svc := func(b *networkingv1.IngressBackend) {
			if b == nil || b.Service == nil {
				return
			}
			id := types.NamespacedName{Namespace: ing.Namespace, Name: b.Service.Name}
			if _, done := in.Services[id]; done {
				return
			}
			s, err := w.services.Services(id.Namespace).Get(id.Name)
			if err != nil {
				in.Services[id] = nil
				return
			}
			in.Services[id] = s
			sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: id.Name})
			in.Slices[id], _ = w.slices.EndpointSlices(id.Namespace).List(sel)
		}
		secret := func(name string) {
			if name == "" {
				return
			}
			id := types.NamespacedName{Namespace: ing.Namespace, Name: name}
			if s, err := w.secrets.Secrets(id.Namespace).Get(id.Name); err == nil {
				in.Secrets[id] = s
			}
		}
		svc(ing.Spec.DefaultBackend)
		for _, r := range ing.Spec.Rules {
			if r.HTTP != nil {
				for i := range r.HTTP.Paths {
					svc(&r.HTTP.Paths[i].Backend)
				}
			}
		}
		for _, t := range ing.Spec.TLS {
			secret(t.SecretName)
		}
		if v, ok := annotation(ing, "auth-secret"); ok {
			secret(v)
		}
	}
	if w.opts.DefaultCertSecret != "" {
		ns, name, _ := cutNamespace(w.opts.DefaultCertSecret)
		id := types.NamespacedName{Namespace: ns, Name: name}
		if s, err := w.secrets.Secrets(ns).Get(name); err == nil {
			in.Secrets[id] = s
			if c, err := w.b.certificate(in, id, map[string]bool{}); err == nil {
				in.DefaultCert = c
			} else {
				w.log.Warn("ingress: default certificate secret", "secret", id, "err", err)
			}
		}
	}
	return in, nil
}

func cutNamespace(s string) (string, string, bool) {
	for i := range len(s) {
		if s[i] == '/' {
			return s[:i], s[i+1:], true
		}
	}
	return "default", s, false
}

// report sends each new problem once as a Warning event on its Ingress.
func (w *watcher) report(in *Input, problems []Problem) {
	now := map[types.NamespacedName]map[string]bool{}
	for _, p := range problems {
		if now[p.Ingress] == nil {
			now[p.Ingress] = map[string]bool{}
		}
		key := p.Reason + ": " + p.Message
		now[p.Ingress][key] = true
		if w.reported[p.Ingress][key] {
			continue
		}
		for _, ing := range in.Ingresses {
			if ing.Namespace == p.Ingress.Namespace && ing.Name == p.Ingress.Name {
				w.recorder.Event(ing, corev1.EventTypeWarning, p.Reason, p.Message)
				break
			}
		}
		w.log.Info("ingress problem", "ingress", p.Ingress, "reason", p.Reason, "message", p.Message)
	}
	w.reported = now
}

// updateStatus writes status.loadBalancer.ingress of served Ingresses:
// the configured addresses, else the nodes' addresses. When an Ingress
// stops being ours (another class, the default-class claim gone) the
// addresses we wrote are cleared, once, and only when the status still
// holds exactly them: what this process wrote (or found in place while
// serving it), or, with no such memory (the class changed while we were
// not running), our current addresses on an Ingress no other controller
// claims (no class named). A status another controller wrote is left
// alone, and an Ingress we released is not touched again until it is
// ours again, so two controllers publishing the same node addresses do
// not fight over it.
func (w *watcher) updateStatus(ctx context.Context, in *Input) {
	want := w.addresses()
	seen := make(map[types.UID]bool, len(in.Ingresses))
	for _, ing := range in.Ingresses {
		seen[ing.UID] = true
		if ing.DeletionTimestamp != nil {
			continue
		}
		cur := ing.Status.LoadBalancer.Ingress
		if !in.Ours(ing) {
			if !w.released[ing.UID] && w.release(ctx, ing, want) {
				w.released[ing.UID] = true
				delete(w.wrote, ing.UID)
			}
			continue
		}
		delete(w.released, ing.UID)
		if len(want) == 0 {
			continue
		}
		if sameLoadBalancer(cur, want) {
			w.wrote[ing.UID] = want
			continue
		}
		c := ing.DeepCopy()
		c.Status.LoadBalancer.Ingress = want
		if _, err := w.cs.NetworkingV1().Ingresses(c.Namespace).UpdateStatus(ctx, c, metav1.UpdateOptions{}); err != nil {
			// A conflict means a newer copy is on its way: the next sync
			// retries.
			w.log.Debug("ingress status", "ingress", c.Namespace+"/"+c.Name, "err", err)
			continue
		}
		w.wrote[ing.UID] = want
	}
	for uid := range w.wrote {
		if !seen[uid] {
			delete(w.wrote, uid)
		}
	}
	for uid := range w.released {
		if !seen[uid] {
			delete(w.released, uid)
		}
	}
}

// release clears the addresses we wrote on an Ingress that is no longer
// ours (updateStatus says when; want are our current addresses). It
// reports whether the Ingress is dealt with; false when it must be looked
// at again (the update failed, or our addresses are not known yet).
func (w *watcher) release(ctx context.Context, ing *networkingv1.Ingress, want []networkingv1.IngressLoadBalancerIngress) bool {
	cur := ing.Status.LoadBalancer.Ingress
	if len(cur) == 0 {
		return true
	}
	mine, known := w.wrote[ing.UID]
	switch {
	case known && !sameLoadBalancer(cur, mine), !known && claimed(ing):
		return true // another controller's status
	case !known && len(want) == 0:
		return false
	case !known && !sameLoadBalancer(cur, want):
		return true
	}
	c := ing.DeepCopy()
	c.Status.LoadBalancer.Ingress = nil
	if _, err := w.cs.NetworkingV1().Ingresses(c.Namespace).UpdateStatus(ctx, c, metav1.UpdateOptions{}); err != nil {
		w.log.Debug("ingress status", "ingress", c.Namespace+"/"+c.Name, "err", err)
		return false
	}
	w.log.Info("ingress status cleared: no longer served", "ingress", c.Namespace+"/"+c.Name)
	return true
}

// claimed: the Ingress names a class (it is some controller's, not ours).
func claimed(ing *networkingv1.Ingress) bool {
	if ing.Spec.IngressClassName != nil {
		return true
	}
	_, ok := ing.Annotations[annotationLegacyClass]
	return ok
}

// sameLoadBalancer: the same addresses in the same order, without ports.
func sameLoadBalancer(a, b []networkingv1.IngressLoadBalancerIngress) bool {
	return slices.EqualFunc(a, b, func(a, b networkingv1.IngressLoadBalancerIngress) bool {
		return a.IP == b.IP && a.Hostname == b.Hostname && len(a.Ports) == 0 && len(b.Ports) == 0
	})
}

func (w *watcher) addresses() []networkingv1.IngressLoadBalancerIngress {
	var addrs []string
	if len(w.opts.PublishAddresses) > 0 {
		addrs = w.opts.PublishAddresses
	} else if w.nodes != nil {
		nodes, _ := w.nodes.List(labels.Everything())
		for _, n := range nodes {
			var ext, internal []string
			for _, a := range n.Status.Addresses {
				switch a.Type {
				case corev1.NodeExternalIP:
					ext = append(ext, a.Address)
				case corev1.NodeInternalIP:
					internal = append(internal, a.Address)
				}
			}
			if len(ext) > 0 {
				addrs = append(addrs, ext...)
			} else {
				addrs = append(addrs, internal...)
			}
		}
	}
	sort.Strings(addrs)
	addrs = slices.Compact(addrs)
	out := make([]networkingv1.IngressLoadBalancerIngress, 0, len(addrs))
	for _, a := range addrs {
		if _, err := netip.ParseAddr(a); err == nil {
			out = append(out, networkingv1.IngressLoadBalancerIngress{IP: a})
		} else {
			out = append(out, networkingv1.IngressLoadBalancerIngress{Hostname: a})
		}
	}
	return out
}
