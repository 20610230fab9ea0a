package main

import (
	"context"
	"debug/elf"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/skiffhq/skiff/internal/bench"
	"github.com/skiffhq/skiff/internal/memtrim"
	"github.com/skiffhq/skiff/internal/testimages"
	"github.com/skiffhq/skiff/nodeagent/agent"
	"github.com/skiffhq/skiff/nodeagent/network"
	noderuntime "github.com/skiffhq/skiff/nodeagent/runtime"
	"github.com/skiffhq/skiff/server"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
)

// Issue 6's targets for `skiff-bench pods`.
const (
	podsTargetP50Ms  = 500.0
	podsTargetP99Ms  = 1500.0
	podsTargetRSSMiB = 60.0
)

// The benchmark's node: its own bridge and /24 (inside the blackholed
// 10.42.0.0/16), which no test package uses.
const (
	podsBenchCIDR   = "10.42.236.0/24"
	podsBenchBridge = "skiffbp0"
	podsBenchNS     = "bench-pods"
)

type podsBenchOpts struct {
	latencyPods, densityPods, workers int
	interval, burst, timeout, settle  time.Duration
	dataDir                           string
	// containerd is the socket of the containerd the agent uses.
	containerd string
	// profileDir, when set, receives the agent's heap and goroutine
	// profiles with the density phase's pods running.
	profileDir string
}

type podsLatency struct {
	Pods     int     `json:"pods"`
	P50Ms    float64 `json:"p50_ms"`
	P90Ms    float64 `json:"p90_ms"`
	P99Ms    float64 `json:"p99_ms"`
	MaxMs    float64 `json:"max_ms"`
	Interval float64 `json:"create_interval_ms"`
	// Slowest are the three slowest pods, slowest first (lat-000 is the
	// phase's first pod): whether an outlier is a cold start or a stall.
	Slowest []podStart `json:"slowest"`
	// WarningEvents counts the phase's Warning events by reason
	// (FailedMount, FailedCreatePodSandBox, BackOff, ...): a retry a pod
	// waited out shows here.
	WarningEvents map[string]int `json:"warning_events,omitempty"`
	// Host is the machine's stall time over the phase (see hostStall).
	Host *hostStall `json:"host,omitempty"`
}

// podStart is one pod's startup latency.
type podStart struct {
	Pod string  `json:"pod"`
	Ms  float64 `json:"ms"`
	// Agent splits the latency (from the agent's start trace).
	Agent *podTrace `json:"agent,omitempty"`
	// Host is the machine's stall time while the pod started: a slow
	// pod with seconds of it waited for the machine.
	Host    *hostStall `json:"host,omitempty"`
	d       time.Duration
	created time.Time
}

type podsDensity struct {
	Pods            int     `json:"pods"`
	AllReadySeconds float64 `json:"all_ready_seconds"`
	AgentRSSMiB     float64 `json:"agent_rss_mib"`
	AgentPeakRSSMiB float64 `json:"agent_peak_rss_mib"`
	// AgentRSSAnonMiB and AgentRSSFileMiB split the RSS: the heap and
	// stacks, and the mapped binary and files.
	AgentRSSAnonMiB float64 `json:"agent_rss_anon_mib"`
	AgentRSSFileMiB float64 `json:"agent_rss_file_mib"`
	PodsPerSecond   float64 `json:"pods_per_second"`
}

type podsTargets struct {
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	AgentRSSMiB float64 `json:"agent_rss_mib_with_100_pods"`
}

