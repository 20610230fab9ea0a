package chaos

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

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
}

// Report is what a run found, printed by `skiff-bench chaos`.
type Report struct {
	Benchmark        string    `json:"benchmark"`
	DurationSeconds  float64   `json:"duration_seconds"`
	OpsAcknowledged  int64     `json:"operations_acknowledged"`
	OpsUnknown       int64     `json:"operations_unknown_outcome"`
	UnknownApplied   int64     `json:"unknown_outcome_applied"`
	OpsLost          int       `json:"operations_lost"`
	Faults           []Fault   `json:"faults"`
	FaultsInjected   int       `json:"faults_injected"`
	ConvergeSeconds  []float64 `json:"converge_seconds"`
	Violations       []string  `json:"violations,omitempty"`
	LeakedResources  int       `json:"leaked_resources"`
	MeetsPromises    bool      `json:"meets_promises"`
	KeysWritten      int       `json:"keys_written"`
	WorkersPerServer int       `json:"workers"`
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
	ledger := NewLedger()
	load := &APILoad{Client: cs, Namespace: ns, Workers: cfg.Workers, Keys: cfg.KeysPerWorker, Ledger: ledger, Retry: 100 * time.Millisecond}
	rep := &Report{Benchmark: "chaos", WorkersPerServer: cfg.Workers}
	start := time.Now()
	loadCtx, stopLoad := context.WithTimeout(ctx, cfg.Duration)
	defer stopLoad()
	loadDone := make(chan struct{})
	go func() { load.Run(loadCtx); close(loadDone) }()

	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	for {
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
		log.Info("chaos: killing the server", "at", f.AtSeconds)
		cfg.Server.Kill()
		t0 := time.Now()
		if err := cfg.Server.Start(ctx); err != nil {
			stopLoad()
			<-loadDone
			return rep, fmt.Errorf("restart after fault %d: %w", len(rep.Faults)+1, err)
		}
		f.ConvergeSeconds = time.Since(t0).Seconds()
		rep.Faults = append(rep.Faults, f)
		rep.ConvergeSeconds = append(rep.ConvergeSeconds, f.ConvergeSeconds)
	}
	<-loadDone
	rep.DurationSeconds = time.Since(start).Seconds()
	vctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := load.Verify(vctx); err != nil {
		return rep, err
	}
	rep.OpsAcknowledged, rep.OpsUnknown, rep.UnknownApplied, rep.Violations = ledger.Counts()
	rep.OpsLost = len(rep.Violations)
	rep.FaultsInjected = len(rep.Faults)
	rep.KeysWritten = len(ledger.Keys())
	rep.MeetsPromises = rep.OpsLost == 0 && rep.LeakedResources == 0
	if rep.ConvergeSeconds == nil {
		rep.ConvergeSeconds = []float64{}
	}
	return rep, nil
}
