package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/chaos"
	"github.com/skiffhq/skiff/internal/multinode"
)

// TestChaosRealPods is the real-pod part of the fault suite
// (chaos.RunPods, which `skiff-bench chaos` runs too): each agent,
// containerd, and one server with its etcd member are killed in turn
// under ingress, DNS, log and API load on three HA servers and two nodes.
// Not one request or query may fail, every log line must reach the store
// once, every acknowledged write must be there, the Deployment's pods
// must be the same ones, never restarted, and nothing of the pods may be
// left on the nodes after their deletion.
func TestChaosRealPods(t *testing.T) {
	multinode.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	rep := chaos.RunPods(ctx, t, chaos.PodsConfig{Bin: skiffBin(t), Instance: 14})
	t.Logf("%d faults; ingress %d answered, DNS %d answered; %d log lines written; %d writes acknowledged, %d unknown outcome",
		len(rep.Faults), rep.IngressAnswered, rep.DNSAnswered, rep.LogLinesWritten, rep.OpsAcknowledged, rep.OpsUnknown)
	if len(rep.Faults) != 4 {
		t.Errorf("%d faults injected, want 4 (two agents, containerd, a server)", len(rep.Faults))
	}
	for _, b := range rep.Broken() {
		t.Error(b)
	}
}
