package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

// TestKeepRunning: a loop that fails is run again (an elected server must
// not hold a Lease with its loop stopped); one that finishes is not; the
// end of the context ends the retries.
func TestKeepRunning(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		keepRunning(ctx, log, "test", time.Millisecond, func(ctx context.Context) error {
			if calls.Add(1) < 3 {
				return errors.New("informers did not sync")
			}
			<-ctx.Done()
			return ctx.Err()
		})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for calls.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("a loop failing twice was run %d times, want 3", n)
	}
	cancel()
	<-done

	calls.Store(0)
	keepRunning(context.Background(), log, "test", time.Millisecond, func(context.Context) error {
		calls.Add(1)
		return nil
	})
	if n := calls.Load(); n != 1 {
		t.Fatalf("a loop that finished was run %d times, want 1", n)
	}

	// Ended while waiting to retry: returns without another run.
	ctx2, cancel2 := context.WithCancel(context.Background())
	calls.Store(0)
	go func() {
		for calls.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel2()
	}()
	keepRunning(ctx2, log, "test", time.Hour, func(context.Context) error {
		calls.Add(1)
		return errors.New("fails")
	})
	if n := calls.Load(); n != 1 {
		t.Fatalf("run %d times after the context ended, want 1", n)
	}
}
