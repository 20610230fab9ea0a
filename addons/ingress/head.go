package ingress

import (
	"bytes"
	"errors"
)

// A small strict parser for HTTP/1.x request heads, used by the lean
// listener (lean.go). It accepts only what the lean path can serve as is:
// an origin-form target of plain characters, HTTP/1.0 or 1.1, CRLF line
// ends, no body (no Transfer-Encoding; at most one Content-Length, "0").
// Heads that are valid HTTP but outside that subset (obs-fold, bare LF,
// absolute-form or escaped targets, other versions, the h2c preface,
// bodies, several Host or Content-Length headers) are left to net/http
// (errHeadHandoff), which applies its own rules; heads that are broken
// whatever the reader get 400 (*headError). A request is never framed
// differently on the two paths: anything that could carry a body goes to
// net/http with its bytes untouched.

// maxRequestHead bounds a request head (request line and headers); a
// longer one gets 431.
const maxRequestHead = 64 << 10

var (
	errHeadIncomplete = errors.New("incomplete request head")
	errHeadHandoff    = errors.New("request head left to net/http")
)

// headError is a head no HTTP server would accept: answered with code.
type headError struct {
	code int
	msg  string
}

func (e *headError) Error() string { return e.msg }

type headerField struct {
	name  []byte // canonical (as textproto.CanonicalMIMEHeaderKey)
	value []byte // without surrounding blanks
}

// requestHead points into the buffer it was parsed from.
type requestHead struct {
	method, target []byte
	minor          int // HTTP/1.minor: 0 or 1
	fields         []headerField
	host           []byte // the Host header's value (exactly one)
	hasHost        bool
}

// tchar: the token characters of RFC 9110 5.6.2.
var tchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range []byte("!#$%&'*+-.^_`|~") {
		t[c] = true
	}
	return t
}()

// pathChar: the characters of a target's path the lean path forwards
// as they are (unreserved, sub-delims, ':', '@', '/'); '%' escapes and
// anything else go to net/http, which normalizes them.
var pathChar = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = tchar[c]
	}
	t['%'], t['^'], t['`'], t['|'], t['#'] = false, false, false, false, false
	for _, c := range []byte("()*,/:;=@") {
		t[c] = true
	}
	return t
}()

// queryChar: visible ASCII but '#' (a fragment); the query is cleaned as
// ReverseProxy does before it is forwarded.
var queryChar = func() (t [256]bool) {
	for c := 0x21; c < 0x7f; c++ {
		t[c] = c != '#'
	}
	return t
}()

// parseRequestHead parses the head at the start of b into h (reusing its
// field slice) and returns the head's length including the final CRLF.
// Errors: errHeadIncomplete (read more; the caller enforces
// maxRequestHead), errHeadHandoff, *headError. Header names are
// canonicalized in place in b.
func parseRequestHead(b []byte, h *requestHead) (int, error) {
	h.fields = h.fields[:0]
	h.host, h.hasHost = nil, false
	line, rest, err := nextLine(b)
	if err != nil {
		return 0, err
	}
	if len(line) == 0 {
		return 0, errHeadHandoff // leading empty line (RFC 9112 2.2 lets servers skip it)
	}
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return 0, &headError{400, "malformed request line"}
	}
	h.method = line[:sp1]
	for _, c := range h.method {
		if !tchar[c] {
			return 0, &headError{400, "malformed request line: invalid method"}
		}
	}
	sp2 := bytes.IndexByte(line[sp1+1:], ' ')
	if sp2 <= 0 {
		return 0, &headError{400, "malformed request line"}
	}
	h.target = line[sp1+1 : sp1+1+sp2]
	proto := line[sp1+1+sp2+1:]
	for _, c := range h.target {
		if c < 0x20 || c == 0x7f {
			return 0, &headError{400, "malformed request line: control character in target"}
		}
	}
	switch string(proto) {
	case "HTTP/1.1":
		h.minor = 1
	case "HTTP/1.0":
		h.minor = 0
	default:
		if bytes.HasPrefix(proto, []byte("HTTP/")) {
			return 0, errHeadHandoff // HTTP/2 preface, other versions: net/http decides
		}
		return 0, &headError{400, "malformed request line: bad protocol version"}
	}
	if !plainTarget(h.target) {
		return 0, errHeadHandoff
	}
	clSeen := false
	for {
		line, rest, err = nextLine(rest)
		if err != nil {
			return 0, err
		}
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return 0, errHeadHandoff // obs-fold
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			return 0, &headError{400, "malformed header line (no colon)"}
		}
		name, value := line[:colon], line[colon+1:]
		if len(name) == 0 {
			return 0, &headError{400, "malformed header line (empty name)"}
		}
		upper := true
		for i, c := range name {
			if !tchar[c] {
				return 0, &headError{400, "invalid header name"}
			}
			switch {
			case upper && 'a' <= c && c <= 'z':
				name[i] = c - 'a' + 'A'
			case !upper && 'A' <= c && c <= 'Z':
				name[i] = c - 'A' + 'a'
			}
			upper = c == '-'
		}
		for len(value) > 0 && (value[0] == ' ' || value[0] == '\t') {
			value = value[1:]
		}
		for len(value) > 0 && (value[len(value)-1] == ' ' || value[len(value)-1] == '\t') {
			value = value[:len(value)-1]
		}
		for _, c := range value {
			if c < 0x20 && c != '\t' || c == 0x7f {
				return 0, &headError{400, "invalid header value"}
			}
		}
		switch string(name) {
		case "Host":
			if h.hasHost {
				return 0, errHeadHandoff // net/http refuses it
			}
			h.host, h.hasHost = value, true
		case "Content-Length":
			if clSeen || string(value) != "0" {
				return 0, errHeadHandoff // a body, or framing net/http must judge
			}
			clSeen = true
		case "Transfer-Encoding":
			return 0, errHeadHandoff
		}
		h.fields = append(h.fields, headerField{name: name, value: value})
	}
	return len(b) - len(rest), nil
}

// nextLine splits off one CRLF-terminated line; a bare LF or CR is left
// to net/http.
func nextLine(b []byte) (line, rest []byte, err error) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		if bytes.IndexByte(b, '\r') >= 0 && b[len(b)-1] != '\r' {
			return nil, nil, errHeadHandoff // a CR not followed by LF
		}
		return nil, nil, errHeadIncomplete
	}
	if i == 0 || b[i-1] != '\r' {
		return nil, nil, errHeadHandoff
	}
	line = b[:i-1]
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, nil, errHeadHandoff
	}
	return line, b[i+1:], nil
}

// plainTarget: origin-form, a path of pathChar (not starting "//"), an
// optional query of queryChar.
func plainTarget(t []byte) bool {
	if len(t) == 0 || t[0] != '/' || len(t) > 1 && t[1] == '/' {
		return false
	}
	i := 0
	for ; i < len(t) && t[i] != '?'; i++ {
		if !pathChar[t[i]] {
			return false
		}
	}
	for i++; i < len(t); i++ {
		if !queryChar[t[i]] {
			return false
		}
	}
	return true
}

// splitTarget returns the path and the query (without '?'), and whether
// there was a '?'.
func splitTarget(t []byte) (path, query []byte, hasQuery bool) {
	if i := bytes.IndexByte(t, '?'); i >= 0 {
		return t[:i], t[i+1:], true
	}
	return t, nil, false
}
