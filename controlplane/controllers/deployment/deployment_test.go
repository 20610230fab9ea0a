package deployment_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/deployment"
	"github.com/skiffhq/skiff/controlplane/controllers/internal/managertest"
	"github.com/skiffhq/skiff/controlplane/controllers/internal/playnode"
	"github.com/skiffhq/skiff/controlplane/controllers/internal/podutil"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// kubelet plays the node: every new pod of ns becomes Running and Ready
// after delay. It also tracks the fewest ready and most active pods seen.
type kubelet struct {
	mu        sync.Mutex
	minReady  int
	maxActive int
	tracking  bool
	store     cache.Store
}

func startKubelet(t *testing.T, c kubernetes.Interface, ns string, delay time.Duration) *kubelet {
	k := &kubelet{minReady: 1 << 30}
	f := informers.NewSharedInformerFactoryWithOptions(c, 0, informers.WithNamespace(ns))
	inf := f.Core().V1().Pods().Informer()
	k.store = inf.GetStore()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			p := obj.(*corev1.Pod)
			k.observe()
			if !podutil.IsReady(p) && p.DeletionTimestamp == nil {
				go func() {
					time.Sleep(delay)
					_ = playnode.SetReady(ctx, c, p.Namespace, p.Name, true)
				}()
			}
		},
		UpdateFunc: func(_, _ any) { k.observe() },
		DeleteFunc: func(any) { k.observe() },
	})
	f.Start(ctx.Done())
	f.WaitForCacheSync(ctx.Done())
	return k
}

func (k *kubelet) observe() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.tracking {
		return
	}
	ready, active := 0, 0
	for _, o := range k.store.List() {
		p := o.(*corev1.Pod)
		if !podutil.IsActive(p) {
			continue
		}
		active++
		if podutil.IsReady(p) {
			ready++
		}
	}
	k.minReady = min(k.minReady, ready)
	k.maxActive = max(k.maxActive, active)
}

func (k *kubelet) track() {
	k.mu.Lock()
	k.tracking = true
	k.mu.Unlock()
	k.observe()
}

func (k *kubelet) stats() (minReady, maxActive int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.minReady, k.maxActive
}

func newDeployment(name string, replicas int32, image string) *appsv1.Deployment {
	surge, unavail := intstr.FromInt32(1), intstr.FromInt32(0)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &surge, MaxUnavailable: &unavail}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}},
			},
		},
	}
}

func eventually(t *testing.T, what string, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
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

func waitComplete(t *testing.T, c kubernetes.Interface, ns, name string) *appsv1.Deployment {
	t.Helper()
	var d *appsv1.Deployment
	eventually(t, "rollout of "+name, 60*time.Second, func() error {
		var err error
		if d, err = c.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{}); err != nil {
			return err
		}
		st, r := d.Status, *d.Spec.Replicas
		if st.ObservedGeneration < d.Generation || st.UpdatedReplicas != r || st.Replicas != r || st.AvailableReplicas != r || st.ReadyReplicas != r || st.UnavailableReplicas != 0 {
			return fmt.Errorf("status %+v", st)
		}
		for _, cond := range st.Conditions {
			if cond.Type == appsv1.DeploymentProgressing && cond.Reason == deployment.ReasonNewRSAvailable {
				return nil
			}
		}
		return fmt.Errorf("conditions %+v", st.Conditions)
	})
	return d
}

func ownedRS(t *testing.T, c kubernetes.Interface, d *appsv1.Deployment) []appsv1.ReplicaSet {
	t.Helper()
	l, err := c.AppsV1().ReplicaSets(d.Namespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []appsv1.ReplicaSet
	for _, rs := range l.Items {
		if ref := metav1.GetControllerOf(&rs); ref != nil && ref.UID == d.UID {
			out = append(out, rs)
		}
	}
	return out
}

func activePods(t *testing.T, c kubernetes.Interface, ns, app string) []corev1.Pod {
	t.Helper()
	l, err := c.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: labels.Set{"app": app}.String()})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range l.Items {
		if podutil.IsActive(&p) {
			out = append(out, p)
		}
	}
	return out
}

