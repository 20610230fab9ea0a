// Package endpoints holds the Endpoints controller and, beside it, the
// EndpointSlice controller: both keep the addresses of the pods selected by
// each Service, following pod readiness as soon as it changes. See README.md.
package endpoints

import (
	"context"
	"fmt"
	"log/slog"
	"sort"

	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/controllers/internal/podutil"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Name is upstream's name of the Endpoints controller.
const Name = "endpoints-controller"

// headlessLabel marks the Endpoints of a headless Service, as upstream.
const headlessLabel = "service.kubernetes.io/headless"

// Config is what the controllers of this package need.
type Config struct {
	Client    kubernetes.Interface
	Informers informers.SharedInformerFactory
	Logger    *slog.Logger
}

// serviceQueue is what both controllers share: a queue of Service keys fed
// by Service and Pod events.
type serviceQueue struct {
	services corelisters.ServiceLister
	pods     corelisters.PodLister
	synced   []cache.InformerSynced
	queue    workqueue.TypedRateLimitingInterface[string]
}

func newServiceQueue(f informers.SharedInformerFactory, name string) (*serviceQueue, error) {
	svc, pods := f.Core().V1().Services(), f.Core().V1().Pods()
	q := &serviceQueue{services: svc.Lister(), pods: pods.Lister(), queue: controllers.NewQueue(name),
		synced: []cache.InformerSynced{svc.Informer().HasSynced, pods.Informer().HasSynced}}
	if _, err := svc.Informer().AddEventHandler(controllers.Enqueue(q.queue)); err != nil {
		return nil, err
	}
	if _, err := pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: q.podChanged,
		UpdateFunc: func(o, n any) {
			if o.(*corev1.Pod).ResourceVersion == n.(*corev1.Pod).ResourceVersion {
				return
			}
			q.podChanged(n)
			if !labels.Equals(o.(*corev1.Pod).Labels, n.(*corev1.Pod).Labels) {
				q.podChanged(o)
			}
		},
		DeleteFunc: q.podChanged,
	}); err != nil {
		return nil, err
	}
	return q, nil
}

// podChanged queues every Service whose selector matches the pod.
func (q *serviceQueue) podChanged(obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		tomb, ok := obj.(cache.DeletedFinalStateUnknown)
		if !ok {
			return
		}
		if p, ok = tomb.Obj.(*corev1.Pod); !ok {
			return
		}
	}
	svcs, err := q.services.Services(p.Namespace).List(labels.Everything())
	if err != nil {
		return
	}
	for _, s := range svcs {
		if s.Spec.Selector != nil && labels.SelectorFromValidatedSet(s.Spec.Selector).Matches(labels.Set(p.Labels)) {
			q.queue.Add(p.Namespace + "/" + s.Name)
		}
	}
}

