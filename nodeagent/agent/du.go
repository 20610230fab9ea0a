package agent

import (
	"context"
	"io/fs"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Disk usage of volume directories, measured as the kubelet does for
// volumes without filesystem quotas: a `du`-style walk (allocated blocks,
// inodes, hard links counted once, not crossing into other filesystems)
// on one background goroutine, at most once per duInterval per directory,
// so a stats request or a capacity report never waits for a walk. Readers
// get the last result (none before the first walk ends).

// duInterval is how old a directory's usage may get before it is walked
// again (the kubelet's volume stats period is one minute).
const duInterval = time.Minute

// duForget drops directories nobody asked about for this long.
const duForget = 10 * time.Minute

// duUsage is one walk's result.
type duUsage struct {
	Bytes  uint64 // allocated bytes (st_blocks × 512)
	Inodes uint64 // files, directories and links
	At     time.Time
}

type duEntry struct {
	usage   duUsage
	done    bool // usage holds a result
	pending bool // queued or being walked
	asked   time.Time
}

// duCache holds the last usage of each directory asked about and walks
// them one at a time on the goroutine that runs run. Its zero value is
// ready to use.
type duCache struct {
	// interval replaces duInterval when set (Options.VolumeStatsAggPeriod).
	interval time.Duration
	mu       sync.Mutex
	entries  map[string]*duEntry
	work     chan string
}

// init makes the map and queue; c.mu is held.
func (c *duCache) init() {
	if c.entries == nil {
		c.entries = map[string]*duEntry{}
		c.work = make(chan string, 1024)
	}
}

// queue returns the work queue.
func (c *duCache) queue() chan string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	return c.work
}

// Get returns the last usage of dir and queues a new walk when there is
// none or it is older than duInterval.
func (c *duCache) Get(dir string) (duUsage, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	now := time.Now()
	e := c.entries[dir]
	if e == nil {
		e = &duEntry{}
		c.entries[dir] = e
	}
	e.asked = now
	every := duInterval
	if c.interval > 0 {
		every = c.interval
	}
	if !e.pending && (!e.done || now.Sub(e.usage.At) >= every) {
		select {
		case c.work <- dir:
			e.pending = true
		default: // a full queue: asked again later
		}
	}
	return e.usage, e.done
}

// run walks queued directories until ctx ends.
func (c *duCache) run(ctx context.Context) {
	work := c.queue()
	t := time.NewTicker(duForget)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.prune()
		case dir := <-work:
			u, err := walkUsage(ctx, dir)
			c.mu.Lock()
			if e := c.entries[dir]; e != nil {
				e.pending = false
				if err == nil {
					e.usage, e.done = u, true
				} else {
					// Gone or unreadable: no numbers rather than stale ones.
					e.done = false
				}
			}
			c.mu.Unlock()
		}
	}
}

func (c *duCache) prune() {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for dir, e := range c.entries {
		if !e.pending && now.Sub(e.asked) > duForget {
			delete(c.entries, dir)
		}
	}
}

// walkUsage is `du -s -x` plus an inode count of dir.
func walkUsage(ctx context.Context, dir string) (duUsage, error) {
	var root unix.Stat_t
	if err := unix.Lstat(dir, &root); err != nil {
		return duUsage{}, err
	}
	type key struct{ dev, ino uint64 }
	seen := map[key]bool{}
	var u duUsage
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // vanished or unreadable entries are skipped, as du does
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil {
			return nil
		}
		if uint64(st.Dev) != uint64(root.Dev) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if st.Nlink > 1 && !d.IsDir() {
			k := key{uint64(st.Dev), st.Ino}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		u.Bytes += uint64(st.Blocks) * 512
		u.Inodes++
		return nil
	})
	u.At = time.Now()
	return u, err
}
