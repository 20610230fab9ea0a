package pki

import (
	"crypto/x509"
	"net"
	"testing"
	"time"
)

func TestSelfSigned(t *testing.T) {
	c, err := SelfSigned("skiff-dashboard", []string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "skiff-dashboard" {
		t.Errorf("CN %q", cert.Subject.CommonName)
	}
	if err := cert.VerifyHostname("localhost"); err != nil {
		t.Error(err)
	}
	if err := cert.VerifyHostname("127.0.0.1"); err != nil {
		t.Error(err)
	}
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("ext key usage %v, want server auth", cert.ExtKeyUsage)
	}
	now := time.Now()
	if !cert.NotBefore.Before(now) || cert.NotAfter.Before(now.Add(23*time.Hour)) || cert.NotAfter.After(now.Add(25*time.Hour)) {
		t.Errorf("valid %v to %v, want now to about 24 h from now", cert.NotBefore, cert.NotAfter)
	}
	other, err := SelfSigned("skiff-dashboard", nil, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	o, _ := x509.ParseCertificate(other.Certificate[0])
	if o.SerialNumber.Cmp(cert.SerialNumber) == 0 {
		t.Error("two certificates share a serial number")
	}
}
