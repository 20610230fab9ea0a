package bench

import (
	"bufio"
	"context"
	"fmt"
	"github.com/skiffhq/skiff/internal/freeport"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/skiffhq/skiff/controlplane/etcdclient"
	"github.com/skiffhq/skiff/server"
	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// target is the server under test.
type target struct {
	name string
	cfg  *rest.Config
	// etcd is a client of the server's own etcd, nil unless embedded.
	etcd    *clientv3.Client
	srv     *server.Server
	dataDir string
	// dials counts the TCP connections the benchmark clients opened.
	dials atomic.Int64
	// protobuf: clients send and accept Kubernetes protobuf.
	protobuf bool
}

func (t *target) close() {
	if t.etcd != nil {
		_ = t.etcd.Close()
	}
	if t.srv != nil {
		t.srv.Stop()
	}
	if t.dataDir != "" {
		_ = os.RemoveAll(t.dataDir)
	}
}

// startEmbedded starts an in-process Skiff server on free loopback ports
// with a temporary data directory, and opens its own client of the
// server's etcd for the raw comparison.
func startEmbedded(ctx context.Context, logw io.Writer) (_ *target, err error) {
	dir, err := os.MkdirTemp("", "skiff-bench-")
	if err != nil {
		return nil, fmt.Errorf("temp data dir: %w", err)
	}
	t := &target{name: "skiff-embedded", dataDir: dir}
	defer func() {
		if err != nil {
			t.close()
		}
	}()
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	t.srv, err = server.Start(sctx, server.Config{
		DataDir:      dir,
		BindAddress:  "127.0.0.1",
		HTTPSPort:    port,
		DisableAgent: true,
		Logger:       slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return nil, fmt.Errorf("start embedded server: %w", err)
	}
	t.cfg, err = t.srv.AdminConfig()
	if err != nil {
		return nil, fmt.Errorf("admin config: %w", err)
	}
	// The embedded etcd wants a client certificate of its own CA: the one
	// the server records for the operator commands.
	info, err := etcdclient.Read(dir)
	if err != nil {
		return nil, fmt.Errorf("etcd client record: %w", err)
	}
	tlsCfg, err := info.TLS()
	if err != nil {
		return nil, err
	}
	t.etcd, err = clientv3.New(clientv3.Config{
		Endpoints:          info.Endpoints,
		TLS:                tlsCfg,
		DialTimeout:        10 * time.Second,
		MaxCallRecvMsgSize: 1 << 30,
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	return t, nil
}

// fromKubeconfig targets the cluster a kubeconfig points at.
func fromKubeconfig(path string) (*target, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", path, err)
	}
	return &target{name: "kubeconfig", cfg: cfg}, nil
}

// restConfig returns a copy of the target's config for one benchmark
// client: JSON (or protobuf, see Options.ContentType) on the wire, no client-side rate limit, and (when own is
// true) its own transport, so it gets its own TCP/HTTP2 connection.
func (t *target) restConfig(own bool) *rest.Config {
	c := rest.CopyConfig(t.cfg)
	c.QPS, c.Burst = -1, 0
	c.ContentType = "application/json"
	c.AcceptContentTypes = "application/json"
	if t.protobuf {
		c.ContentType = "application/vnd.kubernetes.protobuf"
		c.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	}
	c.UserAgent = "skiff-bench"
	c.Timeout = 0
	if own {
		// A Dial function makes client-go skip its transport cache.
		d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
		c.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			t.dials.Add(1)
			return d.DialContext(ctx, network, addr)
		}
	}
	return c
}

// clientset builds a typed client with its own connection, and opens
// that connection: requests started together on a transport without one
// would each dial their own.
func (t *target) clientset(ctx context.Context) (*kubernetes.Clientset, error) {
	c := t.restConfig(true)
	hc, err := rest.HTTPClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("http client: %w", err)
	}
	cs, err := kubernetes.NewForConfigAndClient(c, hc)
	if err != nil {
		return nil, fmt.Errorf("clientset: %w", err)
	}
	if _, err := cs.Discovery().RESTClient().Get().AbsPath("/version").DoRaw(ctx); err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	return cs, nil
}

func freePort() (int, error) { return freeport.On() }

// readRSS returns VmRSS of /proc/<pid>/status in MiB ("self" for this
// process).
func readRSS(pid string) (float64, error) {
	f, err := os.Open("/proc/" + pid + "/status")
	if err != nil {
		return 0, fmt.Errorf("read rss: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "VmRSS:") {
			continue
		}
		fields := strings.Fields(strings.TrimPrefix(line, "VmRSS:"))
		if len(fields) < 1 {
			break
		}
		kb, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return 0, fmt.Errorf("parse VmRSS %q: %w", line, err)
		}
		return round3(kb / 1024), nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read rss: %w", err)
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%s/status", pid)
}

// LoadAvg returns the 1-minute load average (0 when unknown); benchmark
// results record it beside their numbers.
func LoadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// processCPU returns the user+system CPU time of this process.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
