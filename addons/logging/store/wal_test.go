package store

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
