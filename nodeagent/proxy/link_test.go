package proxy

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestClusterIPRoutes: in a network namespace of its own, the ClusterIPs
// become local routes on the holder link (not addresses), follow the
// wanted set, replace addresses an older version left, and go with the
// link; the service CIDR's blackhole route is never touched.
func TestClusterIPRoutes(t *testing.T) {
	needRoot(t)
	ns := fmt.Sprintf("skiff-rt-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	ip := func(args ...string) string {
		t.Helper()
		out, err := ipCmd(ns, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	const link = "svc-test0"
	ip("link", "set", "lo", "up")
	ip("route", "add", "blackhole", "10.43.0.0/16")
	if err := ensureDummyIn(ns, link); err != nil {
		t.Fatal(err)
	}
	ip("address", "add", "10.43.9.9/32", "dev", link) // as an older version did
	routes := func() []string {
		t.Helper()
		have, err := localRoutes(ns, link)
		if err != nil {
			t.Fatal(err)
		}
		out := sortedKeys(have)
		return out
	}
	blackhole := func() {
		t.Helper()
		if out := ip("route", "show", "type", "blackhole"); !strings.Contains(out, "10.43.0.0/16") {
			t.Fatalf("blackhole route gone: %q", out)
		}
	}

	want := map[string]bool{"10.43.0.1": true, "10.43.0.2": true}
	if err := syncAddressesIn(ns, link, nil, want); err != nil {
		t.Fatal(err)
	}
	if got := routes(); !slices.Equal(got, []string{"10.43.0.1", "10.43.0.2"}) {
		t.Fatalf("local routes %v, want 10.43.0.1 and 10.43.0.2", got)
	}
	if addrs, err := linkAddresses(ns, link); err != nil || len(addrs) != 0 {
		t.Fatalf("addresses left on the link: %v %v", addrs, err)
	}
	blackhole()
	if out := ip("route", "get", "10.43.0.2"); !strings.HasPrefix(out, "local ") {
		t.Fatalf("route get 10.43.0.2: %q, want local", out)
	}

	next := map[string]bool{"10.43.0.2": true, "10.43.0.3": true}
	if err := syncAddressesIn(ns, link, want, next); err != nil {
		t.Fatal(err)
	}
	if got := routes(); !slices.Equal(got, []string{"10.43.0.2", "10.43.0.3"}) {
		t.Fatalf("local routes %v, want 10.43.0.2 and 10.43.0.3", got)
	}
	if out, err := ipCmd(ns, "route", "get", "10.43.0.1").CombinedOutput(); err == nil {
		t.Fatalf("10.43.0.1 still routed after removal: %s", out)
	}
	blackhole()
	// A caller that believes in a route the kernel does not have (gone
	// behind its back) still converges: deleting it is no error.
	if err := syncAddressesIn(ns, link, map[string]bool{"10.43.0.2": true, "10.43.0.3": true, "10.43.0.8": true}, next); err != nil {
		t.Fatalf("deleting a missing route: %v", err)
	}
	if err := writeRoutes(ns, link, []string{"10.43.0.300"}, nil); err == nil {
		t.Fatal("a bad address was accepted")
	}
	if err := writeRoutes(ns, "svc-nosuch0", []string{"10.43.0.4"}, nil); err == nil {
		t.Fatal("routes through a missing link were accepted")
	}
	// Read back from the kernel when the caller knows nothing.
	if err := syncAddressesIn(ns, link, nil, map[string]bool{"10.43.0.3": true}); err != nil {
		t.Fatal(err)
	}
	if got := routes(); !slices.Equal(got, []string{"10.43.0.3"}) {
		t.Fatalf("local routes %v, want 10.43.0.3", got)
	}

	if err := deleteDummy(ns, link); err != nil {
		t.Fatal(err)
	}
	if out := ip("-4", "route", "show", "table", "local", "type", "local"); strings.Contains(out, "10.43.") {
		t.Fatalf("ClusterIP routes outlived the link: %q", out)
	}
	blackhole()
}
