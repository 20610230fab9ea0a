// Package podautoscaler is the HorizontalPodAutoscaler controller
// (autoscaling/v2) with upstream's algorithm for Resource metrics: the
// replica proposal of each metric (tolerance 0.1, pods without metrics and
// starting pods handled as upstream), the largest proposal, the
// stabilization windows and scaling policies of spec.behavior, min/max
// replicas, the scale subresource of Deployments, ReplicaSets and
// StatefulSets, status (current metrics, conditions) and events.
package podautoscaler

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/controllers/internal/scales"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	autoscalinglisters "k8s.io/client-go/listers/autoscaling/v2"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
)

// Name is the controller's canonical name.
const Name = "horizontal-pod-autoscaler-controller"

// Metrics reads pods' resource usage (metrics.k8s.io in production).
type Metrics interface {
	PodMetrics(ctx context.Context, ns string, sel labels.Selector, res corev1.ResourceName) (map[string]PodMetric, error)
}

// Config configures the controller.
type Config struct {
	Client    kubernetes.Interface
	Informers informers.SharedInformerFactory
	// Metrics defaults to the metrics.k8s.io API through Client.
	Metrics  Metrics
	Recorder record.EventRecorder
	// SyncPeriod is how often every HPA is evaluated (default 15s,
	// --horizontal-pod-autoscaler-sync-period).
	SyncPeriod time.Duration
	Logger     *slog.Logger
}

// Controller is the HPA controller.
type Controller struct {
	cfg    Config
	client kubernetes.Interface
	hpas   autoscalinglisters.HorizontalPodAutoscalerLister
	pods   corelisters.PodLister
	scales *scales.Client
	synced []cache.InformerSynced
	queue  workqueue.TypedRateLimitingInterface[string]
	log    *slog.Logger

	mu              sync.Mutex
	recommendations map[string][]timestamped // key → recent proposals
	events          map[string][]timestamped // key → scale changes (replica deltas)
	old             map[string]*autoscalingv2.HorizontalPodAutoscalerStatus
}

type timestamped struct {
	t time.Time
	n int32
}

var _ controllers.Controller = (*Controller)(nil)

// New returns the controller with its informer handlers registered.
func New(cfg Config) (*Controller, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.SyncPeriod <= 0 {
		cfg.SyncPeriod = 15 * time.Second
	}
	if cfg.Metrics == nil {
		cfg.Metrics = APIMetrics{Client: cfg.Client}
	}
	if cfg.Recorder == nil {
		cfg.Recorder = &record.FakeRecorder{}
	}
	hi := cfg.Informers.Autoscaling().V2().HorizontalPodAutoscalers()
	pi := cfg.Informers.Core().V1().Pods()
	c := &Controller{
		cfg: cfg, client: cfg.Client, hpas: hi.Lister(), pods: pi.Lister(), scales: scales.New(cfg.Client),
		synced:          []cache.InformerSynced{hi.Informer().HasSynced, pi.Informer().HasSynced},
		queue:           controllers.NewQueue("horizontalpodautoscaler"),
		log:             cfg.Logger.With("component", Name),
		recommendations: map[string][]timestamped{}, events: map[string][]timestamped{}, old: map[string]*autoscalingv2.HorizontalPodAutoscalerStatus{},
	}
	if _, err := hi.Informer().AddEventHandler(controllers.Enqueue(c.queue)); err != nil {
		return nil, err
	}
	return c, nil
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

// Reconcile evaluates one HPA and requeues it after the sync period.
func (c *Controller) Reconcile(ctx context.Context, key string) (controllers.Result, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return controllers.Result{}, nil
	}
	cached, err := c.hpas.HorizontalPodAutoscalers(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.mu.Lock()
		delete(c.recommendations, key)
		delete(c.events, key)
		delete(c.old, key)
		c.mu.Unlock()
		return controllers.Result{}, nil
	}
	if err != nil {
		return controllers.Result{}, err
	}
	hpa := cached.DeepCopy()
	c.mu.Lock()
	c.old[key] = cached.Status.DeepCopy()
	c.mu.Unlock()
	if err := c.evaluate(ctx, key, hpa); err != nil {
		return controllers.Result{}, err
	}
	return controllers.Result{RequeueAfter: c.cfg.SyncPeriod}, nil
}

