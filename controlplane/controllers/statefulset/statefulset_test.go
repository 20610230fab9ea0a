package statefulset_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/internal/managertest"
	"github.com/skiffhq/skiff/controlplane/controllers/internal/podutil"
	"github.com/skiffhq/skiff/controlplane/controllers/statefulset"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/nodeagent/hollow"
	"github.com/skiffhq/skiff/server"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
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

func startNodes(t *testing.T, s *testserver.Server, n int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	nodes, err := hollow.Start(ctx, s.Config, hollow.Options{Nodes: n})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { nodes.Stop(); cancel() })
}

// entry is one observation of the pod watch: what happened to which pod,
// and which pods of the set were ready or present at that moment.
type entry struct {
	op, pod string
	ready   map[string]bool
	present map[string]bool
	rv      string
}

// podLog records the pod watch of a namespace in order. Every entry carries
// the state of the other pods as the same watch stream had them, so an
// ordering rule can be checked without timing.
type podLog struct {
	mu      sync.Mutex
	entries []entry
	store   cache.Store
	deleted map[string]bool
}

func watchPods(t *testing.T, c kubernetes.Interface, ns string) *podLog {
	l := &podLog{deleted: map[string]bool{}}
	f := informers.NewSharedInformerFactoryWithOptions(c, 0, informers.WithNamespace(ns))
	inf := f.Core().V1().Pods().Informer()
	l.store = inf.GetStore()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { l.record("add", obj.(*corev1.Pod)) },
		UpdateFunc: func(o, n any) {
			old, cur := o.(*corev1.Pod), n.(*corev1.Pod)
			if old.DeletionTimestamp == nil && cur.DeletionTimestamp != nil {
				l.record("terminate", cur)
			}
		},
		DeleteFunc: func(obj any) {
			if p, ok := obj.(*corev1.Pod); ok {
				l.record("delete", p)
			}
		},
	})
	f.Start(ctx.Done())
	f.WaitForCacheSync(ctx.Done())
	return l
}

func (l *podLog) record(op string, p *corev1.Pod) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := entry{op: op, pod: p.Name, ready: map[string]bool{}, present: map[string]bool{}, rv: p.ResourceVersion}
	for _, o := range l.store.List() {
		q := o.(*corev1.Pod)
		if op == "delete" && q.Name == p.Name {
			continue
		}
		e.present[q.Name] = true
		e.ready[q.Name] = podutil.IsReady(q) && q.DeletionTimestamp == nil
	}
	l.entries = append(l.entries, e)
}

func (l *podLog) snapshot() []entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]entry(nil), l.entries...)
}

// first returns the first entry for pod with one of ops, or nil.
func first(es []entry, pod string, ops ...string) *entry {
	for i := range es {
		if es[i].pod == pod && slices.Contains(ops, es[i].op) {
			return &es[i]
		}
	}
	return nil
}

func newSet(name string, replicas int32, image string) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    &replicas,
			ServiceName: name,
			Selector:    &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}},
			},
		},
	}
}

func getSet(t *testing.T, c kubernetes.Interface, name string) *appsv1.StatefulSet {
	t.Helper()
	s, err := c.AppsV1().StatefulSets("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// waitSettled waits until the set's status shows every replica ready at
// the update revision (or, with a partition, the status rollout status
// expects).
func waitSettled(t *testing.T, c kubernetes.Interface, name string, wantUpdated int32) *appsv1.StatefulSet {
	t.Helper()
	var set *appsv1.StatefulSet
	eventually(t, "statefulset "+name+" settled", func() error {
		set = getSet(t, c, name)
		st, r := set.Status, *set.Spec.Replicas
		if st.ObservedGeneration != set.Generation || st.Replicas != r || st.ReadyReplicas != r || st.AvailableReplicas != r || st.UpdatedReplicas != wantUpdated {
			return fmt.Errorf("status %+v", st)
		}
		pods, err := c.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			return err
		}
		if len(pods.Items) != int(r) {
			return fmt.Errorf("%d pods", len(pods.Items))
		}
		return nil
	})
	return set
}

func podsByName(t *testing.T, c kubernetes.Interface, app string) map[string]corev1.Pod {
	t.Helper()
	l, err := c.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]corev1.Pod{}
	for _, p := range l.Items {
		out[p.Name] = p
	}
	return out
}

