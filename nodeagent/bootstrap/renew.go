package bootstrap

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/rest"
)

// Renewer renews the client certificate of a joined agent before it
// expires, as the kubelet's certificate rotation does: at a random point
// between 70% and 90% of its lifetime it asks for a new one through a
// CSR made with the node's own credentials, and replaces the files the
// kubeconfig names (client-go reloads them and closes its connections).
type Renewer struct {
	// Dir holds the kubeconfig, certificate and key (Join's dir).
	Dir string
	// Node is the node's name.
	Node string
	// Config reaches the API as the node (its kubeconfig).
	Config *rest.Config
	// At returns when cert should be renewed (default: 70–90% of its
	// lifetime, at random).
	At     func(cert *x509.Certificate) time.Time
	Logger *slog.Logger
}

// Joined reports whether dir holds credentials Join wrote (which the
// agent may replace), rather than a kubeconfig of the user's.
func Joined(dir, kubeconfig string) bool {
	if filepath.Clean(kubeconfig) != filepath.Join(dir, KubeconfigFile) {
		return false
	}
	_, err := os.Stat(filepath.Join(dir, CertFile))
	return err == nil
}

// RenewAt is the default renewal time: a random point between 70% and
// 90% of the certificate's lifetime.
func RenewAt(cert *x509.Certificate) time.Time {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return cert.NotBefore.Add(time.Duration(float64(life) * (0.7 + 0.2*rand.Float64())))
}

// Run renews the certificate whenever it is due, until ctx ends. A failed
// renewal is retried with backoff (from 10s up to 5 min) while the
// current certificate is still valid.
func (r *Renewer) Run(ctx context.Context) {
	if r.At == nil {
		r.At = RenewAt
	}
	if r.Logger == nil {
		r.Logger = slog.Default()
	}
	log := r.Logger.With("component", "certificate-renewal", "node", r.Node)
	backoff := 10 * time.Second
	for {
		wait := 5 * time.Minute
		if cert, err := r.Current(); err != nil {
			log.Error("reading the client certificate", "err", err)
		} else {
			wait = time.Until(r.At(cert))
			log.Info("client certificate renewal scheduled", "at", time.Now().Add(wait).Round(time.Second), "expires", cert.NotAfter)
		}
		if wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		if err := r.Renew(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Error("client certificate renewal failed; retrying", "err", err, "in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Minute)
			continue
		}
		backoff = 10 * time.Second
		if cert, err := r.Current(); err == nil {
			log.Info("client certificate renewed", "expires", cert.NotAfter)
		}
	}
}

// Current reads the certificate in use.
func (r *Renewer) Current() (*x509.Certificate, error) {
	b, err := os.ReadFile(filepath.Join(r.Dir, CertFile))
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("client certificate: not PEM")
	}
	return x509.ParseCertificate(block.Bytes)
}

// Renew gets a new certificate and key now and replaces the files.
func (r *Renewer) Renew(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	certPEM, keyPEM, err := Request(rctx, r.Config, r.Node)
	if err != nil {
		return fmt.Errorf("renew the client certificate: %w", err)
	}
	return writeCredentials(r.Dir, certPEM, keyPEM)
}
