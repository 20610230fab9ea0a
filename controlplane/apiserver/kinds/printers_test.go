package kinds

import (
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

var testNow = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func pinClock(t *testing.T) {
	t.Helper()
	prev := tblNow
	tblNow = func() time.Time { return testNow }
	t.Cleanup(func() { tblNow = prev })
}

func ago(d time.Duration) metav1.Time { return metav1.NewTime(testNow.Add(-d)) }

func ptr[T any](v T) *T { return &v }

// cells runs the registered printer for group/kind on obj.
func cells(t *testing.T, group, kind string, obj runtime.Object) []interface{} {
	t.Helper()
	p, ok := printers[gk(group, kind)]
	if !ok {
		t.Fatalf("no printer for %s/%s", group, kind)
	}
	row := p.Row(obj)
	if len(row) != len(p.Columns) {
		t.Fatalf("%s: %d cells for %d columns", kind, len(row), len(p.Columns))
	}
	return row
}

// cell returns the cell under the named column.
func cell(t *testing.T, group, kind string, obj runtime.Object, column string) interface{} {
	t.Helper()
	row := cells(t, group, kind, obj)
	for i, c := range printers[gk(group, kind)].Columns {
		if c.Name == column {
			return row[i]
		}
	}
	t.Fatalf("%s has no column %q", kind, column)
	return nil
}

func TestEveryBuiltinRowMatchesItsColumns(t *testing.T) {
	pinClock(t)
	for _, r := range Builtins() {
		if r.Hooks.Table == nil {
			t.Errorf("%s/%s: no table printer", r.Group, r.Kind)
			continue
		}
		obj := r.New()
		if row := r.Hooks.Table.Row(obj); len(row) != len(r.Hooks.Table.Columns) {
			t.Errorf("%s/%s %s: %d cells for %d columns", r.Group, r.Version, r.Kind, len(row), len(r.Hooks.Table.Columns))
		}
		for _, c := range r.Hooks.Table.Columns {
			switch c.Type {
			case "string", "integer", "boolean", "date", "number":
			default:
				t.Errorf("%s column %q: type %q", r.Kind, c.Name, c.Type)
			}
			if c.Description == "" {
				t.Errorf("%s column %q: no description", r.Kind, c.Name)
			}
		}
	}
}

func TestColumnSets(t *testing.T) {
	type col struct {
		name     string
		priority int32
	}
	tests := []struct {
		group, kind string
		want        []col
	}{
		{"", "Pod", []col{{"Name", 0}, {"Ready", 0}, {"Status", 0}, {"Restarts", 0}, {"Age", 0},
			{"IP", 1}, {"Node", 1}, {"Nominated Node", 1}, {"Readiness Gates", 1}}},
		{"", "Node", []col{{"Name", 0}, {"Status", 0}, {"Roles", 0}, {"Age", 0}, {"Version", 0},
			{"Internal-IP", 1}, {"External-IP", 1}, {"OS-Image", 1}, {"Kernel-Version", 1}, {"Container-Runtime", 1}}},
		{"", "Service", []col{{"Name", 0}, {"Type", 0}, {"Cluster-IP", 0}, {"External-IP", 0}, {"Port(s)", 0}, {"Age", 0}, {"Selector", 1}}},
		{"", "Event", []col{{"Last Seen", 0}, {"Type", 0}, {"Reason", 0}, {"Object", 0}, {"Subobject", 1}, {"Source", 1},
			{"Message", 0}, {"First Seen", 1}, {"Count", 1}, {"Name", 1}}},
		{"apps", "Deployment", []col{{"Name", 0}, {"Ready", 0}, {"Up-to-date", 0}, {"Available", 0}, {"Age", 0},
			{"Containers", 1}, {"Images", 1}, {"Selector", 1}}},
		{"batch", "Job", []col{{"Name", 0}, {"Status", 0}, {"Completions", 0}, {"Duration", 0}, {"Age", 0},
			{"Containers", 1}, {"Images", 1}, {"Selector", 1}}},
		{"batch", "CronJob", []col{{"Name", 0}, {"Schedule", 0}, {"Timezone", 0}, {"Suspend", 0}, {"Active", 0},
			{"Last Schedule", 0}, {"Age", 0}, {"Containers", 1}, {"Images", 1}, {"Selector", 1}}},
		{"rbac.authorization.k8s.io", "ClusterRoleBinding", []col{{"Name", 0}, {"Role", 0}, {"Age", 0},
			{"Users", 1}, {"Groups", 1}, {"ServiceAccounts", 1}}},
		{"rbac.authorization.k8s.io", "Role", []col{{"Name", 0}, {"Created At", 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			got := printers[gk(tt.group, tt.kind)].Columns
			if len(got) != len(tt.want) {
				t.Fatalf("got %d columns, want %d: %+v", len(got), len(tt.want), got)
			}
			for i, w := range tt.want {
				if got[i].Name != w.name || got[i].Priority != w.priority {
					t.Errorf("column %d = %q (priority %d), want %q (priority %d)", i, got[i].Name, got[i].Priority, w.name, w.priority)
				}
			}
			if got[0].Format != "name" && tt.kind != "Event" {
				t.Errorf("first column format %q, want name", got[0].Format)
			}
		})
	}
}

func running(name string, ready bool, restarts int32) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, Ready: ready, RestartCount: restarts,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}
}

