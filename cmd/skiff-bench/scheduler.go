package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/skiffhq/skiff/controlplane/scheduler"
	"github.com/skiffhq/skiff/internal/cpuprofile"
	"github.com/skiffhq/skiff/nodeagent/hollow"
	"github.com/skiffhq/skiff/server"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

// How the scheduler benchmark measures (see README.md in this directory):
//
//   - backlog: a phase's pods are all created while no scheduler runs; then a
//     scheduler starts. pods_per_second = bound pods / (last binding − first
//     binding), the scheduler's own throughput, free of the API server's pod
//     creation rate; startup_seconds is scheduler start → first binding
//     (informer sync of the backlog included).
//   - stream: the scheduler runs (proven by binding a probe pod) while
//     --workers clients create the pods. pods_per_second = bound pods / (last
//     binding − first creation), which cannot exceed create_pods_per_second;
//     latency_p50/p99 are creation (just before the POST) → binding (the
//     bench's watch sees spec.nodeName), the definition.
//
// scheduler_cpu_seconds is the scheduler process's user+system CPU over the
// phase (process mode), so cpu_ms_per_pod stays comparable on a busy machine
// where wall-clock numbers are not.

type schedBenchOpts struct {
	nodes, pods, workers, groupSize int
	phases, modes                   string
	schedulerBinary                 string
	inProcess                       bool
	cpuProfile                      string
	metricsAddr                     string
	pprofAddr                       string
	dataDir                         string
	timeout                         time.Duration
}

type phaseResult struct {
	Name           string  `json:"name"`
	Mode           string  `json:"mode"`
	Pods           int     `json:"pods"`
	Bound          int     `json:"bound"`
	Seconds        float64 `json:"seconds"`
	PodsPerSec     float64 `json:"pods_per_second"`
	StartupSeconds float64 `json:"startup_seconds,omitempty"`
	P50Ms          float64 `json:"latency_p50_ms,omitempty"`
	P99Ms          float64 `json:"latency_p99_ms,omitempty"`
	CreatePerSec   float64 `json:"create_pods_per_second"`
	SchedCPUSecs   float64 `json:"scheduler_cpu_seconds"`
	CPUMsPerPod    float64 `json:"scheduler_cpu_ms_per_pod"`
	ServerMsPerPod float64 `json:"server_cpu_ms_per_pod,omitempty"` // API server, etcd, hollow nodes and the bench watch
	SchedRSSBytes  int64   `json:"scheduler_rss_bytes"`
	schedPeak      int64
}

type schedBenchResult struct {
	Benchmark      string        `json:"benchmark"`
	Nodes          int           `json:"nodes"`
	CPUs           int           `json:"cpus"`
	SchedulerMode  string        `json:"scheduler_mode"`
	Phases         []phaseResult `json:"phases"`
	SchedRSSBytes  int64         `json:"scheduler_rss_bytes"`
	SchedPeakBytes int64         `json:"scheduler_peak_rss_bytes"`
	Note           string        `json:"note,omitempty"`
}

func schedulerCommand() *cobra.Command {
	var o schedBenchOpts
	cmd := &cobra.Command{
		Use:   "scheduler",
		Short: "Benchmark the scheduler: an in-process server, hollow nodes, and pods scheduled per phase (plain, anti-affinity, spread) and mode (backlog, stream)",
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := runSchedulerBench(cmd.Context(), o)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			return enc.Encode(res)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.nodes, "nodes", 1000, "hollow nodes")
	f.IntVar(&o.pods, "pods", 10000, "pods per phase")
	f.IntVar(&o.workers, "workers", 32, "concurrent pod creators")
	f.IntVar(&o.groupSize, "anti-affinity-group", 500, "pods per anti-affinity group (must not exceed --nodes)")
	f.StringVar(&o.phases, "phases", "plain,anti-affinity,spread", "phases to run")
	f.StringVar(&o.modes, "modes", "backlog,stream", "modes per phase: backlog (pods created before the scheduler starts; scheduler throughput) and stream (pods created while it runs; creation-to-binding latency)")
	f.StringVar(&o.schedulerBinary, "scheduler-binary", "", "run `<binary> scheduler` as a separate process to measure its CPU and RSS (default: bin/skiff beside skiff-bench if present, else in-process)")
	f.BoolVar(&o.inProcess, "in-process", false, "run the scheduler inside the benchmark process (CPU and RSS then cover the server and hollow nodes too)")
	f.StringVar(&o.cpuProfile, "cpuprofile", "", "write CPU profiles: <prefix>-<phase>-<mode>.pprof of the scheduler process (in-process: of the whole benchmark process, one file)")
	f.StringVar(&o.metricsAddr, "scheduler-metrics-address", "", "the scheduler process's --metrics-bind-address (/metrics and /debug/pprof/ while a phase runs; empty = off)")
	f.StringVar(&o.pprofAddr, "pprof-address", "", "serve /debug/pprof/ of the benchmark process (API server, etcd, hollow nodes) here (empty = off)")
	f.StringVar(&o.dataDir, "data-dir", "", "server data directory (default: a temporary directory)")
	f.DurationVar(&o.timeout, "phase-timeout", 10*time.Minute, "give up on a phase after this long")
	return cmd
}

