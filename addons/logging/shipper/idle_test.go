package shipper

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/skiffhq/skiff/nodeagent/crilog"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestBurstTailSentWhenIdle: with a FlushInterval too long to ever tick,
// a few occasional lines wait (no batch was sent full lately), while a
// burst is shipped to its last line as soon as the tailer has read it
// all: the partly filled last batch goes when every tailer is idle.
func TestBurstTailSentWhenIdle(t *testing.T) {
	srv := storeServer(t)
	logDir := t.TempDir()
	w, err := crilog.Open(filepath.Join(logDir, "ns1_web-0_uid-1", "app", "0.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	pod := testPod()
	cfg := Config{PodLogDir: logDir, StateDir: t.TempDir(), NodeName: "node-a", URL: srv.URL + "/logs",
		Pod:          func(types.UID) *corev1.Pod { return pod },
		PollInterval: 20 * time.Millisecond, FlushInterval: time.Hour, FlushBytes: 16 << 10}
	r := startShipper(t, cfg)

	const few = 3
	for i := range few {
		fmt.Fprintf(w.Stream(crilog.Stdout), "occasional %d\n", i)
	}
	// The tailer reads them at once (inotify, or the 20 ms poll); they
	// stay in the batch being filled.
	time.Sleep(time.Second)
	if got := r.s.Stats().Shipped; got != 0 {
		t.Fatalf("%d occasional lines shipped before any tick, want them batched", got)
	}

	const burst = 5000 // ~100 B documents: a few dozen 16 KiB batches
	for i := range burst {
		fmt.Fprintf(w.Stream(crilog.Stdout), "burst line %06d of the test\n", i)
	}
	want := int64(few + burst)
	deadline := time.Now().Add(30 * time.Second)
	for r.s.Stats().Shipped < want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s := r.s.Stats(); s.Shipped != want {
		t.Fatalf("shipped %d of %d lines (the burst's last batch waits for the hour's tick?)", s.Shipped, want)
	}
}

// TestBulkWorkers: a slow sink sees at most BulkWorkers _bulk requests at
// once from a shipper with a backlog, and that many.
func TestBulkWorkers(t *testing.T) {
	for _, workers := range []int{1, 3} {
		t.Run(fmt.Sprint(workers), func(t *testing.T) {
			srv, k := newBulkSink(t, 50*time.Millisecond, nil)
			logDir := t.TempDir()
			w, err := crilog.Open(filepath.Join(logDir, "ns1_web-0_uid-1", "app", "0.log"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = w.Close() })
			const n = 2000 // ~300 B documents: dozens of 16 KiB requests
			for i := range n {
				fmt.Fprintf(w.Stream(crilog.Stdout), "backlog line %06d of the test\n", i)
			}
			pod := testPod()
			r := startShipper(t, Config{PodLogDir: logDir, StateDir: t.TempDir(), NodeName: "node-a", URL: srv.URL,
				Pod:          func(types.UID) *corev1.Pod { return pod },
				PollInterval: 20 * time.Millisecond, FlushInterval: 50 * time.Millisecond, FlushBytes: 16 << 10,
				BulkWorkers: workers})
			deadline := time.Now().Add(60 * time.Second)
			for r.s.Stats().Shipped < n && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			k.mu.Lock()
			most := k.maxInFlight
			k.mu.Unlock()
			if got := r.s.Stats().Shipped; got != n || most != workers {
				t.Fatalf("shipped %d of %d, at most %d requests at once, want %d", got, n, most, workers)
			}
		})
	}
}
