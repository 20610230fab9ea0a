package crilog

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"
)

// FuzzParse: any line parses or is ErrBadRecord; a parsed record printed
// back in the CRI format parses to the same record.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"2024-01-02T03:04:05.123456789Z stdout F hello world",
		"2024-01-02T03:04:05Z stderr P part",
		"2024-01-02T03:04:05.5+02:00 stdout F ",
		"2024-01-02T03:04:05Z stdout F",
		"garbage", "", " ", "2024-01-02T03:04:05Z",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		rec, err := Parse(line)
		if err != nil {
			if err != ErrBadRecord {
				t.Fatalf("unexpected error type: %v", err)
			}
			return
		}
		tag := "F"
		if rec.Partial {
			tag = "P"
		}
		if bytes.IndexByte([]byte(rec.Stream), ' ') >= 0 {
			t.Fatalf("stream name %q holds a space", rec.Stream)
		}
		if fields := bytes.SplitN(line, []byte{' '}, 3); rec.Stream != string(fields[1]) {
			t.Fatalf("stream %q, the line says %q", rec.Stream, fields[1])
		}
		var b []byte
		b = rec.Time.AppendFormat(b, time.RFC3339Nano)
		b = append(b, ' ')
		b = append(b, rec.Stream...)
		b = append(b, ' ')
		b = append(b, tag...)
		b = append(b, ' ')
		b = append(b, rec.Message...)
		again, err := Parse(b)
		if err != nil {
			t.Fatalf("reprinted record %q does not parse: %v", b, err)
		}
		if !again.Time.Equal(rec.Time) || again.Stream != rec.Stream || again.Partial != rec.Partial || !bytes.Equal(again.Message, rec.Message) {
			t.Fatalf("record changed on reprint: %+v vs %+v", rec, again)
		}
	})
}

// TestParseAllocs: a record of stdout or stderr is parsed without
// allocating (the shipper parses every line).
func TestParseAllocs(t *testing.T) {
	for _, line := range []string{"2024-01-02T03:04:05.123456789Z stdout F hello", "2024-01-02T03:04:05Z stderr P part"} {
		b := []byte(line)
		if n := testing.AllocsPerRun(100, func() { _, _ = Parse(b) }); n != 0 {
			t.Errorf("%q: %v allocations per Parse", line, n)
		}
	}
	if rec, err := Parse([]byte("2024-01-02T03:04:05Z other F x")); err != nil || rec.Stream != "other" {
		t.Errorf("other stream: %+v, %v", rec, err)
	}
}

// FuzzWriteRead: whatever a container writes (any bytes, split into any
// writes) reads back byte for byte, and a tail read is a suffix of the
// whole log that ends on a line boundary.
func FuzzWriteRead(f *testing.F) {
	f.Add([]byte("hello\nworld\n"), uint16(3), int64(1))
	f.Add([]byte("no newline at end"), uint16(0), int64(5))
	f.Add(bytes.Repeat([]byte("x"), 40000), uint16(7), int64(2))
	f.Add([]byte("\n\n\r\n\x00 F P stdout\n"), uint16(1), int64(0))
	f.Fuzz(func(t *testing.T, data []byte, split uint16, tail int64) {
		path := filepath.Join(t.TempDir(), "0.log")
		w, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		out := w.Stream(Stdout)
		rest := data
		for step := int(split)%97 + 1; len(rest) > 0; {
			n := min(step, len(rest))
			if _, err := out.Write(rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		var all bytes.Buffer
		if err := Read(context.Background(), path, &all, Options{TailLines: -1}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(all.Bytes(), data) {
			t.Fatalf("log read back differs: wrote %d bytes, read %d", len(data), all.Len())
		}
		if tail < 0 {
			tail = -tail
		}
		tail %= 50
		var tl bytes.Buffer
		if err := Read(context.Background(), path, &tl, Options{TailLines: tail}); err != nil {
			t.Fatal(err)
		}
		if !bytes.HasSuffix(data, tl.Bytes()) {
			t.Fatalf("tail %d is not a suffix of the log", tail)
		}
	})
}