func waiting(name, reason string, restarts int32) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, RestartCount: restarts,
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}}
}

func terminated(name, reason string, code, signal int32) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name,
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: reason, ExitCode: code, Signal: signal}}}
}

func TestPodReadyStatusRestarts(t *testing.T) {
	pinClock(t)
	two := []corev1.Container{{Name: "a"}, {Name: "b"}}
	always := corev1.ContainerRestartPolicyAlways
	deleted := ago(time.Second)
	tests := []struct {
		name                    string
		pod                     corev1.Pod
		ready, status, restarts string
	}{
		{"pending without statuses",
			corev1.Pod{Spec: corev1.PodSpec{Containers: two}, Status: corev1.PodStatus{Phase: corev1.PodPending}},
			"0/2", "Pending", "0"},
		{"one of two ready",
			corev1.Pod{Spec: corev1.PodSpec{Containers: two}, Status: corev1.PodStatus{Phase: corev1.PodRunning,
				ContainerStatuses: []corev1.ContainerStatus{running("a", true, 0), running("b", false, 0)}}},
			"1/2", "Running", "0"},
		{"container creating",
			corev1.Pod{Spec: corev1.PodSpec{Containers: two}, Status: corev1.PodStatus{Phase: corev1.PodPending,
				ContainerStatuses: []corev1.ContainerStatus{waiting("a", "ContainerCreating", 0), waiting("b", "ContainerCreating", 0)}}},
			"0/2", "ContainerCreating", "0"},
		{"image pull error",
			corev1.Pod{Spec: corev1.PodSpec{Containers: two[:1]}, Status: corev1.PodStatus{Phase: corev1.PodPending,
				ContainerStatuses: []corev1.ContainerStatus{waiting("a", "ErrImagePull", 0)}}},
			"0/1", "ErrImagePull", "0"},
		{"crash loop with last restart",
			corev1.Pod{Spec: corev1.PodSpec{Containers: two[:1]}, Status: corev1.PodStatus{Phase: corev1.PodRunning,
				ContainerStatuses: []corev1.ContainerStatus{func() corev1.ContainerStatus {
					s := waiting("a", "CrashLoopBackOff", 5)
					s.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ExitCode: 1, FinishedAt: ago(5 * time.Minute)}
					return s
				}()}}},
			"0/1", "CrashLoopBackOff", "5 (5m ago)"},
		{"restarts without termination time",
			corev1.Pod{Spec: corev1.PodSpec{Containers: two[:1]}, Status: corev1.PodStatus{Phase: corev1.PodRunning,
				ContainerStatuses: []corev1.ContainerStatus{running("a", true, 3)}}},
			"1/1", "Running", "3"},
		{"completed",
			corev1.Pod{Spec: corev1.PodSpec{Containers: two[:1]}, Status: corev1.PodStatus{Phase: corev1.PodSucceeded,
				ContainerStatuses: []corev1.ContainerStatus{terminated("a", "Completed", 0, 0)}}},
			"0/1", "Completed", "0"},
		{"error",
			corev1.Pod{Spec: corev1.PodSpec{Containers: two[:1]}, Status: corev1.PodStatus{Phase: corev1.PodFailed,
				ContainerStatuses: []corev1.ContainerStatus{terminated("a", "Error", 1, 0)}}},
			"0/1", "Error", "0"},
		{"exit code without reason",
			corev1.Pod{Spec: corev1.PodSpec{Containers: two[:1]}, Status: corev1.PodStatus{Phase: corev1.PodFailed,
				ContainerStatuses: []corev1.ContainerStatus{terminated("a", "", 137, 0)}}},
			"0/1", "ExitCode:137", "0"},
		{"signal without reason",
			corev1.Pod{Spec: corev1.PodSpec{Containers: two[:1]}, Status: corev1.PodStatus{Phase: corev1.PodFailed,
				ContainerStatuses: []corev1.ContainerStatus{terminated("a", "", 0, 9)}}},
			"0/1", "Signal:9", "0"},
		{"completed container next to a running one, pod ready",
			corev1.Pod{Spec: corev1.PodSpec{Containers: two}, Status: corev1.PodStatus{Phase: corev1.PodRunning,
				Conditions:        []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
				ContainerStatuses: []corev1.ContainerStatus{terminated("a", "Completed", 0, 0), running("b", true, 0)}}},
			"1/2", "Running", "0"},
		{"completed container next to a running one, pod not ready",
			corev1.Pod{Spec: corev1.PodSpec{Containers: two}, Status: corev1.PodStatus{Phase: corev1.PodRunning,
				ContainerStatuses: []corev1.ContainerStatus{terminated("a", "Completed", 0, 0), running("b", true, 0)}}},
			"1/2", "NotReady", "0"},
		{"second of three init containers running",
			corev1.Pod{Spec: corev1.PodSpec{Containers: two[:1], InitContainers: []corev1.Container{{Name: "i1"}, {Name: "i2"}, {Name: "i3"}}},
				Status: corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: []corev1.ContainerStatus{
					terminated("i1", "Completed", 0, 0), running("i2", false, 0), waiting("i3", "PodInitializing", 0)}}},
			"0/1", "Init:1/3", "0"},
		{"init container crash looping",
			corev1.Pod{Spec: corev1.PodSpec{Containers: two[:1], InitContainers: []corev1.Container{{Name: "i1"}}},
				Status: corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: []corev1.ContainerStatus{
					waiting("i1", "CrashLoopBackOff", 4)}}},
			"0/1", "Init:CrashLoopBackOff", "4"},
		{"init container failed",
			corev1.Pod{Spec: corev1.PodSpec{Containers: two[:1], InitContainers: []corev1.Container{{Name: "i1"}}},
				Status: corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: []corev1.ContainerStatus{
					terminated("i1", "", 2, 0)}}},
			"0/1", "Init:ExitCode:2", "0"},
		{"started sidecar counts toward ready and total",
			corev1.Pod{Spec: corev1.PodSpec{Containers: two[:1], InitContainers: []corev1.Container{{Name: "side", RestartPolicy: &always}}},
				Status: corev1.PodStatus{Phase: corev1.PodRunning,
					Conditions: []corev1.PodCondition{{Type: corev1.PodInitialized, Status: corev1.ConditionTrue}},
					InitContainerStatuses: []corev1.ContainerStatus{func() corev1.ContainerStatus {
						s := running("side", true, 2)
						s.Started = ptr(true)
						return s
					}()},
					ContainerStatuses: []corev1.ContainerStatus{running("a", true, 1)}}},
			"2/2", "Running", "3"},
		{"status reason overrides phase",
			corev1.Pod{Spec: corev1.PodSpec{Containers: two[:1]}, Status: corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted"}},
			"0/1", "Evicted", "0"},
		{"scheduling gated",
			corev1.Pod{Spec: corev1.PodSpec{Containers: two[:1]}, Status: corev1.PodStatus{Phase: corev1.PodPending,
				Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "SchedulingGated"}}}},
			"0/1", "SchedulingGated", "0"},
		{"terminating",
			corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &deleted}, Spec: corev1.PodSpec{Containers: two[:1]},
				Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{running("a", true, 0)}}},
			"1/1", "Terminating", "0"},
		{"deleted after finishing stays Completed",
			corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &deleted}, Spec: corev1.PodSpec{Containers: two[:1]},
				Status: corev1.PodStatus{Phase: corev1.PodSucceeded, ContainerStatuses: []corev1.ContainerStatus{terminated("a", "Completed", 0, 0)}}},
			"0/1", "Completed", "0"},
		{"node lost",
			corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &deleted}, Spec: corev1.PodSpec{Containers: two[:1]},
				Status: corev1.PodStatus{Phase: corev1.PodRunning, Reason: "NodeLost"}},
			"0/1", "Unknown", "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := tt.pod
			pod.Name = "p"
			row := cells(t, "", "Pod", &pod)
			if row[1] != tt.ready || row[2] != tt.status || row[3] != tt.restarts {
				t.Errorf("READY/STATUS/RESTARTS = %v/%v/%v, want %v/%v/%v", row[1], row[2], row[3], tt.ready, tt.status, tt.restarts)
			}
		})
	}
}

