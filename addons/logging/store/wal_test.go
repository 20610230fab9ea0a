package store

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// openIn lists the files of dir this process holds open.
func openIn(t *testing.T, dir string) []string {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	var open []string
	for _, fd := range fds {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(l, dir+"/") {
			open = append(open, l)
		}
	}
	return open
}

// TestWALClosesRotatedFiles: a file rotated away is closed once it is
// written, also when no record follows the rotation (the last sync had
// nothing to do) and at close, so a closed store holds no file open (a
// deleted generation stayed open before, keeping its space and its
// filesystem busy).
func TestWALClosesRotatedFiles(t *testing.T) {
	dir := t.TempDir()
	w, err := openWAL(dir, 1, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.sync(w.appendRecords([]byte("a"))); err != nil {
		t.Fatal(err)
	}
	// Rotation with nothing buffered, then a sync of an old sequence.
	if err := w.rotate(2); err != nil {
		t.Fatal(err)
	}
	if err := w.removeGen(1); err != nil {
		t.Fatal(err)
	}
	if err := w.sync(1); err != nil {
		t.Fatal(err)
	}
	if open := openIn(t, dir); len(open) != 1 || !strings.HasSuffix(open[0], walName(2)) {
		t.Fatalf("after a rotation and a sync: open %v, want only %s", open, walName(2))
	}
	// Rotation with records buffered, then close.
	w.appendRecords([]byte("b"))
	if err := w.rotate(3); err != nil {
		t.Fatal(err)
	}
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	if open := openIn(t, dir); len(open) != 0 {
		t.Fatalf("after close: still open %v", open)
	}
	n := 0
	if err := readWAL(filepath.Join(dir, walName(2)), func([]byte) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("the record buffered before the last rotation: %d records in %s (%v), want 1", n, walName(2), err)
	}
}

// TestWALGroupCommitReuse: writers append framed records concurrently
// (appendFramed, as Bulk does, and appendRecords) and sync, while the WAL
// rotates; the written buffers are reused for later group commits. Every
// record comes back once, intact and in its writer's order, from the
// files of the generations, and a record framed by Bulk's appendDocRecord
// is byte for byte what appendRecords frames.
func TestWALGroupCommitReuse(t *testing.T) {
	dir := t.TempDir()
	// With fsync: a group commit takes long enough for the other writers
	// to fill the next buffer meanwhile.
	w, err := openWAL(dir, 1, true)
	if err != nil {
		t.Fatal(err)
	}
	const writers, per = 4, 300
	var rot sync.RWMutex // the store's sealMu: appends shared, rotation alone
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			var rb []byte
			for i := range per {
				p := fmt.Appendf(nil, "w%d-%d-%s", g, i, strings.Repeat("x", (g*131+i*37)%2000))
				rot.RLock()
				var seq uint64
				if i%3 == 0 {
					seq = w.appendRecords(p)
				} else {
					start := len(rb)
					rb = append(rb, make([]byte, recHeader)...)
					rb = append(rb, p...)
					frameRecord(rb[start:])
					seq = w.appendFramed(rb)
					rb = rb[:0]
				}
				rot.RUnlock()
				if err := w.sync(seq); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for gen := uint64(2); gen <= 4; gen++ {
		time.Sleep(2 * time.Millisecond)
		rot.Lock()
		err := w.rotate(gen)
		rot.Unlock()
		if err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	w.mu.Lock()
	free := len(w.free)
	w.mu.Unlock()
	if free == 0 {
		t.Error("no written buffer kept for reuse")
	}
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	next := make([]int, writers)
	for gen := uint64(1); gen <= 4; gen++ {
		err := readWAL(filepath.Join(dir, walName(gen)), func(p []byte) error {
			var g, i int
			if _, err := fmt.Sscanf(string(p), "w%d-%d-", &g, &i); err != nil {
				return fmt.Errorf("record %q: %v", p, err)
			}
			if want := fmt.Sprintf("w%d-%d-%s", g, i, strings.Repeat("x", (g*131+i*37)%2000)); string(p) != want || i != next[g] {
				return fmt.Errorf("record %.20q, want writer %d's record %d", p, g, next[g])
			}
			next[g]++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for g, n := range next {
		if n != per {
			t.Errorf("writer %d: %d records read back, want %d", g, n, per)
		}
	}

	// appendDocRecord frames as appendRecords does.
	idx := &index{uid: "u1", name: "logs-a"}
	rec := appendDocRecord([]byte("prefix"), idx, "id-1", false, []byte(`{"m":1}`))
	payload := []byte{recDoc}
	payload = appendString(payload, "u1")
	payload = appendString(payload, "logs-a")
	payload = appendString(payload, "id-1")
	payload = append(payload, 0)
	payload = append(payload, `{"m":1}`...)
	w2 := &wal{}
	w2.appendRecords(payload)
	if !bytes.Equal(rec[len("prefix"):], w2.buf) {
		t.Fatalf("appendDocRecord %x, appendRecords %x", rec[len("prefix"):], w2.buf)
	}
}
