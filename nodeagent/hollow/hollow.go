// Package hollow runs many fake ("hollow") nodes in one process. Each node
// registers itself through the API with a capacity, a Ready condition and
// addresses, renews its Lease in kube-node-lease, reports the pods bound to
// it Running and Ready, and removes pods that are being deleted. Nothing is
// executed: hollow nodes exist so that scheduling, controllers and the API
// can be tested and benchmarked at scale without containers.
//
// All nodes of a Cluster share one pod informer (spec.nodeName set) and one
// worker pool, so a thousand nodes cost a few goroutines.
//
// Pods that should finish (Job pods) say so with annotations: a pod
// annotated hollow.skiff.io/exit-code=N runs for hollow.skiff.io/run-for (a
// Go duration, default 0) after it is reported Running, then every container
// is reported terminated with exit code N and the pod Succeeded (N=0) or
// Failed. Only pods with restartPolicy Never exit, and OnFailure pods with
// N=0; others keep running as a kubelet would restart them.
package hollow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/persistentvolume/provisioner/localpath"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// LeaseNamespace holds node heartbeat Leases, as upstream.
const LeaseNamespace = "kube-node-lease"

// Options configures a Cluster of hollow nodes.
type Options struct {
	// Nodes is how many nodes to run.
	Nodes int
	// NamePrefix names the nodes <prefix><index> (default "hollow-node-").
	NamePrefix string
	// CPU, Memory and Pods are each node's capacity (default 4, 16Gi, 110).
	CPU, Memory, Pods string
	// LocalPathAvailable is the synthetic free space each node reports for
	// local-path volumes, as an agent reports its storage directory's
	// (annotation local-path.skiff.io/available-bytes; default 100Gi).
	LocalPathAvailable string
	// Extended adds extended resources to capacity (e.g. example.com/gpu: 2).
	Extended map[string]string
	// Labels are added to every node besides kubernetes.io/hostname.
	Labels map[string]string
	// Taints are set on every node.
	Taints []corev1.Taint
	// Customize, when set, edits each node before it is registered.
	Customize func(index int, node *corev1.Node)
	// LeaseInterval is how often Leases are renewed (default 10s).
	LeaseInterval time.Duration
	// Workers process pod updates (default 16).
	Workers int
	// Logger receives diagnostics (default: discard).
	Logger *slog.Logger
}

func (o *Options) defaults() {
	if o.NamePrefix == "" {
		o.NamePrefix = "hollow-node-"
	}
	if o.CPU == "" {
		o.CPU = "4"
	}
	if o.LocalPathAvailable == "" {
		o.LocalPathAvailable = "100Gi"
	}
	if o.Memory == "" {
		o.Memory = "16Gi"
	}
	if o.Pods == "" {
		o.Pods = "110"
	}
	if o.LeaseInterval <= 0 {
		o.LeaseInterval = 10 * time.Second
	}
	if o.Workers <= 0 {
		o.Workers = 16
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// node is one hollow node's state.
type node struct {
	name   string
	index  int
	ip     string
	mu     sync.Mutex
	nextIP int
	lease  *coordinationv1.Lease
}

// Cluster is a running set of hollow nodes.
type Cluster struct {
	opts   Options
	client kubernetes.Interface
	log    *slog.Logger
	nodes  map[string]*node
	names  []string
	queue  workqueue.TypedRateLimitingInterface[string]
	pods   cache.Indexer
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start registers opts.Nodes nodes and starts serving them; it returns once
// every node is registered and the pod informer has synced. The nodes run
// until ctx ends or Stop is called.
func Start(ctx context.Context, rc *rest.Config, opts Options) (*Cluster, error) {
	opts.defaults()
	if opts.Nodes <= 0 {
		return nil, errors.New("hollow: Nodes must be positive")
	}
	cfg := rest.CopyConfig(rc)
	if cfg.QPS == 0 {
		cfg.QPS = -1
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "skiff-hollow-node"
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("hollow: client: %w", err)
	}
	return StartWithClient(ctx, cs, opts)
}

// StartWithClient is Start with an existing client.
func StartWithClient(ctx context.Context, cs kubernetes.Interface, opts Options) (*Cluster, error) {
	opts.defaults()
	if opts.Nodes <= 0 {
		return nil, errors.New("hollow: Nodes must be positive")
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c := &Cluster{
		opts:   opts,
		client: cs,
		log:    opts.Logger.With("component", "hollow"),
		nodes:  make(map[string]*node, opts.Nodes),
		cancel: cancel,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](50*time.Millisecond, 5*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "hollow"}),
	}
	for i := 0; i < opts.Nodes; i++ {
		n := &node{name: fmt.Sprintf("%s%d", opts.NamePrefix, i), index: i, ip: nodeIP(i)}
		c.nodes[n.name] = n
		c.names = append(c.names, n.name)
	}
	go func() {
		<-ctx.Done()
		c.Stop()
	}()
	if err := c.forEach(ctx, 16, c.register); err != nil {
		c.Stop()
		return nil, err
	}
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermNotEqualSelector("spec.nodeName", "").String()
	}))
	inf := factory.Core().V1().Pods().Informer()
	c.pods = inf.GetIndexer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, obj interface{}) { c.enqueue(obj) },
	}); err != nil {
		c.Stop()
		return nil, fmt.Errorf("hollow: pod handler: %w", err)
	}
	factory.Start(runCtx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		c.Stop()
		return nil, errors.New("hollow: pod informer did not sync")
	}
	for i := 0; i < opts.Workers; i++ {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			for c.processNext(runCtx) {
			}
		}()
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.renewLeases(runCtx)
	}()
	go func() {
		<-runCtx.Done()
		c.queue.ShutDown()
		factory.Shutdown()
	}()
	return c, nil
}