func TestPodWideCells(t *testing.T) {
	pinClock(t)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", CreationTimestamp: ago(90 * time.Second)},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}}, NodeName: "n1",
			ReadinessGates: []corev1.PodReadinessGate{{ConditionType: "g1"}, {ConditionType: "g2"}}},
		Status: corev1.PodStatus{PodIPs: []corev1.PodIP{{IP: "10.0.0.5"}, {IP: "fd00::5"}},
			Conditions: []corev1.PodCondition{{Type: "g1", Status: corev1.ConditionTrue}, {Type: "g2", Status: corev1.ConditionFalse}}},
	}
	row := cells(t, "", "Pod", pod)
	want := []interface{}{"web", "0/1", "", "0", "90s", "10.0.0.5", "n1", "<none>", "1/2"}
	for i := range want {
		if row[i] != want[i] {
			t.Errorf("cell %d = %v, want %v", i, row[i], want[i])
		}
	}
	empty := cells(t, "", "Pod", &corev1.Pod{})
	if empty[5] != "<none>" || empty[6] != "<none>" || empty[8] != "<none>" {
		t.Errorf("empty pod wide cells = %v", empty[5:])
	}
}

func TestServiceCells(t *testing.T) {
	pinClock(t)
	tests := []struct {
		name            string
		svc             corev1.Service
		clusterIP, ext  string
		ports, selector string
	}{
		{"node port", corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ClusterIPs: []string{"10.43.0.10"},
			Ports:    []corev1.ServicePort{{Port: 80, NodePort: 30080, Protocol: corev1.ProtocolTCP}, {Port: 53, Protocol: corev1.ProtocolUDP}},
			Selector: map[string]string{"app": "web"}}},
			"10.43.0.10", "<none>", "80:30080/TCP,53/UDP", "app=web"},
		{"cluster ip with external ips", corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIPs: []string{"10.43.0.11"},
			ExternalIPs: []string{"1.2.3.4", "5.6.7.8"}, Ports: []corev1.ServicePort{{Port: 443, Protocol: corev1.ProtocolTCP}}}},
			"10.43.0.11", "1.2.3.4,5.6.7.8", "443/TCP", "<none>"},
		{"load balancer pending", corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ClusterIPs: []string{"10.43.0.12"}}},
			"10.43.0.12", "<pending>", "<none>", "<none>"},
		{"load balancer with ingress", corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ClusterIPs: []string{"10.43.0.13"}},
			Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{
				{IP: "192.168.1.9"}, {Hostname: "lb.example.com"}, {IP: "192.168.1.9"}}}}},
			"10.43.0.13", "192.168.1.9,lb.example.com", "<none>", "<none>"},
		{"external name", corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com"}},
			"<none>", "db.example.com", "<none>", "<none>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			row := cells(t, "", "Service", &tt.svc)
			if row[2] != tt.clusterIP || row[3] != tt.ext || row[4] != tt.ports || row[6] != tt.selector {
				t.Errorf("CLUSTER-IP/EXTERNAL-IP/PORT(S)/SELECTOR = %v | %v | %v | %v, want %v | %v | %v | %v",
					row[2], row[3], row[4], row[6], tt.clusterIP, tt.ext, tt.ports, tt.selector)
			}
		})
	}
}

