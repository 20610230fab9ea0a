package multinode

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
)

// A private containerd serves one instance's agents when
// Options.PrivateContainerd is set, so a test can kill it (SIGKILL, as a
// crash) and start it again without touching the machine's containerd or
// other tests' containers. Its state (socket, tasks) is under
// /run/skiff-ctrd-mn<k> and its content and snapshots under
// /var/lib/skiff-ctrd-mn<k>: fixed places, so Clean finds a crashed run's.
func ctrdStateDir(k int) string { return fmt.Sprintf("/run/skiff-ctrd-mn%d", k) }
func ctrdRootDir(k int) string  { return fmt.Sprintf("/var/lib/skiff-ctrd-mn%d", k) }

// ContainerdAddress is the socket of instance k's private containerd.
func ContainerdAddress(k int) string { return filepath.Join(ctrdStateDir(k), "containerd.sock") }

type privateContainerd struct {
	k    int
	log  string
	cmd  *exec.Cmd
	done chan struct{}
}

// startContainerd starts instance k's containerd (its log appended to
// logPath) and waits until it answers.
func startContainerd(k int, logPath string) (*privateContainerd, error) {
	state := ctrdStateDir(k)
	if err := os.MkdirAll(state, 0o711); err != nil {
		return nil, fmt.Errorf("multinode: containerd: %w", err)
	}
	// CRI is off: the agents speak containerd's own API, and a second CRI
	// plugin would only compete for the machine's CNI configuration.
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
`, ctrdRootDir(k), state, ContainerdAddress(k), ContainerdAddress(k)+".ttrpc")
	cfgPath := filepath.Join(state, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, fmt.Errorf("multinode: containerd: %w", err)
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("multinode: containerd: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command("containerd", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("multinode: containerd: %w", err)
	}
	p := &privateContainerd{k: k, log: logPath, cmd: cmd, done: make(chan struct{})}
	_ = os.WriteFile(filepath.Join(state, "containerd.pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := ping(ContainerdAddress(k)); err == nil {
			return p, nil
		} else if time.Now().After(deadline) {
			p.kill()
			return nil, fmt.Errorf("multinode: containerd did not answer at %s: %w", ContainerdAddress(k), err)
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("multinode: containerd exited at start (log: %s)", logPath)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func ping(addr string) error {
	if _, err := os.Stat(addr); err != nil {
		return err
	}
	cl, err := containerd.New(addr, containerd.WithTimeout(2*time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = cl.Version(ctx)
	return err
}

// kill ends containerd with SIGKILL, as a crash: the shims and the
// containers they run stay.
func (p *privateContainerd) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// KillContainerd kills the cluster's private containerd with SIGKILL.
func (c *Cluster) KillContainerd() error {
	if c.ctrd == nil {
		return errors.New("multinode: the cluster has no private containerd")
	}
	c.ctrd.kill()
	return nil
}

// RestartContainerd starts the private containerd again after
// KillContainerd, on the same state.
func (c *Cluster) RestartContainerd() error {
	if c.ctrd == nil {
		return errors.New("multinode: the cluster has no private containerd")
	}
	select {
	case <-c.ctrd.done:
	default:
		return errors.New("multinode: containerd is still running")
	}
	p, err := startContainerd(c.ctrd.k, c.ctrd.log)
	if err != nil {
		return err
	}
	c.ctrd = p
	return nil
}

// cleanContainerd removes what instance k's private containerd holds and
// then the containerd itself: a crashed run's is started again if needed,
// so that its containers are deleted through it (their shims exit), then
// it is stopped, its mounts detached and its folders removed.
func cleanContainerd(ctx context.Context, k int) error {
	state, root := ctrdStateDir(k), ctrdRootDir(k)
	if _, err := os.Stat(state); os.IsNotExist(err) {
		if _, err := os.Stat(root); os.IsNotExist(err) {
			return nil
		}
	}
	var errs []error
	var started *privateContainerd
	if ping(ContainerdAddress(k)) != nil {
		p, err := startContainerd(k, filepath.Join(os.TempDir(), fmt.Sprintf("skiff-ctrd-mn%d-clean.log", k)))
		if err != nil {
			errs = append(errs, err)
		}
		started = p
	}
	if ping(ContainerdAddress(k)) == nil {
		if err := removeContainers(ctx, ContainerdAddress(k), ""); err != nil {
			errs = append(errs, err)
		}
	}
	if started != nil {
		started.kill()
	}
	if b, err := os.ReadFile(filepath.Join(state, "containerd.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.HasPrefix(string(cmdline), "containerd\x00") {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				for i := 0; i < 50; i++ {
					if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		}
	}
	for _, d := range []string{state, root} {
		unmountUnder(d)
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, fmt.Errorf("multinode: containerd: %w", err))
		}
	}
	return errors.Join(errs...)
}
