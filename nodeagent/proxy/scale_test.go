package proxy

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// scaleServicePorts is n services × 5 endpoints.
func scaleServicePorts(n int) []*ServicePort {
	sps := make([]*ServicePort, n)
	for i := range sps {
		var eps []Endpoint
		for j := 0; j < 5; j++ {
			eps = append(eps, Endpoint{IP: net.IPv4(10, 42, byte(i>>8), byte(j*50+i%50)).To4(), Port: 8080})
		}
		sps[i] = &ServicePort{Namespace: "bench", Name: fmt.Sprintf("svc-%d", i), Protocol: corev1.ProtocolTCP,
			ClusterIP: net.IPv4(10, 43, byte(i>>8), byte(i)).To4(), Port: 80, Cluster: eps, All: eps, HasEndpoints: true}
	}
	return sps
}

// TestFullSyncScale programs N services × 5 endpoints into the kernel
// (SKIFF_PROXY_SCALE=N; skipped otherwise) and reports how long a full
// sync from empty, a partial sync after one endpoint change and a full
// resync take. It asserts only that the kernel accepts the transactions
// (large maps once overflowed a netlink attribute); speed is measured by
// `skiff-bench proxy`.
func TestFullSyncScale(t *testing.T) {
	needRoot(t)
	n, _ := strconv.Atoi(os.Getenv("SKIFF_PROXY_SCALE"))
	if n <= 0 {
		t.Skip("set SKIFF_PROXY_SCALE=<services> to measure")
	}
	table := fmt.Sprintf("skiff_proxy_s%d", os.Getpid())
	c, err := newConn("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = deleteTable(c, table); _ = c.CloseLasting() })
	sps := scaleServicePorts(n)
	s := &syncer{cfg: Config{Table: table, LocalhostNodePorts: true}}
	start := time.Now()
	if _, err := s.sync(stage(t), sps, true); err != nil {
		t.Fatal(err)
	}
	empty := time.Since(start)
	sps[0] = scaleServicePorts(1)[0]
	sps[0].Cluster = sps[0].Cluster[:4]
	sps[0].All = sps[0].Cluster
	start = time.Now()
	st, err := s.sync(stage(t), sps, false)
	if err != nil {
		t.Fatal(err)
	}
	partial := time.Since(start)
	if st.Full || st.Changed != 1 {
		t.Fatalf("partial sync: %+v", st)
	}
	start = time.Now()
	if _, err := s.sync(stage(t), sps, true); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d services x 5 endpoints: full sync from empty %v, partial sync after one endpoint change %v, full resync %v",
		n, empty, partial, time.Since(start))
}
