package stats

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestNodeSamplerReadsThisMachine(t *testing.T) {
	s := &NodeSampler{NodeFsPath: t.TempDir()}
	t0 := time.Now()
	a, err := s.Sample("n1", t0)
	if err != nil {
		t.Fatal(err)
	}
	if a.NodeName != "n1" || a.CPU == nil || *a.CPU.UsageCoreNanoSeconds == 0 {
		t.Fatalf("cpu: %+v", a.CPU)
	}
	if a.CPU.UsageNanoCores != nil {
		t.Fatalf("first sample has a rate: %d", *a.CPU.UsageNanoCores)
	}
	if a.Memory == nil || *a.Memory.WorkingSetBytes == 0 || *a.Memory.AvailableBytes == 0 {
		t.Fatalf("memory: %+v", a.Memory)
	}
	if a.Fs == nil || *a.Fs.CapacityBytes == 0 {
		t.Fatalf("fs: %+v", a.Fs)
	}
	// Burn a little CPU so the second sample has something to measure.
	for end := time.Now().Add(1100 * time.Millisecond); time.Now().Before(end); {
	}
	b, err := s.Sample("n1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if b.CPU.UsageNanoCores == nil || *b.CPU.UsageNanoCores == 0 {
		t.Fatalf("no cpu rate after 1.1 s of work: %+v", b.CPU)
	}
}

func TestNodeSamplerParsesProcFiles(t *testing.T) {
	proc := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		p := filepath.Join(proc, name)
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("stat", "cpu  100 0 50 1000 20 5 5 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\nbtime 1700000000\n")
	write("meminfo", "MemTotal:       1000 kB\nMemFree:         200 kB\nInactive(file):  100 kB\nAnonPages: 300 kB\n")
	write("net/dev", "Inter-|   Receive\n face |bytes packets errs drop fifo frame compressed multicast|bytes\n"+
		"    lo: 5 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0\n  eth0: 1000 10 2 0 0 0 0 0 2000 20 3 0 0 0 0 0\nveth1: 7 1 0 0 0 0 0 0 7 1 0 0 0 0 0 0\n")
	write("net/route", "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\neth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\n")
	s := &NodeSampler{ProcDir: proc, CgroupDir: filepath.Join(proc, "nocgroup")}
	n, err := s.Sample("n", time.Unix(1700000100, 0))
	if err != nil {
		t.Fatal(err)
	}
	// busy = user+nice+system+irq+softirq+steal = 100+0+50+5+5+0 jiffies.
	if got := *n.CPU.UsageCoreNanoSeconds; got != 160*1e7 {
		t.Errorf("cpu ns = %d, want %d", got, 160*int64(1e7))
	}
	if got := *n.Memory.UsageBytes; got != 800*1024 {
		t.Errorf("usage = %d", got)
	}
	if got := *n.Memory.WorkingSetBytes; got != 700*1024 {
		t.Errorf("working set = %d", got)
	}
	if got := *n.Memory.AvailableBytes; got != 300*1024 {
		t.Errorf("available = %d", got)
	}
	if n.Network.Name != "eth0" || *n.Network.RxBytes != 1000 || *n.Network.TxBytes != 2000 || *n.Network.TxErrors != 3 || len(n.Network.Interfaces) != 1 {
		t.Errorf("network = %+v", n.Network)
	}
	if n.StartTime.Unix() != 1700000000 {
		t.Errorf("start = %v", n.StartTime)
	}
}

func TestRates(t *testing.T) {
	var r Rates
	t0 := time.Unix(100, 0)
	if v := r.Rate("a", t0, 1e9); v != nil {
		t.Fatal("rate on first sample")
	}
	v := r.Rate("a", t0.Add(2*time.Second), 3e9)
	if v == nil || *v != 1e9 {
		t.Fatalf("rate = %v, want 1 core", v)
	}
	// A sample closer than MinRateInterval repeats the last rate.
	if v := r.Rate("a", t0.Add(2500*time.Millisecond), 9e9); v == nil || *v != 1e9 {
		t.Fatalf("close sample rate = %v", v)
	}
	// A counter reset (restarted container) has no rate.
	if v := r.Rate("a", t0.Add(5*time.Second), 1); v != nil {
		t.Fatalf("rate after reset = %d", *v)
	}
	r.Prune()
	r.Prune()
	if v := r.Rate("a", t0.Add(7*time.Second), 2e9+1); v != nil {
		t.Fatal("pruned key kept its base")
	}
}

func TestSyntheticRatesMatchCumulativeUsage(t *testing.T) {
	start := time.Unix(1000, 0)
	n := SyntheticNode{Name: "h", StartTime: start, CPUCores: 4, MemoryBytes: 16 << 30}
	pods := []SyntheticPod{{Namespace: "ns", Name: "p", UID: "u1", Containers: []string{"a", "b"}, StartTime: start.Add(time.Minute)}}
	t1 := start.Add(10 * time.Minute)
	a := Synthetic(n, pods, t1)
	b := Synthetic(n, pods, t1.Add(time.Second))
	for i := range a.Pods[0].Containers {
		ca, cb := a.Pods[0].Containers[i], b.Pods[0].Containers[i]
		derived := float64(*cb.CPU.UsageCoreNanoSeconds - *ca.CPU.UsageCoreNanoSeconds)
		reported := float64(*ca.CPU.UsageNanoCores)
		if derived < reported*0.98 || derived > reported*1.02 {
			t.Errorf("%s: derived %f vs reported %f", ca.Name, derived, reported)
		}
		if reported < 4e6 || reported > 301e6 {
			t.Errorf("%s: implausible rate %f", ca.Name, reported)
		}
	}
	p := a.Pods[0]
	if *p.Memory.WorkingSetBytes != *p.Containers[0].Memory.WorkingSetBytes+*p.Containers[1].Memory.WorkingSetBytes {
		t.Error("pod memory is not the sum of its containers")
	}
	if *a.Node.CPU.UsageNanoCores <= *p.CPU.UsageNanoCores || a.Node.NodeName != "h" {
		t.Errorf("node cpu %d, pod %d", *a.Node.CPU.UsageNanoCores, *p.CPU.UsageNanoCores)
	}
}
