package multinode

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/skiffhq/skiff/internal/harness"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/nodeagent/failover"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// HA layout of instance k, beside the nodes (Options.Servers > 0):
//
//	server j     netns skiff-mn<k>-s<j>, veth eth0 10.250.<k>.<1+j>/24
//	             (host end skmn<k>s<j>), `skiff server` on its own
//	             ports 6443 (API), 2379/2380 (etcd)
//
// Server 1 starts with --cluster-init, the others join it with its join
// token. Each server has its own network stack, so a partition is the
// host end of its veth going down (Partition): the server stays up but
// reaches neither the other servers nor the agents, and nobody reaches it.

// HAPort is every HA server's API port (each has its own namespace).
const HAPort = 6443

func serverNetNS(k, j int) string { return fmt.Sprintf("%ss%d", netnsPrefix(k), j) }
func serverVeth(k, j int) string  { return fmt.Sprintf("skmn%ds%d", k, j) }
func serverIP(k, j int) string    { return fmt.Sprintf("10.250.%d.%d", k, 1+j) }

// ServerProc is one HA `skiff server` process in its namespace.
type ServerProc struct {
	Name, NetNS, IP, DataDir, Log string
	// URL is its API server, reachable from the host over the bridge.
	URL string
	// Config and Client talk to this server only (admin credentials).
	Config *rest.Config
	Client kubernetes.Interface

	veth string
	args []string
	// kubeconfigMod is the admin kubeconfig's time when Client was made.
	kubeconfigMod time.Time
	bin           string
	cmd           *exec.Cmd
	done          chan struct{}
}

// startHA starts opts.Servers server processes, waits until each is
// ready, and points the cluster's Client at all of them through the node
// agent's failover dialer (so it follows a kill or a partition as an
// agent does). The first server's data folder holds the cluster CA.
func (c *Cluster) startHA(t harness.T) error {
	k := c.opts.Instance
	var token string
	for j := 1; j <= c.opts.Servers; j++ {
		s := &ServerProc{
			Name: serverNetNS(k, j), NetNS: serverNetNS(k, j), IP: serverIP(k, j),
			DataDir: t.TempDir(), veth: serverVeth(k, j), bin: c.opts.Bin,
		}
		s.URL = fmt.Sprintf("https://%s:%d", s.IP, HAPort)
		s.Log = filepath.Join(s.DataDir, "server.log")
		if err := c.wireNetNS(s.NetNS, s.veth, s.IP); err != nil {
			return err
		}
		s.args = []string{"server", "--data-dir", s.DataDir,
			"--bind-address", s.IP, "--advertise-address", s.IP,
			"--https-listen-port", fmt.Sprint(HAPort), "--cluster-cidr", c.opts.ClusterCIDR,
			"--disable-agent", "--ingress-http-port", "0", "--ingress-https-port", "0",
			"--dashboard-port", "0", "--disable", "etcd-snapshot"}
		if j == 1 {
			s.args = append(s.args, "--cluster-init")
		} else {
			s.args = append(s.args, "--server", c.HA[0].URL, "--token", token)
		}
		c.HA = append(c.HA, s)
		if err := s.start(); err != nil {
			return err
		}
		t.Cleanup(func() { s.stop(t) })
		if err := s.waitReady(90 * time.Second); err != nil {
			return err
		}
		if j == 1 {
			b, err := os.ReadFile(filepath.Join(s.DataDir, "server", "token"))
			if err != nil {
				return fmt.Errorf("multinode: join token of the first server: %w", err)
			}
			token = strings.TrimSpace(string(b))
		}
	}

	return c.connectHA(t)
}

