package endpoints

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/controllers/internal/podutil"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
)

// Names and labels of the EndpointSlice controller, as upstream.
const (
	SliceName         = "endpointslice-controller"
	ManagedBy         = "endpointslice-controller.k8s.io"
	MaxPerSlice       = 100
	serviceNameLabel  = discoveryv1.LabelServiceName
	managedByLabel    = discoveryv1.LabelManagedBy
	serviceKind       = "Service"
	serviceAPIVersion = "v1"
)

// SliceController is the EndpointSlice controller.
type SliceController struct {
	*serviceQueue
	client kubernetes.Interface
	slices discoverylisters.EndpointSliceLister
	log    *slog.Logger

	// pending are slices this controller created that its cache has not
	// shown yet; a sync waits for them rather than create duplicates.
	mu      sync.Mutex
	pending map[string]map[string]time.Time
}

var _ controllers.Controller = (*SliceController)(nil)

// NewSlices returns the EndpointSlice controller.
func NewSlices(cfg Config) (*SliceController, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	q, err := newServiceQueue(cfg.Informers, "endpoint_slice")
	if err != nil {
		return nil, err
	}
	sl := cfg.Informers.Discovery().V1().EndpointSlices()
	q.synced = append(q.synced, sl.Informer().HasSynced)
	// A slice changed or deleted by someone else is put back.
	if _, err := sl.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, n any) { q.sliceChanged(n) },
		DeleteFunc: q.sliceChanged,
	}); err != nil {
		return nil, err
	}
	return &SliceController{serviceQueue: q, client: cfg.Client, slices: sl.Lister(), log: cfg.Logger.With("component", SliceName),
		pending: map[string]map[string]time.Time{}}, nil
}

func (q *serviceQueue) sliceChanged(obj any) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		tomb, ok := obj.(cache.DeletedFinalStateUnknown)
		if !ok {
			return
		}
		if s, ok = tomb.Obj.(*discoveryv1.EndpointSlice); !ok {
			return
		}
	}
	if s.Labels[managedByLabel] == ManagedBy && s.Labels[serviceNameLabel] != "" {
		q.queue.Add(s.Namespace + "/" + s.Labels[serviceNameLabel])
	}
}

// Name implements controllers.Controller.
func (c *SliceController) Name() string { return SliceName }

// Run implements controllers.Controller.
func (c *SliceController) Run(ctx context.Context, workers int) error {
	if !controllers.WaitForSync(ctx, c.synced...) {
		return ctx.Err()
	}
	controllers.RunWorkers(ctx, c.queue, workers, c.log, c.Reconcile)
	return nil
}

// DesiredSlice is one slice's content before it is matched to an object.
type DesiredSlice struct {
	AddressType discoveryv1.AddressType
	Ports       []discoveryv1.EndpointPort
	Endpoints   []discoveryv1.Endpoint
}

// DesiredSlices groups the endpoints of svc's pods by address type and
// resolved ports, in chunks of at most MaxPerSlice.
func DesiredSlices(svc *corev1.Service, pods []*corev1.Pod) []DesiredSlice {
	type group struct {
		at    discoveryv1.AddressType
		ports []discoveryv1.EndpointPort
		eps   []discoveryv1.Endpoint
	}
	groups := map[string]*group{}
	for _, p := range pods {
		var ports []discoveryv1.EndpointPort
		for i := range svc.Spec.Ports {
			sp := &svc.Spec.Ports[i]
			port, err := ResolvePort(p, sp)
			if err != nil {
				continue
			}
			name, proto := sp.Name, sp.Protocol
			ports = append(ports, discoveryv1.EndpointPort{Name: &name, Port: &port, Protocol: &proto, AppProtocol: sp.AppProtocol})
		}
		if len(svc.Spec.Ports) > 0 && len(ports) == 0 {
			continue
		}
		sort.Slice(ports, func(i, j int) bool { return *ports[i].Name < *ports[j].Name })
		at := discoveryv1.AddressTypeIPv4
		if ip := net.ParseIP(p.Status.PodIP); ip != nil && ip.To4() == nil {
			at = discoveryv1.AddressTypeIPv6
		}
		key := string(at) + portsKey(ports)
		g := groups[key]
		if g == nil {
			g = &group{at: at, ports: ports}
			groups[key] = g
		}
		ready := podutil.IsReady(p)
		terminating := p.DeletionTimestamp != nil
		readyCond := (ready && !terminating) || svc.Spec.PublishNotReadyAddresses
		ep := discoveryv1.Endpoint{
			Addresses:  []string{p.Status.PodIP},
			Conditions: discoveryv1.EndpointConditions{Ready: &readyCond, Serving: &ready, Terminating: &terminating},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID},
		}
		if p.Spec.NodeName != "" {
			n := p.Spec.NodeName
			ep.NodeName = &n
		}
		if p.Spec.Hostname != "" && p.Spec.Subdomain == svc.Name {
			h := p.Spec.Hostname
			ep.Hostname = &h
		}
		g.eps = append(g.eps, ep)
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []DesiredSlice
	for _, k := range keys {
		g := groups[k]
		sort.Slice(g.eps, func(i, j int) bool { return g.eps[i].Addresses[0] < g.eps[j].Addresses[0] })
		for i := 0; i < len(g.eps); i += MaxPerSlice {
			out = append(out, DesiredSlice{AddressType: g.at, Ports: g.ports, Endpoints: g.eps[i:min(i+MaxPerSlice, len(g.eps))]})
		}
	}
	if len(out) == 0 && managed(svc) {
		// Upstream keeps one empty slice (with the service's ports) per service.
		var ports []discoveryv1.EndpointPort
		for i := range svc.Spec.Ports {
			sp := svc.Spec.Ports[i]
			name, proto := sp.Name, sp.Protocol
			ports = append(ports, discoveryv1.EndpointPort{Name: &name, Protocol: &proto})
		}
		out = append(out, DesiredSlice{AddressType: discoveryv1.AddressTypeIPv4, Ports: ports})
	}
	return out
}

