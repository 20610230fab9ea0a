// Package kubernetesservice keeps the `kubernetes` Service in namespace
// default, its Endpoints and its EndpointSlice pointing at the API server,
// as kube-apiserver's own reconcilers do. See README.md.
package kubernetesservice

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"reflect"
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

const (
	namespace = metav1.NamespaceDefault
	name      = "kubernetes"
	key       = namespace + "/" + name
	// resync re-checks the objects even when nothing changed, as upstream's
	// endpoint reconciler does every 10s.
	resync = 10 * time.Second
)

// Config is what the controller needs.
type Config struct {
	Client kubernetes.Interface
	// ClusterIP is the Service's address (the first of the service range).
	ClusterIP string
	// Address and Port are where the API server listens.
	Address string
	Port    int32
	Logger  *slog.Logger
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
	return &Controller{cfg: cfg, log: cfg.Logger.With("component", Name)}
}

var _ controllers.Controller = (*Controller)(nil)

// Name implements controllers.Controller.
func (c *Controller) Name() string { return Name }

// Run implements controllers.Controller.
func (c *Controller) Run(ctx context.Context, workers int) error {
	f := informers.NewSharedInformerFactoryWithOptions(c.cfg.Client, resync,
		informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
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
	q.Add(key)
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
		return fmt.Errorf("kubernetes service: %w", err)
	}
	if err := c.endpoints(ctx); err != nil {
		return fmt.Errorf("kubernetes endpoints: %w", err)
	}
	if err := c.endpointSlice(ctx); err != nil {
		return fmt.Errorf("kubernetes endpointslice: %w", err)
	}
	return nil
}

func (c *Controller) ports() []corev1.ServicePort {
	return []corev1.ServicePort{{Name: "https", Protocol: corev1.ProtocolTCP, Port: 443, TargetPort: intstr.FromInt32(c.cfg.Port)}}
}

func (c *Controller) service(ctx context.Context) error {
	cli := c.cfg.Client.CoreV1().Services(namespace)
	cur, err := cli.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace,
				Labels: map[string]string{"component": "apiserver", "provider": "kubernetes"}},
			Spec: corev1.ServiceSpec{
				Type:            corev1.ServiceTypeClusterIP,
				ClusterIP:       c.cfg.ClusterIP,
				ClusterIPs:      []string{c.cfg.ClusterIP},
				Ports:           c.ports(),
				SessionAffinity: corev1.ServiceAffinityNone,
			},
		}
		_, err = cli.Create(ctx, svc, metav1.CreateOptions{})
		if err == nil {
			c.log.Info("created the kubernetes service", "clusterIP", c.cfg.ClusterIP)
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
	want := c.ports()
	if cur.Spec.Type == corev1.ServiceTypeClusterIP && len(cur.Spec.Ports) == 1 &&
		cur.Spec.Ports[0].Name == want[0].Name && cur.Spec.Ports[0].Port == want[0].Port &&
		cur.Spec.Ports[0].Protocol == want[0].Protocol && cur.Spec.Ports[0].TargetPort == want[0].TargetPort {
		return nil
	}
	next := cur.DeepCopy()
	next.Spec.Type = corev1.ServiceTypeClusterIP
	next.Spec.Ports = want
	_, err = cli.Update(ctx, next, metav1.UpdateOptions{})
	return err
}

func (c *Controller) endpoints(ctx context.Context) error {
	cli := c.cfg.Client.CoreV1().Endpoints(namespace)
	subsets := []corev1.EndpointSubset{{
		Addresses: []corev1.EndpointAddress{{IP: c.cfg.Address}},
		Ports:     []corev1.EndpointPort{{Name: "https", Port: c.cfg.Port, Protocol: corev1.ProtocolTCP}},
	}}
	labels := map[string]string{discoveryv1.LabelSkipMirror: "true"}
	cur, err := cli.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cli.Create(ctx, &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels}, Subsets: subsets}, metav1.CreateOptions{})
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

func (c *Controller) endpointSlice(ctx context.Context) error {
	cli := c.cfg.Client.DiscoveryV1().EndpointSlices(namespace)
	ready := true
	portName, proto, port := "https", corev1.ProtocolTCP, c.cfg.Port
	addrType := discoveryv1.AddressTypeIPv4
	if ip := parseIP(c.cfg.Address); ip != nil && ip.To4() == nil {
		addrType = discoveryv1.AddressTypeIPv6
	}
	endpoints := []discoveryv1.Endpoint{{Addresses: []string{c.cfg.Address}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}}
	ports := []discoveryv1.EndpointPort{{Name: &portName, Protocol: &proto, Port: &port}}
	labels := map[string]string{discoveryv1.LabelServiceName: name}
	cur, err := cli.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cli.Create(ctx, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels},
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
		return c.endpointSlice(ctx)
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