type podsBenchResult struct {
	Benchmark string  `json:"benchmark"`
	CPUs      int     `json:"cpus"`
	LoadAvg   float64 `json:"load_avg_1m_at_start"`
	// FreshPageUs is the machine's cost of touching a newly mapped page
	// (freshPageCost over 64 MiB), at the start and after the density
	// phase: a cold VM pays it in every process a pod start runs.
	FreshPageUs *freshPage  `json:"fresh_page_us,omitempty"`
	Latency     podsLatency `json:"startup_latency"`
	// Burst is the same at --burst-interval, faster than the node starts
	// pods: queueing, not startup, shows there (no target).
	Burst        *podsLatency `json:"startup_latency_burst,omitempty"`
	Density      podsDensity  `json:"density"`
	IdleRSSMiB   float64      `json:"agent_rss_mib_no_pods"`
	Targets      podsTargets  `json:"targets"`
	MeetsP50     bool         `json:"meets_p50"`
	MeetsP99     bool         `json:"meets_p99"`
	MeetsRSS     bool         `json:"meets_rss"`
	MeetsTargets bool         `json:"meets_targets"`
	// LeftAfterTeardown is what the agent still held once the last pods
	// were deleted and it had up to a minute to tear them down: anything
	// here leaked.
	LeftAfterTeardown *podsLeft `json:"left_after_teardown,omitempty"`
	Note              string    `json:"note"`
}

type freshPage struct {
	AtStart float64 `json:"at_start"`
	AtEnd   float64 `json:"at_end,omitempty"`
}

type podsLeft struct {
	Containers int `json:"containers"`
	NetNS      int `json:"netns"`
	Sandboxes  int `json:"sandbox_records"`
}

func podsCommand() *cobra.Command {
	var o podsBenchOpts
	cmd := &cobra.Command{
		Use:   "pods",
		Short: "Benchmark the node agent on real containerd: pod startup latency (create to Running by watch) and 100 pods on one node (time to all Ready, agent RSS)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := runPodsBench(cmd.Context(), o)
			if err != nil {
				return err
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.latencyPods, "latency-pods", 50, "pods created one by one for the startup latency")
	f.DurationVar(&o.interval, "latency-interval", time.Second, "time between two latency pods' creates (the targets apply to this run)")
	f.DurationVar(&o.burst, "burst-interval", 200*time.Millisecond, "then the same pods one every this long, faster than a node starts them on 2 cores (queueing; reported without target; 0: skip)")
	f.IntVar(&o.densityPods, "density-pods", 100, "pods created at once on the node for the density phase")
	f.IntVar(&o.workers, "workers", 10, "concurrent creators in the density phase")
	f.DurationVar(&o.settle, "settle", 5*time.Second, "wait after all density pods are Ready before reading the agent's RSS")
	f.DurationVar(&o.timeout, "phase-timeout", 5*time.Minute, "give up on a phase after this long")
	f.StringVar(&o.containerd, "containerd", "/run/containerd/containerd.sock", "containerd's socket (the agent's --container-runtime-endpoint)")
	f.StringVar(&o.dataDir, "data-dir", "", "server and agent data directory (default: a temporary directory)")
	f.StringVar(&o.profileDir, "profile-dir", "", "write the agent's heap profile (the heap profiler is then on in the agent: GODEBUG=memprofilerate=524288 unless GODEBUG sets a rate), goroutine profiles, memory stats, smaps and resident KiB per section of the executable into DIR/1 once the density phase's RSS is read (that RSS then includes the profiler), and into DIR/2 if pods are left after the teardown")
	return cmd
}

// podsAgentCommand is the node agent the benchmark runs in a process of
// its own, so that its RSS is the agent's alone.
func podsAgentCommand() *cobra.Command {
	var kubeconfig, state, node, ctrd, traceLog string
	cmd := &cobra.Command{
		Use:    "pods-agent",
		Hidden: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			agent.QuietMemProfiler() // as `skiff agent` does
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			if dir := os.Getenv(podsProfileEnv); dir != "" {
				go writeProfilesOnSignal(ctx, dir)
			}
			rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
			if err != nil {
				return fmt.Errorf("kubeconfig: %w", err)
			}
			// Warnings to stderr; everything from debug up, as JSON, to
			// the trace log, for the pod start traces.
			var handler slog.Handler = slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})
			if traceLog != "" {
				f, err := os.Create(traceLog)
				if err != nil {
					return err
				}
				defer f.Close()
				handler = slog.NewMultiHandler(handler, slog.NewJSONHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
			}
			opts := agent.Options{
				NodeName: node, NodeIP: "127.0.0.1", StateDir: state, PodLogDir: filepath.Join(state, "logs"),
				PodCIDR: podsBenchCIDR, Bridge: podsBenchBridge, NetNSDir: filepath.Join(state, "netns"),
				ContainerdAddress: ctrd, Port: 0, Logger: slog.New(handler),
			}
			a, err := agent.Start(ctx, rc, opts)
			if err != nil {
				return err
			}
			agent.TuneProcess(ctx, opts.Logger) // as `skiff agent` does
			<-ctx.Done()
			a.Stop()
			return nil
		},
	}
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "node credential")
	cmd.Flags().StringVar(&state, "state", "", "agent state folder")
	cmd.Flags().StringVar(&node, "node", "", "node name")
	cmd.Flags().StringVar(&ctrd, "containerd", "", "containerd's socket")
	cmd.Flags().StringVar(&traceLog, "trace-log", "", "write the agent's log from debug level up, as JSON, to this file")
	return cmd
}

