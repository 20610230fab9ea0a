package nodelifecycle_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/manager"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/nodeagent/hollow"
	"github.com/skiffhq/skiff/server"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func logger() *slog.Logger {
	if os.Getenv("SKIFF_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func eventually(t *testing.T, what string, timeout time.Duration, f func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := f()
		if ok {
			return
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: timed out (last: %v)", what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func condition(n *corev1.Node, t corev1.NodeConditionType) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == t {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

func podReady(p *corev1.Pod) corev1.ConditionStatus {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status
		}
	}
	return ""
}

func taint(n *corev1.Node, key string, effect corev1.TaintEffect) *corev1.Taint {
	for i := range n.Spec.Taints {
		if n.Spec.Taints[i].Key == key && n.Spec.Taints[i].Effect == effect {
			return &n.Spec.Taints[i]
		}
	}
	return nil
}

// TestLostNode: a hollow node that stops renewing its Lease becomes
// Unknown and tainted; its pods are marked not ready; pods without a
// toleration are evicted at once and their ReplicaSet replaces them on the
// nodes that are left; a pod tolerating for N seconds stays that long; a
// pod tolerating forever stays. When the node comes back the taints go.
func TestLostNode(t *testing.T) {
	// DefaultTolerationSeconds is off so pods can have no toleration at all.
	s := testserver.Start(t, func(c *server.Config) {
		c.Disable = append(c.Disable, "controller-manager")
		c.DisableAdmissionPlugins = append(c.DisableAdmissionPlugins, "DefaultTolerationSeconds")
	})
	c := s.Client
	ctx := context.Background()
	if _, err := c.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	m, err := manager.New(manager.Config{RestConfig: s.Config, Logger: logger(),
		Controllers: []string{"replicaset", "nodelifecycle", "tainteviction"},
		NodeLifecycle: manager.NodeLifecycleConfig{MonitorGracePeriod: 3 * time.Second, StartupGracePeriod: 3 * time.Second,
			MonitorPeriod: 300 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(ctx)
	mdone := make(chan struct{})
	go func() { defer close(mdone); _ = m.Run(mctx) }()
	defer func() { cancel(); <-mdone }()

	// The node to lose runs alone first, so every pod lands on it.
	lost, err := hollow.Start(ctx, s.Config, hollow.Options{Nodes: 1, NamePrefix: "lost-", LeaseInterval: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer lost.Stop()
	const tolerated = 6
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To(int32(2)), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}}},
	}
	if _, err := c.AppsV1().ReplicaSets("default").Create(ctx, rs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	bare := func(name string, tol *corev1.Toleration) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{NodeName: "lost-0", Containers: []corev1.Container{{Name: "c", Image: "x"}}}}
		if tol != nil {
			p.Spec.Tolerations = []corev1.Toleration{*tol}
		}
		if _, err := c.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	bare("tolerant", &corev1.Toleration{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To(int64(tolerated))})
	bare("forever", &corev1.Toleration{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute})
	var originals []string
	eventually(t, "all pods running on lost-0", 30*time.Second, func() (bool, error) {
		l, err := c.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		if err != nil || len(l.Items) != 4 {
			return false, err
		}
		originals = nil
		for _, p := range l.Items {
			if p.Spec.NodeName != "lost-0" || podReady(&p) != corev1.ConditionTrue {
				return false, fmt.Errorf("pod %s on %q ready %q", p.Name, p.Spec.NodeName, podReady(&p))
			}
			if p.Labels["app"] == "web" {
				originals = append(originals, p.Name)
			}
		}
		return true, nil
	})

	keep, err := hollow.Start(ctx, s.Config, hollow.Options{Nodes: 2, NamePrefix: "keep-", LeaseInterval: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Stop()
	// Healthy nodes stay untainted past the grace period.
	time.Sleep(4 * time.Second)
	for _, name := range []string{"keep-0", "keep-1", "lost-0"} {
		n, err := c.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(n.Spec.Taints) != 0 || condition(n, corev1.NodeReady).Status != corev1.ConditionTrue {
			t.Fatalf("healthy node %s: taints %v ready %v", name, n.Spec.Taints, condition(n, corev1.NodeReady))
		}
	}

	lost.Stop() // heartbeats stop
	var tainted time.Time
	eventually(t, "lost-0 Unknown with the unreachable taints", 30*time.Second, func() (bool, error) {
		n, err := c.CoreV1().Nodes().Get(ctx, "lost-0", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		ready := condition(n, corev1.NodeReady)
		if ready.Status != corev1.ConditionUnknown {
			return false, nil
		}
		if ready.Reason != "NodeStatusUnknown" || ready.Message != "Kubelet stopped posting node status." {
			t.Fatalf("Ready condition %+v", ready)
		}
		for _, ct := range []corev1.NodeConditionType{corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure} {
			if condition(n, ct).Status != corev1.ConditionUnknown {
				return false, fmt.Errorf("%s still %s", ct, condition(n, ct).Status)
			}
		}
		ne := taint(n, corev1.TaintNodeUnreachable, corev1.TaintEffectNoExecute)
		if ne == nil || taint(n, corev1.TaintNodeUnreachable, corev1.TaintEffectNoSchedule) == nil {
			return false, fmt.Errorf("taints %v", n.Spec.Taints)
		}
		if ne.TimeAdded == nil {
			t.Fatalf("NoExecute taint without timeAdded: %+v", ne)
		}
		tainted = ne.TimeAdded.Time
		return true, nil
	})

	// Pods without a toleration go at once; the ReplicaSet replaces them
	// on the healthy nodes.
	eventually(t, "ReplicaSet pods evicted and replaced on healthy nodes", 30*time.Second, func() (bool, error) {
		l, err := c.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return false, err
		}
		running := 0
		for _, p := range l.Items {
			isOriginal := p.Name == originals[0] || p.Name == originals[1]
			if isOriginal && p.DeletionTimestamp == nil {
				return false, fmt.Errorf("original %s not evicted", p.Name)
			}
			if !isOriginal && p.DeletionTimestamp == nil && (p.Spec.NodeName == "keep-0" || p.Spec.NodeName == "keep-1") && podReady(&p) == corev1.ConditionTrue {
				running++
			}
			if !isOriginal && p.Spec.NodeName == "lost-0" {
				t.Fatalf("replacement %s scheduled on the lost node", p.Name)
			}
		}
		return running == 2, fmt.Errorf("%d replacements running", running)
	})
	for _, name := range originals {
		p, err := c.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		disrupted := false
		for _, cond := range p.Status.Conditions {
			disrupted = disrupted || (cond.Type == corev1.DisruptionTarget && cond.Reason == "DeletionByTaintManager")
		}
		if !disrupted {
			t.Errorf("evicted pod %s lacks the DisruptionTarget condition: %+v", name, p.Status.Conditions)
		}
	}

	// The pods left on the node are marked not ready.
	eventually(t, "pods on lost-0 not ready", 10*time.Second, func() (bool, error) {
		p, err := c.CoreV1().Pods("default").Get(ctx, "forever", metav1.GetOptions{})
		return err == nil && podReady(p) == corev1.ConditionFalse, err
	})

	// The tolerating pod goes after its tolerationSeconds, not before.
	var deletedAt time.Time
	eventually(t, "tolerant pod evicted after its toleration", 30*time.Second, func() (bool, error) {
		p, err := c.CoreV1().Pods("default").Get(ctx, "tolerant", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			t.Fatal("tolerant pod deleted outright; its deletion time is unknown")
		}
		if err != nil || p.DeletionTimestamp == nil {
			return false, err
		}
		deletedAt = p.DeletionTimestamp.Time
		// The deletion timestamp is now + the 30s grace period.
		if p.DeletionGracePeriodSeconds != nil {
			deletedAt = deletedAt.Add(-time.Duration(*p.DeletionGracePeriodSeconds) * time.Second)
		}
		return true, nil
	})
	// Both times have one-second resolution.
	if held := deletedAt.Sub(tainted); held < (tolerated-1)*time.Second {
		t.Fatalf("tolerant pod evicted %v after the taint, want >= %ds", held, tolerated)
	}
	p, err := c.CoreV1().Pods("default").Get(ctx, "forever", metav1.GetOptions{})
	if err != nil || p.DeletionTimestamp != nil {
		t.Fatalf("pod tolerating forever was evicted: %v %v", err, p.DeletionTimestamp)
	}

	// The node comes back: Ready again and untainted.
	back, err := hollow.Start(ctx, s.Config, hollow.Options{Nodes: 1, NamePrefix: "lost-", LeaseInterval: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer back.Stop()
	eventually(t, "lost-0 healthy and untainted", 30*time.Second, func() (bool, error) {
		n, err := c.CoreV1().Nodes().Get(ctx, "lost-0", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return condition(n, corev1.NodeReady).Status == corev1.ConditionTrue && len(n.Spec.Taints) == 0, fmt.Errorf("taints %v", n.Spec.Taints)
	})
}

// TestNeverPosted: a node that never posts a Ready condition becomes
// Unknown (NodeStatusNeverUpdated) after the startup grace period, with
// the unreachable taints. A healthy hollow node keeps the zone from being
// fully disrupted (where, as upstream, nothing gets a NoExecute taint).
func TestNeverPosted(t *testing.T) {
	s := testserver.Start(t, func(c *server.Config) { c.Disable = append(c.Disable, "controller-manager") })
	c := s.Client
	ctx := context.Background()
	healthy, err := hollow.Start(ctx, s.Config, hollow.Options{Nodes: 1, LeaseInterval: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer healthy.Stop()
	if _, err := c.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "silent"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	m, err := manager.New(manager.Config{RestConfig: s.Config, Logger: logger(), Controllers: []string{"nodelifecycle"},
		NodeLifecycle: manager.NodeLifecycleConfig{MonitorGracePeriod: time.Second, StartupGracePeriod: 2 * time.Second, MonitorPeriod: 200 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(ctx)
	mdone := make(chan struct{})
	go func() { defer close(mdone); _ = m.Run(mctx) }()
	defer func() { cancel(); <-mdone }()
	eventually(t, "silent node Unknown and tainted", 20*time.Second, func() (bool, error) {
		n, err := c.CoreV1().Nodes().Get(ctx, "silent", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		ready := condition(n, corev1.NodeReady)
		if ready == nil || ready.Status != corev1.ConditionUnknown || ready.Reason != "NodeStatusNeverUpdated" {
			return false, fmt.Errorf("ready %+v", ready)
		}
		return taint(n, corev1.TaintNodeUnreachable, corev1.TaintEffectNoSchedule) != nil &&
			taint(n, corev1.TaintNodeUnreachable, corev1.TaintEffectNoExecute) != nil, fmt.Errorf("taints %v", n.Spec.Taints)
	})
	n, err := c.CoreV1().Nodes().Get(ctx, "hollow-node-0", metav1.GetOptions{})
	if err != nil || len(n.Spec.Taints) != 0 {
		t.Fatalf("healthy node tainted: %v %v", n.Spec.Taints, err)
	}
}
