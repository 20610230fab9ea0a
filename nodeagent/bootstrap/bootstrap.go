// Package bootstrap lets a node join: it exchanges a bootstrap token for
// the node's own client certificate (CN system:node:<name>, O system:nodes)
// through a CertificateSigningRequest for the signer
// kubernetes.io/kube-apiserver-client-kubelet, as the kubelet's TLS
// bootstrap does.
package bootstrap

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// RequestClientCertificate creates a key and a CSR for node nodeName,
// authenticating with the bootstrap token, and waits until the request is
// approved and signed. serverURL is the API server, caPEM the cluster CA
// that verifies it.
func RequestClientCertificate(ctx context.Context, serverURL string, caPEM []byte, token, nodeName string) (certPEM, keyPEM []byte, err error) {
	return Request(ctx, &rest.Config{
		Host:            serverURL,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: caPEM},
		UserAgent:       "skiff-node-bootstrap",
	}, nodeName)
}

// Request creates a key and a CSR for node nodeName through rc (a
// bootstrap token's credentials, or the node's own to renew) and waits
// until the request is approved and signed.
func Request(ctx context.Context, rc *rest.Config, nodeName string) (certPEM, keyPEM []byte, err error) {
	if nodeName == "" {
		return nil, nil, errors.New("node name is required")
	}
	return request(ctx, rc, &x509.CertificateRequest{Subject: nodeSubject(nodeName)}, clientSigner,
		[]certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth})
}

const (
	clientSigner  = "kubernetes.io/kube-apiserver-client-kubelet"
	servingSigner = "kubernetes.io/kubelet-serving"
)

// nodeSubject is the subject of every certificate of a node: its user and
// group.
func nodeSubject(nodeName string) pkix.Name {
	return pkix.Name{CommonName: "system:node:" + nodeName, Organization: []string{"system:nodes"}}
}

// request creates a key and a CSR of tmpl for signer through rc and waits
// until the request is approved and signed.
func request(ctx context.Context, rc *rest.Config, tmpl *x509.CertificateRequest, signer string, usages []certificatesv1.KeyUsage) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate request: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode key: %w", err)
	}
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, nil, fmt.Errorf("api client: %w", err)
	}
	csr, err := cs.CertificatesV1().CertificateSigningRequests().Create(ctx, &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "node-csr-"},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: signer,
			Usages:     usages,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate signing request: %w", err)
	}
	err = wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		cur, err := cs.CertificatesV1().CertificateSigningRequests().Get(ctx, csr.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, fmt.Errorf("certificate signing request %s was deleted", csr.Name)
		}
		if err != nil {
			return false, nil // transient; keep polling until ctx ends
		}
		for _, c := range cur.Status.Conditions {
			switch c.Type {
			case certificatesv1.CertificateDenied:
				return false, fmt.Errorf("certificate signing request %s was denied: %s", csr.Name, c.Message)
			case certificatesv1.CertificateFailed:
				return false, fmt.Errorf("certificate signing request %s failed: %s", csr.Name, c.Message)
			}
		}
		if len(cur.Status.Certificate) > 0 {
			certPEM = cur.Status.Certificate
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("wait for certificate %s: %w", csr.Name, err)
	}
	return certPEM, keyPEM, nil
}
