package e2e

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// browser is what the dashboard's browser tests run with: Debian's
// Chromium, node and the repository's node_modules (playwright-core).
type browser struct{ root, node, chromium string }

// needBrowser fails the test unless Chromium, node, playwright-core and
// the other node modules named are installed.
func needBrowser(t *testing.T, modules ...string) browser {
	t.Helper()
	b := browser{chromium: "/usr/bin/chromium"}
	if _, err := os.Stat(b.chromium); err != nil {
		t.Fatalf("%s is missing (deploy/install-deps.sh installs it): %v", b.chromium, err)
	}
	var err error
	if b.node, err = exec.LookPath("node"); err != nil {
		t.Fatal("node is not installed")
	}
	if b.root, err = filepath.Abs(".."); err != nil {
		t.Fatal(err)
	}
	for _, m := range append([]string{"playwright-core"}, modules...) {
		if _, err := os.Stat(filepath.Join(b.root, "node_modules", m)); err != nil {
			t.Fatalf("node_modules/%s is missing (run npm ci): %v", m, err)
		}
	}
	return b
}

// run runs the browser part web/e2e/<script> for at most timeout with env
// added (DASHBOARD_URL, tokens, KUBECONFIG, HOME, ...; CHROMIUM and
// ARTIFACTS are set here), logs its output and fails the test when it
// fails. Screenshots land in e2e/artifacts/.
func (b browser) run(ctx context.Context, t *testing.T, script string, timeout time.Duration, env ...string) {
	t.Helper()
	artifacts := filepath.Join(b.root, "e2e", "artifacts")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.node, filepath.Join(b.root, "web", "e2e", script))
	cmd.Dir = b.root
	cmd.Env = append(append(os.Environ(), env...), "CHROMIUM="+b.chromium, "ARTIFACTS="+artifacts)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("browser test output:\n%s", out)
	if err != nil {
		t.Fatalf("browser test failed: %v", err)
	}
}

// writeDashboardTokens writes a --token-auth-file with an admin
// (system:masters, user alice) and, unless viewer is empty, a user
// "viewer" without groups.
func writeDashboardTokens(t *testing.T, dir, admin, viewer string) string {
	t.Helper()
	lines := admin + ",alice,1,system:masters\n"
	if viewer != "" {
		lines += viewer + ",viewer,2\n"
	}
	path := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(path, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// waitBuiltUI waits until the dashboard at url answers and fails the test
// when the binary embeds the placeholder instead of the built UI.
func waitBuiltUI(t *testing.T, url string) {
	t.Helper()
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
		t.Fatalf("the binary serves no built UI (run make build):\n%s", page)
	}
}
