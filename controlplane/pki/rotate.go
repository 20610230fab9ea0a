package pki

import (
	"bytes"
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
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of the leaf certificates' life: a year, renewed when less than
// a quarter (about 91 days, k3s renews within 90) remains.
const (
	DefaultLeafLifetime = 365 * 24 * time.Hour
	DefaultRenewBefore  = 0.25
)

// LeafSpec describes a leaf certificate a server owns. Its files are
// <dir>/<Name>.crt and .key.
type LeafSpec struct {
	Name   string
	CN     string
	Orgs   []string
	Hosts  []string
	IPs    []net.IP
	Server bool
	// Peer: both server and client authentication (etcd peers).
	Peer bool
}

// ClientLeafName is the file name of the client certificate of user.
func ClientLeafName(user string) string {
	r := strings.NewReplacer(":", "-", "/", "-", "@", "-")
	return "client-" + r.Replace(user)
}

// Rotator keeps leaf certificates fresh: each one is renewed (new key, same
// subject and SANs) once less than RenewBefore of its lifetime remains,
// and reloaded when its files change on disk (`skiff certificate rotate`).
// Users read the current certificate on every TLS handshake
// (GetCertificate, GetClientCertificate) or reload the files (client-go
// does for kubeconfigs and rest.Configs that name files), so nothing
// restarts.
type Rotator struct {
	CA  *CA
	Dir string
	// Lifetime of issued leaves (default DefaultLeafLifetime).
	Lifetime time.Duration
	// RenewBefore is the fraction of a leaf's lifetime left at which it is
	// renewed (default DefaultRenewBefore).
	RenewBefore float64
	Logger      *slog.Logger

	mu     sync.Mutex
	leaves map[string]*Leaf
}

// Leaf is one certificate kept by a Rotator.
type Leaf struct {
	spec     LeafSpec
	r        *Rotator
	certFile string
	keyFile  string
	cur      atomic.Pointer[leafState]
	onChange []func(certPEM, keyPEM []byte)
}

type leafState struct {
	pair    *tls.Certificate
	cert    *x509.Certificate
	certPEM []byte
	keyPEM  []byte
}

func (r *Rotator) lifetime() time.Duration {
	if r.Lifetime > 0 {
		return r.Lifetime
	}
	return DefaultLeafLifetime
}

func (r *Rotator) renewBefore() float64 {
	if r.RenewBefore > 0 && r.RenewBefore < 1 {
		return r.RenewBefore
	}
	return DefaultRenewBefore
}

// Leaf returns the leaf of spec.Name, loading it from disk when its files
// are valid for spec (signed by the CA, same subject, covering the SANs,
// not due) and issuing it otherwise.
func (r *Rotator) Leaf(spec LeafSpec) (*Leaf, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if l, ok := r.leaves[spec.Name]; ok {
		if l.spec.CN != spec.CN || !slices.Equal(l.spec.Orgs, spec.Orgs) || l.spec.Server != spec.Server || l.spec.Peer != spec.Peer {
			return nil, fmt.Errorf("certificate %s: asked for again with another subject", spec.Name)
		}
		return l, nil
	}
	l := &Leaf{spec: spec, r: r, certFile: filepath.Join(r.Dir, spec.Name+".crt"), keyFile: filepath.Join(r.Dir, spec.Name+".key")}
	if st, err := loadLeaf(l.certFile, l.keyFile); err == nil && r.fits(st.cert, spec) && !Due(st.cert, r.renewBefore(), time.Now()) {
		l.cur.Store(st)
	} else if err := l.renew(); err != nil {
		return nil, err
	}
	if r.leaves == nil {
		r.leaves = map[string]*Leaf{}
	}
	r.leaves[spec.Name] = l
	return l, nil
}

func (r *Rotator) fits(c *x509.Certificate, spec LeafSpec) bool {
	return c.CheckSignatureFrom(r.CA.Cert) == nil && c.Subject.CommonName == spec.CN &&
		slices.Equal(c.Subject.Organization, spec.Orgs) && covers(c, spec.Hosts, spec.IPs)
}

// Due reports whether less than fraction of c's lifetime remains at now.
func Due(c *x509.Certificate, fraction float64, now time.Time) bool {
	life := c.NotAfter.Sub(c.NotBefore)
	return c.NotAfter.Sub(now) < time.Duration(fraction*float64(life))
}

// Files returns the certificate and key paths (for rest.Config's
// CertFile/KeyFile, which client-go reloads when they change).
func (l *Leaf) Files() (certFile, keyFile string) { return l.certFile, l.keyFile }

// Certificate is the current certificate.
func (l *Leaf) Certificate() *x509.Certificate { return l.cur.Load().cert }

// PEM returns the current certificate and key.
func (l *Leaf) PEM() (certPEM, keyPEM []byte) {
	st := l.cur.Load()
	return st.certPEM, st.keyPEM
}

// GetCertificate serves the current certificate (tls.Config.GetCertificate).
func (l *Leaf) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return l.cur.Load().pair, nil
}

// GetClientCertificate presents the current certificate
// (tls.Config.GetClientCertificate).
func (l *Leaf) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return l.cur.Load().pair, nil
}

// OnChange calls f with the new certificate after every renewal or reload
// (for copies elsewhere, such as the admin kubeconfig) and once now.
func (l *Leaf) OnChange(f func(certPEM, keyPEM []byte)) {
	l.r.mu.Lock()
	l.onChange = append(l.onChange, f)
	l.r.mu.Unlock()
	f(l.PEM())
}

