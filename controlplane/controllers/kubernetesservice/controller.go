// Package kubernetesservice keeps a Service that the control plane itself
// backs — `default/kubernetes` (the API server) and `kube-system/kube-dns`
// (the DNS add-on) — with its Endpoints and EndpointSlice pointing at one
// fixed address, as kube-apiserver's own reconcilers do. See README.md.
package kubernetesservice

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
)

// Name is the controller's name (and its --disable name).
const Name = "kubernetes-service"

// resync re-checks the objects even when nothing changed, as upstream's
// endpoint reconciler does every 10s.
const resync = 10 * time.Second

// Config is what the controller needs. The zero Namespace/Service/Ports
// describe `default/kubernetes`: port 443 `https` to Port.
type Config struct {
	Client kubernetes.Interface
	// Namespace and Service name the Service (default default/kubernetes);
	// Labels are set on it when it is created.
	Namespace, Service string
	Labels             map[string]string
	// ClusterIP is the Service's address (the first of the service range
	// for `kubernetes`).
	ClusterIP string
	// Address is the one endpoint; Ports the Service's ports, whose
	// numeric TargetPorts are the endpoint's ports. Unset Ports mean one
	// port 443 named https to Port (the API server's).
	Address string
	Port    int32
	Ports   []corev1.ServicePort
	// Peers, when set, returns the addresses of the other live servers
	// behind the Service (the API servers of an HA cluster, each serving
	// the same ports): the endpoints are Address and these. An error
	// fails the pass, leaving the endpoints as they are.
	Peers  func(ctx context.Context) ([]string, error)
	Logger *slog.Logger
}

// Controller reconciles the three objects.
type Controller struct {
	cfg Config
	log *slog.Logger
}

// New returns the controller.
func New(cfg Config) *Controller {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Namespace == "" {
		cfg.Namespace = metav1.NamespaceDefault
	}
	if cfg.Service == "" {
		cfg.Service = "kubernetes"
		cfg.Labels = map[string]string{"component": "apiserver", "provider": "kubernetes"}
	}
	if len(cfg.Ports) == 0 {
		cfg.Ports = []corev1.ServicePort{{Name: "https", Protocol: corev1.ProtocolTCP, Port: 443, TargetPort: intstr.FromInt32(cfg.Port)}}
	}
	return &Controller{cfg: cfg, log: cfg.Logger.With("component", Name, "service", cfg.Namespace+"/"+cfg.Service)}
}

var _ controllers.Controller = (*Controller)(nil)

// Name implements controllers.Controller.
func (c *Controller) Name() string { return Name }

// Run implements controllers.Controller.
func (c *Controller) Run(ctx context.Context, workers int) error {
	f := informers.NewSharedInformerFactoryWithOptions(c.cfg.Client, resync,
		informers.WithNamespace(c.cfg.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", c.cfg.Service).String()
		}))
	q := controllers.NewQueue(Name)
	h := controllers.Enqueue(q)
	svcs := f.Core().V1().Services()
	eps := f.Core().V1().Endpoints()
	slices := f.Discovery().V1().EndpointSlices()
	if _, err := svcs.Informer().AddEventHandler(h); err != nil {
		return err
	}
	if _, err := eps.Informer().AddEventHandler(h); err != nil {
		return err
	}
	if _, err := slices.Informer().AddEventHandler(h); err != nil {
		return err
	}
	f.Start(ctx.Done())
	defer f.Shutdown()
	if !controllers.WaitForSync(ctx, svcs.Informer().HasSynced, eps.Informer().HasSynced, slices.Informer().HasSynced) {
		return ctx.Err()
	}
	q.Add(c.cfg.Namespace + "/" + c.cfg.Service)
	controllers.RunWorkers(ctx, q, 1, c.log, func(ctx context.Context, _ string) (controllers.Result, error) {
		return controllers.Result{}, c.Reconcile(ctx)
	})
	return nil
}

// Reconcile creates or corrects the Service, Endpoints and EndpointSlice.
// It reads through the API (three small GETs), so it is also what the
// server calls once at startup before the informers exist.
func (c *Controller) Reconcile(ctx context.Context) error {
	if err := c.service(ctx); err != nil {
		return fmt.Errorf("service %s/%s: %w", c.cfg.Namespace, c.cfg.Service, err)
	}
	addrs, err := c.addresses(ctx)
	if err != nil {
		return fmt.Errorf("endpoints %s/%s: peers: %w", c.cfg.Namespace, c.cfg.Service, err)
	}
	if err := c.endpoints(ctx, addrs); err != nil {
		return fmt.Errorf("endpoints %s/%s: %w", c.cfg.Namespace, c.cfg.Service, err)
	}
	if err := c.endpointSlice(ctx, addrs); err != nil {
		return fmt.Errorf("endpointslice %s/%s: %w", c.cfg.Namespace, c.cfg.Service, err)
	}
	return nil
}

