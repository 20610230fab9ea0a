package kinds_test

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

const kubectlPath = "/usr/bin/kubectl"

// table is one kubectl table: its header names and rows keyed by column.
type table struct {
	header []string
	rows   []map[string]string
}

var colGap = regexp.MustCompile(`\S+( \S+)*`)

// parseTables splits kubectl's human-readable output into tables, slicing
// each row at its header's column offsets (cells may contain spaces).
func parseTables(out string) []table {
	var tables []table
	var cur *table
	var starts []int
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == "" {
			cur = nil
			continue
		}
		if cur == nil {
			tables = append(tables, table{})
			cur = &tables[len(tables)-1]
			starts = starts[:0]
			for _, loc := range colGap.FindAllStringIndex(line, -1) {
				cur.header = append(cur.header, line[loc[0]:loc[1]])
				starts = append(starts, loc[0])
			}
			continue
		}
		row := map[string]string{}
		for i, h := range cur.header {
			end := len(line)
			if i+1 < len(starts) && starts[i+1] < end {
				end = starts[i+1]
			}
			if starts[i] < len(line) {
				row[h] = strings.TrimSpace(line[starts[i]:end])
			}
		}
		cur.rows = append(cur.rows, row)
	}
	return tables
}

func kubectl(t *testing.T, kubeconfig string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kubectlPath, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func findRow(t *testing.T, tables []table, name string) (table, map[string]string) {
	t.Helper()
	for _, tb := range tables {
		for _, r := range tb.rows {
			if r["NAME"] == name {
				return tb, r
			}
		}
	}
	t.Fatalf("no row named %q in %+v", name, tables)
	return table{}, nil
}

func wantHeader(t *testing.T, tb table, want ...string) {
	t.Helper()
	if strings.Join(tb.header, "|") != strings.Join(want, "|") {
		t.Errorf("header = %q, want %q", tb.header, want)
	}
}

func wantCells(t *testing.T, row map[string]string, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if row[k] != v {
			t.Errorf("%s: %s = %q, want %q (row %q)", row["NAME"], k, row[k], v, row)
		}
	}
}

