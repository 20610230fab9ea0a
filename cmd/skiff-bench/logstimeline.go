package main

import (
	"os"
	"sync"
	"time"
)

// timelinePoint is the state of a logs bench phase at one moment: the
// documents the store counts, the CPU time the bench process and the
// shipper used since the phase started, and the machine's idle time then.
type timelinePoint struct {
	Seconds     float64 `json:"t"`
	Docs        int64   `json:"docs"`
	BenchCPU    float64 `json:"bench_cpu"`
	ShipperCPU  float64 `json:"shipper_cpu"`
	MachineIdle float64 `json:"machine_idle_cpu"`
}

// sampleTimeline records a timelinePoint every interval until stop is
// called, which returns them. It shows where a run's wall time goes: a
// stretch in which the documents counted grow slowly while the machine
// is idle is a wait in the pipeline (a poll, a flush timer, an fsync), not
// a lack of CPU.
func sampleTimeline(interval time.Duration, shipperPID int, docs func() int64) (stop func() []timelinePoint) {
	start := time.Now()
	bench0 := cpuSeconds()
	ship0, _ := procCPU(shipperPID)
	idle0 := machineIdle()
	var (
		mu  sync.Mutex
		pts []timelinePoint
	)
	sample := func() {
		ship, _ := procCPU(shipperPID)
		p := timelinePoint{
			Seconds: time.Since(start).Seconds(), Docs: docs(), BenchCPU: cpuSeconds() - bench0,
			ShipperCPU: (ship - ship0).Seconds(), MachineIdle: (machineIdle() - idle0).Seconds(),
		}
		mu.Lock()
		pts = append(pts, p)
		mu.Unlock()
	}
	stopSampling := sampleEvery(interval, sample)
	return func() []timelinePoint {
		stopSampling()
		mu.Lock()
		defer mu.Unlock()
		return pts
	}
}

// machineIdle is the machine's idle time (idle + iowait) from /proc/stat.
func machineIdle() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	_, idle, _ := parseProcStatCPU(string(b))
	return idle
}
