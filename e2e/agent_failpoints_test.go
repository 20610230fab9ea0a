package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/failpoint"
	"github.com/skiffhq/skiff/internal/multinode"
	"github.com/skiffhq/skiff/internal/nodetest"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// TestAgentFailpoints kills a real node agent (bin/skiff-failpoints agent
// on containerd, one multinode node) inside a pod's sync, at three
// failpoints in turn: after the pod's network namespace is created and
// before it is attached; after the network is attached (veth, address)
// and before the sandbox is recorded as done; and after a container is
// created and before it is started. Each time the agent starts again
// without that failpoint. The pod must then run with its one container,
// the first attempt's network namespace must be gone with only one address
// held for the pod, and once the pods are deleted nothing of them may
// remain: no address, no namespace, no container.
func TestAgentFailpoints(t *testing.T) {
	multinode.Require(t)
	bin := failpointsBin(t)
	arm := func(point, pod string) []string {
		return []string{failpoint.Env + "=" + point + "=kill@default/" + pod}
	}
	c := multinode.Start(t, multinode.Options{Nodes: 1, Instance: 8, Bin: bin, Images: []nodetest.Image{nodetest.Busybox},
		AgentEnv: arm("agent/after-netns-create", "fp-ns")})
	node := c.Nodes[0]
	state := filepath.Join(node.DataDir, "agent")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	sl := sleepers{t, ctx, c.Client}
	create, running := sl.create, sl.running
	// killedThenRestarted waits for the agent to die at the failpoint,
	// returns the pod's sandbox record as it was left, and restarts the
	// agent with env.
	killedThenRestarted := func(point string, uid string, env []string) map[string]string {
		t.Helper()
		select {
		case <-node.Done():
		case <-time.After(90 * time.Second):
			t.Fatalf("the agent did not die at %s", point)
		}
		if log, _ := os.ReadFile(node.Log); !strings.Contains(string(log), "failpoint: "+point+" kill") {
			t.Fatalf("the agent ended, but not at %s", point)
		}
		sb := multinode.SandboxRecord(state, uid)
		if err := c.RestartAgent(0, env); err != nil {
			t.Fatal(err)
		}
		return sb
	}
	addresses := func(uid string) int { return multinode.HeldAddresses(state, uid) }

	// retried checks a pod whose first sandbox attempt the agent died in:
	// it runs on a new namespace, the old one is gone, and one address
	// is held for it. It returns the namespace the pod runs in.
	retried := func(p *corev1.Pod, left map[string]string) string {
		t.Helper()
		if left["netns"] == "" || left["ip"] != "" {
			t.Fatalf("%s: sandbox record left at the failpoint: %v, want a namespace and no IP", p.Name, left)
		}
		running(p.Name)
		final := multinode.SandboxRecord(state, string(p.UID))["netns"]
		if final == "" {
			t.Fatalf("%s has no sandbox record with a namespace", p.Name)
		}
		if final == left["netns"] {
			t.Fatalf("%s runs in the namespace of the killed attempt, %s", p.Name, final)
		}
		if _, err := os.Stat(left["netns"]); !os.IsNotExist(err) {
			t.Errorf("%s: the first attempt's network namespace %s is still there (%v)", p.Name, left["netns"], err)
		}
		if n := addresses(string(p.UID)); n != 1 {
			t.Errorf("%d addresses held for %s, want 1", n, p.Name)
		}
		return final
	}

	// 1. Dead after creating the namespace, before attaching it: the
	// namespace was recorded before it was made, so the restarted agent
	// removes it and starts over.
	nsPod := create("fp-ns")
	nsFinal := retried(nsPod, killedThenRestarted("agent/after-netns-create", string(nsPod.UID), arm("agent/after-network-attach", "fp-net")))

	// 2. Dead after the network attach: the record has the namespace and
	// no IP; the restarted agent releases it (CNI DEL) and attaches anew.
	net := create("fp-net")
	netFinal := retried(net, killedThenRestarted("agent/after-network-attach", string(net.UID), arm("agent/after-container-create", "fp-ctr")))

	// 3. Dead between a container's create and start: the restarted agent
	// finds it by its deterministic ID and starts it, no second one.
	ctr := create("fp-ctr")
	killedThenRestarted("agent/after-container-create", string(ctr.UID), nil)
	ctr = running("fp-ctr")
	if rc := ctr.Status.ContainerStatuses[0].RestartCount; rc != 0 {
		t.Errorf("fp-ctr's container restarted %d times", rc)
	}
	if n, err := c.Containers(ctx); err != nil || n != 3 {
		t.Errorf("containerd holds %d containers for the three pods (%v), want 3", n, err)
	}

	// 4. Deleted: nothing of any of them remains.
	pods := []*corev1.Pod{nsPod, net, ctr}
	for _, p := range pods {
		if err := c.Client.CoreV1().Pods("default").Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 60*time.Second, func() string {
		for _, p := range pods {
			if _, err := c.Client.CoreV1().Pods("default").Get(ctx, p.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return p.Name + " not deleted yet"
			}
			if n := addresses(string(p.UID)); n != 0 {
				return fmt.Sprintf("%d addresses still held for %s", n, p.Name)
			}
			if _, err := os.Stat(filepath.Join(state, "pods", string(p.UID), "sandbox.json")); !os.IsNotExist(err) {
				return p.Name + "'s sandbox record remains"
			}
		}
		if n, err := c.Containers(ctx); err != nil || n != 0 {
			return fmt.Sprintf("%d containers remain (%v)", n, err)
		}
		for _, ns := range []string{nsFinal, netFinal} {
			if _, err := os.Stat(ns); !os.IsNotExist(err) {
				return "network namespace " + ns + " remains"
			}
		}
		return ""
	})
}
