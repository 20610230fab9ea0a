package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/etcdclient"
	"github.com/skiffhq/skiff/controlplane/servertoken"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
)

// etcdMembers maps member names to their peer URLs, listed through the
// client record of a server's data dir.
func etcdMembers(ctx context.Context, t *testing.T, dataDir string) map[string][]string {
	t.Helper()
	info, err := etcdclient.Read(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := info.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatalf("member list: %v", err)
	}
	out := map[string][]string{}
	for _, m := range resp.Members {
		if m.IsLearner {
			t.Errorf("member %s is still a learner", m.Name)
		}
		out[m.Name] = m.PeerURLs
	}
	return out
}

// TestConvertSingleToHA starts a single server, writes a ConfigMap,
// restarts it on the same data dir with --cluster-init and an advertise
// address other than the single server's loopback peer address, joins a
// second server with the token the converted server wrote, and reads the
// ConfigMap through it. Then the converted server restarts with
// --cluster-init again (nothing changes) and without it (it stays in the
// cluster). A single server's data dir is refused as a joiner.
func TestConvertSingleToHA(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	port := testserver.SharedPort(t, "127.0.0.2", "127.0.0.3")
	// The peer port stays the same across restarts, as `skiff server`'s
	// default 2380: the single server's member listens on 127.0.0.1, the
	// converted one on its advertise address 127.0.0.2.
	peerPort := testserver.SharedPort(t, "127.0.0.1", "127.0.0.2")
	c1 := haConfig(t)
	c1.BindAddress, c1.AdvertiseAddress, c1.HTTPSPort, c1.EtcdPeerPort = "127.0.0.2", "", port, peerPort
	single := testserver.StartWith(t, c1)
	if err := createCM(ctx, single.Client, "before-ha"); err != nil {
		t.Fatal(err)
	}
	single.Stop()
	if _, err := os.Stat(filepath.Join(c1.DataDir, servertoken.File)); err == nil {
		t.Fatal("a single server wrote a server token")
	}

	c1.ClusterInit, c1.AdvertiseAddress = true, "127.0.0.2"
	s1 := testserver.StartWith(t, c1)
	if err := getCM(ctx, s1.Client, "before-ha"); err != nil {
		t.Fatalf("the converted server lost the single server's data: %v", err)
	}
	wantPeer := fmt.Sprintf("https://127.0.0.2:%d", peerPort)
	if got := etcdMembers(ctx, t, c1.DataDir); len(got) != 1 || !slices.Equal(got["skiff"], []string{wantPeer}) {
		t.Fatalf("members after the conversion: %v, want skiff at %s", got, wantPeer)
	}
	if b, err := os.ReadFile(filepath.Join(c1.DataDir, "server/etcd-name")); err != nil || strings.TrimSpace(string(b)) != "skiff" {
		t.Errorf("etcd-name after the conversion: %q, %v; want skiff", b, err)
	}
	// Peers check the member's peer certificate against its new address.
	if b, err := os.ReadFile(filepath.Join(c1.DataDir, server.EtcdTLSDir, "etcd-peer.crt")); err != nil {
		t.Fatal(err)
	} else if blk, _ := pem.Decode(b); blk == nil {
		t.Fatal("etcd-peer.crt: no PEM")
	} else if cert, err := x509.ParseCertificate(blk.Bytes); err != nil {
		t.Fatal(err)
	} else if err := cert.VerifyHostname("127.0.0.2"); err != nil {
		t.Errorf("the converted member's peer certificate: %v", err)
	}
	tokText, err := os.ReadFile(filepath.Join(c1.DataDir, servertoken.File))
	if err != nil {
		t.Fatalf("the converted server stores a token: %v", err)
	}
	tok, err := servertoken.Parse(string(tokText))
	if err != nil {
		t.Fatal(err)
	}

	c2 := haConfig(t)
	c2.JoinServer, c2.Token = s1.URL(), tok.String()
	c2.BindAddress, c2.AdvertiseAddress, c2.HTTPSPort = "127.0.0.3", "127.0.0.3", port
	s2 := testserver.StartWith(t, c2)
	if err := getCM(ctx, s2.Client, "before-ha"); err != nil {
		t.Fatalf("the joined server does not read the single server's data: %v", err)
	}
	members := etcdMembers(ctx, t, c2.DataDir)
	if len(members) != 2 || members["skiff"] == nil {
		t.Fatalf("members after the join: %v", members)
	}
	// Another single server's data dir cannot join: its etcd data is of
	// another cluster.
	c3 := haConfig(t)
	c3.AdvertiseAddress = ""
	testserver.StartWith(t, c3).Stop()
	c3.JoinServer, c3.Token = s1.URL(), tok.String()
	if s, err := server.Start(ctx, c3); err == nil {
		s.Stop()
		t.Fatal("a single server's data dir joined a cluster")
	} else if !strings.Contains(err.Error(), "holds the etcd data of a single server") {
		t.Errorf("joining with a single server's data dir: %q, want it to say so", err)
	}
	if got := etcdMembers(ctx, t, c1.DataDir); !maps.EqualFunc(got, members, slices.Equal) {
		t.Fatalf("members after a refused join: %v, want %v", got, members)
	}

	if err := createCM(ctx, s2.Client, "via-joined"); err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "the converted server reads what the joined one wrote", func() error { return getCM(ctx, s1.Client, "via-joined") })

	// restart stops the converted server and starts it again with
	// clusterInit; the cluster is unchanged and replicates both ways.
	restart := func(clusterInit bool, name string) {
		t.Helper()
		s1.Stop()
		c1.ClusterInit = clusterInit
		s1 = testserver.StartWith(t, c1)
		if got := etcdMembers(ctx, t, c1.DataDir); !maps.EqualFunc(got, members, slices.Equal) {
			t.Fatalf("members after a restart with cluster-init=%v: %v, want %v", clusterInit, got, members)
		}
		if b, err := os.ReadFile(filepath.Join(c1.DataDir, servertoken.File)); err != nil || string(b) != string(tokText) {
			t.Fatalf("token after a restart with cluster-init=%v: %q, %v; want it unchanged", clusterInit, b, err)
		}
		// Still an HA server: its peer port is on the advertise address
		// and it serves the join endpoints.
		if conn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.2", strconv.Itoa(peerPort))); err != nil {
			t.Errorf("after a restart with cluster-init=%v the etcd peer port is not on the advertise address: %v", clusterInit, err)
		} else {
			conn.Close()
		}
		if err := fetchBootstrap(ctx, s1.URL(), c1.DataDir, tok.Secret); err != nil {
			t.Errorf("after a restart with cluster-init=%v the join endpoints are not served: %v", clusterInit, err)
		}
		eventually(ctx, t, "write through the restarted server", func() error { return createCM(ctx, s1.Client, name) })
		eventually(ctx, t, "the joined server reads it", func() error { return getCM(ctx, s2.Client, name) })
		if err := createCM(ctx, s2.Client, name+"-joined"); err != nil {
			t.Fatal(err)
		}
		eventually(ctx, t, "the restarted server reads the joined one's write", func() error { return getCM(ctx, s1.Client, name+"-joined") })
		if err := getCM(ctx, s1.Client, "before-ha"); err != nil {
			t.Fatal(err)
		}
	}
	restart(true, "again-cluster-init")
	restart(false, "without-cluster-init")
}

// fetchBootstrap asks a server for the cluster material with a token's
// secret, as a joining server does.
func fetchBootstrap(ctx context.Context, url, dataDir, secret string) error {
	caPEM, err := os.ReadFile(filepath.Join(dataDir, "tls/server-ca.crt"))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/skiff/v1/server/bootstrap", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "server-ca.key") {
		return fmt.Errorf("%s: %.200s", resp.Status, body)
	}
	return nil
}
