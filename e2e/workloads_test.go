package e2e

import (
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startHollowNodes runs `skiff agent --runtime fake` as a separate process
// joined with the admin kubeconfig: n hollow nodes that report bound pods
// Running and Ready, so workloads roll out without containers. It returns
// the agent's log.
func startHollowNodes(t *testing.T, c *cluster, n string) *syncBuffer {
	t.Helper()
	log := &syncBuffer{}
	cmd := exec.Command(skiffBin(t), "agent", "--runtime", "fake", "--hollow-nodes", n,
		"--kubeconfig", c.kubeconfig, "--data-dir", t.TempDir(), "--node-name-prefix", "hollow-",
		"--lease-interval", "2s")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("hollow agent log:\n%s", tail(log.String(), 3000))
		}
	})
	eventually(t, 60*time.Second, func() string {
		out, _ := c.run("get", "nodes", "--no-headers")
		if strings.Count(out, " Ready ") < 2 {
			return "nodes not Ready yet:\n" + out
		}
		return ""
	})
	return log
}

// TestKubectlWorkloads drives the workload controllers the way a user
// does: kubectl create, rollout status, set image, rollout history and
// undo, scale, wait for a Job, StatefulSet and DaemonSet rollouts, and
// cascading deletion.
func TestKubectlWorkloads(t *testing.T) {
	c := startCluster(t)
	startHollowNodes(t, c, "2")

	c.k(t, "create", "deployment", "web", "--image=busybox:1", "--replicas=3")
	c.k(t, "rollout", "status", "deployment/web", "--timeout=60s")
	c.k(t, "set", "image", "deployment/web", "busybox=busybox:2")
	c.k(t, "rollout", "status", "deployment/web", "--timeout=60s")
	if out := c.k(t, "rollout", "history", "deployment/web"); !strings.Contains(out, "1 ") || !strings.Contains(out, "2 ") {
		t.Fatalf("rollout history lacks revisions 1 and 2:\n%s", out)
	}
	c.k(t, "rollout", "undo", "deployment/web")
	c.k(t, "rollout", "status", "deployment/web", "--timeout=60s")
	if img := c.k(t, "get", "deployment/web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"); img != "busybox:1" {
		t.Fatalf("image after undo = %q, want busybox:1", img)
	}
	// Only the live ReplicaSet has pods after the rollouts.
	eventually(t, 60*time.Second, func() string {
		out, _ := c.run("get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.spec.containers[0].image}{\"\\n\"}{end}")
		if strings.TrimSpace(out) != "busybox:1\nbusybox:1\nbusybox:1" {
			return "pods: " + out
		}
		return ""
	})

	c.k(t, "scale", "deployment/web", "--replicas=5")
	eventually(t, 60*time.Second, func() string {
		out, _ := c.run("get", "deployment/web", "-o", "jsonpath={.status.readyReplicas}/{.status.updatedReplicas}")
		if out != "5/5" {
			return "ready/updated = " + out
		}
		return ""
	})

	c.kIn(t, `apiVersion: batch/v1
kind: Job
metadata: {name: once}
spec:
  completions: 2
  template:
    metadata:
      annotations: {hollow.skiff.io/exit-code: "0", hollow.skiff.io/run-for: 1s}
    spec:
      restartPolicy: Never
      containers: [{name: c, image: busybox}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: c, image: busybox}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: c, image: busybox}]
`, "apply", "-f", "-")
	c.k(t, "wait", "--for=condition=complete", "job/once", "--timeout=60s")
	if out := c.k(t, "get", "job/once", "-o", "jsonpath={.status.succeeded}"); out != "2" {
		t.Fatalf("job succeeded = %q, want 2", out)
	}
	c.k(t, "rollout", "status", "statefulset/db", "--timeout=60s")
	if out := c.k(t, "get", "pods", "-l", "app=db", "-o", "name"); out != "pod/db-0\npod/db-1\n" {
		t.Fatalf("statefulset pods:\n%s", out)
	}
	c.k(t, "rollout", "status", "daemonset/agent", "--timeout=60s")
	if out := c.k(t, "get", "daemonset/agent", "-o", "jsonpath={.status.numberReady}"); out != "2" {
		t.Fatalf("daemonset ready = %q, want one per node (2)", out)
	}

	// Deleting the Deployment cascades to its ReplicaSets and pods.
	c.k(t, "delete", "deployment/web")
	eventually(t, 60*time.Second, func() string {
		out, _ := c.run("get", "replicasets,pods", "-l", "app=web", "--no-headers")
		if strings.TrimSpace(out) != "" && !strings.Contains(out, "No resources found") {
			return "still there:\n" + out
		}
		return ""
	})
}
