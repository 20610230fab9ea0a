package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/multinode"
	"github.com/skiffhq/skiff/internal/nodetest"
	"github.com/skiffhq/skiff/internal/testimages"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// TestHACARotation runs controlplane/pki/README.md's "CA rotation" on a
// three-server cluster with a joined agent, end to end: every server
// stopped; the first started with its CA moved away, which makes a new CA
// and rewrites its server token; the new CA copied to the other two,
// started with the new token; the agent rejoined with a join token of the
// new CA after its kept kubeconfig and client credentials were removed.
// Stored state is kept, the old admin kubeconfig is refused by every
// server, the pod on the node runs on untouched (adopted, not restarted),
// and its logs are served through the API again: the agent got a new
// serving certificate from the new CA by itself.
func TestHACARotation(t *testing.T) {
	multinode.Require(t)
	c := multinode.Start(t, multinode.Options{Nodes: 1, Servers: 3, Instance: 17, Bin: skiffBin(t),
		Images: []nodetest.Image{nodetest.Busybox}})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	node := c.Nodes[0]
	tlsDir := func(j int) string { return filepath.Join(c.HA[j].DataDir, "tls") }

	ns := "rot"
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kept"}, Data: map[string]string{"k": "before"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "ticker"},
		Spec: corev1.PodSpec{
			NodeSelector:                  map[string]string{corev1.LabelHostname: node.Name},
			TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{{
				Name: "ticker", Image: testimages.Busybox, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 1; done"},
			}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var before *corev1.Pod
	pollOK(ctx, t, 90*time.Second, func(ctx context.Context) string {
		p, err := c.Client.CoreV1().Pods(ns).Get(ctx, "ticker", metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		if p.Status.Phase != corev1.PodRunning || len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].ContainerID == "" {
			return "ticker is " + string(p.Status.Phase)
		}
		before = p
		return ""
	})
	logsThrough := func(cs kubernetes.Interface) string {
		b, err := cs.CoreV1().Pods(ns).GetLogs("ticker", &corev1.PodLogOptions{TailLines: new(int64(1))}).DoRaw(ctx)
		if err != nil {
			return err.Error()
		}
		if !strings.HasPrefix(string(b), "tick ") {
			return "logs: " + string(b)
		}
		return ""
	}
	pollOK(ctx, t, 30*time.Second, func(context.Context) string { return logsThrough(c.Client) })

	oldCA := readFile(t, filepath.Join(tlsDir(0), "server-ca.crt"))
	keep := t.TempDir()
	oldKubeconfig := filepath.Join(keep, "old-admin.kubeconfig")
	writeBytes(t, oldKubeconfig, readFile(t, filepath.Join(c.HA[0].DataDir, "admin.kubeconfig")))
	oldToken := strings.TrimSpace(string(readFile(t, filepath.Join(c.HA[0].DataDir, "server", "token"))))

	// 1. Stop every server.
	for _, s := range c.HA {
		s.Stop()
	}
	// 2. The first server: CA moved away, started; it makes a new CA and
	// rewrites its token before it waits for the others.
	for _, f := range []string{"server-ca.crt", "server-ca.key"} {
		if err := os.Rename(filepath.Join(tlsDir(0), f), filepath.Join(keep, f)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.HA[0].Start(); err != nil {
		t.Fatal(err)
	}
	var newToken string
	pollOK(ctx, t, 60*time.Second, func(context.Context) string {
		b, err := os.ReadFile(filepath.Join(c.HA[0].DataDir, "server", "token"))
		if err != nil || strings.TrimSpace(string(b)) == oldToken {
			return "the first server has not rewritten its token"
		}
		newToken = strings.TrimSpace(string(b))
		return ""
	})
	newCA := readFile(t, filepath.Join(tlsDir(0), "server-ca.crt"))
	if string(newCA) == string(oldCA) {
		t.Fatal("the CA did not change")
	}
	// 3. The other servers: the new CA files, the new token.
	for _, s := range c.HA[1:] {
		for _, f := range []string{"server-ca.crt", "server-ca.key"} {
			writeBytes(t, filepath.Join(s.DataDir, "tls", f), readFile(t, filepath.Join(tlsDir(0), f)))
		}
		if err := s.SetFlag("--token", newToken); err != nil {
			t.Fatal(err)
		}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range c.HA {
		if err := s.WaitReady(2 * time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Reconnect(t); err != nil {
		t.Fatal(err)
	}

	// Every server: state kept, its admin kubeconfig of the new CA works,
	// the old one is refused.
	old := &cluster{dir: keep, kubeconfig: oldKubeconfig}
	for _, s := range c.HA {
		cm, err := s.Client.CoreV1().ConfigMaps(ns).Get(ctx, "kept", metav1.GetOptions{})
		if err != nil || cm.Data["k"] != "before" {
			t.Fatalf("server %s after rotation: configmap %v, %v", s.Name, cm, err)
		}
		if got := kubeconfigCA(t, filepath.Join(s.DataDir, "admin.kubeconfig")); got != string(newCA) {
			t.Fatalf("server %s: its admin kubeconfig does not hold the new CA", s.Name)
		}
		if out := old.kFail(t, "--server", s.URL, "get", "namespaces"); !strings.Contains(out, "x509") {
			t.Fatalf("old admin kubeconfig against %s: want a TLS verification failure, got:\n%s", s.Name, out)
		}
		checkServingIssuedBy(t, s.URL, newCA)
	}

	// 4. The agent rejoins with a join token of the new CA.
	token, err := c.JoinToken()
	if err != nil {
		t.Fatal(err)
	}
	since := time.Now()
	if err := c.RejoinAgent(0, token); err != nil {
		t.Fatal(err)
	}
	if err := multinode.WaitRenewedAfter(ctx, c.Client, []string{node.Name}, since, 90*time.Second); err != nil {
		t.Fatalf("the rejoined agent: %v\n%s", err, tailFile(node.Log, 4000))
	}
	if got := kubeconfigCA(t, filepath.Join(node.DataDir, "agent", "kubeconfig")); got != string(newCA) {
		t.Fatal("the rejoined agent's kubeconfig does not hold the new CA")
	}
	// Its logs come through the API again: the API server verifies the
	// agent's new serving certificate with the new CA.
	pollOK(ctx, t, 60*time.Second, func(context.Context) string { return logsThrough(c.Client) })
	serving := parseCert(t, readFile(t, filepath.Join(node.DataDir, "agent", "serving.crt")))
	if err := serving.CheckSignatureFrom(parseCert(t, newCA)); err != nil {
		t.Fatalf("the agent's serving certificate is not the new CA's: %v", err)
	}
	// The pod ran through it all: same container, no restart.
	after, err := c.Client.CoreV1().Pods(ns).Get(ctx, "ticker", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, a := before.Status.ContainerStatuses[0], after.Status.ContainerStatuses[0]
	if a.ContainerID != b.ContainerID || a.RestartCount != 0 || after.Status.Phase != corev1.PodRunning {
		t.Fatalf("the pod was disturbed: container %s -> %s, restarts %d, phase %s", b.ContainerID, a.ContainerID, a.RestartCount, after.Status.Phase)
	}
}

// kubeconfigCA is the CA a kubeconfig trusts for its current cluster.
func kubeconfigCA(t *testing.T, path string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cl := cfg.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster]
	if len(cl.CertificateAuthorityData) > 0 {
		return string(cl.CertificateAuthorityData)
	}
	return string(readFile(t, cl.CertificateAuthority))
}

// checkServingIssuedBy wants the certificate the API server at url
// presents to verify with caPEM.
func checkServingIssuedBy(t *testing.T, url string, caPEM []byte) {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("CA: not PEM")
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := hc.Get(url + "/readyz")
	if err != nil {
		t.Fatalf("%s does not present a certificate of the new CA: %v", url, err)
	}
	resp.Body.Close()
}

func tailFile(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
