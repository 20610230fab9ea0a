package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
)

// TestCARotation follows controlplane/pki/README.md's "CA rotation"
// procedure on one server: stop it, move tls/server-ca.crt/.key away,
// start it on the same data dir and port. State is kept, every leaf the
// server owns is reissued by the new CA, the old admin kubeconfig is
// refused, service account tokens still authenticate, kube-root-ca.crt
// and new join tokens carry the new CA.
func TestCARotation(t *testing.T) {
	dir := t.TempDir()
	keep := t.TempDir() // the old CA and kubeconfig, outside the data dir
	port := freePort(t)
	args := []string{"server", "--data-dir", dir, "--bind-address", "127.0.0.1",
		"--https-listen-port", fmt.Sprint(port), "--etcd-client-port", "0", "--etcd-peer-port", "0",
		"--disable-agent", "--ingress-http-port", "0", "--ingress-https-port", "0"}
	tlsDir := filepath.Join(dir, "tls")

	c1 := startServer(t, dir, args...)
	c1.k(t, "create", "namespace", "rot")
	c1.k(t, "-n", "rot", "create", "secret", "generic", "s", "--from-literal=k=before")
	c1.k(t, "-n", "rot", "create", "serviceaccount", "bot")
	saToken := strings.TrimSpace(c1.k(t, "-n", "rot", "create", "token", "bot", "--duration=2h"))
	oldCA := readFile(t, filepath.Join(tlsDir, "server-ca.crt"))
	waitRootCA(t, c1, "rot", oldCA)
	if got := whoami(t, c1.dir, keep, readKubeconfigServer(t, c1.kubeconfig), oldCA, saToken); got != "system:serviceaccount:rot:bot" {
		t.Fatalf("before rotation the token is %q", got)
	}
	oldKubeconfig := filepath.Join(keep, "old-admin.kubeconfig")
	writeBytes(t, oldKubeconfig, readFile(t, c1.kubeconfig))

	// The procedure: stop, move the CA away, start.
	if err := c1.stop(); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, tail(c1.log.String(), 2000))
	}
	for _, f := range []string{"server-ca.crt", "server-ca.key"} {
		if err := os.Rename(filepath.Join(tlsDir, f), filepath.Join(keep, f)); err != nil {
			t.Fatal(err)
		}
	}
	c2 := startServer(t, dir, args...)

	newCA := readFile(t, filepath.Join(tlsDir, "server-ca.crt"))
	if string(newCA) == string(oldCA) {
		t.Fatal("the CA did not change")
	}
	cfg, err := clientcmd.LoadFromFile(c2.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster].CertificateAuthorityData; string(got) != string(newCA) {
		t.Fatal("the admin kubeconfig does not hold the new CA")
	}

	// State is kept.
	if got := c2.k(t, "-n", "rot", "get", "secret", "s", "-o", "jsonpath={.data.k}"); got != base64.StdEncoding.EncodeToString([]byte("before")) {
		t.Fatalf("secret after rotation: %q", got)
	}

	// The old admin kubeconfig: the server's certificate no longer
	// verifies against its CA, and its client certificate is refused.
	old := &cluster{dir: c2.dir, kubeconfig: oldKubeconfig}
	if out := old.kFail(t, "get", "namespaces"); !strings.Contains(out, "x509") {
		t.Fatalf("old kubeconfig: want a TLS verification failure, got:\n%s", out)
	}
	oldCfg, err := clientcmd.LoadFromFile(oldKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	url := oldCfg.Clusters[oldCfg.Contexts[oldCfg.CurrentContext].Cluster].Server
	oldUser := oldCfg.AuthInfos[oldCfg.Contexts[oldCfg.CurrentContext].AuthInfo]
	newUser := cfg.AuthInfos[cfg.Contexts[cfg.CurrentContext].AuthInfo]
	if code := getWithCert(t, url+"/api", oldUser.ClientCertificateData, oldUser.ClientKeyData); code != http.StatusUnauthorized {
		t.Fatalf("old admin certificate without TLS verification: HTTP %d, want 401", code)
	}
	if code := getWithCert(t, url+"/api", newUser.ClientCertificateData, newUser.ClientKeyData); code != http.StatusOK {
		t.Fatalf("new admin certificate: HTTP %d, want 200", code)
	}

	// Every leaf under tls/ is issued by the new CA; etcd's own CA, which
	// the procedure leaves alone, still issues its leaves.
	checkLeavesIssuedBy(t, dir, newCA)

	// Service account tokens are signed by service-account.key: still valid.
	if got := whoami(t, c2.dir, keep, url, newCA, saToken); got != "system:serviceaccount:rot:bot" {
		t.Fatalf("service account token after rotation: %q", got)
	}

	// kube-root-ca.crt is republished with the new CA, in an old namespace
	// and in a new one.
	waitRootCA(t, c2, "rot", newCA)
	c2.k(t, "create", "namespace", "rot-new")
	waitRootCA(t, c2, "rot-new", newCA)

	// A join token made now carries the new CA's hash.
	out, err := exec.Command(skiffBin(t), "token", "create", "--data-dir", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("skiff token create: %v\n%s", err, out)
	}
	sum := sha256.Sum256(newCA)
	if tok := strings.TrimSpace(string(out)); !strings.HasPrefix(tok, "SK10"+hex.EncodeToString(sum[:])+"::") {
		t.Fatalf("join token %q does not carry the new CA's hash %x", tok, sum)
	}
}

