package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/nodetest"
	"github.com/skiffhq/skiff/internal/testimages"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/nodeagent/agent"
	"github.com/skiffhq/skiff/nodeagent/network"
	"github.com/skiffhq/skiff/nodeagent/runtime"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

// podCIDR is this package's own /24 (inside the blackholed 10.42.0.0/16),
// on its own bridge, so that it never meets another test's pods.
const (
	podCIDR = "10.42.251.0/24"
	bridge  = "skiffat0"
)

type env struct {
	t        *testing.T
	srv      *testserver.Server
	opts     agent.Options
	agent    *agent.Agent
	nodeName string
}

func setup(t *testing.T) *env {
	t.Helper()
	return setupWith(t, nil)
}

// setupWith is setup with the agent's options changed by mod first.
func setupWith(t *testing.T, mod func(*agent.Options)) *env {
	t.Helper()
	nodetest.Require(t)
	state := nodetest.StateDir(t, nodetest.Busybox, nodetest.HTTPServer)
	e := &env{t: t, srv: testserver.Start(t), nodeName: fmt.Sprintf("agent-test-%d", time.Now().UnixNano()%1e6)}
	e.opts = nodetest.AgentOptions(e.nodeName, state, podCIDR, bridge)
	if mod != nil {
		mod(&e.opts)
	}
	e.start()
	t.Cleanup(e.cleanup)
	return e
}

func (e *env) start() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, err := e.srv.StartAgent(ctx, e.opts)
	if err != nil {
		e.t.Fatalf("start agent: %v", err)
	}
	e.agent = a
}

// cleanup deletes the test's pods through the agent, then sweeps whatever
// is left (containers, network namespaces, the bridge and its nftables
// guard) even when the test failed half way.
func (e *env) cleanup() {
	ctx := context.Background()
	pods, _ := e.srv.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	for _, p := range pods.Items {
		_ = e.srv.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](1)})
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && e.agent != nil {
		if len(e.ourContainers()) == 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if e.agent != nil {
		e.agent.Stop()
	}
	rt, err := runtime.New(ctx, runtime.Options{})
	if err == nil {
		for _, c := range e.ourContainersWith(rt) {
			_ = rt.Remove(ctx, c.ID)
		}
		rt.Close()
	}
	nm, err := network.New(network.Options{StateDir: filepath.Join(e.opts.StateDir, "network"), PodCIDR: podCIDR, Bridge: bridge, NetNSDir: e.opts.NetNSDir})
	if err == nil {
		ents, _ := os.ReadDir(filepath.Join(e.opts.StateDir, "pods"))
		for _, ent := range ents {
			_ = nm.Teardown(ctx, ent.Name(), "", "", "", nil)
		}
		nss, _ := os.ReadDir(e.opts.NetNSDir)
		for _, ns := range nss {
			_ = exec.Command("umount", filepath.Join(e.opts.NetNSDir, ns.Name())).Run()
		}
		if err := nm.Destroy(); err != nil {
			e.t.Errorf("destroy network: %v", err)
		}
	}
}

func (e *env) ourContainers() []runtime.Container {
	if e.agent == nil || e.agent.Runtime() == nil {
		return nil
	}
	return e.ourContainersWith(e.agent.Runtime())
}

func (e *env) ourContainersWith(rt *runtime.Runtime) []runtime.Container {
	cs, _ := rt.List(context.Background())
	var out []runtime.Container
	for _, c := range cs {
		if strings.HasPrefix(c.Labels[runtime.LabelLogPath], e.opts.PodLogDir) {
			out = append(out, c)
		}
	}
	return out
}

