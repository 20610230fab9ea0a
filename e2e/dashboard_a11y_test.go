package e2e

import (
	"context"
	"fmt"
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
	b := needBrowser(t, "axe-core")
	dir := t.TempDir()
	const admin = "e2e-a11y-admin-token-5f2e1"
	tokens := writeDashboardTokens(t, dir, admin, "")
	port := freePort(t)
	c := startClusterIn(t, filepath.Join(dir, "data"), "--token-auth-file", tokens, "--dashboard-port", fmt.Sprint(port))
	c.k(t, "create", "deployment", "web", "--image=busybox", "--replicas=1", "-n", "default")

	b.run(context.Background(), t, "a11y.e2e.mjs", 120*time.Second, "DASHBOARD_URL="+fmt.Sprintf("https://127.0.0.1:%d", port), "ADMIN_TOKEN="+admin, "KUBECONFIG="+c.kubeconfig, "HOME="+dir)
	// The editor's apply reached the API server.
	if got := strings.TrimSpace(c.k(t, "get", "deployment", "web", "-n", "default", "-o", "jsonpath={.spec.replicas}")); got != "2" {
		t.Fatalf("replicas after the YAML editor's apply = %q, want 2", got)
	}
}
