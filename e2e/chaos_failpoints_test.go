package e2e

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/chaos"
)

// failpointsBin is bin/skiff built with -tags failpoints (make test-e2e
// builds it; SKIFF_FAILPOINTS_BIN overrides).
func failpointsBin(t *testing.T) string {
	t.Helper()
	return builtBin(t, "SKIFF_FAILPOINTS_BIN", "skiff-failpoints", "make test-e2e builds it with -tags failpoints")
}

// TestChaosStorageFailpoints kills the server exactly inside a write:
// after etcd committed it and before the client got its answer (and, less
// often, just before the commit). Each server process serves 100 writes of
// the load's ConfigMaps untouched, then dies at one of the two points
// within ~33 more on average; the harness restarts it each time while 8
// workers keep writing with a ledger. Every
// acknowledged write must be there afterwards, and the writes whose
// answers were lost after the commit must be found applied, not lost.
func TestChaosStorageFailpoints(t *testing.T) {
	bin := failpointsBin(t)
	srv := &chaos.Server{Proc: chaos.Proc{Bin: bin}, DataDir: t.TempDir()}
	t.Cleanup(func() {
		srv.Stop()
		if t.Failed() {
			t.Logf("server log tail:\n%s", srv.LogTail(4000))
			keepServerLog(t, srv)
		}
	})
	d := 20 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), d+3*time.Minute)
	defer cancel()
	const keys = "@/registry/configmaps/chaos/"
	rep, err := chaos.Run(ctx, chaos.Config{Server: srv, Duration: d, Seed: uint64(time.Now().UnixNano()),
		Failpoints: "storage/after-commit=after(100)2%kill" + keys + ";storage/before-commit=after(100)1%kill" + keys})
	b, _ := json.Marshal(rep)
	t.Logf("report: %s", b)
	if err != nil {
		t.Fatal(err)
	}
	after, before := srv.LogCount("failpoint: storage/after-commit kill"), srv.LogCount("failpoint: storage/before-commit kill")
	t.Logf("failpoints fired: after-commit %d, before-commit %d", after, before)
	if after == 0 {
		t.Fatalf("storage/after-commit never fired in %d acknowledged writes", rep.OpsAcknowledged)
	}
	if rep.FaultsInjected < after {
		t.Errorf("%d failpoint kills but only %d restarts recorded", after, rep.FaultsInjected)
	}
	if rep.UnknownApplied == 0 {
		t.Errorf("%d writes died after their commit, but no unknown outcome was found applied", after)
	}
	if rep.OpsAcknowledged < 100 {
		t.Errorf("only %d writes acknowledged: the load did not run", rep.OpsAcknowledged)
	}
	for _, v := range rep.Violations {
		t.Errorf("violation: %s", v)
	}
}
