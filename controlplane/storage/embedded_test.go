package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func freeURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "http://" + l.Addr().String()
}

// TestEmbeddedClientInProcess: the embedded member's Client works with its
// client port closed, so it cannot be a network client. It covers what the
// server uses: the Store's KV and Txn operations with their sentinel errors,
// the watch cache (events and a progress request that moves its revision
// past a write outside the registry), leases, compaction, snapshots and
// status.
func TestEmbeddedClientInProcess(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e, err := StartEmbedded(ctx, EmbeddedConfig{Dir: t.TempDir(), ClientURL: freeURL(t), PeerURL: freeURL(t), LogLevel: "fatal"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)

	// Close the client port: nothing can reach the member over the network.
	for _, l := range e.etcd.Clients {
		_ = l.Close()
	}
	u, err := url.Parse(e.Endpoints()[0])
	if err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", u.Host, time.Second); err == nil {
		c.Close()
		t.Fatalf("client port %s still accepts connections", u.Host)
	}

	cli := e.Client()
	if cli != e.Client() {
		t.Fatal("Client returned a second client")
	}
	if cli.ActiveConnection() != nil {
		t.Fatal("Client has a gRPC connection: it is a network client")
	}
	st := NewStore(cli, nil)
	if err := st.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}

	cache := NewCache(st, CacheOptions{})
	const prefix = RegistryPrefix + "configmaps/"
	cache.Register(prefix, nil)
	cctx, stopCache := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = cache.Run(cctx)
	}()
	t.Cleanup(func() { stopCache(); <-done })
	select {
	case <-cache.Ready():
	case <-ctx.Done():
		t.Fatal("watch cache did not load")
	}
	w, err := cache.Watch(prefix, WatchOptions{FromRev: cache.Rev()})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	key := prefix + "default/a"
	rev1, err := st.Create(ctx, key, []byte("v1"))
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if _, err := st.Create(ctx, key, []byte("again")); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
	rev2, _, err := st.Update(ctx, key, []byte("v2"), rev1)
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	if _, cur, err := st.Update(ctx, key, []byte("stale"), rev1); !errors.Is(err, ErrConflict) || string(cur.Value) != "v2" || cur.ModRev != rev2 {
		t.Fatalf("stale update: %v %+v, want ErrConflict with the current value", err, cur)
	}
	if kv, err := st.Get(ctx, key); err != nil || string(kv.Value) != "v2" || kv.CreateRev != rev1 {
		t.Fatalf("get: %v %+v", err, kv)
	}
	if _, err := st.Create(ctx, prefix+"default/big", make([]byte, 4<<20)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("create of 4 MiB: %v, want ErrTooLarge", err)
	}
	for _, want := range []struct {
		typ EventType
		rev int64
	}{{Added, rev1}, {Modified, rev2}} {
		select {
		case ev, ok := <-w.Events():
			if !ok || ev.Type != want.typ || ev.Rev != want.rev || ev.Object.Key != key {
				t.Fatalf("watch event %v %+v, want %s at %d", ok, ev, want.typ, want.rev)
			}
		case <-ctx.Done():
			t.Fatalf("no %s event", want.typ)
		}
	}

	// A write outside the registry moves etcd's revision but sends the
	// cache's watch no event: only a progress notification on that watch
	// lets a consistent read catch up (the cache gives up after 3 s).
	put, err := cli.Put(ctx, "/not-registry/x", "y")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := cache.WaitFresh(ctx); err != nil || got < put.Header.Revision {
		t.Fatalf("consistent read after a write outside the registry: rev %d, %v; want >= %d", got, err, put.Header.Revision)
	}

	// Leases (the migrations lock uses a session).
	lease, err := cli.Grant(ctx, 30)
	if err != nil {
		t.Fatalf("grant: %v", err)
	}
	if _, err := cli.Put(ctx, "/leased", "x", clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.KeepAliveOnce(ctx, lease.ID); err != nil {
		t.Fatalf("keepalive: %v", err)
	}
	if _, err := cli.Revoke(ctx, lease.ID); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if resp, err := cli.Get(ctx, "/leased"); err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("leased key after revoke: %v %v", err, resp)
	}

	// Compaction: reads below it are gone (410 in the API).
	if err := st.Compact(ctx, rev2); err != nil {
		t.Fatalf("compact: %v", err)
	}
	if _, err := st.List(ctx, prefix, "", rev1, 0); !errors.Is(err, ErrExpired) {
		t.Fatalf("list below the compacted revision: %v, want ErrExpired", err)
	}
	if _, err := cli.Get(ctx, key, clientv3.WithRev(rev1)); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("get below the compacted revision: %v", err)
	}

	// Maintenance: status and a snapshot (scheduled snapshots).
	status, err := cli.Status(ctx, e.Endpoints()[0])
	if err != nil || status.Header.Revision < put.Header.Revision {
		t.Fatalf("status: %v %+v", err, status)
	}
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	n, err := io.Copy(io.Discard, rc)
	rc.Close()
	if err != nil || n == 0 {
		t.Fatalf("snapshot: %d bytes, %v", n, err)
	}

	// Close stops the cache's watch and closes the client before the member
	// (twice is safe).
	stopCache()
	<-done
	e.Close()
	e.Close()
	if _, err := cli.Get(context.Background(), key); err == nil {
		t.Fatal("get after Close succeeded")
	}
}

