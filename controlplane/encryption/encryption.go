// Package encryption encrypts Secrets at rest. It implements
// storage.Transformer over an upstream-shaped EncryptionConfiguration
// (apiserver.config.k8s.io/v1) kept under <data-dir>/cred: values under
// /registry/secrets/ are written with the first provider (aesgcm, aescbc or
// identity) and read with whichever configured key their prefix names
// ("k8s:enc:aesgcm:v1:<key>:" + nonce + ciphertext, as upstream). Values
// without an encryption prefix are read as plaintext, so turning encryption
// on for an existing cluster keeps old Secrets readable.
package encryption

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/skiffhq/skiff/controlplane/storage"
)

// Paths under the data directory.
const (
	// ConfigFile is the EncryptionConfiguration, relative to the data dir.
	ConfigFile = "cred/encryption-config.json"
	// StatusFile records the configuration the running server has loaded.
	StatusFile = "cred/encryption-state.json"
	// SecretsPrefix is the etcd prefix whose values are encrypted.
	SecretsPrefix = "/registry/secrets/"
	// encPrefix starts every encrypted value (upstream's envelope).
	encPrefix = "k8s:enc:"
)

// ErrUnknownKey is returned for a value encrypted with a key the
// configuration does not hold (for example one dropped too early).
var ErrUnknownKey = errors.New("value is encrypted with a key that is not configured")

// Config is upstream's EncryptionConfiguration (the parts Skiff uses).
type Config struct {
	Kind       string           `json:"kind"`
	APIVersion string           `json:"apiVersion"`
	Resources  []ResourceConfig `json:"resources"`
}

// ResourceConfig lists the providers for some resources, first = writer.
type ResourceConfig struct {
	Resources []string         `json:"resources"`
	Providers []ProviderConfig `json:"providers"`
}

// ProviderConfig is one provider; exactly one field is set.
type ProviderConfig struct {
	AESGCM   *KeysConfig `json:"aesgcm,omitempty"`
	AESCBC   *KeysConfig `json:"aescbc,omitempty"`
	Identity *struct{}   `json:"identity,omitempty"`
}

// KeysConfig holds an AES provider's keys, first = used for writes.
type KeysConfig struct {
	Keys []Key `json:"keys"`
}

// Key is a named base64-encoded AES key (16, 24 or 32 bytes).
type Key struct {
	Name   string `json:"name"`
	Secret string `json:"secret"`
}

// NewKey returns a fresh 32-byte key named name.
func NewKey(name string) (Key, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return Key{}, fmt.Errorf("generate key: %w", err)
	}
	return Key{Name: name, Secret: base64.StdEncoding.EncodeToString(b)}, nil
}

// NewConfig returns a configuration with one fresh aesgcm key for secrets
// and the identity fallback.
func NewConfig(keyName string) (*Config, error) {
	k, err := NewKey(keyName)
	if err != nil {
		return nil, err
	}
	return &Config{
		Kind:       "EncryptionConfiguration",
		APIVersion: "apiserver.config.k8s.io/v1",
		Resources: []ResourceConfig{{
			Resources: []string{"secrets"},
			Providers: []ProviderConfig{{AESGCM: &KeysConfig{Keys: []Key{k}}}, {Identity: &struct{}{}}},
		}},
	}, nil
}

// Secrets returns the provider list for secrets (nil if none).
func (c *Config) Secrets() *ResourceConfig {
	for i := range c.Resources {
		for _, r := range c.Resources[i].Resources {
			if r == "secrets" || r == "secrets." || r == "*." || r == "*.*" {
				return &c.Resources[i]
			}
		}
	}
	return nil
}

// Hash identifies a configuration's content (no key material).
func (c *Config) Hash() string {
	b, _ := json.Marshal(c)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// LoadConfig reads a configuration file.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read encryption config: %w", err)
	}
	var c Config
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("parse encryption config %s: %w", path, err)
	}
	if _, err := newTransformer(&c); err != nil {
		return nil, fmt.Errorf("encryption config %s: %w", path, err)
	}
	return &c, nil
}

// SaveConfig writes a configuration atomically with mode 0600.
func SaveConfig(path string, c *Config) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("encode encryption config: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write encryption config: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write encryption config: %w", err)
	}
	return nil
}

// LoadOrCreate reads <dataDir>/cred/encryption-config.json, creating it
// with a fresh key when missing.
func LoadOrCreate(dataDir string) (*Config, error) {
	path := filepath.Join(dataDir, ConfigFile)
	c, err := LoadConfig(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return c, err
	}
	c, err = NewConfig("aesgcmkey-1")
	if err != nil {
		return nil, err
	}
	if err := SaveConfig(path, c); err != nil {
		return nil, err
	}
	return c, nil
}

// provider encrypts with one key.
type provider struct {
	prefix string // k8s:enc:<kind>:v1:<name>:
	gcm    cipher.AEAD
	block  cipher.Block // aescbc
}