func (c *Controller) evaluate(ctx context.Context, key string, hpa *autoscalingv2.HorizontalPodAutoscaler) error {
	now := time.Now()
	ref := hpa.Spec.ScaleTargetRef
	scale, gr, err := c.scales.Get(ctx, hpa.Namespace, ref.APIVersion, ref.Kind, ref.Name)
	if err != nil {
		c.cfg.Recorder.Event(hpa, corev1.EventTypeWarning, "FailedGetScale", err.Error())
		setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionFalse, "FailedGetScale", "the HPA controller was unable to get the target's current scale: %v", err)
		return c.writeStatus(ctx, hpa)
	}
	setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionTrue, "SucceededGetScale", "the HPA controller was able to get the target's current scale")
	current := scale.Spec.Replicas
	minR := int32(1)
	if hpa.Spec.MinReplicas != nil {
		minR = *hpa.Spec.MinReplicas
	}
	desired := current
	var reason string
	var stabilized bool
	switch {
	case current == 0 && minR != 0:
		desired = 0
		setCondition(hpa, autoscalingv2.ScalingActive, corev1.ConditionFalse, "ScalingDisabled", "scaling is disabled since the replica count of the target is zero")
	case current > hpa.Spec.MaxReplicas:
		// Out of bounds: back within them first, without metrics, as
		// upstream does.
		desired, reason = hpa.Spec.MaxReplicas, "Current number of replicas above Spec.MaxReplicas"
	case current < minR:
		desired, reason = minR, "Current number of replicas below Spec.MinReplicas"
	default:
		proposal, metricName, statuses, errMsg := c.computeReplicas(ctx, hpa, scale, current, now)
		hpa.Status.CurrentMetrics = statuses
		if errMsg != "" {
			c.cfg.Recorder.Event(hpa, corev1.EventTypeWarning, "FailedGetResourceMetric", errMsg)
			setCondition(hpa, autoscalingv2.ScalingActive, corev1.ConditionFalse, "FailedGetResourceMetric", "the HPA was unable to compute the replica count: %s", errMsg)
			return c.writeStatus(ctx, hpa)
		}
		setCondition(hpa, autoscalingv2.ScalingActive, corev1.ConditionTrue, "ValidMetricFound", "the HPA was able to successfully calculate a replica count from %s", metricName)
		desired = c.normalize(key, hpa, current, proposal, minR, now)
		stabilized = desired == current && proposal < current
		if desired > current {
			reason = metricName + " above target"
		} else {
			reason = "All metrics below target"
		}
	}
	hpa.Status.CurrentReplicas = current
	hpa.Status.DesiredReplicas = desired
	if desired == current && current != 0 {
		setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionTrue, "ReadyForNewScale", "recommended size matches current size")
		if stabilized {
			setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionTrue, "ScaleDownStabilized", "recent recommendations were higher than current one, applying the highest recent recommendation")
		}
	}
	if desired != current && !(current == 0 && minR != 0) {
		scale.Spec.Replicas = desired
		if _, err := c.scales.Update(ctx, hpa.Namespace, gr, scale); err != nil {
			c.cfg.Recorder.Eventf(hpa, corev1.EventTypeWarning, "FailedRescale", "New size: %d; reason: %s; error: %v", desired, reason, err)
			setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionFalse, "FailedUpdateScale", "the HPA controller was unable to update the target scale: %v", err)
			_ = c.writeStatus(ctx, hpa)
			return err
		}
		c.mu.Lock()
		c.events[key] = append(c.events[key], timestamped{now, desired - current})
		c.mu.Unlock()
		setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionTrue, "SucceededRescale", "the HPA controller was able to update the target scale to %d", desired)
		c.cfg.Recorder.Eventf(hpa, corev1.EventTypeNormal, "SuccessfulRescale", "New size: %d; reason: %s", desired, reason)
		t := metav1.NewTime(now)
		hpa.Status.LastScaleTime = &t
		c.log.Info("rescaled", "hpa", key, "from", current, "to", desired, "reason", reason)
	}
	return c.writeStatus(ctx, hpa)
}

