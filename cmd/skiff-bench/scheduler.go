package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/skiffhq/skiff/controlplane/scheduler"
	"github.com/skiffhq/skiff/nodeagent/hollow"
	"github.com/skiffhq/skiff/server"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

type schedBenchOpts struct {
	nodes, pods, workers, groupSize int
	phases                          string
	schedulerBinary                 string
	dataDir                         string
	timeout                         time.Duration
}

type phaseResult struct {
	Name         string  `json:"name"`
	Pods         int     `json:"pods"`
	Bound        int     `json:"bound"`
	Seconds      float64 `json:"seconds"`
	PodsPerSec   float64 `json:"pods_per_second"`
	P50Ms        float64 `json:"latency_p50_ms"`
	P99Ms        float64 `json:"latency_p99_ms"`
	CreatePerSec float64 `json:"create_pods_per_second"`
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
		Short: "Benchmark the scheduler: an in-process server, hollow nodes, and pods scheduled per phase (plain, anti-affinity, spread)",
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
	f.StringVar(&o.schedulerBinary, "scheduler-binary", "", "run `<binary> scheduler` as a separate process to measure its RSS (default: bin/skiff beside skiff-bench if present, else in-process)")
	f.StringVar(&o.dataDir, "data-dir", "", "server data directory (default: a temporary directory)")
	f.DurationVar(&o.timeout, "phase-timeout", 10*time.Minute, "give up on a phase after this long")
	return cmd
}

