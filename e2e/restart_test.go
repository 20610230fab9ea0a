package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestSIGTERMAndRestartKeepState: the server exits cleanly on SIGTERM and
// a restart on the same data dir keeps every object and its credentials.
func TestSIGTERMAndRestartKeepState(t *testing.T) {
	dir := t.TempDir()
	c := startClusterIn(t, dir)
	c.k(t, "create", "namespace", "keep")
	c.k(t, "-n", "keep", "create", "configmap", "cfg", "--from-literal=k=v")
	rv := c.k(t, "-n", "keep", "get", "cm", "cfg", "-o", "jsonpath={.metadata.resourceVersion}")
	start := time.Now()
	if err := c.stop(); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, tail(c.log.String(), 2000))
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("shutdown took %s", d)
	}
	c2 := startClusterIn(t, dir)
	if got := c2.k(t, "-n", "keep", "get", "cm", "cfg", "-o", "jsonpath={.data.k} {.metadata.resourceVersion}"); got != "v "+rv {
		t.Fatalf("after restart: %q, want %q", got, "v "+rv)
	}
	if out := c2.k(t, "get", "ns"); !strings.Contains(out, "keep") {
		t.Fatalf("namespace lost:\n%s", out)
	}
}
