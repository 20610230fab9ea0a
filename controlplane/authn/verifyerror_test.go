package authn_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/authn"
	"github.com/skiffhq/skiff/controlplane/pki"
)

// TestX509VerifyErrorReason: a refused certificate's error keeps the
// generic message API clients see and unwraps to the x509 reason.
func TestX509VerifyErrorReason(t *testing.T) {
	ca, err := pki.LoadOrCreateCA(t.TempDir(), "ca", "cluster")
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.LoadOrCreateCA(t.TempDir(), "ca", "other")
	if err != nil {
		t.Fatal(err)
	}
	a := &authn.X509{Roots: ca.Pool()}
	auth := func(issuer *pki.CA, ttl time.Duration) error {
		t.Helper()
		certPEM, _, err := issuer.Issue("alice", []string{"devs"}, nil, nil, false, ttl)
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(certPEM)
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
		info, ok, err := a.AuthenticateRequest(r)
		if err == nil && (!ok || info.Name != "alice") {
			t.Fatalf("authenticated as %+v, %v", info, ok)
		}
		return err
	}
	if err := auth(ca, time.Hour); err != nil {
		t.Fatalf("valid certificate refused: %v", err)
	}
	for _, tc := range []struct {
		name   string
		issuer *pki.CA
		ttl    time.Duration
		is     func(error) bool
	}{
		{"expired", ca, -time.Minute, func(err error) bool {
			var inv x509.CertificateInvalidError
			return errors.As(err, &inv) && inv.Reason == x509.Expired
		}},
		{"other CA", other, time.Hour, func(err error) bool {
			var ua x509.UnknownAuthorityError
			return errors.As(err, &ua)
		}},
	} {
		err := auth(tc.issuer, tc.ttl)
		var verr *authn.VerifyError
		if !errors.As(err, &verr) || err.Error() != "x509: client certificate verification failed" || !tc.is(err) {
			t.Errorf("%s: got %v (%#v)", tc.name, err, err)
		}
	}
}