func scale(t *testing.T, c kubernetes.Interface, name string, n int32) {
	t.Helper()
	ctx := context.Background()
	sc, err := c.AppsV1().StatefulSets("default").GetScale(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sc.Spec.Replicas = n
	if _, err := c.AppsV1().StatefulSets("default").UpdateScale(ctx, name, sc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestOrderedScaleWithClaims(t *testing.T) {
	s := testserver.Start(t)
	c := s.Client
	ctx := context.Background()
	startNodes(t, s, 2)
	log := watchPods(t, c, "default")
	// The revision each claim was created at: the storage controllers
	// update claims afterwards (finalizers, annotations), so the claim's
	// current resourceVersion says nothing about its creation.
	claimWatch, err := c.CoreV1().PersistentVolumeClaims("default").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer claimWatch.Stop()
	var claimMu sync.Mutex
	claimCreated := map[string]int64{}
	go func() {
		for e := range claimWatch.ResultChan() {
			pvc, ok := e.Object.(*corev1.PersistentVolumeClaim)
			if !ok || e.Type != watch.Added {
				continue
			}
			rv, _ := strconv.ParseInt(pvc.ResourceVersion, 10, 64)
			claimMu.Lock()
			if _, seen := claimCreated[pvc.Name]; !seen {
				claimCreated[pvc.Name] = rv
			}
			claimMu.Unlock()
		}
	}()

	set := newSet("web", 3, "nginx:1")
	set.Spec.VolumeClaimTemplates = []corev1.PersistentVolumeClaim{{
		ObjectMeta: metav1.ObjectMeta{Name: "data", Labels: map[string]string{"tier": "db"}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}}
	if _, err := c.AppsV1().StatefulSets("default").Create(ctx, set, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	set = waitSettled(t, c, "web", 3)
	if set.Status.CurrentRevision == "" || set.Status.CurrentRevision != set.Status.UpdateRevision || set.Status.CurrentReplicas != 3 {
		t.Fatalf("revisions in status %+v", set.Status)
	}

	// Pod N was created only once pod N-1 was Ready, as the watch saw it.
	es := log.snapshot()
	for i := 1; i < 3; i++ {
		e := first(es, fmt.Sprintf("web-%d", i), "add")
		if e == nil || !e.ready[fmt.Sprintf("web-%d", i-1)] {
			t.Fatalf("web-%d created while web-%d was not ready (entry %+v)", i, i-1, e)
		}
	}

	pods := podsByName(t, c, "web")
	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("web-%d", i)
		p, ok := pods[name]
		if !ok {
			t.Fatalf("no pod %s among %v", name, pods)
		}
		ref := metav1.GetControllerOf(&p)
		if ref == nil || ref.Kind != "StatefulSet" || ref.UID != set.UID {
			t.Fatalf("%s owner %v", name, ref)
		}
		if p.Labels[appsv1.StatefulSetPodNameLabel] != name || p.Labels[appsv1.ControllerRevisionHashLabelKey] != set.Status.UpdateRevision ||
			p.Labels[appsv1.PodIndexLabel] != strconv.Itoa(i) || p.Spec.Hostname != name || p.Spec.Subdomain != "web" {
			t.Fatalf("%s identity: labels %v hostname %q subdomain %q", name, p.Labels, p.Spec.Hostname, p.Spec.Subdomain)
		}
		claim := "data-" + name
		var vol *corev1.Volume
		for j := range p.Spec.Volumes {
			if p.Spec.Volumes[j].Name == "data" {
				vol = &p.Spec.Volumes[j]
			}
		}
		if vol == nil || vol.PersistentVolumeClaim == nil || vol.PersistentVolumeClaim.ClaimName != claim {
			t.Fatalf("%s volumes %+v", name, p.Spec.Volumes)
		}
		pvc, err := c.CoreV1().PersistentVolumeClaims("default").Get(ctx, claim, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("claim %s: %v", claim, err)
		}
		if pvc.Labels["app"] != "web" || pvc.Labels["tier"] != "db" || pvc.Spec.Resources.Requests.Storage().String() != "1Gi" {
			t.Fatalf("claim %s: labels %v spec %+v", claim, pvc.Labels, pvc.Spec)
		}
		// The claim was written before the pod (etcd revisions are global).
		claimMu.Lock()
		pvcRV := claimCreated[claim]
		claimMu.Unlock()
		podRV, _ := strconv.ParseInt(first(es, name, "add").rv, 10, 64)
		if pvcRV == 0 || podRV == 0 || pvcRV >= podRV {
			t.Fatalf("claim %s (rv %d) not created before pod %s (rv %d)", claim, pvcRV, name, podRV)
		}
	}

	// Scale down to 1: web-2 goes first, web-1 only once web-2 is gone.
	scale(t, c, "web", 1)
	waitSettled(t, c, "web", 1)
	es = log.snapshot()
	t1 := first(es, "web-1", "terminate", "delete")
	if t1 == nil || t1.present["web-2"] {
		t.Fatalf("web-1 terminated while web-2 still existed (entry %+v)", t1)
	}
	for _, claim := range []string{"data-web-1", "data-web-2"} {
		if _, err := c.CoreV1().PersistentVolumeClaims("default").Get(ctx, claim, metav1.GetOptions{}); err != nil {
			t.Fatalf("claim %s not retained after scale down: %v", claim, err)
		}
	}

	// Scale up again: the retained claims are reused.
	scale(t, c, "web", 3)
	waitSettled(t, c, "web", 3)
	pvcs, err := c.CoreV1().PersistentVolumeClaims("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pvcs.Items) != 3 {
		t.Fatalf("%d claims, want 3", len(pvcs.Items))
	}

	evs, err := c.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, e := range evs.Items {
		if e.InvolvedObject.Kind == "StatefulSet" && e.InvolvedObject.Name == "web" {
			msgs = append(msgs, e.Reason+": "+e.Message)
		}
	}
	for _, want := range []string{
		"SuccessfulCreate: create Pod web-0 in StatefulSet web successful",
		"SuccessfulCreate: create Claim data-web-0 Pod web-0 in StatefulSet web success",
		"SuccessfulDelete: delete Pod web-2 in StatefulSet web successful",
	} {
		if !slices.Contains(msgs, want) {
			t.Errorf("no event %q in %q", want, msgs)
		}
	}
}

func TestParallelCreatesWithoutWaiting(t *testing.T) {
	s := testserver.Start(t)
	c := s.Client
	ctx := context.Background()
	// No nodes: pods never become ready, and Parallel does not wait.
	set := newSet("par", 3, "nginx:1")
	set.Spec.PodManagementPolicy = appsv1.ParallelPodManagement
	if _, err := c.AppsV1().StatefulSets("default").Create(ctx, set, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "3 pods and status", func() error {
		if n := len(podsByName(t, c, "par")); n != 3 {
			return fmt.Errorf("%d pods", n)
		}
		if st := getSet(t, c, "par").Status; st.Replicas != 3 || st.ReadyReplicas != 0 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	scale(t, c, "par", 0)
	eventually(t, "all pods deleted", func() error {
		if n := len(podsByName(t, c, "par")); n != 0 {
			return fmt.Errorf("%d pods", n)
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

func images(t *testing.T, c kubernetes.Interface, app string) map[string]string {
	out := map[string]string{}
	for n, p := range podsByName(t, c, app) {
		out[n] = p.Spec.Containers[0].Image
	}
	return out
}

func TestPartitionedRollingUpdateAndRollout(t *testing.T) {
	s := testserver.Start(t)
	c := s.Client
	ctx := context.Background()
	startNodes(t, s, 2)
	log := watchPods(t, c, "default")
	if _, err := c.AppsV1().StatefulSets("default").Create(ctx, newSet("db", 3, "nginx:1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	set := waitSettled(t, c, "db", 3)
	rev1 := set.Status.CurrentRevision

	// Partition 2: only db-2 moves to the new template.
	if _, err := modifySet(ctx, c, "db", func(set *appsv1.StatefulSet) {
		set.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{Partition: ptr(int32(2))}
		set.Spec.Template.Spec.Containers[0].Image = "nginx:2"
	}); err != nil {
		t.Fatal(err)
	}
	set = waitSettled(t, c, "db", 1)
	if set.Status.CurrentRevision != rev1 || set.Status.UpdateRevision == rev1 || set.Status.CurrentReplicas != 2 {
		t.Fatalf("partitioned status %+v", set.Status)
	}
	rev2 := set.Status.UpdateRevision
	want := map[string]string{"db-0": "nginx:1", "db-1": "nginx:1", "db-2": "nginx:2"}
	if got := images(t, c, "db"); !maps(got, want) {
		t.Fatalf("images %v, want %v", got, want)
	}
	if p := podsByName(t, c, "db")["db-1"]; p.Labels[appsv1.ControllerRevisionHashLabelKey] != rev1 {
		t.Fatalf("db-1 revision %q, want %q", p.Labels[appsv1.ControllerRevisionHashLabelKey], rev1)
	}
	if out := kubectl(t, s, "rollout", "status", "statefulset/db", "--timeout=30s"); !strings.Contains(out, "partitioned roll out complete: 1 new pods have been updated") {
		t.Fatalf("rollout status: %s", out)
	}

	// Partition 0: the rest roll, highest ordinal first.
	if _, err := modifySet(ctx, c, "db", func(set *appsv1.StatefulSet) { set.Spec.UpdateStrategy.RollingUpdate.Partition = ptr(int32(0)) }); err != nil {
		t.Fatal(err)
	}
	set = waitSettled(t, c, "db", 3)
	eventually(t, "current revision follows", func() error {
		if st := getSet(t, c, "db").Status; st.CurrentRevision != rev2 || st.CurrentReplicas != 3 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	es := log.snapshot()
	t1, t0 := first(es, "db-1", "terminate", "delete"), first(es, "db-0", "terminate", "delete")
	if t1 == nil || t0 == nil || !t0.ready["db-1"] {
		t.Fatalf("db-0 replaced before db-1 was replaced and ready: %+v / %+v", t1, t0)
	}
	kubectl(t, s, "rollout", "status", "statefulset/db", "--timeout=30s")

	hist := kubectl(t, s, "rollout", "history", "statefulset/db")
	if !strings.Contains(hist, "\n1 ") || !strings.Contains(hist, "\n2 ") {
		t.Fatalf("history:\n%s", hist)
	}
	if out := kubectl(t, s, "rollout", "history", "statefulset/db", "--revision=1"); !strings.Contains(out, "nginx:1") {
		t.Fatalf("history revision 1:\n%s", out)
	}

	// Undo reuses the first revision, renumbered 3.
	kubectl(t, s, "rollout", "undo", "statefulset/db")
	eventually(t, "undo rolled out", func() error {
		set = getSet(t, c, "db")
		if set.Status.UpdateRevision != rev1 || set.Status.CurrentRevision != rev1 || set.Status.UpdatedReplicas != 3 || set.Status.ReadyReplicas != 3 {
			return fmt.Errorf("status %+v", set.Status)
		}
		return nil
	})
	if got := images(t, c, "db"); !maps(got, map[string]string{"db-0": "nginx:1", "db-1": "nginx:1", "db-2": "nginx:1"}) {
		t.Fatalf("images after undo %v", got)
	}
	r1, err := c.AppsV1().ControllerRevisions("default").Get(ctx, rev1, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r1.Revision != 3 {
		t.Fatalf("reused revision numbered %d, want 3", r1.Revision)
	}

	// Restart rolls every pod onto a new revision.
	kubectl(t, s, "rollout", "restart", "statefulset/db")
	kubectl(t, s, "rollout", "status", "statefulset/db", "--timeout=60s")
	eventually(t, "restart rolled out", func() error {
		set = getSet(t, c, "db")
		if set.Status.UpdateRevision == rev1 || set.Status.CurrentRevision != set.Status.UpdateRevision || set.Status.UpdatedReplicas != 3 || set.Status.ReadyReplicas != 3 {
			return fmt.Errorf("status %+v", set.Status)
		}
		return nil
	})
	for n, p := range podsByName(t, c, "db") {
		if p.Annotations["kubectl.kubernetes.io/restartedAt"] == "" {
			t.Fatalf("%s not restarted: %v", n, p.Annotations)
		}
	}
	revs, err := c.AppsV1().ControllerRevisions("default").List(ctx, metav1.ListOptions{LabelSelector: "app=db"})
	if err != nil {
		t.Fatal(err)
	}
	if len(revs.Items) != 3 {
		t.Fatalf("%d revisions, want 3", len(revs.Items))
	}
}

func TestOnDelete(t *testing.T) {
	s := testserver.Start(t)
	c := s.Client
	ctx := context.Background()
	startNodes(t, s, 1)
	set := newSet("od", 2, "nginx:1")
	set.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}
	if _, err := c.AppsV1().StatefulSets("default").Create(ctx, set, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSettled(t, c, "od", 2)
	if _, err := modifySet(ctx, c, "od", func(set *appsv1.StatefulSet) { set.Spec.Template.Spec.Containers[0].Image = "nginx:2" }); err != nil {
		t.Fatal(err)
	}
	set = waitSettled(t, c, "od", 0)
	if got := images(t, c, "od"); !maps(got, map[string]string{"od-0": "nginx:1", "od-1": "nginx:1"}) {
		t.Fatalf("OnDelete replaced pods: %v", got)
	}
	old := podsByName(t, c, "od")["od-0"]
	if err := c.CoreV1().Pods("default").Delete(ctx, "od-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "od-0 recreated at the update revision", func() error {
		p, ok := podsByName(t, c, "od")["od-0"]
		if !ok || p.UID == old.UID || p.Spec.Containers[0].Image != "nginx:2" || !podutil.IsReady(&p) {
			return fmt.Errorf("od-0 %v", p.Spec.Containers)
		}
		return nil
	})
	if got := images(t, c, "od"); got["od-1"] != "nginx:1" {
		t.Fatalf("od-1 replaced: %v", got)
	}
}

func maps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func ptr[T any](v T) *T { return &v }

// TestControllerManagerRestartMidRollout stops the controller manager in
// the middle of a StatefulSet's rolling update and starts another: the
// rollout completes at the new revision with exactly the set's ordinals,
// never more than replicas pods at once, and the ordinals replaced
// highest first across the restart.
func TestControllerManagerRestartMidRollout(t *testing.T) {
	s := testserver.Start(t, func(c *server.Config) { c.Disable = append(c.Disable, "controller-manager") })
	c := s.Client
	ctx := context.Background()
	runManager := func() func() { return managertest.Start(t, s.Config, "statefulset", "serviceaccount") }
	stop := runManager()
	startNodes(t, s, 2)
	log := watchPods(t, c, "default")
	// Each pod must stay Ready a second before the next is replaced, so
	// the rollout lasts long enough to be seen under way (on hollow nodes
	// it could otherwise finish between two polls on a loaded machine).
	mid := newSet("mid", 4, "nginx:1")
	mid.Spec.MinReadySeconds = 1
	if _, err := c.AppsV1().StatefulSets("default").Create(ctx, mid, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSettled(t, c, "mid", 4)
	if _, err := modifySet(ctx, c, "mid", func(set *appsv1.StatefulSet) { set.Spec.Template.Spec.Containers[0].Image = "nginx:2" }); err != nil {
		t.Fatal(err)
	}
	eventually(t, "rollout under way", func() error {
		n := 0
		for _, img := range images(t, c, "mid") {
			if img == "nginx:2" {
				n++
			}
		}
		if n < 1 || n >= 4 {
			return fmt.Errorf("%d pods at nginx:2", n)
		}
		return nil
	})
	stop()
	time.Sleep(500 * time.Millisecond)
	stop = runManager()
	defer stop()
	waitSettled(t, c, "mid", 4)
	eventually(t, "current revision follows", func() error {
		if st := getSet(t, c, "mid").Status; st.CurrentRevision != st.UpdateRevision || st.CurrentReplicas != 4 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	want := map[string]string{"mid-0": "nginx:2", "mid-1": "nginx:2", "mid-2": "nginx:2", "mid-3": "nginx:2"}
	if got := images(t, c, "mid"); !maps(got, want) {
		t.Fatalf("images %v, want %v", got, want)
	}
	es := log.snapshot()
	for _, e := range es {
		if len(e.present) > 4 {
			t.Fatalf("%d pods present at once (%v), want at most 4", len(e.present), e.present)
		}
	}
	// Replaced highest ordinal first: each ordinal's first termination
	// comes after the next higher one's.
	var order []string
	for _, e := range es {
		if (e.op == "terminate" || e.op == "delete") && !slices.Contains(order, e.pod) {
			order = append(order, e.pod)
		}
	}
	if !slices.Equal(order, []string{"mid-3", "mid-2", "mid-1", "mid-0"}) {
		t.Fatalf("pods replaced in the order %v, want mid-3 to mid-0", order)
	}
}

// runController runs a StatefulSet controller on its own informers until
// the test ends. Started after a test made its objects, its first sync
// already sees them all.
func runController(t *testing.T, c kubernetes.Interface) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := informers.NewSharedInformerFactory(c, 0)
	sc, err := statefulset.New(statefulset.Config{Client: c, Informers: f, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	f.Start(ctx.Done())
	done := make(chan struct{})
	go func() { defer close(done); _ = sc.Run(ctx, 2) }()
	t.Cleanup(func() { cancel(); <-done; f.Shutdown() })
}

// TestClaimsOwnPodsAndOrphansOnly: a set whose selector also matches a pod
// of another StatefulSet, named as one of its own members, neither counts
// nor adopts it (that ordinal stays missing), and adopts a matching orphan
// named as a member instead of creating it. The
// pods are read through the controller-UID index, so a wrong index key
// shows up here as a pod too many or too few.
func TestClaimsOwnPodsAndOrphansOnly(t *testing.T) {
	s := testserver.Start(t, func(c *server.Config) { c.Disable = append(c.Disable, statefulset.Name) })
	c := s.Client
	ctx := context.Background()
	startNodes(t, s, 2)

	shared := func(name string, replicas int32, selector map[string]string) *appsv1.StatefulSet {
		set := newSet(name, replicas, "nginx:1")
		set.Spec.Selector.MatchLabels = selector
		set.Spec.Template.Labels = map[string]string{"group": "shared", "side": name}
		// OnDelete: the adopted orphan (no revision label) is kept, not
		// replaced, so its identity can be checked at the end.
		set.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}
		return set
	}
	// other (no replicas of its own) selects only its side; mine selects
	// both.
	other, err := c.AppsV1().StatefulSets("default").Create(ctx, shared("other", 0, map[string]string{"group": "shared", "side": "other"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod := func(name, side string, owner *appsv1.StatefulSet) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"group": "shared", "side": side}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx:1"}}},
		}
		if owner != nil {
			p.OwnerReferences = []metav1.OwnerReference{*podutil.NewControllerRef(owner, statefulset.GVK)}
		}
		got, err := c.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	stray := pod("mine-0", "mine", nil)
	theirs := pod("mine-1", "other", other)
	mine, err := c.AppsV1().StatefulSets("default").Create(ctx, shared("mine", 2, map[string]string{"group": "shared"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	runController(t, c)

	controllerOf := func(name string) (*corev1.Pod, types.UID, error) {
		p, err := c.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, "", err
		}
		if ref := metav1.GetControllerOf(p); ref != nil {
			return p, ref.UID, nil
		}
		return p, "", nil
	}
	eventually(t, "mine-0 adopted, mine-1 left to other", func() error {
		p0, o0, err := controllerOf("mine-0")
		if err != nil {
			return err
		}
		p1, o1, err := controllerOf("mine-1")
		if err != nil {
			return err
		}
		if p0.UID != stray.UID || o0 != mine.UID || p1.UID != theirs.UID || o1 != other.UID {
			return fmt.Errorf("mine-0 %s controlled by %q, mine-1 %s controlled by %q", p0.UID, o0, p1.UID, o1)
		}
		// mine-0 ready and only it counted: mine-1 is another set's.
		set := getSet(t, c, "mine")
		if st := set.Status; st.ObservedGeneration != set.Generation || st.Replicas != 1 || st.ReadyReplicas != 1 {
			return fmt.Errorf("status %+v, want 1 replica, ready", st)
		}
		return nil
	})
	// Nothing else was made: mine-1 stays the other set's.
	l, err := c.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "group=shared"})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Items) != 2 {
		t.Errorf("%d pods, want mine-0 and mine-1 only", len(l.Items))
	}
	// Once the other set's pod is gone, mine makes its own mine-1: the
	// taken name kept it requeued.
	if err := c.CoreV1().Pods("default").Delete(ctx, "mine-1", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "mine makes its own mine-1", func() error {
		p1, o1, err := controllerOf("mine-1")
		if err != nil {
			return err
		}
		if p1.UID == theirs.UID || o1 != mine.UID {
			return fmt.Errorf("mine-1 %s controlled by %q", p1.UID, o1)
		}
		return nil
	})
}

// modifySet changes the StatefulSet name in default, again on a conflict
// with the controller's status writes.
func modifySet(ctx context.Context, c kubernetes.Interface, name string, mutate func(*appsv1.StatefulSet)) (*appsv1.StatefulSet, error) {
	sets := c.AppsV1().StatefulSets("default")
	return testserver.Modify(ctx, sets.Get, sets.Update, name, mutate)
}