// connectHA points the cluster's Client at every HA server through the
// node agent's failover dialer, with the first server's admin
// credentials.
func (c *Cluster) connectHA(t harness.T) error {
	first := c.HA[0]
	rc := rest.CopyConfig(first.Config)
	var others []string
	for _, s := range c.HA[1:] {
		others = append(others, s.URL)
	}
	b, err := failover.Configure(rc, others, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return fmt.Errorf("multinode: failover client: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go b.Run(ctx, time.Second, nil, 0)
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return err
	}
	c.Server = &testserver.Server{Config: rc, Client: cs, Dynamic: dyn, DataDir: first.DataDir}
	c.serverURL = first.URL
	return nil
}

// start runs the server in its namespace.
func (s *ServerProc) start() error {
	logf, err := os.OpenFile(s.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("multinode: %w", err)
	}
	s.cmd = exec.Command("nsenter", append([]string{"--net=" + netnsPath(s.NetNS), "--", s.bin}, s.args...)...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("multinode: start server %s: %w", s.Name, err)
	}
	s.done = make(chan struct{})
	cmd, done := s.cmd, s.done
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	return nil
}

// waitReady waits for the admin kubeconfig and a ready /readyz, and sets
// Config and Client.
func (s *ServerProc) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	kubeconfig := filepath.Join(s.DataDir, "admin.kubeconfig")
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("multinode: server %s exited; log:\n%s", s.Name, s.LogTail(6000))
		default:
		}
		// A server rewrites its admin kubeconfig at start (a new CA):
		// the client follows the file.
		if fi, err := os.Stat(kubeconfig); err == nil && !fi.ModTime().Equal(s.kubeconfigMod) {
			s.Client, s.kubeconfigMod = nil, fi.ModTime()
		}
		if s.Client == nil {
			if rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig); err == nil {
				rc.Host = s.URL
				rc.Timeout = 10 * time.Second
				cs, err := kubernetes.NewForConfig(rc)
				if err != nil {
					return err
				}
				s.Config, s.Client = rc, cs
			}
		}
		if s.Client != nil {
			if last = s.Ready(); last == nil {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("multinode: server %s not ready in %s (%v); log:\n%s", s.Name, timeout, last, s.LogTail(6000))
}

// Ready asks the server's /readyz from the host.
func (s *ServerProc) Ready() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := s.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil {
		return fmt.Errorf("readyz: %w: %s", err, b)
	}
	return nil
}

// Reconnect points the cluster's Client at the servers again with the
// first server's current admin kubeconfig (after a CA rotation made a new
// one); every server must be ready.
func (c *Cluster) Reconnect(t harness.T) error {
	if len(c.HA) == 0 {
		return fmt.Errorf("multinode: Reconnect is for HA clusters")
	}
	return c.connectHA(t)
}

// Stop ends the server with SIGTERM (SIGKILL after 20 s) and waits for it
// to exit.
func (s *ServerProc) Stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		s.Kill()
	}
}

// Start starts a stopped server again on its data folder without waiting
// for it (a member alone cannot be ready before a quorum is back); its
// Config and Client are read again from its admin kubeconfig by
// WaitReady.
func (s *ServerProc) Start() error {
	select {
	case <-s.done:
	default:
		return fmt.Errorf("multinode: server %s is running", s.Name)
	}
	s.Config, s.Client = nil, nil
	return s.start()
}

// WaitReady waits until the server answers /readyz.
func (s *ServerProc) WaitReady(timeout time.Duration) error { return s.waitReady(timeout) }

// SetFlag changes the value of a flag the server starts with (next start).
func (s *ServerProc) SetFlag(name, value string) error {
	for i := 0; i+1 < len(s.args); i++ {
		if s.args[i] == name {
			s.args[i+1] = value
			return nil
		}
	}
	return fmt.Errorf("multinode: server %s has no flag %s", s.Name, name)
}

// Kill sends SIGKILL to the server and waits for it to exit.
func (s *ServerProc) Kill() {
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
}

// Restart starts a stopped or killed server again on its data folder
// (as the member it was) and waits until it is ready.
func (s *ServerProc) Restart() error {
	select {
	case <-s.done:
	default:
		return fmt.Errorf("multinode: server %s is running", s.Name)
	}
	if err := s.start(); err != nil {
		return err
	}
	return s.waitReady(90 * time.Second)
}

// Partition cuts the server off the node network: the host end of its
// veth goes down. Heal undoes it.
func (s *ServerProc) Partition() error { return run("ip", "link", "set", s.veth, "down") }

// Heal reconnects a partitioned server.
func (s *ServerProc) Heal() error { return run("ip", "link", "set", s.veth, "up") }

// Kubectl runs kubectl inside the server's namespace against the server
// itself, so it reaches a partitioned server too; it returns the combined
// output.
func (s *ServerProc) Kubectl(ctx context.Context, args ...string) (string, error) {
	all := append([]string{"--net=" + netnsPath(s.NetNS), "--", "kubectl",
		"--kubeconfig", filepath.Join(s.DataDir, "admin.kubeconfig"), "--server", s.URL}, args...)
	out, err := exec.CommandContext(ctx, "nsenter", all...).CombinedOutput()
	return string(out), err
}

// LogTail is the last n bytes of the server's log.
func (s *ServerProc) LogTail(n int) string {
	b, _ := os.ReadFile(s.Log)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// stop ends the server with SIGTERM (SIGKILL after 20 s) and logs its
// tail when the test failed.
func (s *ServerProc) stop(t harness.T) {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.Stop()
	if t.Failed() {
		t.Logf("server %s log (tail):\n%s", s.Name, s.LogTail(6000))
	}
}
