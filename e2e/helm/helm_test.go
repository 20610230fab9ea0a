// Package helm drives Helm's Go SDK (helm.sh/helm/v3, as the helm CLI
// does) against a real `bin/skiff server`: install, upgrade, history,
// rollback and uninstall of a chart, with the release history stored the
// way upstream Helm stores it (Secrets of type helm.sh/release.v1).
//
// It is its own module so Helm's dependencies stay out of Skiff's go.mod;
// `make test-e2e` runs it.
package helm

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/release"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func skiffBin(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("SKIFF_BIN"); b != "" {
		return b
	}
	b, err := filepath.Abs("../../bin/skiff")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(b); err != nil {
		t.Fatalf("bin/skiff not built (run make build): %v", err)
	}
	return b
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startServer runs `skiff server` (no agent, no ingress) and returns its
// admin kubeconfig once /readyz answers ok.
func startServer(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "admin.kubeconfig")
	var log bytes.Buffer
	cmd := exec.Command(skiffBin(t), "server", "--data-dir", dir, "--bind-address", "127.0.0.1",
		"--https-listen-port", fmt.Sprint(freePort(t)), "--etcd-client-port", "0", "--etcd-peer-port", "0",
		"--disable-agent", "--ingress-http-port", "0", "--ingress-https-port", "0", "--dashboard-port", "0")
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			s := log.String()
			t.Logf("server log (tail):\n%s", s[max(0, len(s)-4000):])
		}
	})
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if cs, err := clientFor(kubeconfig); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			b, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
			cancel()
			if err == nil && string(b) == "ok" {
				return kubeconfig
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("server not ready in 90s:\n%s", log.String())
	return ""
}

func clientFor(kubeconfig string) (*kubernetes.Clientset, error) {
	if _, err := os.Stat(kubeconfig); err != nil {
		return nil, err
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(rc)
}

// eventually polls fn until it returns "" or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, fn func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		if last = fn(); last == "" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("condition not met in %s: %s", timeout, last)
}

