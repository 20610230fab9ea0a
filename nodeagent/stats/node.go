// Package stats builds the kubelet Summary API
// (k8s.io/kubelet/pkg/apis/stats/v1alpha1, served as /stats/summary) for
// Skiff's node agents: the node's own CPU, memory, network and filesystem
// from /proc, the root cgroup and statfs (NodeSampler), CPU rates from
// cumulative usage (Rates), and the synthetic summaries hollow nodes report
// (Synthetic). Per-container samples come from containerd (package
// runtime); the agent puts them together.
package stats

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// userHZ is the clock tick of /proc/stat (USER_HZ is 100 on Linux).
const userHZ = 100

// NodeSampler samples the node. ProcDir and CgroupDir default to /proc
// and /sys/fs/cgroup; FsPaths name the node filesystem (the agent's state
// folder) and the runtime's image filesystem.
type NodeSampler struct {
	ProcDir, CgroupDir string
	NodeFsPath         string
	ImageFsPath        string

	rates Rates
}

// Sample reads the node's stats now.
func (s *NodeSampler) Sample(nodeName string, now time.Time) (statsv1alpha1.NodeStats, error) {
	proc, cg := s.ProcDir, s.CgroupDir
	if proc == "" {
		proc = "/proc"
	}
	if cg == "" {
		cg = "/sys/fs/cgroup"
	}
	t := metav1.NewTime(now)
	ns := statsv1alpha1.NodeStats{NodeName: nodeName}
	if boot, err := bootTime(proc); err == nil {
		ns.StartTime = metav1.NewTime(boot)
	}
	cpuNanos, err := procCPU(proc)
	if err != nil {
		return ns, err
	}
	ns.CPU = &statsv1alpha1.CPUStats{Time: t, UsageCoreNanoSeconds: &cpuNanos, UsageNanoCores: s.rates.Rate("node", now, cpuNanos)}
	mem, err := nodeMemory(proc, cg)
	if err != nil {
		return ns, err
	}
	mem.Time = t
	ns.Memory = mem
	if net, err := nodeNetwork(proc); err == nil {
		net.Time = t
		ns.Network = net
	}
	if s.NodeFsPath != "" {
		ns.Fs = FsStats(s.NodeFsPath, now)
	}
	if s.ImageFsPath != "" {
		if fs := FsStats(s.ImageFsPath, now); fs != nil {
			ns.Runtime = &statsv1alpha1.RuntimeStats{ImageFs: fs, ContainerFs: fs}
		}
	}
	return ns, nil
}

// Rates turns cumulative CPU usage into nano-cores per key (node, pod or
// container), as the kubelet derives usageNanoCores from two samples. A
// sample closer than MinRateInterval to the previous one returns the
// previous rate, so concurrent callers do not see noise. Keys not passed to
// Rate between two Prune calls are forgotten.
type Rates struct {
	mu   sync.Mutex
	prev map[string]rateSample
}

// MinRateInterval is the shortest interval a rate is computed over.
const MinRateInterval = time.Second

type rateSample struct {
	t     time.Time
	total uint64
	rate  uint64
	has   bool
	seen  bool
}

// Rate records total for key at t and returns the rate since the previous
// sample (nil for the first sample or after a counter reset).
func (r *Rates) Rate(key string, t time.Time, total uint64) *uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.prev == nil {
		r.prev = map[string]rateSample{}
	}
	p, ok := r.prev[key]
	if ok && total >= p.total && t.Sub(p.t) < MinRateInterval {
		p.seen = true
		r.prev[key] = p
		if !p.has {
			return nil
		}
		v := p.rate
		return &v
	}
	s := rateSample{t: t, total: total, seen: true}
	if ok && total >= p.total && t.After(p.t) {
		s.rate, s.has = uint64(float64(total-p.total)/t.Sub(p.t).Seconds()), true
	}
	r.prev[key] = s
	if !s.has {
		return nil
	}
	v := s.rate
	return &v
}

// Prune forgets keys not passed to Rate since the previous Prune.
func (r *Rates) Prune() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, v := range r.prev {
		if !v.seen {
			delete(r.prev, k)
			continue
		}
		v.seen = false
		r.prev[k] = v
	}
}

func bootTime(proc string) (time.Time, error) {
	b, err := os.ReadFile(filepath.Join(proc, "stat"))
	if err != nil {
		return time.Time{}, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "btime "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}, err
			}
			return time.Unix(n, 0), nil
		}
	}
	return time.Time{}, fmt.Errorf("no btime in %s/stat", proc)
}

