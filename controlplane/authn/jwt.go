package authn

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
)

// SigningKey signs and verifies service account tokens (RS256).
type SigningKey struct {
	priv *rsa.PrivateKey
	// KeyID is upstream's key id: the unpadded base64url SHA-256 of the
	// public key's PKIX DER encoding.
	KeyID string
}

// LoadOrCreateSigningKey reads <dir>/service-account.key, creating an RSA
// 2048 key there (mode 0600) when it is missing.
func LoadOrCreateSigningKey(dir string) (*SigningKey, error) {
	path := filepath.Join(dir, "service-account.key")
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		block, _ := pem.Decode(data)
		if block == nil {
			return nil, fmt.Errorf("service account key %s: no PEM block", path)
		}
		var priv *rsa.PrivateKey
		if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
			priv = k
		} else if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
			rk, ok := k.(*rsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("service account key %s: not an RSA key", path)
			}
			priv = rk
		} else {
			return nil, fmt.Errorf("service account key %s: %w", path, err)
		}
		return NewSigningKey(priv)
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("read service account key: %w", err)
	}
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate service account key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("service account key dir: %w", err)
	}
	pemData := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(priv)})
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pemData, 0o600); err != nil {
		return nil, fmt.Errorf("write service account key: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("write service account key: %w", err)
	}
	return NewSigningKey(priv)
}

// NewSigningKey wraps an RSA private key.
func NewSigningKey(priv *rsa.PrivateKey) (*SigningKey, error) {
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return &SigningKey{priv: priv, KeyID: base64.RawURLEncoding.EncodeToString(sum[:])}, nil
}

// Public returns the public key.
func (k *SigningKey) Public() *rsa.PublicKey { return &k.priv.PublicKey }

type jwtHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid,omitempty"`
	Typ string `json:"typ,omitempty"`
}

// Sign returns the compact JWS of claims.
func (k *SigningKey) Sign(claims any) (string, error) {
	h, err := json.Marshal(jwtHeader{Alg: "RS256", Kid: k.KeyID})
	if err != nil {
		return "", err
	}
	p, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encode claims: %w", err)
	}
	signing := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, k.priv, crypto.SHA256, sum[:])
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// Errors of token parsing; none of them quotes the token.
var (
	errNotJWT       = errors.New("not a JWT")
	errBadSignature = errors.New("token signature is invalid")
	errBadAlg       = errors.New("token signing algorithm is not supported")
)

// splitJWT decodes the header and payload of a compact JWS without
// verifying it.
func splitJWT(token string) (h jwtHeader, payload []byte, err error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || len(token) > 64<<10 {
		return h, nil, errNotJWT
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil || json.Unmarshal(hb, &h) != nil {
		return h, nil, errNotJWT
	}
	payload, err = base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || !bytes.HasPrefix(bytes.TrimSpace(payload), []byte("{")) {
		return h, nil, errNotJWT
	}
	return h, payload, nil
}

// verify checks token's RS256 signature with k.
func (k *SigningKey) verify(token string, h jwtHeader) error {
	if h.Alg != "RS256" {
		return errBadAlg
	}
	if h.Kid != "" && h.Kid != k.KeyID {
		return errBadSignature
	}
	i := strings.LastIndexByte(token, '.')
	sig, err := base64.RawURLEncoding.DecodeString(token[i+1:])
	if err != nil {
		return errBadSignature
	}
	sum := sha256.Sum256([]byte(token[:i]))
	if rsa.VerifyPKCS1v15(k.Public(), crypto.SHA256, sum[:], sig) != nil {
		return errBadSignature
	}
	return nil
}

// JWK is one key of a JSON Web Key Set.
type JWK struct {
	Use string `json:"use"`
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
}

// JWK returns the public key as a JSON Web Key.
func (k *SigningKey) JWK() JWK {
	pub := k.Public()
	return JWK{
		Use: "sig", Kty: "RSA", Kid: k.KeyID, Alg: "RS256",
		N: base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		E: base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
	}
}
