package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/etcdclient"
	"github.com/skiffhq/skiff/controlplane/etcdsnapshot"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// testCA issues the certificates of an external etcd cluster.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	dir  string
}

func newTestCA(t *testing.T, dir string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "etcd-test-ca"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	writePEM(t, filepath.Join(dir, "ca.crt"), "CERTIFICATE", der)
	return &testCA{cert: cert, key: key, dir: dir}
}

// issue writes <name>.crt/.key for 127.0.0.1 with server and client usage
// (etcd members are both to each other).
func (ca *testCA) issue(t *testing.T, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: n, Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(ca.dir, name+".crt"), filepath.Join(ca.dir, name+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestExternalEtcdClusterTLS runs skiff server on a three-member etcd
// cluster (Debian's etcd-server binary) with TLS and client certificate
// authentication on loopback: the server serves, keeps serving writes
// when one member is killed, takes a snapshot through the recorded TLS
// endpoints, and refuses to start without a client certificate.
func TestExternalEtcdClusterTLS(t *testing.T) {
	etcdBin, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("etcd binary not installed (apt-get install etcd-server)")
	}
	dir := t.TempDir()
	ca := newTestCA(t, dir)
	const members = 3
	clientURLs, procs, logs := startEtcdCluster(t, etcdBin, dir, ca, members)
	clientCert, clientKey := ca.issue(t, "skiff-server")
	cfg := server.Config{DataDir: t.TempDir(), BindAddress: "127.0.0.1", DisableAgent: true, DNSListenAddress: "127.0.0.1:0",
		DatastoreEndpoints: clientURLs, DatastoreCAFile: filepath.Join(dir, "ca.crt"), DatastoreCertFile: clientCert, DatastoreKeyFile: clientKey}

	// Without a client certificate the cluster refuses the server.
	bad := cfg
	bad.DataDir, bad.DatastoreCertFile, bad.DatastoreKeyFile = t.TempDir(), "", ""
	sctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	if s, err := server.Start(sctx, bad); err == nil {
		s.Stop()
		t.Fatal("started on a client-cert-auth etcd without a client certificate")
	} else if !strings.Contains(err.Error(), "not reachable") {
		t.Errorf("error without a client certificate: %v", err)
	}
	cancel()

	ts := testserver.StartWith(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
	defer cancel()
	create := func(name string) {
		t.Helper()
		if _, err := ts.Client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
	}
	create("before")

	// A snapshot through the endpoints and TLS files the server recorded.
	info, err := etcdclient.Read(cfg.DataDir)
	if err != nil || info.Embedded || info.CertFile == "" {
		t.Fatalf("recorded datastore %+v: %v", info, err)
	}
	cli, err := info.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := etcdsnapshot.Save(ctx, cli, cfg.DataDir, filepath.Join(cfg.DataDir, "snapshots"), "external", time.Now())
	cli.Close()
	if err != nil || snap.Size == 0 {
		t.Fatalf("snapshot of the external cluster: %v %+v", err, snap)
	}

	// Quorum survives one member: once all three agree on a leader,
	// kill -9 the first and keep writing.
	waitEtcdMembers(ctx, t, info, clientURLs, logs)
	if err := procs[0].Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = procs[0].Wait()
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := ts.Client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "after"}}, metav1.CreateOptions{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write accepted after one of three members died: %v\n%s", err, tails(logs))
		}
		time.Sleep(500 * time.Millisecond)
	}
	list, err := ts.Client.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, c := range list.Items {
		names[c.Name] = true
	}
	if !names["before"] || !names["after"] {
		t.Fatalf("configmaps after losing a member: %v", names)
	}
}

