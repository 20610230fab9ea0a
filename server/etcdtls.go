package server

import (
	"fmt"
	"net"
	"path/filepath"
	"slices"

	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/controlplane/storage"
)

// EtcdTLSDir is where the embedded etcd's CA and certificates live,
// relative to the data directory. The etcd CA is its own (as k3s keeps
// one): a certificate of the cluster CA (a node's, a user's) does not open
// etcd.
const EtcdTLSDir = "tls/etcd"

// etcdTLS is the mutual TLS of the embedded etcd: a CA, the member's
// serving and peer certificates, and the client certificate of the
// operator commands (the server itself uses the in-process client).
type etcdTLS struct {
	caFile               string
	server, peer, client *pki.Leaf
}

// newEtcdTLS loads or creates the embedded etcd's certificates under
// <data-dir>/tls/etcd, renewed by s.etcdCerts like the server's own.
func (s *Server) newEtcdTLS() (*etcdTLS, error) {
	dir := filepath.Join(s.cfg.DataDir, EtcdTLSDir)
	ca, err := pki.LoadOrCreateCA(dir, "etcd-ca", "skiff-etcd-ca")
	if err != nil {
		return nil, fmt.Errorf("etcd CA: %w", err)
	}
	s.etcdCerts = &pki.Rotator{CA: ca, Dir: dir, Lifetime: s.cfg.CertLifetime, RenewBefore: s.cfg.CertRenewBefore,
		Logger: s.cfg.Logger.With("component", "certificates", "ca", "etcd-ca")}
	loopback := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	if s.ha != nil {
		// Peers of an HA cluster reach the member at the advertise address.
		// (Any address but the two already named: servers on one
		// machine may advertise 127.0.0.2 and up.)
		if ip := net.ParseIP(s.advertiseAddress()); ip != nil && !slices.ContainsFunc(loopback, ip.Equal) {
			loopback = append(loopback, ip)
		}
	}
	t := &etcdTLS{caFile: filepath.Join(dir, "etcd-ca.crt")}
	for _, l := range []struct {
		leaf **pki.Leaf
		spec pki.LeafSpec
	}{
		{&t.server, pki.LeafSpec{Name: "etcd-server", CN: "etcd-server", Hosts: []string{"localhost"}, IPs: loopback, Server: true}},
		{&t.peer, pki.LeafSpec{Name: "etcd-peer", CN: "etcd-peer", Hosts: []string{"localhost"}, IPs: loopback, Peer: true}},
		{&t.client, pki.LeafSpec{Name: "etcd-client-apiserver", CN: "skiff-apiserver"}},
	} {
		if *l.leaf, err = s.etcdCerts.Leaf(l.spec); err != nil {
			return nil, fmt.Errorf("etcd certificate %s: %w", l.spec.Name, err)
		}
	}
	return t, nil
}

func (t *etcdTLS) files(l *pki.Leaf) *storage.TLSFiles {
	cert, key := l.Files()
	return &storage.TLSFiles{CertFile: cert, KeyFile: key, TrustedCAFile: t.caFile}
}