// checkLeavesIssuedBy runs `skiff certificate check -o json` and wants the
// cluster CA to be ca and every leaf to be signed by the CA of its folder.
func checkLeavesIssuedBy(t *testing.T, dataDir string, caPEM []byte) {
	t.Helper()
	out, err := exec.Command(skiffBin(t), "certificate", "check", "-o", "json", "--data-dir", dataDir).Output()
	if err != nil {
		t.Fatalf("skiff certificate check: %v\n%s", err, out)
	}
	if table, err := exec.Command(skiffBin(t), "certificate", "check", "--data-dir", dataDir).CombinedOutput(); err == nil {
		t.Logf("skiff certificate check after rotation:\n%s", table)
	}
	var infos []struct {
		Name, File, Subject, Issuer, Status string
		CA                                  bool
	}
	if err := json.Unmarshal(out, &infos); err != nil {
		t.Fatalf("skiff certificate check: %v\n%s", err, out)
	}
	ca := parseCert(t, caPEM)
	cas := map[string]*x509.Certificate{} // folder → its CA
	seen := map[string]bool{}
	for _, i := range infos {
		if i.CA {
			cas[filepath.Dir(i.File)] = parseCert(t, readFile(t, i.File))
		}
	}
	if c := cas[filepath.Join(dataDir, "tls")]; c == nil || !c.Equal(ca) {
		t.Fatalf("skiff certificate check does not list the new cluster CA:\n%s", out)
	}
	for _, i := range infos {
		if i.CA {
			continue
		}
		seen[i.Name] = true
		issuer := cas[filepath.Dir(i.File)]
		leaf := parseCert(t, readFile(t, i.File))
		if issuer == nil || leaf.CheckSignatureFrom(issuer) != nil || i.Issuer != issuer.Subject.String() {
			t.Errorf("%s (issuer %q) is not signed by the CA of its folder", i.Name, i.Issuer)
		}
		if i.Status != "ok" {
			t.Errorf("%s: status %q", i.Name, i.Status)
		}
	}
	for _, name := range []string{"serving-kube-apiserver", "client-system-admin"} {
		if !seen[name] {
			t.Errorf("skiff certificate check does not list %s:\n%s", name, out)
		}
	}
}

// waitRootCA waits for namespace ns's kube-root-ca.crt to hold ca.
func waitRootCA(t *testing.T, c *cluster, ns string, ca []byte) {
	t.Helper()
	eventually(t, 60*time.Second, func() string {
		out, err := c.run("-n", ns, "get", "configmap", "kube-root-ca.crt", "-o", "jsonpath={.data.ca\\.crt}")
		if err != nil {
			return out
		}
		if out != string(ca) {
			return fmt.Sprintf("kube-root-ca.crt in %s does not hold the expected CA (subject %q)", ns, certSubject(out))
		}
		return ""
	})
}

// whoami authenticates with token alone (a kubeconfig holding the server,
// the CA and the token) and returns the user name the server sees.
func whoami(t *testing.T, home, tmp, server string, caPEM []byte, token string) string {
	t.Helper()
	kc := filepath.Join(tmp, "token.kubeconfig")
	writeBytes(t, kc, fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: %q, certificate-authority-data: %s}
users:
- name: u
  user: {token: %q}
contexts:
- name: c
  context: {cluster: c, user: u}
current-context: c
`, server, base64.StdEncoding.EncodeToString(caPEM), token))
	c := &cluster{dir: home, kubeconfig: kc}
	return c.k(t, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
}

// getWithCert GETs url presenting a client certificate, without verifying
// the server's, and returns the status code.
func getWithCert(t *testing.T, url string, certPEM, keyPEM []byte) int {
	t.Helper()
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12,
	}}}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func readKubeconfigServer(t *testing.T, path string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster].Server
}

func parseCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	if b == nil {
		t.Fatal("no PEM certificate")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func certSubject(certPEM string) string {
	b, _ := pem.Decode([]byte(certPEM))
	if b == nil {
		return "<none>"
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return err.Error()
	}
	return c.Subject.String()
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeBytes(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
