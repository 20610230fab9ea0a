// Package multinode runs a multi-node Skiff cluster on this one machine for
// tests: a real in-process server (internal/testserver) and N `skiff agent`
// processes, each in a network namespace of its own with its own address
// on a host bridge, all on the machine's shared containerd.
//
// Layout for instance k (Options.Instance, 1–254; deploy/multinode.sh uses
// the same names with its own instance):
//
//	host bridge  skiffmn<k>       10.250.<k>.1/24, the API server binds here
//	node i       netns skiff-mn<k>-<i>, veth eth0 10.250.<k>.<10+i>/24,
//	             node name skiff-mn<k>-<i>, pod bridge skiffpod0
//
// A node namespace has no default route: its agent, its pods and its
// service proxy reach the bridge's /24 and nothing else. The agents are
// started with nsenter --net (not `ip netns exec`, whose private mount
// namespace would hide the pods' network namespace mounts from
// containerd). Each agent's CNI bridge, pod veths, nftables tables, host-gw
// routes and skiff-svc0 live in its namespace and die with it.
//
// Everything Start creates is removed when the test ends, also when it
// fails: pods are deleted and their containers given a few seconds to go,
// the agents are stopped, leftover containers of the nodes and pod network
// namespaces are removed, then the node namespaces and the bridge. What a
// crashed earlier run of the same instance left is removed before it starts.
package multinode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/skiffhq/skiff/controlplane/authn"
	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/controlplane/servertoken"
	"github.com/skiffhq/skiff/internal/harness"
	"github.com/skiffhq/skiff/internal/nodetest"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/nodeagent/runtime"
	"github.com/skiffhq/skiff/server"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Defaults.
const (
	// DefaultClusterCIDR is a part of the blackholed 10.42.0.0/16 that the
	// single-node tests' /24s (10.42.0.0 and 10.42.24x) do not use, so
	// their forwarding guards on the host never see these pods' addresses
	// (the host bridge is subject to the host's netfilter hooks).
	DefaultClusterCIDR = "10.42.64.0/18"
	// PodBridge is every node's CNI bridge inside its namespace.
	PodBridge = "skiffpod0"
)

// Options configures Start.
type Options struct {
	// Nodes is the number of agents (default 2).
	Nodes int
	// Instance picks the address block 10.250.<Instance>.0/24 and the
	// names; tests that may run at the same time need different ones.
	Instance int
	// Bin is the skiff binary (default $SKIFF_BIN, else <repo>/bin/skiff).
	Bin string
	// ClusterCIDR is the pod range (default DefaultClusterCIDR).
	ClusterCIDR string
	// Images are imported by every agent when it starts.
	Images []nodetest.Image
	// Server changes the server config before it starts (in-process
	// server only).
	Server []testserver.Option
	// AgentLogsURL, when set, is where the agents' log shippers send
	// (--logs-elasticsearch-url); by default they ship nothing.
	AgentLogsURL string
	// AgentEnv is added to the agents' environment at their first start
	// (SKIFF_FAILPOINTS for a binary built with -tags failpoints).
	AgentEnv []string
	// Servers, when above 0, runs that many `skiff server` processes as
	// one HA cluster on embedded etcd instead of the in-process server,
	// each in a network namespace of its own (see ha.go). The agents are
	// told about the first server only and learn the others.
	Servers int
	// PrivateContainerd gives the agents a containerd of the instance's
	// own (see containerd.go), which KillContainerd and RestartContainerd
	// act on; otherwise they share the machine's.
	PrivateContainerd bool
}

// Cluster is a started cluster.
type Cluster struct {
	*testserver.Server
	Nodes []*Node
	// Bridge and HostIP are the host end of the node network.
	Bridge, HostIP string
	Subnet         *net.IPNet
	// HA are the server processes when Options.Servers is above 0; the
	// embedded Server then talks to the first of them.
	HA []*ServerProc

	opts      Options
	serverURL string
	// ctrd is the private containerd, if any; ctrdAddr is the agents'.
	ctrd     *privateContainerd
	ctrdAddr string
}