func TestHelmInstallUpgradeRollbackUninstall(t *testing.T) {
	kubeconfig := startServer(t)
	cs, err := clientFor(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	const ns, name = "helm-demo", "demo"
	ctx := t.Context()

	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = ptr(kubeconfig)
	flags.Namespace = ptr(ns)
	cfg := new(action.Configuration)
	if err := cfg.Init(flags, ns, "secret", t.Logf); err != nil {
		t.Fatalf("helm init: %v", err)
	}
	chrt, err := loader.Load("testdata/chart")
	if err != nil {
		t.Fatal(err)
	}

	// The chart's objects as they are in the cluster now.
	check := func(greeting string, replicas int32) {
		t.Helper()
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, name+"-config", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("configmap: %v", err)
		}
		if cm.Data["greeting"] != greeting {
			t.Errorf("configmap greeting = %q, want %q", cm.Data["greeting"], greeting)
		}
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, name+"-web", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("deployment: %v", err)
		}
		if d.Spec.Replicas == nil || *d.Spec.Replicas != replicas {
			t.Errorf("deployment replicas = %v, want %d", d.Spec.Replicas, replicas)
		}
		if d.Labels["app.kubernetes.io/managed-by"] != "Helm" || d.Annotations["meta.helm.sh/release-name"] != name {
			t.Errorf("deployment lacks Helm's ownership metadata: labels %v annotations %v", d.Labels, d.Annotations)
		}
		svc, err := cs.CoreV1().Services(ns).Get(ctx, name+"-web", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("service: %v", err)
		}
		if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.IntValue() != 8080 {
			t.Errorf("service ports = %+v", svc.Spec.Ports)
		}
	}
	// The release history as upstream Helm stores it: one Secret per
	// revision, type helm.sh/release.v1, named sh.helm.release.v1.<name>.v<N>,
	// labelled owner=helm, name, version and status.
	checkStorage := func(want map[int]release.Status) {
		t.Helper()
		list, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{LabelSelector: "owner=helm,name=" + name})
		if err != nil {
			t.Fatal(err)
		}
		got := map[int]release.Status{}
		for _, s := range list.Items {
			var v int
			if _, err := fmt.Sscanf(s.Labels["version"], "%d", &v); err != nil {
				t.Errorf("secret %s: version label %q", s.Name, s.Labels["version"])
				continue
			}
			if s.Type != "helm.sh/release.v1" {
				t.Errorf("secret %s has type %q", s.Name, s.Type)
			}
			if s.Name != fmt.Sprintf("sh.helm.release.v1.%s.v%d", name, v) {
				t.Errorf("secret name %q for version %d", s.Name, v)
			}
			if len(s.Data["release"]) == 0 {
				t.Errorf("secret %s holds no release", s.Name)
			}
			got[v] = release.Status(s.Labels["status"])
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("release secrets (version → status) = %v, want %v", got, want)
		}
	}

	inst := action.NewInstall(cfg)
	inst.ReleaseName, inst.Namespace, inst.CreateNamespace = name, ns, true
	inst.Timeout = time.Minute
	rel, err := inst.RunWithContext(ctx, chrt, map[string]any{"greeting": "hi"})
	if err != nil {
		t.Fatalf("install: %v", err)
	}
	if rel.Info.Status != release.StatusDeployed || rel.Version != 1 {
		t.Fatalf("install: status %s version %d", rel.Info.Status, rel.Version)
	}
	check("hi", 1)
	checkStorage(map[int]release.Status{1: release.StatusDeployed})

	up := action.NewUpgrade(cfg)
	up.Namespace, up.Timeout = ns, time.Minute
	rel, err = up.RunWithContext(ctx, name, chrt, map[string]any{"greeting": "bonjour", "replicas": 2})
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	if rel.Version != 2 || rel.Info.Status != release.StatusDeployed {
		t.Fatalf("upgrade: status %s version %d", rel.Info.Status, rel.Version)
	}
	check("bonjour", 2)

	hist, err := action.NewHistory(cfg).Run(name)
	if err != nil {
		t.Fatalf("history: %v", err)
	}
	sort.Slice(hist, func(i, j int) bool { return hist[i].Version < hist[j].Version })
	if len(hist) != 2 || hist[0].Info.Status != release.StatusSuperseded || hist[1].Info.Status != release.StatusDeployed {
		var s []string
		for _, h := range hist {
			s = append(s, fmt.Sprintf("v%d:%s", h.Version, h.Info.Status))
		}
		t.Fatalf("history = %v, want v1:superseded v2:deployed", s)
	}
	checkStorage(map[int]release.Status{1: release.StatusSuperseded, 2: release.StatusDeployed})

	rb := action.NewRollback(cfg)
	rb.Version, rb.Timeout = 1, time.Minute
	if err := rb.Run(name); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	check("hi", 1)
	checkStorage(map[int]release.Status{1: release.StatusSuperseded, 2: release.StatusSuperseded, 3: release.StatusDeployed})

	un := action.NewUninstall(cfg)
	un.Timeout = time.Minute
	if _, err := un.Run(name); err != nil {
		t.Fatalf("uninstall: %v", err)
	}
	eventually(t, 60*time.Second, func() string {
		var left []string
		if _, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, name+"-config", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			left = append(left, fmt.Sprintf("configmap (%v)", err))
		}
		if _, err := cs.AppsV1().Deployments(ns).Get(ctx, name+"-web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			left = append(left, fmt.Sprintf("deployment (%v)", err))
		}
		if _, err := cs.CoreV1().Services(ns).Get(ctx, name+"-web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			left = append(left, fmt.Sprintf("service (%v)", err))
		}
		if l, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{LabelSelector: "owner=helm"}); err != nil || len(l.Items) > 0 {
			left = append(left, fmt.Sprintf("release secrets (%v)", err))
		}
		if len(left) > 0 {
			return fmt.Sprint("still present: ", left)
		}
		return ""
	})
	if _, err := action.NewHistory(cfg).Run(name); err == nil {
		t.Error("history of an uninstalled release still answers")
	}
}

func ptr[T any](v T) *T { return &v }