// NodeNames lists the nodes in index order.
func (c *Cluster) NodeNames() []string { return append([]string(nil), c.names...) }

// Stop stops serving the nodes (they stay registered). Safe to call twice.
func (c *Cluster) Stop() {
	c.cancel()
	c.queue.ShutDown()
	c.wg.Wait()
}

// nodeIP gives node i a stable fake address in 10.128.0.0/9: the node's index
// is encoded in the second and third octets, and its pods share that /24.
func nodeIP(i int) string {
	return net.IPv4(10, byte(128+(i>>8)%128), byte(i&255), 1).String()
}

func (c *Cluster) forEach(ctx context.Context, workers int, fn func(context.Context, *node) error) error {
	ch := make(chan *node)
	errCh := make(chan error, workers)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range ch {
				if err := fn(ctx, n); err != nil {
					select {
					case errCh <- err:
					default:
					}
				}
			}
		}()
	}
	for _, name := range c.names {
		select {
		case ch <- c.nodes[name]:
		case err := <-errCh:
			close(ch)
			wg.Wait()
			return err
		}
	}
	close(ch)
	wg.Wait()
	select {
	case err := <-errCh:
		return err
	default:
		return nil
	}
}

func (c *Cluster) nodeObject(n *node) (*corev1.Node, error) {
	capacity := corev1.ResourceList{}
	for name, v := range map[corev1.ResourceName]string{corev1.ResourceCPU: c.opts.CPU, corev1.ResourceMemory: c.opts.Memory, corev1.ResourcePods: c.opts.Pods} {
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return nil, fmt.Errorf("hollow: %s capacity %q: %w", name, v, err)
		}
		capacity[name] = q
	}
	capacity[corev1.ResourceEphemeralStorage] = resource.MustParse("100Gi")
	for name, v := range c.opts.Extended {
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return nil, fmt.Errorf("hollow: %s capacity %q: %w", name, v, err)
		}
		capacity[corev1.ResourceName(name)] = q
	}
	avail, err := resource.ParseQuantity(c.opts.LocalPathAvailable)
	if err != nil {
		return nil, fmt.Errorf("hollow: LocalPathAvailable %q: %w", c.opts.LocalPathAvailable, err)
	}
	labels := map[string]string{
		corev1.LabelHostname:   n.name,
		corev1.LabelOSStable:   "linux",
		corev1.LabelArchStable: "amd64",
		"node.skiff.io/hollow": "true",
	}
	for k, v := range c.opts.Labels {
		labels[k] = v
	}
	now := metav1.Now()
	obj := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: labels, Annotations: map[string]string{
			localpath.AnnAvailableBytes: strconv.FormatInt(avail.Value(), 10),
			localpath.AnnUsedBytes:      "0",
		}},
		Spec: corev1.NodeSpec{
			PodCIDR:  fmt.Sprintf("%s/24", net.ParseIP(n.ip).Mask(net.CIDRMask(24, 32))),
			Taints:   append([]corev1.Taint(nil), c.opts.Taints...),
			PodCIDRs: nil,
		},
		Status: corev1.NodeStatus{
			Capacity:    capacity,
			Allocatable: capacity.DeepCopy(),
			Phase:       corev1.NodeRunning,
			Conditions: []corev1.NodeCondition{
				{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "hollow node is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now},
				{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", LastHeartbeatTime: now, LastTransitionTime: now},
				{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasNoDiskPressure", LastHeartbeatTime: now, LastTransitionTime: now},
				{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientPID", LastHeartbeatTime: now, LastTransitionTime: now},
			},
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: n.ip},
				{Type: corev1.NodeHostName, Address: n.name},
			},
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: 10250}},
			NodeInfo: corev1.NodeSystemInfo{
				MachineID: fmt.Sprintf("hollow-%d", n.index), OperatingSystem: "linux", Architecture: "amd64",
				KubeletVersion: "v1.32.0-skiff-hollow", ContainerRuntimeVersion: "fake://0", KernelVersion: "hollow", OSImage: "hollow",
			},
		},
	}
	obj.Spec.PodCIDRs = []string{obj.Spec.PodCIDR}
	if c.opts.Customize != nil {
		c.opts.Customize(n.index, obj)
	}
	return obj, nil
}