// transformer is one immutable loaded configuration.
type transformer struct {
	writer  *provider // nil = identity
	readers map[string]*provider
	hash    string
}

func newTransformer(c *Config) (*transformer, error) {
	t := &transformer{readers: map[string]*provider{}, hash: c.Hash()}
	rc := c.Secrets()
	if rc == nil || len(rc.Providers) == 0 {
		return nil, errors.New("no providers for resource \"secrets\"")
	}
	for i, p := range rc.Providers {
		n := 0
		for _, set := range []bool{p.AESGCM != nil, p.AESCBC != nil, p.Identity != nil} {
			if set {
				n++
			}
		}
		if n != 1 {
			return nil, fmt.Errorf("resources[0].providers[%d]: exactly one provider must be set", i)
		}
		kind, keys := "aesgcm", p.AESGCM
		if p.AESCBC != nil {
			kind, keys = "aescbc", p.AESCBC
		}
		if p.Identity != nil {
			continue
		}
		if len(keys.Keys) == 0 {
			return nil, fmt.Errorf("resources[0].providers[%d].%s.keys: Required value", i, kind)
		}
		for j, k := range keys.Keys {
			pv, err := newProvider(kind, k)
			if err != nil {
				return nil, fmt.Errorf("resources[0].providers[%d].%s.keys[%d]: %w", i, kind, j, err)
			}
			if _, dup := t.readers[pv.prefix]; dup {
				return nil, fmt.Errorf("resources[0].providers[%d].%s.keys[%d].name: Duplicate value: %q", i, kind, j, k.Name)
			}
			t.readers[pv.prefix] = pv
			if i == 0 && j == 0 {
				t.writer = pv
			}
		}
	}
	return t, nil
}

func newProvider(kind string, k Key) (*provider, error) {
	if k.Name == "" || strings.Contains(k.Name, ":") {
		return nil, fmt.Errorf("name: Invalid value: %q: must be non-empty and contain no ':'", k.Name)
	}
	secret, err := base64.StdEncoding.DecodeString(k.Secret)
	if err != nil {
		return nil, fmt.Errorf("secret: Invalid value: must be base64: %w", err)
	}
	block, err := aes.NewCipher(secret)
	if err != nil {
		return nil, fmt.Errorf("secret: Invalid value: %w", err)
	}
	p := &provider{prefix: encPrefix + kind + ":v1:" + k.Name + ":", block: block}
	if kind == "aesgcm" {
		if p.gcm, err = cipher.NewGCM(block); err != nil {
			return nil, fmt.Errorf("secret: %w", err)
		}
	}
	return p, nil
}

// The etcd key is authenticated data: a ciphertext copied under another
// key does not decrypt.
func (p *provider) encrypt(key string, plain []byte) ([]byte, error) {
	out := make([]byte, 0, len(p.prefix)+aes.BlockSize+len(plain)+32)
	out = append(out, p.prefix...)
	if p.gcm != nil {
		nonce := make([]byte, p.gcm.NonceSize())
		if _, err := rand.Read(nonce); err != nil {
			return nil, fmt.Errorf("nonce: %w", err)
		}
		out = append(out, nonce...)
		return p.gcm.Seal(out, nonce, plain, []byte(key)), nil
	}
	// aescbc: IV + CBC(PKCS#7 padded plaintext), as upstream's aescbc.
	pad := aes.BlockSize - len(plain)%aes.BlockSize
	buf := make([]byte, aes.BlockSize+len(plain)+pad)
	iv := buf[:aes.BlockSize]
	if _, err := rand.Read(iv); err != nil {
		return nil, fmt.Errorf("iv: %w", err)
	}
	body := buf[aes.BlockSize:]
	copy(body, plain)
	for i := len(plain); i < len(body); i++ {
		body[i] = byte(pad)
	}
	cipher.NewCBCEncrypter(p.block, iv).CryptBlocks(body, body)
	return append(out, buf...), nil
}

func (p *provider) decrypt(key string, data []byte) ([]byte, error) {
	if p.gcm != nil {
		ns := p.gcm.NonceSize()
		if len(data) < ns {
			return nil, errors.New("aesgcm: value too short")
		}
		plain, err := p.gcm.Open(nil, data[:ns], data[ns:], []byte(key))
		if err != nil {
			return nil, fmt.Errorf("aesgcm: %w", err)
		}
		return plain, nil
	}
	if len(data) < 2*aes.BlockSize || len(data)%aes.BlockSize != 0 {
		return nil, errors.New("aescbc: invalid value length")
	}
	iv, body := data[:aes.BlockSize], append([]byte(nil), data[aes.BlockSize:]...)
	cipher.NewCBCDecrypter(p.block, iv).CryptBlocks(body, body)
	pad := int(body[len(body)-1])
	if pad == 0 || pad > aes.BlockSize || pad > len(body) {
		return nil, errors.New("aescbc: invalid padding")
	}
	return body[:len(body)-pad], nil
}

