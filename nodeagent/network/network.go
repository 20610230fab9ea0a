// Package network gives every pod its own network namespace wired through
// CNI (libcni with the plugins Debian ships in /usr/lib/cni): a bridge
// (isGateway; the bridge plugin's own masquerade is off), host-local IPAM
// on the node's pod CIDR, portmap for hostPorts, and loopback. libcni's
// cache and host-local's allocations live under the agent's state folder,
// so a restarted agent can tear down what it set up before. The bridge
// plugin never deletes its bridge and turns IP forwarding on.
//
// Across nodes the pod network is host-gw (as flannel's host-gw backend):
// every other node's pod CIDR is routed via that node's address
// (SyncRoutes), so pods reach pods on other nodes by pod IP without
// encapsulation; the nodes must share a link. An nftables table owned by
// the Manager guards forwarding: pods reach the cluster CIDR (pods on
// any node) and the EgressCIDRs, nothing else, and traffic leaving the
// cluster CIDR is masqueraded to the node's address. Blackhole routes for
// the cluster and service CIDRs keep every packet for them on the machine
// (the more specific pod-CIDR routes win). See README.md.
package network

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/v2/pkg/netns"
	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	current "github.com/containernetworking/cni/pkg/types/100"
	cniversion "github.com/containernetworking/cni/pkg/version"
	"golang.org/x/sys/unix"

	"github.com/skiffhq/skiff/internal/netnsthread"
)

// Defaults.
const (
	DefaultBridge    = "skiff0"
	DefaultPluginDir = "/usr/lib/cni"
	DefaultNetNSDir  = "/run/skiff/netns"
	networkName      = "skiff"
	ifName           = "eth0"
	cniVersion       = "1.0.0" // Debian's plugins 1.1.1 stop at spec 1.0.0
)

// Options configures a Manager.
type Options struct {
	// StateDir holds the libcni cache (cni-cache/) and IPAM allocations
	// (ipam/). Required.
	StateDir string
	// PodCIDR is the node's pod range, e.g. 10.42.0.0/24. Required.
	PodCIDR string
	// Bridge names the Linux bridge (default skiff0).
	Bridge string
	// PluginDirs are searched for CNI plugins (default /usr/lib/cni).
	PluginDirs []string
	// NetNSDir holds the pods' network namespace mounts.
	NetNSDir string
	// ClusterCIDR is the pod range of the whole cluster (every node's
	// pod CIDR lies in it): pods may reach it, traffic to it is not
	// masqueraded, and it gets a blackhole route. Default: PodCIDR only.
	ClusterCIDR string
	// ServiceCIDR is the ClusterIP range; when set it gets a blackhole
	// route too.
	ServiceCIDR string
	// EgressCIDRs are destinations outside the cluster CIDR that pods may
	// reach (masqueraded to the node's address), e.g. 0.0.0.0/0. Default:
	// none, pods reach only the cluster.
	EgressCIDRs []string
	Logger      *slog.Logger
}