// schedRunner starts and stops one scheduler for a phase.
type schedRunner struct {
	o          schedBenchOpts
	bin        string
	kubeconfig string
	cs         kubernetes.Interface
	quiet      *slog.Logger
}

type runningSched struct {
	pid  int
	stop func()
}

func (r *schedRunner) start(ctx context.Context, profile string) (*runningSched, error) {
	if r.bin == "" {
		sched, err := scheduler.New(scheduler.Options{Client: r.cs, Logger: r.quiet})
		if err != nil {
			return nil, err
		}
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = sched.Run(sctx) }()
		return &runningSched{pid: os.Getpid(), stop: func() { cancel(); <-done }}, nil
	}
	args := []string{"scheduler", "--kubeconfig", r.kubeconfig, "--leader-elect=false", "--metrics-bind-address=" + r.o.metricsAddr, "--log-level=error"}
	if profile != "" {
		args = append(args, "--cpuprofile", profile)
	}
	c := exec.CommandContext(ctx, r.bin, args...)
	c.Stderr = os.Stderr
	if err := c.Start(); err != nil {
		return nil, fmt.Errorf("start scheduler process: %w", err)
	}
	return &runningSched{pid: c.Process.Pid, stop: func() { _ = c.Process.Signal(os.Interrupt); _ = c.Wait() }}, nil
}

func runSchedulerBench(ctx context.Context, o schedBenchOpts) (*schedBenchResult, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if o.pprofAddr != "" {
		ln, err := net.Listen("tcp", o.pprofAddr)
		if err != nil {
			return nil, fmt.Errorf("--pprof-address: %w", err)
		}
		defer ln.Close()
		go func() { _ = http.Serve(ln, nil) }() // net/http/pprof registers on the default mux
	}
	dir := o.dataDir
	if dir == "" {
		d, err := os.MkdirTemp("", "skiff-bench-scheduler-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	srv, rc, cs, err := startServer(ctx, server.Config{
		DataDir: dir, Logger: quiet,
		// No node lifecycle controller, as upstream's scheduler_perf: on a
		// loaded machine late hollow-node lease renewals tainted nodes
		// unreachable and left anti-affinity groups without a free node.
		Disable: []string{server.SchedulerName, "nodelifecycle"},
	})
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	res := &schedBenchResult{Benchmark: "scheduler", Nodes: o.nodes, CPUs: runtime.NumCPU()}

	// The scheduler: a separate process when a skiff binary is at hand.
	bin := o.schedulerBinary
	if bin == "" && !o.inProcess {
		bin = defaultServerBin()
	}
	if o.inProcess {
		bin = ""
	}
	runner := &schedRunner{o: o, bin: bin, kubeconfig: srv.Kubeconfig(), cs: cs, quiet: quiet}
	if bin != "" {
		res.SchedulerMode = "process"
	} else {
		res.SchedulerMode = "in-process"
		res.Note = "in-process: CPU and RSS cover the whole benchmark process (server, etcd, hollow nodes, scheduler)"
		stopProfile, err := cpuprofile.Start(o.cpuProfile)
		if err != nil {
			return nil, err
		}
		defer stopProfile()
	}

	hc, err := hollow.Start(ctx, rc, hollow.Options{
		Nodes: o.nodes, CPU: "32", Memory: "128Gi", Pods: "110", Logger: quiet,
		Customize: func(i int, n *corev1.Node) { n.Labels[corev1.LabelTopologyZone] = fmt.Sprintf("zone-%d", i%10) },
	})
	if err != nil {
		return nil, fmt.Errorf("hollow nodes: %w", err)
	}
	defer hc.Stop()

	for _, phase := range strings.Split(o.phases, ",") {
		phase = strings.TrimSpace(phase)
		if phase == "" {
			continue
		}
		for _, mode := range strings.Split(o.modes, ",") {
			mode = strings.TrimSpace(mode)
			if mode == "" {
				continue
			}
			pr, err := runPhase(ctx, cs, runner, o, phase, mode)
			if err != nil {
				return nil, fmt.Errorf("phase %s/%s: %w", phase, mode, err)
			}
			res.Phases = append(res.Phases, *pr)
			res.SchedRSSBytes, res.SchedPeakBytes = pr.SchedRSSBytes, max(res.SchedPeakBytes, pr.schedPeak)
			fmt.Fprintf(os.Stderr, "skiff-bench: %s/%s: %d/%d pods, %.1f pods/s, %.2f ms CPU/pod\n", phase, mode, pr.Bound, pr.Pods, pr.PodsPerSec, pr.CPUMsPerPod)
		}
	}
	return res, nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

func benchPod(phase string, i, groupSize int) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p-%d", i), Labels: map[string]string{"phase": phase}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "c", Image: "registry.k8s.io/pause:3.10",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")}},
		}}},
	}
	switch phase {
	case "anti-affinity":
		g := strconv.Itoa(i / groupSize)
		p.Labels["group"] = g
		p.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
				LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"group": g}},
				TopologyKey:   corev1.LabelHostname,
			}},
		}}
	case "spread":
		sel := &metav1.LabelSelector{MatchLabels: map[string]string{"phase": phase}}
		p.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{
			{MaxSkew: 1, TopologyKey: corev1.LabelTopologyZone, WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: sel},
			{MaxSkew: 1, TopologyKey: corev1.LabelHostname, WhenUnsatisfiable: corev1.ScheduleAnyway, LabelSelector: sel},
		}
	}
	return p
}

