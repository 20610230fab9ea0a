package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/nodeagent/crilog"
)

// TestBenchContainerLog: a pod's lines go through the pipe and the agent's
// copy into its CRI file, all of them, in order; nothing is left running;
// a file that cannot be opened is an error.
func TestBenchContainerLog(t *testing.T) {
	goroutines := runtime.NumGoroutine()
	path := filepath.Join(t.TempDir(), "app", "0.log")
	const lines, pods, p = 3000, 3, 1
	size, err := benchContainerLog(path, p, pods, lines, 100)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Size() != size {
		t.Fatalf("size %d, file %v (%v)", size, st, err)
	}
	var out bytes.Buffer
	if err := crilog.Read(context.Background(), path, &out, crilog.Options{TailLines: -1}); err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(got) != lines/pods {
		t.Fatalf("%d lines, want %d", len(got), lines/pods)
	}
	for k, l := range got {
		i := p + k*pods
		if len(l) != 99 || !strings.Contains(l, " request id="+strconv.Itoa(i)+" ") {
			t.Fatalf("line %d = %q, want line %d of 99 bytes", k, l, i)
		}
	}
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := benchContainerLog(filepath.Join(blocker, "0.log"), 0, 1, 10, 100); err == nil {
		t.Fatal("no error for a log path under a file")
	}
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > goroutines; {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left running, %d before", runtime.NumGoroutine(), goroutines)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
