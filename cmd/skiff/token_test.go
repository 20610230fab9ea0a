package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/authn"
	"github.com/skiffhq/skiff/controlplane/servertoken"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/nodeagent/bootstrap"
	authenticationv1 "k8s.io/api/authentication/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

func whoami(t *testing.T, rc *rest.Config) (*authenticationv1.UserInfo, error) {
	t.Helper()
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	r, err := cs.AuthenticationV1().SelfSubjectReviews().Create(context.Background(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	return &r.Status.UserInfo, nil
}

func tokenConfig(s *testserver.Server, token string) *rest.Config {
	return &rest.Config{Host: s.Config.Host, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAData: s.Config.CAData}}
}

func csrPEM(t *testing.T, cn string, orgs []string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn, Organization: orgs}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func TestNodeJoinWithBootstrapToken(t *testing.T) {
	s := testserver.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	now := time.Now()

	tok, err := createToken(ctx, s.Client, time.Hour, "for node-a", now)
	if err != nil {
		t.Fatal(err)
	}
	id, _, ok := authn.ParseBootstrapToken(tok)
	if !ok {
		t.Fatalf("token %q does not have the bootstrap format", tok)
	}
	var out bytes.Buffer
	if err := listTokens(ctx, s.Client, &out, now); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), tok) || !strings.Contains(out.String(), "for node-a") || !strings.Contains(out.String(), "authentication,signing") {
		t.Fatalf("token list:\n%s", out.String())
	}

	// The token authenticates as system:bootstrap:<id>.
	u, err := whoami(t, tokenConfig(s, tok))
	if err != nil {
		t.Fatalf("bootstrap token whoami: %v", err)
	}
	if u.Username != "system:bootstrap:"+id || !slices.Contains(u.Groups, "system:bootstrappers") || !slices.Contains(u.Groups, authn.BootstrapDefaultGroup) {
		t.Fatalf("bootstrap token user %+v", u)
	}

	// Join: the certificate authenticates as the node.
	certPEM, keyPEM, err := bootstrap.RequestClientCertificate(ctx, s.Config.Host, s.Config.CAData, tok, "node-a")
	if err != nil {
		t.Fatalf("join: %v", err)
	}
	nodeCfg := &rest.Config{Host: s.Config.Host, TLSClientConfig: rest.TLSClientConfig{CAData: s.Config.CAData, CertData: certPEM, KeyData: keyPEM}}
	u, err = whoami(t, nodeCfg)
	if err != nil {
		t.Fatalf("node whoami: %v", err)
	}
	if u.Username != "system:node:node-a" || !slices.Contains(u.Groups, "system:nodes") {
		t.Fatalf("node user %+v", u)
	}
	// The node renews its own certificate.
	if _, _, err := requestWith(ctx, t, nodeCfg, "system:node:node-a"); err != nil {
		t.Fatalf("renewal: %v", err)
	}

	// A bootstrap token may not ask another signer.
	tc, _ := kubernetes.NewForConfig(tokenConfig(s, tok))
	_, err = tc.CertificatesV1().CertificateSigningRequests().Create(ctx, &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "other-signer"},
		Spec: certificatesv1.CertificateSigningRequestSpec{Request: csrPEM(t, "system:node:node-a", []string{"system:nodes"}),
			SignerName: "kubernetes.io/kube-apiserver-client", Usages: []certificatesv1.KeyUsage{certificatesv1.UsageClientAuth}},
	}, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("CSR for another signer with a bootstrap token: err = %v, want Forbidden", err)
	}
	// ... nor get a non-node identity approved; spec.username is the requester's.
	for name, subj := range map[string][2]string{"admin-cn": {"system:admin", "system:masters"}, "node-wrong-org": {"system:node:node-b", "system:masters"}} {
		csr, err := tc.CertificatesV1().CertificateSigningRequests().Create(ctx, &certificatesv1.CertificateSigningRequest{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: certificatesv1.CertificateSigningRequestSpec{Request: csrPEM(t, subj[0], []string{subj[1]}),
				SignerName: "kubernetes.io/kube-apiserver-client-kubelet", Usages: []certificatesv1.KeyUsage{certificatesv1.UsageClientAuth},
				Username: "system:node:node-b", Groups: []string{"system:nodes"}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if csr.Spec.Username != "system:bootstrap:"+id {
			t.Fatalf("spec.username = %q, want the requester", csr.Spec.Username)
		}
	}
	// Give the approver time, and prove it ran by a valid request going through.
	if _, _, err := bootstrap.RequestClientCertificate(ctx, s.Config.Host, s.Config.CAData, tok, "node-c"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"admin-cn", "node-wrong-org"} {
		csr, err := s.Client.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(csr.Status.Conditions) != 0 || len(csr.Status.Certificate) != 0 {
			t.Fatalf("CSR %s was acted on: %+v", name, csr.Status)
		}
	}

	// Expired, tampered and malformed tokens get 401.
	expiredID := "exp123"
	if _, err := s.Client.CoreV1().Secrets("kube-system").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "bootstrap-token-" + expiredID},
		Type:       authn.BootstrapTokenSecretType,
		Data: map[string][]byte{"token-id": []byte(expiredID), "token-secret": []byte("0123456789abcdef"),
			"usage-bootstrap-authentication": []byte("true"), "expiration": []byte(now.Add(-time.Minute).UTC().Format(time.RFC3339))},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tampered := tok[:len(tok)-1] + string("ab"[0+boolInt(tok[len(tok)-1] == 'a')])
	for name, bad := range map[string]string{"expired": expiredID + ".0123456789abcdef", "tampered": tampered, "malformed": "abc.def"} {
		if _, err := whoami(t, tokenConfig(s, bad)); !apierrors.IsUnauthorized(err) {
			t.Errorf("%s token: err = %v, want 401", name, err)
		}
	}
	// The token cleaner deletes the expired token.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := s.Client.CoreV1().Secrets("kube-system").Get(ctx, "bootstrap-token-"+expiredID, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("expired token not cleaned up: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Delete: the token stops working and leaves the list.
	if err := deleteToken(ctx, s.Client, tok); err != nil {
		t.Fatal(err)
	}
	// Authentication reads the watch cache, as upstream reads an informer:
	// the deletion takes effect once the cache has seen it.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, err := whoami(t, tokenConfig(s, tok))
		if apierrors.IsUnauthorized(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deleted token: err = %v, want 401", err)
		}
	}
	out.Reset()
	if err := listTokens(ctx, s.Client, &out, now); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), id) {
		t.Fatalf("deleted token still listed:\n%s", out.String())
	}
	if err := deleteToken(ctx, s.Client, id); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("second delete: %v", err)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// requestWith creates a kubelet-client CSR as rc's user and waits for it to be signed.
