package ingress

import (
	"bytes"
	"net/http"
	"unsafe"
)

// parsePlainAnswer reads the common backend answer head — HTTP/1.1, a
// final status (200–599), one Content-Length (or no body by status or
// for a HEAD request), plain "Name: value" CRLF lines of visible ASCII —
// from the start of p, into what http.ReadResponse would return for it,
// with fewer allocations (one string for the head, one slice for all
// values, the map, the Response). n is the head's length. ok is false for
// anything else (other versions, 1xx, Transfer-Encoding, Connection,
// Trailer, Pragma, a missing, repeated or odd Content-Length, obs-fold,
// bare LF, other bytes, an incomplete head): the caller then reads the
// head with http.ReadResponse, which decides and reports errors.
// FuzzParsePlainAnswer checks that every head accepted here is read the
// same way by http.ReadResponse.
func parsePlainAnswer(p []byte, req *http.Request) (resp *http.Response, n int, ok bool) {
	return parsePlainAnswerInto(nil, p, req)
}

// plainAnswer is reused by parsePlainAnswerInto for one answer head at a
// time (the epoll loop keeps one per backend connection): the Response,
// its Header map, the value slice and a copy of the head's bytes that
// the names and values point into. What a parse returned — the Response,
// the map, every string in them — is valid only until the next parse
// into the same plainAnswer: nothing of it may be kept past the answer
// (copy a string before storing it).
type plainAnswer struct {
	resp http.Response
	h    http.Header
	vals []string
	head []byte
}

// Answers larger than this get fresh memory (a rare large head does not
// stay pinned to the connection).
const (
	plainAnswerReuseLines = 32
	plainAnswerReuseBytes = 2048
)

