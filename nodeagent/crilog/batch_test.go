package crilog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// countingFile counts the writes that reach the file.
type countingFile struct {
	io.WriteCloser
	writes int
	sizes  []int
}

func (c *countingFile) Write(p []byte) (int, error) {
	c.writes++
	c.sizes = append(c.sizes, len(p))
	return c.WriteCloser.Write(p)
}

// shortFile writes only the first limit bytes, then fails.
type shortFile struct {
	io.WriteCloser
	limit int
}

var errShort = errors.New("disk full")

func (s *shortFile) Write(p []byte) (int, error) {
	if len(p) <= s.limit {
		s.limit -= len(p)
		return s.WriteCloser.Write(p)
	}
	n, _ := s.WriteCloser.Write(p[:s.limit])
	s.limit -= n
	return n, errShort
}

// fixClock makes w's timestamps a counter: the same sequence of now()
// calls gives the same records and rotated names.
func fixClock(w *Writer) {
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tick := 0
	w.now = func() time.Time { tick++; return base.Add(time.Duration(tick) * time.Millisecond) }
}

// dirFiles maps each file name in dir to its contents.
func dirFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = string(b)
	}
	return m
}

type streamWrite struct {
	stream string
	data   string
}

// batchScript is container output with short, empty and long lines (a
// line of maxLine, of maxLine+1, one of three records), both streams, a
// stderr line open (a P record written) while stdout writes many lines,
// and an unterminated end.
func batchScript() []streamWrite {
	var many, more, errs strings.Builder
	for i := range 60 {
		fmt.Fprintf(&many, "line %d %s\n", i, strings.Repeat("m", i*3%150))
	}
	many.WriteString("\n\n")
	more.WriteString(strings.Repeat("a", maxLine) + "\n")
	more.WriteString(strings.Repeat("b", maxLine+1) + "\n")
	more.WriteString(strings.Repeat("c", 40<<10) + "\n")
	for i := range 30 {
		fmt.Fprintf(&more, "after %d\n", i)
	}
	errs.WriteString("end of the open line\n")
	for i := range 20 {
		fmt.Fprintf(&errs, "err %d\n", i)
	}
	return []streamWrite{
		{Stderr, "err line open " + strings.Repeat("e", maxLine)}, // a P record: the line is open
		{Stdout, many.String()},
		{Stdout, more.String()},
		{Stderr, errs.String()},
		{Stdout, "first half " + strings.Repeat("h", 20<<10)},
		{Stdout, " second half\nlast\nno newline at the end"},
	}
}

