// Package clusterroleaggregation is the ClusterRole aggregation controller:
// it keeps the rules of every ClusterRole with an aggregationRule equal to
// the rules of the cluster roles its selectors match. See README.md.
package clusterroleaggregation

import (
	"context"
	"log/slog"
	"reflect"
	"time"

	"github.com/skiffhq/skiff/controlplane/authz/bootstrap"
	"github.com/skiffhq/skiff/controlplane/controllers"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	rbaclisters "k8s.io/client-go/listers/rbac/v1"
	"k8s.io/client-go/tools/cache"
)

// Name is the controller's name (and its --disable name), as upstream.
const Name = "clusterrole-aggregation-controller"

// Config is what the controller needs.
type Config struct {
	Client kubernetes.Interface
	Logger *slog.Logger
}

// Controller fills aggregated cluster roles.
type Controller struct {
	cfg    Config
	log    *slog.Logger
	lister rbaclisters.ClusterRoleLister
}

var _ controllers.Controller = (*Controller)(nil)

// New returns the controller.
func New(cfg Config) *Controller {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Controller{cfg: cfg, log: cfg.Logger.With("component", Name)}
}

// Name implements controllers.Controller.
func (c *Controller) Name() string { return Name }

// Run implements controllers.Controller.
func (c *Controller) Run(ctx context.Context, workers int) error {
	f := informers.NewSharedInformerFactory(c.cfg.Client, 12*time.Hour)
	inf := f.Rbac().V1().ClusterRoles()
	c.lister = inf.Lister()
	q := controllers.NewQueue(Name)
	// Any change may alter what some aggregated role selects: queue every
	// aggregated role, as upstream does.
	enqueueAll := func(any) {
		roles, err := c.lister.List(labels.Everything())
		if err != nil {
			return
		}
		for _, r := range roles {
			if r.AggregationRule != nil {
				q.Add(r.Name)
			}
		}
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueueAll,
		UpdateFunc: func(_, obj any) { enqueueAll(obj) },
		DeleteFunc: enqueueAll,
	}); err != nil {
		return err
	}
	f.Start(ctx.Done())
	defer f.Shutdown()
	if !controllers.WaitForSync(ctx, inf.Informer().HasSynced) {
		return ctx.Err()
	}
	controllers.RunWorkers(ctx, q, workers, c.log, c.Reconcile)
	return nil
}

// Reconcile sets the rules of aggregated role key.
func (c *Controller) Reconcile(ctx context.Context, key string) (controllers.Result, error) {
	role, err := c.lister.Get(key)
	if apierrors.IsNotFound(err) {
		return controllers.Result{}, nil
	}
	if err != nil {
		return controllers.Result{}, err
	}
	if role.AggregationRule == nil {
		return controllers.Result{}, nil
	}
	all, err := c.lister.List(labels.Everything())
	if err != nil {
		return controllers.Result{}, err
	}
	rules := bootstrap.AggregatedRules(role.AggregationRule, role.Name, all)
	if equalRules(rules, role.Rules) {
		return controllers.Result{}, nil
	}
	next := role.DeepCopy()
	next.Rules = rules
	if _, err := c.cfg.Client.RbacV1().ClusterRoles().Update(ctx, next, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return controllers.Result{}, nil
		}
		return controllers.Result{}, err
	}
	c.log.Debug("aggregated cluster role", "name", role.Name, "rules", len(rules))
	return controllers.Result{}, nil
}

func equalRules(a, b []rbacv1.PolicyRule) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return reflect.DeepEqual(a, b)
}