func portsKey(ps []discoveryv1.EndpointPort) string {
	s := ""
	for _, p := range ps {
		var name, proto string
		var port int32
		if p.Name != nil {
			name = *p.Name
		}
		if p.Port != nil {
			port = *p.Port
		}
		if p.Protocol != nil {
			proto = string(*p.Protocol)
		}
		s += fmt.Sprintf("|%s/%d/%s", name, port, proto)
	}
	return s
}

// Reconcile makes the EndpointSlices of Service key match its pods.
func (c *SliceController) Reconcile(ctx context.Context, key string) (controllers.Result, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return controllers.Result{}, nil
	}
	existing, err := c.slices.EndpointSlices(ns).List(labels.SelectorFromSet(labels.Set{serviceNameLabel: name, managedByLabel: ManagedBy}))
	if err != nil {
		return controllers.Result{}, err
	}
	if c.waitForCreated(key, existing) {
		return controllers.Result{RequeueAfter: 50 * time.Millisecond}, nil
	}
	svc, err := c.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return controllers.Result{}, nil // owner references let the garbage collector remove them
	}
	if err != nil {
		return controllers.Result{}, err
	}
	if !managed(svc) {
		return controllers.Result{}, nil
	}
	pods, err := c.selectedPods(svc, true)
	if err != nil {
		return controllers.Result{}, err
	}
	desired := DesiredSlices(svc, pods)
	sort.Slice(existing, func(i, j int) bool { return existing[i].Name < existing[j].Name })
	used := map[string]bool{}
	var errs []error
	for _, d := range desired {
		var match *discoveryv1.EndpointSlice
		for _, s := range existing {
			if !used[s.Name] && s.AddressType == d.AddressType && portsKey(s.Ports) == portsKey(d.Ports) && s.DeletionTimestamp == nil {
				match = s
				break
			}
		}
		lbls := map[string]string{}
		for k, v := range svc.Labels {
			lbls[k] = v
		}
		lbls[serviceNameLabel] = svc.Name
		lbls[managedByLabel] = ManagedBy
		if svc.Spec.ClusterIP == corev1.ClusterIPNone {
			lbls[headlessLabel] = ""
		}
		if match != nil {
			used[match.Name] = true
			if apiequality.Semantic.DeepEqual(match.Endpoints, d.Endpoints) && labels.Equals(match.Labels, lbls) &&
				(len(match.Endpoints) > 0 || len(d.Endpoints) == 0) {
				continue
			}
			cp := match.DeepCopy()
			cp.Endpoints, cp.Labels = d.Endpoints, lbls
			if _, err := c.client.DiscoveryV1().EndpointSlices(ns).Update(ctx, cp, metav1.UpdateOptions{}); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		t := true
		s := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{
				GenerateName: svc.Name + "-", Namespace: ns, Labels: lbls,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: serviceAPIVersion, Kind: serviceKind, Name: svc.Name, UID: svc.UID, Controller: &t, BlockOwnerDeletion: &t}},
			},
			AddressType: d.AddressType, Ports: d.Ports, Endpoints: d.Endpoints,
		}
		created, err := c.client.DiscoveryV1().EndpointSlices(ns).Create(ctx, s, metav1.CreateOptions{})
		switch {
		case err == nil:
			c.mu.Lock()
			if c.pending[key] == nil {
				c.pending[key] = map[string]time.Time{}
			}
			c.pending[key][created.Name] = time.Now()
			c.mu.Unlock()
		case !apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
			errs = append(errs, err)
		}
	}
	for _, s := range existing {
		if used[s.Name] {
			continue
		}
		if err := c.client.DiscoveryV1().EndpointSlices(ns).Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	return controllers.Result{}, errors.Join(errs...)
}

// waitForCreated reports whether a slice created for key is still missing
// from the cache (for at most 5s).
func (c *SliceController) waitForCreated(key string, seen []*discoveryv1.EndpointSlice) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pending[key]
	for _, s := range seen {
		delete(p, s.Name)
	}
	for name, at := range p {
		if time.Since(at) > 5*time.Second {
			delete(p, name)
		}
	}
	if len(p) == 0 {
		delete(c.pending, key)
		return false
	}
	return true
}
