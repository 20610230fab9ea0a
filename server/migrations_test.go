package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/encryption"
	"github.com/skiffhq/skiff/controlplane/storage"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/migrations"
	"github.com/skiffhq/skiff/server"
	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// TestMigrationsAtStartOnce writes plaintext Secrets, then starts three
// servers together on the same etcd with Secrets encryption (one shared
// key): the Secrets rewrite runs once (one record, one run, each Secret
// rewritten once) and every server reads the Secrets.
func TestMigrationsAtStartOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	etcd, err := storage.StartEmbedded(ctx, storage.EmbeddedConfig{
		Dir:       t.TempDir(),
		ClientURL: fmt.Sprintf("http://127.0.0.1:%d", port(t)),
		PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", port(t)),
		LogLevel:  "fatal",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(etcd.Close)
	cfg := func() server.Config {
		return server.Config{DataDir: t.TempDir(), BindAddress: "127.0.0.1", DisableAgent: true, DatastoreEndpoints: etcd.Endpoints(),
			DNSListenAddress: "127.0.0.1:0", EtcdLogLevel: "fatal", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	}
	plain := testserver.StartWith(t, cfg())
	for i := range 3 {
		if _, err := plain.Client.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("s%d", i)}, StringData: map[string]string{"k": "v"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	plain.Stop()

	enc, err := encryption.NewConfig("shared")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	servers := make([]*server.Server, 3)
	errs := make([]error, 3)
	for i := range 3 {
		c := cfg()
		c.SecretsEncryption = true
		if err := encryption.SaveConfig(filepath.Join(c.DataDir, encryption.ConfigFile), enc); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			servers[i], errs[i] = server.Start(ctx, c)
		}()
	}
	wg.Wait()
	for i, s := range servers {
		if s != nil {
			t.Cleanup(s.Stop)
		}
		if errs[i] != nil {
			t.Fatalf("server %d: %v", i, errs[i])
		}
	}

	cli, err := clientv3.New(clientv3.Config{Endpoints: etcd.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, migrations.DefaultPrefix+"records/0001-secrets-storage-encoding")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("migration record: %v %v", err, resp)
	}
	var rec migrations.Record
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Status != migrations.StatusDone || rec.Runs != 1 {
		t.Fatalf("record %+v, want done after one run", rec)
	}
	secrets, err := cli.Get(ctx, encryption.SecretsPrefix+"default/", clientv3.WithPrefix())
	if err != nil || len(secrets.Kvs) != 3 {
		t.Fatalf("secrets in etcd: %v %d", err, len(secrets.Kvs))
	}
	for _, kv := range secrets.Kvs {
		if encryption.KeyOf(kv.Value) == "" {
			t.Errorf("%s is still plaintext", kv.Key)
		}
		if kv.Version != 2 {
			t.Errorf("%s written %d times, want created once and rewritten once", kv.Key, kv.Version)
		}
	}
	for i, s := range servers {
		rc, err := s.AdminConfig()
		if err != nil {
			t.Fatal(err)
		}
		got, err := kubernetesClient(t, rc).CoreV1().Secrets("default").Get(ctx, "s1", metav1.GetOptions{})
		if err != nil || string(got.Data["k"]) != "v" {
			t.Errorf("server %d reads the secret: %v %v", i, err, got)
		}
	}
}

func kubernetesClient(t *testing.T, rc *rest.Config) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}