func (e *env) createPod(p *corev1.Pod) *corev1.Pod {
	e.t.Helper()
	p.Spec.NodeName = e.nodeName
	if p.Namespace == "" {
		p.Namespace = "default"
	}
	// Pods need the namespace's "default" service account, which the
	// service account controller (not run by every test server) makes.
	_, _ = e.srv.Client.CoreV1().ServiceAccounts(p.Namespace).Create(context.Background(),
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := e.srv.Client.CoreV1().Pods(p.Namespace).Create(context.Background(), p, metav1.CreateOptions{})
		if err == nil {
			return out
		}
		if !apierrors.IsForbidden(err) || time.Now().After(deadline) {
			e.t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (e *env) waitPod(ns, name string, what string, ok func(*corev1.Pod) bool) *corev1.Pod {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var p *corev1.Pod
	for time.Now().Before(deadline) {
		var err error
		p, err = e.srv.Client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err == nil && ok(p) {
			return p
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.t.Fatalf("pod %s/%s never %s; status: %+v", ns, name, what, p.Status)
	return nil
}

func running(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodRunning && len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].State.Running != nil
}

func (e *env) kubectl(args ...string) string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", e.srv.Kubeconfig()}, args...)...).CombinedOutput()
	if err != nil {
		e.t.Fatalf("kubectl %v: %v: %s", args, err, out)
	}
	return string(out)
}

func TestNodeRegistration(t *testing.T) {
	e := setup(t)
	n, err := e.srv.Client.CoreV1().Nodes().Get(context.Background(), e.nodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Spec.PodCIDR != podCIDR {
		t.Errorf("podCIDR = %q", n.Spec.PodCIDR)
	}
	pods := n.Status.Capacity[corev1.ResourcePods]
	if want := min(110, 10*int64(goruntimeNumCPU())); pods.Value() != want {
		t.Errorf("pods capacity = %d, want %d", pods.Value(), want)
	}
	if !strings.HasPrefix(n.Status.NodeInfo.ContainerRuntimeVersion, "containerd://") || n.Status.DaemonEndpoints.KubeletEndpoint.Port == 0 {
		t.Errorf("nodeInfo/endpoints = %+v %+v", n.Status.NodeInfo, n.Status.DaemonEndpoints)
	}
	ready := false
	for _, c := range n.Status.Conditions {
		ready = ready || (c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue)
	}
	if !ready {
		t.Errorf("node not Ready: %+v", n.Status.Conditions)
	}
	l1, err := e.srv.Client.CoordinationV1().Leases(agent.LeaseNamespace).Get(context.Background(), e.nodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	l2, err := e.srv.Client.CoordinationV1().Leases(agent.LeaseNamespace).Get(context.Background(), e.nodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !l2.Spec.RenewTime.After(l1.Spec.RenewTime.Time) {
		t.Errorf("lease not renewed: %v then %v", l1.Spec.RenewTime, l2.Spec.RenewTime)
	}
}

func TestBusyboxPodEnvDNSAndLogs(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	svc, err := e.srv.Client.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "my-svc"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.Client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "cfg"}, Data: map[string]string{"color": "blue"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "bb", Labels: map[string]string{"app": "bb"}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name: "main", Image: testimages.Busybox,
				Command: []string{"sh", "-c"},
				Args:    []string{"env; cat /etc/resolv.conf; echo host=$(hostname); echo said $(GREETING); i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.3; done"},
				Env: []corev1.EnvVar{
					{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
					{Name: "GREETING", Value: "hello-$(POD_NAME)"},
					// Only earlier variables expand (upstream): this stays literal.
					{Name: "LATER", Value: "x-$(APP)"},
					{Name: "APP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
					{Name: "COLOR", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "color"}}},
				},
				WorkingDir: "/tmp",
			}},
		},
	})
	p := e.waitPod("default", "bb", "Running", running)
	if ip := net.ParseIP(p.Status.PodIP); ip == nil || !strings.HasPrefix(p.Status.PodIP, "10.42.251.") {
		t.Errorf("podIP = %q", p.Status.PodIP)
	}
	cs := p.Status.ContainerStatuses[0]
	if !strings.HasPrefix(cs.ContainerID, "containerd://") || !strings.Contains(cs.ImageID, "@sha256:") || p.Status.HostIP != "127.0.0.1" || p.Status.StartTime == nil {
		t.Errorf("status = %+v", p.Status)
	}
	var logs string
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		logs = e.kubectl("logs", "bb")
		if strings.Contains(logs, "tick 2") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, want := range []string{
		"MY_SVC_SERVICE_HOST=" + svc.Spec.ClusterIP + "\n",
		"MY_SVC_SERVICE_PORT=80\n",
		"MY_SVC_SERVICE_PORT_HTTP=80\n",
		"MY_SVC_PORT=tcp://" + svc.Spec.ClusterIP + ":80\n",
		"MY_SVC_PORT_80_TCP_ADDR=" + svc.Spec.ClusterIP + "\n",
		"MY_SVC_PORT_80_TCP_PROTO=tcp\n",
		"KUBERNETES_SERVICE_HOST=",
		"POD_NAME=bb\n", "LATER=x-$(APP)\n", "APP=bb\n", "COLOR=blue\n", "GREETING=hello-bb\n", "said hello-bb\n",
		"PWD=/tmp\n", "host=bb\n",
		"search default.svc.cluster.local svc.cluster.local cluster.local\n",
		"nameserver 10.43.0.10\n", "options ndots:5\n",
		"tick 1\n",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	if got := e.kubectl("logs", "bb", "--tail=1"); strings.Count(got, "\n") != 1 || !strings.HasPrefix(got, "tick ") {
		t.Errorf("--tail=1 = %q", got)
	}
	if got := e.kubectl("logs", "bb", "--limit-bytes=3"); got != "KUB" && len(got) != 3 {
		t.Errorf("--limit-bytes=3 = %q", got)
	}

	// A container name that walks out of the pod's log directory is no
	// container of the pod: refused by the API server, by the agent
	// behind the node proxy, and by kubectl, with nothing of the file.
	// (kubectl get --raw unescapes the path and sends literal ".."
	// segments, which lead to no API path at all: NotFound.)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"logs", "bb", "-c", "../../../../etc/passwd"}, "is not valid for pod bb"},
		{[]string{"get", "--raw", "/api/v1/namespaces/default/pods/bb/log?container=..%2F..%2F..%2F..%2Fetc%2Fpasswd"}, "is not valid for pod bb"},
		{[]string{"get", "--raw", "/api/v1/nodes/" + e.nodeName + "/proxy/containerLogs/default/bb/..%2F..%2F..%2F..%2Fetc%2Fpasswd"}, "NotFound"},
	} {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		out, err := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", e.srv.Kubeconfig()}, tc.args...)...).CombinedOutput()
		cancel()
		if err == nil || strings.Contains(string(out), "root:") || !strings.Contains(string(out), tc.want) {
			t.Errorf("kubectl %v: err %v, output %q; want refused with %q", tc.args, err, out, tc.want)
		}
	}
	// The same through the node proxy with the escaping kept: the agent
	// gets one container name, and refuses it.
	hc, err := rest.HTTPClientFor(e.srv.Config)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.srv.Config.Host+"/api/v1/nodes/"+e.nodeName+"/proxy/containerLogs/default/bb/..%2F..%2F..%2F..%2Fetc%2Fpasswd", nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := hc.Do(req); err != nil {
		t.Errorf("node proxy: %v", err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "is not valid for pod bb") {
			t.Errorf("node proxy with an escaped traversal: %d %q, want 400 not valid for pod bb", resp.StatusCode, b)
		}
	}

	// kubectl logs -f streams lines written after it started.
	fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(fctx, "kubectl", "--kubeconfig", e.srv.Kubeconfig(), "logs", "-f", "--tail=1", "bb")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var seen []string
	buf := make([]byte, 4096)
	var acc bytes.Buffer
	for len(seen) < 3 {
		n, err := stdout.Read(buf)
		acc.Write(buf[:n])
		seen = strings.Fields(strings.ReplaceAll(acc.String(), "tick", ""))
		if err != nil {
			break
		}
	}
	cancel()
	_ = cmd.Wait()
	if len(seen) < 3 {
		t.Fatalf("logs -f streamed %q", acc.String())
	}

	// Deletion: graceful stop, then the pod is gone and nothing is left.
	uid := p.UID
	if err := e.srv.Client.CoreV1().Pods("default").Delete(ctx, "bb", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		_, err := e.srv.Client.CoreV1().Pods("default").Get(ctx, "bb", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod not deleted: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	assertNothingLeft(t, e, string(uid), p.Status.PodIP)
}

func assertNothingLeft(t *testing.T, e *env, uid, ip string) {
	t.Helper()
	for _, c := range e.ourContainers() {
		if c.Labels[runtime.LabelPodUID] == uid {
			t.Errorf("containerd container %s left behind", c.ID)
		}
	}
	if nss, _ := os.ReadDir(e.opts.NetNSDir); len(nss) != 0 {
		t.Errorf("network namespaces left: %d", len(nss))
	}
	if _, err := os.Stat(filepath.Join(e.opts.StateDir, "network", "ipam", "skiff", ip)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("IPAM allocation of %s left behind", ip)
	}
	out, _ := exec.Command("ip", "-o", "link", "show", "master", bridge).CombinedOutput()
	if strings.Contains(string(out), "veth") {
		t.Errorf("veths left on %s: %s", bridge, out)
	}
	if _, err := os.Stat(filepath.Join(e.opts.StateDir, "pods", uid)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pod state folder left behind")
	}
	if ents, _ := os.ReadDir(e.opts.PodLogDir); len(ents) != 0 {
		t.Errorf("pod log folders left: %v", ents)
	}
}

func TestCrashLoopBackOff(t *testing.T) {
	e := setup(t)
	e.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "crash"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers:                    []corev1.Container{{Name: "c", Image: testimages.Busybox, Command: []string{"sh", "-c", "echo boom; exit 3"}}},
		},
	})
	sawBackOff := false
	p := e.waitPod("default", "crash", "restarted twice", func(p *corev1.Pod) bool {
		if len(p.Status.ContainerStatuses) == 0 {
			return false
		}
		cs := p.Status.ContainerStatuses[0]
		if w := cs.State.Waiting; w != nil && w.Reason == "CrashLoopBackOff" && !sawBackOff {
			// The first back-off (after the second exit) is 10 s.
			sawBackOff = true
			if want := "back-off 10s restarting failed container=c pod=crash_default(" + string(p.UID) + ")"; w.Message != want {
				t.Errorf("backoff message %q, want %q", w.Message, want)
			}
		}
		return cs.RestartCount >= 2
	})
	if !sawBackOff {
		t.Error("never saw CrashLoopBackOff")
	}
	cs := p.Status.ContainerStatuses[0]
	lt := cs.LastTerminationState.Terminated
	if lt == nil || lt.ExitCode != 3 || lt.Reason != "Error" {
		t.Errorf("lastState = %+v", cs.LastTerminationState)
	}
	if p.Status.Phase != corev1.PodRunning {
		t.Errorf("phase %s, want Running (restartPolicy Always)", p.Status.Phase)
	}
	if got := e.kubectl("logs", "crash", "--previous"); got != "boom\n" {
		t.Errorf("logs --previous = %q", got)
	}
}