// URL is the API server the agents were given: the in-process server's,
// or the first HA server's.
func (c *Cluster) URL() string { return c.serverURL }

// Node is one agent process in its namespace.
type Node struct {
	Name, NetNS, IP, DataDir, Log string
	cmd                           *exec.Cmd
	done                          chan struct{}
}

// Names of instance k.
func bridgeName(k int) string      { return fmt.Sprintf("skiffmn%d", k) }
func netnsPrefix(k int) string     { return fmt.Sprintf("skiff-mn%d-", k) }
func vethName(k, i int) string     { return fmt.Sprintf("skmn%dh%d", k, i) }
func hostIP(k int) string          { return fmt.Sprintf("10.250.%d.1", k) }
func nodeIP(k, i int) string       { return fmt.Sprintf("10.250.%d.%d", k, 10+i) }
func subnet(k int) string          { return fmt.Sprintf("10.250.%d.0/24", k) }
func nodeName(k, i int) string     { return fmt.Sprintf("%s%d", netnsPrefix(k), i) }
func netnsPath(name string) string { return filepath.Join("/run/netns", name) }

// Require skips t unless a multi-node cluster can run here: root,
// containerd, busybox, iproute2, nsenter and nft.
func Require(t harness.T) {
	t.Helper()
	nodetest.Require(t)
	for _, b := range []string{"ip", "nsenter", "nft"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s is not installed (run deploy/install-deps.sh)", b)
		}
	}
}

// Start builds the node network, starts the server on the host bridge and
// one agent per node, and waits until every node is Ready with a pod CIDR.
// Cleanup is registered on t.
func Start(t harness.T, opts Options) *Cluster {
	t.Helper()
	Require(t)
	if opts.Nodes <= 0 {
		opts.Nodes = 2
	}
	if opts.Instance <= 0 || opts.Instance > 254 {
		t.Fatalf("multinode: Instance %d: want 1–254", opts.Instance)
	}
	if opts.ClusterCIDR == "" {
		opts.ClusterCIDR = DefaultClusterCIDR
	}
	if opts.Bin == "" {
		opts.Bin = defaultBin()
	}
	if _, err := os.Stat(opts.Bin); err != nil {
		t.Fatalf("multinode: skiff binary %s: %v (run make build or set SKIFF_BIN)", opts.Bin, err)
	}
	k := opts.Instance
	if err := Clean(k); err != nil {
		t.Fatalf("multinode: remove leftovers of an earlier run: %v", err)
	}
	c := &Cluster{Bridge: bridgeName(k), HostIP: hostIP(k), opts: opts, ctrdAddr: runtime.DefaultAddress}
	_, c.Subnet, _ = net.ParseCIDR(subnet(k))
	// Registered first, so it runs last: after the server and the agents.
	t.Cleanup(func() {
		if err := Clean(k); err != nil {
			t.Errorf("multinode: cleanup: %v", err)
		}
	})
	if opts.PrivateContainerd {
		p, err := startContainerd(k, filepath.Join(t.TempDir(), "containerd.log"))
		if err != nil {
			t.Fatal(err)
		}
		c.ctrd, c.ctrdAddr = p, ContainerdAddress(k)
	}
	if err := run("ip", "link", "add", c.Bridge, "type", "bridge"); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"addr", "add", c.HostIP + "/24", "dev", c.Bridge},
		{"link", "set", c.Bridge, "up"},
	} {
		if err := run("ip", args...); err != nil {
			t.Fatal(err)
		}
	}

	if opts.Servers > 0 {
		if len(opts.Server) > 0 {
			t.Fatal("multinode: Options.Server applies to the in-process server only, not to HA servers")
		}
		if err := c.startHA(t); err != nil {
			t.Fatal(err)
		}
	} else {
		sopts := append([]testserver.Option{func(cfg *server.Config) {
			cfg.BindAddress = c.HostIP
			cfg.ClusterCIDR = opts.ClusterCIDR
		}}, opts.Server...)
		c.Server = testserver.Start(t, sopts...)
		c.serverURL = c.Server.URL()
	}
	ca, err := pki.LoadOrCreateCA(filepath.Join(c.DataDir, "tls"), "server-ca", "unused")
	if err != nil {
		t.Fatalf("multinode: cluster CA: %v", err)
	}
	images := nodetest.StateDir(t, opts.Images...)
	// The first node joins as a user would, with a join token (`skiff
	// agent --server --token`); the others get a kubeconfig issued here.
	join, err := c.joinToken(ca)
	if err != nil {
		t.Fatal(err)
	}

	for i := 1; i <= opts.Nodes; i++ {
		n := &Node{Name: nodeName(k, i), NetNS: nodeName(k, i), IP: nodeIP(k, i), DataDir: t.TempDir(), done: make(chan struct{})}
		n.Log = filepath.Join(n.DataDir, "agent.log")
		if err := c.addNetNS(n, i); err != nil {
			t.Fatal(err)
		}
		if i > 1 {
			join = ""
		}
		if err := c.startAgent(n, ca, images, join); err != nil {
			t.Fatal(err)
		}
		c.Nodes = append(c.Nodes, n)
	}
	t.Cleanup(func() { c.stop(t) })
	if err := c.waitReady(t, 90*time.Second); err != nil {
		c.dumpLogs(t)
		t.Fatal(err)
	}
	return c
}

