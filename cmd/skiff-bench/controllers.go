package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"time"

	"github.com/skiffhq/skiff/internal/cpuprofile"
	"github.com/skiffhq/skiff/nodeagent/hollow"
	"github.com/skiffhq/skiff/server"
	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

// controllersTarget is issue 5's goal for pods per second to Ready.
const controllersTarget = 300.0

type ctrlBenchOpts struct {
	nodes, deployments, replicas, workers int
	dataDir                               string
	timeout                               time.Duration
	// cmProcess runs the controller manager as `skiff controller-manager`
	// in its own process, so its RSS is its own.
	cmProcess bool
	// cpuProfile, when set, profiles this process over the create phase.
	cpuProfile string
}

type ctrlPhase struct {
	Name       string  `json:"name"`
	Pods       int     `json:"pods"`
	Seconds    float64 `json:"seconds"`
	PodsPerSec float64 `json:"pods_per_second"`
	// AllCreatedSeconds and AllBoundSeconds split the create phase: when
	// the last pod object existed and when the last one was bound.
	AllCreatedSeconds float64 `json:"all_pods_created_seconds,omitempty"`
	AllBoundSeconds   float64 `json:"all_pods_bound_seconds,omitempty"`
}

type ctrlBenchResult struct {
	Benchmark    string      `json:"benchmark"`
	Nodes        int         `json:"nodes"`
	Deployments  int         `json:"deployments"`
	Replicas     int         `json:"replicas_per_deployment"`
	CPUs         int         `json:"cpus"`
	Phases       []ctrlPhase `json:"phases"`
	TargetPerSec float64     `json:"target_pods_per_second"`
	MeetsTarget  bool        `json:"meets_target"`
	RSSBytes     int64       `json:"rss_bytes"`
	PeakRSSBytes int64       `json:"peak_rss_bytes"`
	// The controller manager's own, when it runs in its own process.
	CMMode         string  `json:"controller_manager"`
	CMRSSBytes     int64   `json:"controller_manager_rss_bytes,omitempty"`
	CMPeakRSSBytes int64   `json:"controller_manager_peak_rss_bytes,omitempty"`
	Note           string  `json:"note"`
	SetupSeconds   float64 `json:"setup_seconds"`
	CreatePerSec   float64 `json:"deployment_creates_per_second"`
}