// writeScript writes script to a new Writer at dir/0.log, each write cut
// into pieces by split, and returns the contents of the files left after
// Close, oldest first.
func writeScript(t *testing.T, dir string, rot Rotation, script []streamWrite, split func(string) []string) []string {
	t.Helper()
	path := filepath.Join(dir, "0.log")
	w, err := OpenRotating(path, rot)
	if err != nil {
		t.Fatal(err)
	}
	fixClock(w)
	for _, sw := range script {
		for _, piece := range split(sw.data) {
			if _, err := w.Stream(sw.stream).Write([]byte(piece)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	files, err := RotatedFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(dirFiles(t, dir)); n != len(files)+1 {
		t.Fatalf("%d files, %d of them rotated", n, len(files))
	}
	var out []string
	for _, p := range append(files, path) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// oneRecordPerWrite models the Writer before batching, apart from it:
// each record is written alone and the rotation condition is checked after
// it (rotation between lines, unless a partial line goes on for another
// MaxSize). It returns the files' contents, oldest first, with fixClock's
// timestamps (rotation reads the clock once, for the rotated name).
func oneRecordPerWrite(script []streamWrite, maxSize int64) []string {
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tick := 0
	now := func() time.Time { tick++; return base.Add(time.Duration(tick) * time.Millisecond) }
	files := []string{""}
	var size int64
	open := map[string]bool{}
	record := func(stream, tag, msg string) {
		r := now().Format(time.RFC3339Nano) + " " + stream + " " + tag + " " + msg + "\n"
		files[len(files)-1] += r
		size += int64(len(r))
		open[stream] = tag == "P"
		inLine := open[Stdout] || open[Stderr]
		if maxSize > 0 && (size >= maxSize && !inLine || size >= 2*maxSize) {
			now()
			files = append(files, "")
			size = 0
		}
	}
	bufs := map[string]string{}
	for _, sw := range script {
		b := bufs[sw.stream] + sw.data
		for {
			i := strings.IndexByte(b, '\n')
			if i >= 0 && i <= maxLine {
				record(sw.stream, "F", b[:i])
				b = b[i+1:]
			} else if len(b) > maxLine {
				record(sw.stream, "P", b[:maxLine])
				b = b[maxLine:]
			} else {
				break
			}
		}
		bufs[sw.stream] = b
	}
	for _, s := range []string{Stdout, Stderr} {
		if bufs[s] != "" {
			record(s, "P", bufs[s])
		}
	}
	return files
}

func whole(s string) []string { return []string{s} }

func perLine(s string) []string { return strings.SplitAfter(s, "\n") }

func perByte(s string) []string { return strings.Split(s, "") }

// TestBatchSameAsOneRecordPerWrite: many lines in one Write make the same
// files, byte for byte, as writing each record alone did before batching
// (oneRecordPerWrite), with and without rotation, with rotations in the
// middle of a Write and held back by the other stream's open line; so do
// one Write per line and one per byte.
func TestBatchSameAsOneRecordPerWrite(t *testing.T) {
	script := batchScript()
	var in [2]strings.Builder
	for _, sw := range script {
		in[streamIndex(sw.stream)].WriteString(sw.data)
	}
	for _, maxSize := range []int64{0, 1, 700, 5000, 12 << 10, 20 << 10, 40 << 10} {
		t.Run(fmt.Sprint(maxSize), func(t *testing.T) {
			rot := Rotation{MaxSize: maxSize, MaxFiles: 100000}
			want := oneRecordPerWrite(script, maxSize)
			for _, mode := range []struct {
				name  string
				split func(string) []string
			}{{"whole", whole}, {"per-line", perLine}, {"per-byte", perByte}} {
				got := writeScript(t, t.TempDir(), rot, script, mode.split)
				if len(got) != len(want) {
					t.Fatalf("%s: %d files, one record per write made %d", mode.name, len(got), len(want))
				}
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("%s: file %d of %d differs from one record per write:\n got %.300q\nwant %.300q", mode.name, i, len(want), got[i], want[i])
					}
				}
			}
			if maxSize > 0 && maxSize <= 5000 && len(want) <= len(script) {
				t.Fatalf("%d files: the writes did not rotate in their middle", len(want))
			}
			// Every line once, in order, across the files.
			var out [2]strings.Builder
			for i, f := range want {
				for _, l := range strings.SplitAfter(f, "\n") {
					if l == "" {
						continue
					}
					rec, err := Parse([]byte(strings.TrimSuffix(l, "\n")))
					if err != nil {
						t.Fatalf("file %d: %q: %v", i, l, err)
					}
					out[streamIndex(rec.Stream)].Write(rec.Message)
					if !rec.Partial {
						out[streamIndex(rec.Stream)].WriteByte('\n')
					}
				}
			}
			for s := range 2 {
				if out[s].String() != in[s].String() {
					t.Fatalf("stream %d read back differs from what was written", s)
				}
			}
		})
	}
}

func streamIndex(s string) int {
	if s == Stderr {
		return 1
	}
	return 0
}

// TestBatchOneFileWritePerWrite: a Write of many lines costs one file
// write; a Write of more than flushAt of records is written in pieces of
// about flushAt, and the buffer stays bounded.
func TestBatchOneFileWritePerWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	w, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	cf := &countingFile{WriteCloser: w.f}
	w.f = cf
	line := strings.Repeat("x", 99) + "\n"
	out := w.Stream(Stdout)
	if _, err := out.Write([]byte(strings.Repeat(line, 300))); err != nil {
		t.Fatal(err)
	}
	if cf.writes != 1 {
		t.Fatalf("a Write of 300 lines made %d file writes, want 1", cf.writes)
	}
	if _, err := out.Write([]byte("no newline yet")); err != nil {
		t.Fatal(err)
	}
	if cf.writes != 1 {
		t.Fatalf("a Write without a complete line made a file write")
	}
	if _, err := out.Write([]byte(" now\n")); err != nil {
		t.Fatal(err)
	}
	if cf.writes != 2 {
		t.Fatalf("the end of a line made %d file writes, want 1", cf.writes-1)
	}
	// 1 MiB of short lines: several writes of about flushAt.
	cf.writes, cf.sizes = 0, nil
	big := []byte(strings.Repeat("y\n", 512<<10))
	if _, err := out.Write(big); err != nil {
		t.Fatal(err)
	}
	total := 0
	for i, n := range cf.sizes {
		total += n
		if n > flushAt+maxLine+64 || i < len(cf.sizes)-1 && n < flushAt {
			t.Fatalf("file write %d of %d bytes (flushAt %d)", i, n, flushAt)
		}
	}
	if cf.writes > total/flushAt+1 {
		t.Fatalf("%d file writes for %d bytes", cf.writes, total)
	}
	if w.out != nil {
		// An idle Writer keeps no write buffer: it went back to outPool.
		t.Fatalf("Writer kept a write buffer of %d bytes after Write", cap(w.out))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(dirFiles(t, filepath.Dir(path))["0.log"]), "\n"); n != 300+1+512<<10 {
		t.Fatalf("%d records, want %d", n, 300+1+512<<10)
	}
	if st.Size() != w.size {
		t.Fatalf("file has %d bytes, the Writer counted %d", st.Size(), w.size)
	}
}

// TestBatchSplitLineInOneWrite: a long line's P records and its F, in one
// Write between other lines, stay in one file; rotation comes after the F.
func TestBatchSplitLineInOneWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	w, err := OpenRotating(path, Rotation{MaxSize: 20 << 10, MaxFiles: 10})
	if err != nil {
		t.Fatal(err)
	}
	fixClock(w)
	long := strings.Repeat("z", 40<<10)
	if _, err := w.Stream(Stdout).Write([]byte("a\n" + long + "\nb\n")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rotated, err := RotatedFiles(path)
	if err != nil || len(rotated) != 1 {
		t.Fatalf("rotated files %v (%v), want 1", rotated, err)
	}
	type rec struct {
		tag string
		n   int
	}
	recs := func(p string) []rec {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var out []rec
		for _, l := range bytes.Split(bytes.TrimSuffix(b, []byte{'\n'}), []byte{'\n'}) {
			r, err := Parse(l)
			if err != nil {
				t.Fatal(err)
			}
			tag := "F"
			if r.Partial {
				tag = "P"
			}
			out = append(out, rec{tag, len(r.Message)})
		}
		return out
	}
	want := []rec{{"F", 1}, {"P", maxLine}, {"P", maxLine}, {"F", 40<<10 - 2*maxLine}}
	if got := recs(rotated[0]); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("rotated file holds %v, want %v", got, want)
	}
	if got := recs(path); fmt.Sprint(got) != fmt.Sprint([]rec{{"F", 1}}) {
		t.Fatalf("current file holds %v, want the line b", got)
	}
}