// computeReplicas is the largest proposal over the HPA's metrics.
func (c *Controller) computeReplicas(ctx context.Context, hpa *autoscalingv2.HorizontalPodAutoscaler, scale *autoscalingv1.Scale, current int32, now time.Time) (int32, string, []autoscalingv2.MetricStatus, string) {
	sel, err := labels.Parse(scale.Status.Selector)
	if err != nil || scale.Status.Selector == "" {
		return 0, "", nil, "the target's scale has no usable selector"
	}
	pods, err := c.pods.Pods(hpa.Namespace).List(sel)
	if err != nil {
		return 0, "", nil, err.Error()
	}
	var best int32
	var bestName string
	var statuses []autoscalingv2.MetricStatus
	for _, m := range hpa.Spec.Metrics {
		if m.Type != autoscalingv2.ResourceMetricSourceType || m.Resource == nil {
			return 0, "", statuses, fmt.Sprintf("metric type %s is not supported yet (Resource only)", m.Type)
		}
		res := m.Resource.Name
		metrics, err := c.cfg.Metrics.PodMetrics(ctx, hpa.Namespace, sel, res)
		if err != nil {
			return 0, "", statuses, fmt.Sprintf("failed to get %s utilization: unable to get metrics for resource %s: %v", res, res, err)
		}
		var target int64
		useRequests := m.Resource.Target.Type == autoscalingv2.UtilizationMetricType
		switch {
		case useRequests && m.Resource.Target.AverageUtilization != nil:
			target = int64(*m.Resource.Target.AverageUtilization)
		case m.Resource.Target.Type == autoscalingv2.AverageValueMetricType && m.Resource.Target.AverageValue != nil:
			target = m.Resource.Target.AverageValue.MilliValue()
		default:
			return 0, "", statuses, fmt.Sprintf("invalid target for resource %s", res)
		}
		if target <= 0 {
			return 0, "", statuses, fmt.Sprintf("invalid target for resource %s", res)
		}
		n, util, avg, msg := replicasFor(current, pods, metrics, res, target, useRequests, now)
		if msg != "" {
			return 0, "", statuses, fmt.Sprintf("failed to get %s utilization: %s", res, msg)
		}
		st := autoscalingv2.MetricStatus{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricStatus{
			Name: res, Current: autoscalingv2.MetricValueStatus{AverageValue: resource.NewMilliQuantity(avg, resource.DecimalSI)}}}
		if res == corev1.ResourceMemory {
			st.Resource.Current.AverageValue = resource.NewQuantity(avg/1000, resource.BinarySI)
		}
		if useRequests {
			st.Resource.Current.AverageUtilization = &util
		}
		statuses = append(statuses, st)
		if n > best || bestName == "" {
			best, bestName = n, fmt.Sprintf("%s resource", res)
			if useRequests {
				bestName += " utilization (percentage of request)"
			}
		}
	}
	return best, bestName, statuses, ""
}

// normalize applies the behavior (stabilization windows, then scaling
// policies) and min/max replicas, recording the proposal.
func (c *Controller) normalize(key string, hpa *autoscalingv2.HorizontalPodAutoscaler, current, proposal, minR int32, now time.Time) int32 {
	up, down := rules(hpa.Spec.Behavior)
	c.mu.Lock()
	defer c.mu.Unlock()
	longest := time.Duration(max(*up.StabilizationWindowSeconds, *down.StabilizationWindowSeconds)) * time.Second
	recs := c.recommendations[key][:0:0]
	for _, r := range c.recommendations[key] {
		if now.Sub(r.t) <= longest {
			recs = append(recs, r)
		}
	}
	recs = append(recs, timestamped{now, proposal})
	c.recommendations[key] = recs
	// Scaling up: the smallest proposal within the up window; down: the
	// largest within the down window.
	upRec, downRec := proposal, proposal
	upWin := time.Duration(*up.StabilizationWindowSeconds) * time.Second
	downWin := time.Duration(*down.StabilizationWindowSeconds) * time.Second
	for _, r := range recs {
		if now.Sub(r.t) <= upWin {
			upRec = min(upRec, r.n)
		}
		if now.Sub(r.t) <= downWin {
			downRec = max(downRec, r.n)
		}
	}
	desired := current
	if upRec > current {
		desired = upRec
	}
	if downRec < current {
		desired = downRec
	}
	// Scaling policies bound the change against the changes made within
	// each policy's period.
	events := c.events[key][:0:0]
	var keep time.Duration
	for _, r := range []*autoscalingv2.HPAScalingRules{up, down} {
		for _, p := range r.Policies {
			keep = max(keep, time.Duration(p.PeriodSeconds)*time.Second)
		}
	}
	for _, e := range c.events[key] {
		if now.Sub(e.t) <= keep {
			events = append(events, e)
		}
	}
	c.events[key] = events
	if desired > current {
		desired = min(desired, limit(up, events, current, now, true))
	} else if desired < current {
		desired = max(desired, limit(down, events, current, now, false))
	}
	desired = max(desired, minR)
	desired = min(desired, hpa.Spec.MaxReplicas)
	switch {
	case desired == hpa.Spec.MaxReplicas && proposal > desired:
		setCondition(hpa, autoscalingv2.ScalingLimited, corev1.ConditionTrue, "TooManyReplicas", "the desired replica count is more than the maximum replica count")
	case desired == minR && proposal < desired:
		setCondition(hpa, autoscalingv2.ScalingLimited, corev1.ConditionTrue, "TooFewReplicas", "the desired replica count is less than the minimum replica count")
	case desired != proposal:
		setCondition(hpa, autoscalingv2.ScalingLimited, corev1.ConditionTrue, "ScaleRateLimited", "the desired replica count is limited by the behavior")
	default:
		setCondition(hpa, autoscalingv2.ScalingLimited, corev1.ConditionFalse, "DesiredWithinRange", "the desired count is within the acceptable range")
	}
	return desired
}

