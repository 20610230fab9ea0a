// Package network gives every pod its own network namespace wired through
// CNI (libcni with the plugins Debian ships in /usr/lib/cni): a bridge
// (isGateway, no masquerade: pod traffic is never NATed off the host),
// host-local IPAM on the node's pod CIDR, portmap for hostPorts, and
// loopback. libcni's cache and host-local's allocations live under the
// agent's state folder, so a restarted agent can tear down what it set up
// before. The bridge plugin never deletes its bridge and turns IP
// forwarding on; an nftables table owned by the Manager keeps forwarded
// pod traffic on the bridge (nothing leaves the machine from a pod until a
// service proxy and masquerading exist).
package network

import (
	"context"
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
	Logger   *slog.Logger
}

// PortMapping is a hostPort of a pod.
type PortMapping struct {
	HostPort      int32  `json:"hostPort"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// Attachment is a pod's network.
type Attachment struct {
	NetNS string
	IP    net.IP
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

// Setup creates a network namespace for the pod and attaches it.
func (m *Manager) Setup(ctx context.Context, podUID, ns, name string, ports []PortMapping) (Attachment, error) {
	n, err := netns.NewNetNS(m.opts.NetNSDir)
	if err != nil {
		return Attachment{}, fmt.Errorf("network: new netns: %w", err)
	}
	ip, err := m.Attach(ctx, podUID, n.GetPath(), ns, name, ports)
	if err != nil {
		_ = m.Teardown(context.WithoutCancel(ctx), podUID, n.GetPath(), ns, name, ports)
		return Attachment{}, err
	}
	return Attachment{NetNS: n.GetPath(), IP: ip}, nil
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

// guard installs an nftables table that drops forwarded traffic between
// the pod bridge and any other interface: pods reach each other and the
// host, never the outside.
func (m *Manager) guard(cidr string) error {
	if _, err := exec.LookPath("nft"); err != nil {
		return fmt.Errorf("network: nft not found (apt-get install nftables): %w", err)
	}
	t := m.nftTable()
	rules := fmt.Sprintf(`table inet %[1]s
delete table inet %[1]s
table inet %[1]s {
	chain forward {
		type filter hook forward priority -10; policy accept;
		iifname "%[2]s" oifname != "%[2]s" drop
		oifname "%[2]s" iifname != "%[2]s" drop
		ip saddr %[3]s iifname != "%[2]s" drop
	}
}
`, t, m.opts.Bridge, cidr)
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
