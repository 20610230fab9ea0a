package server_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/addons/federation"
	"github.com/skiffhq/skiff/controlplane/servertoken"
	"github.com/skiffhq/skiff/internal/testserver"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// federationHolder returns the address of the server holding the Lease
// kube-system/skiff-federation (holders are <advertise address>_<uuid>).
func federationHolder(ctx context.Context, cs kubernetes.Interface) (string, error) {
	l, err := cs.CoordinationV1().Leases(metav1.NamespaceSystem).Get(ctx, "skiff-"+federation.Name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
		return "", fmt.Errorf("lease %s has no holder", l.Name)
	}
	ip, _, _ := strings.Cut(*l.Spec.HolderIdentity, "_")
	return ip, nil
}

// federationRunsOnlyOn checks that, of servers (by address), the
// federation add-on runs (is Ready) on the holder of its Lease alone, and
// returns that holder.
func federationRunsOnlyOn(ctx context.Context, cs kubernetes.Interface, servers map[string]*testserver.Server) (string, error) {
	holder, err := federationHolder(ctx, cs)
	if err != nil {
		return "", err
	}
	var running []string
	for ip, s := range servers {
		if s.Federation() == nil {
			return "", fmt.Errorf("server %s does not have the federation add-on", ip)
		}
		if s.Federation().Ready() {
			running = append(running, ip)
		}
	}
	slices.Sort(running)
	if _, ok := servers[holder]; !ok || len(running) != 1 || running[0] != holder {
		return "", fmt.Errorf("federation runs on %v, its Lease is held by %s; want it on the holder alone, one of %d live servers", running, holder, len(servers))
	}
	return holder, nil
}

// TestHAFederationElected runs three HA servers with --enable federation:
// the add-on runs on one server only, the holder of the Lease
// kube-system/skiff-federation, and moves to another live server when
// that one stops; when its holder loses the Lease it stops, and runs
// again once a server holds the Lease again.
func TestHAFederationElected(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ips := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
	port := testserver.SharedPort(t, ips...)
	c1 := haConfig(t)
	c1.ClusterInit, c1.HTTPSPort, c1.Enable = true, port, []string{federation.Name}
	servers := map[string]*testserver.Server{ips[0]: testserver.StartWith(t, c1)}
	tokText, err := os.ReadFile(filepath.Join(c1.DataDir, servertoken.File))
	if err != nil {
		t.Fatalf("the first server stores its token: %v", err)
	}
	tok, err := servertoken.Parse(string(tokText))
	if err != nil {
		t.Fatal(err)
	}
	for _, ip := range ips[1:] {
		c := haConfig(t)
		c.JoinServer, c.Token, c.Enable = servers[ips[0]].URL(), tok.String(), []string{federation.Name}
		c.BindAddress, c.AdvertiseAddress, c.HTTPSPort = ip, ip, port
		servers[ip] = testserver.StartWith(t, c)
	}

	var holder string
	eventually(ctx, t, "federation runs on one server, the Lease holder", func() (err error) {
		holder, err = federationRunsOnlyOn(ctx, servers[ips[0]].Client, servers)
		return err
	})
	// And keeps to it: no other server starts it meanwhile.
	for range 10 {
		time.Sleep(300 * time.Millisecond)
		if h, err := federationRunsOnlyOn(ctx, servers[ips[0]].Client, servers); err != nil || h != holder {
			t.Fatalf("federation moved from %s without a reason: %s %v", holder, h, err)
		}
	}
	t.Logf("federation runs on %s", holder)

	// The holder stops: another live server takes the Lease and runs it.
	gone := servers[holder]
	delete(servers, holder)
	gone.Stop()
	if gone.Federation().Ready() {
		t.Error("federation still ready on the stopped server")
	}
	var other *testserver.Server
	for _, s := range servers {
		other = s
	}
	var next string
	eventually(ctx, t, "federation moves to a live server", func() (err error) {
		next, err = federationRunsOnlyOn(ctx, other.Client, servers)
		return err
	})
	if next == holder {
		t.Fatalf("federation still on the stopped server %s", holder)
	}
	t.Logf("federation moved from %s to %s", holder, next)

	// The holder loses the Lease (another identity writes it): it stops
	// the add-on, and no server runs it while the Lease is held elsewhere.
	leases := other.Client.CoordinationV1().Leases(metav1.NamespaceSystem)
	setHolder := func(holder string) func() error {
		return func() error {
			l, err := leases.Get(ctx, "skiff-"+federation.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			now := metav1.NewMicroTime(time.Now())
			l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.RenewTime, l.Spec.AcquireTime = &holder, ptr.To[int32](120), &now, &now
			_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
			return err
		}
	}
	eventually(ctx, t, "take the Lease", setHolder("intruder"))
	eventually(ctx, t, "federation stops when its holder loses the Lease", func() error {
		for ip, s := range servers {
			if s.Federation().Ready() {
				return fmt.Errorf("still running on %s", ip)
			}
		}
		return nil
	})
	// Released: a server takes it and runs the add-on again (perhaps the
	// one that lost it: a second run in one process).
	eventually(ctx, t, "release the Lease", setHolder(""))
	eventually(ctx, t, "federation runs again on one server, the Lease holder", func() (err error) {
		next, err = federationRunsOnlyOn(ctx, other.Client, servers)
		return err
	})
	t.Logf("federation runs again on %s", next)
}
