package shipper

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestMultilineStartPattern(t *testing.T) {
	re, err := multilineStart(map[string]string{MultilineAnnotation: "indented"}, "app")
	if err != nil || re == nil {
		t.Fatalf("preset: %v %v", re, err)
	}
	if !re.MatchString("Exception in thread \"main\"") || re.MatchString("\tat a.B.c(B.java:1)") || re.MatchString("  more") {
		t.Fatalf("indented preset %q matches the wrong lines", re)
	}
	ts, _ := multilineStart(map[string]string{MultilineAnnotation: "timestamp"}, "app")
	for _, l := range []string{"2026-11-29 10:00:01 INFO x", "2026-11-29T10:00:01Z x", "[2026-11-29 10:00:01] x", "Nov 29 10:00:01 host x"} {
		if !ts.MatchString(l) {
			t.Errorf("timestamp preset does not start a record at %q", l)
		}
	}
	if ts.MatchString("    at x") || ts.MatchString("Traceback (most recent call last):") {
		t.Error("timestamp preset starts a record at a continuation")
	}
	// A container's own annotation wins; "" there turns joining off.
	ann := map[string]string{MultilineAnnotation: "indented", MultilineAnnotation + ".side": `^BEGIN`, MultilineAnnotation + ".quiet": ""}
	if re, _ := multilineStart(ann, "side"); re == nil || re.String() != `^BEGIN` {
		t.Fatalf("per-container pattern: %v", re)
	}
	if re, _ := multilineStart(ann, "quiet"); re != nil {
		t.Fatalf("per-container off: %v", re)
	}
	if re, _ := multilineStart(nil, "app"); re != nil {
		t.Fatal("joining without the annotation")
	}
	if _, err := multilineStart(map[string]string{MultilineAnnotation: "(["}, "app"); err == nil || !strings.Contains(err.Error(), MultilineAnnotation) {
		t.Fatalf("invalid pattern: %v", err)
	}
}

func TestJoiner(t *testing.T) {
	re, _ := multilineStart(map[string]string{MultilineAnnotation: "indented"}, "app")
	j := joiner{start: re}
	now := time.Unix(1000, 0)
	var off int64
	rec := func(stream, msg string) *logLine {
		r := &logLine{stream: stream, msg: []byte(msg), offset: off, time: now}
		off += int64(len(msg)) + 40
		return r
	}
	var out []string
	add := func(r *logLine) {
		if d := j.add(r, now); d != nil {
			out = append(out, d.stream+":"+string(d.msg))
		}
	}
	first := rec("stdout", "Exception: boom")
	add(first)
	add(rec("stdout", "\tat a.b(C.java:1)"))
	add(rec("stderr", "warning")) // another stream: its own record
	add(rec("stdout", "\tat a.c(C.java:2)"))
	if len(out) != 0 {
		t.Fatalf("shipped %q before the record ended", out)
	}
	if got := j.earliest(off); got != first.offset {
		t.Fatalf("commit point %d, want the open record's first offset %d", got, first.offset)
	}
	add(rec("stdout", "next"))
	if len(out) != 1 || out[0] != "stdout:Exception: boom\n\tat a.b(C.java:1)\n\tat a.c(C.java:2)" {
		t.Fatalf("joined %q", out)
	}
	// Nothing more for a while: the open records are complete.
	if got := j.idle(now.Add(multilineFlush / 2)); len(got) != 0 {
		t.Fatalf("flushed %d records before the idle time", len(got))
	}
	got := j.idle(now.Add(multilineFlush))
	if len(got) != 2 {
		t.Fatalf("idle flush: %d records, want stdout's and stderr's", len(got))
	}
	if j.earliest(off) != off {
		t.Fatal("a flushed record still holds the commit point back")
	}
	// A continuation without a first line is a record of its own; a
	// record stops growing at maxJoinedLines.
	add(rec("stdout", "\torphan"))
	for i := range maxJoinedLines + 5 {
		add(rec("stdout", fmt.Sprintf("\tframe %d", i)))
	}
	if len(out) != 2 || strings.Count(out[1], "\n") != maxJoinedLines-1 {
		t.Fatalf("bounded record: %d records, last has %d lines", len(out), strings.Count(out[len(out)-1], "\n")+1)
	}
}

// TestJoinerOwnsMessages: the tailer reuses its read buffer for the next
// line, so a record held open must not point into it.
func TestJoinerOwnsMessages(t *testing.T) {
	re, _ := multilineStart(map[string]string{MultilineAnnotation: "indented"}, "app")
	j := joiner{start: re}
	buf := []byte("first line")
	j.add(&logLine{stream: "stdout", msg: buf[:len("first line")]}, time.Now())
	copy(buf, "XXXXXXXXXX")
	got := j.idle(time.Time{})
	if len(got) != 1 || string(got[0].msg) != "first line" {
		t.Fatalf("held record %q changed with the read buffer", got[0].msg)
	}
}
