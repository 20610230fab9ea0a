package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/multinode"
	"github.com/skiffhq/skiff/internal/nodetest"
	"github.com/skiffhq/skiff/internal/testimages"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// TestDashboardActions drives Debian's Chromium against the dashboard of
// a cluster with one real node agent (internal/multinode, Instance 16):
// rollout restart and undo of a Deployment from its page (revision
// history, events, owned ReplicaSets and pods shown), the previous
// instance's log of a container that restarted (and the message for one
// that did not), cordon, uncordon and drain of the node (a bare pod
// refused until forced, the DaemonSet's pod skipped, a PodDisruptionBudget
// refusal — simulated in the browser, as the API server enforces no
// budgets — shown and retried), a DaemonSet's undo through its
// ControllerRevisions, and a view user's disabled buttons. The
// browser part is web/e2e/actions.e2e.mjs; this test checks the results
// through the API.
func TestDashboardActions(t *testing.T) {
	b := needBrowser(t)
	dir := t.TempDir()
	const admin, viewer = "e2e-admin-token-16a7c", "e2e-viewer-token-16b3d"
	tokens := writeDashboardTokens(t, dir, admin, viewer)
	c := multinode.Start(t, multinode.Options{Nodes: 1, Instance: 16, Bin: skiffBin(t), Images: []nodetest.Image{nodetest.Busybox},
		Server: []testserver.Option{func(cfg *server.Config) {
			cfg.TokenAuthFile = tokens
			cfg.DashboardAddress = "127.0.0.1:0"
		}}})
	url := c.DashboardURL()
	if url == "" {
		t.Fatal("the server runs no dashboard")
	}
	nodeName := c.NodeNames()[0]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := c.Client.RbacV1().RoleBindings("default").Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "viewer-view"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "viewer"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	spec := func(command ...string) corev1.PodSpec {
		return corev1.PodSpec{TerminationGracePeriodSeconds: ptr.To[int64](0), AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{{Name: "main", Image: testimages.Busybox, Command: command}}}
	}
	// restarter: its first instance prints instance-1 and exits, the
	// second prints instance-2 and stays, so the previous log is exactly
	// instance-1's.
	rs := spec("sh", "-c", `n=$(cat /d/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /d/n; echo instance-$n; [ $n -ge 2 ] && exec sleep 3600; sleep 1; exit 1`)
	rs.Volumes = []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	rs.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "d", MountPath: "/d"}}
	eventually(t, 30*time.Second, func() string {
		_, err := c.Client.CoreV1().Pods("default").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "restarter"}, Spec: rs}, metav1.CreateOptions{})
		if err != nil {
			return err.Error()
		}
		return ""
	})
	labels := map[string]string{"app": "roll"}
	if _, err := c.Client.AppsV1().Deployments("default").Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "roll"},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec("sleep", "3600")}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dsLabels := map[string]string{"app": "agentd"}
	if _, err := c.Client.AppsV1().DaemonSets("default").Create(ctx, &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "agentd"},
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: dsLabels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: dsLabels}, Spec: spec("sleep", "3600")}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 120*time.Second, func() string {
		pods, err := c.Client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err.Error()
		}
		var state []string
		ok := 0
		for _, p := range pods.Items {
			restarts := int32(0)
			for _, cs := range p.Status.ContainerStatuses {
				restarts = cs.RestartCount
			}
			state = append(state, fmt.Sprintf("%s %s restarts=%d", p.Name, p.Status.Phase, restarts))
			if p.Status.Phase == corev1.PodRunning && (p.Name != "restarter" || restarts >= 1) {
				ok++
			}
		}
		if ok < 3 {
			return strings.Join(state, "; ")
		}
		return ""
	})

	b.run(ctx, t, "actions.e2e.mjs", 150*time.Second, "NODE_NAME="+nodeName, "BUSYBOX_IMAGE="+testimages.Busybox, "DASHBOARD_URL="+url, "ADMIN_TOKEN="+admin, "VIEWER_TOKEN="+viewer, "KUBECONFIG="+c.Kubeconfig(), "HOME="+dir)

	// What the browser did is visible in the API.
	d, err := c.Client.AppsV1().Deployments("default").Get(ctx, "roll", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"] == "" {
		t.Fatalf("the Deployment's template has no restartedAt after the UI's restart: %v", d.Spec.Template.Annotations)
	}
	if img := d.Spec.Template.Spec.Containers[0].Image; img != testimages.Busybox {
		t.Fatalf("image after the UI's undo = %q, want %q back", img, testimages.Busybox)
	}
	if _, ok := d.Spec.Template.Labels["pod-template-hash"]; ok {
		t.Fatal("the undo copied the ReplicaSet's pod-template-hash label into the Deployment")
	}
	ds, err := c.Client.AppsV1().DaemonSets("default").Get(ctx, "agentd", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := ds.Spec.Template.Spec.Containers[0].Image; img != testimages.Busybox {
		t.Fatalf("DaemonSet image after the UI's undo = %q, want %q back", img, testimages.Busybox)
	}
	n, err := c.Client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	if err != nil || !n.Spec.Unschedulable {
		t.Fatalf("node %s not cordoned after the drain: %v", nodeName, err)
	}
	eventually(t, 30*time.Second, func() string {
		pods, err := c.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + nodeName})
		if err != nil {
			return err.Error()
		}
		var left []string
		kept := 0
		for _, p := range pods.Items {
			if ref := metav1.GetControllerOf(&p); ref == nil || ref.Kind != "DaemonSet" {
				left = append(left, p.Namespace+"/"+p.Name)
			} else if p.DeletionTimestamp == nil {
				kept++
			}
		}
		if len(left) > 0 {
			return "pods other than the DaemonSet's still on the node: " + strings.Join(left, ", ")
		}
		if kept != 1 {
			return fmt.Sprintf("%d DaemonSet pods on the node, want its one pod kept", kept)
		}
		return ""
	})
}
