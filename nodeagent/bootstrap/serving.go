package bootstrap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/skiffhq/skiff/controlplane/pki"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// The serving certificate and key of a joined agent's API, beside its
// client credentials.
const (
	ServingCertFile = "serving.crt"
	ServingKeyFile  = "serving.key"
)

// Serving keeps the serving certificate of a joined agent's API (the
// kubelet API the API server calls for logs, exec and port-forward) as
// the kubelet's server TLS bootstrap does: issued by the cluster CA
// through a CSR for kubernetes.io/kubelet-serving made with the node's own
// credentials, for its name and the addresses its Node reports, which the
// server's approver checks. It is kept in Dir and reused across restarts
// while it chains to the cluster CA, names every current address and is
// not due; otherwise, and at 70–90% of its lifetime, a new one is asked
// for. Until the first is issued the API serves a self-signed placeholder,
// which the API server refuses, so logs and exec wait for the issued one.
type Serving struct {
	// Dir holds the certificate and key (Join's dir).
	Dir string
	// Node is the node's name.
	Node string
	// Config reaches the API as the node.
	Config *rest.Config
	// Roots verify the certificate: the cluster CA the agent trusts (its
	// kubeconfig's). A certificate of another CA (after a CA rotation) is
	// replaced.
	Roots *x509.CertPool
	// At returns when cert should be renewed (default RenewAt).
	At     func(cert *x509.Certificate) time.Time
	Logger *slog.Logger

	cur         atomic.Pointer[tls.Certificate]
	placeholder *tls.Certificate
}

// GetCertificate is the API's tls.Config.GetCertificate: the issued
// certificate, or the placeholder until there is one.
func (s *Serving) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := s.cur.Load(); c != nil {
		return c, nil
	}
	if s.placeholder == nil {
		return nil, errors.New("serving certificate: Start was not called")
	}
	return s.placeholder, nil
}

// Issued reports whether the API serves a certificate of the cluster CA.
func (s *Serving) Issued() bool { return s.cur.Load() != nil }

// Start makes the placeholder and keeps the certificate until ctx ends.
func (s *Serving) Start(ctx context.Context) error {
	if s.At == nil {
		s.At = RenewAt
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	c, err := pki.SelfSigned(s.Node, []string{s.Node}, nil, 24*time.Hour)
	if err != nil {
		return fmt.Errorf("serving certificate placeholder: %w", err)
	}
	s.placeholder = &c
	go s.run(ctx)
	return nil
}

func (s *Serving) run(ctx context.Context) {
	log := s.Logger.With("component", "serving-certificate", "node", s.Node)
	cs, err := kubernetes.NewForConfig(s.Config)
	if err != nil {
		log.Error("api client", "err", err)
		return
	}
	// The Node is registered moments after start: ask again soon, then
	// back off.
	const firstBackoff = 500 * time.Millisecond
	backoff := firstBackoff
	for {
		due, err := s.ensure(ctx, cs, log)
		if ctx.Err() != nil {
			return
		}
		wait := time.Until(due)
		if err != nil {
			log.Error("serving certificate not issued; retrying", "err", err, "in", backoff)
			wait, backoff = backoff, min(2*backoff, 5*time.Minute)
		} else {
			backoff = firstBackoff
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// ensure serves a valid certificate, from Dir or newly issued, and
// returns when it is due for renewal.
func (s *Serving) ensure(ctx context.Context, cs kubernetes.Interface, log *slog.Logger) (time.Time, error) {
	names, ips, err := s.addresses(ctx, cs)
	if err != nil {
		return time.Time{}, err
	}
	if cert, leaf, err := s.load(); err == nil && s.valid(leaf, names, ips) {
		if s.cur.Load() == nil || !s.cur.Load().Leaf.Equal(leaf) {
			s.cur.Store(cert)
			log.Info("serving certificate in use", "expires", leaf.NotAfter)
		}
		return s.At(leaf), nil
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	certPEM, keyPEM, err := request(rctx, s.Config, &x509.CertificateRequest{Subject: nodeSubject(s.Node), DNSNames: names, IPAddresses: ips},
		servingSigner, []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment, certificatesv1.UsageServerAuth})
	if err != nil {
		return time.Time{}, fmt.Errorf("request a serving certificate: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return time.Time{}, fmt.Errorf("issued serving certificate: %w", err)
	}
	if !s.valid(cert.Leaf, names, ips) {
		return time.Time{}, errors.New("the issued serving certificate does not verify with the cluster CA for this node's names")
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return time.Time{}, err
	}
	if err := pki.WriteFile(filepath.Join(s.Dir, ServingKeyFile), keyPEM, 0o600); err != nil {
		return time.Time{}, fmt.Errorf("serving key: %w", err)
	}
	if err := pki.WriteFile(filepath.Join(s.Dir, ServingCertFile), certPEM, 0o600); err != nil {
		return time.Time{}, fmt.Errorf("serving certificate: %w", err)
	}
	s.cur.Store(&cert)
	log.Info("serving certificate issued", "expires", cert.Leaf.NotAfter, "names", names, "ips", ips)
	return s.At(cert.Leaf), nil
}

// addresses are the names and IPs the certificate must hold: the node's
// name and the addresses of its Node, once the agent registered it.
func (s *Serving) addresses(ctx context.Context, cs kubernetes.Interface) ([]string, []net.IP, error) {
	gctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	node, err := cs.CoreV1().Nodes().Get(gctx, s.Node, metav1.GetOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("node %s: %w", s.Node, err)
	}
	names := []string{s.Node}
	var ips []net.IP
	for _, a := range node.Status.Addresses {
		switch a.Type {
		case corev1.NodeInternalIP, corev1.NodeExternalIP:
			if ip := net.ParseIP(a.Address); ip != nil && !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
		case corev1.NodeHostName, corev1.NodeInternalDNS, corev1.NodeExternalDNS:
			if !slices.Contains(names, a.Address) {
				names = append(names, a.Address)
			}
		}
	}
	if len(ips) == 0 {
		return nil, nil, fmt.Errorf("node %s reports no IP address yet", s.Node)
	}
	return names, ips, nil
}

// load reads the kept certificate and key.
func (s *Serving) load() (*tls.Certificate, *x509.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(s.Dir, ServingCertFile), filepath.Join(s.Dir, ServingKeyFile))
	if err != nil {
		return nil, nil, err
	}
	return &cert, cert.Leaf, nil
}

// valid reports whether leaf chains to the cluster CA for server
// authentication, holds every name and IP, and is not due for renewal.
func (s *Serving) valid(leaf *x509.Certificate, names []string, ips []net.IP) bool {
	if leaf == nil || !time.Now().Before(s.At(leaf)) {
		return false
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: s.Roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return false
	}
	for _, n := range names {
		if !slices.Contains(leaf.DNSNames, n) {
			return false
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(leaf.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}
