package shipper

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// MultilineAnnotation on a pod turns on multi-line joining for its
// containers: its value is an RE2 pattern, or a preset name, matching
// the first line of a record. A line that does not match it continues the
// record before it on the same stream (a stack trace, a pretty-printed
// object) and is joined to it with "\n".
//
// MultilineAnnotation + "." + <container> sets it for one container and
// wins over the pod-wide value; "" there turns joining off for it.
//
// Presets: "indented" (a record starts at a line that does not begin with
// whitespace, so the indented frames of a Java or Python stack trace stay
// with their first line) and "timestamp" (a record starts at a line
// beginning with an ISO 8601, bracketed or syslog-style date: everything
// an application prints between two of its dated lines is one record).
const MultilineAnnotation = "logging.skiff.io/multiline-start"

// Bounds of a joined record: beyond them the record is shipped and the
// next line starts a new one, matching or not.
const (
	maxJoinedLines = 1000
	// multilineFlush is how long a joined record waits for a continuation
	// line once the file has nothing more to read.
	multilineFlush = time.Second
)

var multilinePresets = map[string]string{
	"indented":  `^\S`,
	"timestamp": `^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}|[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}|\[\d{4}-\d{2}-\d{2})`,
}

// multilineStart returns the start pattern for container of a pod with
// these annotations (nil: no joining).
func multilineStart(annotations map[string]string, container string) (*regexp.Regexp, error) {
	v, ok := annotations[MultilineAnnotation+"."+container]
	if !ok {
		v, ok = annotations[MultilineAnnotation]
	}
	v = strings.TrimSpace(v)
	if !ok || v == "" {
		return nil, nil
	}
	if p, ok := multilinePresets[v]; ok {
		v = p
	}
	re, err := regexp.Compile(v)
	if err != nil {
		return nil, fmt.Errorf("annotation %s: %w", MultilineAnnotation, err)
	}
	return re, nil
}

// joiner joins the records of one file into multi-line records, per
// stream. Records are joined in the order read; each joined record keeps
// its first line's time and offset (its document ID and checkpoint).
type joiner struct {
	start   *regexp.Regexp
	pending map[string]*joined
}

type joined struct {
	rec   *logLine
	lines int
	last  time.Time // when the last line was added
}

// add takes the next record of its stream and returns the record it
// completes, if any.
func (j *joiner) add(rec *logLine, now time.Time) *logLine {
	p := j.pending[rec.stream]
	if p != nil && p.lines < maxJoinedLines && len(p.rec.msg)+1+len(rec.msg) <= maxMessage && !j.start.Match(rec.msg) {
		p.rec.msg = append(append(p.rec.msg, '\n'), rec.msg...)
		p.lines++
		p.last = now
		return nil
	}
	if j.pending == nil {
		j.pending = map[string]*joined{}
	}
	// The record outlives the read buffer its message may point into.
	rec.msg = append(make([]byte, 0, len(rec.msg)), rec.msg...)
	j.pending[rec.stream] = &joined{rec: rec, lines: 1, last: now}
	if p == nil {
		return nil
	}
	return p.rec
}

// idle returns, and forgets, the records that got no line for
// multilineFlush before now (all of them when now is zero).
func (j *joiner) idle(now time.Time) []*logLine {
	var out []*logLine
	for s, p := range j.pending {
		if now.IsZero() || now.Sub(p.last) >= multilineFlush {
			out = append(out, p.rec)
			delete(j.pending, s)
		}
	}
	return out
}

// earliest lowers end to the first offset of a pending record: a restart
// must read that record again from its first line.
func (j *joiner) earliest(end int64) int64 {
	for _, p := range j.pending {
		if p.rec.offset < end {
			end = p.rec.offset
		}
	}
	return end
}

func samePattern(a, b *regexp.Regexp) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.String() == b.String()
}