// TestStartEmbeddedPortTaken: a taken port fails with an error that is
// syscall.EADDRINUSE, which the server relies on to pick ports again.
func TestStartEmbeddedPortTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := StartEmbedded(ctx, EmbeddedConfig{Dir: t.TempDir(), ClientURL: "http://" + l.Addr().String(), PeerURL: freeURL(t), LogLevel: "fatal"})
	if err == nil {
		e.Close()
		t.Fatal("etcd started on a taken port")
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("error %v (%T) is not EADDRINUSE", err, err)
	}
}

func TestQuorumErrors(t *testing.T) {
	// Refused before proposing: nothing stored, for reads and writes.
	for _, err := range []error{rpctypes.ErrNoLeader, rpctypes.Error(rpctypes.ErrGRPCNoLeader), rpctypes.ErrGRPCNoLeader, rpctypes.ErrGRPCNotCapable} {
		for _, op := range []string{"create", "update", "delete", "get", "list"} {
			if w := wrapErr(op, "/k", err); !errors.Is(w, ErrUnavailable) || errors.Is(w, ErrUncertain) {
				t.Errorf("%s: %v wraps to %v, want ErrUnavailable", op, err, w)
			}
		}
	}
	// Proposed but not confirmed: a write's outcome is unknown, a read
	// simply failed.
	for _, err := range []error{rpctypes.ErrTimeout, rpctypes.ErrGRPCTimeout, rpctypes.ErrGRPCTimeoutDueToLeaderFail, rpctypes.ErrLeaderChanged,
		rpctypes.Error(rpctypes.ErrGRPCTimeoutDueToConnectionLost), status.Error(codes.Unavailable, "etcdserver: some new reason")} {
		for _, op := range []string{"create", "update", "delete"} {
			if w := wrapErr(op, "/k", err); !errors.Is(w, ErrUncertain) || errors.Is(w, ErrUnavailable) {
				t.Errorf("%s: %v wraps to %v, want ErrUncertain", op, err, w)
			}
		}
		if w := wrapErr("get", "/k", err); !errors.Is(w, ErrUnavailable) {
			t.Errorf("get: %v wraps to %v, want ErrUnavailable", err, w)
		}
	}
	if w := wrapErr("update", "/k", context.DeadlineExceeded); !errors.Is(w, ErrUncertain) {
		t.Errorf("a write past its deadline wraps to %v, want ErrUncertain", w)
	}
	for _, err := range []error{rpctypes.ErrGRPCCompacted, rpctypes.ErrKeyNotFound, errors.New("etcdserver: request timed out (but not etcd's)")} {
		if w := wrapErr("create", "/k", err); errors.Is(w, ErrUnavailable) || errors.Is(w, ErrUncertain) {
			t.Errorf("%v wraps to %v", err, w)
		}
	}
	if w := wrapErr("get", "/k", context.DeadlineExceeded); errors.Is(w, ErrUnavailable) || errors.Is(w, ErrUncertain) {
		t.Errorf("a read past its deadline wraps to %v", w)
	}
}