// register creates (or refreshes) the node, its status and its Lease.
func (c *Cluster) register(ctx context.Context, n *node) error {
	want, err := c.nodeObject(n)
	if err != nil {
		return err
	}
	got, err := c.client.CoreV1().Nodes().Create(ctx, want, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		got, err = c.client.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
	}
	if err != nil {
		return fmt.Errorf("hollow: register node %s: %w", n.name, err)
	}
	if len(got.Status.Capacity) == 0 || !readyTrue(got) || got.Status.Addresses == nil {
		upd := got.DeepCopy()
		upd.Status = want.Status
		if _, err := c.client.CoreV1().Nodes().UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("hollow: node %s status: %w", n.name, err)
		}
	}
	return c.renewLease(ctx, n, got)
}

func readyTrue(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// renewLease creates or renews the node's heartbeat Lease.
func (c *Cluster) renewLease(ctx context.Context, n *node, owner *corev1.Node) error {
	leases := c.client.CoordinationV1().Leases(LeaseNamespace)
	now := metav1.NewMicroTime(time.Now())
	n.mu.Lock()
	cur := n.lease
	n.mu.Unlock()
	for attempt := 0; attempt < 3; attempt++ {
		var err error
		if cur == nil {
			cur, err = leases.Get(ctx, n.name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				l := &coordinationv1.Lease{
					ObjectMeta: metav1.ObjectMeta{Name: n.name, Namespace: LeaseNamespace},
					Spec: coordinationv1.LeaseSpec{
						HolderIdentity:       &n.name,
						LeaseDurationSeconds: ptr(int32(40)),
						RenewTime:            &now,
					},
				}
				if owner != nil {
					l.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: owner.Name, UID: owner.UID}}
				}
				cur, err = leases.Create(ctx, l, metav1.CreateOptions{})
				if err == nil {
					n.mu.Lock()
					n.lease = cur
					n.mu.Unlock()
					return nil
				}
				if apierrors.IsAlreadyExists(err) {
					cur = nil
					continue
				}
			}
			if err != nil {
				return fmt.Errorf("hollow: lease %s: %w", n.name, err)
			}
		}
		upd := cur.DeepCopy()
		upd.Spec.HolderIdentity = &n.name
		upd.Spec.RenewTime = &now
		if upd.Spec.LeaseDurationSeconds == nil {
			upd.Spec.LeaseDurationSeconds = ptr(int32(40))
		}
		got, err := leases.Update(ctx, upd, metav1.UpdateOptions{})
		if err == nil {
			n.mu.Lock()
			n.lease = got
			n.mu.Unlock()
			return nil
		}
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			cur = nil
			continue
		}
		return fmt.Errorf("hollow: renew lease %s: %w", n.name, err)
	}
	return fmt.Errorf("hollow: renew lease %s: too many conflicts", n.name)
}

