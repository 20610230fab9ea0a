package apiserver_test

import (
	"crypto/tls"
	"crypto/x509"
	"testing"

	"github.com/skiffhq/skiff/internal/testserver"
)

// mustTLS returns a TLS config that trusts the server but presents no
// client certificate.
func mustTLS(t *testing.T, s *testserver.Server) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.Config.TLSClientConfig.CAData) {
		t.Fatal("no CA data in admin config")
	}
	return &tls.Config{RootCAs: pool}
}
