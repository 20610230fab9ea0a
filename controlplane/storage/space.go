package storage

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultSpaceReserve is the free space a data directory keeps: writes
// stop before it is used, because etcd needs room it cannot do without.
// Its WAL preallocates 64 MiB segment files, and a write that fails there
// stops the member (etcd treats a failed WAL write as fatal), which would
// take reads down with the writes.
const DefaultSpaceReserve = 128 << 20

// spaceRecheck bounds how stale the free-space figure a write sees can be.
const spaceRecheck = 250 * time.Millisecond

// SpaceGuard refuses writes while the filesystem of a data directory has
// less free space than a reserve. Reads never ask it. It is meant for an
// embedded etcd member, whose data directory is on this machine.
type SpaceGuard struct {
	dir     string
	reserve uint64
	log     *slog.Logger
	statfs  func(dir string) (free, total uint64, err error)

	mu      sync.Mutex
	checked time.Time
	err     error      // the last answer, for up to spaceRecheck
	state   spaceState // what the last check found (logged on a change)
}

type spaceState int

const (
	spaceOK spaceState = iota
	spaceLow
	spaceUnknown // statfs failed
)

// NewSpaceGuard watches dir's filesystem, refusing writes with less than
// reserve bytes free (0: DefaultSpaceReserve).
func NewSpaceGuard(dir string, reserve uint64, log *slog.Logger) *SpaceGuard {
	if reserve == 0 {
		reserve = DefaultSpaceReserve
	}
	if log == nil {
		log = slog.Default()
	}
	return &SpaceGuard{dir: dir, reserve: reserve, log: log, statfs: statfs}
}

func statfs(dir string) (free, total uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	// Bavail: what an unprivileged writer may use. etcd runs as root here,
	// but the root-reserved blocks are the system's safety margin, not the
	// data store's.
	return st.Bavail * uint64(st.Bsize), st.Blocks * uint64(st.Bsize), nil
}

// Check answers nil when a write may go ahead, or an error wrapping
// ErrNoSpace. A failing statfs lets writes through (etcd then reports
// what it finds) and is logged once per transition.
func (g *SpaceGuard) Check() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	if !g.checked.IsZero() && now.Sub(g.checked) < spaceRecheck {
		return g.err
	}
	g.checked = now
	free, total, err := g.statfs(g.dir)
	var state spaceState
	switch {
	case err != nil:
		state, g.err = spaceUnknown, nil
	case free >= g.reserve:
		state, g.err = spaceOK, nil
	default:
		state = spaceLow
		g.err = fmt.Errorf("%w: %s has %s free of %s, below the %s the store keeps in reserve; writes are refused until space is freed (reads still work)",
			ErrNoSpace, g.dir, bytesText(free), bytesText(total), bytesText(g.reserve))
	}
	if state != g.state {
		switch state {
		case spaceUnknown:
			g.log.Warn("cannot read the data directory's free space; writes are not guarded", "dir", g.dir, "err", err)
		case spaceLow:
			g.log.Error("data directory is nearly full: writes refused", "dir", g.dir, "free_bytes", free, "reserve_bytes", g.reserve)
		case spaceOK:
			if g.state == spaceLow {
				g.log.Info("data directory has space again: writes accepted", "dir", g.dir, "free_bytes", free)
			}
		}
		g.state = state
	}
	return g.err
}

func bytesText(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