// parsePlainAnswerInto is parsePlainAnswer, reusing a's memory (a nil a:
// all fresh).
func parsePlainAnswerInto(a *plainAnswer, p []byte, req *http.Request) (resp *http.Response, n int, ok bool) {
	head := req.Method == http.MethodHead
	end := bytes.Index(p, []byte("\r\n\r\n"))
	if end < 0 || end > maxResponseHeader {
		return nil, 0, false
	}
	n = end + 4
	hp := p[:end+2] // each line with its CRLF
	// Status line: "HTTP/1.1 NNN reason".
	const proto = "HTTP/1.1 "
	if len(hp) < len(proto)+5 || string(hp[:len(proto)]) != proto {
		return nil, 0, false
	}
	d := hp[len(proto) : len(proto)+3]
	if d[0] < '2' || d[0] > '5' || d[1] < '0' || d[1] > '9' || d[2] < '0' || d[2] > '9' {
		return nil, 0, false
	}
	code := int(d[0]-'0')*100 + int(d[1]-'0')*10 + int(d[2]-'0')
	eol := bytes.IndexByte(hp, '\n')
	if eol < len(proto)+4 || bytes.IndexByte(hp[:eol], '\r') != eol-1 {
		return nil, 0, false // bare LF, or a CR inside the line
	}
	line := hp[len(proto)+3 : eol-1] // " reason" or ""
	if len(line) > 0 && line[0] != ' ' {
		return nil, 0, false
	}
	for _, c := range line {
		if c < ' ' || c > '~' {
			return nil, 0, false
		}
	}
	rest := hp[eol+1:]
	lines := bytes.Count(rest, []byte("\n"))
	if bytes.Count(rest, []byte("\r\n")) != lines {
		return nil, 0, false // bare LF
	}
	var s string // names and values are slices of it
	var h http.Header
	var vals []string
	if a != nil && lines <= plainAnswerReuseLines && len(hp) <= plainAnswerReuseBytes {
		a.head = append(a.head[:0], hp...)
		s = unsafe.String(unsafe.SliceData(a.head), len(a.head))
		if a.h == nil {
			a.h = make(http.Header, plainAnswerReuseLines)
		} else {
			clear(a.h)
		}
		h = a.h
		if cap(a.vals) < lines {
			a.vals = make([]string, plainAnswerReuseLines)
		}
		vals = a.vals[:lines]
		resp = &a.resp
	} else {
		s = string(hp) // one allocation
		h = make(http.Header, lines)
		vals = make([]string, lines)
	}
	off := eol + 1
	var cl int64 = -1
	for i := range lines {
		// Every LF ends a CRLF (checked above); a CR elsewhere is left in
		// the line, where the name and value checks refuse it.
		e := off + bytes.IndexByte(hp[off:], '\n') - 1
		ln := hp[off:e]
		colon := bytes.IndexByte(ln, ':')
		if colon <= 0 {
			return nil, 0, false
		}
		name, ok := canonicalAnswerKey(ln[:colon], s[off:off+colon])
		if !ok {
			return nil, 0, false
		}
		v := ln[colon+1:]
		vs, ve := 0, len(v)
		for vs < ve && (v[vs] == ' ' || v[vs] == '\t') {
			vs++
		}
		for ve > vs && (v[ve-1] == ' ' || v[ve-1] == '\t') {
			ve--
		}
		for _, c := range v[vs:ve] {
			if (c < ' ' && c != '\t') || c > '~' {
				return nil, 0, false
			}
		}
		val := s[off+colon+1+vs : off+colon+1+ve]
		switch name {
		case "Transfer-Encoding", "Connection", "Trailer", "Pragma":
			return nil, 0, false
		case "Content-Length":
			if cl >= 0 || len(val) == 0 || len(val) > 18 {
				return nil, 0, false
			}
			cl = 0
			for j := 0; j < len(val); j++ {
				if val[j] < '0' || val[j] > '9' {
					return nil, 0, false
				}
				cl = cl*10 + int64(val[j]-'0')
			}
		}
		vals[i] = val
		if old, dup := h[name]; dup {
			h[name] = append(old, val)
		} else {
			h[name] = vals[i : i+1 : i+1]
		}
		off = e + 2
	}
	if resp == nil {
		resp = new(http.Response)
	}
	*resp = http.Response{Status: s[len(proto) : eol-1], StatusCode: code, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, ContentLength: cl, Body: http.NoBody, Request: req}
	switch {
	case head:
		// A HEAD answer has no body; its Content-Length stays as sent.
	case code == http.StatusNoContent || code == http.StatusNotModified:
		resp.ContentLength = 0
	case cl < 0:
		return nil, 0, false // read until close: ReadResponse's case
	}
	if !head && resp.ContentLength > 0 {
		resp.Body = plainAnswerBody{}
	}
	return resp, n, true
}

// plainAnswerBody marks an answer with a body that the loop reads from
// its own buffer and socket (Body is never read).
type plainAnswerBody struct{}

func (plainAnswerBody) Read([]byte) (int, error) { return 0, http.ErrBodyNotAllowed }
func (plainAnswerBody) Close() error             { return nil }

// canonicalAnswerKey returns the canonical form of a header name made of
// token characters (textproto's), interning the common ones; s is the
// same bytes as a string (returned when already canonical).
func canonicalAnswerKey(b []byte, s string) (string, bool) {
	upper := true
	canonical := true
	for _, c := range b {
		if !isTokenByte(c) {
			return "", false
		}
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			canonical = false
		}
		upper = c == '-'
	}
	if canonical {
		if k, ok := commonAnswerKeys[s]; ok {
			return k, true
		}
		return s, true
	}
	var buf [64]byte
	if len(b) > len(buf) {
		return http.CanonicalHeaderKey(s), true
	}
	k := buf[:len(b)]
	upper = true
	for i, c := range b {
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		} else if !upper && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		k[i] = c
		upper = c == '-'
	}
	if ck, ok := commonAnswerKeys[string(k)]; ok {
		return ck, true
	}
	return string(k), true
}

func isTokenByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

var commonAnswerKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"Content-Length", "Content-Type", "Date", "Server", "Cache-Control",
		"Etag", "Last-Modified", "Expires", "Vary", "Location", "Set-Cookie", "Content-Encoding",
		"Accept-Ranges", "Age", "X-Content-Type-Options", "X-Frame-Options", "Strict-Transport-Security"} {
		m[k] = k
	}
	return m
}()
