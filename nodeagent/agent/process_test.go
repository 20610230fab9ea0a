package agent

import (
	"context"
	"io"
	"log/slog"
	"runtime/debug"
	"testing"
)

// TestTuneProcess: without GOGC the heap goal becomes agentGCPercent; a
// GOGC the operator set is left alone.
func TestTuneProcess(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // ends the pending page release
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)

	t.Setenv("GOGC", "")
	TuneProcess(ctx, log)
	if got := debug.SetGCPercent(100); got != agentGCPercent {
		t.Fatalf("GC percent after TuneProcess = %d, want %d", got, agentGCPercent)
	}
	t.Setenv("GOGC", "100")
	TuneProcess(ctx, log)
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GC percent with GOGC=100 set = %d, want it left at 100", got)
	}
}