// TestBatchWriteError: when a file write fails part-way, the records
// written in full are done (not written again), the size counts the bytes
// written, and the rest is written by the stream's next Write, as when
// each record had its own file write.
func TestBatchWriteError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	w, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	fixClock(w)
	real := w.f
	long := strings.Repeat("q", 40<<10)
	data := "a\n" + long + "\nb\n"
	// Room for the record of a, the first P record and a bit of the next.
	recA := len("2026-01-02T03:04:05.001Z stdout F a\n")
	recP := len("2026-01-02T03:04:05.002Z stdout P \n") + maxLine
	w.f = &shortFile{WriteCloser: real, limit: recA + recP + 10}
	if _, err := w.Stream(Stdout).Write([]byte(data)); !errors.Is(err, errShort) {
		t.Fatalf("Write = %v, want the file's error", err)
	}
	if w.size != int64(recA+recP+10) {
		t.Fatalf("size %d, want the %d bytes written", w.size, recA+recP+10)
	}
	if !w.open[Stdout] {
		t.Fatal("the stream is not inside a line after its first P record was written")
	}
	if got, want := w.bufs[Stdout].Len(), len(data)-2-maxLine; got != want {
		t.Fatalf("%d bytes left to write, want %d", got, want)
	}
	b := writeClosed(t, w, real, Stdout, "c\n", path)
	if int64(len(b)) != w.size {
		t.Fatalf("file has %d bytes, the Writer counted %d", len(b), w.size)
	}
	// a and the first piece once; the torn record is followed by the
	// rest of the line written again, then b and c.
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 6 {
		t.Fatalf("%d records, want 6 (a, P, torn P + P again, F, b, c)", len(lines))
	}
	var msgs []string
	for i, l := range lines {
		if i == 2 {
			// The torn record's bytes run into the record written again.
			if !strings.HasPrefix(l, "2026-01-02") || !strings.HasSuffix(l, " stdout P "+long[maxLine:2*maxLine]) {
				t.Fatalf("record 2 is %.80q", l)
			}
			msgs = append(msgs, "")
			continue
		}
		r, err := Parse([]byte(l))
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, string(r.Message))
	}
	if msgs[0] != "a" || msgs[1] != long[:maxLine] || msgs[3] != long[2*maxLine:] || msgs[4] != "b" || msgs[5] != "c" {
		t.Fatalf("records after the failed write: %.80q", msgs)
	}
}