// TestLeaderCheckRefusesWrites: with the leader check saying "no
// leader", every write fails with ErrUnavailable before reaching etcd,
// and nothing is stored; reads still go through. A single member is its
// own leader, so the real check lets writes through.
func TestLeaderCheckRefusesWrites(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e := startTestMember(ctx, t)
	if !e.HasLeader() {
		t.Fatal("a single started member reports no leader")
	}
	s := NewStore(e.Client(), nil)
	s.SetLeaderCheck(e.HasLeader)
	rev, err := s.Create(ctx, "/k/a", []byte("1"))
	if err != nil {
		t.Fatalf("create with a leader: %v", err)
	}

	s.SetLeaderCheck(func() bool { return false })
	checkWritesRefused(ctx, t, s, rev, ErrUnavailable, "without a leader")
}

// startTestMember starts a single embedded member for t.
func startTestMember(ctx context.Context, t *testing.T) *Embedded {
	t.Helper()
	e, err := StartEmbedded(ctx, EmbeddedConfig{Dir: t.TempDir(), ClientURL: freeURL(t), PeerURL: freeURL(t), LogLevel: "fatal"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// checkWritesRefused: with /k/a stored at rev as "1", every kind of write
// fails with want and stores nothing, and reads still work.
func checkWritesRefused(ctx context.Context, t *testing.T, s *Store, rev int64, want error, when string) {
	t.Helper()
	if _, err := s.Create(ctx, "/k/b", []byte("1")); !errors.Is(err, want) {
		t.Errorf("create %s: %v, want %v", when, err, want)
	}
	if _, err := s.CreateGuarded(ctx, "/k/b", []byte("1"), "/k/a", rev); !errors.Is(err, want) {
		t.Errorf("guarded create %s: %v, want %v", when, err, want)
	}
	if _, _, err := s.Update(ctx, "/k/a", []byte("2"), rev); !errors.Is(err, want) {
		t.Errorf("update %s: %v, want %v", when, err, want)
	}
	if _, err := s.Delete(ctx, "/k/a", 0); !errors.Is(err, want) {
		t.Errorf("delete %s: %v, want %v", when, err, want)
	}
	kv, err := s.Get(ctx, "/k/a")
	if err != nil || string(kv.Value) != "1" || kv.ModRev != rev {
		t.Fatalf("read after refused writes: %+v, %v; want the first value at revision %d", kv, err, rev)
	}
	if l, err := s.List(ctx, "/k/", "", 0, 0); err != nil || len(l.KVs) != 1 {
		t.Fatalf("list after refused writes: %+v, %v", l, err)
	}
	if _, err := s.Get(ctx, "/k/b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused create was stored: %v", err)
	}
}

// walFsyncs is how many WAL fsyncs this process's etcd members have made
// (etcd counts them in the default Prometheus registry).
func walFsyncs(t *testing.T) uint64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "etcd_disk_wal_fsync_duration_seconds" {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	t.Fatal("etcd_disk_wal_fsync_duration_seconds is not registered")
	return 0
}

// TestEmbeddedUnsafeNoFsync: writes to a member started with
// UnsafeNoFsync make no WAL fsync; the same writes to a default member do.
func TestEmbeddedUnsafeNoFsync(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	fsyncsFor := func(noFsync bool) uint64 {
		e, err := StartEmbedded(ctx, EmbeddedConfig{Dir: t.TempDir(), ClientURL: freeURL(t), PeerURL: freeURL(t), LogLevel: "fatal", UnsafeNoFsync: noFsync})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		before := walFsyncs(t)
		for i := range 20 {
			if _, err := e.Client().Put(ctx, fmt.Sprintf("/k/%d", i), "v"); err != nil {
				t.Fatal(err)
			}
		}
		return walFsyncs(t) - before
	}
	if n := fsyncsFor(true); n != 0 {
		t.Errorf("UnsafeNoFsync: 20 writes made %d WAL fsyncs, want 0", n)
	}
	if n := fsyncsFor(false); n < 20 {
		t.Errorf("default: 20 writes made %d WAL fsyncs, want one each at least", n)
	}
}
