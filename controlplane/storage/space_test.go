package storage

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeGuard is a SpaceGuard over a settable free-space figure.
func fakeGuard(free *atomic.Uint64, statErr *atomic.Bool) *SpaceGuard {
	g := NewSpaceGuard("/data", 100<<20, nil)
	g.statfs = func(string) (uint64, uint64, error) {
		if statErr != nil && statErr.Load() {
			return 0, 0, errors.New("statfs failed")
		}
		return free.Load(), 1 << 30, nil
	}
	return g
}

// TestSpaceGuard: writes pass with the reserve free, are refused below it
// with a message naming the directory, the free space and the reserve,
// pass again once space is back (after the recheck interval, not before),
// and an unreadable filesystem does not block writes.
func TestSpaceGuard(t *testing.T) {
	var free atomic.Uint64
	var statErr atomic.Bool
	free.Store(200 << 20)
	g := fakeGuard(&free, &statErr)
	if err := g.Check(); err != nil {
		t.Fatalf("200 MiB free, 100 MiB reserve: %v", err)
	}
	free.Store(10 << 20)
	g.checked = time.Time{} // as if the interval had passed
	err := g.Check()
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("10 MiB free: %v, want ErrNoSpace", err)
	}
	for _, want := range []string{"/data", "10.0 MiB free of 1.0 GiB", "100.0 MiB"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q does not say %q", err, want)
		}
	}
	free.Store(500 << 20)
	if err := g.Check(); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("within the recheck interval the last answer stands: %v", err)
	}
	g.checked = time.Now().Add(-spaceRecheck)
	if err := g.Check(); err != nil {
		t.Fatalf("space back: %v", err)
	}
	statErr.Store(true)
	var warned atomic.Int32
	g.log = slog.New(countHandler{&warned})
	for range 3 {
		g.checked = time.Time{}
		if err := g.Check(); err != nil {
			t.Fatalf("statfs failing blocks writes: %v", err)
		}
	}
	if n := warned.Load(); n != 1 {
		t.Errorf("a statfs that keeps failing was logged %d times, want once", n)
	}
}

// countHandler counts the records logged at warning level and above.
type countHandler struct{ n *atomic.Int32 }

func (h countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.n.Add(1)
	}
	return nil
}
func (h countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countHandler) WithGroup(string) slog.Handler      { return h }

// TestSpaceCheckRefusesWrites: with the space check failing, creates,
// updates, deletes and compactions fail with ErrNoSpace and nothing is
// stored; reads still work; writes go through again once it passes.
func TestSpaceCheckRefusesWrites(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e := startTestMember(ctx, t)
	var free atomic.Uint64
	free.Store(1 << 30)
	g := fakeGuard(&free, nil)
	s := NewStore(e.Client(), nil)
	s.SetSpaceCheck(g.Check)
	rev, err := s.Create(ctx, "/k/a", []byte("1"))
	if err != nil {
		t.Fatalf("create with space: %v", err)
	}

	free.Store(1 << 20)
	g.checked = time.Time{}
	checkWritesRefused(ctx, t, s, rev, ErrNoSpace, "when full")
	if err := s.Compact(ctx, rev); !errors.Is(err, ErrNoSpace) {
		t.Errorf("compact when full: %v, want ErrNoSpace", err)
	}

	free.Store(1 << 30)
	g.checked = time.Time{}
	if _, _, err := s.Update(ctx, "/k/a", []byte("2"), rev); err != nil {
		t.Fatalf("update after space came back: %v", err)
	}
}
