package main

import (
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// TestSampleTimeline: points come about every interval, in time order,
// with the document count as it was then (the last one taken at stop), and
// CPU and idle times counted from the start, never going back.
func TestSampleTimeline(t *testing.T) {
	var docs atomic.Int64
	stop := sampleTimeline(5*time.Millisecond, os.Getpid(), docs.Load)
	// Busy for at least 60 ms and 50 ms of CPU (a loaded machine may give
	// less CPU than wall time), so the CPU counted grows past a clock tick.
	start, cpu0 := time.Now(), processCPU()
	for time.Since(start) < 60*time.Millisecond || (processCPU()-cpu0 < 50*time.Millisecond && time.Since(start) < 10*time.Second) {
		for range 10000 {
			docs.Add(1)
		}
	}
	docs.Store(1 << 40)
	pts := stop()
	if len(pts) < 4 {
		t.Fatalf("%d points over 60 ms at 5 ms", len(pts))
	}
	last := pts[len(pts)-1]
	if last.Docs != 1<<40 || last.BenchCPU <= 0 || last.ShipperCPU < last.BenchCPU/2 {
		t.Fatalf("last point %+v: want the final count and CPU used (this process is the shipper too)", last)
	}
	for i := 1; i < len(pts); i++ {
		p, q := pts[i-1], pts[i]
		if q.Seconds < p.Seconds || q.Docs < p.Docs || q.BenchCPU < p.BenchCPU || q.ShipperCPU < p.ShipperCPU || q.MachineIdle < p.MachineIdle {
			t.Fatalf("point %d %+v goes back from %+v", i, q, p)
		}
	}
}
