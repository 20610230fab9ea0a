// Package authn identifies the caller of an API request: x509 client
// certificates signed by the cluster CA (CN = user, O = groups), and a
// union that tries several authenticators in turn.
package authn

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skiffhq/skiff/controlplane/apiserver"
)

// GroupAuthenticated is added to every authenticated user, as upstream.
const GroupAuthenticated = "system:authenticated"

// X509 authenticates verified TLS client certificates.
type X509 struct {
	// Roots verifies the chain.
	Roots *x509.CertPool

	cache sync.Map // [32]byte → cacheEntry
	size  atomic.Int64
}

type cacheEntry struct {
	until time.Time
	err   error
}

const maxCachedCerts = 8192

func (a *X509) remember(key [32]byte, e cacheEntry) {
	if a.size.Add(1) > maxCachedCerts {
		a.cache.Clear()
		a.size.Store(1)
	}
	a.cache.Store(key, e)
}

var _ apiserver.Authenticator = (*X509)(nil)

// AuthenticateRequest implements apiserver.Authenticator.
func (a *X509) AuthenticateRequest(r *http.Request) (*apiserver.UserInfo, bool, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, false, nil
	}
	cert := r.TLS.PeerCertificates[0]
	if len(r.TLS.VerifiedChains) > 0 {
		// The TLS handshake already verified the chain for client auth.
		return userFromCert(cert)
	}
	// The server asks for certificates without verifying them in the
	// handshake (so a certificate from another CA gets a 401, as
	// upstream, not a TLS error); verification results are cached per
	// certificate, since verifying on every request cost ~40% of the
	// API's CPU in the benchmark.
	key := sha256.Sum256(cert.Raw)
	now := time.Now()
	if v, ok := a.cache.Load(key); ok {
		e := v.(cacheEntry)
		if now.Before(e.until) {
			if e.err != nil {
				return nil, false, e.err
			}
			return userFromCert(cert)
		}
	}
	opts := x509.VerifyOptions{
		Roots:         a.Roots,
		Intermediates: x509.NewCertPool(),
		CurrentTime:   time.Now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, c := range r.TLS.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := cert.Verify(opts); err != nil {
		verr := &VerifyError{Err: err}
		a.remember(key, cacheEntry{until: now.Add(time.Minute), err: verr})
		return nil, false, verr
	}
	until := now.Add(5 * time.Minute)
	if cert.NotAfter.Before(until) {
		until = cert.NotAfter
	}
	a.remember(key, cacheEntry{until: until})
	return userFromCert(cert)
}

// VerifyError is a client certificate that failed verification. Its
// message is deliberately generic (API clients see it); Unwrap gives the
// x509 reason (x509.CertificateInvalidError for an expired certificate,
// x509.UnknownAuthorityError for another CA) to callers that explain it,
// such as the dashboard's certificate login.
type VerifyError struct{ Err error }

func (e *VerifyError) Error() string { return "x509: client certificate verification failed" }

// Unwrap returns the x509 verification error.
func (e *VerifyError) Unwrap() error { return e.Err }

// userFromCert maps a verified certificate to a user: CN is the name and
// each O a group, as upstream.
func userFromCert(cert *x509.Certificate) (*apiserver.UserInfo, bool, error) {
	if cert.Subject.CommonName == "" {
		return nil, false, errors.New("x509: client certificate has no common name")
	}
	groups := append(append([]string{}, cert.Subject.Organization...), GroupAuthenticated)
	return &apiserver.UserInfo{Name: cert.Subject.CommonName, Groups: groups}, true, nil
}

// Union tries each authenticator in order; the first that recognises the
// credentials decides.
type Union []apiserver.Authenticator

// AuthenticateRequest implements apiserver.Authenticator.
func (u Union) AuthenticateRequest(r *http.Request) (*apiserver.UserInfo, bool, error) {
	var errs []error
	for _, a := range u {
		info, ok, err := a.AuthenticateRequest(r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ok {
			return info, true, nil
		}
	}
	return nil, false, errors.Join(errs...)
}
