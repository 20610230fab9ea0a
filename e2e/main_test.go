// Package e2e runs the real kubectl (/usr/bin/kubectl) against a real
// `bin/skiff server` process started by the tests.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testserver"
)

// cluster is a `skiff server` subprocess.
type cluster struct {
	dir        string
	kubeconfig string
	cmd        *exec.Cmd
	log        *bytes.Buffer
}

func skiffBin(t *testing.T) string {
	t.Helper()
	return builtBin(t, "SKIFF_BIN", "skiff", "run make build")
}

// builtBin is the binary the variable env names, else bin/<name> of the
// repository, which must exist (how says what builds it).
func builtBin(t *testing.T, env, name, how string) string {
	t.Helper()
	if b := os.Getenv(env); b != "" {
		return b
	}
	b, err := filepath.Abs("../bin/" + name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(b); err != nil {
		t.Fatalf("bin/%s not built (%s): %v", name, how, err)
	}
	return b
}

func kubectlBin(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatal("kubectl is not installed")
	}
	return p
}

func freePort(t *testing.T) int {
	t.Helper()
	// Below the kernel's ephemeral range: a server's own port-0
	// listeners (its etcd) cannot take it before the server binds it.
	return testserver.SharedPort(t, "127.0.0.1")
}

// startCluster runs `skiff server` on free ports and waits for /readyz.
func startCluster(t *testing.T, extra ...string) *cluster {
	t.Helper()
	return startClusterIn(t, t.TempDir(), extra...)
}

// startClusterIn runs `skiff server` with data dir dir.
func startClusterIn(t *testing.T, dir string, extra ...string) *cluster {
	t.Helper()
	args := append([]string{"server", "--data-dir", dir, "--bind-address", "127.0.0.1",
		"--https-listen-port", fmt.Sprint(freePort(t)), "--etcd-client-port", "0", "--etcd-peer-port", "0",
		"--disable-agent", "--ingress-http-port", "0", "--ingress-https-port", "0"}, extra...)
	return startServer(t, dir, args...)
}

// startServer runs `skiff <args>` (a server with data dir dir) and waits
// for /readyz through the admin kubeconfig it writes.
func startServer(t *testing.T, dir string, args ...string) *cluster {
	t.Helper()
	c := &cluster{dir: dir, kubeconfig: filepath.Join(dir, "admin.kubeconfig"), log: &bytes.Buffer{}}
	c.cmd = exec.Command(skiffBin(t), args...)
	c.cmd.Stdout = c.log
	c.cmd.Stderr = c.log
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.stop()
		if t.Failed() {
			t.Logf("server log:\n%s", tail(c.log.String(), 4000))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(c.kubeconfig); err == nil {
			out, err := c.run("get", "--raw", "/readyz")
			if err == nil && strings.TrimSpace(out) == "ok" {
				return c
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("server not ready in 60s; log:\n%s", c.log.String())
	return nil
}

// stop sends SIGTERM and waits for the process; it returns the exit error.
func (c *cluster) stop() error {
	if c.cmd.ProcessState != nil {
		return nil
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
		return fmt.Errorf("server did not exit within 20s of SIGTERM")
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// run runs kubectl and returns combined output.
func (c *cluster) run(args ...string) (string, error) {
	return c.runIn("", nil, args...)
}

func (c *cluster) runIn(stdin string, env []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", c.kubeconfig}, args...)...)
	cmd.Env = append(append(os.Environ(), "HOME="+c.dir), env...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return out.String(), err
}

// k runs kubectl and fails the test on error.
func (c *cluster) k(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.run(args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// kIn runs kubectl with stdin.
func (c *cluster) kIn(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := c.runIn(stdin, nil, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// kFail runs kubectl expecting failure and returns the output.
func (c *cluster) kFail(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.run(args...)
	if err == nil {
		t.Fatalf("kubectl %s: expected failure, got:\n%s", strings.Join(args, " "), out)
	}
	return out
}

// eventually retries fn until it returns "" or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, fn func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		if last = fn(); last == "" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("condition not met in %s: %s", timeout, last)
}

func TestMain(m *testing.M) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: kubectl not found; install it (deploy/install-deps.sh)")
		os.Exit(1)
	}
	os.Exit(m.Run())
}
