package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/encryption"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// rawSecret reads a Secret's bytes from etcd, bypassing the transformer.
func rawSecret(t *testing.T, s *testserver.Server, ns, name string) []byte {
	t.Helper()
	resp, err := s.Store().Client().Get(context.Background(), "/registry/secrets/"+ns+"/"+name)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("etcd get %s/%s: %v (%d kvs)", ns, name, err, len(resp.Kvs))
	}
	return resp.Kvs[0].Value
}

func createSecret(t *testing.T, s *testserver.Server, name, value string) {
	t.Helper()
	_, err := s.Client.CoreV1().Secrets("default").Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Data:       map[string][]byte{"password": []byte(value)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create secret %s: %v", name, err)
	}
}

func assertSecret(t *testing.T, s *testserver.Server, name, value string) {
	t.Helper()
	sec, err := s.Client.CoreV1().Secrets("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get secret %s: %v", name, err)
	}
	if got := string(sec.Data["password"]); got != value {
		t.Fatalf("secret %s password = %q, want %q", name, got, value)
	}
}

func assertEncrypted(t *testing.T, s *testserver.Server, name, value, keyName string) {
	t.Helper()
	raw := rawSecret(t, s, "default", name)
	if want := "k8s:enc:aesgcm:v1:" + keyName + ":"; encryption.KeyOf(raw) != want {
		t.Fatalf("secret %s stored with %q, want %q", name, encryption.KeyOf(raw), want)
	}
	for _, leak := range []string{value, base64.StdEncoding.EncodeToString([]byte(value)), `"password"`} {
		if bytes.Contains(raw, []byte(leak)) {
			t.Fatalf("etcd value of secret %s contains %q", name, leak)
		}
	}
}

func TestSecretsEncryptionLifecycle(t *testing.T) {
	dir := t.TempDir()
	cfg := func(enc bool) server.Config {
		return server.Config{DataDir: dir, BindAddress: "127.0.0.1", DisableAgent: true, SecretsEncryption: enc}
	}
	// A cluster without encryption stores plaintext.
	s := testserver.StartWith(t, cfg(false))
	createSecret(t, s, "before", "plain-before-1")
	if raw := rawSecret(t, s, "default", "before"); encryption.KeyOf(raw) != "" {
		t.Fatalf("unencrypted server wrote %q", raw[:20])
	}
	s.Stop()

	// Turning encryption on keeps old secrets readable and encrypts new ones.
	s = testserver.StartWith(t, cfg(true))
	assertSecret(t, s, "before", "plain-before-1")
	createSecret(t, s, "first", "s3cr3t-first-value")
	assertEncrypted(t, s, "first", "s3cr3t-first-value", "aesgcmkey-1")
	assertSecret(t, s, "first", "s3cr3t-first-value")

	var out bytes.Buffer
	if err := encryptStatus(&out, dir); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Write Key: aesgcm:v1:aesgcmkey-1:") || !strings.Contains(out.String(), "current configuration loaded") {
		t.Fatalf("status:\n%s", out.String())
	}

	// Rotate: new writes use the new key, old values still decrypt.
	newKey, err := encryptRotate(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := encryption.LoadConfig(filepath.Join(dir, encryption.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := waitLoaded(ctx, dir, c.Hash()); err != nil {
		t.Fatal(err)
	}
	createSecret(t, s, "second", "s3cr3t-second-value")
	assertEncrypted(t, s, "second", "s3cr3t-second-value", newKey)
	assertEncrypted(t, s, "first", "s3cr3t-first-value", "aesgcmkey-1")
	assertSecret(t, s, "first", "s3cr3t-first-value")

	// Reencrypt rewrites everything with the new key and drops the old one.
	n, err := encryptReencrypt(ctx, s.Client, dir, true)
	if err != nil {
		t.Fatal(err)
	}
	if n < 3 {
		t.Fatalf("reencrypted %d secrets, want at least 3", n)
	}
	c, err = encryption.LoadConfig(filepath.Join(dir, encryption.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if keys := c.Secrets().Providers[0].AESGCM.Keys; len(keys) != 1 || keys[0].Name != newKey {
		t.Fatalf("keys after reencrypt: %+v", keys)
	}
	for name, v := range map[string]string{"before": "plain-before-1", "first": "s3cr3t-first-value", "second": "s3cr3t-second-value"} {
		assertEncrypted(t, s, name, v, newKey)
		assertSecret(t, s, name, v)
		// Read through storage too (not the watch cache).
		if _, err := s.Store().Get(ctx, "/registry/secrets/default/"+name); err != nil {
			t.Fatalf("store get %s with old key dropped: %v", name, err)
		}
	}
	s.Stop()

	// A restart reads everything with the remaining key.
	s = testserver.StartWith(t, cfg(true))
	for name, v := range map[string]string{"before": "plain-before-1", "first": "s3cr3t-first-value", "second": "s3cr3t-second-value"} {
		assertSecret(t, s, name, v)
	}
	createSecret(t, s, "third", "s3cr3t-third-value")
	assertEncrypted(t, s, "third", "s3cr3t-third-value", newKey)
}
