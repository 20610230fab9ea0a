package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDashboardEditorAndA11y drives Chromium (playwright-core, headless)
// against the dashboard of a `skiff server --disable-agent`: the YAML
// editor of a Deployment marks an unknown field (spec.replicaz) from the
// API server's OpenAPI v3 schema, completes spec.rep… to replicas with its
// type, and still applies a valid edit (checked here with kubectl); axe-core
// finds no serious or critical WCAG 2.1 A/AA violation on the login page,
// overview, pods table, a Deployment's page, its YAML tab and log search,
// in the dark and the light theme. The browser part is web/e2e/a11y.e2e.mjs.
func TestDashboardEditorAndA11y(t *testing.T) {
	chromium := "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("%s is missing (deploy/install-deps.sh installs it): %v", chromium, err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"playwright-core", "axe-core"} {
		if _, err := os.Stat(filepath.Join(root, "node_modules", m)); err != nil {
			t.Fatalf("node_modules/%s is missing (run npm ci): %v", m, err)
		}
	}
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.csv")
	const admin = "e2e-a11y-admin-token-5f2e1"
	if err := os.WriteFile(tokens, []byte(admin+",alice,1,system:masters\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	c := startClusterIn(t, filepath.Join(dir, "data"), "--token-auth-file", tokens, "--dashboard-port", fmt.Sprint(port))
	c.k(t, "create", "deployment", "web", "--image=busybox", "--replicas=1", "-n", "default")

	artifacts := filepath.Join(root, "e2e", "artifacts")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(root, "web", "e2e", "a11y.e2e.mjs"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"DASHBOARD_URL="+fmt.Sprintf("https://127.0.0.1:%d", port), "ADMIN_TOKEN="+admin,
		"KUBECONFIG="+c.kubeconfig, "HOME="+dir, "CHROMIUM="+chromium, "ARTIFACTS="+artifacts)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("browser test output:\n%s", out)
	if err != nil {
		t.Fatalf("browser test failed: %v", err)
	}
	// The editor's apply reached the API server.
	if got := strings.TrimSpace(c.k(t, "get", "deployment", "web", "-n", "default", "-o", "jsonpath={.spec.replicas}")); got != "2" {
		t.Fatalf("replicas after the YAML editor's apply = %q, want 2", got)
	}
}
