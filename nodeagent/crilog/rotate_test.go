package crilog

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// readAll returns the messages of every file (rotated first, then path).
func readAll(t *testing.T, path string) []string {
	t.Helper()
	files, err := RotatedFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range append(files, path) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			rec, err := Parse(sc.Bytes())
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			out = append(out, string(rec.Message))
		}
	}
	return out
}

func TestRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c", "0.log")
	w, err := OpenRotating(path, Rotation{MaxSize: 1000, MaxFiles: 3})
	if err != nil {
		t.Fatal(err)
	}
	// Every write rotates several times per second: names must not collide.
	for i := 0; i < 200; i++ {
		fmt.Fprintf(w.Stream(Stdout), "line %04d\n", i)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rotated, err := RotatedFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(rotated) != 2 {
		t.Fatalf("rotated files = %v, want MaxFiles-1 = 2", rotated)
	}
	for _, p := range rotated {
		if !IsRotatedName(filepath.Base(p)) || !strings.HasPrefix(filepath.Base(p), "0.log.") {
			t.Fatalf("rotated name %q is not 0.log.YYYYMMDD-hhmmss[.NNN]", p)
		}
		if st, _ := os.Stat(p); st.Size() < 1000 {
			t.Fatalf("%s has %d bytes, rotated before MaxSize", p, st.Size())
		}
	}
	// What is kept is the newest lines, contiguous, ending with the last.
	got := readAll(t, path)
	if len(got) == 0 || got[len(got)-1] != "line 0199" {
		t.Fatalf("last line = %v", got[len(got)-1:])
	}
	for i := 1; i < len(got); i++ {
		var a, b int
		fmt.Sscanf(got[i-1], "line %d", &a)
		fmt.Sscanf(got[i], "line %d", &b)
		if b != a+1 {
			t.Fatalf("gap between %q and %q", got[i-1], got[i])
		}
	}
	// kubectl logs reads the current file only.
	var cur bytes.Buffer
	if err := Read(context.Background(), path, &cur, Options{TailLines: 1}); err != nil {
		t.Fatal(err)
	}
	if cur.String() != "line 0199\n" {
		t.Fatalf("tail 1 = %q", cur.String())
	}
}

type holdAll struct {
	mu      sync.Mutex
	dropped []string
}

func (h *holdAll) Retain(string) bool { return true }
func (h *holdAll) Dropped(p string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, err := os.Stat(p); err != nil {
		panic("Dropped after removal")
	}
	h.dropped = append(h.dropped, p)
}

func TestRotationRetainer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	h := &holdAll{}
	w, err := OpenRotating(path, Rotation{MaxSize: 100, MaxFiles: 2, Retainer: h, HardMaxFiles: 4})
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("x", 100) + "\n" // one record per file
	for i := 0; i < 3; i++ {
		_, _ = w.Stream(Stdout).Write([]byte(line))
	}
	if r, _ := RotatedFiles(path); len(r) != 3 || len(h.dropped) != 0 {
		t.Fatalf("retained %d rotated files (dropped %v), want 3 and none dropped", len(r), h.dropped)
	}
	for i := 0; i < 2; i++ {
		_, _ = w.Stream(Stdout).Write([]byte(line))
	}
	r, _ := RotatedFiles(path)
	if len(r) != 3 || len(h.dropped) != 2 {
		t.Fatalf("at the hard limit: %d rotated files, dropped %v; want 3 and 2 dropped", len(r), h.dropped)
	}
	_ = w.Close()
}

// A follower (kubectl logs -f) sees every line once across rotations.
func TestFollowAcrossRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	w, err := OpenRotating(path, Rotation{MaxSize: 4096, MaxFiles: 1000})
	if err != nil {
		t.Fatal(err)
	}
	const n = 5000
	var done atomic.Bool
	go func() {
		for i := 0; i < n; i++ {
			fmt.Fprintf(w.Stream(Stdout), "%d\n", i)
			if i%500 == 0 {
				time.Sleep(20 * time.Millisecond) // let the follower catch up sometimes
			}
		}
		_ = w.Close()
		done.Store(true)
	}()
	var b bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := Read(ctx, path, &b, Options{TailLines: -1, Follow: true, Done: done.Load}); err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatal("follow did not end")
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != n {
		t.Fatalf("followed %d lines, want %d", len(lines), n)
	}
	for i, l := range lines {
		if l != fmt.Sprint(i) {
			t.Fatalf("line %d = %q", i, l)
		}
	}
	if r, _ := RotatedFiles(path); len(r) < 5 {
		t.Fatalf("only %d rotations happened", len(r))
	}
}

// A long line (P records, then F) is never split across files.
func TestRotationKeepsPartialLinesTogether(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	w, err := OpenRotating(path, Rotation{MaxSize: 20 << 10, MaxFiles: 100})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("y", 40<<10) // three records: P P F
	for i := 0; i < 10; i++ {
		fmt.Fprintf(w.Stream(Stdout), "%d %s\n", i, long)
	}
	_ = w.Close()
	files, _ := RotatedFiles(path)
	if len(files) < 5 {
		t.Fatalf("%d rotations", len(files))
	}
	for _, p := range append(files, path) {
		b, _ := os.ReadFile(p)
		if len(b) == 0 {
			continue
		}
		last := bytes.Split(bytes.TrimSuffix(b, []byte{'\n'}), []byte{'\n'})
		rec, err := Parse(last[len(last)-1])
		if err != nil || rec.Partial {
			t.Fatalf("%s ends inside a line (partial=%v, %v)", p, rec.Partial, err)
		}
	}
}

// TestThousandRotationsInOneSecond: the sequence after a rotated name's
// time compares as a number, so the 1001st rotation of one second
// (".1000") comes after ".999" in RotatedFiles and no file is renamed
// over another.
func TestThousandRotationsInOneSecond(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	w, err := OpenRotating(path, Rotation{MaxSize: 1, MaxFiles: 5000})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	w.now = func() time.Time { return at }
	const n = 1005
	for i := range n {
		fmt.Fprintf(w.Stream(Stdout), "%d\n", i)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	files, err := RotatedFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != n {
		t.Fatalf("%d rotated files, want %d (one per line)", len(files), n)
	}
	for i, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := Parse(bytes.TrimSuffix(b, []byte{'\n'}))
		if err != nil || string(rec.Message) != strconv.Itoa(i) {
			t.Fatalf("rotated file %d (%s) holds %q, want line %d", i, filepath.Base(p), b, i)
		}
	}
}