// TestUnwrittenOutputBounded: while the file cannot be written, a stream
// keeps at most about maxUnwritten bytes of output; the complete lines
// past that are dropped and counted, a line begun by a P record before is
// ended by an empty F record, and once the file can be written the kept
// lines follow whole and in order.
func TestUnwrittenOutputBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	w, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	real := w.f
	out := w.Stream(Stdout)
	// A long line whose first piece is written as a P record.
	long := strings.Repeat("x", maxLine+100)
	if _, err := out.Write([]byte(long)); err != nil {
		t.Fatal(err)
	}
	w.f = &shortFile{WriteCloser: real}
	var chunk []byte
	line := 0
	for range 3 * maxUnwritten / (32 << 10) {
		chunk = chunk[:0]
		for len(chunk) < 32<<10 {
			chunk = fmt.Appendf(chunk, "line %08d\n", line)
			line++
		}
		if _, err := out.Write(chunk); !errors.Is(err, errShort) {
			t.Fatalf("Write = %v, want the file's error", err)
		}
		if n := w.bufs[Stdout].Len(); n > maxUnwritten+32<<10 {
			t.Fatalf("%d bytes kept unwritten, want at most %d", n, maxUnwritten+32<<10)
		}
	}
	kept := w.bufs[Stdout].Len()
	total := int64(len(long)-maxLine) + int64(line)*int64(len("line 00000000\n"))
	if d := w.Dropped(); d == 0 || d+int64(kept) != total {
		t.Fatalf("dropped %d and kept %d of %d bytes", d, kept, total)
	}
	b := writeClosed(t, w, real, Stdout, "after\n", path)
	var lines []string
	var cur []byte
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		r, err := Parse([]byte(l))
		if err != nil {
			t.Fatal(err)
		}
		cur = append(cur, r.Message...)
		if !r.Partial {
			lines = append(lines, string(cur))
			cur = nil
		}
	}
	if len(lines) < 3 || lines[0] != long[:maxLine] || lines[len(lines)-1] != "after" {
		t.Fatalf("%d lines: first %.40q, last %q; want the long line's written piece first and after last", len(lines), lines[0], lines[len(lines)-1])
	}
	first := line - (len(lines) - 2)
	for i, l := range lines[1 : len(lines)-1] {
		if want := fmt.Sprintf("line %08d", first+i); l != want {
			t.Fatalf("line %d is %q, want %q (the last lines, whole and in order)", i+1, l, want)
		}
	}
}

// writeClosed gives w its file back, writes s to stream, closes w and
// returns what the file at path holds.
func writeClosed(t *testing.T, w *Writer, f io.WriteCloser, stream, s, path string) []byte {
	t.Helper()
	w.f = f
	if _, err := w.Stream(stream).Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
