package server

import (
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/controlplane/servertoken"
)

// TestServerTokenAfterCARotation: when the first server of an HA cluster
// starts with a new cluster CA (controlplane/pki/README.md's "CA
// rotation"), its token carries the new CA's hash and keeps its secret,
// so the other servers' --token changes only in its hash.
func TestServerTokenAfterCARotation(t *testing.T) {
	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	newServer := func(caName string) *Server {
		ca, err := pki.LoadOrCreateCA(tlsDir, caName, "test-ca")
		if err != nil {
			t.Fatal(err)
		}
		return &Server{cfg: Config{DataDir: dir, ClusterInit: true}, ca: ca, ha: &haState{}, log: slog.New(slog.DiscardHandler)}
	}
	first := newServer("old-ca")
	if err := first.ensureServerToken(); err != nil {
		t.Fatal(err)
	}
	before, err := servertoken.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !before.MatchesCA(first.ca.CertPEM) {
		t.Fatal("the first token does not carry the CA's hash")
	}

	rotated := newServer("new-ca")
	if err := rotated.ensureServerToken(); err != nil {
		t.Fatal(err)
	}
	after, err := servertoken.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !after.MatchesCA(rotated.ca.CertPEM) || after != rotated.ha.token {
		t.Fatalf("after rotation the token %s does not carry the new CA's hash", after)
	}
	if after.Secret != before.Secret {
		t.Fatalf("the secret changed with the CA: %s, was %s", after.Secret, before.Secret)
	}

	// An unchanged CA leaves the token alone.
	again := newServer("new-ca")
	if err := again.ensureServerToken(); err != nil {
		t.Fatal(err)
	}
	if again.ha.token != after {
		t.Fatalf("restart with the same CA changed the token: %s, was %s", again.ha.token, after)
	}
}