func defaultBin() string {
	if b := os.Getenv("SKIFF_BIN"); b != "" {
		return b
	}
	dir, err := os.Getwd()
	for err == nil {
		if _, serr := os.Stat(filepath.Join(dir, "go.mod")); serr == nil {
			return filepath.Join(dir, "bin", "skiff")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "bin/skiff"
}

// addNetNS creates node i's namespace and wires it to the host bridge.
func (c *Cluster) addNetNS(n *Node, i int) error {
	return c.wireNetNS(n.NetNS, vethName(c.opts.Instance, i), n.IP)
}

// wireNetNS creates namespace ns with eth0 at ip/24, the peer of the host
// link veth on the bridge.
func (c *Cluster) wireNetNS(ns, veth, ip string) error {
	steps := [][]string{
		{"netns", "add", ns},
		{"-n", ns, "link", "set", "lo", "up"},
		{"link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"link", "set", veth, "master", c.Bridge, "up"},
		{"-n", ns, "addr", "add", ip + "/24", "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
	}
	for _, s := range steps {
		if err := run("ip", s...); err != nil {
			return err
		}
	}
	return nil
}

// joinToken creates a bootstrap token and returns its join token.
func (c *Cluster) joinToken(ca *pki.CA) (string, error) {
	tok, err := authn.NewBootstrapToken()
	if err != nil {
		return "", err
	}
	data, err := authn.BootstrapTokenSecretData(tok, time.Now().Add(time.Hour), "multinode test")
	if err != nil {
		return "", err
	}
	id, _, _ := authn.ParseBootstrapToken(tok)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = c.Client.CoreV1().Secrets(metav1.NamespaceSystem).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: authn.BootstrapTokenSecretPrefix + id, Namespace: metav1.NamespaceSystem},
		Type:       authn.BootstrapTokenSecretType, Data: data,
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("multinode: bootstrap token: %w", err)
	}
	return servertoken.NodeToken{CAHash: servertoken.CAHash(ca.CertPEM), Bootstrap: tok}.String(), nil
}

// startAgent starts `skiff agent` in the node's namespace: joining with
// join (a join token), or, when join is empty, with a client certificate
// issued here from the cluster CA (what a join produces) and a serving
// certificate issued here too; a joined agent gets its own through CSRs.
func (c *Cluster) startAgent(n *Node, ca *pki.CA, images, join string) error {
	if join == "" {
		certPEM, keyPEM, err := ca.Issue("system:node:"+n.Name, []string{"system:nodes"}, nil, nil, false, 24*time.Hour)
		if err != nil {
			return fmt.Errorf("multinode: node certificate: %w", err)
		}
		kubeconfig := filepath.Join(n.DataDir, "kubeconfig")
		if err := pki.WriteKubeconfig(kubeconfig, c.URL(), "system:node:"+n.Name, ca.CertPEM, certPEM, keyPEM); err != nil {
			return fmt.Errorf("multinode: kubeconfig: %w", err)
		}
	}
	sCert, sKey, err := ca.Issue("system:node:"+n.Name, []string{"system:nodes"}, []string{n.Name}, []net.IP{net.ParseIP(n.IP)}, true, 24*time.Hour)
	if err != nil {
		return fmt.Errorf("multinode: serving certificate: %w", err)
	}
	files := map[string][]byte{"serving.crt": sCert, "serving.key": sKey, "ca.crt": ca.CertPEM}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(n.DataDir, name), b, 0o600); err != nil {
			return fmt.Errorf("multinode: %w", err)
		}
	}
	// The images are imported into the shared containerd by every agent;
	// hard links avoid copying them.
	imgDir := filepath.Join(n.DataDir, "agent", "images")
	if err := os.MkdirAll(imgDir, 0o755); err != nil {
		return fmt.Errorf("multinode: %w", err)
	}
	tars, _ := filepath.Glob(filepath.Join(images, "images", "*.tar"))
	for _, f := range tars {
		if err := os.Link(f, filepath.Join(imgDir, filepath.Base(f))); err != nil {
			return fmt.Errorf("multinode: image %s: %w", f, err)
		}
	}
	logf, err := os.Create(n.Log)
	if err != nil {
		return fmt.Errorf("multinode: %w", err)
	}
	agentArgs := AgentArgs(c.opts.ClusterCIDR, c.Subnet.String(), n.Name, n.IP, n.DataDir)
	if c.ctrd != nil {
		agentArgs = append(agentArgs, "--container-runtime-endpoint", c.ctrdAddr)
	}
	if c.opts.AgentLogsURL != "" {
		agentArgs = append(agentArgs, "--logs-elasticsearch-url="+c.opts.AgentLogsURL)
	}
	if join != "" {
		// A joined agent trusts the CA its join verified and gets its
		// serving certificate through a CSR, as on a real machine.
		drop := map[string]bool{"--kubeconfig": true, "--tls-cert-file": true, "--tls-private-key-file": true, "--client-ca-file": true}
		var kept []string
		for i := 0; i < len(agentArgs); i++ {
			if drop[agentArgs[i]] {
				i++ // and its value
				continue
			}
			kept = append(kept, agentArgs[i])
		}
		agentArgs = append(kept, "--server", c.URL(), "--token", join)
	}
	args := append([]string{"--net=" + netnsPath(n.NetNS), "--", c.opts.Bin}, agentArgs...)
	n.cmd = exec.Command("nsenter", args...)
	if len(c.opts.AgentEnv) > 0 {
		n.cmd.Env = append(os.Environ(), c.opts.AgentEnv...)
	}
	return n.run(logf)
}