func TestKubectlGetPrintsUpstreamColumns(t *testing.T) {
	if _, err := os.Stat(kubectlPath); err != nil {
		t.Skipf("kubectl not installed at %s", kubectlPath)
	}
	// The test creates its own default "local-path" class.
	s := testserver.Start(t, func(c *server.Config) { c.Disable = append(c.Disable, "local-storage") })
	ctx := context.Background()
	cs := s.Client
	const ns = "print-test"

	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	pod, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-pod"},
		Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{
			{Name: "app", Image: "nginx:1.27"}, {Name: "log", Image: "busybox"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	finished := metav1.NewTime(time.Now().Add(-20*time.Minute - 10*time.Second))
	pod.Status = corev1.PodStatus{
		Phase:  corev1.PodRunning,
		PodIP:  "10.42.0.7",
		PodIPs: []corev1.PodIP{{IP: "10.42.0.7"}},
		ContainerStatuses: []corev1.ContainerStatus{
			{Name: "app", Ready: true, RestartCount: 5, Image: "nginx:1.27",
				State:                corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, FinishedAt: finished}}},
			{Name: "log", Image: "busybox", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}},
		},
	}
	if _, err := cs.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	replicas := int32(2)
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{
					{Name: "nginx", Image: "nginx:1.27"}, {Name: "sidecar", Image: "busybox:1.36"}}},
			},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	if _, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web-svc"},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeNodePort,
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Port: 80, NodePort: 30080, Protocol: corev1.ProtocolTCP}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	kc := s.Kubeconfig()

	t.Run("wide", func(t *testing.T) {
		tables := parseTables(kubectl(t, kc, "get", "pods,deploy,svc", "-o", "wide", "-n", ns))

		tb, row := findRow(t, tables, "pod/web-pod")
		wantHeader(t, tb, "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE", "READINESS GATES")
		wantCells(t, row, map[string]string{"READY": "1/2", "STATUS": "CrashLoopBackOff", "RESTARTS": "5 (20m ago)",
			"IP": "10.42.0.7", "NODE": "node-a", "NOMINATED NODE": "<none>", "READINESS GATES": "<none>"})

		tb, row = findRow(t, tables, "deployment.apps/web")
		wantHeader(t, tb, "NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR")
		wantCells(t, row, map[string]string{"CONTAINERS": "nginx,sidecar", "IMAGES": "nginx:1.27,busybox:1.36", "SELECTOR": "app=web"})
		if !strings.HasSuffix(row["READY"], "/2") {
			t.Errorf("deployment READY = %q, want n/2", row["READY"])
		}

		tb, row = findRow(t, tables, "service/web-svc")
		wantHeader(t, tb, "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR")
		wantCells(t, row, map[string]string{"TYPE": "NodePort", "EXTERNAL-IP": "<none>", "PORT(S)": "80:30080/TCP", "SELECTOR": "app=web"})
	})

	t.Run("default hides wide columns", func(t *testing.T) {
		tables := parseTables(kubectl(t, kc, "get", "pods", "-n", ns))
		tb, row := findRow(t, tables, "web-pod")
		wantHeader(t, tb, "NAME", "READY", "STATUS", "RESTARTS", "AGE")
		wantCells(t, row, map[string]string{"READY": "1/2", "RESTARTS": "5 (20m ago)"})
	})

	t.Run("cluster-scoped and config kinds", func(t *testing.T) {
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: "node-a", Labels: map[string]string{"node-role.kubernetes.io/control-plane": ""}},
			Spec:       corev1.NodeSpec{Unschedulable: true},
			Status: corev1.NodeStatus{
				Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
				Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.5.10"}},
				NodeInfo:   corev1.NodeSystemInfo{KubeletVersion: "v1.32.0", OSImage: "Debian GNU/Linux 12", KernelVersion: "6.1.0", ContainerRuntimeVersion: "containerd://2.0.0"},
			},
		}
		if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// The controllers write the new node too (its pod CIDR, taints).
		if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur, err := cs.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			cur.Status = node.Status
			_, err = cs.CoreV1().Nodes().UpdateStatus(ctx, cur, metav1.UpdateOptions{})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{
			ObjectMeta:  metav1.ObjectMeta{Name: "local-path", Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"}},
			Provisioner: "rancher.io/local-path",
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "cfg"}, Data: map[string]string{"a": "1", "b": "2"},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}

		tables := parseTables(kubectl(t, kc, "get", "nodes", "-o", "wide"))
		tb, row := findRow(t, tables, "node-a")
		wantHeader(t, tb, "NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME")
		wantCells(t, row, map[string]string{"STATUS": "Ready,SchedulingDisabled", "ROLES": "control-plane", "VERSION": "v1.32.0",
			"INTERNAL-IP": "192.168.5.10", "EXTERNAL-IP": "<none>", "OS-IMAGE": "Debian GNU/Linux 12", "CONTAINER-RUNTIME": "containerd://2.0.0"})

		tables = parseTables(kubectl(t, kc, "get", "storageclass"))
		tb, row = findRow(t, tables, "local-path (default)")
		wantHeader(t, tb, "NAME", "PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE", "ALLOWVOLUMEEXPANSION", "AGE")
		wantCells(t, row, map[string]string{"PROVISIONER": "rancher.io/local-path", "RECLAIMPOLICY": "Delete",
			"VOLUMEBINDINGMODE": "Immediate", "ALLOWVOLUMEEXPANSION": "false"})

		tables = parseTables(kubectl(t, kc, "get", "configmaps", "-n", ns))
		tb, row = findRow(t, tables, "cfg")
		wantHeader(t, tb, "NAME", "DATA", "AGE")
		wantCells(t, row, map[string]string{"DATA": "2"})
	})

	t.Run("namespaces", func(t *testing.T) {
		tables := parseTables(kubectl(t, kc, "get", "ns"))
		tb, row := findRow(t, tables, ns)
		wantHeader(t, tb, "NAME", "STATUS", "AGE")
		wantCells(t, row, map[string]string{"STATUS": "Active"})
		if !regexp.MustCompile(`^\d+s$`).MatchString(row["AGE"]) {
			t.Errorf("namespace AGE = %q, want seconds", row["AGE"])
		}
	})
}