// procCPU is the node's cumulative busy CPU time in nanoseconds: every
// field of /proc/stat's "cpu" line except idle and iowait (guest time is
// already counted in user).
func procCPU(proc string) (uint64, error) {
	f, err := os.Open(filepath.Join(proc, "stat"))
	if err != nil {
		return 0, fmt.Errorf("node cpu: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 || fields[0] != "cpu" {
			continue
		}
		var busy uint64
		for i, v := range fields[1:] {
			if i == 3 || i == 4 || i >= 8 { // idle, iowait, guest, guest_nice
				continue
			}
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("node cpu: %w", err)
			}
			busy += n
		}
		return busy * (1e9 / userHZ), nil
	}
	return 0, fmt.Errorf("node cpu: no cpu line in %s/stat", proc)
}

// nodeMemory follows the kubelet: usage and working set of the root
// cgroup (working set = usage - inactive file), available = capacity -
// working set. Without a readable root memory cgroup (cgroup v2 has no
// root memory.current) usage is MemTotal - MemFree from /proc/meminfo.
func nodeMemory(proc, cg string) (*statsv1alpha1.MemoryStats, error) {
	mi, err := meminfo(proc)
	if err != nil {
		return nil, err
	}
	total := mi["MemTotal"]
	usage := total - mi["MemFree"]
	inactiveFile := mi["Inactive(file)"]
	if u, err := readUint(filepath.Join(cg, "memory", "memory.usage_in_bytes")); err == nil {
		usage = u
		if st, err := keyValues(filepath.Join(cg, "memory", "memory.stat")); err == nil {
			inactiveFile = st["total_inactive_file"]
		}
	}
	ws := usage - min(usage, inactiveFile)
	avail := total - min(total, ws)
	rss := mi["AnonPages"]
	return &statsv1alpha1.MemoryStats{UsageBytes: &usage, WorkingSetBytes: &ws, AvailableBytes: &avail, RSSBytes: &rss}, nil
}

func meminfo(proc string) (map[string]uint64, error) {
	b, err := os.ReadFile(filepath.Join(proc, "meminfo"))
	if err != nil {
		return nil, fmt.Errorf("node memory: %w", err)
	}
	out := map[string]uint64{}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		if len(f) > 1 && f[1] == "kB" {
			n *= 1024
		}
		out[k] = n
	}
	if out["MemTotal"] == 0 {
		return nil, fmt.Errorf("node memory: no MemTotal in %s/meminfo", proc)
	}
	return out, nil
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64)
}

func keyValues(path string) (map[string]uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) != 2 {
			continue
		}
		if n, err := strconv.ParseUint(f[1], 10, 64); err == nil {
			out[f[0]] = n
		}
	}
	return out, nil
}

// nodeNetwork reports every interface of the host network namespace but
// loopback and pod veths; the top-level interface is the default route's.
func nodeNetwork(proc string) (*statsv1alpha1.NetworkStats, error) {
	ifs, err := NetDev(filepath.Join(proc, "net", "dev"))
	if err != nil {
		return nil, err
	}
	def := defaultRouteInterface(filepath.Join(proc, "net", "route"))
	out := &statsv1alpha1.NetworkStats{}
	for _, i := range ifs {
		if i.Name == "lo" || strings.HasPrefix(i.Name, "veth") {
			continue
		}
		out.Interfaces = append(out.Interfaces, i)
		if i.Name == def {
			out.InterfaceStats = i
		}
	}
	if out.Name == "" && len(out.Interfaces) > 0 {
		out.InterfaceStats = out.Interfaces[0]
	}
	return out, nil
}

// NetDev parses a /proc/<pid>/net/dev file.
func NetDev(path string) ([]statsv1alpha1.InterfaceStats, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("network stats: %w", err)
	}
	var out []statsv1alpha1.InterfaceStats
	for _, l := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 16 {
			continue
		}
		n := func(i int) *uint64 {
			v, _ := strconv.ParseUint(f[i], 10, 64)
			return &v
		}
		out = append(out, statsv1alpha1.InterfaceStats{Name: strings.TrimSpace(name), RxBytes: n(0), RxErrors: n(2), TxBytes: n(8), TxErrors: n(10)})
	}
	return out, nil
}

func defaultRouteInterface(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(l)
		if len(f) > 2 && f[1] == "00000000" && f[2] != "00000000" || len(f) > 7 && f[1] == "00000000" && f[7] == "00000000" {
			return f[0]
		}
	}
	return ""
}

// FsStats is statfs of the filesystem holding path (nil if unreadable).
func FsStats(path string, now time.Time) *statsv1alpha1.FsStats {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return nil
	}
	bs := uint64(st.Bsize)
	capacity, avail := st.Blocks*bs, st.Bavail*bs
	used := (st.Blocks - st.Bfree) * bs
	inodes, free := st.Files, st.Ffree
	iused := inodes - free
	return &statsv1alpha1.FsStats{Time: metav1.NewTime(now), CapacityBytes: &capacity, AvailableBytes: &avail, UsedBytes: &used,
		Inodes: &inodes, InodesFree: &free, InodesUsed: &iused}
}
