package server_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/storage"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func port(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestExternalDatastore runs two servers, one after the other and with
// different data dirs, on one external etcd: the second sees the first's
// objects, because all state lives in etcd.
func TestExternalDatastore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
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
	defer etcd.Close()
	cfg := func() server.Config {
		return server.Config{DataDir: t.TempDir(), BindAddress: "127.0.0.1", DisableAgent: true, DatastoreEndpoints: etcd.Endpoints()}
	}
	s1 := testserver.StartWith(t, cfg())
	if _, err := s1.Client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "shared"}, Data: map[string]string{"a": "b"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s1.Stop()
	s2 := testserver.StartWith(t, cfg())
	got, err := s2.Client.CoreV1().ConfigMaps("default").Get(ctx, "shared", metav1.GetOptions{})
	if err != nil || got.Data["a"] != "b" {
		t.Fatalf("second server on the same etcd: %v %+v", err, got)
	}
}
