package apiserver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// secret returns an Opaque Secret: tests that count objects use Secrets,
// because controllers add ConfigMaps (kube-root-ca.crt) to every namespace.
func secret(name string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Type: corev1.SecretTypeOpaque}
}

func cm(name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: data}
}

func TestConfigMapCRUDAndConflicts(t *testing.T) {
	s := testserver.Start(t)
	ctx := ctxT(t)
	c := s.Client.CoreV1().ConfigMaps("default")

	created, err := c.Create(ctx, cm("one", map[string]string{"a": "1"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if created.UID == "" || created.ResourceVersion == "" || created.CreationTimestamp.IsZero() || created.Namespace != "default" {
		t.Fatalf("server-set metadata missing: %+v", created.ObjectMeta)
	}
	if _, err := c.Create(ctx, cm("one", nil), metav1.CreateOptions{}); !apierrors.IsAlreadyExists(err) {
		t.Fatalf("second create: want AlreadyExists, got %v", err)
	}
	got, err := c.Get(ctx, "one", metav1.GetOptions{})
	if err != nil || got.Data["a"] != "1" || got.ResourceVersion != created.ResourceVersion {
		t.Fatalf("get: %v %+v", err, got)
	}
	got.Data["a"] = "2"
	updated, err := c.Update(ctx, got, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if updated.ResourceVersion == created.ResourceVersion {
		t.Fatal("resourceVersion did not change on update")
	}
	// A stale resourceVersion conflicts.
	stale := created.DeepCopy()
	stale.Data["a"] = "3"
	if _, err := c.Update(ctx, stale, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("stale update: want Conflict, got %v", err)
	}
	// A no-op update keeps the resourceVersion (no write).
	same, err := c.Update(ctx, updated, metav1.UpdateOptions{})
	if err != nil || same.ResourceVersion != updated.ResourceVersion {
		t.Fatalf("no-op update changed rv: %v %s -> %s", err, updated.ResourceVersion, same.ResourceVersion)
	}
	// uid and creationTimestamp cannot be changed by clients.
	tamper := updated.DeepCopy()
	tamper.UID = types.UID("tampered")
	tamper.Data["a"] = "4"
	res, err := c.Update(ctx, tamper, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.UID != created.UID {
		t.Fatalf("uid changed by client: %s", res.UID)
	}
	if err := c.Delete(ctx, "one", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "one", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after delete: want NotFound, got %v", err)
	}
	if err := c.Delete(ctx, "one", metav1.DeleteOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("second delete: want NotFound, got %v", err)
	}
}

func TestGenerateNameAndDryRun(t *testing.T) {
	s := testserver.Start(t)
	ctx := ctxT(t)
	c := s.Client.CoreV1().ConfigMaps("default")
	obj := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{GenerateName: "gen-"}}
	a, err := c.Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(a.Name, "gen-") || len(a.Name) != len("gen-")+5 || a.Name == b.Name {
		t.Fatalf("generateName: %q %q", a.Name, b.Name)
	}
	dry, err := c.Create(ctx, cm("dry", nil), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil || dry.Name != "dry" {
		t.Fatalf("dry run create: %v", err)
	}
	if _, err := c.Get(ctx, "dry", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("dry-run object was stored: %v", err)
	}
	a.Data = map[string]string{"x": "y"}
	if _, err := c.Update(ctx, a, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Fatal(err)
	}
	cur, _ := c.Get(ctx, a.Name, metav1.GetOptions{})
	if len(cur.Data) != 0 {
		t.Fatal("dry-run update was stored")
	}
	if err := c.Delete(ctx, a.Name, metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, a.Name, metav1.GetOptions{}); err != nil {
		t.Fatalf("dry-run delete deleted: %v", err)
	}
}

func TestNamespaceLifecycleOnCreate(t *testing.T) {
	s := testserver.Start(t)
	ctx := ctxT(t)
	_, err := s.Client.CoreV1().ConfigMaps("nope").Create(ctx, cm("x", nil), metav1.CreateOptions{})
	if !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), `namespaces "nope" not found`) {
		t.Fatalf("create in missing namespace: %v", err)
	}
	for _, ns := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
		n, err := s.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil || n.Status.Phase != corev1.NamespaceActive {
			t.Fatalf("namespace %s: %v %v", ns, err, n)
		}
	}
	if err := s.Client.CoreV1().Namespaces().Delete(ctx, "kube-system", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("deleting kube-system: want Forbidden, got %v", err)
	}
}

func TestPagination(t *testing.T) {
	s := testserver.Start(t)
	ctx := ctxT(t)
	c := s.Client.CoreV1().Secrets("default")
	for i := 0; i < 25; i++ {
		if _, err := c.Create(ctx, secret(fmt.Sprintf("cm-%02d", i)), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	opts := metav1.ListOptions{Limit: 10}
	pages := 0
	var firstRV string
	for {
		l, err := c.List(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if pages == 1 {
			firstRV = l.ResourceVersion
			if l.RemainingItemCount == nil || *l.RemainingItemCount != 15 {
				t.Fatalf("remainingItemCount = %v, want 15", l.RemainingItemCount)
			}
			// A write between pages must not show up: pages are one snapshot.
			if _, err := c.Create(ctx, secret("cm-00a"), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		} else if l.ResourceVersion != firstRV {
			t.Fatalf("page rv %s != first page rv %s", l.ResourceVersion, firstRV)
		}
		for _, it := range l.Items {
			names = append(names, it.Name)
		}
		if l.Continue == "" {
			break
		}
		opts.Continue = l.Continue
	}
	if pages != 3 || len(names) != 25 {
		t.Fatalf("pages=%d items=%d", pages, len(names))
	}
	for i := 1; i < len(names); i++ {
		if names[i-1] >= names[i] {
			t.Fatalf("not sorted: %v", names)
		}
	}
	if _, err := c.List(ctx, metav1.ListOptions{Continue: "bm90LWEtdG9rZW4"}); !apierrors.IsBadRequest(err) {
		t.Fatalf("garbage continue: want BadRequest, got %v", err)
	}
}

func TestContinueAfterCompactionIsGone(t *testing.T) {
	s := testserver.Start(t)
	ctx := ctxT(t)
	c := s.Client.CoreV1().ConfigMaps("default")
	for i := 0; i < 4; i++ {
		if _, err := c.Create(ctx, cm(fmt.Sprintf("c%d", i), nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	l, err := c.List(ctx, metav1.ListOptions{Limit: 2})
	if err != nil || l.Continue == "" {
		t.Fatalf("first page: %v", err)
	}
	if _, err := c.Create(ctx, cm("later", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rev, err := s.Store().CurrentRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Store().Compact(ctx, rev); err != nil {
		t.Fatal(err)
	}
	_, err = c.List(ctx, metav1.ListOptions{Limit: 2, Continue: l.Continue})
	if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
		t.Fatalf("continue after compaction: want 410, got %v", err)
	}
}

func TestWatchResumeAndGone(t *testing.T) {
	s := testserver.Start(t, func(c *server.Config) { c.WatchCacheSize = 8 })
	ctx := ctxT(t)
	c := s.Client.CoreV1().Secrets("default")
	w0 := secret("w")
	w0.StringData = map[string]string{"v": "0"}
	first, err := c.Create(ctx, w0, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur := first
	for i := 1; i <= 3; i++ {
		cur.Data["v"] = []byte(fmt.Sprint(i))
		if cur, err = c.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Resume from the create: the three updates arrive in order.
	w, err := c.Watch(ctx, metav1.ListOptions{ResourceVersion: first.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		ev := next(t, w)
		got := ev.Object.(*corev1.Secret)
		if ev.Type != watch.Modified || string(got.Data["v"]) != fmt.Sprint(i) {
			t.Fatalf("event %d: %s %v", i, ev.Type, got.Data)
		}
	}
	if err := c.Delete(ctx, "w", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	ev := next(t, w)
	if ev.Type != watch.Deleted || ev.Object.(*corev1.Secret).Name != "w" {
		t.Fatalf("want DELETED, got %s", ev.Type)
	}
	w.Stop()
	// Push the history window past the first revision: 410 Gone.
	for i := 0; i < 12; i++ {
		if _, err := c.Create(ctx, secret(fmt.Sprintf("f%d", i)), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	w2, err := c.Watch(ctx, metav1.ListOptions{ResourceVersion: first.ResourceVersion})
	if err != nil {
		if !apierrors.IsGone(err) && !apierrors.IsResourceExpired(err) {
			t.Fatalf("want 410, got %v", err)
		}
		return
	}
	ev = next(t, w2)
	st, ok := ev.Object.(*metav1.Status)
	if ev.Type != watch.Error || !ok || st.Code != 410 {
		t.Fatalf("want ERROR 410, got %s %#v", ev.Type, ev.Object)
	}
}

func next(t *testing.T, w watch.Interface) watch.Event {
	t.Helper()
	select {
	case ev, ok := <-w.ResultChan():
		if !ok {
			t.Fatal("watch closed")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for watch event")
	}
	return watch.Event{}
}

func TestWatchSelectorsAndInitialState(t *testing.T) {
	s := testserver.Start(t)
	ctx := ctxT(t)
	c := s.Client.CoreV1().ConfigMaps("default")
	a := cm("a", nil)
	a.Labels = map[string]string{"app": "x"}
	if _, err := c.Create(ctx, a, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, cm("b", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// RV "" watch: synthetic ADDED for matching existing objects only.
	w, err := c.Watch(ctx, metav1.ListOptions{LabelSelector: "app=x"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	ev := next(t, w)
	if ev.Type != watch.Added || ev.Object.(*corev1.ConfigMap).Name != "a" {
		t.Fatalf("initial: %s %v", ev.Type, ev.Object)
	}
	// b starts matching: ADDED; a stops matching: DELETED.
	b, _ := c.Get(ctx, "b", metav1.GetOptions{})
	b.Labels = map[string]string{"app": "x"}
	if _, err := c.Update(ctx, b, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	ev = next(t, w)
	if ev.Type != watch.Added || ev.Object.(*corev1.ConfigMap).Name != "b" {
		t.Fatalf("b: %s", ev.Type)
	}
	a2, _ := c.Get(ctx, "a", metav1.GetOptions{})
	a2.Labels = nil
	if _, err := c.Update(ctx, a2, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	ev = next(t, w)
	if ev.Type != watch.Deleted || ev.Object.(*corev1.ConfigMap).Name != "a" {
		t.Fatalf("a: %s", ev.Type)
	}
}

func TestInformerSyncsAndFollows(t *testing.T) {
	s := testserver.Start(t)
	ctx := ctxT(t)
	c := s.Client.CoreV1().Secrets("default")
	for i := 0; i < 5; i++ {
		if _, err := c.Create(ctx, secret(fmt.Sprintf("i%d", i)), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	f := informers.NewSharedInformerFactoryWithOptions(s.Client, 0, informers.WithNamespace("default"))
	inf := f.Core().V1().Secrets().Informer()
	var mu sync.Mutex
	seen := map[string]bool{}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: func(obj interface{}) {
		mu.Lock()
		seen[obj.(*corev1.Secret).Name] = true
		mu.Unlock()
	}})
	stop := make(chan struct{})
	defer close(stop)
	f.Start(stop)
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("informer did not sync")
	}
	if n := len(inf.GetStore().List()); n != 5 {
		t.Fatalf("informer has %d objects, want 5", n)
	}
	if _, err := c.Create(ctx, secret("late"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		ok := seen["late"]
		mu.Unlock()
		if ok {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("informer did not see the new object")
}

func deployment(name string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{
					{Name: "web", Image: "nginx:1"},
					{Name: "side", Image: "busybox:1"},
				}},
			},
		},
	}
}

func TestPatchTypes(t *testing.T) {
	s := testserver.Start(t)
	ctx := ctxT(t)
	d := s.Client.AppsV1().Deployments("default")
	if _, err := d.Create(ctx, deployment("p"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Strategic merge: the container list merges by name.
	got, err := d.Patch(ctx, "p", types.StrategicMergePatchType,
		[]byte(`{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:2"}]}}}}`), metav1.PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cs := got.Spec.Template.Spec.Containers
	if len(cs) != 2 || cs[0].Image != "nginx:2" || cs[1].Image != "busybox:1" {
		t.Fatalf("strategic merge: %+v", cs)
	}
	if got.Generation != 2 {
		t.Fatalf("generation after spec patch = %d, want 2", got.Generation)
	}
	// Merge patch replaces the list.
	got, err = d.Patch(ctx, "p", types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"x":"y"}},"spec":{"template":{"spec":{"containers":[{"name":"only","image":"a:1"}]}}}}`), metav1.PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Spec.Template.Spec.Containers) != 1 || got.Labels["x"] != "y" {
		t.Fatalf("merge patch: %+v", got.Spec.Template.Spec.Containers)
	}
	// JSON patch with a failing test op: 422 and nothing changes.
	_, err = d.Patch(ctx, "p", types.JSONPatchType, []byte(`[{"op":"test","path":"/metadata/labels/x","value":"z"},{"op":"replace","path":"/spec/replicas","value":5}]`), metav1.PatchOptions{})
	if err == nil || apierrors.ReasonForError(err) == metav1.StatusReasonInternalError {
		t.Fatalf("failing json patch: %v", err)
	}
	got, err = d.Patch(ctx, "p", types.JSONPatchType, []byte(`[{"op":"test","path":"/metadata/labels/x","value":"y"},{"op":"replace","path":"/spec/replicas","value":5}]`), metav1.PatchOptions{})
	if err != nil || *got.Spec.Replicas != 5 {
		t.Fatalf("json patch: %v", err)
	}
	// A patch carrying a stale resourceVersion is a precondition: 409.
	_, err = d.Patch(ctx, "p", types.MergePatchType, []byte(`{"metadata":{"resourceVersion":"1"},"spec":{"replicas":1}}`), metav1.PatchOptions{})
	if !apierrors.IsConflict(err) {
		t.Fatalf("stale rv in patch: want Conflict, got %v", err)
	}
	if _, err := d.Patch(ctx, "missing", types.MergePatchType, []byte(`{}`), metav1.PatchOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("patch of missing object: %v", err)
	}
}

func TestStatusAndScaleSubresources(t *testing.T) {
	// The deployment controller would write status concurrently and turn the
	// updates below into conflicts; this test is about the API alone.
	s := testserver.Start(t, func(c *server.Config) { c.Controllers = []string{"*", "-deployment"} })
	ctx := ctxT(t)
	d := s.Client.AppsV1().Deployments("default")
	obj := deployment("st")
	obj.Status.Replicas = 7
	created, err := d.Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if created.Status.Replicas != 0 || created.Generation != 1 {
		t.Fatalf("status must be cleared on create: %+v gen=%d", created.Status, created.Generation)
	}
	// Status update: only status changes, generation stays.
	created.Status.Replicas = 3
	created.Spec.Replicas = ptr.To[int32](9)
	st, err := d.UpdateStatus(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Status.Replicas != 3 || *st.Spec.Replicas != 1 || st.Generation != 1 {
		t.Fatalf("status update: status=%d spec=%d gen=%d", st.Status.Replicas, *st.Spec.Replicas, st.Generation)
	}
	// Main update: status is kept, spec changes, generation bumps.
	st.Status.Replicas = 100
	st.Spec.Replicas = ptr.To[int32](2)
	up, err := d.Update(ctx, st, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if up.Status.Replicas != 3 || *up.Spec.Replicas != 2 || up.Generation != 2 {
		t.Fatalf("main update: status=%d spec=%d gen=%d", up.Status.Replicas, *up.Spec.Replicas, up.Generation)
	}
	sc, err := d.GetScale(ctx, "st", metav1.GetOptions{})
	if err != nil || sc.Spec.Replicas != 2 || sc.Status.Replicas != 3 || sc.Status.Selector != "app=st" {
		t.Fatalf("get scale: %v %+v", err, sc)
	}
	sc.Spec.Replicas = 4
	if _, err := d.UpdateScale(ctx, "st", sc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	cur, _ := d.Get(ctx, "st", metav1.GetOptions{})
	if *cur.Spec.Replicas != 4 {
		t.Fatalf("scale update did not change replicas: %d", *cur.Spec.Replicas)
	}
	if _, err := d.Patch(ctx, "st", types.MergePatchType, []byte(`{"spec":{"replicas":6}}`), metav1.PatchOptions{}, "scale"); err != nil {
		t.Fatal(err)
	}
	cur, _ = d.Get(ctx, "st", metav1.GetOptions{})
	if *cur.Spec.Replicas != 6 {
		t.Fatalf("scale patch: %d", *cur.Spec.Replicas)
	}
}

func pod(name, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}
}

func TestPodBindingGracefulDeletionAndFieldSelectors(t *testing.T) {
	s := testserver.Start(t)
	ctx := ctxT(t)
	p := s.Client.CoreV1().Pods("default")
	if _, err := p.Create(ctx, pod("a", ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Create(ctx, pod("b", ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	bind := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: "a"}, Target: corev1.ObjectReference{Kind: "Node", Name: "node-1"}}
	if err := p.Bind(ctx, bind, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := p.Bind(ctx, bind, metav1.CreateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("second bind: want Conflict, got %v", err)
	}
	l, err := p.List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=node-1"})
	if err != nil || len(l.Items) != 1 || l.Items[0].Name != "a" {
		t.Fatalf("field selector: %v %d", err, len(l.Items))
	}
	l, err = p.List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName="})
	if err != nil || len(l.Items) != 1 || l.Items[0].Name != "b" {
		t.Fatalf("unscheduled selector: %v", err)
	}
	if _, err := p.List(ctx, metav1.ListOptions{FieldSelector: "spec.bogus=1"}); !apierrors.IsBadRequest(err) {
		t.Fatalf("unsupported field: want BadRequest, got %v", err)
	}
	// A bound pod is deleted gracefully: it stays with a deletionTimestamp.
	if err := p.Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	a, err := p.Get(ctx, "a", metav1.GetOptions{})
	if err != nil || a.DeletionTimestamp == nil || a.DeletionGracePeriodSeconds == nil || *a.DeletionGracePeriodSeconds != 30 {
		t.Fatalf("graceful delete: %v %+v", err, a.ObjectMeta)
	}
	// The node agent confirms with grace 0: gone.
	if err := p.Delete(ctx, "a", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Get(ctx, "a", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after grace 0: %v", err)
	}
	// An unscheduled pod goes at once.
	if err := p.Delete(ctx, "b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Get(ctx, "b", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("unscheduled pod not deleted at once: %v", err)
	}
}

func TestFinalizers(t *testing.T) {
	s := testserver.Start(t)
	ctx := ctxT(t)
	c := s.Client.CoreV1().ConfigMaps("default")
	obj := cm("fin", nil)
	obj.Finalizers = []string{"example.com/hold"}
	if _, err := c.Create(ctx, obj, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, "fin", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	cur, err := c.Get(ctx, "fin", metav1.GetOptions{})
	if err != nil || cur.DeletionTimestamp == nil {
		t.Fatalf("object with finalizer must stay: %v", err)
	}
	// No new finalizers on an object being deleted.
	cur.Finalizers = append(cur.Finalizers, "example.com/other")
	if _, err := c.Update(ctx, cur, metav1.UpdateOptions{}); !apierrors.IsInvalid(err) {
		t.Fatalf("adding finalizer while deleting: want Invalid, got %v", err)
	}
	cur, _ = c.Get(ctx, "fin", metav1.GetOptions{})
	cur.Finalizers = nil
	if _, err := c.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "fin", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("object should be gone once its last finalizer is removed: %v", err)
	}
	// Orphan propagation adds the orphan finalizer.
	if _, err := c.Create(ctx, cm("orph", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	orphan := metav1.DeletePropagationOrphan
	if err := c.Delete(ctx, "orph", metav1.DeleteOptions{PropagationPolicy: &orphan}); err != nil {
		t.Fatal(err)
	}
	o, err := c.Get(ctx, "orph", metav1.GetOptions{})
	if err == nil && (len(o.Finalizers) != 1 || o.Finalizers[0] != "orphan") {
		t.Fatalf("orphan finalizer: %v", o.Finalizers)
	}
}

func TestRestartKeepsObjects(t *testing.T) {
	s := testserver.Start(t)
	ctx := ctxT(t)
	if _, err := s.Client.CoreV1().ConfigMaps("default").Create(ctx, cm("keep", map[string]string{"k": "v"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := s.DataDir
	s.Stop()
	s2 := testserver.StartWith(t, server.Config{DataDir: dir, BindAddress: "127.0.0.1", DisableAgent: true})
	got, err := s2.Client.CoreV1().ConfigMaps("default").Get(ctx, "keep", metav1.GetOptions{})
	if err != nil || got.Data["k"] != "v" {
		t.Fatalf("after restart: %v %v", err, got)
	}
	// The CA is kept, so the old kubeconfig still works.
	old, err := kubernetes.NewForConfig(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	_ = old
}

func TestDiscovery(t *testing.T) {
	s := testserver.Start(t)
	groups, resources, err := s.Client.Discovery().ServerGroupsAndResources()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, g := range groups {
		names[g.Name] = true
	}
	for _, g := range []string{"", "apps", "batch", "networking.k8s.io", "rbac.authorization.k8s.io", "apiextensions.k8s.io", "coordination.k8s.io", "discovery.k8s.io", "storage.k8s.io", "autoscaling", "scheduling.k8s.io", "events.k8s.io"} {
		if !names[g] {
			t.Errorf("group %q missing from discovery", g)
		}
	}
	found := map[string]bool{}
	for _, rl := range resources {
		for _, r := range rl.APIResources {
			found[rl.GroupVersion+"/"+r.Name] = true
			if rl.GroupVersion == "v1" && r.Name == "pods" {
				if len(r.ShortNames) != 1 || r.ShortNames[0] != "po" || len(r.Categories) != 1 || r.Categories[0] != "all" {
					t.Errorf("pods discovery: %+v", r)
				}
			}
		}
	}
	for _, want := range []string{"v1/pods", "v1/pods/status", "v1/pods/binding", "v1/pods/eviction", "apps/v1/deployments/scale", "autoscaling/v2/horizontalpodautoscalers", "autoscaling/v1/horizontalpodautoscalers", "v1/namespaces/finalize"} {
		if !found[want] {
			t.Errorf("%s missing from discovery", want)
		}
	}
	v, err := s.Client.Discovery().ServerVersion()
	if err != nil || v.Major != "1" {
		t.Fatalf("version: %v %+v", err, v)
	}
}

func TestListFromCacheIsConsistent(t *testing.T) {
	s := testserver.Start(t)
	ctx := ctxT(t)
	c := s.Client.CoreV1().Secrets("default")
	// Read-your-writes: every list right after a create sees it.
	for i := 0; i < 30; i++ {
		if _, err := c.Create(ctx, secret(fmt.Sprintf("r%d", i)), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		l, err := c.List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Items) != i+1 {
			t.Fatalf("after %d creates list has %d items", i+1, len(l.Items))
		}
	}
	raw, err := s.Client.CoreV1().RESTClient().Get().AbsPath("/api/v1/namespaces/default/secrets").
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var tbl metav1.Table
	if err := json.Unmarshal(raw, &tbl); err != nil || tbl.Kind != "Table" || len(tbl.Rows) != 30 || len(tbl.ColumnDefinitions) == 0 {
		t.Fatalf("table: %v kind=%s rows=%d", err, tbl.Kind, len(tbl.Rows))
	}
}

// TestAggregatedDiscovery: client-go asks for discovery v2 first; the
// answer must carry the same resources as the legacy documents.
func TestAggregatedDiscovery(t *testing.T) {
	s := testserver.Start(t)
	ctx := ctxT(t)
	for _, path := range []string{"/api", "/apis"} {
		res := s.Client.Discovery().RESTClient().Get().AbsPath(path).
			SetHeader("Accept", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json").Do(ctx)
		raw, err := res.Raw()
		if err != nil {
			t.Fatal(err)
		}
		var ct string
		res.ContentType(&ct)
		if !strings.Contains(ct, "as=APIGroupDiscoveryList") {
			t.Fatalf("%s content type %q", path, ct)
		}
		var list struct {
			Items []struct {
				Metadata struct{ Name string } `json:"metadata"`
				Versions []struct {
					Version   string `json:"version"`
					Resources []struct {
						Resource     string `json:"resource"`
						Scope        string `json:"scope"`
						Subresources []struct {
							Subresource string `json:"subresource"`
						} `json:"subresources"`
					} `json:"resources"`
				} `json:"versions"`
			} `json:"items"`
		}
		if err := json.Unmarshal(raw, &list); err != nil || len(list.Items) == 0 {
			t.Fatalf("%s: %v %s", path, err, raw)
		}
		found := false
		for _, g := range list.Items {
			for _, v := range g.Versions {
				for _, r := range v.Resources {
					if (path == "/api" && r.Resource == "pods" && r.Scope == "Namespaced" && len(r.Subresources) >= 3) ||
						(path == "/apis" && g.Metadata.Name == "apps" && r.Resource == "deployments") {
						found = true
					}
				}
			}
		}
		if !found {
			t.Fatalf("%s: expected resource missing: %s", path, raw)
		}
	}
	// The discovery client (which negotiates v2) sees every group.
	groups, err := s.Client.Discovery().ServerGroups()
	if err != nil || len(groups.Groups) < 10 {
		t.Fatalf("ServerGroups: %v %d", err, len(groups.Groups))
	}
}