// startEtcdCluster starts members etcd processes with TLS on loopback and
// returns their client URLs, processes and log files. Ports come from
// below the kernel's ephemeral range, so a parallel test's outgoing
// connection cannot take one between choosing and binding it.
func startEtcdCluster(t *testing.T, etcdBin, dir string, ca *testCA, members int) (clientURLs []string, procs []*exec.Cmd, logs []string) {
	t.Helper()
	ports := stablePorts(t, 3*members)
	clientURLs = make([]string, members)
	peerURLs := make([]string, members)
	var initial []string
	for i := range members {
		clientURLs[i] = fmt.Sprintf("https://127.0.0.1:%d", ports[3*i])
		peerURLs[i] = fmt.Sprintf("https://127.0.0.1:%d", ports[3*i+1])
		initial = append(initial, fmt.Sprintf("m%d=%s", i, peerURLs[i]))
	}
	procs = make([]*exec.Cmd, members)
	for i := range members {
		cert, key := ca.issue(t, fmt.Sprintf("member%d", i))
		logPath := filepath.Join(dir, fmt.Sprintf("m%d.log", i))
		logs = append(logs, logPath)
		log, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(etcdBin,
			"--name", fmt.Sprintf("m%d", i), "--data-dir", filepath.Join(dir, fmt.Sprintf("m%d", i)),
			"--listen-client-urls", clientURLs[i], "--advertise-client-urls", clientURLs[i],
			"--listen-peer-urls", peerURLs[i], "--initial-advertise-peer-urls", peerURLs[i],
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new", "--initial-cluster-token", "skiff-test",
			"--cert-file", cert, "--key-file", key, "--trusted-ca-file", filepath.Join(dir, "ca.crt"), "--client-cert-auth",
			"--peer-cert-file", cert, "--peer-key-file", key, "--peer-trusted-ca-file", filepath.Join(dir, "ca.crt"), "--peer-client-cert-auth",
			"--listen-metrics-urls", fmt.Sprintf("http://127.0.0.1:%d", ports[3*i+2]),
		)
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs[i] = cmd
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			log.Close()
		})
	}
	return clientURLs, procs, logs
}

// stablePorts returns n distinct free loopback ports between 20000 and
// 30000: below the ephemeral range and the NodePort range.
func stablePorts(t *testing.T, n int) []int {
	t.Helper()
	seen := map[int]bool{}
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 10000 {
			t.Fatal("no free loopback ports below the ephemeral range")
		}
		p := 20000 + int(randInt(t, 10000)) // below NodePorts (30000+) too
		if seen[p] {
			continue
		}
		seen[p] = true
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l.Close()
		ports = append(ports, p)
	}
	return ports
}

func randInt(t *testing.T, max int64) int64 {
	n, err := rand.Int(rand.Reader, big.NewInt(max))
	if err != nil {
		t.Fatal(err)
	}
	return n.Int64()
}

// waitEtcdMembers waits until every member answers a status request and
// all name the same leader, so that killing one leaves a quorum of two
// that are really connected.
func waitEtcdMembers(ctx context.Context, t *testing.T, info etcdclient.Info, urls, logs []string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		leaders := map[uint64]bool{}
		ok := true
		for _, u := range urls {
			one := info
			one.Endpoints = []string{u}
			cli, err := one.Connect(ctx)
			if err != nil {
				ok, last = false, fmt.Sprintf("%s: %v", u, err)
				break
			}
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			st, err := cli.Status(sctx, u)
			cancel()
			cli.Close()
			if err != nil || st.Leader == 0 {
				ok, last = false, fmt.Sprintf("%s: status %v %v", u, st, err)
				break
			}
			leaders[st.Leader] = true
		}
		if ok && len(leaders) == 1 {
			return
		}
		if ok {
			last = fmt.Sprintf("members name different leaders %v", leaders)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("the etcd cluster never had all members on one leader: %s\n%s", last, tails(logs))
}

// tails returns the last lines of each member's log.
func tails(logs []string) string {
	var b strings.Builder
	for _, p := range logs {
		data, _ := os.ReadFile(p)
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) > 8 {
			lines = lines[len(lines)-8:]
		}
		fmt.Fprintf(&b, "--- %s\n%s\n", filepath.Base(p), strings.Join(lines, "\n"))
	}
	return b.String()
}