func TestNodeCells(t *testing.T) {
	pinClock(t)
	ready := func(s corev1.ConditionStatus) []corev1.NodeCondition {
		return []corev1.NodeCondition{{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse}, {Type: corev1.NodeReady, Status: s}}
	}
	tests := []struct {
		name          string
		node          corev1.Node
		status, roles string
	}{
		{"ready", corev1.Node{Status: corev1.NodeStatus{Conditions: ready(corev1.ConditionTrue)}}, "Ready", "<none>"},
		{"not ready", corev1.Node{Status: corev1.NodeStatus{Conditions: ready(corev1.ConditionFalse)}}, "NotReady", "<none>"},
		{"unknown ready condition", corev1.Node{Status: corev1.NodeStatus{Conditions: ready(corev1.ConditionUnknown)}}, "NotReady", "<none>"},
		{"no ready condition", corev1.Node{}, "Unknown", "<none>"},
		{"cordoned control plane", corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{
				"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/etcd": "true", "node-role.kubernetes.io/": "x",
				"kubernetes.io/role": "master"}},
			Spec:   corev1.NodeSpec{Unschedulable: true},
			Status: corev1.NodeStatus{Conditions: ready(corev1.ConditionTrue)}},
			"Ready,SchedulingDisabled", "control-plane,etcd,master"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			row := cells(t, "", "Node", &tt.node)
			if row[1] != tt.status || row[2] != tt.roles {
				t.Errorf("STATUS/ROLES = %v/%v, want %v/%v", row[1], row[2], tt.status, tt.roles)
			}
		})
	}
	n := &corev1.Node{Status: corev1.NodeStatus{
		Addresses: []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: "h"}, {Type: corev1.NodeInternalIP, Address: "10.0.0.2"}},
		NodeInfo:  corev1.NodeSystemInfo{KubeletVersion: "v1.32.0", OSImage: "Debian", ContainerRuntimeVersion: "containerd://2.0"}}}
	row := cells(t, "", "Node", n)
	want := []interface{}{"v1.32.0", "10.0.0.2", "<none>", "Debian", "<unknown>", "containerd://2.0"}
	for i, w := range want {
		if row[4+i] != w {
			t.Errorf("cell %d = %v, want %v", 4+i, row[4+i], w)
		}
	}
}

