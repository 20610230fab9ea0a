package chaos

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/skiffhq/skiff/internal/failpoint"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Config is one chaos run.
type Config struct {
	Server   *Server
	Duration time.Duration // load time, faults included
	// FaultEvery bounds the random wait between faults.
	FaultMin, FaultMax time.Duration
	Workers            int
	KeysPerWorker      int
	Seed               uint64
	Log                *slog.Logger
	// HollowNodes > 0 adds a `skiff agent --runtime fake` process with
	// that many nodes (data in AgentDataDir), Deployments churned on them,
	// and the agent as a second fault target; the Deployments must
	// converge after the faults.
	HollowNodes  int
	Deployments  int
	AgentDataDir string
	// ConvergeTimeout bounds the wait for the Deployments (default 2m).
	ConvergeTimeout time.Duration
	// Failpoints, when set, is the server's SKIFF_FAILPOINTS (its binary
	// must be built with -tags failpoints): the harness kills nothing and
	// instead restarts the server each time a failpoint ends it.
	Failpoints string
}

// Report is what a run found, printed by `skiff-bench chaos`.
type Report struct {
	Benchmark       string    `json:"benchmark"`
	DurationSeconds float64   `json:"duration_seconds"`
	OpsAcknowledged int64     `json:"operations_acknowledged"`
	OpsUnknown      int64     `json:"operations_unknown_outcome"`
	UnknownApplied  int64     `json:"unknown_outcome_applied"`
	OpsLost         int       `json:"operations_lost"`
	Faults          []Fault   `json:"faults"`
	FaultsInjected  int       `json:"faults_injected"`
	ConvergeSeconds []float64 `json:"converge_seconds"`
	Violations      []string  `json:"violations,omitempty"`
	// LeakAudit says where leaked resources are counted: hollow nodes
	// have no containers, namespaces, addresses or mounts to leak; the
	// real-pod run (RunPods) audits them.
	LeakAudit string `json:"leak_audit"`
	// LogLinesLost and LeakedResources come from the real-pod run; null
	// when it did not run (RealPodsSkipped says why).
	LogLinesLost     *int        `json:"log_lines_lost"`
	LeakedResources  *int        `json:"leaked_resources"`
	RealPods         *PodsReport `json:"real_pods,omitempty"`
	RealPodsSkipped  string      `json:"real_pods_skipped,omitempty"`
	MeetsPromises    bool        `json:"meets_promises"`
	KeysWritten      int         `json:"keys_written"`
	WorkersPerServer int         `json:"workers"`
	// Deployments on hollow nodes (when configured).
	DeploymentChanges         int64   `json:"deployment_changes_acknowledged,omitempty"`
	DeploymentConvergeSeconds float64 `json:"deployments_converge_seconds,omitempty"`
	DeploymentsConverged      bool    `json:"deployments_converged,omitempty"`
}

// Fault is one injected fault and how long the system took to serve
// again after it.
type Fault struct {
	Target          string  `json:"target"`
	Signal          string  `json:"signal"`
	AtSeconds       float64 `json:"at_seconds"`
	ConvergeSeconds float64 `json:"converge_seconds"`
}