// renewLeases renews every node's Lease each LeaseInterval, spreading the
// writes over the interval instead of sending them in one burst.
func (c *Cluster) renewLeases(ctx context.Context) {
	interval := c.opts.LeaseInterval
	step := interval / time.Duration(len(c.names))
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		for i, name := range c.names {
			if ctx.Err() != nil {
				return
			}
			if err := c.renewLease(ctx, c.nodes[name], nil); err != nil && ctx.Err() == nil {
				c.log.Warn("lease renewal failed", "node", name, "err", err)
			}
			if d := time.Until(start.Add(step * time.Duration(i+1))); d > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(d):
				}
			}
		}
		t.Reset(max(time.Until(start.Add(interval)), 0))
	}
}

func (c *Cluster) enqueue(obj interface{}) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if _, mine := c.nodes[pod.Spec.NodeName]; !mine {
		return
	}
	if pod.DeletionTimestamp == nil && pod.Status.Phase == corev1.PodRunning && pod.Status.PodIP != "" {
		if _, _, exits := exitOf(pod); !exits {
			return
		}
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		if pod.DeletionTimestamp == nil {
			return
		}
	}
	key, err := cache.MetaNamespaceKeyFunc(pod)
	if err == nil {
		c.queue.Add(key)
	}
}

func (c *Cluster) processNext(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	if err := c.syncPod(ctx, key); err != nil {
		if ctx.Err() != nil {
			return false
		}
		c.log.Debug("pod sync failed", "pod", key, "err", err)
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	return true
}

// syncPod reports a bound pod Running or finishes its deletion.
func (c *Cluster) syncPod(ctx context.Context, key string) error {
	obj, exists, err := c.pods.GetByKey(key)
	if err != nil || !exists {
		return err
	}
	pod := obj.(*corev1.Pod)
	n, mine := c.nodes[pod.Spec.NodeName]
	if !mine {
		return nil
	}
	if pod.DeletionTimestamp != nil {
		err := c.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
			GracePeriodSeconds: ptr(int64(0)),
			Preconditions:      &metav1.Preconditions{UID: &pod.UID},
		})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil
		}
		return err
	}
	if pod.Status.Phase == corev1.PodRunning && pod.Status.PodIP != "" {
		code, runFor, exits := exitOf(pod)
		if !exits {
			return nil
		}
		if wait := time.Until(pod.Status.StartTime.Add(runFor)); wait > 0 {
			c.queue.AddAfter(key, wait)
			return nil
		}
		upd := pod.DeepCopy()
		exited(upd, code)
		_, err = c.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	upd := pod.DeepCopy()
	c.running(n, upd)
	_, err = c.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// running fills pod's status as a kubelet reports a started, ready pod.
func (c *Cluster) running(n *node, pod *corev1.Pod) {
	now := metav1.Now()
	podIP := pod.Status.PodIP
	if podIP == "" {
		if pod.Spec.HostNetwork {
			podIP = n.ip
		} else {
			n.mu.Lock()
			n.nextIP = n.nextIP%253 + 1
			last := n.nextIP + 1
			n.mu.Unlock()
			base := net.ParseIP(n.ip).To4()
			podIP = net.IPv4(base[0], base[1], base[2], byte(last)).String()
		}
	}
	st := &pod.Status
	st.Phase = corev1.PodRunning
	st.HostIP = n.ip
	st.HostIPs = []corev1.HostIP{{IP: n.ip}}
	st.PodIP = podIP
	st.PodIPs = []corev1.PodIP{{IP: podIP}}
	if st.StartTime == nil {
		st.StartTime = &now
	}
	if st.QOSClass == "" {
		st.QOSClass = qosClass(pod)
	}
	for _, t := range []corev1.PodConditionType{"PodReadyToStartContainers", corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady, corev1.PodScheduled} {
		setCondition(st, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	st.InitContainerStatuses = nil
	for i, ic := range pod.Spec.InitContainers {
		st.InitContainerStatuses = append(st.InitContainerStatuses, corev1.ContainerStatus{
			Name: ic.Name, Image: ic.Image, ImageID: "fake://" + ic.Image, Ready: true,
			ContainerID: fmt.Sprintf("fake://%s-init-%d", pod.UID, i),
			State:       corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: now, FinishedAt: now}},
		})
	}
	st.ContainerStatuses = nil
	for i, ctr := range pod.Spec.Containers {
		st.ContainerStatuses = append(st.ContainerStatuses, corev1.ContainerStatus{
			Name: ctr.Name, Image: ctr.Image, ImageID: "fake://" + ctr.Image, Ready: true, Started: ptr(true),
			ContainerID: fmt.Sprintf("fake://%s-%d", pod.UID, i),
			State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
}

func setCondition(st *corev1.PodStatus, c corev1.PodCondition) {
	for i := range st.Conditions {
		if st.Conditions[i].Type == c.Type {
			if st.Conditions[i].Status != c.Status {
				st.Conditions[i] = c
			}
			return
		}
	}
	st.Conditions = append(st.Conditions, c)
}

// qosClass classifies pod as upstream does (Guaranteed, Burstable, BestEffort).
func qosClass(pod *corev1.Pod) corev1.PodQOSClass {
	any, guaranteed := false, true
	for _, ctr := range append(append([]corev1.Container(nil), pod.Spec.InitContainers...), pod.Spec.Containers...) {
		for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, hasReq := ctr.Resources.Requests[name]
			lim, hasLim := ctr.Resources.Limits[name]
			if (hasReq && !req.IsZero()) || (hasLim && !lim.IsZero()) {
				any = true
			}
			if !hasLim || lim.IsZero() || (hasReq && req.Cmp(lim) != 0) {
				guaranteed = false
			}
		}
	}
	switch {
	case !any:
		return corev1.PodQOSBestEffort
	case guaranteed:
		return corev1.PodQOSGuaranteed
	default:
		return corev1.PodQOSBurstable
	}
}

func ptr[T any](v T) *T { return &v }

// Annotations that make a hollow pod's containers exit (see the package doc).
const (
	ExitCodeAnnotation = "hollow.skiff.io/exit-code"
	RunForAnnotation   = "hollow.skiff.io/run-for"
)

// exitOf reads the exit annotations of a pod that will exit.
func exitOf(pod *corev1.Pod) (code int32, runFor time.Duration, exits bool) {
	v, ok := pod.Annotations[ExitCodeAnnotation]
	if !ok || pod.Status.StartTime == nil {
		return 0, 0, false
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0, 0, false
	}
	switch pod.Spec.RestartPolicy {
	case corev1.RestartPolicyNever:
	case corev1.RestartPolicyOnFailure:
		if n != 0 {
			return 0, 0, false
		}
	default:
		return 0, 0, false
	}
	if d, err := time.ParseDuration(pod.Annotations[RunForAnnotation]); err == nil && d > 0 {
		runFor = d
	}
	return int32(n), runFor, true
}

// exited reports every container terminated with code and the pod
// Succeeded or Failed, not ready, as a kubelet does when a pod finishes.
func exited(pod *corev1.Pod, code int32) {
	now := metav1.Now()
	reason, phase := "Completed", corev1.PodSucceeded
	if code != 0 {
		reason, phase = "Error", corev1.PodFailed
	}
	st := &pod.Status
	st.Phase = phase
	for i := range st.ContainerStatuses {
		cs := &st.ContainerStatuses[i]
		started := now
		if cs.State.Running != nil {
			started = cs.State.Running.StartedAt
		}
		cs.Ready, cs.Started = false, ptr(false)
		cs.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: code, Reason: reason, StartedAt: started, FinishedAt: now, ContainerID: cs.ContainerID}}
	}
	for _, t := range []corev1.PodConditionType{corev1.ContainersReady, corev1.PodReady} {
		setCondition(st, corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, Reason: "PodCompleted", LastTransitionTime: now})
	}
}
