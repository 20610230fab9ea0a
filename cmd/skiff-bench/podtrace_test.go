package main

import (
	"bytes"
	"log/slog"
	"testing"
	"time"
)

// TestPodTraces: the agent's JSON start traces are matched to the pod
// created at a given time (names repeat across the benchmark's phases)
// and turned into times after the create call; other records and
// pods are skipped.
func TestPodTraces(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t0 := time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC)
	at := func(ms int) string { return t0.Add(time.Duration(ms) * time.Millisecond).Format(time.RFC3339Nano) }
	trace := func(pod string, seen, sync, status int) {
		log.Debug("pod start trace", "pod", pod, "uid", "u", "containers", 1, "sync", at(sync),
			"sandbox_ms", 40.5, "prepare_ms", 3.0, "image_ms", 0.5, "create_ms", 30.25, "start_ms", 90.0, "status", at(status), "seen", at(seen))
	}
	trace("bench-pods/lat-000", 10, 11, 200)          // first phase
	log.Warn("sync pod", "pod", "bench-pods/lat-000") // not a trace
	trace("bench-pods/lat-001", 5, 6, 150)
	trace("bench-pods/lat-000", 60010, 60400, 61000) // the burst phase's lat-000
	buf.WriteString("not json\n")

	traces, err := parsePodTraces(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(traces["bench-pods/lat-000"]) != 2 || len(traces["bench-pods/lat-001"]) != 1 || len(traces) != 2 {
		t.Fatalf("traces: %+v", traces)
	}
	first := traceFor(traces["bench-pods/lat-000"], t0)
	if first == nil || first.SeenMs == nil || *first.SeenMs != 10 || first.SyncMs != 11 || first.StatusMs != 200 ||
		first.SandboxMs != 40.5 || first.PrepareMs != 3 || first.CreateMs != 30.25 || first.StartMs != 90 {
		t.Fatalf("first phase's lat-000: %+v", first)
	}
	// Created a minute later: the burst phase's record, relative to that.
	second := traceFor(traces["bench-pods/lat-000"], t0.Add(60*time.Second))
	if second == nil || *second.SeenMs != 10 || second.SyncMs != 400 || second.StatusMs != 1000 {
		t.Fatalf("burst phase's lat-000: %+v", second)
	}
	if got := traceFor(traces["bench-pods/lat-001"], t0.Add(time.Second)); got != nil {
		t.Fatalf("a trace from before the create call was taken: %+v", got)
	}
}
