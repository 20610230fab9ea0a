package encryption

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestRoundTripAndEnvelope(t *testing.T) {
	for _, kind := range []string{"aesgcm", "aescbc"} {
		t.Run(kind, func(t *testing.T) {
			k, err := NewKey("k1")
			if err != nil {
				t.Fatal(err)
			}
			keys := &KeysConfig{Keys: []Key{k}}
			p := ProviderConfig{AESGCM: keys}
			if kind == "aescbc" {
				p = ProviderConfig{AESCBC: keys}
			}
			c := &Config{Resources: []ResourceConfig{{Resources: []string{"secrets"}, Providers: []ProviderConfig{p}}}}
			tr, err := New(c)
			if err != nil {
				t.Fatal(err)
			}
			key := "/registry/secrets/default/s"
			for _, plain := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("0123456789abcdef"), 4)} {
				enc, err := tr.ToStorage(key, plain)
				if err != nil {
					t.Fatal(err)
				}
				if want := "k8s:enc:" + kind + ":v1:k1:"; !bytes.HasPrefix(enc, []byte(want)) || KeyOf(enc) != want {
					t.Fatalf("envelope %q, want prefix %q", enc[:min(len(enc), 30)], want)
				}
				// (A one-byte plaintext shows up in random ciphertext by
				// chance: only longer ones prove anything.)
				if len(plain) >= 8 && bytes.Contains(enc, plain) {
					t.Fatal("ciphertext contains the plaintext")
				}
				got, err := tr.FromStorage(key, enc)
				if err != nil || !bytes.Equal(got, plain) {
					t.Fatalf("FromStorage = %q, %v; want %q", got, err, plain)
				}
				// The etcd key is authenticated (GCM) or at least the
				// value must not decrypt to the same plaintext elsewhere.
				if kind == "aesgcm" {
					if _, err := tr.FromStorage("/registry/secrets/other/s", enc); err == nil {
						t.Fatal("ciphertext moved to another key decrypted")
					}
					bad := append([]byte(nil), enc...)
					bad[len(bad)-1] ^= 1
					if _, err := tr.FromStorage(key, bad); err == nil {
						t.Fatal("tampered ciphertext decrypted")
					}
				}
			}
			// Other resources and plaintext secrets pass through.
			if got, _ := tr.ToStorage("/registry/configmaps/default/c", []byte("plain")); string(got) != "plain" {
				t.Fatalf("configmap transformed: %q", got)
			}
			if got, err := tr.FromStorage(key, []byte(`{"kind":"Secret"}`)); err != nil || string(got) != `{"kind":"Secret"}` {
				t.Fatalf("plaintext fallback = %q, %v", got, err)
			}
		})
	}
}

func TestUnknownKeyAndRotation(t *testing.T) {
	c1, err := NewConfig("old")
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(c1)
	if err != nil {
		t.Fatal(err)
	}
	key := "/registry/secrets/ns/a"
	oldEnc, _ := tr.ToStorage(key, []byte("v1"))
	newKey, _ := NewKey("new")
	c1.Secrets().Providers[0].AESGCM.Keys = append([]Key{newKey}, c1.Secrets().Providers[0].AESGCM.Keys...)
	if err := tr.Reload(c1); err != nil {
		t.Fatal(err)
	}
	newEnc, _ := tr.ToStorage(key, []byte("v2"))
	if KeyOf(newEnc) != "k8s:enc:aesgcm:v1:new:" {
		t.Fatalf("after rotation writes use %q", KeyOf(newEnc))
	}
	if got, err := tr.FromStorage(key, oldEnc); err != nil || string(got) != "v1" {
		t.Fatalf("old key after rotation: %q, %v", got, err)
	}
	c1.Secrets().Providers[0].AESGCM.Keys = c1.Secrets().Providers[0].AESGCM.Keys[:1]
	if err := tr.Reload(c1); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.FromStorage(key, oldEnc); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("dropped key: err = %v, want ErrUnknownKey", err)
	}
}

func TestConfigValidation(t *testing.T) {
	good, _ := NewKey("k")
	cases := map[string]struct {
		p    []ProviderConfig
		want string
	}{
		"no providers":   {nil, "no providers"},
		"two in one":     {[]ProviderConfig{{AESGCM: &KeysConfig{Keys: []Key{good}}, Identity: &struct{}{}}}, "exactly one provider"},
		"no keys":        {[]ProviderConfig{{AESGCM: &KeysConfig{}}}, "keys: Required value"},
		"short key":      {[]ProviderConfig{{AESGCM: &KeysConfig{Keys: []Key{{Name: "k", Secret: "c2hvcnQ="}}}}}, "invalid key size"},
		"not base64":     {[]ProviderConfig{{AESGCM: &KeysConfig{Keys: []Key{{Name: "k", Secret: "!!"}}}}}, "must be base64"},
		"colon in name":  {[]ProviderConfig{{AESGCM: &KeysConfig{Keys: []Key{{Name: "a:b", Secret: good.Secret}}}}}, "contain no ':'"},
		"duplicate name": {[]ProviderConfig{{AESGCM: &KeysConfig{Keys: []Key{good, good}}}}, "Duplicate value"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := New(&Config{Resources: []ResourceConfig{{Resources: []string{"secrets"}, Providers: tc.p}}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestLoadOrCreateKeepsKey(t *testing.T) {
	dir := t.TempDir()
	c1, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c1.Hash() != c2.Hash() {
		t.Fatal("second LoadOrCreate generated a new key")
	}
	if _, err := LoadConfig(filepath.Join(dir, "missing.json")); err == nil {
		t.Fatal("missing file loaded")
	}
}
