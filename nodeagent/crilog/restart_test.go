package crilog

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// retainAll keeps every rotated file (up to HardMaxFiles) and counts how
// often rotation asked.
type retainAll struct{ asked atomic.Int64 }

func (r *retainAll) Retain(string) bool { r.asked.Add(1); return true }
func (r *retainAll) Dropped(string)     { panic("dropped a file below the hard limit") }

// Both streams are written at once, in chunks that cut lines anywhere,
// while the file rotates; half-way the Writer is closed mid-line and a new
// one continues on the same path (an agent restart). Every line of each
// stream is read back once and in order, P records joined to their F.
func TestConcurrentStreamsAcrossRotationAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	ret := &retainAll{}
	rot := Rotation{MaxSize: 8 << 10, MaxFiles: 2, Retainer: ret, HardMaxFiles: 1 << 20}
	const n = 20000
	var text [2][]byte
	for s := range text {
		for i := 0; i < n; i++ {
			text[s] = fmt.Appendf(text[s], "s%d line %d\n", s, i)
		}
	}
	streams := [2]string{Stdout, Stderr}
	// write writes text[s][from:to] to w in random chunks.
	write := func(w *Writer, s, from, to int, seed uint64) {
		rnd := rand.New(rand.NewPCG(seed, uint64(s)))
		out := w.Stream(streams[s])
		for from < to {
			k := min(to-from, 1+rnd.IntN(300))
			if _, err := out.Write(text[s][from : from+k]); err != nil {
				t.Error(err)
				return
			}
			from += k
		}
	}
	// Cut points in the middle of a line.
	cut := [2]int{len(text[0])/2 + 3, len(text[1])/3 + 5}
	for round, span := range [][2][2]int{{{0, cut[0]}, {0, cut[1]}}, {{cut[0], len(text[0])}, {cut[1], len(text[1])}}} {
		w, err := OpenRotating(path, rot)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for s := range 2 {
			wg.Go(func() { write(w, s, span[s][0], span[s][1], uint64(round)) })
		}
		wg.Wait()
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	files, err := RotatedFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 20 || ret.asked.Load() == 0 {
		t.Fatalf("%d rotated files, the retainer asked %d times", len(files), ret.asked.Load())
	}
	var got [2][]byte
	var part [2][]byte
	for _, p := range append(files, path) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range bytes.Split(bytes.TrimSuffix(b, []byte{'\n'}), []byte{'\n'}) {
			if len(l) == 0 {
				continue
			}
			rec, err := Parse(l)
			if err != nil {
				t.Fatalf("%s: %q: %v", p, l, err)
			}
			s := 0
			if rec.Stream == Stderr {
				s = 1
			}
			part[s] = append(part[s], rec.Message...)
			if !rec.Partial {
				got[s] = append(append(got[s], part[s]...), '\n')
				part[s] = part[s][:0]
			}
		}
		for s := range part {
			if len(part[s]) == 0 {
				continue
			}
			// Rotation waits for open lines, but not beyond another
			// MaxSize: when one stream's line stays open (its goroutine
			// not scheduled after the reopen) while the other writes
			// 2×MaxSize, the file rotates inside it and its parts go on
			// in the next file.
			if st, err := os.Stat(p); p == path || err != nil || st.Size() < 2*rot.MaxSize {
				t.Fatalf("%s ends inside a line of %s: %q", p, streams[s], part[s])
			}
		}
	}
	for s := range got {
		if !bytes.Equal(got[s], text[s]) {
			i := 0
			for i < min(len(got[s]), len(text[s])) && got[s][i] == text[s][i] {
				i++
			}
			t.Fatalf("%s differs at byte %d of %d (read %d): %q", streams[s], i, len(text[s]), len(got[s]), got[s][max(0, i-20):min(len(got[s]), i+20)])
		}
	}
}

// A Writer closed in the middle of a line leaves a P record; the Writer
// that continues the file (after an agent restart) keeps that line's F in
// the same file, even when the file is already due for rotation.
func TestReopenKeepsOpenLineInOneFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	w, err := OpenRotating(path, Rotation{MaxSize: 1 << 20, MaxFiles: 100})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Stream(Stdout).Write([]byte(strings.Repeat("1", 1000) + "\n"))
	_, _ = w.Stream(Stderr).Write([]byte("begin-"))
	st, _ := os.Stat(path)
	w.rot.MaxSize = st.Size() + 1 // the P record written by Close reaches it
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w, err = OpenRotating(path, Rotation{MaxSize: st.Size() + 1, MaxFiles: 100})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Stream(Stdout).Write([]byte("second\n"))
	if files, _ := RotatedFiles(path); len(files) != 0 {
		t.Fatalf("rotated to %v with the stderr line still open", files)
	}
	_, _ = w.Stream(Stderr).Write([]byte("end\n"))
	_, _ = w.Stream(Stdout).Write([]byte("third\n"))
	_ = w.Close()
	files, _ := RotatedFiles(path)
	if len(files) != 1 {
		t.Fatalf("rotated files %v, want one (once the line was finished)", files)
	}
	if got := readAll(t, files[0]); len(got) != 4 || len(got[0]) != 1000 || got[2] != "second" || got[1]+got[3] != "begin-end" {
		t.Fatalf("first file holds %q", got)
	}
}