func TestJobCells(t *testing.T) {
	pinClock(t)
	cond := func(t batchv1.JobConditionType) []batchv1.JobCondition {
		return []batchv1.JobCondition{{Type: t, Status: corev1.ConditionTrue}}
	}
	deleted := ago(time.Second)
	start, end := ago(10*time.Minute), ago(7*time.Minute)
	tests := []struct {
		name                         string
		job                          batchv1.Job
		status, completions, seconds string
	}{
		{"running, parallel without completions", batchv1.Job{Spec: batchv1.JobSpec{Parallelism: ptr(int32(3))},
			Status: batchv1.JobStatus{StartTime: &start, Succeeded: 1}}, "Running", "1/1 of 3", "10m"},
		{"complete", batchv1.Job{Spec: batchv1.JobSpec{Completions: ptr(int32(2))},
			Status: batchv1.JobStatus{StartTime: &start, CompletionTime: &end, Succeeded: 2, Conditions: cond(batchv1.JobComplete)}},
			"Complete", "2/2", "3m"},
		{"failed", batchv1.Job{Status: batchv1.JobStatus{Conditions: cond(batchv1.JobFailed)}}, "Failed", "0/1", ""},
		{"terminating", batchv1.Job{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &deleted},
			Status: batchv1.JobStatus{Conditions: cond(batchv1.JobSuspended)}}, "Terminating", "0/1", ""},
		{"suspended", batchv1.Job{Status: batchv1.JobStatus{Conditions: cond(batchv1.JobSuspended)}}, "Suspended", "0/1", ""},
		{"failure target", batchv1.Job{Status: batchv1.JobStatus{Conditions: cond(batchv1.JobFailureTarget)}}, "FailureTarget", "0/1", ""},
		{"false complete condition", batchv1.Job{Status: batchv1.JobStatus{Conditions: []batchv1.JobCondition{
			{Type: batchv1.JobComplete, Status: corev1.ConditionFalse}}}}, "Running", "0/1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			row := cells(t, "batch", "Job", &tt.job)
			if row[1] != tt.status || row[2] != tt.completions || row[3] != tt.seconds {
				t.Errorf("STATUS/COMPLETIONS/DURATION = %v/%v/%v, want %v/%v/%v", row[1], row[2], row[3], tt.status, tt.completions, tt.seconds)
			}
		})
	}
}

