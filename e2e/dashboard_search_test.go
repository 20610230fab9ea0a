package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDashboardSearch drives headless Chromium against a `skiff server`
// (no agent, no real pods): the search palette finds a ConfigMap created
// with kubectl by a fuzzy query and opens it, "g p" goes to pods, "?"
// shows the keyboard help, j/Enter open a table row, the create page
// creates two objects from one multi-document YAML (kubectl sees them) and
// refuses an existing one with the API's message, and a view user sees no
// Create button and gets no results from kinds it may not list. The browser
// part is web/e2e/search.e2e.mjs; screenshots land in e2e/artifacts/.
func TestDashboardSearch(t *testing.T) {
	b := needBrowser(t)
	dir := t.TempDir()
	const admin, viewer = "e2e-admin-token-5e2a1", "e2e-viewer-token-7c3b9"
	tokens := writeDashboardTokens(t, dir, admin, viewer)
	port := freePort(t)
	c := startClusterIn(t, filepath.Join(dir, "data"), "--token-auth-file", tokens, "--dashboard-port", fmt.Sprint(port))
	url := fmt.Sprintf("https://127.0.0.1:%d", port)
	waitBuiltUI(t, url)
	c.k(t, "create", "rolebinding", "viewer-view", "--clusterrole=view", "--user=viewer", "-n", "default")
	// What the palette must find (a ConfigMap) and what the viewer must
	// not (a Secret: view does not grant listing secrets).
	c.k(t, "create", "configmap", "payments-api-config", "--from-literal=a=b", "-n", "default")
	c.k(t, "create", "secret", "generic", "payments-api-token", "--from-literal=k=v", "-n", "default")
	for i := range 3 {
		c.k(t, "create", "configmap", fmt.Sprintf("other-config-%d", i), "-n", "default")
	}

	b.run(context.Background(), t, "search.e2e.mjs", 90*time.Second, "DASHBOARD_URL="+url, "ADMIN_TOKEN="+admin, "VIEWER_TOKEN="+viewer, "KUBECONFIG="+c.kubeconfig, "HOME="+dir)
	// What the browser created is visible in the API.
	for _, obj := range []string{"configmap/e2e-created-config", "serviceaccount/e2e-created-sa"} {
		if got := strings.TrimSpace(c.k(t, "get", obj, "-n", "default", "-o", "jsonpath={.metadata.name}")); !strings.HasSuffix(obj, "/"+got) {
			t.Fatalf("%s after the create page: %q", obj, got)
		}
	}
	if got := strings.TrimSpace(c.k(t, "get", "configmap", "e2e-created-config", "-n", "default", "-o", "jsonpath={.data.from}")); got != "the-create-page" {
		t.Fatalf("created configmap data.from = %q", got)
	}
}
