package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/skiffhq/skiff/addons/federation"
	"github.com/skiffhq/skiff/controlplane/leaderelect"
	"github.com/skiffhq/skiff/internal/testserver"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestRunElected: two standalone federation controllers against one host
// (two `skiff federation` processes) — only the Lease holder runs; when
// it stops it releases the Lease and the other takes over.
func TestRunElected(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	host := testserver.Start(t)
	type instance struct {
		id     string
		fed    *federation.Controller
		cancel context.CancelFunc
		done   chan error
	}
	start := func(id string) *instance {
		fed, err := federation.New(federation.Options{Config: host.Config, Registerer: prometheus.NewRegistry(),
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		ictx, icancel := context.WithCancel(ctx)
		in := &instance{id: id, fed: fed, cancel: icancel, done: make(chan error, 1)}
		le := leaderelect.Config{Client: host.Client.CoordinationV1(), Namespace: metav1.NamespaceSystem, Name: federation.LeaseName,
			Identity: id, LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 250 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
		go func() { in.done <- federation.RunElected(ictx, fed, le) }()
		t.Cleanup(func() { icancel(); <-in.done })
		return in
	}
	a, b := start("a"), start("b")
	holder := func() (string, error) {
		l, err := host.Client.CoordinationV1().Leases(metav1.NamespaceSystem).Get(ctx, federation.LeaseName, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		if l.Spec.HolderIdentity == nil {
			return "", nil
		}
		return *l.Spec.HolderIdentity, nil
	}
	var leader, follower *instance
	eventually(t, "one federation controller leads and is ready", 30*time.Second, func() error {
		id, err := holder()
		if err != nil {
			return err
		}
		switch id {
		case a.id:
			leader, follower = a, b
		case b.id:
			leader, follower = b, a
		default:
			return fmt.Errorf("lease held by %q", id)
		}
		if !leader.fed.Ready() {
			return errors.New("leader not ready")
		}
		return nil
	})
	// The follower stays idle for several retry periods while the leader
	// renews.
	for i := 0; i < 8; i++ {
		if follower.fed.Ready() {
			t.Fatalf("follower %s runs while %s holds the lease", follower.id, leader.id)
		}
		time.Sleep(250 * time.Millisecond)
	}
	leader.cancel()
	select {
	case err := <-leader.done:
		if err != nil {
			t.Fatalf("leader's RunElected after cancel: %v", err)
		}
		leader.done <- nil // for the cleanup
	case <-time.After(30 * time.Second):
		t.Fatal("leader did not stop")
	}
	if leader.fed.Ready() {
		t.Fatal("stopped leader still reports ready")
	}
	eventually(t, "the follower takes over", 30*time.Second, func() error {
		id, err := holder()
		if err != nil {
			return err
		}
		if id != follower.id {
			return fmt.Errorf("lease held by %q, want %q", id, follower.id)
		}
		if !follower.fed.Ready() {
			return errors.New("new leader not ready")
		}
		return nil
	})
}
