// Package nodetest prepares tests that run a real node agent on this
// machine's containerd: it skips them where that cannot work and gives each
// a fresh state folder with the test images and the agent options they share.
//
// Each test package picks its own bridge and /24 inside the blackholed
// 10.42.0.0/16, so its pods never meet another package's.
package nodetest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/skiffhq/skiff/internal/harness"
	"github.com/skiffhq/skiff/internal/testimages"
	"github.com/skiffhq/skiff/nodeagent/agent"
	"github.com/skiffhq/skiff/nodeagent/network"
	"github.com/skiffhq/skiff/nodeagent/runtime"
)

// Image is a test image the agent imports when it starts.
type Image int

const (
	// Busybox is busybox-static as image "busybox".
	Busybox Image = iota
	// HTTPServer is the small Go HTTP test server (internal/testimages/httpserver).
	HTTPServer
)

// Require skips t unless it runs as root with containerd answering on its
// default socket and Debian's busybox-static installed.
func Require(t harness.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the node agent runs containers through containerd")
	}
	if _, err := os.Stat(runtime.DefaultAddress); err != nil {
		t.Skip("containerd is not running (run deploy/install-deps.sh)")
	}
	if _, err := os.Stat(testimages.BusyboxPath); err != nil {
		t.Skip(testimages.ErrNoBusybox)
	}
}

// StateDir returns a new agent state folder whose images/ folder (the
// airgap folder, imported when the agent starts) holds images.
func StateDir(t harness.T, images ...Image) string {
	t.Helper()
	state := t.TempDir()
	dir := filepath.Join(state, "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, img := range images {
		var err error
		switch img {
		case Busybox:
			err = testimages.WriteBusybox(filepath.Join(dir, "busybox.tar"))
		case HTTPServer:
			err = testimages.WriteHTTPServer(filepath.Join(dir, "httpserver.tar"), t.TempDir())
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return state
}

// AgentOptions is the configuration the agent tests share: a loopback node
// IP, the package's bridge and pod range, logs and network namespaces under
// state, and fast lease renewals and resyncs.
func AgentOptions(nodeName, state, podCIDR, bridge string) agent.Options {
	return agent.Options{
		NodeName: nodeName, NodeIP: "127.0.0.1", StateDir: state, PodLogDir: filepath.Join(state, "logs"),
		PodCIDR: podCIDR, Bridge: bridge, NetNSDir: filepath.Join(state, "netns"),
		LeaseInterval: time.Second, ResyncInterval: 2 * time.Second,
	}
}

// Sweep ends a test's node after its pods were deleted: it gives agent a
// (nil when it never started) 30 s to tear them down, stops it, then
// removes what is still there, also when the test failed half way: the
// containers of opts.PodLogDir, the pods' network namespaces and
// addresses, and the bridge (opts.Bridge) with its nftables guard.
func Sweep(t harness.T, a *agent.Agent, opts agent.Options) {
	t.Helper()
	ctx := context.Background()
	ours := func(rt *runtime.Runtime) []runtime.Container {
		all, _ := rt.List(ctx)
		var out []runtime.Container
		for _, c := range all {
			if strings.HasPrefix(c.Labels[runtime.LabelLogPath], opts.PodLogDir) {
				out = append(out, c)
			}
		}
		return out
	}
	if a != nil {
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && a.Runtime() != nil && len(ours(a.Runtime())) > 0; {
			time.Sleep(200 * time.Millisecond)
		}
		a.Stop()
	}
	if rt, err := runtime.New(ctx, runtime.Options{}); err == nil {
		for _, c := range ours(rt) {
			_ = rt.Remove(ctx, c.ID)
		}
		rt.Close()
	}
	nm, err := network.New(network.Options{StateDir: filepath.Join(opts.StateDir, "network"), PodCIDR: opts.PodCIDR, Bridge: opts.Bridge, NetNSDir: opts.NetNSDir})
	if err != nil {
		t.Errorf("network cleanup: %v", err)
		return
	}
	ents, _ := os.ReadDir(filepath.Join(opts.StateDir, "pods"))
	for _, ent := range ents {
		_ = nm.Teardown(ctx, ent.Name(), "", "", "", nil)
	}
	nss, _ := os.ReadDir(opts.NetNSDir)
	for _, n := range nss {
		_ = exec.Command("umount", filepath.Join(opts.NetNSDir, n.Name())).Run()
	}
	if err := nm.Destroy(); err != nil {
		t.Errorf("destroy network: %v", err)
	}
}
