package main

import (
	"os"
	"testing"
	"time"
)

func TestParseProcStatCPU(t *testing.T) {
	busy, idle, err := parseProcStatCPU("cpu  100 5 50 1000 20 3 7 2 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
	if err != nil {
		t.Fatal(err)
	}
	// user+nice+system+irq+softirq+steal = 167 ticks; idle+iowait = 1020.
	if busy != 1670*time.Millisecond || idle != 10200*time.Millisecond {
		t.Fatalf("busy %v idle %v", busy, idle)
	}
	if _, _, err := parseProcStatCPU("intr 1 2 3\n"); err == nil {
		t.Fatal("a file without a cpu line parsed")
	}
}

func TestCPUPerRequest(t *testing.T) {
	before := cpuSample{proxy: time.Second, backend: 2 * time.Second, machineBusy: 10 * time.Second, machineIdle: 5 * time.Second}
	after := cpuSample{proxy: 3 * time.Second, backend: 3 * time.Second, machineBusy: 16 * time.Second, machineIdle: 7 * time.Second}
	c := after.perRequest(before, time.Second, 100000)
	want := cpuPerReq{Wrk: 10, Proxy: 20, Backend: 10, Machine: 60, Other: 20, IdlePct: 25}
	if c != want {
		t.Fatalf("got %+v, want %+v", c, want)
	}
}

func TestSampleCPUSelf(t *testing.T) {
	s, err := sampleCPU(os.Getpid(), os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.machineBusy <= 0 || s.machineIdle < 0 {
		t.Fatalf("machine %+v", s)
	}
}

func TestParseWrkRequests(t *testing.T) {
	out := `Running 10s test @ http://127.0.0.1:1/
  2 threads and 64 connections
  Latency Distribution
     50%    3.29ms
     99%   12.00ms
  178810 requests in 10.00s, 30.01MB read
Requests/sec:  17881.00
`
	r, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 178810 || r.RequestsPerSec != 17881 || r.P50Ms != 3.29 || r.P99Ms != 12 {
		t.Fatalf("%+v", r)
	}
}
