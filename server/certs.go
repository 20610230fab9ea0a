package server

import (
	"context"
	"fmt"

	"github.com/skiffhq/skiff/controlplane/pki"
	"k8s.io/client-go/rest"
)

// newRotator keeps the server's leaf certificates under <data-dir>/tls:
// the API serving certificate, the admin client certificate (and
// kubeconfig) and the client certificates of in-process components. See
// pki.Rotator and `skiff certificate`.
func (s *Server) newRotator(tlsDir string) *pki.Rotator {
	return &pki.Rotator{
		CA:          s.ca,
		Dir:         tlsDir,
		Lifetime:    s.cfg.CertLifetime,
		RenewBefore: s.cfg.CertRenewBefore,
		Logger:      s.cfg.Logger.With("component", "certificates"),
	}
}

// startCertRotation renews leaves before they expire and reloads those
// `skiff certificate rotate` rewrote, without a restart.
func (s *Server) startCertRotation(ctx context.Context) {
	for _, r := range []*pki.Rotator{s.certs, s.etcdCerts, s.frontProxyCerts} {
		if r == nil {
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			r.Run(ctx)
		}()
	}
}

// clientLeaf is the rotating client certificate of an in-process identity.
func (s *Server) clientLeaf(user string, groups []string) (*pki.Leaf, error) {
	l, err := s.certs.Leaf(pki.LeafSpec{Name: pki.ClientLeafName(user), CN: user, Orgs: groups})
	if err != nil {
		return nil, fmt.Errorf("client certificate of %s: %w", user, err)
	}
	return l, nil
}

// componentConfig is ComponentConfig's body: the certificate and key are
// files, which client-go reloads when they change (and closes connections
// made with the old certificate), as the kubelet's rotation does.
func (s *Server) componentConfig(user string, groups []string) (*rest.Config, error) {
	l, err := s.clientLeaf(user, groups)
	if err != nil {
		return nil, err
	}
	certFile, keyFile := l.Files()
	return &rest.Config{
		Host:            s.url,
		TLSClientConfig: rest.TLSClientConfig{CAData: s.ca.CertPEM, CertFile: certFile, KeyFile: keyFile},
		QPS:             -1,
		UserAgent:       "skiff/" + user,
	}, nil
}

// writeAdminKubeconfig writes the admin kubeconfig now and again whenever
// the admin certificate rotates (kubectl reads it on every run).
func (s *Server) writeAdminKubeconfig() error {
	l, err := s.clientLeaf("system:admin", []string{"system:masters"})
	if err != nil {
		return err
	}
	s.kubeconfig = s.cfg.WriteKubeconfig
	var werr error
	first := true
	l.OnChange(func(certPEM, keyPEM []byte) {
		err := pki.WriteKubeconfig(s.kubeconfig, s.url, "admin", s.ca.CertPEM, certPEM, keyPEM)
		if first {
			werr, first = err, false
		} else if err != nil {
			s.log.Error("rewrite admin kubeconfig", "path", s.kubeconfig, "err", err)
		}
	})
	return werr
}

// servingLeaf is the API server's rotating serving certificate.
func (s *Server) servingLeaf() (*pki.Leaf, error) {
	l, err := s.certs.Leaf(pki.LeafSpec{Name: "serving-kube-apiserver", CN: "skiff-apiserver", Hosts: servingHosts(), IPs: servingIPs(s.cfg), Server: true})
	if err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	return l, nil
}
