package daemonset_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/daemonset"
	"github.com/skiffhq/skiff/controlplane/controllers/internal/managertest"
	"github.com/skiffhq/skiff/controlplane/controllers/internal/podutil"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/nodeagent/hollow"
	"github.com/skiffhq/skiff/server"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func newDS(name string, image string) *appsv1.DaemonSet {
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}},
			},
		},
	}
}

// placement maps node -> image of the live (not terminating) pods of app.
func placement(t *testing.T, c kubernetes.Interface, app string) map[string][]string {
	t.Helper()
	l, err := c.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, p := range l.Items {
		if p.DeletionTimestamp == nil {
			out[p.Spec.NodeName] = append(out[p.Spec.NodeName], p.Spec.Containers[0].Image)
		}
	}
	return out
}

// waitRolledOut waits until the status shows nodes updated, available pods.
func waitRolledOut(t *testing.T, c kubernetes.Interface, name string, nodes int32) *appsv1.DaemonSet {
	t.Helper()
	var ds *appsv1.DaemonSet
	eventually(t, "daemonset "+name+" rolled out", func() error {
		var err error
		if ds, err = c.AppsV1().DaemonSets("default").Get(context.Background(), name, metav1.GetOptions{}); err != nil {
			return err
		}
		st := ds.Status
		if st.ObservedGeneration != ds.Generation || st.DesiredNumberScheduled != nodes || st.CurrentNumberScheduled != nodes ||
			st.UpdatedNumberScheduled != nodes || st.NumberReady != nodes || st.NumberAvailable != nodes || st.NumberMisscheduled != 0 {
			return fmt.Errorf("status %+v", st)
		}
		got := placement(t, c, name)
		n := 0
		for node, imgs := range got {
			if node == "" || len(imgs) != 1 {
				return fmt.Errorf("placement %v", got)
			}
			n++
		}
		if n != int(nodes) {
			return fmt.Errorf("placement %v", got)
		}
		return nil
	})
	return ds
}

func startNodes(t *testing.T, s *testserver.Server, n int) []string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	nodes, err := hollow.Start(ctx, s.Config, hollow.Options{Nodes: n})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { nodes.Stop(); cancel() })
	return nodes.NodeNames()
}

func patchNode(t *testing.T, c kubernetes.Interface, name string, patch any) {
	t.Helper()
	b, _ := json.Marshal(patch)
	if _, err := c.CoreV1().Nodes().Patch(context.Background(), name, types.MergePatchType, b, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// availability watches the pods of app and records the fewest nodes with an
// available (ready, not terminating) pod and the most live pods on one node.
type availability struct {
	mu         sync.Mutex
	store      cache.Store
	app        string
	minNodes   int
	maxPerNode int
	tracking   bool
}

func watchAvailability(t *testing.T, c kubernetes.Interface, app string) *availability {
	a := &availability{app: app, minNodes: 1 << 30}
	f := informers.NewSharedInformerFactoryWithOptions(c, 0, informers.WithNamespace("default"))
	inf := f.Core().V1().Pods().Informer()
	a.store = inf.GetStore()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { a.observe() },
		UpdateFunc: func(_, _ any) { a.observe() },
		DeleteFunc: func(any) { a.observe() },
	})
	f.Start(ctx.Done())
	f.WaitForCacheSync(ctx.Done())
	return a
}

func (a *availability) observe() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.tracking {
		return
	}
	avail, live := map[string]bool{}, map[string]int{}
	for _, o := range a.store.List() {
		p := o.(*corev1.Pod)
		if p.Labels["app"] != a.app || p.DeletionTimestamp != nil || p.Spec.NodeName == "" {
			continue
		}
		live[p.Spec.NodeName]++
		if podutil.IsReady(p) {
			avail[p.Spec.NodeName] = true
		}
	}
	a.minNodes = min(a.minNodes, len(avail))
	for _, n := range live {
		a.maxPerNode = max(a.maxPerNode, n)
	}
}

