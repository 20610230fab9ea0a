package extserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
)

// What registration writes.
const (
	ServiceNamespace = "kube-system"
	ServiceName      = "skiff-metrics"
	APIServiceName   = "v1beta1.metrics.k8s.io"
	// ManagedByLabel marks the objects registration writes.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	managedBy      = "skiff-metrics"
)

// APIServicesGVR is apiregistration.k8s.io/v1 apiservices.
var APIServicesGVR = apiregistrationv1.SchemeGroupVersion.WithResource("apiservices")

// Registration makes the API server route metrics.k8s.io/v1beta1 here:
// an ExternalName Service kube-system/skiff-metrics naming Host, and the
// APIService v1beta1.metrics.k8s.io pointing at it on Port, trusting
// CABundle. It needs create, get and update on services (kube-system)
// and apiservices.
type Registration struct {
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	// Host is the Service's externalName: where the API server reaches
	// this server (a DNS name or an IP).
	Host     string
	Port     int32
	CABundle []byte
	// Resync is how often Run checks the objects again after they were
	// written (default 5 minutes); RetryMin and RetryMax bound the
	// doubling wait after a failure (default 1 s and 30 s).
	Resync, RetryMin, RetryMax time.Duration
	Logger                     *slog.Logger
}

// Service is the ExternalName Service the APIService names.
func (r *Registration) Service() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ServiceNamespace, Name: ServiceName, Labels: map[string]string{ManagedByLabel: managedBy}},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeExternalName, ExternalName: r.Host,
			Ports: []corev1.ServicePort{{Name: "https", Protocol: corev1.ProtocolTCP, Port: r.Port, TargetPort: intstr.FromInt32(r.Port)}},
		},
	}
}

// APIService is the APIService v1beta1.metrics.k8s.io, with
// metrics-server's priorities.
func (r *Registration) APIService() *apiregistrationv1.APIService {
	return &apiregistrationv1.APIService{
		TypeMeta:   metav1.TypeMeta{APIVersion: apiregistrationv1.SchemeGroupVersion.String(), Kind: "APIService"},
		ObjectMeta: metav1.ObjectMeta{Name: APIServiceName, Labels: map[string]string{ManagedByLabel: managedBy}},
		Spec: apiregistrationv1.APIServiceSpec{
			Service:  &apiregistrationv1.ServiceReference{Namespace: ServiceNamespace, Name: ServiceName, Port: &r.Port},
			Group:    "metrics.k8s.io",
			Version:  "v1beta1",
			CABundle: r.CABundle, GroupPriorityMinimum: 100, VersionPriority: 100,
		},
	}
}

// Ensure creates the Service and the APIService, or updates them where
// they differ. An API server that does not serve apiservices answers
// NotFound (apierrors.IsNotFound).
func (r *Registration) Ensure(ctx context.Context) error {
	if err := r.ensureService(ctx); err != nil {
		return fmt.Errorf("service %s/%s: %w", ServiceNamespace, ServiceName, err)
	}
	if err := r.ensureAPIService(ctx); err != nil {
		return fmt.Errorf("apiservice %s: %w", APIServiceName, err)
	}
	return nil
}

func (r *Registration) ensureService(ctx context.Context) error {
	want := r.Service()
	svcs := r.Client.CoreV1().Services(ServiceNamespace)
	cur, err := svcs.Get(ctx, ServiceName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = svcs.Create(ctx, want, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	if cur.Spec.Type == want.Spec.Type && cur.Spec.ExternalName == want.Spec.ExternalName &&
		len(cur.Spec.Ports) == 1 && cur.Spec.Ports[0].Port == r.Port && cur.Spec.Ports[0].TargetPort == want.Spec.Ports[0].TargetPort {
		return nil
	}
	next := cur.DeepCopy()
	if next.Labels == nil {
		next.Labels = map[string]string{}
	}
	next.Labels[ManagedByLabel] = managedBy
	// An ExternalName Service has no cluster IPs, node ports or IP families.
	next.Spec = want.Spec
	_, err = svcs.Update(ctx, next, metav1.UpdateOptions{})
	return err
}

func (r *Registration) ensureAPIService(ctx context.Context) error {
	want := r.APIService()
	res := r.Dynamic.Resource(APIServicesGVR)
	cur, err := res.Get(ctx, APIServiceName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && !isUnknownResource(err) {
		obj, cerr := toUnstructured(want)
		if cerr != nil {
			return cerr
		}
		_, err = res.Create(ctx, obj, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	var have apiregistrationv1.APIService
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(cur.Object, &have); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	if equality.Semantic.DeepEqual(have.Spec, want.Spec) && have.Labels[ManagedByLabel] == managedBy {
		return nil
	}
	spec, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&want.Spec)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	next := cur.DeepCopy()
	next.Object["spec"] = spec
	labels := next.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[ManagedByLabel] = managedBy
	next.SetLabels(labels)
	_, err = res.Update(ctx, next, metav1.UpdateOptions{})
	return err
}

// isUnknownResource tells a 404 for the whole resource (the API server
// has no apiservices: client-go's generic "the server could not find the
// requested resource (get apiservices...)") from one for the object
// ("... not found").
func isUnknownResource(err error) bool {
	var se apierrors.APIStatus
	if !errors.As(err, &se) || se.Status().Code != http.StatusNotFound {
		return false
	}
	return strings.HasPrefix(se.Status().Message, "the server could not find the requested resource")
}

func toUnstructured(o *apiregistrationv1.APIService) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetGroupVersionKind(schema.GroupVersionKind{Group: apiregistrationv1.GroupName, Version: "v1", Kind: "APIService"})
	return u, nil
}

// Run ensures the registration until ctx ends: after a failure it logs
// and retries (doubling waits, RetryMin to RetryMax); after a success it
// checks again every Resync. It never gives up: an API server that does
// not serve apiservices yet, or an identity without the rights, is a
// logged retry, not a crash.
func (r *Registration) Run(ctx context.Context) {
	resync, wait, maxWait := r.Resync, r.RetryMin, r.RetryMax
	if resync <= 0 {
		resync = 5 * time.Minute
	}
	if wait <= 0 {
		wait = time.Second
	}
	if maxWait <= 0 {
		maxWait = 30 * time.Second
	}
	log := r.Logger
	if log == nil {
		log = slog.Default()
	}
	next, registered := wait, false
	for {
		d := resync
		if err := r.Ensure(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			msg := "registration failed; retrying"
			if isUnknownResource(err) {
				msg = "registration failed (the API server serves no apiregistration.k8s.io/v1 apiservices); retrying"
			}
			log.Warn(msg, "err", err, "retry_in", next)
			d, next, registered = next, min(2*next, maxWait), false
		} else {
			if !registered {
				log.Info("registered with API aggregation", "apiservice", APIServiceName, "service", ServiceNamespace+"/"+ServiceName, "host", r.Host, "port", r.Port)
			}
			next, registered = wait, true
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
