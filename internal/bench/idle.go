package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"time"
)

// ServerIdleRSS starts bin as `skiff server` on loopback with free ports, a
// temporary data directory and no node agent, waits until it is ready and
// then settle longer, and reads its resident memory: what a user sees for
// an idle, empty control plane with its add-ons.
func ServerIdleRSS(ctx context.Context, bin string, settle time.Duration) (*RSSInfo, error) {
	dir, err := os.MkdirTemp("", "skiff-bench-idle-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	ports := make([]int, 4)
	for i := range ports {
		if ports[i], err = freeLoopbackPort(); err != nil {
			return nil, err
		}
	}
	cmd := exec.CommandContext(ctx, bin, "server", "--data-dir", dir, "--disable-agent",
		"--bind-address", "127.0.0.1", "--https-listen-port", strconv.Itoa(ports[0]),
		"--etcd-client-port", "0", "--etcd-peer-port", "0",
		"--dashboard-port", strconv.Itoa(ports[1]), "--dns-port", strconv.Itoa(ports[2]),
		"--ingress-http-port", strconv.Itoa(ports[3]), "--ingress-https-port", "0",
		"--ingress-access-log", "", "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s server: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	url := fmt.Sprintf("https://127.0.0.1:%d/readyz", ports[0])
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := hc.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-exited:
			return nil, fmt.Errorf("%s server exited before ready: %v", bin, err)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, errors.New("skiff server not ready within 60s")
		}
	}
	select {
	case err := <-exited:
		return nil, fmt.Errorf("%s server exited: %v", bin, err)
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(settle):
	}
	pid := strconv.Itoa(cmd.Process.Pid)
	mib, err := readRSS(pid)
	if err != nil {
		return nil, err
	}
	return &RSSInfo{
		MiB:    mib,
		Source: "/proc/" + pid + "/status VmRSS of " + bin + " server",
		Note: fmt.Sprintf("a separate `skiff server` process (etcd, API server, scheduler, controllers, DNS, ingress, metrics, dashboard; no node agent), empty cluster, %s after ready",
			settle),
	}, nil
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
