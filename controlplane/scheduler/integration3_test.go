package scheduler_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/skiffhq/skiff/nodeagent/hollow"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestSpreadHostPortsAndCordon runs PodTopologySpread, NodePorts and
// NodeUnschedulable against the real API server and hollow nodes. Nodes
// are zoned as in zoned: zone-0 holds nodes 0 and 2 (2 is tainted),
// zone-1 nodes 1 and 3.
func TestSpreadHostPortsAndCordon(t *testing.T) {
	e := start(t, 4, hollow.Options{Customize: zoned})
	onNode := func(n string) func(*corev1.Pod) {
		return func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{corev1.LabelHostname: n} }
	}
	spread := func(p *corev1.Pod) {
		p.Labels = map[string]string{"app": "spread"}
		p.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{
			MaxSkew: 1, TopologyKey: corev1.LabelTopologyZone, WhenUnsatisfiable: corev1.DoNotSchedule,
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "spread"}},
		}}
	}
	expectMessage := func(name string, parts ...string) {
		t.Helper()
		msg := e.waitUnschedulable(name)
		for _, p := range parts {
			if !strings.Contains(msg, p) {
				t.Fatalf("pod %s: message %q lacks %q", name, msg, p)
			}
		}
	}

	setCordon := func(on bool, nodes ...string) {
		t.Helper()
		for _, name := range nodes {
			n, err := e.client.CoreV1().Nodes().Get(e.ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			n.Spec.Unschedulable = on
			if _, err := e.client.CoreV1().Nodes().Update(e.ctx, n, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		if !on {
			return // the scheduler re-queues waiting pods when it sees it
		}
		// The scheduler sees a cordon through its node informer, a moment
		// after the update: a pod created at once could still be placed on
		// the node. A probe pod that only the last node could take turns
		// unschedulable once the scheduler has seen that node's update, and
		// so the ones before it (one informer, in order). The probe itself
		// can win that race too; a probe that was bound is deleted and
		// another one sent, until one is refused.
		last := nodes[len(nodes)-1]
		zero := int64(0)
		for i := 0; ; i++ {
			probe := fmt.Sprintf("cordon-probe-%s-%d", last, i)
			e.create(podSpec(probe, onNode(last)))
			p := e.waitPod(probe, "bound or PodScheduled=False", func(p *corev1.Pod) bool {
				_, refused := unschedulable(p)
				return refused || p.Spec.NodeName != ""
			})
			if err := e.client.CoreV1().Pods("default").Delete(e.ctx, probe, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
				t.Fatal(err)
			}
			msg, refused := unschedulable(p)
			if refused {
				if !strings.Contains(msg, "node(s) were unschedulable") {
					t.Fatalf("probe %s: message %q", probe, msg)
				}
				return
			}
			if i == 20 {
				t.Fatalf("probe pods still bound to cordoned %s after %d tries", last, i+1)
			}
		}
	}

	t.Run("topology spread", func(t *testing.T) {
		// Two pods of the app placed in zone-0 without a constraint.
		for _, n := range []string{"s0", "s1"} {
			e.create(podSpec(n, onNode("hollow-node-0"), func(p *corev1.Pod) { p.Labels = map[string]string{"app": "spread"} }))
			e.waitRunning(n)
		}
		// With zone-1 cordoned (cordoned nodes still count as domains, as
		// upstream's nodeTaintsPolicy Ignore), zone-0 would make the skew 3:
		// no node is left.
		setCordon(true, "hollow-node-1", "hollow-node-3")
		tolerateDB := func(p *corev1.Pod) {
			p.Spec.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "db", Effect: corev1.TaintEffectNoSchedule}}
		}
		e.create(podSpec("s2", spread, tolerateDB))
		expectMessage("s2", "0/4 nodes are available", "2 node(s) didn't match pod topology spread constraints")
		setCordon(false, "hollow-node-1", "hollow-node-3")
		// Uncordoned, zone-1 takes it, and the next one too (2-1 → zone-0
		// would be skew 2).
		for _, n := range []string{"s2", "s3"} {
			if n == "s3" {
				e.create(podSpec(n, spread, tolerateDB))
			}
			p := e.waitRunning(n)
			if p.Spec.NodeName != "hollow-node-1" && p.Spec.NodeName != "hollow-node-3" {
				t.Fatalf("spread pod %s on %s, want a zone-1 node", n, p.Spec.NodeName)
			}
		}
	})

	t.Run("host ports", func(t *testing.T) {
		hostPort := func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80, HostPort: 8080, Protocol: corev1.ProtocolTCP}}
		}
		e.create(podSpec("hp1", hostPort, onNode("hollow-node-1")))
		e.waitRunning("hp1")
		e.create(podSpec("hp2", hostPort, onNode("hollow-node-1")))
		expectMessage("hp2", "1 node(s) didn't have free ports for the requested pod ports")
		// Another protocol on the same port is free.
		e.create(podSpec("hp-udp", onNode("hollow-node-1"), func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80, HostPort: 8080, Protocol: corev1.ProtocolUDP}}
		}))
		e.waitRunning("hp-udp")
	})

	t.Run("cordoned node", func(t *testing.T) {
		setCordon(true, "hollow-node-3")
		e.create(podSpec("cordoned", onNode("hollow-node-3")))
		expectMessage("cordoned", "1 node(s) were unschedulable")
		// Uncordoning lets the waiting pod in (a node update re-queues it).
		setCordon(false, "hollow-node-3")
		if got := e.waitRunning("cordoned").Spec.NodeName; got != "hollow-node-3" {
			t.Fatalf("uncordoned pod on %s", got)
		}
	})
}
