package storage

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
)

// EmbeddedConfig configures an in-process etcd member.
type EmbeddedConfig struct {
	// Dir holds the member's data (wal and snapshots).
	Dir string
	// ClientURL and PeerURL are the listen/advertise URLs, e.g.
	// http://127.0.0.1:2379. Tests pass free ports.
	ClientURL string
	PeerURL   string
	// Name of the member; defaults to "skiff".
	Name string
	// AutoCompactionRetention keeps this much history (periodic mode).
	// Zero means five minutes, as kube-apiserver compacts.
	AutoCompactionRetention time.Duration
	Logger                  *slog.Logger
	// LogLevel of etcd's own logger; default "error".
	LogLevel string
	// ClientTLS and PeerTLS, when set, serve the client and peer URLs
	// (then https) with mutual TLS: a client or peer must present a
	// certificate signed by TrustedCAFile. etcd reads the files on each
	// handshake, so rotated certificates take effect without a restart.
	ClientTLS, PeerTLS *TLSFiles
	// InitialCluster is the member list a new member starts with
	// ("name=peerURL,..."); empty = this member alone, a new cluster.
	// With InitialClusterExisting the member joins a running cluster that
	// already added it (MemberAdd). Both are ignored once Dir holds data.
	InitialCluster         string
	InitialClusterExisting bool
	// ReadyTimeout bounds the wait for the member to serve (default 60s).
	ReadyTimeout time.Duration
	// UnsafeNoFsync skips fsync of the WAL and the backend: a crash of
	// the machine (not of the process) can lose acknowledged writes. For
	// test servers, whose fsyncs otherwise wait behind whatever else
	// the machine writes (a 7 s stall timed a write out in CI).
	UnsafeNoFsync bool
}

// TLSFiles are a member's certificate, key and the CA its clients' (or
// peers') certificates must chain to.
type TLSFiles struct {
	CertFile, KeyFile, TrustedCAFile string
}

func (f *TLSFiles) info() transport.TLSInfo {
	return transport.TLSInfo{CertFile: f.CertFile, KeyFile: f.KeyFile, TrustedCAFile: f.TrustedCAFile, ClientCertAuth: true}
}

// Embedded is a running in-process etcd member.
type Embedded struct {
	etcd      *embed.Etcd
	endpoints []string
	closed    bool

	clientOnce sync.Once
	client     *clientv3.Client
}

// StartEmbedded starts etcd and waits until it serves clients.
func StartEmbedded(ctx context.Context, cfg EmbeddedConfig) (*Embedded, error) {
	if cfg.Name == "" {
		cfg.Name = "skiff"
	}
	if cfg.AutoCompactionRetention == 0 {
		cfg.AutoCompactionRetention = 5 * time.Minute
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create etcd dir: %w", err)
	}
	ec := embed.NewConfig()
	ec.Name = cfg.Name
	ec.Dir = filepath.Clean(cfg.Dir)
	cu, err := url.Parse(cfg.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("etcd client url: %w", err)
	}
	pu, err := url.Parse(cfg.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("etcd peer url: %w", err)
	}
	ec.ListenClientUrls = []url.URL{*cu}
	ec.AdvertiseClientUrls = []url.URL{*cu}
	ec.ListenPeerUrls = []url.URL{*pu}
	ec.AdvertisePeerUrls = []url.URL{*pu}
	if cfg.ClientTLS != nil {
		ec.ClientTLSInfo = cfg.ClientTLS.info()
	}
	if cfg.PeerTLS != nil {
		ec.PeerTLSInfo = cfg.PeerTLS.info()
	}
	ec.InitialCluster = fmt.Sprintf("%s=%s", cfg.Name, pu.String())
	if cfg.InitialCluster != "" {
		ec.InitialCluster = cfg.InitialCluster
	}
	if cfg.InitialClusterExisting {
		ec.ClusterState = embed.ClusterStateFlagExisting
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 60 * time.Second
	}
	ec.AutoCompactionMode = "periodic"
	ec.AutoCompactionRetention = cfg.AutoCompactionRetention.String()
	ec.LogLevel = "error"
	if cfg.LogLevel != "" {
		ec.LogLevel = cfg.LogLevel
	}
	ec.Logger = "zap"
	ec.LogOutputs = []string{"stderr"}
	// Kubernetes objects can be large; allow 3 MiB requests as kube-apiserver's etcd.
	ec.MaxRequestBytes = 3 << 20
	ec.QuotaBackendBytes = 8 << 30
	ec.UnsafeNoFsync = cfg.UnsafeNoFsync
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("start etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd failed: %w", err)
	case <-time.After(cfg.ReadyTimeout):
		e.Close()
		return nil, fmt.Errorf("etcd did not become ready in %s", cfg.ReadyTimeout)
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	}
	return &Embedded{etcd: e, endpoints: []string{cu.String()}}, nil
}

// Endpoints returns the client URLs of the member.
func (e *Embedded) Endpoints() []string { return e.endpoints }

// Client returns an in-process client of the member: its calls go straight
// to the etcd server's gRPC service implementations, with no TLS, HTTP/2
// framing, protobuf marshalling or socket in between, and without the
// client certificate the network port demands. It is what a process that
// embeds etcd should use itself (KV, Txn, Watch with progress requests,
// Lease, Compact, Snapshot, Status); other processes go through
// Endpoints. The member owns the client: Close closes it, callers must
// not.
func (e *Embedded) Client() *clientv3.Client {
	e.clientOnce.Do(func() { e.client = v3client.New(e.etcd.Server) })
	return e.client
}

// HasLeader reports whether the member knows a leader of its cluster
// (itself included). A member cut off from a majority loses its leader
// after an election timeout.
func (e *Embedded) HasLeader() bool { return e.etcd.Server.Leader() != 0 }

// Close stops etcd. Close network clients first: with a client still
// connected etcd waits several seconds for it. The in-process Client is
// closed here, before the member. Safe to call more than once.
func (e *Embedded) Close() {
	if e == nil || e.closed {
		return
	}
	e.closed = true
	e.clientOnce.Do(func() {}) // orders the read of e.client after Client's write
	if e.client != nil {
		_ = e.client.Close()
	}
	e.etcd.Close()
}
