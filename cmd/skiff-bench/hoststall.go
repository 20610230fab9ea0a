package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Host stalls: how long the machine itself held work back during a
// window, from the kernel's pressure stall information (PSI, /proc/pressure)
// and the CPU time the hypervisor took (steal, /proc/stat). A slow pod
// whose window shows seconds of io "full" stall or of steal was held up by
// the machine, not by the agent; one with none was not.

// hostStall is the machine's stall time over one window, in milliseconds.
// The "some" figures are time during which at least one task waited for
// the resource, "full" time during which all non-idle tasks did; steal
// sums over the CPUs.
type hostStall struct {
	WindowMs  float64 `json:"window_ms"`
	CPUSomeMs float64 `json:"cpu_some_ms"`
	IOSomeMs  float64 `json:"io_some_ms"`
	IOFullMs  float64 `json:"io_full_ms"`
	MemSomeMs float64 `json:"memory_some_ms"`
	StealMs   float64 `json:"steal_ms"`
}

// stallCounters are the cumulative counters at one moment.
type stallCounters struct {
	at                               time.Time
	cpuSome, ioSome, ioFull, memSome time.Duration
	steal                            time.Duration
}

// stallSampler reads the counters every interval until stopped.
type stallSampler struct {
	mu      sync.Mutex
	samples []stallCounters
	stop    chan struct{}
	done    chan struct{}
}

// startStallSampler starts sampling, or returns nil if the machine has
// no pressure stall information (a kernel without CONFIG_PSI, or psi=0).
func startStallSampler(interval time.Duration) *stallSampler {
	c, err := readStallCounters()
	if err != nil {
		return nil
	}
	s := &stallSampler{samples: []stallCounters{c}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
			if c, err := readStallCounters(); err == nil {
				s.mu.Lock()
				s.samples = append(s.samples, c)
				s.mu.Unlock()
			}
		}
	}()
	return s
}

// Stop takes a last sample and stops. Safe on a nil sampler.
func (s *stallSampler) Stop() {
	if s == nil {
		return
	}
	close(s.stop)
	<-s.done
	if c, err := readStallCounters(); err == nil {
		s.mu.Lock()
		s.samples = append(s.samples, c)
		s.mu.Unlock()
	}
}

// Between is the stall time from the last sample at or before t0 to the
// first at or after t1 (so the window measured covers [t0, t1] and is
// at most two intervals longer), or nil when the samples do not cover it.
// Safe on a nil sampler.
func (s *stallSampler) Between(t0, t1 time.Time) *hostStall {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return stallBetween(s.samples, t0, t1)
}

func stallBetween(samples []stallCounters, t0, t1 time.Time) *hostStall {
	a, b := -1, -1
	for i, c := range samples {
		if !c.at.After(t0) {
			a = i
		}
		if b < 0 && !c.at.Before(t1) {
			b = i
		}
	}
	if a < 0 || b < 0 || b < a {
		return nil
	}
	x, y := samples[a], samples[b]
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return &hostStall{
		WindowMs:  ms(y.at.Sub(x.at)),
		CPUSomeMs: ms(y.cpuSome - x.cpuSome),
		IOSomeMs:  ms(y.ioSome - x.ioSome),
		IOFullMs:  ms(y.ioFull - x.ioFull),
		MemSomeMs: ms(y.memSome - x.memSome),
		StealMs:   ms(y.steal - x.steal),
	}
}

func readStallCounters() (stallCounters, error) {
	c := stallCounters{at: time.Now()}
	var err error
	read := func(res string) (some, full time.Duration) {
		if err != nil {
			return 0, 0
		}
		var b []byte
		if b, err = os.ReadFile("/proc/pressure/" + res); err != nil {
			return 0, 0
		}
		some, full, err = parsePSI(b)
		return some, full
	}
	c.cpuSome, _ = read("cpu")
	c.ioSome, c.ioFull = read("io")
	c.memSome, _ = read("memory")
	if err != nil {
		return c, err
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return c, err
	}
	c.steal, err = parseStatSteal(b)
	return c, err
}

// parsePSI reads the cumulative "total" (microseconds) of the "some" and
// "full" lines of a /proc/pressure file. A file without a "full" line
// (cpu before Linux 5.13) reports full as 0.
func parsePSI(b []byte) (some, full time.Duration, err error) {
	seen := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		kind := fields[0]
		if kind != "some" && kind != "full" {
			return 0, 0, fmt.Errorf("pressure: unknown line %q", sc.Text())
		}
		var total int64 = -1
		for _, f := range fields[1:] {
			if v, ok := strings.CutPrefix(f, "total="); ok {
				if total, err = strconv.ParseInt(v, 10, 64); err != nil || total < 0 {
					return 0, 0, fmt.Errorf("pressure: bad total in %q", sc.Text())
				}
			}
		}
		if total < 0 {
			return 0, 0, fmt.Errorf("pressure: no total in %q", sc.Text())
		}
		if kind == "some" {
			some, seen = time.Duration(total)*time.Microsecond, true
		} else {
			full = time.Duration(total) * time.Microsecond
		}
	}
	if !seen {
		return 0, 0, fmt.Errorf("pressure: no some line")
	}
	return some, full, nil
}

// parseStatSteal reads the steal time of the "cpu" line of /proc/stat.
func parseStatSteal(b []byte) (time.Duration, error) {
	t, err := procStatCPUTicks(string(b))
	return ticksDuration(t[7]), err
}

// freshPageCost is the time to touch each page of mib MiB of anonymous
// memory the process maps anew, in microseconds per page: the cost of a
// page fault that gets a page the kernel must find (and, on a VM whose
// idle memory went back to the host, that the host must back again).
// A bare machine takes well under a microsecond; this machine's VM took
// 16-40 µs after idling, which is what a process starting (a shim, runc,
// the agent growing its heap) pays per page on it. PSI does not show it.
func freshPageCost(mib int) (float64, error) {
	n := mib << 20
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return 0, fmt.Errorf("map %d MiB: %w", mib, err)
	}
	defer unix.Munmap(b)
	page := os.Getpagesize()
	t0 := time.Now()
	for i := 0; i < n; i += page {
		b[i] = 1
	}
	return float64(time.Since(t0).Nanoseconds()) / 1000 / float64(n/page), nil
}
