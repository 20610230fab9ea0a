// Package testserver starts a real, in-process `skiff server` (embedded
// etcd on free ports, HTTPS API server) for integration tests.
package testserver

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/server"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Server is a started server with admin clients.
type Server struct {
	*server.Server
	Config  *rest.Config
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	DataDir string
}

// Option changes the server config before it starts.
type Option func(*server.Config)

// Start starts a server for t and stops it when the test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	dir := t.TempDir()
	cfg := server.Config{
		DataDir:        dir,
		BindAddress:    "127.0.0.1",
		HTTPSPort:      0,
		DisableAgent:   true,
		EtcdClientPort: 0,
		EtcdPeerPort:   0,
		Logger:         logger(),

		// The DNS add-on answers on a free loopback port (DNS().Addrs()).
		DNSListenAddress: "127.0.0.1:0",
	}
	for _, o := range opts {
		o(&cfg)
	}
	return StartWith(t, cfg)
}

// StartWith starts a server with an explicit config.
func StartWith(t testing.TB, cfg server.Config) *Server {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = logger()
	}
	if cfg.EtcdLogLevel == "" && os.Getenv("SKIFF_TEST_LOG") == "" {
		cfg.EtcdLogLevel = "fatal"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := server.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	t.Cleanup(s.Stop)
	rc, err := s.AdminConfig()
	if err != nil {
		t.Fatalf("admin config: %v", err)
	}
	rc.QPS, rc.Burst = -1, 0
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := dynamic.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return &Server{Server: s, Config: rc, Client: cs, Dynamic: dc, DataDir: cfg.DataDir}
}

func logger() *slog.Logger {
	if os.Getenv("SKIFF_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// SharedPort returns a TCP port free on every one of ips, for servers that
// each listen at their own loopback address on one port (as servers on
// separate machines would).
func SharedPort(t testing.TB, ips ...string) int {
	t.Helper()
	port, err := FreePortOn(ips...)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// FreePortOn is SharedPort for callers without a testing.TB. The port is
// free for TCP and UDP on every one of ips, and taken from below the
// kernel's ephemeral range (net.ipv4.ip_local_port_range): the kernel
// never hands such a port to a listener asking for port 0, so a server
// that binds some listeners on port 0 (its etcd, say) cannot take the
// port picked here before it binds it. (Picking with port 0 and closing,
// as before, let a server's etcd get the API port it was told to use.)
//
// A port is handed out once per process: a test that asks for several
// ports before it binds any (a server's API, dashboard and ingress ports,
// say) never gets the same one twice. (CI once gave the dashboard and the
// ingress the same port; the ingress then failed to bind.)
func FreePortOn(ips ...string) (int, error) {
	lo, hi := pickRange()
	handedMu.Lock()
	defer handedMu.Unlock()
	for range 500 {
		port := lo + rand.IntN(hi-lo)
		if handed[port] {
			continue
		}
		if freeOn(port, ips) {
			handed[port] = true
			return port, nil
		}
	}
	return 0, fmt.Errorf("no port in [%d, %d) free on every one of %v", lo, hi, ips)
}

var (
	handedMu sync.Mutex
	handed   = map[int]bool{} // ports FreePortOn returned in this process
)

// pickRange is the 10,000 ports below the ephemeral range (or, if that
// starts too low, ports above it).
func pickRange() (lo, hi int) {
	eph := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				eph = v
			}
			if eph < 11024 {
				if v, err := strconv.Atoi(f[1]); err == nil && v < 55000 {
					return v + 1, v + 10001
				}
			}
		}
	}
	if eph < 11024 {
		return 55000, 65000
	}
	return eph - 10000, eph
}

// freeOn reports whether port can be bound for TCP and UDP on every ip.
func freeOn(port int, ips []string) bool {
	for _, ip := range ips {
		addr := net.JoinHostPort(ip, strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err != nil {
			return false
		}
		u.Close()
	}
	return true
}