// addresses are the endpoints' addresses: Address and the peers of the
// same family, sorted (every server writes the same list).
func (c *Controller) addresses(ctx context.Context) ([]string, error) {
	self, err := netip.ParseAddr(c.cfg.Address)
	if err != nil {
		return []string{c.cfg.Address}, nil
	}
	out := []netip.Addr{self.Unmap()}
	if c.cfg.Peers != nil {
		peers, err := c.cfg.Peers(ctx)
		if err != nil {
			return nil, err
		}
		for _, p := range peers {
			if a, err := netip.ParseAddr(p); err == nil && a.Unmap().Is4() == out[0].Is4() {
				out = append(out, a.Unmap())
			}
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	out = slices.Compact(out)
	strs := make([]string, len(out))
	for i, a := range out {
		strs[i] = a.String()
	}
	return strs, nil
}

// samePorts compares the fields the controller sets.
func samePorts(a, b []corev1.ServicePort) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Port != b[i].Port || a[i].Protocol != b[i].Protocol || a[i].TargetPort != b[i].TargetPort {
			return false
		}
	}
	return true
}

func (c *Controller) service(ctx context.Context) error {
	cli := c.cfg.Client.CoreV1().Services(c.cfg.Namespace)
	cur, err := cli.Get(ctx, c.cfg.Service, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: c.cfg.Service, Namespace: c.cfg.Namespace, Labels: c.cfg.Labels},
			Spec: corev1.ServiceSpec{
				Type:            corev1.ServiceTypeClusterIP,
				ClusterIP:       c.cfg.ClusterIP,
				ClusterIPs:      []string{c.cfg.ClusterIP},
				Ports:           c.cfg.Ports,
				SessionAffinity: corev1.ServiceAffinityNone,
			},
		}
		_, err = cli.Create(ctx, svc, metav1.CreateOptions{})
		if err == nil {
			c.log.Info("created the service", "clusterIP", c.cfg.ClusterIP)
		}
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	}
	if err != nil {
		return err
	}
	// Only the ports and type are corrected; the cluster IP is immutable.
	want := c.cfg.Ports
	if cur.Spec.Type == corev1.ServiceTypeClusterIP && samePorts(cur.Spec.Ports, want) {
		return nil
	}
	next := cur.DeepCopy()
	next.Spec.Type = corev1.ServiceTypeClusterIP
	next.Spec.Ports = want
	_, err = cli.Update(ctx, next, metav1.UpdateOptions{})
	return err
}

func (c *Controller) endpoints(ctx context.Context, addrs []string) error {
	cli := c.cfg.Client.CoreV1().Endpoints(c.cfg.Namespace)
	var ports []corev1.EndpointPort
	for _, p := range c.cfg.Ports {
		ports = append(ports, corev1.EndpointPort{Name: p.Name, Port: p.TargetPort.IntVal, Protocol: p.Protocol})
	}
	subset := corev1.EndpointSubset{Ports: ports}
	for _, a := range addrs {
		subset.Addresses = append(subset.Addresses, corev1.EndpointAddress{IP: a})
	}
	subsets := []corev1.EndpointSubset{subset}
	labels := map[string]string{discoveryv1.LabelSkipMirror: "true"}
	cur, err := cli.Get(ctx, c.cfg.Service, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cli.Create(ctx, &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: c.cfg.Service, Namespace: c.cfg.Namespace, Labels: labels}, Subsets: subsets}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	}
	if err != nil {
		return err
	}
	if reflect.DeepEqual(cur.Subsets, subsets) && cur.Labels[discoveryv1.LabelSkipMirror] == "true" {
		return nil
	}
	next := cur.DeepCopy()
	next.Subsets = subsets
	if next.Labels == nil {
		next.Labels = map[string]string{}
	}
	next.Labels[discoveryv1.LabelSkipMirror] = "true"
	_, err = cli.Update(ctx, next, metav1.UpdateOptions{})
	return err
}

func (c *Controller) endpointSlice(ctx context.Context, addrs []string) error {
	name := c.cfg.Service
	cli := c.cfg.Client.DiscoveryV1().EndpointSlices(c.cfg.Namespace)
	ready := true
	addrType := discoveryv1.AddressTypeIPv4
	if ip := parseIP(c.cfg.Address); ip != nil && ip.To4() == nil {
		addrType = discoveryv1.AddressTypeIPv6
	}
	var endpoints []discoveryv1.Endpoint
	for _, a := range addrs {
		endpoints = append(endpoints, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
	}
	var ports []discoveryv1.EndpointPort
	for _, p := range c.cfg.Ports {
		ports = append(ports, discoveryv1.EndpointPort{Name: &p.Name, Protocol: &p.Protocol, Port: &p.TargetPort.IntVal})
	}
	labels := map[string]string{discoveryv1.LabelServiceName: name}
	cur, err := cli.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cli.Create(ctx, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: c.cfg.Namespace, Labels: labels},
			AddressType: addrType, Endpoints: endpoints, Ports: ports,
		}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	}
	if err != nil {
		return err
	}
	if cur.AddressType != addrType {
		// The address type is immutable: replace the slice.
		if err := cli.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &cur.UID}}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		return c.endpointSlice(ctx, addrs)
	}
	if reflect.DeepEqual(cur.Endpoints, endpoints) && reflect.DeepEqual(cur.Ports, ports) && cur.Labels[discoveryv1.LabelServiceName] == name {
		return nil
	}
	next := cur.DeepCopy()
	next.Endpoints, next.Ports = endpoints, ports
	if next.Labels == nil {
		next.Labels = map[string]string{}
	}
	next.Labels[discoveryv1.LabelServiceName] = name
	_, err = cli.Update(ctx, next, metav1.UpdateOptions{})
	return err
}

func parseIP(s string) net.IP { return net.ParseIP(s) }