// Transformer encrypts Secret values. Reload swaps the configuration
// atomically; in-flight operations finish with the one they started with.
type Transformer struct {
	cur atomic.Pointer[transformer]
}

var _ storage.Transformer = (*Transformer)(nil)

// New returns a Transformer for c.
func New(c *Config) (*Transformer, error) {
	t := &Transformer{}
	if err := t.Reload(c); err != nil {
		return nil, err
	}
	return t, nil
}

// Reload replaces the configuration.
func (t *Transformer) Reload(c *Config) error {
	tr, err := newTransformer(c)
	if err != nil {
		return err
	}
	t.cur.Store(tr)
	return nil
}

// Hash identifies the loaded configuration.
func (t *Transformer) Hash() string { return t.cur.Load().hash }

// ToStorage implements storage.Transformer.
func (t *Transformer) ToStorage(key string, plain []byte) ([]byte, error) {
	if !strings.HasPrefix(key, SecretsPrefix) {
		return plain, nil
	}
	w := t.cur.Load().writer
	if w == nil {
		return plain, nil
	}
	out, err := w.encrypt(key, plain)
	if err != nil {
		return nil, fmt.Errorf("encrypt %s: %w", key, err)
	}
	return out, nil
}

// FromStorage implements storage.Transformer.
func (t *Transformer) FromStorage(key string, stored []byte) ([]byte, error) {
	if !strings.HasPrefix(key, SecretsPrefix) || !bytes.HasPrefix(stored, []byte(encPrefix)) {
		return stored, nil
	}
	name := KeyOf(stored)
	p := t.cur.Load().readers[name]
	if p == nil {
		return nil, fmt.Errorf("decrypt %s (%s): %w", key, strings.TrimSuffix(name, ":"), ErrUnknownKey)
	}
	plain, err := p.decrypt(key, stored[len(name):])
	if err != nil {
		return nil, fmt.Errorf("decrypt %s: %w", key, err)
	}
	return plain, nil
}

// KeyOf returns the envelope prefix of a stored value
// ("k8s:enc:aesgcm:v1:<name>:"), or "" for plaintext.
func KeyOf(stored []byte) string {
	if !bytes.HasPrefix(stored, []byte(encPrefix)) {
		return ""
	}
	// k8s:enc:<kind>:v1:<name>: — five colons.
	n := 0
	for i, c := range stored {
		if c == ':' {
			n++
			if n == 5 {
				return string(stored[:i+1])
			}
		}
	}
	return ""
}

// State is what the running server reports about its loaded configuration
// in <data-dir>/cred/encryption-state.json (no key material).
type State struct {
	// ConfigHash is Config.Hash of the loaded configuration.
	ConfigHash string `json:"configHash"`
	// WriteKey is the envelope prefix new writes use ("" = identity).
	WriteKey string `json:"writeKey"`
	// Keys lists the envelope prefixes that can be read.
	Keys []string `json:"keys"`
}

// State describes the loaded configuration.
func (t *Transformer) State() State {
	tr := t.cur.Load()
	st := State{ConfigHash: tr.hash}
	if tr.writer != nil {
		st.WriteKey = tr.writer.prefix
	}
	for k := range tr.readers {
		st.Keys = append(st.Keys, k)
	}
	slices.Sort(st.Keys)
	return st
}

// ReadState reads the state file the server wrote.
func ReadState(dataDir string) (State, error) {
	var st State
	b, err := os.ReadFile(filepath.Join(dataDir, StatusFile))
	if err != nil {
		return st, fmt.Errorf("read encryption state: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("parse encryption state: %w", err)
	}
	return st, nil
}

func (t *Transformer) writeState(dataDir string) error {
	b, err := json.MarshalIndent(t.State(), "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(dataDir, StatusFile)
	if err := os.WriteFile(path+".tmp", append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write encryption state: %w", err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return fmt.Errorf("write encryption state: %w", err)
	}
	return nil
}

// Watch reloads the configuration file whenever its content changes (the
// `skiff secrets-encrypt` commands edit it) and records the loaded state.
// An invalid file is logged and the previous configuration kept. It blocks
// until ctx ends.
func (t *Transformer) Watch(ctx context.Context, dataDir string, interval time.Duration, log *slog.Logger) {
	if err := t.writeState(dataDir); err != nil {
		log.Error("secrets encryption state", "err", err)
	}
	path := filepath.Join(dataDir, ConfigFile)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		c, err := LoadConfig(path)
		if err != nil {
			log.Error("secrets encryption config not reloaded", "err", err)
			continue
		}
		if c.Hash() == t.Hash() {
			continue
		}
		if err := t.Reload(c); err != nil {
			log.Error("secrets encryption config not reloaded", "err", err)
			continue
		}
		st := t.State()
		log.Info("secrets encryption config reloaded", "writeKey", st.WriteKey, "keys", len(st.Keys))
		if err := t.writeState(dataDir); err != nil {
			log.Error("secrets encryption state", "err", err)
		}
	}
}