func TestDeploymentCells(t *testing.T) {
	pinClock(t)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", CreationTimestamp: ago(3 * time.Hour)},
		Spec: appsv1.DeploymentSpec{Replicas: ptr(int32(3)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"},
				MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"fe"}}}},
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{
				{Name: "nginx", Image: "nginx:1.27"}, {Name: "sidecar", Image: "busybox"}}}}},
		Status: appsv1.DeploymentStatus{ReadyReplicas: 2, UpdatedReplicas: 3, AvailableReplicas: 1},
	}
	got := cells(t, "apps", "Deployment", d)
	want := []interface{}{"web", "2/3", int64(3), int64(1), "3h", "nginx,sidecar", "nginx:1.27,busybox", "app=web,tier in (fe)"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("cell %d = %#v, want %#v", i, got[i], want[i])
		}
	}
	bad := d.DeepCopy()
	bad.Spec.Selector.MatchExpressions[0].Operator = "Bogus"
	if sel := cells(t, "apps", "Deployment", bad)[7]; sel != "<invalid>" {
		t.Errorf("invalid selector cell = %v", sel)
	}
}

func TestOtherCells(t *testing.T) {
	pinClock(t)
	tests := []struct {
		name, group, kind, column string
		obj                       runtime.Object
		want                      interface{}
	}{
		{"default storage class", "storage.k8s.io", "StorageClass", "Name", &storagev1.StorageClass{
			ObjectMeta: metav1.ObjectMeta{Name: "local", Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"}}},
			"local (default)"},
		{"storage class defaults", "storage.k8s.io", "StorageClass", "VolumeBindingMode", &storagev1.StorageClass{}, "Immediate"},
		{"storage class reclaim default", "storage.k8s.io", "StorageClass", "ReclaimPolicy", &storagev1.StorageClass{}, "Delete"},
		{"endpoints", "", "Endpoints", "Endpoints", &corev1.Endpoints{Subsets: []corev1.EndpointSubset{{
			Addresses: []corev1.EndpointAddress{{IP: "10.0.0.1"}, {IP: "10.0.0.2"}, {IP: "fd00::3"}},
			Ports:     []corev1.EndpointPort{{Port: 80}, {Port: 443}}}}},
			"10.0.0.1:80,10.0.0.2:80,[fd00::3]:80 + 3 more..."},
		{"endpoints empty", "", "Endpoints", "Endpoints", &corev1.Endpoints{}, "<none>"},
		{"endpointslice", "discovery.k8s.io", "EndpointSlice", "Ports", &discoveryv1.EndpointSlice{
			Ports: []discoveryv1.EndpointPort{{Port: ptr(int32(80))}, {Name: ptr("dns")}, {}}}, "80,dns,*"},
		{"endpointslice no endpoints", "discovery.k8s.io", "EndpointSlice", "Endpoints", &discoveryv1.EndpointSlice{}, "<unset>"},
		{"configmap data", "", "ConfigMap", "Data", &corev1.ConfigMap{Data: map[string]string{"a": "1"}, BinaryData: map[string][]byte{"b": nil}}, int64(2)},
		{"secret type", "", "Secret", "Type", &corev1.Secret{Type: corev1.SecretTypeOpaque}, "Opaque"},
		{"cronjob suspend unset", "batch", "CronJob", "Suspend", &batchv1.CronJob{}, "<unset>"},
		{"cronjob timezone", "batch", "CronJob", "Timezone", &batchv1.CronJob{Spec: batchv1.CronJobSpec{TimeZone: ptr("Etc/UTC")}}, "Etc/UTC"},
		{"cronjob last schedule", "batch", "CronJob", "Last Schedule", &batchv1.CronJob{}, "<none>"},
		{"rolebinding role", "rbac.authorization.k8s.io", "RoleBinding", "Role", &rbacv1.RoleBinding{RoleRef: rbacv1.RoleRef{Kind: "ClusterRole", Name: "view"}}, "ClusterRole/view"},
		{"rolebinding service accounts", "rbac.authorization.k8s.io", "RoleBinding", "ServiceAccounts", &rbacv1.RoleBinding{Subjects: []rbacv1.Subject{
			{Kind: "ServiceAccount", Namespace: "ns", Name: "a"}, {Kind: "User", Name: "u"}, {Kind: "ServiceAccount", Namespace: "kube-system", Name: "b"}}},
			"ns/a, kube-system/b"},
		{"controller revision owner", "apps", "ControllerRevision", "Controller", &appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "db", Controller: ptr(true)}}}},
			"statefulset.apps/db"},
		{"pvc unbound", "", "PersistentVolumeClaim", "Capacity", &corev1.PersistentVolumeClaim{Spec: corev1.PersistentVolumeClaimSpec{
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}, ""},
		{"pv access modes", "", "PersistentVolume", "Access Modes", &corev1.PersistentVolume{Spec: corev1.PersistentVolumeSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany, corev1.ReadWriteOnce}}}, "RWO,RWX"},
		{"quota", "", "ResourceQuota", "Limit", &corev1.ResourceQuota{Status: corev1.ResourceQuotaStatus{
			Hard: corev1.ResourceList{"limits.cpu": resource.MustParse("2"), "pods": resource.MustParse("10")},
			Used: corev1.ResourceList{"limits.cpu": resource.MustParse("500m")}}}, "limits.cpu: 500m/2"},
		{"pdb", "policy", "PodDisruptionBudget", "Min Available", &policyPDB, "50%"},
		{"hpa v2", "autoscaling", "HorizontalPodAutoscaler", "Targets", &autoscalingv2.HorizontalPodAutoscaler{Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
				Name: corev1.ResourceMemory, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr(int32(60))}}}}},
			Status: autoscalingv2.HorizontalPodAutoscalerStatus{CurrentMetrics: []autoscalingv2.MetricStatus{{Type: autoscalingv2.ResourceMetricSourceType,
				Resource: &autoscalingv2.ResourceMetricStatus{Name: corev1.ResourceMemory, Current: autoscalingv2.MetricValueStatus{AverageUtilization: ptr(int32(42))}}}}}},
			"memory: 42%/60%"},
		{"hpa v1", "autoscaling", "HorizontalPodAutoscaler", "Targets", &autoscalingv1.HorizontalPodAutoscaler{Spec: autoscalingv1.HorizontalPodAutoscalerSpec{
			TargetCPUUtilizationPercentage: ptr(int32(80))}}, "cpu: <unknown>/80%"},
		{"hpa v1 reference", "autoscaling", "HorizontalPodAutoscaler", "Reference", &autoscalingv1.HorizontalPodAutoscaler{Spec: autoscalingv1.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv1.CrossVersionObjectReference{Kind: "Deployment", Name: "web"}}}, "Deployment/web"},
		{"hpa no metrics", "autoscaling", "HorizontalPodAutoscaler", "MinPods", &autoscalingv2.HorizontalPodAutoscaler{}, "<unset>"},
		{"events.k8s.io event object", "events.k8s.io", "Event", "Object", &eventsv1.Event{Regarding: corev1.ObjectReference{Kind: "Pod", Name: "web"}}, "pod/web"},
		{"event source", "", "Event", "Source", &corev1.Event{Source: corev1.EventSource{Component: "kubelet", Host: "n1"}}, "kubelet, n1"},
		{"event count default", "", "Event", "Count", &corev1.Event{}, int64(1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cell(t, tt.group, tt.kind, tt.obj, tt.column); got != tt.want {
				t.Errorf("%s = %#v, want %#v", tt.column, got, tt.want)
			}
		})
	}
}

var policyPDB = func() policyv1.PodDisruptionBudget {
	v := intstr.FromString("50%")
	return policyv1.PodDisruptionBudget{Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: &v}}
}()
