package main

import (
	"testing"
	"time"
)

func TestParsePSI(t *testing.T) {
	some, full, err := parsePSI([]byte("some avg10=1.38 avg60=1.38 avg300=8.90 total=22474962151\nfull avg10=1.32 avg60=1.12 avg300=6.89 total=16801126324\n"))
	if err != nil {
		t.Fatal(err)
	}
	if some != 22474962151*time.Microsecond || full != 16801126324*time.Microsecond {
		t.Fatalf("some %v full %v", some, full)
	}
	// cpu before Linux 5.13 has no full line.
	some, full, err = parsePSI([]byte("some avg10=0.00 avg60=0.00 avg300=0.00 total=17\n"))
	if err != nil || some != 17*time.Microsecond || full != 0 {
		t.Fatalf("some-only: %v %v %v", some, full, err)
	}
	for _, bad := range []string{"", "full total=3\n", "some avg10=1\n", "some total=-4\n", "some total=x\n", "other total=1\n"} {
		if _, _, err := parsePSI([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestParseStatSteal(t *testing.T) {
	steal, err := parseStatSteal([]byte("cpu  4705 150 1120 16250 520 0 38 77 0 0\ncpu0 2000 70 500 8000 260 0 20 40 0 0\n"))
	if err != nil || steal != 770*time.Millisecond {
		t.Fatalf("steal %v err %v", steal, err)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6 7 8 9\n", "cpu 1 2 3\n", "cpu 1 2 3 4 5 6 7 x 9\n"} {
		if _, err := parseStatSteal([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestStallBetween: the window runs from the last sample at or before its
// start to the first at or after its end, and a window the samples do not
// cover has no figures.
func TestStallBetween(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	var samples []stallCounters
	for i := range 5 {
		d := time.Duration(i) * time.Millisecond
		samples = append(samples, stallCounters{at: at(100 * i), cpuSome: 10 * d, ioSome: 20 * d, ioFull: 30 * d, memSome: d, steal: 40 * d})
	}
	got := stallBetween(samples, at(150), at(250)) // samples 1 .. 3
	want := hostStall{WindowMs: 200, CPUSomeMs: 20, IOSomeMs: 40, IOFullMs: 60, MemSomeMs: 2, StealMs: 80}
	if got == nil || *got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if got := stallBetween(samples, at(100), at(200)); got == nil || got.WindowMs != 100 || got.IOFullMs != 30 {
		t.Fatalf("window on samples: %+v", got)
	}
	if got := stallBetween(samples, at(-1), at(200)); got != nil {
		t.Fatalf("window before the first sample: %+v", got)
	}
	if got := stallBetween(samples, at(300), at(401)); got != nil {
		t.Fatalf("window after the last sample: %+v", got)
	}
}

// TestStallSamplerReadsThisMachine: where the kernel has PSI the sampler
// covers a window it ran through and the figures are within it.
func TestStallSamplerReadsThisMachine(t *testing.T) {
	s := startStallSampler(10 * time.Millisecond)
	if s == nil {
		t.Skip("no /proc/pressure on this kernel")
	}
	t0 := time.Now()
	time.Sleep(60 * time.Millisecond)
	t1 := time.Now()
	s.Stop()
	h := s.Between(t0, t1)
	if h == nil {
		t.Fatal("no figures for a window the sampler ran through")
	}
	if h.WindowMs < 60 {
		t.Fatalf("window %v ms, shorter than the 60 ms slept", h.WindowMs)
	}
	for name, v := range map[string]float64{"cpu": h.CPUSomeMs, "io": h.IOSomeMs, "io full": h.IOFullMs, "memory": h.MemSomeMs} {
		if v < 0 || v > h.WindowMs*1.05 {
			t.Errorf("%s stall %v ms outside [0, window %v ms]", name, v, h.WindowMs)
		}
	}
	if h.IOFullMs > h.IOSomeMs {
		t.Errorf("io full %v > io some %v", h.IOFullMs, h.IOSomeMs)
	}
}

// TestFreshPageCost: the probe maps, touches and unmaps; its figure is a
// positive time per page, and a bad size is an error, not a crash.
func TestFreshPageCost(t *testing.T) {
	us, err := freshPageCost(4)
	if err != nil {
		t.Fatal(err)
	}
	if us <= 0 {
		t.Fatalf("%v µs per page", us)
	}
	if _, err := freshPageCost(0); err == nil {
		t.Fatal("a 0 MiB map gave no error")
	}
}
