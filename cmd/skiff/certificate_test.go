package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/pki"
)

// TestCertificateCheckOtherCA: after a CA rotation, a leaf the server did
// not reissue is reported as not signed by the cluster CA.
func TestCertificateCheckOtherCA(t *testing.T) {
	dir := t.TempDir()
	issue := func(name string) {
		ca, err := pki.LoadOrCreateCA(dir, "server-ca", "test-ca")
		if err != nil {
			t.Fatal(err)
		}
		certPEM, keyPEM, err := ca.IssueLeaf(pki.LeafSpec{Name: name, CN: name}, 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := pki.WriteLeafFiles(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"), certPEM, keyPEM); err != nil {
			t.Fatal(err)
		}
	}
	issue("client-stale")
	for _, f := range []string{"server-ca.crt", "server-ca.key"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	issue("client-fresh") // creates the new CA
	infos, err := readCerts(dir, pki.DefaultRenewBefore, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for _, i := range infos {
		status[i.Name] = i.Status
	}
	want := map[string]string{"server-ca": "ok", "client-fresh": "ok", "client-stale": "not signed by server-ca"}
	for name, w := range want {
		if status[name] != w {
			t.Errorf("%s: status %q, want %q (all: %v)", name, status[name], w, status)
		}
	}
}
