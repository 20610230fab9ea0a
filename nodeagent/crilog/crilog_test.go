package crilog

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestWriteAndRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c", "0.log")
	w, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tick := 0
	w.now = func() time.Time { tick++; return base.Add(time.Duration(tick) * time.Second) }
	io := w.Stream(Stdout)
	_, _ = io.Write([]byte("one\ntw"))
	_, _ = io.Write([]byte("o\nthree\n"))
	_, _ = w.Stream(Stderr).Write([]byte("oops\n"))
	_, _ = io.Write([]byte(strings.Repeat("x", maxLine+10) + "\nno newline"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	read := func(o Options) string {
		var b bytes.Buffer
		if err := Read(context.Background(), path, &b, o); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	all := read(Options{TailLines: -1})
	want := "one\ntwo\nthree\noops\n" + strings.Repeat("x", maxLine+10) + "\nno newline"
	if all != want {
		t.Fatalf("all = %q", all[:min(len(all), 80)])
	}
	if got := read(Options{TailLines: 2}); got != strings.Repeat("x", 10)+"\nno newline" {
		t.Fatalf("tail 2 = %q", got)
	}
	if got := read(Options{TailLines: -1, LimitBytes: 6}); got != "one\ntw" {
		t.Fatalf("limit = %q", got)
	}
	if got := read(Options{TailLines: -1, Since: base.Add(3 * time.Second), LimitBytes: 11}); got != "three\noops\n" {
		t.Fatalf("since = %q", got)
	}
	if got := read(Options{TailLines: 1, Timestamps: true}); got != base.Add(7*time.Second).Format(time.RFC3339Nano)+" no newline" {
		t.Fatalf("timestamps = %q", got)
	}
}

func TestFollow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	w, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var done atomic.Bool
	go func() {
		for i := 0; i < 3; i++ {
			_, _ = w.Stream(Stdout).Write([]byte("line\n"))
			time.Sleep(50 * time.Millisecond)
		}
		_ = w.Close()
		done.Store(true)
	}()
	var b bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := Read(ctx, path, &b, Options{TailLines: -1, Follow: true, Done: done.Load}); err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatal("follow did not end when the container was done")
	}
	if got := b.String(); got != "line\nline\nline\n" {
		t.Fatalf("followed %q", got)
	}
}
