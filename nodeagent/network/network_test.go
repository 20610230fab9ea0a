package network

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/netns"
	cnins "github.com/containernetworking/plugins/pkg/ns"
)

// testCIDR is a /24 of the cluster range (blackholed as a whole by
// install-deps.sh) used only by this package's tests, on its own bridge.
const testCIDR = "10.42.250.0/24"

func newManager(t *testing.T) *Manager {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces and bridges")
	}
	if _, err := os.Stat(filepath.Join(DefaultPluginDir, "bridge")); err != nil {
		t.Skip("CNI plugins are not installed (run deploy/install-deps.sh)")
	}
	state := t.TempDir()
	m, err := New(Options{StateDir: state, PodCIDR: testCIDR, Bridge: "skiffnt0", NetNSDir: filepath.Join(state, "netns")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Destroy(); err != nil {
			t.Errorf("destroy: %v", err)
		}
	})
	return m
}

func TestPodNetworkLifecycle(t *testing.T) {
	m := newManager(t)
	ctx := context.Background()
	uid := "0f1e2d3c-pod-network-test"
	att, err := m.Setup(ctx, uid, "default", "net-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	torn := false
	t.Cleanup(func() {
		if !torn {
			_ = m.Teardown(ctx, uid, att.NetNS, "default", "net-test", nil)
		}
	})
	_, cidr, _ := net.ParseCIDR(testCIDR)
	if !cidr.Contains(att.IP) || att.IP.Equal(m.Gateway()) {
		t.Fatalf("pod IP %s not a pod address of %s", att.IP, testCIDR)
	}
	if _, err := os.Stat(att.NetNS); err != nil {
		t.Fatalf("netns: %v", err)
	}
	ipamFile := filepath.Join(m.opts.ipamDir(), networkName, att.IP.String())
	if _, err := os.Stat(ipamFile); err != nil {
		t.Fatalf("IPAM allocation file: %v", err)
	}
	veths := bridgePorts(t, m.Bridge())
	if len(veths) != 1 {
		t.Fatalf("bridge ports = %v, want one veth", veths)
	}

	// Listen inside the pod's namespace; dial the pod IP from the host.
	var ln net.Listener
	err = netns.LoadNetNS(att.NetNS).Do(func(cnins.NetNS) error {
		var lerr error
		ln, lerr = net.Listen("tcp4", net.JoinHostPort(att.IP.String(), "0"))
		return lerr
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, _ = c.Write([]byte("pong"))
			c.Close()
		}
	}()
	conn, err := net.DialTimeout("tcp4", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatalf("host → pod %s: %v", ln.Addr(), err)
	}
	buf := make([]byte, 4)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _ := conn.Read(buf)
	conn.Close()
	if string(buf[:n]) != "pong" {
		t.Fatalf("read %q from the pod", buf[:n])
	}

	if err := m.Teardown(ctx, uid, att.NetNS, "default", "net-test", nil); err != nil {
		t.Fatal(err)
	}
	torn = true
	if _, err := os.Stat(att.NetNS); !os.IsNotExist(err) {
		t.Errorf("netns %s left behind (%v)", att.NetNS, err)
	}
	if _, err := os.Stat(ipamFile); !os.IsNotExist(err) {
		t.Errorf("IPAM file %s left behind", ipamFile)
	}
	if ports := bridgePorts(t, m.Bridge()); len(ports) != 0 {
		t.Errorf("veths left on the bridge: %v", ports)
	}
	if left, _ := os.ReadDir(filepath.Join(m.opts.cacheDir(), "results")); len(left) != 0 {
		t.Errorf("libcni cache entries left: %d", len(left))
	}
	// A second teardown (agent restart after a partial teardown) is fine.
	if err := m.Teardown(ctx, uid, att.NetNS, "default", "net-test", nil); err != nil {
		t.Errorf("repeated teardown: %v", err)
	}
}

func bridgePorts(t *testing.T, bridge string) []string {
	t.Helper()
	out, err := exec.Command("ip", "-o", "link", "show", "master", bridge).CombinedOutput()
	if err != nil {
		t.Fatalf("ip link: %v: %s", err, out)
	}
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			names = append(names, strings.TrimSuffix(f[1], ":"))
		}
	}
	return names
}
