package shipper

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestWrittenLinesShippedWithoutPolling: with a poll interval of an hour,
// only the inotify watcher can notice a pod folder made after the shipper
// started, the container folder and log file made in it, lines appended to
// a file the tailer has read to its end, and a second container's file.
// Each must reach the sink within seconds (discovery also runs on each
// checkpoint, so that is an hour apart too).
func TestWrittenLinesShippedWithoutPolling(t *testing.T) {
	srv, sink := newBulkSink(t, 0, nil)
	root := t.TempDir()
	logDir := filepath.Join(root, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := startShipper(t, Config{
		PodLogDir: logDir, StateDir: filepath.Join(root, "state"), NodeName: "node-a", URL: srv.URL,
		PollInterval: time.Hour, CheckpointInterval: time.Hour, FlushInterval: 20 * time.Millisecond,
	})
	waitWatching(t, r.s)

	appendLines := func(container string, from, to int) {
		t.Helper()
		f := openLog(t, logDir, container)
		defer f.Close()
		for i := from; i < to; i++ {
			if _, err := fmt.Fprintf(f, "2026-11-30T00:00:00.%09dZ stdout F %s line %d\n", i, container, i); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitShipped := func(want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for len(sink.messages()) < want {
			if time.Now().After(deadline) {
				t.Fatalf("sink holds %d lines, want %d (an hour's poll: only a wake-up ships them)", len(sink.messages()), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	appendLines("app", 0, 5) // new pod, container and file
	waitShipped(5)
	appendLines("app", 5, 8) // the tailer waits at the end of the file
	waitShipped(8)
	appendLines("sidecar", 0, 2) // a new container folder in a watched pod folder
	waitShipped(10)
	msgs := sink.messages()
	seen := map[string]bool{}
	for _, m := range msgs {
		seen[m] = true
	}
	for _, want := range []string{"app line 0", "app line 7", "sidecar line 1"} {
		if !seen[want] {
			t.Errorf("line %q not shipped; got %v", want, msgs)
		}
	}
	// Once Run returns, the watcher's reader has returned too (its read
	// ended by Close, not left blocked with the descriptor open).
	w := r.s.watcher()
	r.stop()
	select {
	case <-w.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the inotify reader still runs after the shipper stopped")
	}
}

// waitWatching waits until Run has its watcher and has looked at the pod
// log folder (its first discovery).
func waitWatching(t *testing.T, s *Shipper) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		w := s.watcher()
		if w != nil && w.watching(s.cfg.PodLogDir) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the shipper watches no folder: inotify unavailable?")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// inotifyEvent encodes one event as the kernel does (name NUL-padded).
func inotifyEvent(wd int32, mask uint32, name string) []byte {
	n := 0
	if name != "" {
		n = (len(name) + 1 + 15) / 16 * 16
	}
	b := make([]byte, unix.SizeofInotifyEvent+n)
	binary.NativeEndian.PutUint32(b[0:], uint32(wd))
	binary.NativeEndian.PutUint32(b[4:], mask)
	binary.NativeEndian.PutUint32(b[12:], uint32(n))
	copy(b[unix.SizeofInotifyEvent:], name)
	return b
}

// TestWatcherEvents: a write to a file wakes the tailers waiting on that
// path only; a new entry asks for discovery; a lost-events overflow wakes
// every tailer and asks for discovery; a removed folder's watch is
// forgotten; a truncated event is not read past.
func TestWatcherEvents(t *testing.T) {
	w := &watcher{discover: make(chan struct{}, 1), dirs: map[int32]string{1: "/logs/p/app", 2: "/logs/p"}, waiters: map[string]map[*tailer]struct{}{}}
	a, b := &tailer{wake: make(chan struct{}, 1)}, &tailer{wake: make(chan struct{}, 1)}
	w.wait("/logs/p/app/0.log", a)
	w.wait("/logs/p/app/1.log", b)
	woken := func(t *tailer) bool {
		select {
		case <-t.wake:
			return true
		default:
			return false
		}
	}
	discovered := func() bool {
		select {
		case <-w.discover:
			return true
		default:
			return false
		}
	}

	w.handle(append(inotifyEvent(1, unix.IN_MODIFY, "0.log"), inotifyEvent(1, unix.IN_MODIFY, "0.log")...))
	if !woken(a) || woken(b) || discovered() {
		t.Fatal("a write to 0.log must wake its tailer alone, and not ask for discovery")
	}
	w.handle(inotifyEvent(2, unix.IN_CREATE|unix.IN_ISDIR, "sidecar"))
	if !discovered() || woken(a) || woken(b) {
		t.Fatal("a new folder must ask for discovery")
	}
	w.handle(inotifyEvent(-1, unix.IN_Q_OVERFLOW, ""))
	if !discovered() || !woken(a) || !woken(b) {
		t.Fatal("an overflow must wake every tailer and ask for discovery")
	}
	w.handle(inotifyEvent(1, unix.IN_IGNORED, ""))
	if _, ok := w.dirs[1]; ok {
		t.Fatal("a removed folder's watch is still kept")
	}
	w.handle(inotifyEvent(2, unix.IN_MODIFY, "x.log")[:unix.SizeofInotifyEvent+3])
	w.unwait("/logs/p/app/0.log", a)
	w.unwait("/logs/p/app/1.log", b)
	if len(w.waiters) != 0 {
		t.Fatalf("waiters left after unwait: %v", w.waiters)
	}
}

// TestWritesWakeReadsAtMostEveryGap: a container writing a line every
// millisecond wakes its tailer on each write, but the tailer reads at most
// every wakeGap, and every line still arrives.
func TestWritesWakeReadsAtMostEveryGap(t *testing.T) {
	srv, sink := newBulkSink(t, 0, nil)
	root := t.TempDir()
	logDir := filepath.Join(root, "logs")
	f := openLog(t, logDir, "app")
	defer f.Close()
	r := startShipper(t, Config{
		PodLogDir: logDir, StateDir: filepath.Join(root, "state"), NodeName: "node-a", URL: srv.URL,
		PollInterval: time.Hour, CheckpointInterval: time.Hour, FlushInterval: 20 * time.Millisecond,
	})
	waitWatching(t, r.s)
	const lines = 300
	start := time.Now()
	for i := range lines {
		if _, err := fmt.Fprintf(f, "2026-11-30T00:00:00.%09dZ stdout F line %d\n", i, i); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(sink.messages()) < lines {
		if time.Now().After(deadline) {
			t.Fatalf("sink holds %d lines, want %d", len(sink.messages()), lines)
		}
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Since(start)
	reads := r.s.wakeReads.Load()
	if most := int64(elapsed/wakeGap) + 2; reads > most || reads == 0 {
		t.Fatalf("%d reads woken by %d writes over %v, want 1..%d (one per %v at most)", reads, lines, elapsed, most, wakeGap)
	}
	t.Logf("%d writes over %v: %d woken reads", lines, elapsed, reads)
}

// openLog opens (creating it and its folders) the CRI log file of
// container in pod ns1/web-0 under logDir, for appending.
func openLog(t *testing.T, logDir, container string) *os.File {
	t.Helper()
	path := filepath.Join(logDir, "ns1_web-0_uid-1", container, "0.log")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	return f
}
