package server_test

import (
	"bufio"
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/etcdclient"
	"github.com/skiffhq/skiff/internal/testserver"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// TestEmbeddedEtcdInProcessClient: with the embedded etcd the server's
// storage talks to it in-process: its etcd client has no gRPC connection,
// and after a create, a watch and a consistent list through the API no TCP
// connection leads to the etcd client port (which stays for the operator
// commands, see TestEmbeddedEtcdMutualTLS).
func TestEmbeddedEtcdInProcessClient(t *testing.T) {
	ts := testserver.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if ts.Store().Client().ActiveConnection() != nil {
		t.Fatal("the server's etcd client has a gRPC connection: want the in-process client of the embedded etcd")
	}
	cms := ts.Client.CoreV1().ConfigMaps("default")
	w, err := cms.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=inproc"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "inproc"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-w.ResultChan():
		if ev.Type != watch.Added {
			t.Fatalf("watch event %s %v, want ADDED", ev.Type, ev.Object)
		}
	case <-ctx.Done():
		t.Fatal("no watch event for the created ConfigMap")
	}
	if l, err := cms.List(ctx, metav1.ListOptions{}); err != nil || len(l.Items) == 0 {
		t.Fatalf("consistent list: %v %v", err, l)
	}

	info, err := etcdclient.Read(ts.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(info.Endpoints[0])
	if err != nil {
		t.Fatal(err)
	}
	if n := establishedTo(t, u.Port()); n > 0 {
		t.Fatalf("%d TCP connections of this process to the etcd client port %s: the server dials etcd over the network", n, u.Port())
	}
}

// establishedTo counts the established TCP connections (IPv4 and IPv6) of
// this network namespace whose remote port is port.
func establishedTo(t *testing.T, port string) int {
	t.Helper()
	var p int
	if _, err := fmt.Sscan(port, &p); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(":%04X", p)
	n := 0
	for _, f := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			// sl local_address rem_address st ...; st 01 = ESTABLISHED
			if len(fields) > 3 && strings.HasSuffix(fields[2], want) && fields[3] == "01" {
				n++
			}
		}
		fh.Close()
	}
	return n
}