// PortMapping is a hostPort of a pod.
type PortMapping struct {
	HostPort      int32  `json:"hostPort"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// Manager sets up and tears down pod networks.
type Manager struct {
	opts    Options
	cni     *libcni.CNIConfig
	list    *libcni.NetworkConfigList
	lo      *libcni.PluginConfig
	gateway net.IP
	log     *slog.Logger
}

// New prepares the CNI configuration and folders, and installs the
// forwarding guard. It does not create the bridge: the first pod does.
func New(opts Options) (*Manager, error) {
	if opts.StateDir == "" || opts.PodCIDR == "" {
		return nil, errors.New("network: StateDir and PodCIDR are required")
	}
	if opts.Bridge == "" {
		opts.Bridge = DefaultBridge
	}
	if len(opts.PluginDirs) == 0 {
		opts.PluginDirs = []string{DefaultPluginDir}
	}
	if opts.NetNSDir == "" {
		opts.NetNSDir = DefaultNetNSDir
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	_, cidr, err := net.ParseCIDR(opts.PodCIDR)
	if err != nil || cidr.IP.To4() == nil {
		return nil, fmt.Errorf("network: pod CIDR %q is not an IPv4 CIDR", opts.PodCIDR)
	}
	if opts.ClusterCIDR == "" {
		opts.ClusterCIDR = cidr.String()
	}
	for _, c := range append([]string{opts.ClusterCIDR, opts.ServiceCIDR}, opts.EgressCIDRs...) {
		if c == "" {
			continue
		}
		if _, n, err := net.ParseCIDR(c); err != nil || n.IP.To4() == nil {
			return nil, fmt.Errorf("network: %q is not an IPv4 CIDR", c)
		}
	}
	for _, d := range []string{opts.cacheDir(), opts.ipamDir(), opts.NetNSDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("network: %w", err)
		}
	}
	if _, err := os.Stat(filepath.Join(opts.PluginDirs[0], "bridge")); err != nil {
		return nil, fmt.Errorf("network: CNI plugins not found in %v (apt-get install containernetworking-plugins): %w", opts.PluginDirs, err)
	}
	gw := make(net.IP, 4)
	copy(gw, cidr.IP.To4())
	gw[3]++
	conf := map[string]any{
		"cniVersion": cniVersion,
		"name":       networkName,
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      opts.Bridge,
				"isGateway":   true,
				"ipMasq":      false,
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": cidr.String(), "gateway": gw.String()}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": opts.ipamDir(),
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	raw, err := json.Marshal(conf)
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	list, err := libcni.ConfListFromBytes(raw)
	if err != nil {
		return nil, fmt.Errorf("network: conf list: %w", err)
	}
	lo, err := libcni.ConfFromBytes([]byte(`{"cniVersion":"` + cniVersion + `","name":"skiff-lo","type":"loopback"}`))
	if err != nil {
		return nil, fmt.Errorf("network: loopback conf: %w", err)
	}
	m := &Manager{
		opts: opts, list: list, lo: lo, gateway: gw,
		// An explicit exec: libcni creates its default lazily on first use,
		// which races when two pods are set up at once.
		cni: libcni.NewCNIConfigWithCacheDir(opts.PluginDirs, opts.cacheDir(), &invoke.DefaultExec{
			RawExec: &invoke.RawExec{Stderr: os.Stderr}, PluginDecoder: cniversion.PluginDecoder{},
		}),
		log: opts.Logger.With("component", "network"),
	}
	if err := m.guard(cidr.String()); err != nil {
		return nil, err
	}
	// The cluster CIDR gets a blackhole only when it is larger than the
	// pod CIDR: the same prefix would hide the bridge's own route.
	blackholes := []string{opts.ServiceCIDR}
	if _, c, _ := net.ParseCIDR(opts.ClusterCIDR); c != nil {
		cOnes, _ := c.Mask.Size()
		pOnes, _ := cidr.Mask.Size()
		if cOnes < pOnes {
			blackholes = append(blackholes, c.String())
		}
	}
	if err := ensureBlackholes(blackholes...); err != nil {
		return nil, err
	}
	return m, nil
}

func (o Options) cacheDir() string { return filepath.Join(o.StateDir, "cni-cache") }
func (o Options) ipamDir() string  { return filepath.Join(o.StateDir, "ipam") }

// Gateway is the bridge's address (the pods' default route).
func (m *Manager) Gateway() net.IP { return m.gateway }

// Bridge is the bridge's name.
func (m *Manager) Bridge() string { return m.opts.Bridge }

func (m *Manager) rt(podUID, nsPath, ns, name string, ports []PortMapping) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{
		ContainerID: podUID,
		NetNS:       nsPath,
		IfName:      ifName,
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", ns},
			{"K8S_POD_NAME", name},
			{"K8S_POD_INFRA_CONTAINER_ID", podUID},
			{"K8S_POD_UID", podUID},
		},
	}
	if len(ports) > 0 {
		rt.CapabilityArgs = map[string]any{"portMappings": ports}
	}
	return rt
}

// PlanNetNS returns the path of a new network namespace for a pod,
// without creating it. The agent records the path first and only then
// creates the namespace (CreateNetNS) and attaches it (Attach), so an
// agent that dies at any point leaves a record Teardown can undo. Each
// attempt gets its own name: a pod's earlier namespace, still being torn
// down, is never reused.
func (m *Manager) PlanNetNS(podUID string) (string, error) {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("network: netns name: %w", err)
	}
	return filepath.Join(m.opts.NetNSDir, "skiff-"+podUID+"-"+hex.EncodeToString(b)), nil
}

// CreateNetNS creates a network namespace and bind-mounts it at path
// (planned by PlanNetNS), which must not exist.
func (m *Manager) CreateNetNS(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("network: netns dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("network: netns mount point: %w", err)
	}
	_ = f.Close()
	err = netnsthread.InNew(func() error {
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind mount: %w", err)
		}
		return nil
	})
	if err != nil {
		_ = unix.Unmount(path, unix.MNT_DETACH)
		_ = os.Remove(path)
		return fmt.Errorf("network: new netns %s: %w", path, err)
	}
	return nil
}

// Attach runs CNI ADD for an existing namespace.
func (m *Manager) Attach(ctx context.Context, podUID, nsPath, ns, name string, ports []PortMapping) (net.IP, error) {
	rt := m.rt(podUID, nsPath, ns, name, ports)
	if _, err := m.cni.AddNetwork(ctx, m.lo, rt); err != nil {
		return nil, fmt.Errorf("network: loopback: %w", err)
	}
	res, err := m.cni.AddNetworkList(ctx, m.list, rt)
	if err != nil {
		return nil, fmt.Errorf("network: CNI ADD: %w", err)
	}
	cur, err := current.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("network: CNI result: %w", err)
	}
	for _, ipc := range cur.IPs {
		if ip := ipc.Address.IP.To4(); ip != nil {
			return ip, nil
		}
	}
	return nil, errors.New("network: CNI ADD returned no IPv4 address")
}

// Teardown runs CNI DEL (freeing the address and the veth) and removes the
// network namespace. It is idempotent: DEL of a missing attachment and a
// missing namespace are not errors.
func (m *Manager) Teardown(ctx context.Context, podUID, nsPath, ns, name string, ports []PortMapping) error {
	var errs []error
	rt := m.rt(podUID, nsPath, ns, name, ports)
	if nsPath != "" {
		if _, err := os.Stat(nsPath); err != nil {
			// The namespace is gone: plugins still release IPAM and
			// host-side state when NetNS is empty.
			rt.NetNS = ""
		}
	}
	if err := m.cni.DelNetworkList(ctx, m.list, rt); err != nil {
		errs = append(errs, fmt.Errorf("network: CNI DEL: %w", err))
	}
	if err := m.cni.DelNetwork(ctx, m.lo, rt); err != nil {
		m.log.Debug("loopback DEL", "pod", podUID, "err", err)
	}
	if nsPath != "" {
		if err := netns.LoadNetNS(nsPath).Remove(); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("network: remove netns: %w", err))
		}
	}
	return errors.Join(errs...)
}

// nftTable is the forwarding guard's nftables table.
func (m *Manager) nftTable() string { return strings.ReplaceAll(m.opts.Bridge, "-", "_") + "_guard" }

// guard installs the nftables table that guards forwarding for the pod
// bridge: a packet from the bridge to another interface passes only to
// the cluster CIDR (pods on other nodes, routed host-gw), to the egress
// CIDRs, as a reply, or DNATed by the service proxy (a Service whose
// endpoint is outside the cluster: `kubernetes` to the API servers,
// kube-dns to a server without a node agent); a packet into the bridge
// from elsewhere passes only from the cluster CIDR, as a reply, or
// DNATed by the service proxy. No other interface may send with a source address of this
// node's pod CIDR. Traffic of the node's pods that leaves the cluster
// CIDR through another interface is masqueraded.
//
// Traffic this node sends to another node's pods from an address outside
// the cluster CIDR (the node itself: an ingress, a probe, a client of a
// service VIP; or a NodePort connection the proxy DNATed here) is
// SNATed to this node's pod gateway, an address of the cluster CIDR, so
// the other node's guard lets it in as it lets in pods. It runs before
// the service proxy's masquerade, which would pick the node's LAN address
// and be dropped there. Traffic merely routed through this node keeps its
// source (and stays outside), so the LAN reaches no pod through a node.
func (m *Manager) guard(podCIDR string) error {
	if _, err := exec.LookPath("nft"); err != nil {
		return fmt.Errorf("network: nft not found (apt-get install nftables): %w", err)
	}
	t := m.nftTable()
	egress := ""
	if len(m.opts.EgressCIDRs) > 0 {
		egress = fmt.Sprintf("\t\tiifname \"%s\" ip daddr { %s } accept\n", m.opts.Bridge, strings.Join(m.opts.EgressCIDRs, ", "))
	}
	rules := fmt.Sprintf(`table inet %[1]s
delete table inet %[1]s
table inet %[1]s {
	chain forward {
		type filter hook forward priority -10; policy accept;
		ip saddr %[3]s iifname != "%[2]s" drop
		iifname "%[2]s" oifname "%[2]s" accept
		iifname "%[2]s" ip daddr %[4]s accept
		oifname "%[2]s" ip saddr %[4]s accept
%[5]s		ct state established,related accept
		ct status dnat accept
		iifname "%[2]s" drop
		oifname "%[2]s" drop
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr %[3]s ip daddr != %[4]s oifname != "%[2]s" masquerade
	}
	chain postrouting-to-pods {
		type nat hook postrouting priority srcnat - 5; policy accept;
		ip daddr %[4]s ip saddr != %[4]s oifname != "%[2]s" fib saddr type local snat ip to %[6]s
		ip daddr %[4]s ip saddr != %[4]s oifname != "%[2]s" ct status dnat snat ip to %[6]s
	}
}
`, t, m.opts.Bridge, podCIDR, m.opts.ClusterCIDR, egress, m.gateway)
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("network: nft guard: %w: %s", err, out)
	}
	return nil
}

// Destroy removes the bridge and the nftables guard. Call it only when no
// pod uses the network any more (tests; node decommissioning).
func (m *Manager) Destroy() error {
	var errs []error
	if out, err := exec.Command("nft", "delete", "table", "inet", m.nftTable()).CombinedOutput(); err != nil && !strings.Contains(string(out), "No such file") {
		errs = append(errs, fmt.Errorf("network: delete nft table: %w: %s", err, out))
	}
	if _, err := net.InterfaceByName(m.opts.Bridge); err == nil {
		if out, err := exec.Command("ip", "link", "delete", m.opts.Bridge).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("network: delete bridge: %w: %s", err, out))
		}
	}
	return errors.Join(errs...)
}