// bindWatch records when each pod of a namespace is first seen bound.
type bindWatch struct {
	mu        sync.Mutex
	bound     map[string]time.Time
	want      int
	done      chan struct{}
	closeOnce sync.Once
}

func watchBindings(ctx context.Context, cs kubernetes.Interface, ns string, want int) (*bindWatch, func(), error) {
	w, err := watchPods(ctx, cs, ns)
	if err != nil {
		return nil, nil, err
	}
	bw := &bindWatch{bound: map[string]time.Time{}, want: want, done: make(chan struct{})}
	go func() {
		defer bw.closeOnce.Do(func() { close(bw.done) })
		for ev := range w.ResultChan() {
			if ev.Type != watch.Modified && ev.Type != watch.Added {
				continue
			}
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || p.Spec.NodeName == "" {
				continue
			}
			now := time.Now()
			bw.mu.Lock()
			if _, seen := bw.bound[p.Name]; !seen {
				bw.bound[p.Name] = now
			}
			n := len(bw.bound)
			bw.mu.Unlock()
			if n >= bw.want {
				return
			}
		}
	}()
	return bw, w.Stop, nil
}

func (bw *bindWatch) has(name string) bool {
	bw.mu.Lock()
	defer bw.mu.Unlock()
	_, ok := bw.bound[name]
	return ok
}

// createPods creates the phase's pods with o.workers clients and returns
// the time just before each POST.
func createPods(ctx context.Context, cs kubernetes.Interface, o schedBenchOpts, ns, phase string) (map[string]time.Time, time.Duration, error) {
	var mu sync.Mutex
	created := make(map[string]time.Time, o.pods)
	jobs := make(chan int)
	var wg sync.WaitGroup
	errCh := make(chan error, o.workers)
	start := time.Now()
	for w := 0; w < o.workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				p := benchPod(phase, i, o.groupSize)
				t := time.Now()
				mu.Lock()
				created[p.Name] = t
				mu.Unlock()
				if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
					select {
					case errCh <- err:
					default:
					}
					return
				}
			}
		}()
	}
	var err error
feed:
	for i := 0; i < o.pods; i++ {
		select {
		case jobs <- i:
		case err = <-errCh:
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errCh:
		default:
		}
	}
	if err != nil {
		return nil, 0, fmt.Errorf("create pods: %w", err)
	}
	return created, time.Since(start), nil
}

