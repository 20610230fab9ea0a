package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/chaos"
)

// TestChaosServerKills is the short CI form of `make test-chaos`: API
// writes from 8 workers and Deployment scale/rollout churn on 3 hollow
// nodes while the server or the agent is killed with SIGKILL at random
// moments and restarted; every acknowledged write must be there
// afterwards, nothing nobody wrote, and every Deployment must converge
// with exactly its replicas. SKIFF_CHAOS_DURATION makes it longer.
func TestChaosServerKills(t *testing.T) {
	d := 20 * time.Second
	if v := os.Getenv("SKIFF_CHAOS_DURATION"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			t.Fatalf("SKIFF_CHAOS_DURATION: %v", err)
		}
	}
	srv := &chaos.Server{Proc: chaos.Proc{Bin: skiffBin(t)}, DataDir: t.TempDir()}
	t.Cleanup(func() {
		srv.Stop()
		if t.Failed() {
			t.Logf("server log tail:\n%s", srv.LogTail(4000))
			keepServerLog(t, srv)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), d+3*time.Minute)
	defer cancel()
	rep, err := chaos.Run(ctx, chaos.Config{Server: srv, Duration: d, FaultMin: 2 * time.Second, FaultMax: 5 * time.Second, Seed: uint64(time.Now().UnixNano()),
		HollowNodes: 3, Deployments: 4, AgentDataDir: t.TempDir()})
	b, _ := json.Marshal(rep)
	t.Logf("report: %s", b)
	if err != nil {
		t.Fatal(err)
	}
	if rep.FaultsInjected < 2 {
		t.Errorf("only %d faults injected in %v", rep.FaultsInjected, d)
	}
	if rep.DeploymentChanges == 0 {
		t.Errorf("no Deployment change was acknowledged: the churn did not run")
	}
	if rep.OpsAcknowledged < 100 {
		t.Errorf("only %d writes acknowledged: the load did not run", rep.OpsAcknowledged)
	}
	for _, v := range rep.Violations {
		t.Errorf("violation: %s", v)
	}
}

// keepServerLog saves the server's whole log where SKIFF_CHAOS_LOG_DIR
// says (the test's temporary directories are removed), for a failure
// that needs more than the tail.
func keepServerLog(t *testing.T, srv *chaos.Server) {
	dir := os.Getenv("SKIFF_CHAOS_LOG_DIR")
	if dir == "" {
		return
	}
	path := filepath.Join(dir, fmt.Sprintf("chaos-server-%d.log", time.Now().UnixNano()))
	if err := srv.SaveLog(path); err != nil {
		t.Logf("save server log: %v", err)
		return
	}
	t.Logf("server log saved to %s", path)
}
