package server_test

import (
	"context"
	"crypto/tls"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/etcdclient"
	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/internal/testserver"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestEmbeddedEtcdMutualTLS: the embedded etcd serves its client port only
// to clients with a certificate of its own CA: plain HTTP, TLS without a
// client certificate and a certificate of the cluster CA (which nodes and
// users hold) all fail; the files the server recorded for the operator
// commands work.
func TestEmbeddedEtcdMutualTLS(t *testing.T) {
	ts := testserver.Start(t)
	info, err := etcdclient.Read(ts.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Embedded || len(info.Endpoints) != 1 || !strings.HasPrefix(info.Endpoints[0], "https://127.0.0.1:") || info.CertFile == "" {
		t.Fatalf("recorded datastore %+v: want the embedded etcd over https with a client certificate", info)
	}
	good, err := info.TLS()
	if err != nil {
		t.Fatal(err)
	}
	clusterCA, err := pki.LoadOrCreateCA(filepath.Join(ts.DataDir, "tls"), "server-ca", "skiff-server-ca")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := clusterCA.Issue("system:admin", []string{"system:masters"}, nil, nil, false, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	clusterCert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	hostPort := strings.TrimPrefix(info.Endpoints[0], "https://")
	for _, tc := range []struct {
		name     string
		endpoint string
		tls      *tls.Config
		ok       bool
	}{
		{"plain http", "http://" + hostPort, nil, false},
		{"tls without a client certificate", info.Endpoints[0], &tls.Config{RootCAs: good.RootCAs, MinVersion: tls.VersionTLS12}, false},
		{"a cluster CA client certificate", info.Endpoints[0], &tls.Config{RootCAs: good.RootCAs, Certificates: []tls.Certificate{clusterCert}, MinVersion: tls.VersionTLS12}, false},
		{"the recorded etcd client certificate", info.Endpoints[0], good, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cli, err := clientv3.New(clientv3.Config{Endpoints: []string{tc.endpoint}, TLS: tc.tls, DialTimeout: 3 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer cli.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err = cli.Get(ctx, "/registry/namespaces/default")
			if tc.ok && err != nil {
				t.Fatalf("read with the recorded client certificate: %v", err)
			}
			if !tc.ok && err == nil {
				t.Fatal("etcd answered a client it must refuse")
			}
		})
	}
}
