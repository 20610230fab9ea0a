package network

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/netns"
	cnins "github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"
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

// TestPlannedNetNS: a planned namespace does not exist until created;
// each plan is a new name; the created one is a network namespace of its
// own, not the host's; a path is never created twice; and a plan that was
// recorded but never created (an agent killed in between) tears down
// cleanly.
func TestPlannedNetNS(t *testing.T) {
	m := newManager(t)
	ctx := context.Background()
	uid := "5e6f7a8b-planned-netns"
	a, err := m.PlanNetNS(uid)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := m.PlanNetNS(uid)
	if a == b || !strings.Contains(a, uid) || filepath.Dir(a) != m.opts.NetNSDir {
		t.Fatalf("plans %q and %q: want distinct names with the pod UID under %s", a, b, m.opts.NetNSDir)
	}
	if _, err := os.Stat(a); !os.IsNotExist(err) {
		t.Fatalf("planned namespace exists before creation: %v", err)
	}
	if err := m.Teardown(ctx, uid, a, "default", "never-made", nil); err != nil {
		t.Fatalf("teardown of a namespace never made: %v", err)
	}
	var host, pod unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &host); err != nil {
		t.Fatal(err)
	}
	if err := m.CreateNetNS(a); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Teardown(ctx, uid, a, "default", "planned", nil) })
	if err := unix.Stat(a, &pod); err != nil {
		t.Fatal(err)
	}
	if pod.Ino == host.Ino || pod.Dev != host.Dev {
		t.Fatalf("namespace at %s is inode %d/dev %d, host's is %d/%d: not a new network namespace", a, pod.Ino, pod.Dev, host.Ino, host.Dev)
	}
	if err := m.CreateNetNS(a); err == nil {
		t.Fatal("a second CreateNetNS at the same path succeeded")
	}
	// This process is still in the host's namespace: the calling thread
	// and the main thread (whose namespace /proc/self/net describes; the
	// runtime never ends the main thread, so a namespace thread that was
	// the main thread must have gone back).
	var after unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &after); err != nil || after.Ino != host.Ino {
		t.Fatalf("calling thread's namespace changed (%v)", err)
	}
	for i := range 32 {
		p := filepath.Join(m.opts.NetNSDir, fmt.Sprintf("burst-%d", i))
		if err := m.CreateNetNS(p); err != nil {
			t.Fatal(err)
		}
		_ = unix.Unmount(p, unix.MNT_DETACH)
		_ = os.Remove(p)
		if err := unix.Stat("/proc/self/ns/net", &after); err != nil || after.Ino != host.Ino {
			t.Fatalf("after %d namespaces the main thread is in another namespace (%v)", i+1, err)
		}
	}
	if err := m.Teardown(ctx, uid, a, "default", "planned", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(a); !os.IsNotExist(err) {
		t.Fatalf("namespace remains after teardown: %v", err)
	}
}

