package federation

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/skiffhq/skiff/addons/federation/apis/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// member is one MemberCluster as the controller sees it: its clients and
// its health, which only its own heartbeat goroutine changes.
type member struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{}

	mu          sync.Mutex
	seeded      bool // health taken over from the stored status
	fingerprint string
	kube        kubernetes.Interface
	dyn         dynamic.Interface
	ready       bool
	everReady   bool
	failing     time.Time // first failed check of the current run of failures
	healthy     time.Time // first good check after failures
	reason, msg string
	available   corev1.ResourceList
}

// clients returns the member's clients (nil before the first heartbeat
// built them).
func (m *member) clients() (kubernetes.Interface, dynamic.Interface) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.kube, m.dyn
}

func (m *member) isReady() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ready
}

// seed takes over, before m's first check, the health another run (this
// server's earlier term, or another server) stored: Ready as stored, and
// ever Ready if it was Ready or ever answered. So a new holder of the
// Lease restarts the failure and recovery graces instead of skipping
// them (marking a Ready member NotReady on its first failed check, or a
// recovering one Ready on its first good one). When the current run of
// failures or successes began is not stored: the graces count from this
// run's first check.
func (m *member) seed(mc *v1alpha1.MemberCluster, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seeded {
		return
	}
	m.seeded = true
	ready := meta.IsStatusConditionTrue(mc.Status.Conditions, v1alpha1.ConditionReady)
	m.ready = ready
	m.everReady = ready || mc.Status.LastHeartbeatTime != nil
	if m.everReady && !ready {
		// Failing until now: a good check starts the recovery grace.
		m.failing = now
	}
}

// startMember runs name's heartbeat until the MemberCluster goes away.
func (c *Controller) startMember(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.members[name]; ok {
		return
	}
	ctx, cancel := context.WithCancel(c.runCtx)
	m := &member{name: name, cancel: cancel, done: make(chan struct{})}
	c.members[name] = m
	go func() {
		defer close(m.done)
		c.heartbeat(ctx, m)
	}()
}

func (c *Controller) stopMember(name string) {
	c.mu.Lock()
	m, ok := c.members[name]
	delete(c.members, name)
	c.mu.Unlock()
	if ok {
		m.cancel()
		<-m.done
		c.metrics.memberReady.DeleteLabelValues(name)
	}
}

// memberList returns the members and what scheduling knows of each,
// sorted by name.
func (c *Controller) memberList() ([]*member, []memberInfo) {
	objs := c.memberInformer.GetStore().List()
	var ms []*member
	var infos []memberInfo
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, o := range objs {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		m, ok := c.members[u.GetName()]
		if !ok || u.GetDeletionTimestamp() != nil {
			// A deleted member is no placement target; its heartbeat
			// cleans it (cleanupMember).
			continue
		}
		var mc v1alpha1.MemberCluster
		if err := v1alpha1.FromUnstructured(u, &mc); err != nil {
			continue
		}
		m.mu.Lock()
		infos = append(infos, memberInfo{Name: mc.Name, Labels: mc.Labels, Taints: mc.Spec.Taints, Ready: m.ready, EverReady: m.everReady, Available: m.available.DeepCopy()})
		m.mu.Unlock()
		ms = append(ms, m)
	}
	// Sort both by name together.
	for i := 1; i < len(infos); i++ {
		for j := i; j > 0 && infos[j].Name < infos[j-1].Name; j-- {
			infos[j], infos[j-1] = infos[j-1], infos[j]
			ms[j], ms[j-1] = ms[j-1], ms[j]
		}
	}
	return ms, infos
}

