package leaderelect_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/leaderelect"
	"github.com/skiffhq/skiff/internal/testserver"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordclient "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

// terms records which candidate leads, in order, and catches overlap.
type terms struct {
	mu      sync.Mutex
	leading string
	starts  []string
	overlap []string
}

func (tr *terms) lead(id string) func(context.Context) {
	return func(ctx context.Context) {
		tr.mu.Lock()
		if tr.leading != "" {
			tr.overlap = append(tr.overlap, tr.leading+" and "+id)
		}
		tr.leading = id
		tr.starts = append(tr.starts, id)
		tr.mu.Unlock()
		<-ctx.Done()
		tr.mu.Lock()
		tr.leading = ""
		tr.mu.Unlock()
	}
}

func (tr *terms) snapshot() (string, []string, []string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.leading, append([]string(nil), tr.starts...), append([]string(nil), tr.overlap...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRunAgainAfterLoss: two candidates with Again on one Lease. One
// leads; when someone else takes the Lease, the leader's term ends
// (its context is cancelled and Run waits for it) and both campaign
// again, so a new term starts once the foreign holder's Lease expires.
// Terms never overlap. Without Again, losing the Lease returns ErrLost.
func TestRunAgainAfterLoss(t *testing.T) {
	s := testserver.Start(t)
	cs := s.Client.CoordinationV1()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := func(id string, again bool) leaderelect.Config {
		return leaderelect.Config{Client: cs, Namespace: "kube-system", Name: "probe", Identity: id, Again: again, Logger: quiet,
			LeaseDuration: 3 * time.Second, RenewDeadline: time.Second, RetryPeriod: 100 * time.Millisecond}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var tr terms
	var wg sync.WaitGroup
	runErrs := make(chan error, 2)
	for _, id := range []string{"a", "b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runErrs <- leaderelect.Run(ctx, cfg(id, true), tr.lead(id))
		}()
	}
	waitFor(t, "a first term", func() bool { l, _, _ := tr.snapshot(); return l != "" })
	first, _, _ := tr.snapshot()

	steal(ctx, t, cs)
	waitFor(t, "the first term to end", func() bool { l, _, _ := tr.snapshot(); return l == "" })
	waitFor(t, "a second term", func() bool { l, st, _ := tr.snapshot(); return l != "" && len(st) >= 2 })
	_, starts, overlap := tr.snapshot()
	if len(overlap) > 0 {
		t.Fatalf("terms overlapped: %v", overlap)
	}
	t.Logf("terms: %v (first %s)", starts, first)
	cancel()
	wg.Wait()
	for range 2 {
		if err := <-runErrs; err != nil {
			t.Fatalf("Run after ctx ended: %v, want nil", err)
		}
	}
	// The leader released the Lease on the way out (ReleaseOnCancel).
	got, err := cs.Leases("kube-system").Get(context.Background(), "probe", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := got.Spec.HolderIdentity; h != nil && *h != "" {
		t.Fatalf("lease still held by %q after both stopped", *h)
	}

	// Without Again, a lost Lease ends Run with ErrLost, after lead.
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	var tr2 terms
	done := make(chan error, 1)
	go func() { done <- leaderelect.Run(ctx2, cfg("c", false), tr2.lead("c")) }()
	waitFor(t, "c leads", func() bool { l, _, _ := tr2.snapshot(); return l == "c" })
	steal(ctx2, t, cs)
	select {
	case err := <-done:
		if !errors.Is(err, leaderelect.ErrLost) {
			t.Fatalf("Run without Again after the loss: %v, want ErrLost", err)
		}
		if l, _, _ := tr2.snapshot(); l != "" {
			t.Fatal("Run returned before lead did")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run without Again did not return after losing the Lease")
	}
}

// steal makes "intruder" the holder of the probe Lease for 3 s, as a
// server that lost quorum sees another take over.
func steal(ctx context.Context, t *testing.T, cs coordclient.LeasesGetter) {
	t.Helper()
	// The leader renews every RetryPeriod, so a read-modify-write can
	// meet a newer version: retry on conflict as any client would.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		lease, err := cs.Leases("kube-system").Get(ctx, "probe", metav1.GetOptions{})
		if err != nil {
			return err
		}
		lease.Spec.HolderIdentity = ptr.To("intruder")
		lease.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
		lease.Spec.LeaseDurationSeconds = ptr.To[int32](3)
		_, err = cs.Leases("kube-system").Update(ctx, lease, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