func TestHTTPServerPodAndAdoption(t *testing.T) {
	var log syncBuffer
	e := setupWith(t, func(o *agent.Options) {
		o.Logger = slog.New(slog.NewJSONHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	e.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers:                    []corev1.Container{{Name: "web", Image: testimages.HTTPServer, ImagePullPolicy: corev1.PullNever}},
		},
	})
	p := e.waitPod("default", "web", "Running", running)
	get := func() string {
		t.Helper()
		c := &http.Client{Timeout: 5 * time.Second}
		var last error
		for i := 0; i < 50; i++ {
			resp, err := c.Get(fmt.Sprintf("http://%s:%d/hello", p.Status.PodIP, testimages.HTTPServerPort))
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				return string(b)
			}
			last = err
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("GET pod %s: %v", p.Status.PodIP, last)
		return ""
	}
	if got := get(); got != "hostname=web path=/hello\n" {
		t.Fatalf("pod answered %q", got)
	}
	before := p.Status.ContainerStatuses[0]

	// Restart the agent: the container is adopted, not restarted.
	e.agent.Stop()
	e.agent = nil
	e.start()
	time.Sleep(3 * time.Second) // more than a resync interval
	p2, err := e.srv.Client.CoreV1().Pods("default").Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	after := p2.Status.ContainerStatuses[0]
	if after.ContainerID != before.ContainerID || after.RestartCount != 0 || after.State.Running == nil ||
		!after.State.Running.StartedAt.Equal(&before.State.Running.StartedAt) || p2.Status.PodIP != p.Status.PodIP {
		t.Fatalf("after an agent restart: %+v, before: %+v", after, before)
	}
	if got := get(); got != "hostname=web path=/hello\n" {
		t.Fatalf("pod answered %q after the agent restart", got)
	}

	// The start left one start trace (debug level), in order; the
	// adoption started nothing and left none.
	var traces []map[string]any
	for _, line := range strings.Split(log.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "pod start trace" {
			traces = append(traces, rec)
		}
	}
	if len(traces) != 1 {
		t.Fatalf("want 1 pod start trace, got %d: %v", len(traces), traces)
	}
	tr := traces[0]
	stamp := func(k string) time.Time {
		s, _ := tr[k].(string)
		ts, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatalf("trace %s: %v (%v)", k, err, tr)
		}
		return ts
	}
	seen, synced, status := stamp("seen"), stamp("sync"), stamp("status")
	if tr["pod"] != "default/web" || tr["containers"] != 1.0 || synced.Before(seen) || status.Before(synced) {
		t.Fatalf("pod start trace: %v", tr)
	}
	for _, k := range []string{"sandbox_ms", "create_ms", "start_ms"} {
		if v, _ := tr[k].(float64); v <= 0 || v > float64(status.Sub(synced).Milliseconds()+1) {
			t.Fatalf("trace %s = %v, outside the sync (%v): %v", k, tr[k], status.Sub(synced), tr)
		}
	}
}

func TestImageNeverPulledAbsent(t *testing.T) {
	e := setup(t)
	e.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "noimg"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "skiff.test/absent:1"}}},
	})
	p := e.waitPod("default", "noimg", "ErrImagePull", func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].State.Waiting != nil &&
			(p.Status.ContainerStatuses[0].State.Waiting.Reason == "ErrImagePull" || p.Status.ContainerStatuses[0].State.Waiting.Reason == "ImagePullBackOff")
	})
	if p.Status.Phase != corev1.PodPending {
		t.Errorf("phase %s", p.Status.Phase)
	}
}