// renew issues a new certificate for the spec and writes it.
func (l *Leaf) renew() error {
	certPEM, keyPEM, err := l.r.CA.IssueLeaf(l.spec, l.r.lifetime())
	if err != nil {
		return fmt.Errorf("issue %s: %w", l.spec.Name, err)
	}
	if err := WriteLeafFiles(l.certFile, l.keyFile, certPEM, keyPEM); err != nil {
		return fmt.Errorf("write %s: %w", l.spec.Name, err)
	}
	return l.set(certPEM, keyPEM)
}

func (l *Leaf) set(certPEM, keyPEM []byte) error {
	st, err := parseLeaf(certPEM, keyPEM)
	if err != nil {
		return err
	}
	l.cur.Store(st)
	return nil
}

// Check renews the leaves that are due and reloads those whose files
// changed. It returns the names of the leaves that changed.
func (r *Rotator) Check(now time.Time) ([]string, error) {
	r.mu.Lock()
	leaves := make([]*Leaf, 0, len(r.leaves))
	for _, l := range r.leaves {
		leaves = append(leaves, l)
	}
	r.mu.Unlock()
	var changed []string
	var errs []error
	for _, l := range leaves {
		cur := l.cur.Load()
		// A file that does not parse may be half written by `skiff
		// certificate rotate` (key first, then certificate): next round.
		switch st, err := loadLeaf(l.certFile, l.keyFile); {
		case err == nil && !bytes.Equal(st.certPEM, cur.certPEM) && r.fits(st.cert, l.spec) && !Due(st.cert, r.renewBefore(), now):
			l.cur.Store(st) // rotated on disk (skiff certificate rotate)
		case Due(cur.cert, r.renewBefore(), now):
			if err := l.renew(); err != nil {
				errs = append(errs, err)
				continue
			}
		default:
			continue
		}
		changed = append(changed, l.spec.Name)
		r.mu.Lock()
		hooks := slices.Clone(l.onChange)
		r.mu.Unlock()
		certPEM, keyPEM := l.PEM()
		for _, f := range hooks {
			f(certPEM, keyPEM)
		}
	}
	slices.Sort(changed)
	return changed, errors.Join(errs...)
}

// Interval is how often Run checks: an eighth of the renewal window,
// between a second and a minute.
func (r *Rotator) Interval() time.Duration {
	d := time.Duration(r.renewBefore() * float64(r.lifetime()) / 8)
	return min(max(d, time.Second), time.Minute)
}

// Run checks the leaves every Interval until ctx ends.
func (r *Rotator) Run(ctx context.Context) {
	log := r.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(r.Interval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			changed, err := r.Check(now)
			if len(changed) > 0 {
				log.Info("certificates rotated", "names", changed)
			}
			if err != nil {
				log.Error("certificate rotation", "err", err)
			}
		}
	}
}

// IssueLeaf signs a new key pair for spec valid for ttl. NotBefore is
// backdated by a tenth of ttl (at most an hour) for clock skew.
func (ca *CA) IssueLeaf(spec LeafSpec, ttl time.Duration) (certPEM, keyPEM []byte, err error) {
	return ca.issue(spec.CN, spec.Orgs, spec.Hosts, spec.IPs, extKeyUsage(spec.Server, spec.Peer), ttl, min(ttl/10, time.Hour))
}

// SpecOf recovers the spec a certificate was issued for.
func SpecOf(name string, c *x509.Certificate) LeafSpec {
	server := slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	peer := server && slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	return LeafSpec{Name: name, CN: c.Subject.CommonName, Orgs: c.Subject.Organization, Hosts: c.DNSNames, IPs: c.IPAddresses, Server: server && !peer, Peer: peer}
}

// RenewFiles reissues the leaf in certFile/keyFile with the same subject,
// SANs and lifetime (`skiff certificate rotate`; a running server reloads
// the files).
func (ca *CA) RenewFiles(certFile, keyFile string) (*x509.Certificate, error) {
	st, err := loadLeaf(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	old := st.cert
	ttl := old.NotAfter.Sub(old.NotBefore)
	ttl -= min(ttl/11, time.Hour) // undo IssueLeaf's backdating
	name := strings.TrimSuffix(filepath.Base(certFile), ".crt")
	certPEM, keyPEM, err := ca.IssueLeaf(SpecOf(name, old), ttl)
	if err != nil {
		return nil, err
	}
	if err := WriteLeafFiles(certFile, keyFile, certPEM, keyPEM); err != nil {
		return nil, err
	}
	nst, err := parseLeaf(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return nst.cert, nil
}

// WriteLeafFiles writes key then certificate, each atomically. A reader
// that sees the new certificate with the old key fails to pair them and
// retries on its next check.
func WriteLeafFiles(certFile, keyFile string, certPEM, keyPEM []byte) error {
	if err := os.MkdirAll(filepath.Dir(certFile), 0o700); err != nil {
		return err
	}
	if err := WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return err
	}
	return WriteFile(certFile, certPEM, 0o644)
}

func loadLeaf(certFile, keyFile string) (*leafState, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	return parseLeaf(certPEM, keyPEM)
}

func parseLeaf(certPEM, keyPEM []byte) (*leafState, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	c, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, err
	}
	pair.Leaf = c
	return &leafState{pair: &pair, cert: c, certPEM: certPEM, keyPEM: keyPEM}, nil
}