// Run starts the server, drives the API load while killing the server at
// random moments, then checks the ledger against what the server holds.
// The server is left running; the caller stops it.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	if cfg.Workers == 0 {
		cfg.Workers = 8
	}
	if cfg.KeysPerWorker == 0 {
		cfg.KeysPerWorker = 20
	}
	if cfg.Failpoints != "" {
		cfg.Server.Env = append(cfg.Server.Env, failpoint.Env+"="+cfg.Failpoints)
	}
	if err := cfg.Server.Start(ctx); err != nil {
		return nil, err
	}
	cs, err := cfg.Server.Client(5 * time.Second)
	if err != nil {
		return nil, err
	}
	ns := "chaos"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create namespace: %w", err)
	}
	var agent *Proc
	var wl *Workloads
	if cfg.HollowNodes > 0 {
		agent = &Proc{Name: "skiff agent", Bin: cfg.Server.Bin, Args: []string{"agent", "--runtime", "fake",
			"--hollow-nodes", fmt.Sprint(cfg.HollowNodes), "--kubeconfig", cfg.Server.Kubeconfig(),
			"--data-dir", cfg.AgentDataDir, "--node-name-prefix", "chaos-node-", "--lease-interval", "2s"}}
		defer agent.Stop()
		if _, err := agent.start(); err != nil {
			return nil, err
		}
		if cfg.Deployments == 0 {
			cfg.Deployments = 4
		}
		wl = &Workloads{Client: cs, Namespace: "chaos-apps", Deployments: cfg.Deployments}
		if err := wl.Setup(ctx); err != nil {
			return nil, err
		}
		if _, off := wl.WaitConverged(ctx, 2*time.Minute, 500*time.Millisecond); off != "" {
			return nil, fmt.Errorf("deployments did not converge before the faults: %s; agent log:\n%s", off, agent.LogTail(2000))
		}
	}
	ledger := NewLedger()
	load := &APILoad{Client: cs, Namespace: ns, Workers: cfg.Workers, Keys: cfg.KeysPerWorker, Ledger: ledger, Retry: 100 * time.Millisecond}
	rep := &Report{Benchmark: "chaos", WorkersPerServer: cfg.Workers}
	start := time.Now()
	loadCtx, stopLoad := context.WithTimeout(ctx, cfg.Duration)
	defer stopLoad()
	loadDone := make(chan struct{})
	go func() { load.Run(loadCtx); close(loadDone) }()
	churnDone := make(chan struct{})
	if wl != nil {
		go func() { wl.Run(loadCtx, 300*time.Millisecond, cfg.Seed); close(churnDone) }()
	} else {
		close(churnDone)
	}

	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	for cfg.Failpoints != "" {
		// The server dies only at its failpoints; start it again each
		// time until the load ends.
		select {
		case <-loadCtx.Done():
		case <-cfg.Server.Exited():
		}
		if loadCtx.Err() != nil {
			break
		}
		f := Fault{Target: "server", Signal: "failpoint", AtSeconds: time.Since(start).Seconds()}
		log.Info("chaos: server ended at a failpoint", "at", f.AtSeconds)
		t0 := time.Now()
		died, err := cfg.Server.restartAfterFailpoints(ctx)
		for range died { // deaths while starting again: faults with no serving time
			rep.Faults = append(rep.Faults, Fault{Target: "server", Signal: "failpoint", AtSeconds: time.Since(start).Seconds()})
		}
		if err != nil {
			stopLoad()
			<-loadDone
			<-churnDone
			return rep, fmt.Errorf("restart server after failpoint %d: %w", len(rep.Faults)+1, err)
		}
		f.ConvergeSeconds = time.Since(t0).Seconds()
		rep.Faults = append(rep.Faults, f)
		rep.ConvergeSeconds = append(rep.ConvergeSeconds, f.ConvergeSeconds)
	}
	for cfg.Failpoints == "" {
		wait := cfg.FaultMin
		if d := cfg.FaultMax - cfg.FaultMin; d > 0 {
			wait += time.Duration(rng.Int64N(int64(d)))
		}
		if time.Since(start)+wait >= cfg.Duration {
			break
		}
		select {
		case <-loadCtx.Done():
		case <-time.After(wait):
		}
		if loadCtx.Err() != nil {
			break
		}
		f := Fault{Target: "server", Signal: "SIGKILL", AtSeconds: time.Since(start).Seconds()}
		if agent != nil && rng.IntN(2) == 0 {
			f.Target = "agent"
		}
		log.Info("chaos: killing", "target", f.Target, "at", f.AtSeconds)
		t0 := time.Now()
		var err error
		if f.Target == "agent" {
			agent.Kill()
			_, err = agent.start()
		} else {
			cfg.Server.Kill()
			err = cfg.Server.Start(ctx)
		}
		if err != nil {
			stopLoad()
			<-loadDone
			<-churnDone
			return rep, fmt.Errorf("restart %s after fault %d: %w", f.Target, len(rep.Faults)+1, err)
		}
		f.ConvergeSeconds = time.Since(t0).Seconds()
		rep.Faults = append(rep.Faults, f)
		rep.ConvergeSeconds = append(rep.ConvergeSeconds, f.ConvergeSeconds)
	}
	<-loadDone
	<-churnDone
	rep.DurationSeconds = time.Since(start).Seconds()
	vctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := load.Verify(vctx); err != nil {
		return rep, err
	}
	notConverged := ""
	if wl != nil {
		timeout := cfg.ConvergeTimeout
		if timeout == 0 {
			timeout = 2 * time.Minute
		}
		took, off := wl.WaitConverged(ctx, timeout, 500*time.Millisecond)
		rep.DeploymentChanges = wl.Changes.Load()
		rep.DeploymentConvergeSeconds = took.Seconds()
		rep.DeploymentsConverged = off == ""
		if off != "" {
			dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
			notConverged = fmt.Sprintf("deployments did not converge within %v after the faults: %s\n%s", timeout, off, wl.Describe(dctx))
			dcancel()
		}
	}
	rep.OpsAcknowledged, rep.OpsUnknown, rep.UnknownApplied, rep.Violations = ledger.Counts()
	rep.OpsLost = len(rep.Violations)
	if notConverged != "" {
		rep.Violations = append(rep.Violations, notConverged)
	}
	rep.FaultsInjected = len(rep.Faults)
	rep.KeysWritten = len(ledger.Keys())
	rep.LeakAudit = "not in this run (hollow nodes hold no containers, namespaces, addresses or mounts); the real-pod run (RunPods) audits real pods after agent, containerd and etcd-member kills"
	rep.MeetsPromises = len(rep.Violations) == 0
	if rep.ConvergeSeconds == nil {
		rep.ConvergeSeconds = []float64{}
	}
	return rep, nil
}

// AddPods adds a real-pod run to r: its faults and their convergence
// times, its acknowledged and lost writes, and every promise it broke to
// the totals; log_lines_lost and leaked_resources are its own.
func (r *Report) AddPods(p *PodsReport) {
	r.RealPods = p
	r.FaultsInjected += len(p.Faults)
	for _, f := range p.Faults {
		r.ConvergeSeconds = append(r.ConvergeSeconds, f.ConvergeSeconds)
	}
	r.OpsAcknowledged += p.OpsAcknowledged
	r.OpsUnknown += p.OpsUnknown
	r.OpsLost += len(p.Violations)
	lost, leaked := p.LogLinesLost, len(p.LeakedResources)
	r.LogLinesLost, r.LeakedResources = &lost, &leaked
	r.LeakAudit = "real pods: containers, network namespaces, pod addresses, veths and mounts on the nodes two minutes after the pods' deletion"
	for _, b := range p.Broken() {
		r.Violations = append(r.Violations, "real pods: "+b)
	}
	r.MeetsPromises = len(r.Violations) == 0
}
