package e2e

import (
	"context"
	"fmt"
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

// TestDashboardExecAndMergedLogs drives Debian's Chromium against the
// dashboard of a cluster with a real node agent (`bin/skiff agent` on
// containerd, internal/multinode, one node): the exec terminal on a busybox
// pod (typed input and its output, the exit code shown, the view user
// refused with the RBAC message) and the merged logs of a 2-replica
// Deployment (lines of both pods, each named, then of a third pod after
// scaling). The browser part is web/e2e/dashboard.e2e.mjs with
// E2E_PART=exec; screenshots land in e2e/artifacts/.
func TestDashboardExecAndMergedLogs(t *testing.T) {
	b := needBrowser(t)
	dir := t.TempDir()
	const admin, viewer = "e2e-admin-token-8e2f1", "e2e-viewer-token-5b7c0"
	tokens := writeDashboardTokens(t, dir, admin, viewer)
	c := multinode.Start(t, multinode.Options{Nodes: 1, Instance: 9, Bin: skiffBin(t), Images: []nodetest.Image{nodetest.Busybox},
		Server: []testserver.Option{func(cfg *server.Config) {
			cfg.TokenAuthFile = tokens
			cfg.DashboardAddress = "127.0.0.1:0"
		}}})
	url := c.DashboardURL()
	if url == "" {
		t.Fatal("the server runs no dashboard")
	}
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
	eventually(t, 30*time.Second, func() string {
		_, err := c.Client.CoreV1().Pods("default").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "shell"}, Spec: spec("sleep", "3600")}, metav1.CreateOptions{})
		if err != nil {
			return err.Error()
		}
		return ""
	})
	labels := map[string]string{"app": "logger"}
	if _, err := c.Client.AppsV1().Deployments("default").Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "logger"},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: spec("sh", "-c", "i=0; while :; do echo tick-$i from $(hostname); i=$((i+1)); sleep 1; done")}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 120*time.Second, func() string {
		pods, err := c.Client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err.Error()
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		if running < 3 {
			return fmt.Sprintf("%d of 3 pods running", running)
		}
		return ""
	})

	b.run(ctx, t, "dashboard.e2e.mjs", 180*time.Second, "E2E_PART=exec", "DASHBOARD_URL="+url, "ADMIN_TOKEN="+admin, "VIEWER_TOKEN="+viewer, "KUBECONFIG="+c.Kubeconfig(), "HOME="+dir)
}
