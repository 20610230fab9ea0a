package multinode

import (
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCleanRemovesLeftovers plays a crashed run of instance 251: a node
// namespace with a process still inside and veth on the bridge, and the
// bridge. Clean must stop the process and remove namespace and bridge.
func TestCleanRemovesLeftovers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces and bridges")
	}
	for _, b := range []string{"ip", "nsenter"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s is not installed", b)
		}
	}
	const k = 251
	ns, br := nodeName(k, 1), bridgeName(k)
	t.Cleanup(func() { _ = Clean(k) })
	for _, args := range [][]string{
		{"link", "add", br, "type", "bridge"},
		{"netns", "add", ns},
		{"link", "add", vethName(k, 1), "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"link", "set", vethName(k, 1), "master", br, "up"},
	} {
		if err := run("ip", args...); err != nil {
			t.Fatal(err)
		}
	}
	sleeper := exec.Command("nsenter", "--net="+netnsPath(ns), "--", "sleep", "300")
	sleeper.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- sleeper.Wait() }()
	// nsenter execs sleep once it has joined the namespace.
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, _ := exec.Command("ip", "netns", "pids", ns).Output()
		if strings.TrimSpace(string(out)) != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the process never showed up in the namespace")
		}
		time.Sleep(20 * time.Millisecond)
	}

	if err := Clean(k); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		_ = sleeper.Process.Kill()
		t.Error("the process in the node namespace is still running")
	}
	if _, err := os.Stat(netnsPath(ns)); !os.IsNotExist(err) {
		t.Errorf("namespace %s left (%v)", ns, err)
	}
	if _, err := net.InterfaceByName(br); err == nil {
		t.Errorf("bridge %s left", br)
	}
	if _, err := net.InterfaceByName(vethName(k, 1)); err == nil {
		t.Errorf("veth %s left", vethName(k, 1))
	}
	// Nothing left is not an error.
	if err := Clean(k); err != nil {
		t.Errorf("second Clean: %v", err)
	}
}

// TestCleanRemovesPrivateContainerd plays a crashed run of instance 252
// that had a private containerd: still running, with its folders. Clean
// must end it and remove its socket, state and root.
func TestCleanRemovesPrivateContainerd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run containerd")
	}
	if _, err := exec.LookPath("containerd"); err != nil {
		t.Skip("containerd is not installed")
	}
	const k = 252
	t.Cleanup(func() { _ = Clean(k) })
	p, err := startContainerd(k, t.TempDir()+"/containerd.log")
	if err != nil {
		t.Fatal(err)
	}
	if err := ping(ContainerdAddress(k)); err != nil {
		t.Fatalf("private containerd does not answer: %v", err)
	}
	if err := Clean(k); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("Clean left the private containerd running")
	}
	for _, d := range []string{ctrdStateDir(k), ctrdRootDir(k)} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s remains after Clean (%v)", d, err)
		}
	}
}