func requestWith(ctx context.Context, t *testing.T, rc *rest.Config, cn string) (*certificatesv1.CertificateSigningRequest, []byte, error) {
	t.Helper()
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, nil, err
	}
	csr, err := cs.CertificatesV1().CertificateSigningRequests().Create(ctx, &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "renew-"},
		Spec: certificatesv1.CertificateSigningRequestSpec{Request: csrPEM(t, cn, []string{"system:nodes"}),
			SignerName: "kubernetes.io/kube-apiserver-client-kubelet", Usages: []certificatesv1.KeyUsage{certificatesv1.UsageClientAuth, certificatesv1.UsageDigitalSignature}},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, nil, err
	}
	for {
		cur, err := cs.CertificatesV1().CertificateSigningRequests().Get(ctx, csr.Name, metav1.GetOptions{})
		if err != nil {
			return nil, nil, err
		}
		if len(cur.Status.Certificate) > 0 {
			block, _ := pem.Decode(cur.Status.Certificate)
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, nil, err
			}
			if cert.Subject.CommonName != cn {
				t.Fatalf("renewed certificate CN %q", cert.Subject.CommonName)
			}
			return cur, cur.Status.Certificate, nil
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// TestAgentJoinToken: `skiff token create` prints a join token carrying the
// cluster CA's hash; an agent joining with it checks the server by that
// hash, has its node certificate signed and keeps the kubeconfig, so a
// restart needs no token. A wrong hash, a bare bootstrap token or a
// deleted token are refused and write nothing.
func TestAgentJoinToken(t *testing.T) {
	s := testserver.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tok, err := createToken(ctx, s.Client, time.Hour, "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	join := joinToken(s.Config, tok)
	nt, err := servertoken.ParseNode(join)
	if err != nil || nt.Bootstrap != tok || !nt.MatchesCA(s.Config.CAData) {
		t.Fatalf("join token %q: %+v, %v", join, nt, err)
	}
	if id, _, _ := authn.ParseBootstrapToken(tok); tokenID(join) != id {
		t.Fatalf("tokenID(%q) = %q, want %q", join, tokenID(join), id)
	}

	empty := func(dir string) {
		t.Helper()
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Fatalf("a refused join wrote %v", left)
		}
	}
	dir := t.TempDir()
	wrongCA := servertoken.NodeToken{CAHash: strings.Repeat("0", 64), Bootstrap: tok}.String()
	if _, err := bootstrap.Join(ctx, dir, s.URL(), wrongCA, "node-j"); err == nil || !strings.Contains(err.Error(), "is not the one the token names") {
		t.Fatalf("join with a wrong CA hash: %v", err)
	}
	empty(dir)
	if _, err := bootstrap.Join(ctx, dir, s.URL(), tok, "node-j"); !errors.Is(err, servertoken.ErrNodeFormat) {
		t.Fatalf("join with a bare bootstrap token: %v", err)
	}
	empty(dir)

	path, err := bootstrap.Join(ctx, dir, s.URL(), join, "node-j")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("kubeconfig %s: %v, %v", path, fi, err)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	u, err := whoami(t, rc)
	if err != nil || u.Username != "system:node:node-j" || !slices.Contains(u.Groups, "system:nodes") {
		t.Fatalf("joined agent is %+v (%v), want system:node:node-j", u, err)
	}
	// The credentials are files the kubeconfig names, which the agent
	// renews with its own identity: a new key and certificate, still the
	// node's, picked up by a client made from the kubeconfig.
	if !bootstrap.Joined(dir, path) || bootstrap.Joined(dir, filepath.Join(t.TempDir(), "kubeconfig")) {
		t.Fatal("Joined does not tell the join's kubeconfig from another")
	}
	r := &bootstrap.Renewer{Dir: dir, Node: "node-j", Config: rc}
	before, err := r.Current()
	if err != nil {
		t.Fatal(err)
	}
	if at := bootstrap.RenewAt(before); at.Before(before.NotBefore.Add(before.NotAfter.Sub(before.NotBefore)*7/10)) || at.After(before.NotAfter) {
		t.Fatalf("renewal scheduled at %v for a certificate of %v to %v", at, before.NotBefore, before.NotAfter)
	}
	keyBefore, _ := os.ReadFile(filepath.Join(dir, bootstrap.KeyFile))
	runCtx, stopRun := context.WithCancel(ctx)
	first := true
	r.At = func(*x509.Certificate) time.Time {
		if first {
			first = false
			return time.Now()
		}
		return time.Now().Add(time.Hour)
	}
	runDone := make(chan struct{})
	go func() { defer close(runDone); r.Run(runCtx) }()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if cur, err := r.Current(); err == nil && cur.SerialNumber.Cmp(before.SerialNumber) != 0 {
			if cur.Subject.CommonName != "system:node:node-j" {
				t.Fatalf("renewed certificate for %q", cur.Subject.CommonName)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the certificate was not renewed")
		}
	}
	stopRun()
	<-runDone
	if keyAfter, _ := os.ReadFile(filepath.Join(dir, bootstrap.KeyFile)); bytes.Equal(keyAfter, keyBefore) {
		t.Fatal("the renewal kept the old key")
	}
	rc2, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	if u, err := whoami(t, rc2); err != nil || u.Username != "system:node:node-j" {
		t.Fatalf("after renewal the agent is %+v (%v)", u, err)
	}

	// A restart keeps its credentials: no token needed, none used.
	if again, err := bootstrap.Join(ctx, dir, s.URL(), "", "node-j"); err != nil || again != path {
		t.Fatalf("join after a join: %q, %v", again, err)
	}

	// A deleted token joins no one.
	if err := deleteToken(ctx, s.Client, join); err != nil {
		t.Fatal(err)
	}
	// (The authenticator reads the watch cache: wait until it has seen
	// the deletion.)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := whoami(t, tokenConfig(s, tok)); apierrors.IsUnauthorized(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the deleted token still authenticates")
		}
	}
	other := t.TempDir()
	short, cancelShort := context.WithTimeout(ctx, 20*time.Second)
	defer cancelShort()
	if _, err := bootstrap.Join(short, other, s.URL(), join, "node-k"); err == nil {
		t.Fatal("a deleted token joined")
	}
	empty(other)
}