func TestRollingUpdateKeepsReadyCount(t *testing.T) {
	s := testserver.Start(t)
	ctx := context.Background()
	c := s.Client
	k := startKubelet(t, c, "default", 100*time.Millisecond)
	d, err := c.AppsV1().Deployments("default").Create(ctx, newDeployment("web", 3, "nginx:1"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d = waitComplete(t, c, "default", "web")
	rss := ownedRS(t, c, d)
	if len(rss) != 1 {
		t.Fatalf("%d replica sets", len(rss))
	}
	hash := rss[0].Labels[appsv1.DefaultDeploymentUniqueLabelKey]
	if hash == "" || rss[0].Name != "web-"+hash || rss[0].Spec.Template.Labels[appsv1.DefaultDeploymentUniqueLabelKey] != hash ||
		rss[0].Spec.Selector.MatchLabels[appsv1.DefaultDeploymentUniqueLabelKey] != hash {
		t.Fatalf("replica set %s labels %v", rss[0].Name, rss[0].Labels)
	}
	if rss[0].Annotations[deployment.RevisionAnnotation] != "1" || rss[0].Annotations[deployment.DesiredReplicasAnnotation] != "3" ||
		rss[0].Annotations[deployment.MaxReplicasAnnotation] != "4" || d.Annotations[deployment.RevisionAnnotation] != "1" {
		t.Fatalf("annotations rs %v deployment %v", rss[0].Annotations, d.Annotations)
	}

	k.track()
	if _, err := modifyDeployment(ctx, c, "web", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = "nginx:2" }); err != nil {
		t.Fatal(err)
	}
	d = waitComplete(t, c, "default", "web")
	minReady, maxActive := k.stats()
	if minReady < 3 {
		t.Fatalf("ready pods dropped to %d during a maxUnavailable=0 rollout", minReady)
	}
	if maxActive > 4 {
		t.Fatalf("%d pods at once, more than replicas+maxSurge=4", maxActive)
	}
	if d.Annotations[deployment.RevisionAnnotation] != "2" {
		t.Fatalf("deployment revision %q", d.Annotations[deployment.RevisionAnnotation])
	}
	for _, p := range activePods(t, c, "default", "web") {
		if p.Spec.Containers[0].Image != "nginx:2" {
			t.Fatalf("pod %s still runs %s", p.Name, p.Spec.Containers[0].Image)
		}
	}
	evs, _ := c.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
	var scaled []string
	for _, e := range evs.Items {
		if e.Reason == deployment.ScalingReplicaSet && e.InvolvedObject.Name == "web" {
			scaled = append(scaled, e.Message)
		}
	}
	if len(scaled) < 2 || !strings.HasPrefix(scaled[0], "Scaled up replica set web-") {
		t.Fatalf("ScalingReplicaSet events %q", scaled)
	}

	// Scaling mid-flight and a Recreate strategy.
	if _, err := modifyDeployment(ctx, c, "web", func(d *appsv1.Deployment) {
		d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
		d.Spec.Template.Spec.Containers[0].Image = "nginx:3"
		d.Spec.Replicas = ptr(int32(5))
	}); err != nil {
		t.Fatal(err)
	}
	waitComplete(t, c, "default", "web")
	pods := activePods(t, c, "default", "web")
	if len(pods) != 5 {
		t.Fatalf("%d pods after recreate, want 5", len(pods))
	}
	for _, p := range pods {
		if p.Spec.Containers[0].Image != "nginx:3" {
			t.Fatalf("pod %s runs %s", p.Name, p.Spec.Containers[0].Image)
		}
	}
}

func TestProgressDeadline(t *testing.T) {
	s := testserver.Start(t)
	ctx := context.Background()
	d := newDeployment("stuck", 2, "nginx")
	d.Spec.ProgressDeadlineSeconds = ptr(int32(2))
	if _, err := s.Client.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Nobody marks the pods ready: the rollout times out.
	eventually(t, "ProgressDeadlineExceeded", 30*time.Second, func() error {
		got, err := s.Client.AppsV1().Deployments("default").Get(ctx, "stuck", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range got.Status.Conditions {
			if c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse && c.Reason == deployment.ReasonTimedOut {
				for _, a := range got.Status.Conditions {
					if a.Type == appsv1.DeploymentAvailable && a.Status == corev1.ConditionFalse && a.Reason == deployment.ReasonMinimumUnavailable {
						return nil
					}
				}
			}
		}
		return fmt.Errorf("conditions %+v", got.Status.Conditions)
	})
	out, err := exec.Command("kubectl", "--kubeconfig", s.Kubeconfig(), "rollout", "status", "deployment/stuck", "--timeout=10s").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `deployment "stuck" exceeded its progress deadline`) {
		t.Fatalf("kubectl rollout status: %v\n%s", err, out)
	}
}

func ptr[T any](v T) *T { return &v }

func kubectl(t *testing.T, s *testserver.Server, args ...string) string {
	t.Helper()
	out, err := exec.Command("kubectl", append([]string{"--kubeconfig", s.Kubeconfig()}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestKubectlRollout(t *testing.T) {
	s := testserver.Start(t)
	ctx := context.Background()
	c := s.Client
	startKubelet(t, c, "default", 50*time.Millisecond)
	d := newDeployment("app", 2, "nginx:1")
	d.Spec.RevisionHistoryLimit = ptr(int32(2))
	if _, err := c.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if out := kubectl(t, s, "rollout", "status", "deployment/app", "--timeout=60s"); !strings.Contains(out, `deployment "app" successfully rolled out`) {
		t.Fatalf("rollout status: %s", out)
	}
	kubectl(t, s, "set", "image", "deployment/app", "c=nginx:2")
	kubectl(t, s, "rollout", "status", "deployment/app", "--timeout=60s")
	hist := kubectl(t, s, "rollout", "history", "deployment/app")
	if !strings.Contains(hist, "\n1 ") || !strings.Contains(hist, "\n2 ") {
		t.Fatalf("history:\n%s", hist)
	}
	if out := kubectl(t, s, "rollout", "history", "deployment/app", "--revision=1"); !strings.Contains(out, "nginx:1") {
		t.Fatalf("history revision 1:\n%s", out)
	}

	// Undo goes back to nginx:1, reusing the first ReplicaSet as revision 3.
	kubectl(t, s, "rollout", "undo", "deployment/app")
	kubectl(t, s, "rollout", "status", "deployment/app", "--timeout=60s")
	got := waitComplete(t, c, "default", "app")
	if img := got.Spec.Template.Spec.Containers[0].Image; img != "nginx:1" || got.Annotations[deployment.RevisionAnnotation] != "3" {
		t.Fatalf("after undo image %s revision %s", img, got.Annotations[deployment.RevisionAnnotation])
	}
	if n := len(ownedRS(t, c, got)); n != 2 {
		t.Fatalf("%d replica sets after undo, want 2 (reused)", n)
	}
	hist = kubectl(t, s, "rollout", "history", "deployment/app")
	if strings.Contains(hist, "\n1 ") || !strings.Contains(hist, "\n3 ") {
		t.Fatalf("history after undo:\n%s", hist)
	}

	// Restart rolls a new ReplicaSet with the restartedAt annotation.
	kubectl(t, s, "rollout", "restart", "deployment/app")
	kubectl(t, s, "rollout", "status", "deployment/app", "--timeout=60s")
	got = waitComplete(t, c, "default", "app")
	if got.Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"] == "" || got.Annotations[deployment.RevisionAnnotation] != "4" {
		t.Fatalf("after restart: template annotations %v revision %s", got.Spec.Template.Annotations, got.Annotations[deployment.RevisionAnnotation])
	}
	// revisionHistoryLimit 2: at most the new RS and two old ones.
	eventually(t, "history cleanup", 20*time.Second, func() error {
		if n := len(ownedRS(t, c, got)); n > 3 {
			return fmt.Errorf("%d replica sets", n)
		}
		return nil
	})

	// Pause: a template change does not roll out until resume.
	kubectl(t, s, "rollout", "pause", "deployment/app")
	eventually(t, "paused condition", 20*time.Second, func() error {
		d, err := c.AppsV1().Deployments("default").Get(ctx, "app", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range d.Status.Conditions {
			if cond.Type == appsv1.DeploymentProgressing && cond.Reason == deployment.ReasonPaused {
				return nil
			}
		}
		return fmt.Errorf("conditions %+v", d.Status.Conditions)
	})
	before := len(ownedRS(t, c, got))
	kubectl(t, s, "set", "image", "deployment/app", "c=nginx:5")
	time.Sleep(time.Second)
	if n := len(ownedRS(t, c, got)); n != before {
		t.Fatalf("paused deployment rolled out: %d replica sets, had %d", n, before)
	}
	kubectl(t, s, "rollout", "resume", "deployment/app")
	kubectl(t, s, "rollout", "status", "deployment/app", "--timeout=60s")
	for _, p := range activePods(t, c, "default", "app") {
		if p.Spec.Containers[0].Image != "nginx:5" {
			t.Fatalf("after resume pod %s runs %s", p.Name, p.Spec.Containers[0].Image)
		}
	}
}

// TestControllerManagerRestartMidRollout stops the controller manager in
// the middle of a rollout and starts another: the rollout completes with
// exactly the desired pods and never more than replicas + maxSurge.
func TestControllerManagerRestartMidRollout(t *testing.T) {
	s := testserver.Start(t, func(c *server.Config) { c.Disable = append(c.Disable, "controller-manager") })
	ctx := context.Background()
	c := s.Client
	runManager := func() func() { return managertest.Start(t, s.Config, "replicaset", "deployment", "serviceaccount") }
	stop := runManager()
	k := startKubelet(t, c, "default", 400*time.Millisecond)
	_, err := c.AppsV1().Deployments("default").Create(ctx, newDeployment("mid", 4, "nginx:1"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitComplete(t, c, "default", "mid")
	k.track()
	if _, err := modifyDeployment(ctx, c, "mid", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = "nginx:2" }); err != nil {
		t.Fatal(err)
	}
	eventually(t, "rollout under way", 30*time.Second, func() error {
		got, err := c.AppsV1().Deployments("default").Get(ctx, "mid", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got.Status.UpdatedReplicas < 1 || got.Status.UpdatedReplicas >= 4 {
			return fmt.Errorf("updated %d", got.Status.UpdatedReplicas)
		}
		return nil
	})
	stop()
	time.Sleep(500 * time.Millisecond)
	stop = runManager()
	defer stop()
	waitComplete(t, c, "default", "mid")
	time.Sleep(500 * time.Millisecond)
	pods := activePods(t, c, "default", "mid")
	if len(pods) != 4 {
		t.Fatalf("%d pods after the rollout, want 4", len(pods))
	}
	for _, p := range pods {
		if p.Spec.Containers[0].Image != "nginx:2" {
			t.Fatalf("pod %s runs %s", p.Name, p.Spec.Containers[0].Image)
		}
	}
	minReady, maxActive := k.stats()
	if maxActive > 5 || minReady < 4 {
		t.Fatalf("max active %d (limit 5), min ready %d (limit 4)", maxActive, minReady)
	}
}

// TestScaleDownMidRolloutWithNewRSFull is the state the chaos test found
// stuck (session 9): a Deployment scaled from 2 to 1 while its new
// ReplicaSet already had 1 pod, so every ReplicaSet still carries
// desired-replicas=2. Each sync saw a scaling event, and the scaling step
// returned early because the new ReplicaSet was already full, leaving the
// annotations (and so the scaling event) in place forever: the old
// ReplicaSet kept its 2 pods. Upstream scales proportionally, which
// rewrites the annotations, and the rollout then scales the old one down.
// Only the deployment controller runs; the ReplicaSets' statuses are
// written by the test. A Recreate Deployment in the same state must not
// stay stuck either.
func TestScaleDownMidRolloutWithNewRSFull(t *testing.T) {
	s := testserver.Start(t, func(c *server.Config) { c.Disable = append(c.Disable, "controller-manager") })
	for _, strategy := range []appsv1.DeploymentStrategyType{appsv1.RollingUpdateDeploymentStrategyType, appsv1.RecreateDeploymentStrategyType} {
		t.Run(string(strategy), func(t *testing.T) { scaleDownMidRollout(t, s, strategy) })
	}
}

func scaleDownMidRollout(t *testing.T, s *testserver.Server, strategy appsv1.DeploymentStrategyType) {
	ctx := context.Background()
	c := s.Client
	ns := strings.ToLower(string(strategy))
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	d := newDeployment("halfway", 1, "nginx:2")
	if strategy == appsv1.RecreateDeploymentStrategyType {
		d.Spec.Strategy = appsv1.DeploymentStrategy{Type: strategy}
	}
	d, err := c.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mkRS := func(name, image, revision string, size int32) {
		t.Helper()
		tmpl := *d.Spec.Template.DeepCopy()
		tmpl.Labels = map[string]string{"app": "halfway", appsv1.DefaultDeploymentUniqueLabelKey: name}
		tmpl.Spec.Containers[0].Image = image
		rs := &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{
				Name: "halfway-" + name, Labels: tmpl.Labels,
				Annotations: map[string]string{deployment.RevisionAnnotation: revision,
					deployment.DesiredReplicasAnnotation: "2", deployment.MaxReplicasAnnotation: "3"},
				OwnerReferences: []metav1.OwnerReference{*podutil.NewControllerRef(d, appsv1.SchemeGroupVersion.WithKind("Deployment"))},
			},
			Spec: appsv1.ReplicaSetSpec{Replicas: &size, Template: tmpl,
				Selector: &metav1.LabelSelector{MatchLabels: tmpl.Labels}},
		}
		created, err := c.AppsV1().ReplicaSets(ns).Create(ctx, rs, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		created.Status = appsv1.ReplicaSetStatus{Replicas: size, FullyLabeledReplicas: size, ReadyReplicas: size, AvailableReplicas: size, ObservedGeneration: created.Generation}
		if _, err := c.AppsV1().ReplicaSets(ns).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mkRS("old", "nginx:1", "1", 2)
	mkRS("new", "nginx:2", "2", 1)

	stop := managertest.Start(t, s.Config, "deployment")
	defer stop()

	eventually(t, "old ReplicaSet scaled to 0", 30*time.Second, func() error {
		sizes := map[string]string{}
		for _, rs := range ownedRS(t, c, d) {
			sizes[rs.Name] = fmt.Sprintf("%d (desired-replicas %s)", *rs.Spec.Replicas, rs.Annotations[deployment.DesiredReplicasAnnotation])
		}
		if sizes["halfway-old"] != "0 (desired-replicas 1)" || sizes["halfway-new"] != "1 (desired-replicas 1)" {
			return fmt.Errorf("sizes %v", sizes)
		}
		return nil
	})
}

// modifyDeployment changes the Deployment name in default, again on a
// conflict with the controller's status writes.
func modifyDeployment(ctx context.Context, c kubernetes.Interface, name string, mutate func(*appsv1.Deployment)) (*appsv1.Deployment, error) {
	ds := c.AppsV1().Deployments("default")
	return testserver.Modify(ctx, ds.Get, ds.Update, name, mutate)
}
