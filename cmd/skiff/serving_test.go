package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/nodeagent/bootstrap"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// TestAgentServingCertificate: a joined agent gets the serving certificate
// of its API from the cluster CA through a kubelet-serving CSR made with
// its own credentials, for its name and the addresses its Node reports;
// it is kept and reused after a restart. Requests for an address the Node
// does not have, or by another node, are left unapproved.
func TestAgentServingCertificate(t *testing.T) {
	s := testserver.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	join := func(node string) (string, *kubernetes.Clientset) {
		t.Helper()
		tok, err := createToken(ctx, s.Client, time.Hour, "", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		path, err := bootstrap.Join(ctx, dir, s.URL(), joinToken(s.Config, tok), node)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			t.Fatal(err)
		}
		cs, err := kubernetes.NewForConfig(rc)
		if err != nil {
			t.Fatal(err)
		}
		// The node registers itself, as the agent does before it asks.
		if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}, {Type: corev1.NodeHostName, Address: node + "-host"},
			}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		return dir, cs
	}
	dir, _ := join("node-s")
	rc, err := clientcmd.BuildConfigFromFlags("", filepath.Join(dir, bootstrap.KubeconfigFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(s.Config.CAData)

	start := func() *bootstrap.Serving {
		t.Helper()
		runCtx, stop := context.WithCancel(ctx)
		t.Cleanup(stop)
		sv := &bootstrap.Serving{Dir: dir, Node: "node-s", Config: rc, Roots: roots}
		if err := sv.Start(runCtx); err != nil {
			t.Fatal(err)
		}
		return sv
	}
	sv := start()
	if c, err := sv.GetCertificate(nil); err != nil || len(c.Certificate) == 0 {
		t.Fatalf("no placeholder before issuance: %v", err)
	} else if p, err := x509.ParseCertificate(c.Certificate[0]); err != nil || (p.Subject.CommonName != "node-s" && p.Subject.CommonName != "system:node:node-s") {
		t.Fatalf("certificate before issuance: %v, %v", p, err)
	}
	for deadline := time.Now().Add(30 * time.Second); !sv.Issued(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no serving certificate issued")
		}
	}
	c, _ := sv.GetCertificate(nil)
	leaf := c.Leaf
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "node-s", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Fatalf("issued certificate does not verify as node-s's server: %v", err)
	}
	if leaf.Subject.CommonName != "system:node:node-s" || !slices.Equal(leaf.Subject.Organization, []string{"system:nodes"}) ||
		!slices.Contains(leaf.DNSNames, "node-s-host") || len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("issued certificate: CN %q O %v DNS %v IPs %v", leaf.Subject.CommonName, leaf.Subject.Organization, leaf.DNSNames, leaf.IPAddresses)
	}
	if slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		t.Fatal("the serving certificate also allows client authentication")
	}
	if fi, err := os.Stat(filepath.Join(dir, bootstrap.ServingKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("serving key file: %v, %v", fi, err)
	}

	// A restart reuses the kept certificate: no new CSR.
	before := countCSRs(t, s.Client, servingSigner)
	again := start()
	for deadline := time.Now().Add(10 * time.Second); !again.Issued(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the kept serving certificate was not loaded")
		}
	}
	if c2, _ := again.GetCertificate(nil); c2.Leaf.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Fatal("a restart replaced a valid serving certificate")
	}
	if n := countCSRs(t, s.Client, servingSigner); n != before {
		t.Fatalf("serving CSRs %d -> %d across a restart with a valid certificate", before, n)
	}

	// Another address than the Node's, or another node asking: left for
	// a human.
	_, other := join("node-o")
	foreignIP := servingCSR(t, "node-s", []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(127, 9, 9, 9)})
	byOther := servingCSR(t, "node-s", []net.IP{net.IPv4(127, 0, 0, 1)})
	nodeS, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range []struct {
		cs  kubernetes.Interface
		req []byte
	}{{nodeS, foreignIP}, {other, byOther}} {
		csr, err := c.cs.CertificatesV1().CertificateSigningRequests().Create(ctx, &certificatesv1.CertificateSigningRequest{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "serving-"},
			Spec: certificatesv1.CertificateSigningRequestSpec{Request: c.req, SignerName: servingSigner,
				Usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, csr.Name)
	}
	// A good request made after them is approved, so the approver has seen
	// them by then.
	good, err := nodeS.CertificatesV1().CertificateSigningRequests().Create(ctx, &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "serving-"},
		Spec: certificatesv1.CertificateSigningRequestSpec{Request: servingCSR(t, "node-s", []net.IP{net.IPv4(127, 0, 0, 1)}), SignerName: servingSigner,
			Usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		cur, err := s.Client.CertificatesV1().CertificateSigningRequests().Get(ctx, good.Name, metav1.GetOptions{})
		if err == nil && len(cur.Status.Certificate) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a valid serving request was not signed")
		}
	}
	time.Sleep(time.Second) // two workers: let the others finish too
	for _, name := range names {
		cur, err := s.Client.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(cur.Status.Conditions) > 0 || len(cur.Status.Certificate) > 0 {
			t.Fatalf("CSR %s by %s was approved or signed: %+v", name, cur.Spec.Username, cur.Status.Conditions)
		}
	}
}

func servingCSR(t *testing.T, node string, ips []net.IP) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}}, DNSNames: []string{node}, IPAddresses: ips}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func countCSRs(t *testing.T, cs kubernetes.Interface, signer string) int {
	t.Helper()
	l, err := cs.CertificatesV1().CertificateSigningRequests().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range l.Items {
		if c.Spec.SignerName == signer {
			n++
		}
	}
	return n
}

const servingSigner = "kubernetes.io/kubelet-serving"