func runPodsBench(ctx context.Context, o podsBenchOpts) (res *podsBenchResult, err error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if o.latencyPods <= 0 || o.densityPods <= 0 || o.workers <= 0 {
		return nil, errors.New("--latency-pods, --density-pods and --workers must be positive")
	}
	if o.latencyPods > 250 || o.densityPods > 250 {
		return nil, errors.New("at most 250 pods per phase: the node has one /24")
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("needs root: the node agent runs containers through containerd")
	}
	res = &podsBenchResult{Benchmark: "pods", CPUs: runtime.NumCPU(), LoadAvg: bench.LoadAvg(),
		Targets: podsTargets{P50Ms: podsTargetP50Ms, P99Ms: podsTargetP99Ms, AgentRSSMiB: podsTargetRSSMiB}}
	if us, err := freshPageCost(64); err == nil {
		res.FreshPageUs = &freshPage{AtStart: us}
	}
	dir := o.dataDir
	if dir == "" {
		d, err := os.MkdirTemp("", "skiff-bench-pods-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	state := filepath.Join(dir, "agent")
	if err := os.MkdirAll(filepath.Join(state, "images"), 0o755); err != nil {
		return nil, err
	}
	if err := testimages.WriteBusybox(filepath.Join(state, "images", "busybox.tar")); err != nil {
		return nil, err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, _, cs, err := startServer(ctx, server.Config{DataDir: filepath.Join(dir, "server"), Logger: quiet})
	if err != nil {
		return nil, err
	}
	defer srv.Stop()

	node := fmt.Sprintf("bench-pods-%d", time.Now().UnixNano()%1e6)
	kubeconfig := filepath.Join(dir, "node.kubeconfig")
	if err := writeNodeKubeconfig(srv, node, kubeconfig); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	agentExe, err := copyExecutable(self, filepath.Join(dir, "skiff-bench-agent"))
	if err != nil {
		return nil, err
	}
	traceLog := filepath.Join(dir, "agent-trace.log")
	child := exec.Command(agentExe, "pods-agent", "--kubeconfig", kubeconfig, "--state", state, "--node", node,
		"--containerd", o.containerd, "--trace-log", traceLog)
	child.Stdout, child.Stderr = os.Stderr, os.Stderr
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return nil, err
		}
		godebug := "memprofilerate=524288"
		if g := os.Getenv("GODEBUG"); strings.Contains(g, "memprofilerate=") {
			godebug = g // the caller's rate (1 for every allocation)
		} else if g != "" {
			godebug = g + "," + godebug
		}
		child.Env = append(os.Environ(), podsProfileEnv+"="+o.profileDir, "GODEBUG="+godebug)
	}
	started := time.Now()
	if err := child.Start(); err != nil {
		return nil, fmt.Errorf("start agent: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()
	defer func() {
		left, cerr := cleanupPodsBench(ctx, cs, o.containerd, node, state, o.profileDir, child, exited)
		if err == nil && cerr != nil {
			err = cerr
		}
		if res != nil {
			res.LeftAfterTeardown = &left
		}
	}()
	if err := waitNodeReady(ctx, cs, node, exited, 2*time.Minute); err != nil {
		return nil, err
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: podsBenchNS}}, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("namespace: %w", err)
	}
	// Pods need the namespace's default service account.
	if err := waitServiceAccount(ctx, cs, o.timeout); err != nil {
		return nil, err
	}
	// The idle reading comes after the agent gave back its start-up pages
	// (agent.TuneProcess, 10 s after start).
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(time.Until(started.Add(12 * time.Second))):
	}
	idle, _, err := procRSS(child.Process.Pid)
	if err != nil {
		return nil, fmt.Errorf("agent rss: %w", err)
	}
	res.IdleRSSMiB = mib(idle)

	// Phase 1: startup latency, one pod every interval; then the same
	// as a burst.
	latency := func(interval time.Duration) (*podsLatency, error) {
		po := o
		po.interval = interval
		stalls := startStallSampler(50 * time.Millisecond)
		phaseStart := time.Now()
		lat, err := podsLatencyPhase(ctx, cs, node, po)
		phaseEnd := time.Now()
		stalls.Stop()
		if err != nil {
			return nil, fmt.Errorf("latency phase (one pod every %v): %w", interval, err)
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i].d < lat[j].d })
		ds := make([]time.Duration, len(lat))
		for i, p := range lat {
			ds[i] = p.d
		}
		traces, err := readPodTraces(traceLog)
		if err != nil {
			return nil, err
		}
		var slowest []podStart
		for i := len(lat) - 1; i >= 0 && len(slowest) < 3; i-- {
			slowest = append(slowest, podStart{Pod: lat[i].Pod, Ms: float64(lat[i].d.Microseconds()) / 1000,
				Agent: traceFor(traces[podsBenchNS+"/"+lat[i].Pod], lat[i].created),
				Host:  stalls.Between(lat[i].created, lat[i].created.Add(lat[i].d))})
		}
		warnings, err := warningEvents(ctx, cs)
		if err != nil {
			return nil, err
		}
		if err := deleteBenchPods(ctx, cs, o.timeout); err != nil {
			return nil, err
		}
		// The pods left the API at once (grace 0); the next phase starts
		// once the agent tore them down, not while it does.
		if err := waitNodeDrained(ctx, o.containerd, node, o.timeout); err != nil {
			return nil, err
		}
		return &podsLatency{Pods: len(ds), P50Ms: pctMs(ds, 0.50), P90Ms: pctMs(ds, 0.90), P99Ms: pctMs(ds, 0.99),
			MaxMs: pctMs(ds, 1), Interval: float64(interval.Milliseconds()), Slowest: slowest, WarningEvents: warnings,
			Host: stalls.Between(phaseStart, phaseEnd)}, nil
	}
	lat, err := latency(o.interval)
	if err != nil {
		return nil, err
	}
	res.Latency = *lat
	if o.burst > 0 {
		if res.Burst, err = latency(o.burst); err != nil {
			return nil, err
		}
	}

	// Phase 2: density, all pods at once.
	took, err := podsDensityPhase(ctx, cs, node, o)
	if err != nil {
		return nil, fmt.Errorf("density phase: %w", err)
	}
	time.Sleep(o.settle)
	rss, peak, err := procRSS(child.Process.Pid)
	if err != nil {
		return nil, fmt.Errorf("agent rss: %w", err)
	}
	res.Density = podsDensity{Pods: o.densityPods, AllReadySeconds: round3s(took.Seconds()), AgentRSSMiB: mib(rss), AgentPeakRSSMiB: mib(peak),
		PodsPerSecond: round3s(float64(o.densityPods) / took.Seconds())}
	if anon, file, err := procRSSParts(child.Process.Pid); err == nil {
		res.Density.AgentRSSAnonMiB, res.Density.AgentRSSFileMiB = mib(anon), mib(file)
	}
	if o.profileDir != "" {
		_ = child.Process.Signal(syscall.SIGUSR1)
		time.Sleep(3 * time.Second) // writeProfilesOnSignal
	}
	if us, err := freshPageCost(64); err == nil && res.FreshPageUs != nil {
		res.FreshPageUs.AtEnd = us
	}
	res.MeetsP50 = res.Latency.P50Ms < podsTargetP50Ms
	res.MeetsP99 = res.Latency.P99Ms < podsTargetP99Ms
	res.MeetsRSS = res.Density.AgentRSSMiB < podsTargetRSSMiB
	res.MeetsTargets = res.MeetsP50 && res.MeetsP99 && res.MeetsRSS
	res.Note = "in-process server (no agent) + the node agent in a child process on this machine's containerd; busybox pods (sleep), image present; " +
		"latency = client create call to the first watch event with phase Running, one pod every --latency-interval (targets) and every --burst-interval (queueing); agent RSS is VmRSS of the child after --settle (peak = VmHWM); host = the machine's stall ms over a pod's start or a phase (PSI some/full, CPU steal); fresh_page_us = µs to touch a newly mapped page (64 MiB), at the start and the end"
	return res, nil
}

