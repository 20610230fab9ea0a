// Package tokencleaner deletes expired bootstrap tokens: Secrets of type
// bootstrap.kubernetes.io/token in kube-system whose expiration has passed
// (upstream's token-cleaner controller). It requeues each token for its
// expiry time, so tokens go away on time without polling.
package tokencleaner

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// Name is upstream's controller name.
const Name = "token-cleaner-controller"

const secretType = corev1.SecretTypeBootstrapToken

// Controller is the token cleaner.
type Controller struct {
	client kubernetes.Interface
	log    *slog.Logger
	lister corelisters.SecretLister
	now    func() time.Time
}

// New creates the controller.
func New(client kubernetes.Interface, log *slog.Logger) *Controller {
	if log == nil {
		log = slog.Default()
	}
	return &Controller{client: client, log: log.With("component", "tokencleaner"), now: time.Now}
}

// Name implements controllers.Controller.
func (c *Controller) Name() string { return Name }

// Run implements controllers.Controller.
func (c *Controller) Run(ctx context.Context, workers int) error {
	f := informers.NewSharedInformerFactoryWithOptions(c.client, 0, informers.WithNamespace(metav1.NamespaceSystem))
	inf := f.Core().V1().Secrets()
	c.lister = inf.Lister()
	q := controllers.NewQueue(Name)
	if _, err := inf.Informer().AddEventHandler(controllers.Enqueue(q)); err != nil {
		return fmt.Errorf("secret informer: %w", err)
	}
	f.Start(ctx.Done())
	if !controllers.WaitForSync(ctx, inf.Informer().HasSynced) {
		return ctx.Err()
	}
	controllers.RunWorkers(ctx, q, workers, c.log, c.Reconcile)
	return nil
}

// Reconcile deletes the token Secret key when it has expired, or asks to
// come back at its expiry.
func (c *Controller) Reconcile(ctx context.Context, key string) (controllers.Result, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return controllers.Result{}, nil
	}
	s, err := c.lister.Secrets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return controllers.Result{}, nil
	}
	if err != nil {
		return controllers.Result{}, err
	}
	if s.Type != secretType || s.DeletionTimestamp != nil {
		return controllers.Result{}, nil
	}
	exp := string(s.Data["expiration"])
	if exp == "" {
		return controllers.Result{}, nil
	}
	t, err := time.Parse(time.RFC3339, exp)
	if err != nil {
		// Upstream keeps tokens with an unparsable expiration (the
		// authenticator refuses them anyway).
		c.log.Info("bootstrap token has an invalid expiration", "secret", key)
		return controllers.Result{}, nil
	}
	if left := t.Sub(c.now()); left > 0 {
		return controllers.Result{RequeueAfter: left + 100*time.Millisecond}, nil
	}
	uid := s.UID
	err = c.client.CoreV1().Secrets(ns).Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return controllers.Result{}, fmt.Errorf("delete expired bootstrap token %s: %w", key, err)
	}
	c.log.Info("deleted expired bootstrap token", "secret", key)
	return controllers.Result{}, nil
}
