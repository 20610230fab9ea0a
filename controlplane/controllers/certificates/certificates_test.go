package certificates

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"net/url"
	"strings"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func servingRequest(t *testing.T, tmpl x509.CertificateRequest, usages ...certificatesv1.KeyUsage) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return &certificatesv1.CertificateSigningRequest{Spec: certificatesv1.CertificateSigningRequestSpec{
		Request: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), SignerName: KubeletServingSigner, Usages: usages}}
}

func TestValidateNodeServingRequest(t *testing.T) {
	node := pkix.Name{CommonName: "system:node:n1", Organization: []string{NodesGroup}}
	ip := []net.IP{net.IPv4(10, 0, 0, 5)}
	server := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment, certificatesv1.UsageServerAuth}
	if name, req, err := ValidateNodeServingRequest(servingRequest(t, x509.CertificateRequest{Subject: node, DNSNames: []string{"n1"}, IPAddresses: ip}, server...)); err != nil || name != "n1" || len(req.IPAddresses) != 1 {
		t.Fatalf("valid serving request: %q, %v", name, err)
	}
	for _, c := range []struct {
		name   string
		tmpl   x509.CertificateRequest
		usages []certificatesv1.KeyUsage
		want   string
	}{
		{"no SANs", x509.CertificateRequest{Subject: node}, server, "at least one DNS name or IP"},
		{"email SAN", x509.CertificateRequest{Subject: node, IPAddresses: ip, EmailAddresses: []string{"a@b"}}, server, "email and URI"},
		{"URI SAN", x509.CertificateRequest{Subject: node, IPAddresses: ip, URIs: []*url.URL{{Scheme: "spiffe", Host: "x"}}}, server, "email and URI"},
		{"client auth", x509.CertificateRequest{Subject: node, IPAddresses: ip}, []certificatesv1.KeyUsage{certificatesv1.UsageServerAuth, certificatesv1.UsageClientAuth}, `usage "client auth"`},
		{"no server auth", x509.CertificateRequest{Subject: node, IPAddresses: ip}, []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature}, `must include "server auth"`},
		{"not a node", x509.CertificateRequest{Subject: pkix.Name{CommonName: "admin", Organization: []string{NodesGroup}}, IPAddresses: ip}, server, "common name"},
		{"extra group", x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:n1", Organization: []string{NodesGroup, "system:masters"}}, IPAddresses: ip}, server, "organization"},
	} {
		if _, _, err := ValidateNodeServingRequest(servingRequest(t, c.tmpl, c.usages...)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
	// A client request's rules are unchanged: no SANs at all.
	if _, _, err := ValidateNodeClientRequest(servingRequest(t, x509.CertificateRequest{Subject: node, IPAddresses: ip}, certificatesv1.UsageClientAuth)); err == nil {
		t.Error("a client request with an IP SAN was accepted")
	}
}

func TestForeignSANs(t *testing.T) {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: "10.0.0.5"}, {Type: corev1.NodeHostName, Address: "host-1"}, {Type: corev1.NodeInternalIP, Address: "fd00::5"},
	}}}
	for _, c := range []struct {
		dns  []string
		ips  []net.IP
		want string
	}{
		{[]string{"n1", "host-1"}, []net.IP{net.ParseIP("10.0.0.5"), net.ParseIP("fd00:0::5")}, ""},
		{[]string{"n1", "n2"}, nil, "n2"},
		{[]string{"n1"}, []net.IP{net.ParseIP("10.0.0.6")}, "10.0.0.6"},
	} {
		if got := foreignSANs(n, &x509.CertificateRequest{DNSNames: c.dns, IPAddresses: c.ips}); got != c.want {
			t.Errorf("foreignSANs(%v, %v) = %q, want %q", c.dns, c.ips, got, c.want)
		}
	}
}