// warningEvents counts the Warning events of the bench's pods by reason,
// and deletes them, so that each phase counts its own.
func warningEvents(ctx context.Context, cs kubernetes.Interface) (map[string]int, error) {
	evs, err := cs.CoreV1().Events(podsBenchNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	var out map[string]int
	for _, ev := range evs.Items {
		if ev.Type != corev1.EventTypeWarning {
			continue
		}
		if out == nil {
			out = map[string]int{}
		}
		out[ev.Reason] += max(1, int(ev.Count))
	}
	if err := cs.CoreV1().Events(podsBenchNS).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		return nil, fmt.Errorf("delete events: %w", err)
	}
	return out, nil
}

func podsBenchPod(name, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: podsBenchNS, Labels: map[string]string{"app": "bench-pods"}},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers: []corev1.Container{{
				Name: "c", Image: testimages.Busybox, ImagePullPolicy: corev1.PullNever, Command: []string{"sleep", "3600"},
			}},
		},
	}
}

// podsLatencyPhase creates pods one by one and measures from each create
// call to the first watch event that shows it Running.
func podsLatencyPhase(ctx context.Context, cs kubernetes.Interface, node string, o podsBenchOpts) ([]podStart, error) {
	w, err := watchPods(ctx, cs, podsBenchNS)
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	var mu sync.Mutex
	created := map[string]time.Time{}
	var out []podStart
	done := make(chan struct{})
	go func() {
		defer close(done)
		seen := map[string]bool{}
		for ev := range w.ResultChan() {
			now := time.Now()
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || ev.Type == watch.Deleted || p.Status.Phase != corev1.PodRunning || seen[p.Name] {
				continue
			}
			mu.Lock()
			t0, ok := created[p.Name]
			if ok {
				seen[p.Name] = true
				out = append(out, podStart{Pod: p.Name, d: now.Sub(t0), created: t0})
			}
			n := len(out)
			mu.Unlock()
			if n == o.latencyPods {
				return
			}
		}
	}()
	for i := 0; i < o.latencyPods; i++ {
		name := fmt.Sprintf("lat-%03d", i)
		mu.Lock()
		created[name] = time.Now()
		mu.Unlock()
		if _, err := cs.CoreV1().Pods(podsBenchNS).Create(ctx, podsBenchPod(name, node), metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("create %s: %w", name, err)
		}
		time.Sleep(o.interval)
	}
	select {
	case <-done:
	case <-time.After(o.timeout):
		return nil, fmt.Errorf("not all %d pods Running after %v", o.latencyPods, o.timeout)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	mu.Lock()
	defer mu.Unlock()
	if len(out) < o.latencyPods {
		return nil, fmt.Errorf("watch ended with %d of %d pods Running", len(out), o.latencyPods)
	}
	return out, nil
}

// podsDensityPhase creates all density pods with o.workers creators and
// returns the time from the first create to the last pod Ready.
func podsDensityPhase(ctx context.Context, cs kubernetes.Interface, node string, o podsBenchOpts) (time.Duration, error) {
	w, err := watchPods(ctx, cs, podsBenchNS)
	if err != nil {
		return 0, err
	}
	defer w.Stop()
	done := make(chan time.Time, 1)
	go func() {
		ready := map[string]bool{}
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || ev.Type == watch.Deleted || !podReady(p) {
				continue
			}
			ready[p.Name] = true
			if len(ready) == o.densityPods {
				done <- time.Now()
				return
			}
		}
	}()
	start := time.Now()
	items := make(chan int)
	errs := make(chan error, o.workers)
	var wg sync.WaitGroup
	for range o.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range items {
				name := fmt.Sprintf("dens-%03d", i)
				if _, err := cs.CoreV1().Pods(podsBenchNS).Create(ctx, podsBenchPod(name, node), metav1.CreateOptions{}); err != nil {
					errs <- fmt.Errorf("create %s: %w", name, err)
					return
				}
			}
		}()
	}
	for i := 0; i < o.densityPods; i++ {
		items <- i
	}
	close(items)
	wg.Wait()
	select {
	case err := <-errs:
		return 0, err
	default:
	}
	select {
	case t := <-done:
		return t.Sub(start), nil
	case <-time.After(o.timeout):
		return 0, fmt.Errorf("not all %d pods Ready after %v", o.densityPods, o.timeout)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// deleteBenchPods deletes the namespace's pods and waits until the agent
// has removed them.
func deleteBenchPods(ctx context.Context, cs kubernetes.Interface, timeout time.Duration) error {
	if err := cs.CoreV1().Pods(podsBenchNS).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}, metav1.ListOptions{}); err != nil {
		return fmt.Errorf("delete pods: %w", err)
	}
	deadline := time.Now().Add(timeout)
	for {
		l, err := cs.CoreV1().Pods(podsBenchNS).List(ctx, metav1.ListOptions{})
		if err == nil && len(l.Items) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pods still there %v after deletion", timeout)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func waitNodeReady(ctx context.Context, cs kubernetes.Interface, node string, exited <-chan error, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("agent exited: %v", err)
		default:
		}
		n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err == nil {
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					return nil
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("node %s not Ready after %v", node, timeout)
}

