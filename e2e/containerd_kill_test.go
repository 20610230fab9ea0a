package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/multinode"
	"github.com/skiffhq/skiff/internal/nodetest"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// TestAgentSurvivesContainerdKill kills containerd with SIGKILL under a
// real node agent (one multinode node on a containerd of its own, so the
// machine's is untouched) and starts it again, as a crash and a restart
// by systemd would. The agent must live through it; the pod that ran
// before keeps its container (same ID, no restart: runc's shim outlives
// containerd); a pod created during the outage runs once containerd is
// back, as does one created after; and deleting them all leaves no
// container, address or network namespace.
func TestAgentSurvivesContainerdKill(t *testing.T) {
	multinode.Require(t)
	c := multinode.Start(t, multinode.Options{Nodes: 1, Instance: 13, Bin: skiffBin(t), Images: []nodetest.Image{nodetest.Busybox},
		PrivateContainerd: true})
	node := c.Nodes[0]
	state := filepath.Join(node.DataDir, "agent")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pods := c.Client.CoreV1().Pods("default")

	sl := sleepers{t, ctx, c.Client}
	create, running := sl.create, sl.running
	agentAlive := func(when string) {
		t.Helper()
		select {
		case <-node.Done():
			t.Fatalf("the agent exited %s", when)
		default:
		}
	}

	before := create("before")
	before = running("before")
	firstID := before.Status.ContainerStatuses[0].ContainerID

	if err := c.KillContainerd(); err != nil {
		t.Fatal(err)
	}
	during := create("during")
	// The outage lasts long enough for the agent to try the new pod and
	// to resync the old one against a containerd that is not there.
	time.Sleep(5 * time.Second)
	agentAlive("while containerd was down")
	if err := c.RestartContainerd(); err != nil {
		t.Fatal(err)
	}

	running("during")
	after := create("after")
	running("after")
	before = running("before")
	if st := before.Status.ContainerStatuses[0]; st.ContainerID != firstID || st.RestartCount != 0 {
		t.Errorf("the pod from before the kill: container %s with %d restarts, want %s with none", st.ContainerID, st.RestartCount, firstID)
	}
	agentAlive("after containerd came back")
	if n, err := c.Containers(ctx); err != nil || n != 3 {
		t.Errorf("containerd holds %d containers for the three pods (%v), want 3", n, err)
	}

	all := []*corev1.Pod{before, during, after}
	var nss []string
	for _, p := range all {
		if ns := multinode.SandboxRecord(state, string(p.UID))["netns"]; ns != "" {
			nss = append(nss, ns)
		}
		if err := pods.Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
			t.Fatal(err)
		}
	}
	if len(nss) != 3 {
		t.Fatalf("found %d sandbox records with a namespace for the three pods, want 3", len(nss))
	}
	eventually(t, 60*time.Second, func() string {
		for _, p := range all {
			if _, err := pods.Get(ctx, p.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return p.Name + " not deleted yet"
			}
		}
		if n, err := c.Containers(ctx); err != nil || n != 0 {
			return fmt.Sprintf("%d containers remain (%v)", n, err)
		}
		for _, ns := range nss {
			if _, err := os.Stat(ns); !os.IsNotExist(err) {
				return "network namespace " + ns + " remains"
			}
		}
		if held := multinode.HeldAddresses(state, ""); held != 0 {
			return fmt.Sprintf("%d addresses still held", held)
		}
		return ""
	})
	agentAlive("at the end")
}
