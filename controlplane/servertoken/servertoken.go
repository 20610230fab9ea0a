// Package servertoken is the token a server joins an HA cluster with
// (`skiff server --server URL --token T`), as k3s's: it carries a hash of
// the cluster CA, so the joining server can verify the server it contacts
// before trusting it, and a shared secret the existing servers check
// before they hand out the cluster's keys. NodeToken is its counterpart
// for agents: the CA hash and a bootstrap token.
//
// Format: "SK10" + hex(sha256(cluster CA certificate PEM)) + "::server:" +
// secret, the secret 32 lowercase hex characters (128 random bits). The
// first server writes its token to <data-dir>/server/token (mode 0600);
// every joined server stores the token it joined with there too.
package servertoken

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// CACertsPath is where every server serves the cluster CA certificate
// (PEM), without authentication, for joining servers and agents to check
// against their token's hash.
const CACertsPath = "/skiff/v1/cacerts"

// File is the token's path relative to the data directory.
const File = "server/token"

const (
	prefix    = "SK10"
	separator = "::server:"
)

// Token is a parsed server token.
type Token struct {
	// CAHash is the hex sha256 of the cluster CA certificate's PEM.
	CAHash string
	// Secret authenticates a joining server to the existing ones.
	Secret string
}

// ErrFormat means a string is not a server token.
var ErrFormat = errors.New("not a server token (want SK10<ca sha256 hex>::server:<secret>)")

// New returns a token with a fresh random secret for the CA.
func New(caPEM []byte) (Token, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return Token{}, fmt.Errorf("token secret: %w", err)
	}
	return Token{CAHash: CAHash(caPEM), Secret: hex.EncodeToString(b)}, nil
}

// CAHash is the hash a token carries for a CA certificate PEM.
func CAHash(caPEM []byte) string {
	sum := sha256.Sum256(caPEM)
	return hex.EncodeToString(sum[:])
}

// String is the token's text form.
func (t Token) String() string { return prefix + t.CAHash + separator + t.Secret }

// Parse reads a token's text form.
func Parse(s string) (Token, error) {
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return Token{}, ErrFormat
	}
	hash, secret, ok := strings.Cut(rest, separator)
	if !ok || secret == "" {
		return Token{}, ErrFormat
	}
	if b, err := hex.DecodeString(hash); err != nil || len(b) != sha256.Size {
		return Token{}, fmt.Errorf("%w: the CA hash is not 64 hex characters", ErrFormat)
	}
	return Token{CAHash: strings.ToLower(hash), Secret: secret}, nil
}

// MatchesCA reports whether caPEM is the CA the token names.
func (t Token) MatchesCA(caPEM []byte) bool {
	return subtle.ConstantTimeCompare([]byte(CAHash(caPEM)), []byte(t.CAHash)) == 1
}

// CheckSecret reports, in constant time, whether secret is the token's.
func (t Token) CheckSecret(secret string) bool {
	return subtle.ConstantTimeCompare([]byte(secret), []byte(t.Secret)) == 1
}

// Read reads the token stored in dataDir.
func Read(dataDir string) (Token, error) {
	data, err := os.ReadFile(filepath.Join(dataDir, File))
	if err != nil {
		return Token{}, fmt.Errorf("read server token: %w", err)
	}
	return Parse(string(data))
}

// Write stores the token in dataDir (mode 0600, atomically).
func Write(dataDir string, t Token) error {
	path := filepath.Join(dataDir, File)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write server token: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(t.String()+"\n"), 0o600); err != nil {
		return fmt.Errorf("write server token: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write server token: %w", err)
	}
	return nil
}

// NodeToken is what an agent joins with (`skiff agent --server URL
// --token T`), the form k3s's `token create` prints: "SK10" + the CA hash
// + "::" + a bootstrap token (<6-char id>.<16-char secret>). The agent
// trusts the server once its CA matches the hash, then authenticates with
// the bootstrap token to have its client certificate signed.
type NodeToken struct {
	CAHash    string
	Bootstrap string
}

// ErrNodeFormat means a string is not a node join token.
var ErrNodeFormat = errors.New("not a node join token (want SK10<ca sha256 hex>::<token id>.<token secret>, as `skiff token create` prints)")

// String is the token's text form.
func (t NodeToken) String() string { return prefix + t.CAHash + "::" + t.Bootstrap }

// MatchesCA reports whether caPEM is the CA the token names.
func (t NodeToken) MatchesCA(caPEM []byte) bool {
	return subtle.ConstantTimeCompare([]byte(CAHash(caPEM)), []byte(t.CAHash)) == 1
}

// ParseNode reads a node join token's text form.
func ParseNode(s string) (NodeToken, error) {
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return NodeToken{}, ErrNodeFormat
	}
	hash, boot, ok := strings.Cut(rest, "::")
	if !ok {
		return NodeToken{}, ErrNodeFormat
	}
	if b, err := hex.DecodeString(hash); err != nil || len(b) != sha256.Size {
		return NodeToken{}, fmt.Errorf("%w: the CA hash is not 64 hex characters", ErrNodeFormat)
	}
	if !isBootstrapToken(boot) {
		return NodeToken{}, fmt.Errorf("%w: %q is not a bootstrap token", ErrNodeFormat, redact(boot))
	}
	return NodeToken{CAHash: strings.ToLower(hash), Bootstrap: boot}, nil
}

// isBootstrapToken matches [a-z0-9]{6}.[a-z0-9]{16}.
func isBootstrapToken(s string) bool {
	id, secret, ok := strings.Cut(s, ".")
	valid := func(p string, n int) bool {
		return len(p) == n && strings.Trim(p, "abcdefghijklmnopqrstuvwxyz0123456789") == ""
	}
	return ok && valid(id, 6) && valid(secret, 16)
}

// redact keeps what precedes a secret: an id, or a server token's kind.
func redact(s string) string {
	for _, sep := range []string{".", ":"} {
		if i := strings.Index(s, sep); i >= 0 {
			return s[:i+1] + "…"
		}
	}
	return "…"
}