func waitServiceAccount(ctx context.Context, cs kubernetes.Interface, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if _, err := cs.CoreV1().ServiceAccounts(podsBenchNS).Get(ctx, "default", metav1.GetOptions{}); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("no default service account in %s after %v", podsBenchNS, timeout)
}

// writeNodeKubeconfig writes a kubeconfig for system:node:<node>.
func writeNodeKubeconfig(srv *server.Server, node, path string) error {
	rc, err := srv.ComponentConfig("system:node:"+node, []string{"system:nodes"})
	if err != nil {
		return fmt.Errorf("node credential: %w", err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["skiff"] = &clientcmdapi.Cluster{Server: rc.Host, CertificateAuthorityData: rc.CAData}
	cfg.AuthInfos["node"] = &clientcmdapi.AuthInfo{ClientCertificate: rc.CertFile, ClientKey: rc.KeyFile,
		ClientCertificateData: rc.CertData, ClientKeyData: rc.KeyData}
	cfg.Contexts["node"] = &clientcmdapi.Context{Cluster: "skiff", AuthInfo: "node"}
	cfg.CurrentContext = "node"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}

// cleanupPodsBench deletes the pods through the agent, stops it and then
// removes whatever it left: its containers, network namespaces and the
// bridge.
// waitNodeDrained waits until the agent of node has removed all its
// containers.
func waitNodeDrained(ctx context.Context, ctrd, node string, timeout time.Duration) error {
	rt, err := noderuntime.New(ctx, noderuntime.Options{Address: ctrd})
	if err != nil {
		return err
	}
	defer rt.Close()
	deadline := time.Now().Add(timeout)
	for {
		ctrs, err := rt.List(ctx)
		if err != nil {
			return fmt.Errorf("list containers: %w", err)
		}
		left := 0
		for _, c := range ctrs {
			if c.Labels[noderuntime.LabelNode] == node {
				left++
			}
		}
		if left == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d containers of deleted pods still on the node after %v", left, timeout)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func cleanupPodsBench(ctx context.Context, cs kubernetes.Interface, ctrd, node, state, profileDir string, child *exec.Cmd, exited <-chan error) (left podsLeft, err error) {
	ctx = context.WithoutCancel(ctx)
	var errs []error
	defer func() { err = errors.Join(errs...) }()
	if err := deleteBenchPods(ctx, cs, time.Minute); err != nil {
		errs = append(errs, err)
	}
	// The agent tears the pods down before it stops: what it still holds
	// after a minute (containers, network namespaces, sandbox records) it
	// would have leaked.
	if rt, err := noderuntime.New(ctx, noderuntime.Options{Address: ctrd}); err == nil {
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(250 * time.Millisecond) {
			left = podsLeft{}
			if ctrs, err := rt.List(ctx); err == nil {
				for _, c := range ctrs {
					if c.Labels[noderuntime.LabelNode] == node {
						left.Containers++
					}
				}
			}
			nss, _ := os.ReadDir(filepath.Join(state, "netns"))
			left.NetNS = len(nss)
			pods, _ := filepath.Glob(filepath.Join(state, "pods", "*", "sandbox.json"))
			left.Sandboxes = len(pods)
			if left == (podsLeft{}) || time.Now().After(deadline) {
				break
			}
		}
		_ = rt.Close()
		if left != (podsLeft{}) && profileDir != "" {
			// What the agent is doing instead of tearing them down.
			_ = child.Process.Signal(syscall.SIGUSR1)
			time.Sleep(3 * time.Second)
		}
	}
	_ = child.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = child.Process.Kill()
		<-exited
	}
	rt, err := noderuntime.New(ctx, noderuntime.Options{Address: ctrd})
	if err != nil {
		errs = append(errs, err)
		return left, nil
	}
	defer rt.Close()
	if ctrs, err := rt.List(ctx); err == nil {
		for _, c := range ctrs {
			if c.Labels[noderuntime.LabelNode] == node {
				if err := rt.Remove(ctx, c.ID); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	nm, err := network.New(network.Options{StateDir: filepath.Join(state, "network"), PodCIDR: podsBenchCIDR, Bridge: podsBenchBridge,
		NetNSDir: filepath.Join(state, "netns")})
	if err != nil {
		errs = append(errs, err)
		return left, nil
	}
	if ents, err := os.ReadDir(filepath.Join(state, "pods")); err == nil {
		for _, e := range ents {
			_ = nm.Teardown(ctx, e.Name(), "", "", "", nil)
		}
	}
	if nss, err := os.ReadDir(filepath.Join(state, "netns")); err == nil {
		for _, ns := range nss {
			_ = syscall.Unmount(filepath.Join(state, "netns", ns.Name()), syscall.MNT_DETACH)
		}
	}
	if err := nm.Destroy(); err != nil {
		errs = append(errs, err)
	}
	return left, nil
}

// podsProfileEnv names the folder the benchmark's agent writes its
// profiles to on SIGUSR1 (--profile-dir).
const podsProfileEnv = "SKIFF_BENCH_PROFILE_DIR"

// writeProfilesOnSignal writes the process's heap and goroutine profiles,
// memory statistics and smaps_rollup into dir on each SIGUSR1.
func writeProfilesOnSignal(ctx context.Context, dir string) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	defer signal.Stop(sig)
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-sig:
		}
		sub := filepath.Join(dir, strconv.Itoa(n))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			continue
		}
		write := func(name string, fn func(io.Writer) error) {
			f, err := os.Create(filepath.Join(sub, name))
			if err != nil {
				return
			}
			defer f.Close()
			_ = fn(f)
		}
		write("heap.pprof", func(w io.Writer) error { return pprof.Lookup("heap").WriteTo(w, 0) })
		write("goroutine.txt", func(w io.Writer) error { return pprof.Lookup("goroutine").WriteTo(w, 1) })
		write("goroutine-full.txt", func(w io.Writer) error { return pprof.Lookup("goroutine").WriteTo(w, 2) })
		write("memstats.json", func(w io.Writer) error {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			ms.PauseNs, ms.PauseEnd, ms.BySize = [256]uint64{}, [256]uint64{}, [61]struct {
				Size    uint32
				Mallocs uint64
				Frees   uint64
			}{}
			e := json.NewEncoder(w)
			e.SetIndent("", "  ")
			return e.Encode(ms)
		})
		write("smaps_rollup", func(w io.Writer) error {
			b, err := os.ReadFile("/proc/self/smaps_rollup")
			if err == nil {
				_, err = w.Write(b)
			}
			return err
		})
		write("sections.txt", residentSections)
		write("smaps", func(w io.Writer) error {
			b, err := os.ReadFile("/proc/self/smaps")
			if err == nil {
				_, err = w.Write(b)
			}
			return err
		})
	}
}

// residentSections writes how much of each loaded section of the
// process's executable is resident (present in its page tables), from
// /proc/self/pagemap: where the file-backed RSS goes.
func residentSections(w io.Writer) error {
	f, err := elf.Open("/proc/self/exe")
	if err != nil {
		return err
	}
	defer f.Close()
	pm, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return err
	}
	defer pm.Close()
	const page = 4096
	for _, sec := range f.Sections {
		if sec.Flags&elf.SHF_ALLOC == 0 || sec.Addr == 0 || sec.Type == elf.SHT_NOBITS {
			continue
		}
		first, last := sec.Addr/page, (sec.Addr+sec.Size-1)/page
		buf := make([]byte, (last-first+1)*8)
		if _, err := pm.ReadAt(buf, int64(first*8)); err != nil {
			return err
		}
		resident := 0
		for i := 0; i < len(buf); i += 8 {
			if binary.LittleEndian.Uint64(buf[i:])&(1<<63) != 0 {
				resident++
			}
		}
		fmt.Fprintf(w, "%-24s %8d KiB %8d KiB resident\n", sec.Name, sec.Size>>10, resident*page>>10)
	}
	return nil
}

