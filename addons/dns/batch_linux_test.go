package dns

import (
	"maps"
	"net"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestBatchAllocationFree: receiving a batch of repeated queries (cluster
// names and a forwarded name from the cache), answering and sending it
// allocates nothing.
func TestBatchAllocationFree(t *testing.T) {
	up := startUpstream(t)
	h, _ := forwardingHandler(t, up, 100)
	addr := listenTest(t, h, "127.0.0.1:0")
	names := []string{"web.ns1.svc.cluster.local.", "dual.ns1.svc.cluster.local.", "nope.ns1.svc.cluster.local.", "www.example.org."}
	var pkts [][]byte
	for _, n := range names {
		m := new(mdns.Msg)
		m.SetQuestion(n, mdns.TypeA)
		for range 2 { // a forwarded name reaches the fast path from its first cache hit
			query(t, addr, n, mdns.TypeA)
		}
		b, _ := m.Pack()
		pkts = append(pkts, b)
	}

	// The listener counts an answer after sending it: wait until the
	// warm-up's are all counted, so that what follows counts only the
	// batches below.
	value := func(c prometheus.Collector) float64 {
		ch := make(chan prometheus.Metric, 1)
		c.Collect(ch)
		var m dto.Metric
		if err := (<-ch).Write(&m); err != nil {
			t.Fatal(err)
		}
		if m.Histogram != nil {
			return float64(m.Histogram.GetSampleCount())
		}
		return m.GetCounter().GetValue()
	}
	// What the batches below must add to each series. The warm-up's own
	// counts are left out: under load a warm-up query can be retried or
	// wait for its forward, and count otherwise than once.
	counted := map[string]prometheus.Collector{
		"udp requests":       h.m.requests.WithLabelValues("udp"),
		"NXDOMAIN responses": h.m.responses.WithLabelValues("NXDOMAIN"),
		"cache hits":         h.m.cacheHits,
		"forward latencies":  h.m.latency.WithLabelValues(srcForward).(prometheus.Histogram),
		"cluster latencies":  h.m.latency.WithLabelValues(srcCluster).(prometheus.Histogram),
	}
	snapshot := func() map[string]float64 {
		out := map[string]float64{}
		for what, c := range counted {
			out[what] = value(c)
		}
		return out
	}
	warm := 2 * len(names)
	before := snapshot()
	for deadline := time.Now().Add(5 * time.Second); ; {
		time.Sleep(20 * time.Millisecond)
		now := snapshot()
		if now["udp requests"] >= float64(warm) && maps.Equal(now, before) {
			break // every warm-up answer counted, and nothing moving
		}
		if time.Now().After(deadline) {
			t.Fatalf("warm-up: counts still moving or short after 5 s: %v, want %d UDP requests", now, warm)
		}
		before = now
	}

	// A batch socket of its own, read by the test.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b, err := newBatchConn(h, pc.(*net.UDPConn), false)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	client, err := net.Dial("udp", b.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	buf := make([]byte, 4096)
	fastBefore := h.fast.hits.Load()
	runs := 0
	allocs := testing.AllocsPerRun(50, func() {
		runs++
		for _, p := range pkts {
			if _, err := client.Write(p); err != nil {
				t.Fatal(err)
			}
		}
		for got := 0; got < len(pkts); {
			n, err := b.recv()
			if err != nil {
				t.Fatal(err)
			}
			b.pending, b.pend = b.pending[:0], 0
			b.answer(n)
			if len(b.pending) != 0 {
				t.Fatalf("%d datagrams missed the fast path", len(b.pending))
			}
			got += n
		}
		for range pkts {
			if _, err := client.Read(buf); err != nil {
				t.Fatal(err)
			}
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per batch of %d answers", allocs, len(pkts))
	}
	if got := h.fast.hits.Load() - fastBefore; got != int64(runs*len(pkts)) {
		t.Fatalf("fast answers %d, want %d", got, runs*len(pkts))
	}
	// Counted in the metrics as the full path counts: every UDP answer a
	// request, an rcode and a latency by source; forwarded ones cache hits.
	after := snapshot()
	for what, n := range map[string]int{
		"udp requests":       runs * len(pkts),
		"NXDOMAIN responses": runs,
		"cache hits":         runs,
		"forward latencies":  runs,
		"cluster latencies":  3 * runs,
	} {
		if got := after[what] - before[what]; got != float64(n) {
			t.Errorf("%s: %v more, want %d", what, got, n)
		}
	}
}