// heartbeat checks the member every HeartbeatInterval and writes its
// status; a change of readiness re-places every federated object.
func (c *Controller) heartbeat(ctx context.Context, m *member) {
	log := c.log.With("member", m.name)
	t := time.NewTicker(c.opts.HeartbeatInterval)
	defer t.Stop()
	for {
		changed := c.check(ctx, m)
		if ctx.Err() != nil {
			return
		}
		if changed {
			log.Info("member readiness changed", "ready", m.isReady())
			c.enqueueAll()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probeResult is one health check's outcome.
type probeResult struct {
	version     string
	nodes       v1alpha1.NodeSummary
	allocatable corev1.ResourceList
	allocated   corev1.ResourceList
}

// check runs one health check, updates m's state and writes the status;
// it reports whether readiness changed.
func (c *Controller) check(ctx context.Context, m *member) bool {
	obj, exists, err := c.memberInformer.GetStore().GetByKey(m.name)
	if err != nil || !exists {
		return false
	}
	var mc v1alpha1.MemberCluster
	if err := v1alpha1.FromUnstructured(obj.(*unstructured.Unstructured), &mc); err != nil {
		return false
	}
	m.seed(&mc, c.now())
	var res probeResult
	perr := c.connect(ctx, m, &mc)
	if perr == nil {
		pctx, cancel := context.WithTimeout(ctx, c.opts.MemberTimeout)
		res, perr = probe(pctx, m)
		cancel()
	}
	if ctx.Err() != nil {
		return false
	}
	now := c.now()
	m.mu.Lock()
	was := m.ready
	if perr == nil {
		if !m.failing.IsZero() {
			m.failing, m.healthy = time.Time{}, now
		}
		if !m.ready && (!m.everReady || now.Sub(m.healthy) >= c.opts.RecoveryGrace) {
			m.ready, m.everReady = true, true
		}
		if m.ready {
			m.reason, m.msg = "Healthy", "the member's API answered its health check"
		} else {
			m.reason, m.msg = "Recovering", fmt.Sprintf("healthy again since %s; ready after the recovery grace of %s", m.healthy.UTC().Format(time.RFC3339), c.opts.RecoveryGrace)
		}
		avail := corev1.ResourceList{}
		for k, v := range res.allocatable {
			a := v.DeepCopy()
			if u, ok := res.allocated[k]; ok {
				a.Sub(u)
			}
			avail[k] = a
		}
		m.available = avail
	} else {
		m.healthy = time.Time{}
		if m.failing.IsZero() {
			m.failing = now
		}
		if !m.everReady || now.Sub(m.failing) >= c.opts.FailureGrace {
			m.ready = false
		}
		m.reason, m.msg = classify(perr), perr.Error()
	}
	ready, everReady, reason, msg := m.ready, m.everReady, m.reason, m.msg
	m.mu.Unlock()

	c.metrics.memberReady.WithLabelValues(m.name).Set(boolGauge(ready))
	if err := c.writeMemberStatus(ctx, m.name, ready, reason, msg, perr == nil, res); err != nil && ctx.Err() == nil {
		c.log.Warn("write member status", "member", m.name, "err", err)
	}
	if was != ready {
		if ready {
			c.recorder.Eventf(obj.(*unstructured.Unstructured), corev1.EventTypeNormal, "MemberReady", "member cluster %s is ready", m.name)
		} else if everReady {
			c.recorder.Eventf(obj.(*unstructured.Unstructured), corev1.EventTypeWarning, "MemberNotReady", "member cluster %s failed its health checks for %s: %s", m.name, c.opts.FailureGrace, msg)
		}
	}
	u := obj.(*unstructured.Unstructured)
	switch {
	case u.GetDeletionTimestamp() == nil && !slices.Contains(u.GetFinalizers(), v1alpha1.CleanupFinalizer):
		if err := c.setMemberFinalizer(ctx, m.name, true); err != nil && ctx.Err() == nil {
			c.log.Warn("add member finalizer", "member", m.name, "err", err)
		}
	case u.GetDeletionTimestamp() != nil && slices.Contains(u.GetFinalizers(), v1alpha1.CleanupFinalizer):
		c.cleanupMember(ctx, m, u, perr)
	}
	return was != ready
}

// setMemberFinalizer adds or removes CleanupFinalizer on MemberCluster name.
func (c *Controller) setMemberFinalizer(ctx context.Context, name string, add bool) error {
	ri := c.dyn.Resource(v1alpha1.MemberClusterGVR)
	u, err := ri.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	fs := u.GetFinalizers()
	has := slices.Contains(fs, v1alpha1.CleanupFinalizer)
	switch {
	case add && !has:
		u.SetFinalizers(append(fs, v1alpha1.CleanupFinalizer))
	case !add && has:
		u.SetFinalizers(slices.DeleteFunc(fs, func(f string) bool { return f == v1alpha1.CleanupFinalizer }))
	default:
		return nil
	}
	_, err = ri.Update(ctx, u, metav1.UpdateOptions{})
	return err
}

// cleanupMember runs while a deleted MemberCluster holds the cleanup
// finalizer: when the member answers (perr nil), everything federation
// created there (annotated managed-by, namespaces excepted) is deleted and
// the finalizer goes. A member that does not answer, or whose cleanup keeps
// failing, is retried on every heartbeat for FailureGrace after the
// deletion; then a Warning event says what stays on it and the finalizer
// goes anyway, so a dead member never blocks its deletion.
func (c *Controller) cleanupMember(ctx context.Context, m *member, u *unstructured.Unstructured, perr error) {
	late := c.now().Sub(u.GetDeletionTimestamp().Time) >= c.opts.FailureGrace
	var n int
	err := perr
	if err == nil {
		n, err = c.deleteCopies(ctx, m)
	}
	switch {
	case err == nil:
		c.recorder.Eventf(u, corev1.EventTypeNormal, "MemberCleanedUp", "deleted the %d objects federation created on member cluster %s", n, m.name)
	case !late:
		c.log.Info("member cleanup pending", "member", m.name, "err", err)
		return
	case perr != nil:
		c.recorder.Eventf(u, corev1.EventTypeWarning, "MemberCleanupSkipped",
			"member cluster %s did not answer for %s after its deletion (%v): what federation created there (annotated %s) stays on it", m.name, c.opts.FailureGrace, perr, v1alpha1.ManagedByAnnotation)
	default:
		c.recorder.Eventf(u, corev1.EventTypeWarning, "MemberCleanupIncomplete",
			"cleaning member cluster %s failed for %s after its deletion (%v): some objects annotated %s may stay on it", m.name, c.opts.FailureGrace, err, v1alpha1.ManagedByAnnotation)
	}
	if err := c.setMemberFinalizer(ctx, m.name, false); err != nil && ctx.Err() == nil {
		c.log.Warn("remove member finalizer", "member", m.name, "err", err)
	}
}

// deleteCopies deletes from m every object federation created there, of
// the kinds policies name and the ConfigMaps and Secrets that follow them
// (namespaces stay, as always), each with a UID precondition.
func (c *Controller) deleteCopies(ctx context.Context, m *member) (int, error) {
	_, dc := m.clients()
	if dc == nil {
		return 0, fmt.Errorf("no client for member %s", m.name)
	}
	c.mu.Lock()
	kinds := []schema.GroupVersionResource{configMapGVR, secretGVR}
	for gvr := range c.watched {
		if gvr.Group == "" && gvr.Resource == "namespaces" || slices.Contains(kinds, gvr) {
			continue
		}
		kinds = append(kinds, gvr)
	}
	c.mu.Unlock()
	n := 0
	for _, gvr := range kinds {
		list, err := dc.Resource(gvr).List(ctx, metav1.ListOptions{})
		if err != nil {
			return n, fmt.Errorf("list %s: %w", gvr.Resource, err)
		}
		for i := range list.Items {
			o := &list.Items[i]
			if !managedByUs(o) {
				continue
			}
			uid := o.GetUID()
			err := dc.Resource(gvr).Namespace(o.GetNamespace()).Delete(ctx, o.GetName(), metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				return n, fmt.Errorf("delete %s %s/%s: %w", gvr.Resource, o.GetNamespace(), o.GetName(), err)
			}
			n++
		}
	}
	return n, nil
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// classify names a failed check's cause for the Ready condition's reason.
func classify(err error) string {
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	var ne net.Error
	switch {
	case errors.Is(err, errCredentials):
		return "CredentialsInvalid"
	case apierrors.IsUnauthorized(err):
		return "Unauthorized"
	case apierrors.IsForbidden(err):
		return "Forbidden"
	case errors.As(err, &ua), errors.As(err, &hn), errors.As(err, &ci), strings.Contains(err.Error(), "x509:"), strings.Contains(err.Error(), "tls:"):
		return "TLSError"
	case errors.As(err, &ne), strings.Contains(err.Error(), "connection refused"):
		return "Unreachable"
	}
	return "HealthCheckFailed"
}

// errCredentials marks a missing or unusable credentials Secret.
var errCredentials = errors.New("member credentials")

// connect (re)builds m's clients when its endpoint or Secret changed.
func (c *Controller) connect(ctx context.Context, m *member, mc *v1alpha1.MemberCluster) error {
	if mc.Spec.SecretRef == nil {
		return fmt.Errorf("%w: spec.secretRef is not set", errCredentials)
	}
	sctx, cancel := context.WithTimeout(ctx, c.opts.MemberTimeout)
	defer cancel()
	sec, err := c.kube.CoreV1().Secrets(mc.Spec.SecretRef.Namespace).Get(sctx, mc.Spec.SecretRef.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("%w: secret %s/%s: %w", errCredentials, mc.Spec.SecretRef.Namespace, mc.Spec.SecretRef.Name, err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s", mc.Spec.APIEndpoint, sec.UID, sec.ResourceVersion)
	fp := hex.EncodeToString(h.Sum(nil))
	m.mu.Lock()
	same := m.fingerprint == fp && m.kube != nil
	m.mu.Unlock()
	if same {
		return nil
	}
	rc, err := memberConfig(mc.Spec.APIEndpoint, sec)
	if err != nil {
		return err
	}
	rc.Timeout = c.opts.MemberTimeout
	rc.QPS, rc.Burst = 50, 100
	rc.UserAgent = "skiff-federation"
	kc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("%w: %w", errCredentials, err)
	}
	dc, err := dynamic.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("%w: %w", errCredentials, err)
	}
	m.mu.Lock()
	m.fingerprint, m.kube, m.dyn = fp, kc, dc
	m.mu.Unlock()
	return nil
}

// memberConfig builds a client config from a credentials Secret: a
// `kubeconfig` key, or `token` (+ optional `ca.crt`) with the endpoint.
func memberConfig(endpoint string, sec *corev1.Secret) (*rest.Config, error) {
	if kc, ok := sec.Data["kubeconfig"]; ok {
		rc, err := clientcmd.RESTConfigFromKubeConfig(kc)
		if err != nil {
			return nil, fmt.Errorf("%w: kubeconfig in secret %s/%s: %w", errCredentials, sec.Namespace, sec.Name, err)
		}
		if endpoint != "" {
			rc.Host = endpoint
		}
		return rc, nil
	}
	tok, ok := sec.Data["token"]
	if !ok {
		return nil, fmt.Errorf("%w: secret %s/%s has neither kubeconfig nor token", errCredentials, sec.Namespace, sec.Name)
	}
	if endpoint == "" {
		return nil, fmt.Errorf("%w: spec.apiEndpoint is required with a token", errCredentials)
	}
	return &rest.Config{
		Host:            endpoint,
		BearerToken:     strings.TrimSpace(string(tok)),
		TLSClientConfig: rest.TLSClientConfig{CAData: sec.Data["ca.crt"]},
	}, nil
}

// probe asks the member's API for its version, nodes and pods.
func probe(ctx context.Context, m *member) (probeResult, error) {
	kc, _ := m.clients()
	var r probeResult
	v, err := kc.Discovery().ServerVersion()
	if err != nil {
		return r, fmt.Errorf("version: %w", err)
	}
	r.version = v.GitVersion
	nodes, err := kc.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return r, fmt.Errorf("list nodes: %w", err)
	}
	r.allocatable, r.allocated = corev1.ResourceList{}, corev1.ResourceList{}
	add := func(l corev1.ResourceList, name corev1.ResourceName, q resource.Quantity) {
		s := l[name]
		s.Add(q)
		l[name] = s
	}
	for _, n := range nodes.Items {
		r.nodes.Total++
		ready := false
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				ready = true
			}
		}
		if !ready || n.Spec.Unschedulable {
			continue
		}
		r.nodes.Ready++
		for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourcePods} {
			if q, ok := n.Status.Allocatable[name]; ok {
				add(r.allocatable, name, q)
			}
		}
	}
	pods, err := kc.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "status.phase!=Succeeded,status.phase!=Failed"})
	if err != nil {
		return r, fmt.Errorf("list pods: %w", err)
	}
	for _, p := range pods.Items {
		if p.Spec.NodeName == "" {
			continue
		}
		add(r.allocated, corev1.ResourcePods, *resource.NewQuantity(1, resource.DecimalSI))
		for _, ctr := range p.Spec.Containers {
			for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if q, ok := ctr.Resources.Requests[name]; ok {
					add(r.allocated, name, q)
				}
			}
		}
	}
	return r, nil
}