// run starts n.cmd with its output to logf and closes n.done when it ends.
func (n *Node) run(logf *os.File) error {
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	// Its own process group: a test interrupted with ^C does not take it
	// down half-way; cleanup (here or in the next run) stops it.
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := n.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("multinode: start agent %s: %w", n.Name, err)
	}
	cmd, done := n.cmd, n.done
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	return nil
}

// Containers counts the containerd containers of the cluster's nodes.
func (c *Cluster) Containers(ctx context.Context) (int, error) {
	return countContainers(ctx, c.ctrdAddr, c.NodeNames())
}

// Done is closed when the node's agent process ends.
func (n *Node) Done() <-chan struct{} { return n.done }

// PID is the agent process's ID (nsenter execs the agent in place).
func (n *Node) PID() int { return n.cmd.Process.Pid }

// RestartAgent starts node i's agent again, with the same arguments and
// env instead of Options.AgentEnv, once its process has ended (killed, or
// dead at a failpoint); it appends to the same log.
func (c *Cluster) RestartAgent(i int, env []string) error {
	n := c.Nodes[i]
	select {
	case <-n.done:
	default:
		return fmt.Errorf("multinode: agent %s is still running", n.Name)
	}
	logf, err := os.OpenFile(n.Log, os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("multinode: %w", err)
	}
	cmd := exec.Command(n.cmd.Path, n.cmd.Args[1:]...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	n.cmd, n.done = cmd, make(chan struct{})
	return n.run(logf)
}

// JoinToken makes a join token (`skiff token create`) for the cluster's
// current CA.
func (c *Cluster) JoinToken() (string, error) {
	ca, err := pki.LoadOrCreateCA(filepath.Join(c.DataDir, "tls"), "server-ca", "unused")
	if err != nil {
		return "", fmt.Errorf("multinode: cluster CA: %w", err)
	}
	return c.joinToken(ca)
}

// RejoinAgent stops node i's agent, removes the credentials its join
// kept (kubeconfig, client certificate and key) and starts it again
// joining with token, as after a CA rotation
// (controlplane/pki/README.md). The node must have joined with a token
// (node 0).
func (c *Cluster) RejoinAgent(i int, token string) error {
	n := c.Nodes[i]
	args := slices.Clone(n.cmd.Args)
	at := slices.Index(args, "--token")
	if at < 0 || at+1 >= len(args) {
		return fmt.Errorf("multinode: agent %s did not join with a token", n.Name)
	}
	args[at+1] = token
	select {
	case <-n.done:
	default:
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-n.done:
		case <-time.After(15 * time.Second):
			_ = n.cmd.Process.Kill()
			<-n.done
		}
	}
	for _, f := range []string{"kubeconfig", "client.crt", "client.key"} {
		if err := os.Remove(filepath.Join(n.DataDir, "agent", f)); err != nil {
			return fmt.Errorf("multinode: %w", err)
		}
	}
	logf, err := os.OpenFile(n.Log, os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("multinode: %w", err)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = n.cmd.Env
	n.cmd, n.done = cmd, make(chan struct{})
	return n.run(logf)
}

// AgentArgs are the `skiff agent` arguments of a node of this layout
// (deploy/multinode.sh passes the same).
func AgentArgs(clusterCIDR, nodeSubnet, name, ip, dataDir string) []string {
	return []string{"agent",
		"--kubeconfig", filepath.Join(dataDir, "kubeconfig"),
		"--data-dir", dataDir, "--node-name", name, "--node-ip", ip,
		"--cluster-cidr", clusterCIDR, "--bridge", PodBridge,
		"--pod-egress-cidrs", nodeSubnet,
		"--pod-log-dir", filepath.Join(dataDir, "logs"),
		"--tls-cert-file", filepath.Join(dataDir, "serving.crt"),
		"--tls-private-key-file", filepath.Join(dataDir, "serving.key"),
		"--client-ca-file", filepath.Join(dataDir, "ca.crt"),
		"--logs-elasticsearch-url=",
	}
}

func (c *Cluster) waitReady(t harness.T, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last string
	err := wait.PollUntilContextCancel(ctx, 300*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		for _, n := range c.Nodes {
			select {
			case <-n.done:
				return false, fmt.Errorf("agent %s exited", n.Name)
			default:
			}
			node, err := c.Client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil {
				last = fmt.Sprintf("node %s: %v", n.Name, err)
				return false, nil
			}
			if node.Spec.PodCIDR == "" || !ready(node) {
				last = fmt.Sprintf("node %s: podCIDR %q, not ready", n.Name, node.Spec.PodCIDR)
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("multinode: nodes not ready: %w (%s)", err, last)
	}
	return nil
}

func ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// NodeNames are the nodes' names.
func (c *Cluster) NodeNames() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Name
	}
	return out
}

func (c *Cluster) dumpLogs(t harness.T) {
	t.Helper()
	for _, n := range c.Nodes {
		b, _ := os.ReadFile(n.Log)
		if len(b) > 6000 {
			b = b[len(b)-6000:]
		}
		t.Logf("agent %s log (tail):\n%s", n.Name, b)
	}
}

// stop deletes every pod of the nodes (so the agents tear their
// containers and pod networks down), then stops the agents. Clean removes
// what is left afterwards.
func (c *Cluster) stop(t harness.T) {
	if t.Failed() {
		c.dumpLogs(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if c.ctrd != nil {
		// A test that killed it last leaves the agents nothing to tear
		// down with.
		select {
		case <-c.ctrd.done:
			if err := c.RestartContainerd(); err != nil {
				t.Errorf("multinode: %v", err)
			}
		default:
		}
	}
	zero := int64(0)
	pods, err := c.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err == nil {
		for _, p := range pods.Items {
			_ = c.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		}
		names := c.NodeNames()
		_ = wait.PollUntilContextTimeout(ctx, 300*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
			n, err := countContainers(ctx, c.ctrdAddr, names)
			return err == nil && n == 0, nil
		})
	}
	for _, n := range c.Nodes {
		if n.cmd != nil && n.cmd.Process != nil {
			_ = n.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, n := range c.Nodes {
		select {
		case <-n.done:
		case <-time.After(15 * time.Second):
			_ = n.cmd.Process.Kill()
			<-n.done
		}
	}
	// What the agents did not tear down: containers, pod network
	// namespaces, and mounts under the data folders (emptyDir tmpfs),
	// which would keep t.TempDir from removing them.
	if err := removeContainers(ctx, c.ctrdAddr, netnsPrefix(c.opts.Instance)); err != nil {
		t.Errorf("multinode: %v", err)
	}
	for _, n := range c.Nodes {
		unmountUnder(n.DataDir)
	}
}

// unmountUnder detaches every mount below dir, deepest first.
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mps []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			mps = append(mps, f[4])
		}
	}
	for i := len(mps) - 1; i >= 0; i-- {
		_ = syscall.Unmount(mps[i], syscall.MNT_DETACH)
	}
}

// Clean removes what instance k of the harness (or deploy/multinode.sh)
// created: the agents still running in the node namespaces, the
// containers of its nodes with their pod network namespaces, its private
// containerd if it had one, the node namespaces (with everything inside)
// and the host bridge. Nothing there is an error.
func Clean(k int) error {
	var errs []error
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip netns list: %w: %s", err, out)
	}
	var nss []string
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], netnsPrefix(k)) {
			nss = append(nss, f[0])
		}
	}
	for _, ns := range nss {
		// The agents of a crashed run still live in their namespace.
		if pids, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
			for _, p := range strings.Fields(string(pids)) {
				if pid, err := strconv.Atoi(p); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := removeContainers(ctx, runtime.DefaultAddress, netnsPrefix(k)); err != nil {
		errs = append(errs, err)
	}
	if err := cleanContainerd(ctx, k); err != nil {
		errs = append(errs, err)
	}
	for _, ns := range nss {
		if err := run("ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := net.InterfaceByName(bridgeName(k)); err == nil {
		if err := run("ip", "link", "del", bridgeName(k)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func containerdClient(addr string) (*containerd.Client, error) {
	return containerd.New(addr, containerd.WithDefaultNamespace(runtime.Namespace))
}

// countContainers counts the containers of the named nodes.
func countContainers(ctx context.Context, addr string, nodes []string) (int, error) {
	cl, err := containerdClient(addr)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	ctx = namespaces.WithNamespace(ctx, runtime.Namespace)
	n := 0
	for _, name := range nodes {
		cs, err := cl.Containers(ctx, fmt.Sprintf("labels.%q==%q", runtime.LabelNode, name))
		if err != nil {
			return 0, err
		}
		n += len(cs)
	}
	return n, nil
}

// removeContainers kills and deletes the containers of the containerd at
// addr whose node label starts with prefix, and removes the pod network
// namespace each one recorded (the agent keeps its path in the
// container's OCI spec).
func removeContainers(ctx context.Context, addr, prefix string) error {
	if _, err := os.Stat(addr); err != nil {
		return nil // no containerd: no containers
	}
	cl, err := containerdClient(addr)
	if err != nil {
		return fmt.Errorf("containerd: %w", err)
	}
	defer cl.Close()
	ctx = namespaces.WithNamespace(ctx, runtime.Namespace)
	cs, err := cl.Containers(ctx)
	if err != nil {
		return fmt.Errorf("containerd: list: %w", err)
	}
	var errs []error
	for _, ct := range cs {
		labels, err := ct.Labels(ctx)
		if err != nil || !strings.HasPrefix(labels[runtime.LabelNode], prefix) {
			continue
		}
		netnsFile := ""
		if spec, err := ct.Spec(ctx); err == nil && spec.Linux != nil {
			for _, ns := range spec.Linux.Namespaces {
				if ns.Type == "network" {
					netnsFile = ns.Path
				}
			}
		}
		if task, err := ct.Task(ctx, nil); err == nil {
			_ = task.Kill(ctx, syscall.SIGKILL)
			st, err := task.Wait(ctx)
			if err == nil {
				select {
				case <-st:
				case <-time.After(10 * time.Second):
				}
			}
			_, _ = task.Delete(ctx, containerd.WithProcessKill)
		}
		if err := ct.Delete(ctx, containerd.WithSnapshotCleanup); err != nil {
			errs = append(errs, fmt.Errorf("containerd: delete %s: %w", ct.ID(), err))
		}
		if netnsFile != "" {
			_ = syscall.Unmount(netnsFile, syscall.MNT_DETACH)
			_ = os.Remove(netnsFile)
		}
	}
	return errors.Join(errs...)
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Pods lists the pods in ns as JSON-friendly (name, node, IP) for logs.
func (c *Cluster) Pods(ctx context.Context, ns string) string {
	l, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	type row struct{ Name, Node, IP, Phase string }
	var rows []row
	for _, p := range l.Items {
		rows = append(rows, row{p.Name, p.Spec.NodeName, p.Status.PodIP, string(p.Status.Phase)})
	}
	b, _ := json.Marshal(rows)
	return string(b)
}

// SandboxRecord reads a pod's sandbox record from an agent's state folder
// (empty when there is none); "netns" is its network namespace's path.
func SandboxRecord(state, uid string) map[string]string {
	sb := map[string]string{}
	if b, err := os.ReadFile(filepath.Join(state, "pods", uid, "sandbox.json")); err == nil {
		_ = json.Unmarshal(b, &sb)
	}
	return sb
}

// HeldAddresses counts host-local's address files in an agent's state
// folder that hold uid, or all of them when uid is "".
func HeldAddresses(state, uid string) int {
	n := 0
	_ = filepath.WalkDir(filepath.Join(state, "network", "ipam"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), "last_reserved_ip") || d.Name() == "lock" {
			return nil
		}
		if b, err := os.ReadFile(path); err == nil && strings.HasPrefix(string(b), uid) {
			n++
		}
		return nil
	})
	return n
}

// WaitRenewedAfter waits until every one of nodes has renewed its Lease
// after since and is Ready.
func WaitRenewedAfter(ctx context.Context, cs kubernetes.Interface, nodes []string, since time.Time, timeout time.Duration) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		last = ""
		for _, n := range nodes {
			l, err := cs.CoordinationV1().Leases("kube-node-lease").Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				last = err.Error()
				return false, nil
			}
			if l.Spec.RenewTime == nil || !l.Spec.RenewTime.After(since.Add(time.Second)) {
				last = fmt.Sprintf("lease of %s renewed at %v, not after %v", n, l.Spec.RenewTime, since)
				return false, nil
			}
			node, err := cs.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
			if err != nil || !ready(node) {
				last = fmt.Sprintf("node %s not Ready (%v)", n, err)
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("nodes not back: %w: %s", err, last)
	}
	return nil
}

// HostIPOf is the host's address on instance k's node network.
func HostIPOf(k int) string { return hostIP(k) }

// ClientFor is a client with the credentials of a kubeconfig file (10 s
// request timeout).
func ClientFor(kubeconfig string) (kubernetes.Interface, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	rc.Timeout = 10 * time.Second
	return kubernetes.NewForConfig(rc)
}