// selectedPods returns the pods of svc's selector that may be endpoints:
// with an IP, not finished, and (unless publishNotReadyAddresses) not
// terminating when includeTerminating is false.
func (q *serviceQueue) selectedPods(svc *corev1.Service, includeTerminating bool) ([]*corev1.Pod, error) {
	pods, err := q.pods.Pods(svc.Namespace).List(labels.SelectorFromValidatedSet(svc.Spec.Selector))
	if err != nil {
		return nil, err
	}
	var out []*corev1.Pod
	for _, p := range pods {
		if p.Status.PodIP == "" || podutil.IsTerminated(p) {
			continue
		}
		if p.DeletionTimestamp != nil && !includeTerminating && !svc.Spec.PublishNotReadyAddresses {
			continue
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// managed reports whether the controllers own svc's endpoints: a selector
// and not ExternalName.
func managed(svc *corev1.Service) bool {
	return svc.Spec.Selector != nil && svc.Spec.Type != corev1.ServiceTypeExternalName
}

// ResolvePort finds the container port targetPort names (or is) in pod.
func ResolvePort(pod *corev1.Pod, sp *corev1.ServicePort) (int32, error) {
	tp := sp.TargetPort
	switch {
	case tp.Type == intstr.String && tp.StrVal != "":
		for _, c := range pod.Spec.Containers {
			for _, p := range c.Ports {
				if p.Name == tp.StrVal && p.Protocol == sp.Protocol {
					return p.ContainerPort, nil
				}
			}
		}
		return 0, fmt.Errorf("no container port named %q in pod %s", tp.StrVal, pod.Name)
	case tp.Type == intstr.Int && tp.IntVal != 0:
		return tp.IntVal, nil
	}
	return sp.Port, nil
}

// Controller is the Endpoints controller.
type Controller struct {
	*serviceQueue
	client kubernetes.Interface
	eps    corelisters.EndpointsLister
	log    *slog.Logger
}

var _ controllers.Controller = (*Controller)(nil)

// New returns the Endpoints controller.
func New(cfg Config) (*Controller, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	q, err := newServiceQueue(cfg.Informers, "endpoint")
	if err != nil {
		return nil, err
	}
	eps := cfg.Informers.Core().V1().Endpoints()
	q.synced = append(q.synced, eps.Informer().HasSynced)
	return &Controller{serviceQueue: q, client: cfg.Client, eps: eps.Lister(), log: cfg.Logger.With("component", Name)}, nil
}

// Name implements controllers.Controller.
func (c *Controller) Name() string { return Name }

// Run implements controllers.Controller.
func (c *Controller) Run(ctx context.Context, workers int) error {
	if !controllers.WaitForSync(ctx, c.synced...) {
		return ctx.Err()
	}
	controllers.RunWorkers(ctx, c.queue, workers, c.log, c.Reconcile)
	return nil
}

// Subsets computes the Endpoints subsets of svc over pods.
func Subsets(svc *corev1.Service, pods []*corev1.Pod) []corev1.EndpointSubset {
	type group struct {
		ports    []corev1.EndpointPort
		ready    []corev1.EndpointAddress
		notReady []corev1.EndpointAddress
	}
	groups := map[string]*group{}
	for _, p := range pods {
		var ports []corev1.EndpointPort
		for i := range svc.Spec.Ports {
			sp := &svc.Spec.Ports[i]
			port, err := ResolvePort(p, sp)
			if err != nil {
				continue
			}
			ports = append(ports, corev1.EndpointPort{Name: sp.Name, Port: port, Protocol: sp.Protocol, AppProtocol: sp.AppProtocol})
		}
		if len(svc.Spec.Ports) > 0 && len(ports) == 0 {
			continue
		}
		sort.Slice(ports, func(i, j int) bool { return ports[i].Name < ports[j].Name })
		key := fmt.Sprint(ports)
		g := groups[key]
		if g == nil {
			g = &group{ports: ports}
			groups[key] = g
		}
		addr := corev1.EndpointAddress{IP: p.Status.PodIP, TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID}}
		if p.Spec.NodeName != "" {
			n := p.Spec.NodeName
			addr.NodeName = &n
		}
		if p.Spec.Hostname != "" && p.Spec.Subdomain == svc.Name {
			addr.Hostname = p.Spec.Hostname
		}
		if svc.Spec.PublishNotReadyAddresses || (podutil.IsReady(p) && p.DeletionTimestamp == nil) {
			g.ready = append(g.ready, addr)
		} else {
			g.notReady = append(g.notReady, addr)
		}
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []corev1.EndpointSubset
	for _, k := range keys {
		g := groups[k]
		byIP := func(a []corev1.EndpointAddress) {
			sort.Slice(a, func(i, j int) bool { return a[i].IP < a[j].IP })
		}
		byIP(g.ready)
		byIP(g.notReady)
		out = append(out, corev1.EndpointSubset{Addresses: g.ready, NotReadyAddresses: g.notReady, Ports: g.ports})
	}
	return out
}

// Reconcile writes the Endpoints of Service key.
func (c *Controller) Reconcile(ctx context.Context, key string) (controllers.Result, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return controllers.Result{}, nil
	}
	svc, err := c.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		err := c.client.CoreV1().Endpoints(ns).Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return controllers.Result{}, err
		}
		return controllers.Result{}, nil
	}
	if err != nil {
		return controllers.Result{}, err
	}
	if !managed(svc) {
		return controllers.Result{}, nil
	}
	pods, err := c.selectedPods(svc, false)
	if err != nil {
		return controllers.Result{}, err
	}
	subsets := Subsets(svc, pods)
	lbls := map[string]string{}
	for k, v := range svc.Labels {
		lbls[k] = v
	}
	if svc.Spec.ClusterIP == corev1.ClusterIPNone {
		lbls[headlessLabel] = ""
	}
	cur, err := c.eps.Endpoints(ns).Get(name)
	if apierrors.IsNotFound(err) {
		ep := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: lbls}, Subsets: subsets}
		_, err := c.client.CoreV1().Endpoints(ns).Create(ctx, ep, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) || (err != nil && apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause)) {
			return controllers.Result{}, nil
		}
		return controllers.Result{}, err
	}
	if err != nil {
		return controllers.Result{}, err
	}
	if apiequality.Semantic.DeepEqual(normalize(cur.Subsets), normalize(subsets)) && labelsEqual(cur.Labels, lbls) {
		return controllers.Result{}, nil
	}
	cp := cur.DeepCopy()
	cp.Subsets = subsets
	cp.Labels = lbls
	if _, err := c.client.CoreV1().Endpoints(ns).Update(ctx, cp, metav1.UpdateOptions{}); err != nil {
		return controllers.Result{}, fmt.Errorf("update endpoints %s: %w", key, err)
	}
	return controllers.Result{}, nil
}

func normalize(s []corev1.EndpointSubset) []corev1.EndpointSubset {
	if len(s) == 0 {
		return nil
	}
	out := make([]corev1.EndpointSubset, len(s))
	for i, x := range s {
		out[i] = *x.DeepCopy()
		if len(out[i].Addresses) == 0 {
			out[i].Addresses = nil
		}
		if len(out[i].NotReadyAddresses) == 0 {
			out[i].NotReadyAddresses = nil
		}
	}
	return out
}

func labelsEqual(a, b map[string]string) bool {
	return labels.Equals(a, b)
}