func TestPodNetworkLifecycle(t *testing.T) {
	m := newManager(t)
	ctx := context.Background()
	uid := "0f1e2d3c-pod-network-test"
	nsPath, err := m.PlanNetNS(uid)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.CreateNetNS(nsPath); err != nil {
		t.Fatal(err)
	}
	ip, err := m.Attach(ctx, uid, nsPath, "default", "net-test", nil)
	if err != nil {
		_ = m.Teardown(ctx, uid, nsPath, "default", "net-test", nil)
		t.Fatal(err)
	}
	att := struct {
		NetNS string
		IP    net.IP
	}{nsPath, ip}
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

// TestHostGWRoutes runs a Manager in a network namespace of its own and
// checks the blackhole routes, the host-gw routes SyncRoutes adds,
// replaces and removes, and the masquerade rule of the guard.
func TestHostGWRoutes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if _, err := os.Stat(filepath.Join(DefaultPluginDir, "bridge")); err != nil {
		t.Skip("CNI plugins are not installed (run deploy/install-deps.sh)")
	}
	state := t.TempDir()
	n, err := netns.NewNetNS(filepath.Join(state, "ns"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Remove() })
	in := func(f func() error) {
		t.Helper()
		if err := n.Do(func(cnins.NetNS) error { return f() }); err != nil {
			t.Fatal(err)
		}
	}
	ip := func(args ...string) string {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			return "error: " + err.Error() + ": " + string(out)
		}
		return string(out)
	}
	var m *Manager
	in(func() error {
		for _, a := range [][]string{{"link", "add", "node0", "type", "bridge"}, {"addr", "add", "10.250.9.2/24", "dev", "node0"}, {"link", "set", "node0", "up"}} {
			if out, err := exec.Command("ip", a...).CombinedOutput(); err != nil {
				return fmt.Errorf("ip %v: %w: %s", a, err, out)
			}
		}
		var err error
		m, err = New(Options{StateDir: state, PodCIDR: "10.42.64.0/24", ClusterCIDR: "10.42.64.0/18", ServiceCIDR: "10.43.0.0/16",
			Bridge: "skiffrt0", NetNSDir: filepath.Join(state, "netns")})
		return err
	})
	in(func() error {
		out := ip("-4", "route", "show", "type", "blackhole")
		for _, c := range []string{"10.42.64.0/18", "10.43.0.0/16"} {
			if !strings.Contains(out, c) {
				t.Errorf("no blackhole route for %s: %q", c, out)
			}
		}
		table, err := exec.Command("nft", "list", "table", "inet", m.nftTable()).CombinedOutput()
		if err != nil || !strings.Contains(string(table), "ip saddr 10.42.64.0/24 ip daddr != 10.42.64.0/18 oifname != \"skiffrt0\" masquerade") {
			t.Errorf("guard has no masquerade rule (%v):\n%s", err, table)
		}
		return nil
	})
	routes := func() map[string]string {
		var r map[string]string
		in(func() error { var err error; r, err = m.Routes(); return err })
		return r
	}
	in(func() error {
		return m.SyncRoutes(map[string]net.IP{
			"10.42.65.0/24": net.ParseIP("10.250.9.3"),
			"10.42.66.0/24": net.ParseIP("10.250.9.4"),
			"10.42.64.0/24": net.ParseIP("10.250.9.2"), // its own: skipped
		})
	})
	if r := routes(); len(r) != 2 || r["10.42.65.0/24"] != "10.250.9.3" || r["10.42.66.0/24"] != "10.250.9.4" {
		t.Fatalf("routes after the first sync = %v", r)
	}
	var syncErr error
	in(func() error {
		syncErr = m.SyncRoutes(map[string]net.IP{
			"10.42.65.0/24": net.ParseIP("10.250.9.5"), // moved
			"10.42.67.0/24": net.ParseIP("192.0.2.77"), // no directly reachable gateway
			"10.99.0.0/24":  net.ParseIP("10.250.9.6"), // outside the cluster CIDR
		})
		return nil
	})
	if syncErr == nil || !strings.Contains(syncErr.Error(), "10.42.67.0/24") || !strings.Contains(syncErr.Error(), "not inside the cluster CIDR") {
		t.Errorf("second sync error = %v, want the unreachable gateway and the foreign CIDR reported", syncErr)
	}
	if r := routes(); len(r) != 1 || r["10.42.65.0/24"] != "10.250.9.5" {
		t.Fatalf("routes after the second sync = %v, want only 10.42.65.0/24 via 10.250.9.5", r)
	}
	in(func() error { return m.SyncRoutes(nil) })
	if r := routes(); len(r) != 0 {
		t.Fatalf("routes after an empty sync = %v", r)
	}
}

