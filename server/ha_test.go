package server_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/servertoken"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/nodeagent/failover"
	"github.com/skiffhq/skiff/nodeagent/hollow"
	"github.com/skiffhq/skiff/server"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

func haConfig(t *testing.T) server.Config {
	return server.Config{DataDir: t.TempDir(), BindAddress: "127.0.0.1", AdvertiseAddress: "127.0.0.1", DisableAgent: true,
		DNSListenAddress: "127.0.0.1:0", Disable: []string{"etcd-snapshot"}, EtcdLogLevel: "fatal"}
}

// memberNames lists the etcd members (see etcdMembers), sorted.
func memberNames(ctx context.Context, t *testing.T, dataDir string) []string {
	t.Helper()
	return slices.Sorted(maps.Keys(etcdMembers(ctx, t, dataDir)))
}

// eventually retries f until it succeeds or ctx ends (then it fails t).
func eventually(ctx context.Context, t *testing.T, what string, f func() error) {
	t.Helper()
	for {
		err := f()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func createCM(ctx context.Context, cs kubernetes.Interface, name string) error {
	_, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"k": name}}, metav1.CreateOptions{})
	return err
}

func getCM(ctx context.Context, cs kubernetes.Interface, name string) error {
	cm, err := cs.CoreV1().ConfigMaps("default").Get(ctx, name, metav1.GetOptions{})
	if err == nil && cm.Data["k"] != name {
		err = fmt.Errorf("configmap %s has data %v", name, cm.Data)
	}
	return err
}

