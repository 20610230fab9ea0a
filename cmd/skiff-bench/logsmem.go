package main

import (
	"bytes"
	"log/slog"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"sync"
	"time"
)

// peakHeapProfile samples the live heap every 50 ms and keeps the heap
// profile of the highest sample seen, written to path when the returned
// stop is called (the in-use figures are those of the last GC before the
// peak). An empty path does nothing.
func peakHeapProfile(path string) (stop func()) {
	if path == "" {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		names := []string{"/gc/heap/live:bytes", "/gc/heap/goal:bytes", "/memory/classes/heap/objects:bytes",
			"/memory/classes/total:bytes", "/memory/classes/heap/stacks:bytes", "/memory/classes/heap/released:bytes", "/memory/classes/heap/free:bytes", "/sched/goroutines:goroutines"}
		sample := make([]metrics.Sample, len(names))
		for i, n := range names {
			sample[i].Name = n
		}
		maxes := make([]uint64, len(names))
		var peak uint64
		var best bytes.Buffer
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				if err := os.WriteFile(path, best.Bytes(), 0o600); err != nil {
					slog.Error("heap profile", "err", err)
				}
				args := []any{"profile", path}
				for i, n := range names {
					args = append(args, n, maxes[i])
				}
				slog.Info("shipper memory maxima", args...)
				return
			case <-tick.C:
			}
			metrics.Read(sample)
			for i := range sample {
				maxes[i] = max(maxes[i], sample[i].Value.Uint64())
			}
			if v := sample[0].Value.Uint64(); v > peak+peak/20 || best.Len() == 0 {
				peak = max(peak, v)
				best.Reset()
				// A GC first, so that the profile's in-use figures are
				// those of now, not of the cycle before.
				runtime.GC()
				_ = pprof.Lookup("heap").WriteTo(&best, 0)
			}
		}
	}()
	return func() { close(done); <-finished }
}

// procMem is a child process's memory as /proc/<pid>/status tells it.
type procMem struct {
	// HWMKiB is VmHWM: the peak RSS of the process's own address space
	// (reset by exec, unlike wait4's ru_maxrss, see sampleProcMem).
	HWMKiB int64
	// MaxAnonKiB and MaxFileKiB are the highest RssAnon and RssFile seen
	// (sampled): the process's own memory, and the pages of the binary and
	// other files it touched.
	MaxAnonKiB, MaxFileKiB int64
	// MaxRSSKiB is the highest RssAnon+RssFile+RssShmem seen (sampled).
	MaxRSSKiB int64
}

// sampleEvery calls read now and every interval until stop is called,
// which calls it a last time (stop may be called more than once).
func sampleEvery(interval time.Duration, read func()) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			read()
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			<-finished
			read()
		})
	}
}

// sampleProcMem samples /proc/<pid>/status every 20 ms until stop, which
// returns the maxima (with one last sample). wait4's ru_maxrss cannot be
// used for a child of a Go process: Go starts children with
// clone(CLONE_VM|CLONE_VFORK), and exec records the high-water RSS of the
// address space it leaves, which is the parent's, into the child's
// ru_maxrss; a bench process holding a store reported its own RSS as the
// shipper's.
func sampleProcMem(pid int) (stop func() procMem) {
	var (
		mu sync.Mutex
		m  procMem
	)
	read := func() {
		kb, err := procStatusKB(pid, "VmHWM", "RssAnon", "RssFile", "RssShmem")
		if err != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		m.HWMKiB = max(m.HWMKiB, kb[0])
		m.MaxAnonKiB = max(m.MaxAnonKiB, kb[1])
		m.MaxFileKiB = max(m.MaxFileKiB, kb[2])
		m.MaxRSSKiB = max(m.MaxRSSKiB, kb[1]+kb[2]+kb[3])
	}
	stopSampling := sampleEvery(20*time.Millisecond, read)
	return func() procMem {
		stopSampling()
		mu.Lock()
		defer mu.Unlock()
		return m
	}
}