// procStatusKB reads the kB fields keys of /proc/<pid>/status.
func procStatusKB(pid int, keys ...string) ([]int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(keys))
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		for i, want := range keys {
			if k == want {
				if f := strings.Fields(v); len(f) > 0 {
					out[i], _ = strconv.ParseInt(f[0], 10, 64)
				}
			}
		}
	}
	return out, nil
}

// pctMs is the p-th quantile (nearest rank) of sorted durations in ms.
func pctMs(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.999999) - 1
	i = max(0, min(i, len(sorted)-1))
	return round3s(float64(sorted[i].Microseconds()) / 1000)
}

func mib(b int64) float64 { return round3s(float64(b) / (1 << 20)) }

func round3s(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

// copyExecutable copies the benchmark's executable to dst for the agent
// and drops the copy's page cache. On a node, `skiff agent` has its
// executable to itself; run from the benchmark's own file, every page the
// benchmark's process (the server) maps stays in the page cache in the
// large folios read-ahead made, and the agent maps a whole folio for any
// page of it it touches (memtrim.Evict cannot drop pages another process
// maps), which puts tens of MiB of the server's code into the agent's RSS.
func copyExecutable(src, dst string) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", fmt.Errorf("copy executable: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return "", fmt.Errorf("copy executable: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return "", fmt.Errorf("copy executable: %w", err)
	}
	if err := out.Close(); err != nil {
		return "", fmt.Errorf("copy executable: %w", err)
	}
	if err := memtrim.DropCache(dst); err != nil {
		return "", err
	}
	return dst, nil
}
