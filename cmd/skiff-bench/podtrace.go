package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"
)

// podTrace splits one pod's startup latency using the agent's "pod
// start trace" debug record (nodeagent/agent/trace.go). Times are
// milliseconds after the benchmark's create call; durations are the
// sync's steps.
type podTrace struct {
	// SeenMs: the agent's informer delivered the pod.
	SeenMs *float64 `json:"seen_ms,omitempty"`
	// SyncMs: the sync that started the containers began (after seen:
	// the queue, or earlier syncs that failed).
	SyncMs    float64 `json:"sync_ms"`
	SandboxMs float64 `json:"sandbox_ms"`
	PrepareMs float64 `json:"prepare_ms"`
	ImageMs   float64 `json:"image_ms"`
	CreateMs  float64 `json:"create_ms"`
	StartMs   float64 `json:"start_ms"`
	// StatusMs: the agent's status write (Running) returned; the rest up
	// to the pod's latency is the watch's delivery to the benchmark.
	StatusMs float64 `json:"status_ms"`
}

// agentTraceRecord is the JSON form of a "pod start trace" record.
type agentTraceRecord struct {
	Msg       string    `json:"msg"`
	Pod       string    `json:"pod"`
	Seen      time.Time `json:"seen"`
	Sync      time.Time `json:"sync"`
	Status    time.Time `json:"status"`
	SandboxMs float64   `json:"sandbox_ms"`
	PrepareMs float64   `json:"prepare_ms"`
	ImageMs   float64   `json:"image_ms"`
	CreateMs  float64   `json:"create_ms"`
	StartMs   float64   `json:"start_ms"`
}

// readPodTraces reads the agent's JSON log and returns, for each pod
// (namespace/name), its start trace records in log order.
func readPodTraces(path string) (map[string][]agentTraceRecord, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parsePodTraces(f)
}

func parsePodTraces(r io.Reader) (map[string][]agentTraceRecord, error) {
	out := map[string][]agentTraceRecord{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var rec agentTraceRecord
		if json.Unmarshal(sc.Bytes(), &rec) != nil || rec.Msg != "pod start trace" || rec.Pod == "" {
			continue
		}
		out[rec.Pod] = append(out[rec.Pod], rec)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("agent trace log: %w", err)
	}
	return out, nil
}

// traceFor is the trace of the pod created at created: its first record
// whose sync began after the create call (pod names repeat across the
// benchmark's phases), or nil.
func traceFor(recs []agentTraceRecord, created time.Time) *podTrace {
	for _, r := range recs {
		if r.Sync.Before(created) {
			continue
		}
		after := func(t time.Time) float64 { return float64(t.Sub(created).Microseconds()) / 1000 }
		pt := &podTrace{SyncMs: after(r.Sync), SandboxMs: r.SandboxMs, PrepareMs: r.PrepareMs, ImageMs: r.ImageMs,
			CreateMs: r.CreateMs, StartMs: r.StartMs, StatusMs: after(r.Status)}
		if !r.Seen.IsZero() {
			s := after(r.Seen)
			pt.SeenMs = &s
		}
		return pt
	}
	return nil
}