// limit is the furthest the policies let the replica count move now:
// with selectPolicy Max the most permissive policy, Min the least,
// Disabled no change. Each policy's base is the count at the start of its
// period (current minus the changes made since).
func limit(r *autoscalingv2.HPAScalingRules, events []timestamped, current int32, now time.Time, up bool) int32 {
	sel := autoscalingv2.MaxChangePolicySelect
	if r.SelectPolicy != nil {
		sel = *r.SelectPolicy
	}
	if sel == autoscalingv2.DisabledPolicySelect {
		return current
	}
	var best int32
	first := true
	for _, p := range r.Policies {
		var changed int32
		for _, e := range events {
			if now.Sub(e.t) <= time.Duration(p.PeriodSeconds)*time.Second && (e.n > 0) == up {
				changed += e.n
			}
		}
		base := current - changed
		var l int32
		switch {
		case up && p.Type == autoscalingv2.PodsScalingPolicy:
			l = base + p.Value
		case up:
			l = int32(math.Ceil(float64(base) * (1 + float64(p.Value)/100)))
		case p.Type == autoscalingv2.PodsScalingPolicy:
			l = base - p.Value
		default:
			l = int32(math.Ceil(float64(base) * (1 - float64(p.Value)/100)))
		}
		if first || (sel == autoscalingv2.MaxChangePolicySelect) == (up == (l > best)) {
			best, first = l, false
		}
	}
	if first {
		return current
	}
	return best
}

// rules returns the scale-up and scale-down rules with upstream's
// defaults filled in (the API server defaults only a present behavior).
func rules(b *autoscalingv2.HorizontalPodAutoscalerBehavior) (up, down *autoscalingv2.HPAScalingRules) {
	up = &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: ptr(int32(0)), Policies: []autoscalingv2.HPAScalingPolicy{
		{Type: autoscalingv2.PodsScalingPolicy, Value: 4, PeriodSeconds: 15},
		{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 15},
	}}
	down = &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: ptr(int32(300)), Policies: []autoscalingv2.HPAScalingPolicy{
		{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 15},
	}}
	if b != nil {
		merge := func(dst *autoscalingv2.HPAScalingRules, src *autoscalingv2.HPAScalingRules) {
			if src == nil {
				return
			}
			if src.StabilizationWindowSeconds != nil {
				dst.StabilizationWindowSeconds = src.StabilizationWindowSeconds
			}
			if len(src.Policies) > 0 {
				dst.Policies = src.Policies
			}
			dst.SelectPolicy = src.SelectPolicy
		}
		merge(up, b.ScaleUp)
		merge(down, b.ScaleDown)
	}
	return up, down
}

func ptr[T any](v T) *T { return &v }

func setCondition(hpa *autoscalingv2.HorizontalPodAutoscaler, t autoscalingv2.HorizontalPodAutoscalerConditionType, st corev1.ConditionStatus, reason, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	now := metav1.Now()
	for i := range hpa.Status.Conditions {
		c := &hpa.Status.Conditions[i]
		if c.Type == t {
			if c.Status != st {
				c.LastTransitionTime = now
			}
			c.Status, c.Reason, c.Message = st, reason, msg
			return
		}
	}
	hpa.Status.Conditions = append(hpa.Status.Conditions, autoscalingv2.HorizontalPodAutoscalerCondition{Type: t, Status: st, Reason: reason, Message: msg, LastTransitionTime: now})
}

// writeStatus writes the status if it changed (as upstream, so an idle
// HPA costs no writes).
func (c *Controller) writeStatus(ctx context.Context, hpa *autoscalingv2.HorizontalPodAutoscaler) error {
	key := hpa.Namespace + "/" + hpa.Name
	c.mu.Lock()
	old := c.old[key]
	c.mu.Unlock()
	if old != nil && equality.Semantic.DeepEqual(old, &hpa.Status) {
		return nil
	}
	_, err := c.client.AutoscalingV2().HorizontalPodAutoscalers(hpa.Namespace).UpdateStatus(ctx, hpa, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
