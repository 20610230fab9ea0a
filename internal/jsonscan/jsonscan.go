// Package jsonscan finds, eight bytes at a time, how far a JSON string's
// text runs without a byte that an encoder or decoder must handle: a
// quote, a backslash, a control character or a non-ASCII byte. Log lines
// are mostly such plain text, so their strings are copied as they are up
// to that point.
package jsonscan

import (
	"encoding/binary"
	"unsafe"
)

const (
	ones = 0x0101010101010101
	high = 0x8080808080808080
)

// has marks the bytes of x equal to b (exactly at the first; a byte after
// a marked one may be marked falsely, which the callers' byte by byte
// look after the word settles).
func has(x uint64, b byte) uint64 {
	v := x ^ (ones * uint64(b))
	return (v - ones) & ^v & high
}

// special marks the bytes of x that Plain stops at.
func special(x uint64) uint64 {
	return has(x, '"') | has(x, '\\') | (x-ones*0x20)&^x&high | x&high
}

func plainByte(c byte) bool { return c >= 0x20 && c < 0x80 && c != '"' && c != '\\' }

func htmlByte(c byte) bool { return c == '<' || c == '>' || c == '&' }

// Plain returns the length of s's longest prefix of printable ASCII
// without '"' or '\\'.
func Plain(s []byte) int {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		if special(binary.LittleEndian.Uint64(s[i:])) != 0 {
			break
		}
	}
	for ; i < len(s) && plainByte(s[i]); i++ {
	}
	return i
}

// PlainHTML is Plain stopping at '<', '>' and '&' too (encoding/json
// escapes them).
func PlainHTML(s []byte) int {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		x := binary.LittleEndian.Uint64(s[i:])
		if special(x)|has(x, '<')|has(x, '>')|has(x, '&') != 0 {
			break
		}
	}
	for ; i < len(s) && plainByte(s[i]) && !htmlByte(s[i]); i++ {
	}
	return i
}

// PlainHTMLString is PlainHTML of a string (read in place).
func PlainHTMLString(s string) int {
	return PlainHTML(unsafe.Slice(unsafe.StringData(s), len(s)))
}
