package shipper

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// watchDirMask is what the pod log folder and its pod and container
// folders are watched for: new entries (a pod, a container, a log file, a
// rotated file renamed in) and writes to the files in them.
const watchDirMask = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_MODIFY | unix.IN_ONLYDIR

// watcher wakes the shipper when the pod log folder changes, so that lines
// are read when they are written rather than at the next poll: a new
// folder or file runs discovery at once, and a write to a log file wakes
// the tailers of that path that wait at the end of it. It watches folders
// only (one inotify watch per pod and container folder; a folder's watch
// reports writes to its files), never the files themselves.
//
// Polling stays as the fallback: without inotify (no instance, the
// watch limit reached, an event queue overflow) the shipper works as
// before, at PollInterval.
type watcher struct {
	f *os.File // the inotify instance, non-blocking, so Close ends a read
	// fd is f's descriptor, for adding watches (f.Fd would put f in
	// blocking mode, and then Close would not end a read).
	fd int
	// discover is signalled when discovery should run (capacity 1).
	discover chan struct{}
	// done is closed when run returns (after close).
	done chan struct{}

	mu      sync.Mutex
	dirs    map[int32]string // watch descriptor -> folder
	waiters map[string]map[*tailer]struct{}
	// full is set once a watch could not be added (the inotify watch
	// limit): that folder is polled, and it is logged once.
	full bool
}

// newWatcher starts an inotify instance; it fails where inotify is not
// available (the caller then polls).
func newWatcher() (*watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	return &watcher{
		f:        os.NewFile(uintptr(fd), "inotify"),
		fd:       fd,
		discover: make(chan struct{}, 1),
		done:     make(chan struct{}),
		dirs:     map[int32]string{},
		waiters:  map[string]map[*tailer]struct{}{},
	}, nil
}

// watch adds a watch on folder dir (a no-op for one already watched). It
// is called before the folder is listed, so an entry made after the
// listing is reported. A folder that cannot be watched (gone, or the
// watch limit reached) is polled; only the first time the limit is
// reached is an error returned, for the caller to log.
func (w *watcher) watch(dir string) error {
	wd, err := unix.InotifyAddWatch(w.fd, dir, watchDirMask)
	if err != nil {
		if errors.Is(err, unix.ENOSPC) {
			w.mu.Lock()
			first := !w.full
			w.full = true
			w.mu.Unlock()
			if first {
				return fmt.Errorf("inotify watch limit reached (fs.inotify.max_user_watches), polling %s: %w", dir, err)
			}
		}
		return nil
	}
	w.mu.Lock()
	w.dirs[int32(wd)] = dir
	w.mu.Unlock()
	return nil
}

// watching reports whether folder dir is watched.
func (w *watcher) watching(dir string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, d := range w.dirs {
		if d == dir {
			return true
		}
	}
	return false
}

// wait registers t to be woken by writes to path (until unwait).
func (w *watcher) wait(path string, t *tailer) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.waiters[path]
	if m == nil {
		m = map[*tailer]struct{}{}
		w.waiters[path] = m
	}
	m[t] = struct{}{}
}

func (w *watcher) unwait(path string, t *tailer) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if m := w.waiters[path]; m != nil {
		delete(m, t)
		if len(m) == 0 {
			delete(w.waiters, path)
		}
	}
}

// run reads events until the instance is closed.
func (w *watcher) run() {
	defer close(w.done)
	buf := make([]byte, 16<<10)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			// Closed, or an unexpected error: then wake everyone and
			// stop; polling goes on.
			if !errors.Is(err, os.ErrClosed) {
				w.wakeAll()
			}
			return
		}
		w.handle(buf[:n])
	}
}

// handle dispatches the events in b.
func (w *watcher) handle(b []byte) {
	discover := false
	w.mu.Lock()
	for len(b) >= unix.SizeofInotifyEvent {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&b[0]))
		end := unix.SizeofInotifyEvent + int(ev.Len)
		if end > len(b) {
			break
		}
		name := b[unix.SizeofInotifyEvent:end]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		b = b[end:]
		switch {
		case ev.Mask&unix.IN_Q_OVERFLOW != 0:
			// Events were lost: look at everything.
			discover = true
			w.wakeAllLocked()
		case ev.Mask&unix.IN_IGNORED != 0:
			delete(w.dirs, ev.Wd)
		case ev.Mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0:
			discover = true
		case ev.Mask&unix.IN_MODIFY != 0:
			dir, ok := w.dirs[ev.Wd]
			if !ok || len(name) == 0 {
				continue
			}
			for t := range w.waiters[filepath.Join(dir, string(name))] {
				t.wakeUp()
			}
		}
	}
	w.mu.Unlock()
	if discover {
		select {
		case w.discover <- struct{}{}:
		default:
		}
	}
}

func (w *watcher) wakeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.wakeAllLocked()
}

func (w *watcher) wakeAllLocked() {
	for _, m := range w.waiters {
		for t := range m {
			t.wakeUp()
		}
	}
}

func (w *watcher) close() error { return w.f.Close() }