func controllersCommand() *cobra.Command {
	var o ctrlBenchOpts
	cmd := &cobra.Command{
		Use:   "controllers",
		Short: "Benchmark the controller manager end to end: Deployments on hollow nodes to Ready, then a rollout of all of them",
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := runControllersBench(cmd.Context(), o)
			if err != nil {
				return err
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.nodes, "nodes", 100, "hollow nodes")
	f.IntVar(&o.deployments, "deployments", 100, "Deployments")
	f.IntVar(&o.replicas, "replicas", 50, "replicas per Deployment")
	f.IntVar(&o.workers, "workers", 16, "concurrent Deployment creators/updaters")
	f.StringVar(&o.dataDir, "data-dir", "", "server data directory (default: a temporary directory)")
	f.DurationVar(&o.timeout, "phase-timeout", 15*time.Minute, "give up on a phase after this long")
	f.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of this process (server, etcd, hollow nodes; the controller manager unless --controller-manager-process) over the create phase")
	f.BoolVar(&o.cmProcess, "controller-manager-process", false, "run the controller manager as `skiff controller-manager` (the skiff binary beside this one) in its own process and report its RSS; by default it runs inside the server process, as the target assumes")
	return cmd
}

func runControllersBench(ctx context.Context, o ctrlBenchOpts) (*ctrlBenchResult, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if o.nodes <= 0 || o.deployments <= 0 || o.replicas <= 0 {
		return nil, errors.New("--nodes, --deployments and --replicas must be positive")
	}
	setup := time.Now()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := o.dataDir
	if dir == "" {
		d, err := os.MkdirTemp("", "skiff-bench-controllers-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	// The whole control plane in this process: API server, scheduler and
	// controller manager, as `skiff server --disable-agent`; with
	// --controller-manager-process all but the controller manager.
	cfg := server.Config{DataDir: dir, Logger: quiet}
	if o.cmProcess {
		cfg.Disable = []string{"controller-manager"}
	}
	srv, rc, cs, err := startServer(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	cmPID := 0
	if o.cmProcess {
		stop, pid, err := startControllerManagerProcess(ctx, srv.Kubeconfig())
		if err != nil {
			return nil, err
		}
		defer stop()
		cmPID = pid
	}
	hc, err := hollow.Start(ctx, rc, hollow.Options{Nodes: o.nodes, CPU: "32", Memory: "128Gi", Pods: "110", Logger: quiet})
	if err != nil {
		return nil, fmt.Errorf("hollow nodes: %w", err)
	}
	defer hc.Stop()

	const ns = "bench-controllers"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	// Pods need the namespace's default ServiceAccount (its controller makes it).
	if err := waitFor(ctx, time.Minute, func() bool {
		_, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	}); err != nil {
		return nil, fmt.Errorf("default ServiceAccount: %w", err)
	}

	// Count Ready pods from a pod informer of the namespace.
	var mu sync.Mutex
	ready := map[types.UID]bool{}
	seen, bound := map[types.UID]bool{}, map[types.UID]bool{}
	var allSeen, allBound time.Time
	total := o.deployments * o.replicas
	readyCh := make(chan struct{}, 1)
	note := func(obj any) {
		p, ok := obj.(*corev1.Pod)
		if !ok {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				p, _ = t.Obj.(*corev1.Pod)
			}
			if p == nil {
				return
			}
		}
		isReady := p.DeletionTimestamp == nil
		if isReady {
			isReady = false
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					isReady = true
				}
			}
		}
		mu.Lock()
		if !seen[p.UID] {
			seen[p.UID] = true
			if len(seen) == total {
				allSeen = time.Now()
			}
		}
		if p.Spec.NodeName != "" && !bound[p.UID] {
			bound[p.UID] = true
			if len(bound) == total {
				allBound = time.Now()
			}
		}
		if isReady {
			ready[p.UID] = true
		} else {
			delete(ready, p.UID)
		}
		mu.Unlock()
		select {
		case readyCh <- struct{}{}:
		default:
		}
	}
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns))
	inf := factory.Core().V1().Pods().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: note, UpdateFunc: func(_, cur any) { note(cur) },
		DeleteFunc: func(obj any) {
			var uid types.UID
			switch p := obj.(type) {
			case *corev1.Pod:
				uid = p.UID
			case cache.DeletedFinalStateUnknown:
				if pp, ok := p.Obj.(*corev1.Pod); ok {
					uid = pp.UID
				}
			}
			mu.Lock()
			delete(ready, uid)
			mu.Unlock()
		},
	}); err != nil {
		return nil, err
	}
	fctx, stopInf := context.WithCancel(ctx)
	defer stopInf()
	factory.Start(fctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return nil, errors.New("pod informer did not sync")
	}
	res := &ctrlBenchResult{Benchmark: "controllers", Nodes: o.nodes, Deployments: o.deployments, Replicas: o.replicas,
		CPUs: runtime.NumCPU(), TargetPerSec: controllersTarget, SetupSeconds: round2(time.Since(setup).Seconds()),
		CMMode: "in-process",
		Note:   "one process: etcd, API server, scheduler, controller manager, hollow nodes and this client; rss is the whole process"}
	if o.cmProcess {
		res.CMMode = "process"
		res.Note = "the controller manager is `skiff controller-manager` in its own process (admin credentials, no client-side rate limit, as inside the server); rss is the benchmark process's (etcd, API server, scheduler, hollow nodes, this client), controller_manager_rss_bytes its own"
	}

	// Phase 1: create every Deployment and wait for all pods Ready.
	stopProfile, err := cpuprofile.Start(o.cpuProfile)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	err = forEachDeployment(ctx, o, func(i int) error {
		_, err := cs.AppsV1().Deployments(ns).Create(ctx, benchDeployment(i, o.replicas), metav1.CreateOptions{})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create deployments: %w", err)
	}
	res.CreatePerSec = round2(float64(o.deployments) / time.Since(start).Seconds())
	pctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	for {
		mu.Lock()
		n := len(ready)
		mu.Unlock()
		if n >= total {
			break
		}
		select {
		case <-pctx.Done():
			return nil, fmt.Errorf("create phase: %d of %d pods Ready after %s", n, total, o.timeout)
		case <-readyCh:
		case <-time.After(time.Second):
		}
	}
	secs := time.Since(start).Seconds()
	stopProfile()
	mu.Lock()
	created, boundAt := allSeen.Sub(start).Seconds(), allBound.Sub(start).Seconds()
	mu.Unlock()
	res.Phases = append(res.Phases, ctrlPhase{Name: "create-to-ready", Pods: total, Seconds: round2(secs), PodsPerSec: round2(float64(total) / secs),
		AllCreatedSeconds: round2(created), AllBoundSeconds: round2(boundAt)})
	res.MeetsTarget = float64(total)/secs >= controllersTarget
	sampleRSS(res, cmPID)

	// Phase 2: change every pod template and wait for every rollout to
	// complete (as `kubectl rollout status`).
	start = time.Now()
	patch := []byte(`{"spec":{"template":{"metadata":{"annotations":{"bench.skiff.io/rollout":"1"}}}}}`)
	err = forEachDeployment(ctx, o, func(i int) error {
		_, err := cs.AppsV1().Deployments(ns).Patch(ctx, fmt.Sprintf("d-%d", i), types.MergePatchType, patch, metav1.PatchOptions{})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("roll deployments: %w", err)
	}
	rctx, rcancel := context.WithTimeout(ctx, o.timeout)
	defer rcancel()
	for {
		l, err := cs.AppsV1().Deployments(ns).List(rctx, metav1.ListOptions{})
		if err == nil {
			done := 0
			for i := range l.Items {
				if rolledOut(&l.Items[i]) {
					done++
				}
			}
			if done == o.deployments {
				break
			}
		}
		select {
		case <-rctx.Done():
			return nil, fmt.Errorf("rollout phase: not complete after %s", o.timeout)
		case <-time.After(250 * time.Millisecond):
		}
	}
	secs = time.Since(start).Seconds()
	res.Phases = append(res.Phases, ctrlPhase{Name: "rollout", Pods: total, Seconds: round2(secs), PodsPerSec: round2(float64(total) / secs)})
	sampleRSS(res, cmPID)
	return res, nil
}

// startControllerManagerProcess runs `skiff controller-manager` from the
// skiff binary beside this one against the server's admin kubeconfig.
func startControllerManagerProcess(ctx context.Context, kubeconfig string) (stop func(), pid int, err error) {
	bin := defaultServerBin()
	if bin == "" {
		return nil, 0, errors.New("--controller-manager-process needs the skiff binary beside skiff-bench (make build)")
	}
	c := exec.CommandContext(ctx, bin, "controller-manager", "--kubeconfig", kubeconfig, "--leader-elect=false",
		"--kube-api-qps=-1", "--metrics-bind-address=", "--log-level=error")
	c.Stderr = os.Stderr
	if err := c.Start(); err != nil {
		return nil, 0, fmt.Errorf("start controller manager process: %w", err)
	}
	return func() { _ = c.Process.Signal(os.Interrupt); _ = c.Wait() }, c.Process.Pid, nil
}

func sampleRSS(res *ctrlBenchResult, cmPID int) {
	if rss, peak, err := procRSS(os.Getpid()); err == nil {
		res.RSSBytes, res.PeakRSSBytes = rss, max(res.PeakRSSBytes, peak)
	}
	if cmPID == 0 {
		return
	}
	if rss, peak, err := procRSS(cmPID); err == nil {
		res.CMRSSBytes, res.CMPeakRSSBytes = rss, max(res.CMPeakRSSBytes, peak)
	}
}

// rolledOut is `kubectl rollout status` success for d.
func rolledOut(d *appsv1.Deployment) bool {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	st := d.Status
	return st.ObservedGeneration >= d.Generation && st.UpdatedReplicas == want && st.Replicas == want && st.AvailableReplicas == want
}

func benchDeployment(i, replicas int) *appsv1.Deployment {
	labels := map[string]string{"app": fmt.Sprintf("d-%d", i)}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("d-%d", i)},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(replicas)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}}},
			},
		},
	}
}

func forEachDeployment(ctx context.Context, o ctrlBenchOpts, fn func(int) error) error {
	jobs := make(chan int)
	errCh := make(chan error, 1)
	var wg sync.WaitGroup
	for w := 0; w < max(o.workers, 1); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if err := fn(i); err != nil {
					select {
					case errCh <- err:
					default:
					}
				}
			}
		}()
	}
	var err error
loop:
	for i := 0; i < o.deployments; i++ {
		select {
		case jobs <- i:
		case err = <-errCh:
			break loop
		case <-ctx.Done():
			err = ctx.Err()
			break loop
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
	return err
}

func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}
