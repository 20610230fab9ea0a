package store

import (
	"fmt"
	"slices"
	"testing"
	"unicode"
	"unicode/utf8"
)

// tokensByRune is tokens as it was first written, rune by rune into a
// buffer: the reference the table-driven tokens must agree with (blocks
// written before hold its tokens' hashes).
func tokensByRune(s []byte, fn func(tok []byte)) {
	var buf []byte
	i := 0
	for i < len(s) {
		for i < len(s) {
			c := s[i]
			if c < 0x80 {
				if isWordASCII(c) {
					break
				}
				i++
				continue
			}
			r, n := utf8.DecodeRune(s[i:])
			if unicode.IsLetter(r) || unicode.IsDigit(r) {
				break
			}
			i += n
		}
		if i >= len(s) {
			break
		}
		buf = buf[:0]
		for i < len(s) {
			c := s[i]
			if c < 0x80 {
				if isWordASCII(c) {
					if c >= 'A' && c <= 'Z' {
						c += 'a' - 'A'
					}
					buf = append(buf, c)
					i++
					continue
				}
				if c == '.' && len(buf) > 0 && i+1 < len(s) && s[i+1] < 0x80 && isWordASCII(s[i+1]) {
					buf = append(buf, c)
					i++
					continue
				}
				break
			}
			r, n := utf8.DecodeRune(s[i:])
			if !(unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r)) {
				break
			}
			buf = utf8.AppendRune(buf, unicode.ToLower(r))
			i += n
		}
		fn(buf)
	}
}

func tokenList(s []byte, tokenize func([]byte, func([]byte))) []string {
	var out []string
	tokenize(s, func(t []byte) { out = append(out, string(t)) })
	return out
}

func tokensTable(s []byte, fn func([]byte)) { tokens(s, nil, fn) }

var tokenSamples = []string{
	"", ".", "a", "A", "GET /api/v1/pods?watch=1 HTTP/1.1 200",
	"host-7.example.com:8080 10.0.0.1 v1.2.3.", "ERROR Connection_Reset by peer...",
	"..a..b.. a.B.c .x x. x.é", "Ünïcödé Straße ÉCOLE naïve café", "日本語のテキスト 123",
	"a\u0301b e\u0301.f", "\xff\xfeabc\xc3", "x.\xc3\xa9", "ÀB.cd", "_under_score_ __init__",
	"MiXeD.CaSe.Host 1.2.3.4", "tab\tnew\nline\r\n", "trailing.", "a.b.", "İstanbul ǅ ß",
}

// TestTokensAgreeWithByRune: the table-driven tokenizer yields the same
// tokens as the rune-by-rune one, lower-cased or not, ASCII or not.
func TestTokensAgreeWithByRune(t *testing.T) {
	for _, s := range tokenSamples {
		want, got := tokenList([]byte(s), tokensByRune), tokenList([]byte(s), tokensTable)
		if !slices.Equal(got, want) {
			t.Errorf("tokens(%q) = %q, want %q", s, got, want)
		}
	}
	// A token in lower case comes from s itself, not the buffer.
	s := []byte("abc DEF")
	var same []bool
	tokens(s, make([]byte, 0, 8), func(t []byte) { same = append(same, &t[0] == &s[0] || &t[0] == &s[4]) })
	if !slices.Equal(same, []bool{true, false}) {
		t.Errorf("tokens in place: %v, want [true false]", same)
	}
}

func FuzzTokens(f *testing.F) {
	for _, s := range tokenSamples {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, s []byte) {
		want, got := tokenList(s, tokensByRune), tokenList(s, tokensTable)
		if !slices.Equal(got, want) {
			t.Fatalf("tokens(%q) = %q, want %q", s, got, want)
		}
	})
}

// BenchmarkTokens: log lines as the benchmarks' containers write them,
// through the table-driven tokenizer and the rune-by-rune one.
func BenchmarkTokens(b *testing.B) {
	lines := make([][]byte, 64)
	size := 0
	for i := range lines {
		lines[i] = fmt.Appendf(nil, "2026-12-03T11:08:07.%03dZ INFO GET /api/v1/namespaces/ns-%d/pods HTTP/1.1 200 user=Alice id=%08x", i, i%7, i*7919)
		size += len(lines[i])
	}
	n := 0
	count := func([]byte) { n++ }
	b.Run("table", func(b *testing.B) {
		b.SetBytes(int64(size))
		var buf []byte
		for b.Loop() {
			for _, l := range lines {
				buf = tokens(l, buf, count)
			}
		}
	})
	b.Run("by-rune", func(b *testing.B) {
		b.SetBytes(int64(size))
		for b.Loop() {
			for _, l := range lines {
				tokensByRune(l, count)
			}
		}
	})
}
