package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
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
	if _, err := os.Stat(filepath.Join(root, "node_modules", "playwright-core")); err != nil {
		t.Fatalf("node_modules/playwright-core is missing (run npm ci): %v", err)
	}
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.csv")
	const admin, viewer = "e2e-admin-token-5e2a1", "e2e-viewer-token-7c3b9"
	if err := os.WriteFile(tokens, []byte(admin+",alice,1,system:masters\n"+viewer+",viewer,2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	c := startClusterIn(t, filepath.Join(dir, "data"), "--token-auth-file", tokens, "--dashboard-port", fmt.Sprint(port))
	url := fmt.Sprintf("https://127.0.0.1:%d", port)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	var page string
	eventually(t, 30*time.Second, func() string {
		resp, err := hc.Get(url + "/")
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		page = string(b)
		return ""
	})
	if !strings.Contains(page, `id="root"`) {
		t.Fatalf("the binary serves no built UI (npm run build first):\n%s", page)
	}
	c.k(t, "create", "rolebinding", "viewer-view", "--clusterrole=view", "--user=viewer", "-n", "default")
	// What the palette must find (a ConfigMap) and what the viewer must
	// not (a Secret: view does not grant listing secrets).
	c.k(t, "create", "configmap", "payments-api-config", "--from-literal=a=b", "-n", "default")
	c.k(t, "create", "secret", "generic", "payments-api-token", "--from-literal=k=v", "-n", "default")
	for i := range 3 {
		c.k(t, "create", "configmap", fmt.Sprintf("other-config-%d", i), "-n", "default")
	}

	artifacts := filepath.Join(root, "e2e", "artifacts")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(root, "web", "e2e", "search.e2e.mjs"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"DASHBOARD_URL="+url, "ADMIN_TOKEN="+admin, "VIEWER_TOKEN="+viewer,
		"KUBECONFIG="+c.kubeconfig, "HOME="+dir, "CHROMIUM="+chromium, "ARTIFACTS="+artifacts)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("browser test output:\n%s", out)
	if err != nil {
		t.Fatalf("browser test failed: %v", err)
	}
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