func runPhase(ctx context.Context, cs kubernetes.Interface, runner *schedRunner, o schedBenchOpts, phase, mode string) (*phaseResult, error) {
	switch phase {
	case "plain", "anti-affinity", "spread":
	default:
		return nil, fmt.Errorf("unknown phase %q (plain, anti-affinity, spread)", phase)
	}
	if mode != "backlog" && mode != "stream" {
		return nil, fmt.Errorf("unknown mode %q (backlog, stream)", mode)
	}
	if phase == "anti-affinity" && o.groupSize > o.nodes {
		return nil, fmt.Errorf("--anti-affinity-group %d exceeds --nodes %d: the pods could not all fit", o.groupSize, o.nodes)
	}
	ns := "bench-" + phase + "-" + mode
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	profile := ""
	if o.cpuProfile != "" && runner.bin != "" {
		profile = fmt.Sprintf("%s-%s-%s.pprof", o.cpuProfile, phase, mode)
	}
	pr := &phaseResult{Name: phase, Mode: mode, Pods: o.pods}
	want := o.pods
	if mode == "stream" {
		want++ // the probe pod
	}
	bw, stopWatch, err := watchBindings(pctx, cs, ns, want)
	if err != nil {
		return nil, err
	}
	defer stopWatch()

	var sched *runningSched
	defer func() {
		if sched != nil {
			sched.stop()
		}
	}()
	var created map[string]time.Time
	var createDur time.Duration
	var cpu0, srv0 time.Duration
	var schedStart time.Time
	switch mode {
	case "backlog":
		if created, createDur, err = createPods(pctx, cs, o, ns, phase); err != nil {
			return nil, err
		}
		schedStart = time.Now()
		if sched, err = runner.start(ctx, profile); err != nil {
			return nil, err
		}
		cpu0, _ = procCPU(sched.pid)
		srv0, _ = procCPU(os.Getpid())
	case "stream":
		if sched, err = runner.start(ctx, profile); err != nil {
			return nil, err
		}
		// A probe pod proves the scheduler has synced before timing starts.
		probe := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "probe"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}}}}
		if _, err := cs.CoreV1().Pods(ns).Create(pctx, probe, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
		for !bw.has("probe") {
			if pctx.Err() != nil {
				return nil, fmt.Errorf("probe pod not bound: %w", pctx.Err())
			}
			time.Sleep(20 * time.Millisecond)
		}
		cpu0, _ = procCPU(sched.pid)
		srv0, _ = procCPU(os.Getpid())
		schedStart = time.Now()
		if created, createDur, err = createPods(pctx, cs, o, ns, phase); err != nil {
			return nil, err
		}
	}
	select {
	case <-bw.done:
	case <-pctx.Done():
	}
	cpu1, _ := procCPU(sched.pid)
	srv1, _ := procCPU(os.Getpid())
	if rss, peak, err := procRSS(sched.pid); err == nil {
		pr.SchedRSSBytes, pr.schedPeak = rss, peak
	}
	sched.stop()
	sched = nil

	bw.mu.Lock()
	var first, last time.Time
	var latencies []time.Duration
	for name, t := range bw.bound {
		c, ok := created[name]
		if !ok {
			continue // the probe
		}
		pr.Bound++
		if first.IsZero() || t.Before(first) {
			first = t
		}
		if t.After(last) {
			last = t
		}
		latencies = append(latencies, t.Sub(c))
	}
	bw.mu.Unlock()
	pr.CreatePerSec = round2(float64(o.pods) / createDur.Seconds())
	var elapsed float64
	if mode == "backlog" {
		elapsed = last.Sub(first).Seconds()
		pr.StartupSeconds = round2(first.Sub(schedStart).Seconds())
	} else {
		elapsed = last.Sub(schedStart).Seconds()
		sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
		if n := len(latencies); n > 0 {
			pr.P50Ms = round2(float64(latencies[n/2]) / 1e6)
			pr.P99Ms = round2(float64(latencies[min(n-1, n*99/100)]) / 1e6)
		}
	}
	pr.Seconds = round2(elapsed)
	if elapsed > 0 {
		pr.PodsPerSec = round2(float64(pr.Bound) / elapsed)
	}
	pr.SchedCPUSecs = round2((cpu1 - cpu0).Seconds())
	if pr.Bound > 0 {
		pr.CPUMsPerPod = round2(float64(cpu1-cpu0) / 1e6 / float64(pr.Bound))
		if runner.bin != "" {
			pr.ServerMsPerPod = round2(float64(srv1-srv0) / 1e6 / float64(pr.Bound))
		}
	}
	// Clear the phase's pods so the next phase starts from empty nodes.
	zero := int64(0)
	_ = cs.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{Limit: 1})
		if err == nil && len(l.Items) == 0 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	return pr, nil
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

// procCPU reads the user+system CPU time of pid.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command (which may hold spaces) start after ")".
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const hz = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / hz, nil
}

// procRSS reads VmRSS and VmHWM of pid in bytes.
func procRSS(pid int) (rss, peak int64, err error) {
	kb, err := procStatusKB(pid, "VmRSS", "VmHWM")
	if err != nil {
		return 0, 0, err
	}
	return kb[0] * 1024, kb[1] * 1024, nil
}

// watchPods watches the pods of ns from now on, resumed from its last
// revision whenever the server ends it (a watcher that falls behind is
// closed, as upstream's watch cache does), so a benchmark never waits for
// events a closed watch dropped.
func watchPods(ctx context.Context, cs kubernetes.Interface, ns string) (watch.Interface, error) {
	l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		return nil, err
	}
	return watchtools.NewRetryWatcherWithContext(ctx, l.ResourceVersion, &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return cs.CoreV1().Pods(ns).Watch(ctx, o)
		},
	})
}
