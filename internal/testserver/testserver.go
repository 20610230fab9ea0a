// Package testserver starts a real, in-process `skiff server` (embedded
// etcd on free ports, HTTPS API server) for integration tests.
package testserver

import (
	"context"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/skiffhq/skiff/internal/freeport"
	"github.com/skiffhq/skiff/internal/harness"
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
func Start(t harness.T, opts ...Option) *Server {
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
func StartWith(t harness.T, cfg server.Config) *Server {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = logger()
	}
	if cfg.EtcdLogLevel == "" && os.Getenv("SKIFF_TEST_LOG") == "" {
		cfg.EtcdLogLevel = "fatal"
	}
	// A test's etcd skips fsync: its writes then do not wait behind the
	// machine's other disk writes (other tests, the linker), which once
	// held one past etcd's 7 s request timeout. Durability across a
	// machine crash is no test's subject; SKIFF_TEST_FSYNC=1 keeps it.
	if os.Getenv("SKIFF_TEST_FSYNC") == "" {
		cfg.EtcdUnsafeNoFsync = true
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
func SharedPort(t harness.T, ips ...string) int {
	t.Helper()
	port, err := FreePortOn(ips...)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// FreePortOn is SharedPort for callers without a harness.T; see
// internal/freeport.
func FreePortOn(ips ...string) (int, error) { return freeport.On(ips...) }