// TestHAEmbeddedEtcd forms a cluster of three servers on loopback
// (--cluster-init, then two joins with the first server's token), with
// bad joins refused on the way; checks that writes through any server are
// read through the others, that two servers keep serving when one stops,
// and that the last one alone refuses writes.
func TestHAEmbeddedEtcd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Each server on its own loopback address, all on one port, as
	// servers on separate machines: the `kubernetes` Endpoints list
	// addresses with one port.
	port := testserver.SharedPort(t, "127.0.0.1", "127.0.0.2", "127.0.0.3")
	c1 := haConfig(t)
	c1.ClusterInit, c1.HTTPSPort = true, port
	// One cluster DNS port for all, as for the API.
	dnsPort := testserver.SharedPort(t, "127.0.0.11", "127.0.0.12", "127.0.0.13")
	c1.DNSPort = dnsPort
	s1 := testserver.StartWith(t, c1)
	tokText, err := os.ReadFile(filepath.Join(c1.DataDir, servertoken.File))
	if err != nil {
		t.Fatalf("the first server stores its token: %v", err)
	}
	tok, err := servertoken.Parse(string(tokText))
	if err != nil {
		t.Fatal(err)
	}

	// Bad joins: a clear error, no member added, no file left behind.
	wrongCA := tok
	wrongCA.CAHash = strings.Repeat("0", 64)
	wrongSecret := tok
	wrongSecret.Secret = strings.Repeat("f", 32)
	// A peer port already taken: etcd fails to start after the member was
	// added, and the join removes it again.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, tc := range []struct {
		name, token, want string
		peerPort          int
	}{
		{"wrong CA hash", wrongCA.String(), "is not the one the token names", 0},
		{"wrong secret", wrongSecret.String(), "server token rejected", 0},
		{"not a token", "K10abc::server:x", "not a server token", 0},
		{"member added, etcd fails to start", tok.String(), "address already in use", taken.Addr().(*net.TCPAddr).Port},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := haConfig(t)
			c.JoinServer, c.Token, c.EtcdPeerPort = s1.URL(), tc.token, tc.peerPort
			s, err := server.Start(ctx, c)
			if err == nil {
				s.Stop()
				t.Fatal("join succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("join error %q, want it to say %q", err, tc.want)
			}
			if got := memberNames(ctx, t, c1.DataDir); len(got) != 1 {
				t.Errorf("members after a refused join: %v", got)
			}
			// Nothing at all: not the shared CAs, the token or the
			// member, and not the leaf certificates issued for the join.
			if left, _ := os.ReadDir(c.DataDir); len(left) != 0 {
				var names []string
				_ = filepath.WalkDir(c.DataDir, func(p string, d os.DirEntry, err error) error {
					if err == nil && !d.IsDir() {
						names = append(names, strings.TrimPrefix(p, c.DataDir+"/"))
					}
					return nil
				})
				t.Errorf("refused join left %v behind", names)
			}
		})
	}

	join := func(ip string) (*testserver.Server, server.Config) {
		c := haConfig(t)
		c.JoinServer, c.Token = s1.URL(), tok.String()
		c.BindAddress, c.AdvertiseAddress, c.HTTPSPort, c.DNSPort = ip, ip, port, dnsPort
		return testserver.StartWith(t, c), c
	}
	s2, c2 := join("127.0.0.2")
	s3, c3 := join("127.0.0.3")
	if got := memberNames(ctx, t, c3.DataDir); len(got) != 3 {
		t.Fatalf("members: %v, want 3", got)
	}
	for _, c := range []server.Config{c2, c3} {
		if b, err := os.ReadFile(filepath.Join(c.DataDir, "tls/server-ca.crt")); err != nil || !tok.MatchesCA(b) {
			t.Fatalf("a joined server does not hold the cluster CA: %v", err)
		}
	}

	servers := []*testserver.Server{s1, s2, s3}
	for i, w := range servers {
		name := fmt.Sprintf("via-%d", i+1)
		if err := createCM(ctx, w.Client, name); err != nil {
			t.Fatalf("write through server %d: %v", i+1, err)
		}
		for j, r := range servers {
			eventually(ctx, t, fmt.Sprintf("server %d reads what server %d wrote", j+1, i+1), func() error { return getCM(ctx, r.Client, name) })
		}
	}

	// The `kubernetes` Endpoints list the three servers (their identity
	// Leases), and an agent configured with the first alone learns the
	// others from them.
	all := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
	eventually(ctx, t, "the kubernetes endpoints list every server", func() error { return endpointsAre(ctx, s3.Client, all) })

	// Each server's node agent publishes its gateway as a kube-dns
	// endpoint (here a loopback address each): the kube-dns Endpoints list
	// all three, and stay as they are, where each server writing its own
	// had them overwritten by the next without end.
	dnsHosts := []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}
	for i, s := range []*testserver.Server{s1, s2, s3} {
		s.Server.ServeClusterDNS(dnsHosts[i])
	}
	eventually(ctx, t, "the kube-dns endpoints list every server", func() error { return dnsEndpointsAre(ctx, s1.Client, dnsHosts) })
	// A controller that listed the peers just before the last one
	// published may write once more; then nothing changes. (A window
	// of more than one resync of every controller, up to three times.)
	for i := 0; ; i++ {
		before, err := s1.Client.CoreV1().Endpoints("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(12 * time.Second)
		after, err := s1.Client.CoreV1().Endpoints("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if after.ResourceVersion == before.ResourceVersion {
			break
		}
		if i == 2 {
			t.Fatalf("the kube-dns endpoints keep changing without a change of servers: %v -> %v", before.Subsets, after.Subsets)
		}
	}
	agent := startFailoverAgent(ctx, t, s1)
	eventually(ctx, t, "the agent learns every server", func() error {
		if got := agent.b.Servers(); len(got) != 3 {
			return fmt.Errorf("servers %v", got)
		}
		return nil
	})

	// One server down: the other two still serve writes and reads (a
	// write may fail while etcd elects a new leader).
	stopped := time.Now()
	s1.Stop()
	eventually(ctx, t, "write through server 2 with server 1 stopped", func() error { return createCM(ctx, s2.Client, "after-stop") })
	eventually(ctx, t, "server 3 reads it", func() error { return getCM(ctx, s3.Client, "after-stop") })
	if err := createCM(ctx, s3.Client, "after-stop-3"); err != nil {
		t.Fatalf("write through server 3 with server 1 stopped: %v", err)
	}
	eventually(ctx, t, "server 2 reads it", func() error { return getCM(ctx, s2.Client, "after-stop-3") })

	// The agent moved to a live server: its writes succeed, its watch
	// (started through server 1) sees what server 3 wrote after the stop,
	// its node's Lease is renewed, and nothing is left open to server 1.
	agent.failedOver(ctx, t, s1, s2, stopped)
	// Server 1 deleted its identity Lease when it stopped: the endpoints
	// drop it at the next pass.
	eventually(ctx, t, "the endpoints drop the stopped server", func() error { return endpointsAre(ctx, s2.Client, all[1:]) })
	eventually(ctx, t, "the kube-dns endpoints drop the stopped server", func() error { return dnsEndpointsAre(ctx, s2.Client, dnsHosts[1:]) })

	// A minority (server 3 alone) refuses writes. Once its etcd member
	// has lost the leader (it is then not ready), a write is turned away
	// before etcd sees it: 503, and nothing stored. (Before that, a write
	// may be proposed and answer 504, "may or may not have been stored".)
	s2.Stop()
	eventually(ctx, t, "server 3 alone is not ready", func() error {
		if _, err := s3.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx); err == nil {
			return errors.New("ready")
		}
		return nil
	})
	// /readyz fails as soon as its etcd read times out, which can be
	// before the member notices it lost the leader (under load, by
	// seconds): writes until then are proposed and answer 504. Every
	// write must fail, and once the leader is known lost, with a 503.
	for i := 0; ; i++ {
		wctx, wcancel := context.WithTimeout(ctx, 40*time.Second)
		err = createCM(wctx, s3.Client, fmt.Sprintf("minority-%d", i))
		wcancel()
		if err == nil {
			t.Fatal("a server without quorum accepted a write")
		}
		t.Logf("write without quorum: %v", err)
		if apierrors.IsServiceUnavailable(err) && strings.Contains(err.Error(), "no quorum") {
			break
		}
		if !apierrors.IsTimeout(err) || i == 4 {
			t.Fatalf("write without quorum failed with %q, want 503 naming the lost quorum", err)
		}
		time.Sleep(time.Second)
	}

	// Joining a cluster without quorum fails and leaves nothing behind.
	c4 := haConfig(t)
	c4.JoinServer, c4.Token = s3.URL(), tok.String()
	if s, err := server.Start(ctx, c4); err == nil {
		s.Stop()
		t.Fatal("joined a cluster without quorum")
	} else if !strings.Contains(err.Error(), "no quorum") {
		t.Errorf("join without quorum: %q, want it to say so", err)
	}
	if _, err := os.Stat(filepath.Join(c4.DataDir, "tls/server-ca.key")); err == nil {
		t.Error("a join refused for lack of quorum left the cluster CA behind")
	}
}