// TestGuardLetsPodsReachServiceEndpointsOutside runs a Manager in a node
// namespace of its own, with a pod and, over a veth, a host outside the
// cluster CIDR that is not an egress destination (an API server, or the
// DNS add-on of a server without a node agent). The pod does not reach
// the host by its address, and does through an address the service proxy
// DNATs to it (as `kubernetes.default` to an API server), masqueraded to
// the node's address.
func TestGuardLetsPodsReachServiceEndpointsOutside(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if _, err := os.Stat(filepath.Join(DefaultPluginDir, "bridge")); err != nil {
		t.Skip("CNI plugins are not installed (run deploy/install-deps.sh)")
	}
	ctx := context.Background()
	state := t.TempDir()
	newNS := func(name string) netns.NetNS {
		n, err := netns.NewNetNS(filepath.Join(state, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = n.Remove() })
		return *n
	}
	node, outside := newNS("node"), newNS("outside")
	run := func(n netns.NetNS, args ...string) {
		t.Helper()
		if err := n.Do(func(cnins.NetNS) error {
			out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%v: %w: %s", args, err, out)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	// The node at 10.250.9.2, the outside host at 10.250.9.9 (its veth
	// end moved into its namespace).
	run(node, "ip", "link", "add", "nodeeth", "type", "veth", "peer", "name", "outeth")
	run(node, "ip", "link", "set", "outeth", "netns", outside.GetPath())
	run(node, "ip", "addr", "add", "10.250.9.2/24", "dev", "nodeeth")
	run(node, "ip", "link", "set", "nodeeth", "up")
	run(outside, "ip", "addr", "add", "10.250.9.9/24", "dev", "outeth")
	run(outside, "ip", "link", "set", "outeth", "up")
	run(outside, "ip", "link", "set", "lo", "up")
	// What the service proxy does for a Service whose endpoint is the
	// outside host.
	run(node, "nft", "add table ip svc; add chain ip svc pre { type nat hook prerouting priority dstnat; }; add rule ip svc pre ip daddr 10.43.250.9 tcp dport 80 dnat to 10.250.9.9:8080")

	var m *Manager
	if err := node.Do(func(cnins.NetNS) error {
		var err error
		m, err = New(Options{StateDir: filepath.Join(state, "agent"), PodCIDR: "10.42.64.0/24", ClusterCIDR: "10.42.64.0/18",
			Bridge: "skiffgd0", NetNSDir: filepath.Join(state, "netns")})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	uid := "guard-dnat-test"
	var podNS string
	var podIP net.IP
	if err := node.Do(func(cnins.NetNS) error {
		var err error
		if podNS, err = m.PlanNetNS(uid); err != nil {
			return err
		}
		if err := m.CreateNetNS(podNS); err != nil {
			return err
		}
		podIP, err = m.Attach(ctx, uid, podNS, "default", "guard", nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = node.Do(func(cnins.NetNS) error { return m.Teardown(ctx, uid, podNS, "default", "guard", nil) })
	})

	// The outside host answers with the address it saw.
	var ln net.Listener
	if err := outside.Do(func(cnins.NetNS) error {
		var err error
		ln, err = net.Listen("tcp4", "10.250.9.9:8080")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(c.RemoteAddr().(*net.TCPAddr).IP.String()))
			c.Close()
		}
	}()
	dial := func(addr string) (string, error) {
		var got string
		err := netns.LoadNetNS(podNS).Do(func(cnins.NetNS) error {
			c, err := net.DialTimeout("tcp4", addr, 2*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			b := make([]byte, 64)
			n, err := c.Read(b)
			got = string(b[:n])
			if n > 0 {
				return nil
			}
			return err
		})
		return got, err
	}
	if got, err := dial("10.250.9.9:8080"); err == nil {
		t.Errorf("pod %s reached a host outside the cluster and the egress CIDRs directly (it saw %s)", podIP, got)
	}
	got, err := dial("10.43.250.9:80")
	if err != nil {
		t.Fatalf("pod %s did not reach the outside host through the DNATed address: %v", podIP, err)
	}
	if got != "10.250.9.2" {
		t.Errorf("the outside host saw the pod's connection from %s, want the node's address 10.250.9.2 (masqueraded)", got)
	}
}
