package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDashboardBrowser drives Debian's Chromium (playwright-core, headless)
// against the dashboard of a real `bin/skiff server`: token login, a
// Deployment created with kubectl appearing live, scaling from the UI and
// from the YAML editor, a `view` user who cannot delete, and the log search
// page over lines indexed into the embedded log store, the federation page
// with a member server and switching the dashboard to it (a user who may
// not read the member's credentials is refused). The browser
// part is web/e2e/dashboard.e2e.mjs; screenshots land in e2e/artifacts/.
func TestDashboardBrowser(t *testing.T) {
	b := needBrowser(t)
	dir := t.TempDir()
	const admin, viewer = "e2e-admin-token-4c1d7", "e2e-viewer-token-93ab2"
	tokens := writeDashboardTokens(t, dir, admin, viewer)
	port := freePort(t)
	c := startClusterIn(t, filepath.Join(dir, "data"), "--token-auth-file", tokens, "--dashboard-port", fmt.Sprint(port),
		"--ingress-http-port", "0", "--ingress-https-port", "0", "--metric-resolution", "2s", "--enable", "federation")
	url := fmt.Sprintf("https://127.0.0.1:%d", port)

	waitBuiltUI(t, url)
	c.k(t, "create", "rolebinding", "viewer-view", "--clusterrole=view", "--user=viewer", "-n", "default")
	// Metrics charts and storage pages: a fake node agent feeds the metrics
	// add-on; a static volume binds the claim a pod mounts.
	startFakeAgent(t, c, filepath.Join(dir, "data"))
	createStorageObjects(t, c)
	// Federation page and member context: one member server, a
	// Deployment placed on it by a policy.
	joinMember(t, c, filepath.Join(dir, "member"))

	b.run(context.Background(), t, "dashboard.e2e.mjs", 330*time.Second, "DASHBOARD_URL="+url, "ADMIN_TOKEN="+admin, "VIEWER_TOKEN="+viewer, "KUBECONFIG="+c.kubeconfig, "HOME="+dir)
	// What the browser did is visible in the API.
	if got := strings.TrimSpace(c.k(t, "get", "deployment", "web", "-o", "jsonpath={.spec.replicas}")); got != "4" {
		t.Fatalf("replicas after the UI's scale and YAML edit = %q, want 4", got)
	}
}

// joinMember starts a second `skiff server` as member cluster m1 of host
// c (federation add-on on the host), places Deployment fed/fed-web on it
// with a PropagationPolicy, and lets the viewer read the federation kinds
// but not the member's credentials Secret.
func joinMember(t *testing.T, c *cluster, dir string) {
	t.Helper()
	m := startClusterIn(t, dir, "--dashboard-port", "0", "--dns-port", fmt.Sprint(freePort(t)))
	c.k(t, "create", "namespace", "federation-system")
	c.k(t, "create", "secret", "generic", "m1-credentials", "-n", "federation-system", "--from-file=kubeconfig="+m.kubeconfig)
	eventually(t, 60*time.Second, func() string {
		out, err := c.run("wait", "--for=condition=Established", "crd/memberclusters.federation.skiff.io", "crd/propagationpolicies.federation.skiff.io",
			"crd/clusterresourcebindings.federation.skiff.io", "--timeout=5s")
		if err != nil {
			return out
		}
		return ""
	})
	c.kIn(t, `apiVersion: federation.skiff.io/v1alpha1
kind: MemberCluster
metadata:
  name: m1
  labels: {topology.kubernetes.io/zone: zone-a, topology.kubernetes.io/region: e2e}
spec:
  secretRef: {namespace: federation-system, name: m1-credentials}
---
apiVersion: v1
kind: Namespace
metadata: {name: fed}
---
apiVersion: federation.skiff.io/v1alpha1
kind: PropagationPolicy
metadata: {name: web, namespace: fed}
spec:
  resourceSelectors: [{apiVersion: apps/v1, kind: Deployment, name: fed-web}]
  placement: {clusterNames: [m1]}
`, "apply", "-f", "-")
	c.k(t, "create", "deployment", "fed-web", "--image=busybox", "--replicas=2", "-n", "fed")
	c.k(t, "create", "clusterrole", "federation-read", "--verb=get,list,watch",
		"--resource=memberclusters.federation.skiff.io,propagationpolicies.federation.skiff.io,clusterpropagationpolicies.federation.skiff.io,resourcebindings.federation.skiff.io,clusterresourcebindings.federation.skiff.io")
	c.k(t, "create", "clusterrolebinding", "viewer-federation-read", "--clusterrole=federation-read", "--user=viewer")
}
