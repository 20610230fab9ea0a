package dns

import (
	"fmt"
	"runtime"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// TestTableMemory10k loads 10,000 services (8,000 ClusterIP with two
// named ports, 2,000 headless with three endpoints) in batches, as the
// watcher does, and bounds the record table's heap. Informer caches (the
// Service and EndpointSlice objects themselves) are not counted.
func TestTableMemory10k(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 10,000 services")
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	tb := newTable("cluster.local.")
	batch := map[string]*service{}
	for i := range 10000 {
		ns := fmt.Sprintf("ns%d", i%100)
		name := fmt.Sprintf("svc-%d", i)
		var s *service
		if i%5 == 0 {
			hl := svc(ns, name, func(s *corev1.Service) { s.Spec.ClusterIP = corev1.ClusterIPNone })
			var eps []discoveryv1.Endpoint
			for j := range 3 {
				eps = append(eps, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.42.%d.%d", i/250, (i%250)+j)}})
			}
			s = buildService(hl, []*discoveryv1.EndpointSlice{slice(ns, name, []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(80))}}, eps...)})
		} else {
			s = buildService(svc(ns, name, func(s *corev1.Service) {
				s.Spec.ClusterIP = fmt.Sprintf("10.43.%d.%d", i/250, i%250+1)
				s.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80}, {Name: "grpc", Port: 9090}}
			}), nil)
		}
		batch[ns+"/"+name] = s
		if len(batch) == 500 {
			tb.apply(batch, nil)
			batch = map[string]*service{}
		}
	}
	tb.apply(batch, nil)
	used := heap() - before
	if n := len(tb.load().services); n != 10000 {
		t.Fatalf("%d services in the table", n)
	}
	t.Logf("record table for 10,000 services: %.1f MiB heap", float64(used)/(1<<20))
	if used > 50<<20 {
		t.Fatalf("record table uses %d MiB, want < 50 MiB", used>>20)
	}
	runtime.KeepAlive(tb)
}