func (a *availability) start() {
	a.mu.Lock()
	a.tracking, a.minNodes, a.maxPerNode = true, 1<<30, 0
	a.mu.Unlock()
	a.observe()
}

func (a *availability) stats() (int, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.minNodes, a.maxPerNode
}

func TestDaemonSetPlacementTaintsAndLabels(t *testing.T) {
	s := testserver.Start(t)
	c := s.Client
	ctx := context.Background()
	nodes := startNodes(t, s, 3)

	ds, err := c.AppsV1().DaemonSets("default").Create(ctx, newDS("agent", "agent:1"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ds = waitRolledOut(t, c, "agent", 3)
	l, err := c.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=agent"})
	if err != nil {
		t.Fatal(err)
	}
	revs, err := c.AppsV1().ControllerRevisions("default").List(ctx, metav1.ListOptions{LabelSelector: "app=agent"})
	if err != nil || len(revs.Items) != 1 {
		t.Fatalf("revisions %v %v", revs, err)
	}
	hash := revs.Items[0].Labels[appsv1.ControllerRevisionHashLabelKey]
	if ref := metav1.GetControllerOf(&revs.Items[0]); ref == nil || ref.UID != ds.UID || revs.Items[0].Revision != 1 {
		t.Fatalf("revision %s owner %v number %d", revs.Items[0].Name, ref, revs.Items[0].Revision)
	}
	for _, p := range l.Items {
		if daemonset.TargetNode(&p) != p.Spec.NodeName {
			t.Fatalf("pod %s affinity %+v bound to %s", p.Name, p.Spec.Affinity, p.Spec.NodeName)
		}
		if p.Labels[appsv1.ControllerRevisionHashLabelKey] != hash {
			t.Fatalf("pod %s hash %q, revision %q", p.Name, p.Labels[appsv1.ControllerRevisionHashLabelKey], hash)
		}
		if ref := metav1.GetControllerOf(&p); ref == nil || ref.UID != ds.UID {
			t.Fatalf("pod %s owner %v", p.Name, ref)
		}
		keys := map[string]bool{}
		for _, tol := range p.Spec.Tolerations {
			keys[tol.Key+":"+string(tol.Effect)] = true
		}
		for _, want := range []string{"node.kubernetes.io/not-ready:NoExecute", "node.kubernetes.io/unreachable:NoExecute",
			"node.kubernetes.io/disk-pressure:NoSchedule", "node.kubernetes.io/memory-pressure:NoSchedule",
			"node.kubernetes.io/pid-pressure:NoSchedule", "node.kubernetes.io/unschedulable:NoSchedule"} {
			if !keys[want] {
				t.Fatalf("pod %s lacks toleration %s: %+v", p.Name, want, p.Spec.Tolerations)
			}
		}
	}

	// A NoSchedule taint keeps the running pod (counted misscheduled); a
	// NoExecute taint removes it.
	patchNode(t, c, nodes[2], map[string]any{"spec": map[string]any{"taints": []any{map[string]any{"key": "maint", "value": "true", "effect": "NoSchedule"}}}})
	eventually(t, "NoSchedule taint: pod stays, misscheduled", func() error {
		d, _ := c.AppsV1().DaemonSets("default").Get(ctx, "agent", metav1.GetOptions{})
		if d.Status.DesiredNumberScheduled != 2 || d.Status.NumberMisscheduled != 1 || len(placement(t, c, "agent")[nodes[2]]) != 1 {
			return fmt.Errorf("status %+v placement %v", d.Status, placement(t, c, "agent"))
		}
		return nil
	})
	patchNode(t, c, nodes[2], map[string]any{"spec": map[string]any{"taints": []any{map[string]any{"key": "maint", "value": "true", "effect": "NoExecute"}}}})
	eventually(t, "NoExecute taint: pod leaves", func() error {
		got := placement(t, c, "agent")
		d, _ := c.AppsV1().DaemonSets("default").Get(ctx, "agent", metav1.GetOptions{})
		if len(got[nodes[2]]) != 0 || len(got) != 2 || d.Status.DesiredNumberScheduled != 2 || d.Status.NumberMisscheduled != 0 || d.Status.NumberAvailable != 2 {
			return fmt.Errorf("placement %v status %+v", got, d.Status)
		}
		return nil
	})
	// Tolerating the taint brings it back.
	if _, err := modifyDS(ctx, c, "agent", func(ds *appsv1.DaemonSet) {
		ds.Spec.Template.Spec.Tolerations = []corev1.Toleration{{Key: "maint", Operator: corev1.TolerationOpExists}}
	}); err != nil {
		t.Fatal(err)
	}
	waitRolledOut(t, c, "agent", 3)

	// A node selector follows node labels.
	edge := newDS("edge", "edge:1")
	edge.Spec.Template.Spec.NodeSelector = map[string]string{"role": "edge"}
	if _, err := c.AppsV1().DaemonSets("default").Create(ctx, edge, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "no edge nodes yet", func() error {
		d, _ := c.AppsV1().DaemonSets("default").Get(ctx, "edge", metav1.GetOptions{})
		if d.Status.ObservedGeneration != d.Generation || d.Status.DesiredNumberScheduled != 0 {
			return fmt.Errorf("status %+v", d.Status)
		}
		return nil
	})
	patchNode(t, c, nodes[1], map[string]any{"metadata": map[string]any{"labels": map[string]any{"role": "edge"}}})
	waitRolledOut(t, c, "edge", 1)
	if got := placement(t, c, "edge"); len(got[nodes[1]]) != 1 {
		t.Fatalf("edge pods %v, want one on %s", got, nodes[1])
	}
	patchNode(t, c, nodes[1], map[string]any{"metadata": map[string]any{"labels": map[string]any{"role": nil}}})
	eventually(t, "edge pod removed with the label", func() error {
		if got := placement(t, c, "edge"); len(got) != 0 {
			return fmt.Errorf("placement %v", got)
		}
		return nil
	})
	// Node removal drops it from the desired count.
	if err := c.CoreV1().Nodes().Delete(ctx, nodes[0], metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "desired follows node removal", func() error {
		d, _ := c.AppsV1().DaemonSets("default").Get(ctx, "agent", metav1.GetOptions{})
		if d.Status.DesiredNumberScheduled != 2 {
			return fmt.Errorf("status %+v", d.Status)
		}
		return nil
	})
}

func TestDaemonSetRollingUpdate(t *testing.T) {
	s := testserver.Start(t)
	c := s.Client
	ctx := context.Background()
	startNodes(t, s, 3)
	a := watchAvailability(t, c, "roll")
	if _, err := c.AppsV1().DaemonSets("default").Create(ctx, newDS("roll", "roll:1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRolledOut(t, c, "roll", 3)

	// maxUnavailable 1 (the default): at least 2 nodes keep an available pod.
	a.start()
	if _, err := modifyDS(ctx, c, "roll", func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.Containers[0].Image = "roll:2" }); err != nil {
		t.Fatal(err)
	}
	waitRolledOut(t, c, "roll", 3)
	for n, imgs := range placement(t, c, "roll") {
		if imgs[0] != "roll:2" {
			t.Fatalf("node %s runs %v", n, imgs)
		}
	}
	if minNodes, maxPer := a.stats(); minNodes < 2 || maxPer > 1 {
		t.Fatalf("maxUnavailable=1: %d nodes available at worst (want >= 2), %d pods on one node (want 1)", minNodes, maxPer)
	}

	// maxSurge 1, maxUnavailable 0: never below 3 available nodes.
	zero, one := intstr.FromInt32(0), intstr.FromInt32(1)
	a.start()
	if _, err := modifyDS(ctx, c, "roll", func(ds *appsv1.DaemonSet) {
		ds.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateDaemonSet{MaxUnavailable: &zero, MaxSurge: &one}
		ds.Spec.Template.Spec.Containers[0].Image = "roll:3"
	}); err != nil {
		t.Fatal(err)
	}
	waitRolledOut(t, c, "roll", 3)
	for n, imgs := range placement(t, c, "roll") {
		if imgs[0] != "roll:3" {
			t.Fatalf("node %s runs %v", n, imgs)
		}
	}
	if minNodes, maxPer := a.stats(); minNodes < 3 || maxPer > 2 {
		t.Fatalf("maxSurge=1: %d nodes available at worst (want 3), %d pods on one node (want <= 2)", minNodes, maxPer)
	}

	// kubectl rollout history / undo / restart / status.
	hist := kubectl(t, s, "rollout", "history", "daemonset/roll")
	for _, r := range []string{"\n1 ", "\n2 ", "\n3 "} {
		if !strings.Contains(hist, r) {
			t.Fatalf("history:\n%s", hist)
		}
	}
	if out := kubectl(t, s, "rollout", "history", "daemonset/roll", "--revision=2"); !strings.Contains(out, "roll:2") {
		t.Fatalf("history revision 2:\n%s", out)
	}
	kubectl(t, s, "rollout", "undo", "daemonset/roll")
	if out := kubectl(t, s, "rollout", "status", "daemonset/roll", "--timeout=60s"); !strings.Contains(out, `daemon set "roll" successfully rolled out`) {
		t.Fatalf("rollout status: %s", out)
	}
	waitRolledOut(t, c, "roll", 3)
	for n, imgs := range placement(t, c, "roll") {
		if imgs[0] != "roll:2" {
			t.Fatalf("after undo node %s runs %v", n, imgs)
		}
	}
	revs, _ := c.AppsV1().ControllerRevisions("default").List(ctx, metav1.ListOptions{LabelSelector: "app=roll"})
	var nums []int64
	for _, r := range revs.Items {
		nums = append(nums, r.Revision)
	}
	sort.Slice(nums, func(i, j int) bool { return nums[i] < nums[j] })
	if fmt.Sprint(nums) != "[1 3 4]" {
		t.Fatalf("revision numbers after undo %v, want [1 3 4] (2 reused as 4)", nums)
	}
	kubectl(t, s, "rollout", "restart", "daemonset/roll")
	kubectl(t, s, "rollout", "status", "daemonset/roll", "--timeout=60s")
	waitRolledOut(t, c, "roll", 3)
	l, _ := c.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=roll"})
	for _, p := range l.Items {
		if p.DeletionTimestamp == nil && p.Annotations["kubectl.kubernetes.io/restartedAt"] == "" {
			t.Fatalf("pod %s not restarted", p.Name)
		}
	}

	// OnDelete: a template change replaces nothing until a pod is deleted.
	if _, err := modifyDS(ctx, c, "roll", func(ds *appsv1.DaemonSet) {
		ds.Spec.UpdateStrategy = appsv1.DaemonSetUpdateStrategy{Type: appsv1.OnDeleteDaemonSetStrategyType}
		ds.Spec.Template.Spec.Containers[0].Image = "roll:9"
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "OnDelete observed", func() error {
		d, _ := c.AppsV1().DaemonSets("default").Get(ctx, "roll", metav1.GetOptions{})
		if d.Status.ObservedGeneration != d.Generation || d.Status.UpdatedNumberScheduled != 0 || d.Status.NumberAvailable != 3 {
			return fmt.Errorf("status %+v", d.Status)
		}
		return nil
	})
	l, _ = c.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=roll"})
	victim := l.Items[0]
	if err := c.CoreV1().Pods("default").Delete(ctx, victim.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deleted pod replaced at the new template", func() error {
		got := placement(t, c, "roll")
		if len(got[victim.Spec.NodeName]) != 1 || got[victim.Spec.NodeName][0] != "roll:9" {
			return fmt.Errorf("placement %v", got)
		}
		n9 := 0
		for _, imgs := range got {
			if imgs[0] == "roll:9" {
				n9++
			}
		}
		if n9 != 1 {
			return fmt.Errorf("placement %v", got)
		}
		return nil
	})
}

func kubectl(t *testing.T, s *testserver.Server, args ...string) string {
	t.Helper()
	out, err := exec.Command("kubectl", append([]string{"--kubeconfig", s.Kubeconfig()}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestControllerManagerRestartMidRollout stops the controller manager in
// the middle of a DaemonSet's rolling update (maxUnavailable 1) and starts
// another: the rollout completes with one new pod per node, and never
// more than one node without an available pod nor two pods on one node
// across the restart.
func TestControllerManagerRestartMidRollout(t *testing.T) {
	s := testserver.Start(t, func(c *server.Config) { c.Disable = append(c.Disable, "controller-manager") })
	c := s.Client
	ctx := context.Background()
	runManager := func() func() { return managertest.Start(t, s.Config, "daemonset", "serviceaccount") }
	stop := runManager()
	startNodes(t, s, 4)
	a := watchAvailability(t, c, "mid")
	// A new pod must stay Ready a second before the next node's is
	// replaced, so the rollout lasts long enough to be seen under way (on
	// hollow nodes it could otherwise finish between two polls on a
	// loaded machine).
	mid := newDS("mid", "mid:1")
	mid.Spec.MinReadySeconds = 1
	if _, err := c.AppsV1().DaemonSets("default").Create(ctx, mid, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRolledOut(t, c, "mid", 4)
	a.start()
	if _, err := modifyDS(ctx, c, "mid", func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.Containers[0].Image = "mid:2" }); err != nil {
		t.Fatal(err)
	}
	eventually(t, "rollout under way", func() error {
		n := 0
		for _, imgs := range placement(t, c, "mid") {
			if len(imgs) == 1 && imgs[0] == "mid:2" {
				n++
			}
		}
		if n < 1 || n >= 4 {
			return fmt.Errorf("%d nodes at mid:2", n)
		}
		return nil
	})
	stop()
	time.Sleep(500 * time.Millisecond)
	stop = runManager()
	defer stop()
	waitRolledOut(t, c, "mid", 4)
	for n, imgs := range placement(t, c, "mid") {
		if imgs[0] != "mid:2" {
			t.Fatalf("node %s runs %v", n, imgs)
		}
	}
	if minNodes, maxPer := a.stats(); minNodes < 3 || maxPer > 1 {
		t.Fatalf("across the restart: %d nodes available at worst (want >= 3), %d pods on one node (want 1)", minNodes, maxPer)
	}
}

// runController runs a DaemonSet controller on its own informers until the
// test ends. Started after a test made its objects, its first sync already
// sees them all.
func runController(t *testing.T, c kubernetes.Interface) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := informers.NewSharedInformerFactory(c, 0)
	dc, err := daemonset.New(daemonset.Config{Client: c, Informers: f, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	f.Start(ctx.Done())
	done := make(chan struct{})
	go func() { defer close(done); _ = dc.Run(ctx, 2) }()
	t.Cleanup(func() { cancel(); <-done; f.Shutdown() })
}

// TestDaemonSetClaimsOwnPodsAndOrphansOnly: a DaemonSet whose selector
// also matches the pods of another DaemonSet neither counts nor adopts
// those, and adopts a matching orphan on a node instead of creating a
// second pod there. The pods are read through the controller-UID index,
// so a wrong index key shows up here as a pod too many or too few.
func TestDaemonSetClaimsOwnPodsAndOrphansOnly(t *testing.T) {
	s := testserver.Start(t, func(c *server.Config) { c.Disable = append(c.Disable, daemonset.Name) })
	c := s.Client
	ctx := context.Background()
	nodes := startNodes(t, s, 2)
	sort.Strings(nodes)

	shared := func(name string, selector map[string]string) *appsv1.DaemonSet {
		ds := newDS(name, name+":1")
		ds.Spec.Selector.MatchLabels = selector
		ds.Spec.Template.Labels = map[string]string{"group": "shared", "side": name}
		// OnDelete: the adopted orphan (no revision hash) is kept, not
		// replaced, so its identity can be checked at the end.
		ds.Spec.UpdateStrategy = appsv1.DaemonSetUpdateStrategy{Type: appsv1.OnDeleteDaemonSetStrategyType}
		return ds
	}
	// other's selector does not match mine's pods; mine's matches all.
	other, err := c.AppsV1().DaemonSets("default").Create(ctx, shared("other", map[string]string{"group": "shared", "side": "other"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod := func(name, side string, owner *appsv1.DaemonSet) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"group": "shared", "side": side}},
			Spec:       corev1.PodSpec{NodeName: nodes[0], Containers: []corev1.Container{{Name: "c", Image: side + ":1"}}},
		}
		if owner != nil {
			p.OwnerReferences = []metav1.OwnerReference{*podutil.NewControllerRef(owner, daemonset.GVK)}
		}
		got, err := c.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	theirs := pod("theirs", "other", other)
	stray := pod("stray", "mine", nil)
	mine, err := c.AppsV1().DaemonSets("default").Create(ctx, shared("mine", map[string]string{"group": "shared"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	runController(t, c)

	eventually(t, "both daemonsets settled on their own pods", func() error {
		for _, name := range []string{"mine", "other"} {
			ds, err := c.AppsV1().DaemonSets("default").Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			st := ds.Status
			if st.ObservedGeneration != ds.Generation || st.DesiredNumberScheduled != 2 || st.CurrentNumberScheduled != 2 ||
				st.NumberMisscheduled != 0 || st.NumberReady != 2 {
				return fmt.Errorf("%s: status %+v", name, st)
			}
		}
		l, err := c.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "group=shared"})
		if err != nil {
			return err
		}
		byOwner := map[types.UID][]string{}
		uids := map[string]types.UID{}
		for _, p := range l.Items {
			if p.DeletionTimestamp != nil {
				return fmt.Errorf("pod %s is being deleted", p.Name)
			}
			var owner types.UID
			if ref := metav1.GetControllerOf(&p); ref != nil {
				owner = ref.UID
			}
			byOwner[owner] = append(byOwner[owner], daemonset.TargetNode(&p))
			uids[p.Name] = owner
		}
		for _, o := range []types.UID{mine.UID, other.UID} {
			sort.Strings(byOwner[o])
			if fmt.Sprint(byOwner[o]) != fmt.Sprint(nodes) {
				return fmt.Errorf("daemonset %s has pods on %v, want one on each of %v", o, byOwner[o], nodes)
			}
		}
		if len(l.Items) != 4 {
			return fmt.Errorf("%d pods, want 4: %v", len(l.Items), uids)
		}
		if uids["stray"] != mine.UID || uids["theirs"] != other.UID {
			return fmt.Errorf("controllers %v: want stray adopted by mine (%s), theirs kept by other (%s)", uids, mine.UID, other.UID)
		}
		return nil
	})
	// The very pods made above, not replacements of the same name.
	for _, p := range []*corev1.Pod{stray, theirs} {
		got, err := c.CoreV1().Pods("default").Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.UID != p.UID {
			t.Errorf("pod %s was replaced", p.Name)
		}
	}
}

// modifyDS changes the DaemonSet name in default, again on a conflict with
// the controller's status writes.
func modifyDS(ctx context.Context, c kubernetes.Interface, name string, mutate func(*appsv1.DaemonSet)) (*appsv1.DaemonSet, error) {
	dss := c.AppsV1().DaemonSets("default")
	return testserver.Modify(ctx, dss.Get, dss.Update, name, mutate)
}
