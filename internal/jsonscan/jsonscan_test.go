package jsonscan

import (
	"strings"
	"testing"
)

// plainRef and plainHTMLRef are Plain and PlainHTML byte by byte.
func plainRef(s []byte) int {
	for i, c := range s {
		if !plainByte(c) {
			return i
		}
	}
	return len(s)
}

func plainHTMLRef(s []byte) int {
	for i, c := range s {
		if !plainByte(c) || htmlByte(c) {
			return i
		}
	}
	return len(s)
}

var samples = []string{
	"", "a", "plain text of a log line, longer than a word", `say "hi"`, `back\slash`,
	"tab\there", "caf\u00e9 au lait", "<b>bold</b> & co", "\x00", "\x1f\x20", "\x7f\x80",
	"0123456\"", "01234567\"", "012345678\\", strings.Repeat("x", 63) + "\n",
	"!!!!!!!!\x21\x22", "\xff" + strings.Repeat("a", 20), "ABCDEFG\x1fHIJ", "~~~~~~~~~~~~~~~~\x7f",
}

func check(t *testing.T, s []byte) {
	t.Helper()
	if got, want := Plain(s), plainRef(s); got != want {
		t.Fatalf("Plain(%q) = %d, want %d", s, got, want)
	}
	if got, want := PlainHTMLString(string(s)), plainHTMLRef(s); got != want {
		t.Fatalf("PlainHTMLString(%q) = %d, want %d", s, got, want)
	}
	if got, want := PlainHTML(s), plainHTMLRef(s); got != want {
		t.Fatalf("PlainHTML(%q) = %d, want %d", s, got, want)
	}
}

// TestPlain: every byte value at every position of a word, after plain
// text, is found where the byte by byte scan finds it.
func TestPlain(t *testing.T) {
	for _, s := range samples {
		check(t, []byte(s))
	}
	for c := range 256 {
		for pos := range 17 {
			s := []byte(strings.Repeat("a", pos) + string([]byte{byte(c)}) + "tail text")
			check(t, s)
		}
	}
}

func FuzzPlain(f *testing.F) {
	for _, s := range samples {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, s []byte) { check(t, s) })
}

// BenchmarkPlain: a 100-byte log line, by words and byte by byte.
func BenchmarkPlain(b *testing.B) {
	line := []byte("2026-12-03T11:08:07.123Z INFO GET /api/v1/namespaces/default/pods 200 in 1.2ms user=alice id=0f3a")
	b.SetBytes(int64(len(line)))
	n := 0
	b.Run("words", func(b *testing.B) {
		for b.Loop() {
			n += Plain(line)
		}
	})
	b.Run("bytes", func(b *testing.B) {
		for b.Loop() {
			n += plainRef(line)
		}
	})
	if n == 0 {
		b.Fatal("nothing scanned")
	}
}