// writeMemberStatus writes the Ready condition, the not-ready taint and,
// after a good check, version, capacity and heartbeat time. It never
// writes anything from the credentials Secret.
func (c *Controller) writeMemberStatus(ctx context.Context, name string, ready bool, reason, msg string, ok bool, res probeResult) error {
	api := c.dyn.Resource(v1alpha1.MemberClusterGVR)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	u, err := api.Get(wctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	var mc v1alpha1.MemberCluster
	if err := v1alpha1.FromUnstructured(u, &mc); err != nil {
		return err
	}
	// The taint is spec: update it first.
	hasTaint := false
	var taints []corev1.Taint
	for _, t := range mc.Spec.Taints {
		if t.Key == v1alpha1.NotReadyTaintKey {
			hasTaint = true
			continue
		}
		taints = append(taints, t)
	}
	if ready == hasTaint {
		if !ready {
			now := metav1.NewTime(c.now())
			taints = append(taints, corev1.Taint{Key: v1alpha1.NotReadyTaintKey, Effect: corev1.TaintEffectNoExecute, TimeAdded: &now})
		}
		var ts []any
		for _, t := range taints {
			tu, err := v1alpha1.ToUnstructured(t)
			if err != nil {
				return err
			}
			ts = append(ts, tu.Object)
		}
		if len(ts) == 0 {
			unstructured.RemoveNestedField(u.Object, "spec", "taints")
		} else if err := unstructured.SetNestedSlice(u.Object, ts, "spec", "taints"); err != nil {
			return err
		}
		if u, err = api.Update(wctx, u, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("update taints: %w", err)
		}
	}
	st := mc.Status
	cond := metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: reason, Message: msg, ObservedGeneration: u.GetGeneration()}
	if ready {
		cond.Status = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&st.Conditions, cond)
	if ok {
		now := metav1.NewTime(c.now())
		st.LastHeartbeatTime = &now
		st.KubernetesVersion = res.version
		nodes := res.nodes
		st.Nodes = &nodes
		st.Allocatable, st.Allocated = res.allocatable, res.allocated
	}
	su, err := v1alpha1.ToUnstructured(st)
	if err != nil {
		return err
	}
	u.Object["status"] = su.Object
	if _, err := api.UpdateStatus(wctx, u, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update status: %w", err)
	}
	return nil
}

// MemberConfig builds a client config for mc from its credentials Secret,
// read with client (use the caller's own client so that only users who may
// read the Secret can reach the member, e.g. the dashboard's context switch).
func MemberConfig(ctx context.Context, client kubernetes.Interface, mc *v1alpha1.MemberCluster) (*rest.Config, error) {
	if mc.Spec.SecretRef == nil {
		return nil, fmt.Errorf("%w: spec.secretRef is not set", errCredentials)
	}
	sec, err := client.CoreV1().Secrets(mc.Spec.SecretRef.Namespace).Get(ctx, mc.Spec.SecretRef.Name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("%w: secret %s/%s: %w", errCredentials, mc.Spec.SecretRef.Namespace, mc.Spec.SecretRef.Name, err)
	}
	return memberConfig(mc.Spec.APIEndpoint, sec)
}