func runSchedulerBench(ctx context.Context, o schedBenchOpts) (*schedBenchResult, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := o.dataDir
	if dir == "" {
		d, err := os.MkdirTemp("", "skiff-bench-scheduler-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	srv, err := server.Start(ctx, server.Config{
		DataDir: dir, BindAddress: "127.0.0.1", HTTPSPort: 0, DisableAgent: true, EtcdClientPort: 0, EtcdPeerPort: 0,
		EtcdLogLevel: "fatal", Logger: quiet, Disable: []string{server.SchedulerName},
	})
	if err != nil {
		return nil, fmt.Errorf("start server: %w", err)
	}
	defer srv.Stop()
	rc, err := srv.AdminConfig()
	if err != nil {
		return nil, err
	}
	rc.QPS, rc.Burst = -1, 0
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	res := &schedBenchResult{Benchmark: "scheduler", Nodes: o.nodes, CPUs: runtime.NumCPU()}

	// The scheduler: a separate process when a skiff binary is at hand.
	bin := o.schedulerBinary
	if bin == "" {
		if exe, err := os.Executable(); err == nil {
			if c := filepath.Join(filepath.Dir(exe), "skiff"); fileExists(c) {
				bin = c
			}
		}
	}
	var schedPID int
	if bin != "" {
		c := exec.CommandContext(ctx, bin, "scheduler", "--kubeconfig", srv.Kubeconfig(), "--leader-elect=false", "--metrics-bind-address=", "--log-level=error")
		c.Stderr = os.Stderr
		if err := c.Start(); err != nil {
			return nil, fmt.Errorf("start scheduler process: %w", err)
		}
		defer func() { _ = c.Process.Signal(os.Interrupt); _ = c.Wait() }()
		schedPID = c.Process.Pid
		res.SchedulerMode = "process"
	} else {
		sched, err := scheduler.New(scheduler.Options{Client: cs, Logger: quiet})
		if err != nil {
			return nil, err
		}
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() { _ = sched.Run(sctx) }()
		schedPID = os.Getpid()
		res.SchedulerMode = "in-process"
		res.Note = "in-process: RSS covers the whole benchmark process (server, etcd, hollow nodes, scheduler)"
	}

	hc, err := hollow.Start(ctx, rc, hollow.Options{
		Nodes: o.nodes, CPU: "32", Memory: "128Gi", Pods: "110", Logger: quiet,
		Customize: func(i int, n *corev1.Node) { n.Labels[corev1.LabelTopologyZone] = fmt.Sprintf("zone-%d", i%10) },
	})
	if err != nil {
		return nil, fmt.Errorf("hollow nodes: %w", err)
	}
	defer hc.Stop()
	time.Sleep(2 * time.Second) // let the scheduler's informers see every node

	for _, phase := range strings.Split(o.phases, ",") {
		phase = strings.TrimSpace(phase)
		if phase == "" {
			continue
		}
		pr, err := runPhase(ctx, cs, rc, o, phase)
		if err != nil {
			return nil, fmt.Errorf("phase %s: %w", phase, err)
		}
		res.Phases = append(res.Phases, *pr)
		if rss, peak, err := procRSS(schedPID); err == nil {
			res.SchedRSSBytes, res.SchedPeakBytes = rss, max(res.SchedPeakBytes, peak)
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

func runPhase(ctx context.Context, cs kubernetes.Interface, rc *rest.Config, o schedBenchOpts, phase string) (*phaseResult, error) {
	switch phase {
	case "plain", "anti-affinity", "spread":
	default:
		return nil, fmt.Errorf("unknown phase %q (plain, anti-affinity, spread)", phase)
	}
	if phase == "anti-affinity" && o.groupSize > o.nodes {
		return nil, fmt.Errorf("--anti-affinity-group %d exceeds --nodes %d: the pods could not all fit", o.groupSize, o.nodes)
	}
	ns := "bench-" + phase
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	var mu sync.Mutex
	created := make(map[string]time.Time, o.pods)
	var latencies []time.Duration
	done := make(chan struct{})
	w, err := cs.CoreV1().Pods(ns).Watch(pctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	bound := map[string]bool{}
	var lastBind time.Time
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			if ev.Type != watch.Modified && ev.Type != watch.Added {
				continue
			}
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || p.Spec.NodeName == "" || bound[p.Name] {
				continue
			}
			now := time.Now()
			bound[p.Name] = true
			mu.Lock()
			if t, ok := created[p.Name]; ok {
				latencies = append(latencies, now.Sub(t))
			}
			mu.Unlock()
			lastBind = now
			if len(bound) == o.pods {
				return
			}
		}
	}()

	start := time.Now()
	jobs := make(chan int)
	var wg sync.WaitGroup
	errCh := make(chan error, o.workers)
	for i := 0; i < o.workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				p := benchPod(phase, i, o.groupSize)
				t := time.Now()
				mu.Lock()
				created[p.Name] = t
				mu.Unlock()
				if _, err := cs.CoreV1().Pods(ns).Create(pctx, p, metav1.CreateOptions{}); err != nil {
					select {
					case errCh <- err:
					default:
					}
					return
				}
			}
		}()
	}
	for i := 0; i < o.pods; i++ {
		select {
		case jobs <- i:
		case err := <-errCh:
			close(jobs)
			return nil, fmt.Errorf("create pods: %w", err)
		}
	}
	close(jobs)
	wg.Wait()
	createSecs := time.Since(start).Seconds()
	select {
	case <-done:
	case <-pctx.Done():
		w.Stop()
		<-done
	}
	w.Stop()
	elapsed := lastBind.Sub(start).Seconds()
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	pr := &phaseResult{Name: phase, Pods: o.pods, Bound: len(bound), Seconds: round2(elapsed), CreatePerSec: round2(float64(o.pods) / createSecs)}
	if elapsed > 0 {
		pr.PodsPerSec = round2(float64(len(bound)) / elapsed)
	}
	if n := len(latencies); n > 0 {
		pr.P50Ms = round2(float64(latencies[n/2]) / 1e6)
		pr.P99Ms = round2(float64(latencies[min(n-1, n*99/100)]) / 1e6)
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

// procRSS reads VmRSS and VmHWM of pid in bytes.
func procRSS(pid int) (rss, peak int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "VmRSS:":
			rss = v * 1024
		case "VmHWM:":
			peak = v * 1024
		}
	}
	return rss, peak, sc.Err()
}
