package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// Workloads churns Deployments on hollow nodes: it scales them and rolls
// their pod template at random. After the faults every Deployment must
// converge to its last acknowledged spec with exactly that many pods.
type Workloads struct {
	Client      kubernetes.Interface
	Namespace   string
	Deployments int
	// Changes counts scale and rollout writes the server acknowledged.
	Changes atomic.Int64
}

func (w *Workloads) name(i int) string { return fmt.Sprintf("chaos-web-%d", i) }

// Setup creates the Deployments (2 replicas each).
func (w *Workloads) Setup(ctx context.Context) error {
	if _, err := w.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: w.Namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace: %w", err)
	}
	for i := range w.Deployments {
		name := w.name(i)
		labels := map[string]string{"app": name}
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](2),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{"chaos.skiff.io/rev": "0"}},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.local/chaos-web:1"}}},
				},
			},
		}
		if _, err := w.Client.AppsV1().Deployments(w.Namespace).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create %s: %w", name, err)
		}
	}
	return nil
}

// Run scales or rolls one Deployment about every interval until ctx ends.
// Changes are read-modify-write; a write whose answer was lost is simply
// read again next time (the convergence check reads the final spec).
func (w *Workloads) Run(ctx context.Context, interval time.Duration, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	rev := 0
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
		name := w.name(rng.IntN(w.Deployments))
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		d, err := w.Client.AppsV1().Deployments(w.Namespace).Get(rctx, name, metav1.GetOptions{})
		if err == nil {
			if rng.IntN(3) == 0 {
				rev++
				d.Spec.Template.Annotations["chaos.skiff.io/rev"] = strconv.Itoa(rev)
			} else {
				d.Spec.Replicas = ptr.To(int32(1 + rng.IntN(4)))
			}
			_, err = w.Client.AppsV1().Deployments(w.Namespace).Update(rctx, d, metav1.UpdateOptions{})
		}
		cancel()
		if err == nil {
			w.Changes.Add(1)
		}
	}
}

// Converged reports "" when every Deployment's status matches its spec
// and it has exactly spec.replicas pods (none extra, none terminating),
// else what is still off.
func (w *Workloads) Converged(ctx context.Context) string {
	deps, err := w.Client.AppsV1().Deployments(w.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	pods, err := w.Client.CoreV1().Pods(w.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var off []string
	for _, d := range deps.Items {
		want := ptr.Deref(d.Spec.Replicas, 1)
		st := d.Status
		if st.ObservedGeneration < d.Generation || st.Replicas != want || st.UpdatedReplicas != want || st.ReadyReplicas != want || st.AvailableReplicas != want {
			off = append(off, fmt.Sprintf("%s: want %d, generation %d observed %d, replicas %d updated %d ready %d available %d",
				d.Name, want, d.Generation, st.ObservedGeneration, st.Replicas, st.UpdatedReplicas, st.ReadyReplicas, st.AvailableReplicas))
			continue
		}
		n := int32(0)
		for _, p := range pods.Items {
			if p.Labels["app"] == d.Name {
				n++
				if p.DeletionTimestamp != nil {
					off = append(off, fmt.Sprintf("%s: pod %s still terminating", d.Name, p.Name))
				}
			}
		}
		if n != want {
			off = append(off, fmt.Sprintf("%s: %d pods, want %d", d.Name, n, want))
		}
	}
	return strings.Join(off, "; ")
}

// WaitConverged polls Converged until it is "" or timeout passes; it
// returns how long that took and the last difference.
func (w *Workloads) WaitConverged(ctx context.Context, timeout time.Duration, retry time.Duration) (time.Duration, string) {
	start := time.Now()
	last := ""
	for time.Since(start) < timeout && ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		last = w.Converged(rctx)
		cancel()
		if last == "" {
			return time.Since(start), ""
		}
		select {
		case <-ctx.Done():
		case <-time.After(retry):
		}
	}
	return time.Since(start), last
}

// Describe lists the ReplicaSets and pods of the Deployments, one line
// each, for a failure report: what each ReplicaSet was asked for and
// reports, and each pod's owner, node, phase and deletion state.
func (w *Workloads) Describe(ctx context.Context) string {
	var b strings.Builder
	rss, err := w.Client.AppsV1().ReplicaSets(w.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "list replicasets: " + err.Error()
	}
	for _, rs := range rss.Items {
		owner := ""
		if ref := metav1.GetControllerOf(&rs); ref != nil {
			owner = ref.Name
		}
		fmt.Fprintf(&b, "rs %s owner=%s rv=%s spec=%d gen=%d observed=%d replicas=%d ready=%d available=%d rev=%s desired=%s deleting=%v\n",
			rs.Name, owner, rs.ResourceVersion, ptr.Deref(rs.Spec.Replicas, 1), rs.Generation, rs.Status.ObservedGeneration,
			rs.Status.Replicas, rs.Status.ReadyReplicas, rs.Status.AvailableReplicas,
			rs.Annotations["deployment.kubernetes.io/revision"], rs.Annotations["deployment.kubernetes.io/desired-replicas"], rs.DeletionTimestamp != nil)
	}
	pods, err := w.Client.CoreV1().Pods(w.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return b.String() + "list pods: " + err.Error()
	}
	for _, p := range pods.Items {
		owner := ""
		if ref := metav1.GetControllerOf(&p); ref != nil {
			owner = ref.Name
		}
		fmt.Fprintf(&b, "pod %s owner=%s rv=%s node=%s phase=%s deleting=%v finalizers=%v created=%s\n",
			p.Name, owner, p.ResourceVersion, p.Spec.NodeName, p.Status.Phase, p.DeletionTimestamp != nil, p.Finalizers, p.CreationTimestamp.Format(time.RFC3339))
	}
	return b.String()
}
