// Package serviceaccount holds two per-namespace controllers: the
// ServiceAccount controller (a `default` ServiceAccount in every namespace)
// and the root CA publisher (the ConfigMap kube-root-ca.crt with the
// cluster CA in every namespace). See README.md.
package serviceaccount

import (
	"context"
	"log/slog"

	"github.com/skiffhq/skiff/controlplane/controllers"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Names, as upstream.
const (
	Name          = "serviceaccount-controller"
	RootCAName    = "root-ca-certificate-publisher-controller"
	DefaultSA     = "default"
	RootCAConfig  = "kube-root-ca.crt"
	RootCAKey     = "ca.crt"
	descriptionAn = "kubernetes.io/description"
	rootCADesc    = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."
)

// Config is what both controllers need.
type Config struct {
	Client    kubernetes.Interface
	Informers informers.SharedInformerFactory
	Logger    *slog.Logger
	// RootCA is the PEM bundle to publish (root CA publisher only).
	RootCA []byte
}

// nsLoop is a namespace-keyed loop that also wakes on changes to one named
// object in each namespace.
type nsLoop struct {
	name   string
	ns     corelisters.NamespaceLister
	synced []cache.InformerSynced
	queue  workqueue.TypedRateLimitingInterface[string]
	log    *slog.Logger
	sync   controllers.ReconcileFunc
	// start runs informers the loop owns (not the shared factory's).
	start func(stop <-chan struct{})
}

func (l *nsLoop) Name() string { return l.name }

func (l *nsLoop) Run(ctx context.Context, workers int) error {
	if l.start != nil {
		l.start(ctx.Done())
	}
	if !controllers.WaitForSync(ctx, l.synced...) {
		return ctx.Err()
	}
	controllers.RunWorkers(ctx, l.queue, workers, l.log, l.sync)
	return nil
}

func newLoop(cfg Config, name, queue string, child cache.SharedIndexInformer, childName string) (*nsLoop, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ns := cfg.Informers.Core().V1().Namespaces()
	l := &nsLoop{name: name, ns: ns.Lister(), queue: controllers.NewQueue(queue), log: cfg.Logger.With("component", name),
		synced: []cache.InformerSynced{ns.Informer().HasSynced, child.HasSynced}}
	nsHandler := controllers.Enqueue(l.queue)
	nsHandler.DeleteFunc = nil
	if _, err := ns.Informer().AddEventHandler(nsHandler); err != nil {
		return nil, err
	}
	onChild := func(obj any) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		if m, ok := obj.(metav1.Object); ok && m.GetName() == childName {
			l.queue.Add(m.GetNamespace())
		}
	}
	if _, err := child.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, n any) { onChild(n) }, DeleteFunc: onChild,
	}); err != nil {
		return nil, err
	}
	return l, nil
}

// activeNamespace returns the namespace unless it is gone or terminating.
func (l *nsLoop) activeNamespace(name string) (*corev1.Namespace, bool) {
	ns, err := l.ns.Get(name)
	if err != nil || ns.Status.Phase == corev1.NamespaceTerminating || ns.DeletionTimestamp != nil {
		return nil, false
	}
	return ns, true
}

func ignorable(err error) bool {
	return err == nil || apierrors.IsAlreadyExists(err) || apierrors.IsNotFound(err) ||
		apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause)
}

// New returns the ServiceAccount controller.
func New(cfg Config) (controllers.Controller, error) {
	sa := cfg.Informers.Core().V1().ServiceAccounts()
	l, err := newLoop(cfg, Name, "serviceaccount", sa.Informer(), DefaultSA)
	if err != nil {
		return nil, err
	}
	lister := sa.Lister()
	l.sync = func(ctx context.Context, key string) (controllers.Result, error) {
		if _, ok := l.activeNamespace(key); !ok {
			return controllers.Result{}, nil
		}
		if _, err := lister.ServiceAccounts(key).Get(DefaultSA); err == nil {
			return controllers.Result{}, nil
		}
		_, err := cfg.Client.CoreV1().ServiceAccounts(key).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: DefaultSA}}, metav1.CreateOptions{})
		if ignorable(err) {
			return controllers.Result{}, nil
		}
		return controllers.Result{}, err
	}
	return l, nil
}

// NewRootCAPublisher returns the root CA publisher.
func NewRootCAPublisher(cfg Config) (controllers.Controller, error) {
	// Only kube-root-ca.crt matters: the loop watches that name alone, so
	// writes of other ConfigMaps cost it nothing.
	f := informers.NewSharedInformerFactoryWithOptions(cfg.Client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", RootCAConfig).String()
	}))
	cm := f.Core().V1().ConfigMaps()
	l, err := newLoop(cfg, RootCAName, "root_ca_cert_publisher", cm.Informer(), RootCAConfig)
	if err != nil {
		return nil, err
	}
	l.start = f.Start
	lister := cm.Lister()
	want := string(cfg.RootCA)
	l.sync = func(ctx context.Context, key string) (controllers.Result, error) {
		if _, ok := l.activeNamespace(key); !ok {
			return controllers.Result{}, nil
		}
		cur, err := lister.ConfigMaps(key).Get(RootCAConfig)
		if apierrors.IsNotFound(err) {
			_, err := cfg.Client.CoreV1().ConfigMaps(key).Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: RootCAConfig, Annotations: map[string]string{descriptionAn: rootCADesc}},
				Data:       map[string]string{RootCAKey: want},
			}, metav1.CreateOptions{})
			if ignorable(err) {
				return controllers.Result{}, nil
			}
			return controllers.Result{}, err
		}
		if err != nil {
			return controllers.Result{}, err
		}
		if cur.Data[RootCAKey] == want && len(cur.Data) == 1 && cur.Annotations[descriptionAn] == rootCADesc {
			return controllers.Result{}, nil
		}
		cp := cur.DeepCopy()
		cp.Data = map[string]string{RootCAKey: want}
		if cp.Annotations == nil {
			cp.Annotations = map[string]string{}
		}
		cp.Annotations[descriptionAn] = rootCADesc
		_, err = cfg.Client.CoreV1().ConfigMaps(key).Update(ctx, cp, metav1.UpdateOptions{})
		if ignorable(err) {
			return controllers.Result{}, nil
		}
		return controllers.Result{}, err
	}
	return l, nil
}