// endpointsAre checks the addresses of default/kubernetes.
func endpointsAre(ctx context.Context, cs kubernetes.Interface, want []string) error {
	return endpointsOf(ctx, cs, "default", "kubernetes", want)
}

// dnsEndpointsAre checks the addresses of kube-system/kube-dns.
func dnsEndpointsAre(ctx context.Context, cs kubernetes.Interface, want []string) error {
	return endpointsOf(ctx, cs, "kube-system", "kube-dns", want)
}

func endpointsOf(ctx context.Context, cs kubernetes.Interface, ns, name string, want []string) error {
	ep, err := cs.CoreV1().Endpoints(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	var got []string
	for _, ss := range ep.Subsets {
		for _, a := range ss.Addresses {
			got = append(got, a.IP)
		}
	}
	if !slices.Equal(got, want) {
		return fmt.Errorf("endpoints %v, want %v", got, want)
	}
	return nil
}

// failoverAgent is what a node agent runs against the API: a client
// through a failover balancer, a hollow node and a configmap informer.
type failoverAgent struct {
	b     *failover.Balancer
	cs    kubernetes.Interface
	seen  cache.Store
	nodes *hollow.Cluster
}

// startFailoverAgent starts one configured with s alone (learning the
// others), checking health every 200ms.
func startFailoverAgent(ctx context.Context, t *testing.T, s *testserver.Server) *failoverAgent {
	t.Helper()
	rc := rest.CopyConfig(s.Config)
	b, err := failover.Configure(rc, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	bctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Run(bctx, 200*time.Millisecond, failover.Learner(cs), 200*time.Millisecond)
	}()
	nodes, err := hollow.Start(ctx, rc, hollow.Options{Nodes: 1, NamePrefix: "ha-agent-", LeaseInterval: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace("default"))
	inf := f.Core().V1().ConfigMaps().Informer()
	f.Start(bctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("configmap informer did not sync")
	}
	t.Cleanup(func() {
		nodes.Stop()
		cancel()
		f.Shutdown()
		<-done
	})
	return &failoverAgent{b: b, cs: cs, seen: inf.GetStore(), nodes: nodes}
}

func (a *failoverAgent) failedOver(ctx context.Context, t *testing.T, gone, other *testserver.Server, stopped time.Time) {
	t.Helper()
	goneAddr, _ := failover.HostPort(gone.URL())
	eventually(ctx, t, "the agent leaves the stopped server", func() error {
		if cur := a.b.Current(); cur == goneAddr {
			return fmt.Errorf("current %s", cur)
		}
		return nil
	})
	eventually(ctx, t, "a write through the agent's client", func() error { return createCM(ctx, a.cs, "via-agent") })
	eventually(ctx, t, "the agent's watch sees a write made after the stop", func() error {
		if _, ok, _ := a.seen.GetByKey("default/after-stop-3"); !ok {
			return errors.New("not seen")
		}
		return nil
	})
	eventually(ctx, t, "the hollow node's Lease is renewed after the stop", func() error {
		l, err := other.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, "ha-agent-0", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if l.Spec.RenewTime == nil || !l.Spec.RenewTime.After(stopped.Add(time.Second)) {
			return fmt.Errorf("renewed at %v", l.Spec.RenewTime)
		}
		return nil
	})
	if n := a.b.Conns(goneAddr); n != 0 {
		t.Errorf("%d connections still open to the stopped server", n)
	}
}
