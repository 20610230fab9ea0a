package metrics

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/skiffhq/skiff/nodeagent/stats"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// encodedScraper decodes pre-encoded summaries (the JSON a hollow node's
// summary server sends), so a round's cost is the collector's: decoding,
// rates, the snapshot and the history. HTTP and TLS are not included.
type encodedScraper struct {
	round  atomic.Int64
	bodies []map[string][]byte // per round, node → body
}

func (s *encodedScraper) Scrape(_ context.Context, n *corev1.Node) (*Summary, error) {
	return decodeSummary(bytes.NewReader(s.bodies[s.round.Load()][n.Name]))
}

// scaleCollector builds a collector over nodes×podsPerNode synthetic pods
// (one container each) with rounds pre-encoded rounds 15 s apart.
func scaleCollector(tb testing.TB, nodes, podsPerNode, rounds int) (*Collector, *encodedScraper) {
	tb.Helper()
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	start := time.Now().Add(-time.Hour)
	sc := &encodedScraper{bodies: make([]map[string][]byte, rounds)}
	for r := range sc.bodies {
		sc.bodies[r] = make(map[string][]byte, nodes)
	}
	for i := 0; i < nodes; i++ {
		name := fmt.Sprintf("hollow-node-%d", i)
		_ = idx.Add(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}})
		pods := make([]stats.SyntheticPod, podsPerNode)
		for j := range pods {
			pods[j] = stats.SyntheticPod{Namespace: fmt.Sprintf("ns-%d", j%20), Name: fmt.Sprintf("p-%d-%d", i, j), UID: fmt.Sprintf("uid-%d-%d", i, j),
				Containers: []string{"c"}, StartTime: start}
		}
		for r := 0; r < rounds; r++ {
			s := stats.Synthetic(stats.SyntheticNode{Name: name, StartTime: start, CPUCores: 4, MemoryBytes: 16 << 30}, pods, time.Now().Add(time.Duration(r)*15*time.Second))
			b, err := json.Marshal(s)
			if err != nil {
				tb.Fatal(err)
			}
			sc.bodies[r][name] = b
		}
	}
	c := testCollector(tb, sc, idx, nil)
	return c, sc
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkScrapeRound1000Nodes30Pods is one scrape round over 1,000
// nodes × 30 pods (decode, rates, snapshot, history); it reports the CPU
// time of a round (all cores) beside the wall time. Target: < 1 s of CPU.
func BenchmarkScrapeRound1000Nodes30Pods(b *testing.B) {
	const rounds = 4
	c, sc := scaleCollector(b, 1000, 30, rounds)
	ctx := context.Background()
	c.round(ctx) // first round: no rates yet
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		sc.round.Store(int64(1 + i%(rounds-1)))
		c.round(ctx)
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/1e6, "cpu-ms/round")
	if n := len(c.Latest().Pods); n != 30000 {
		b.Fatalf("%d pods in the snapshot", n)
	}
}

// TestHistoryMemory30000Pods measures an hour (240 rounds) of history for
// 1,000 nodes, 30,000 pods of one container, 20 namespaces and 3,000
// workloads and checks it stays under the 200 MiB target. Rings are
// allocated whole when a series appears, so a few rounds cost what a full
// hour does; SKIFF_METRICS_FULL_HOUR=1 writes all 240.
func TestHistoryMemory30000Pods(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 73,000 series × 240 rounds")
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	h := NewHistory(240)
	pods := make([]string, 30000)
	ctrs := make([]string, 30000)
	wls := make([]string, 30000)
	for i := range pods {
		pods[i] = fmt.Sprintf("ns-%d/pod-%d", i%20, i)
		ctrs[i] = pods[i] + "/c"
		wls[i] = fmt.Sprintf("ns-%d/Deployment/d-%d", i%20, i%3000)
	}
	nodes := make([]string, 1000)
	for i := range nodes {
		nodes[i] = fmt.Sprintf("hollow-node-%d", i)
	}
	t0 := time.Now()
	rounds := 3
	if os.Getenv("SKIFF_METRICS_FULL_HOUR") != "" {
		rounds = 240
	}
	var cpu0 = cpuTime()
	for r := 0; r < rounds; r++ {
		h.Write(t0.Add(time.Duration(r)*15*time.Second), func(b Batch) {
			for _, n := range nodes {
				b.Put(KindNode, n, 2.5, 8<<30)
			}
			for i, p := range pods {
				b.Put(KindPod, p, 0.1, 64<<20)
				b.Put(KindContainer, ctrs[i], 0.1, 64<<20)
				b.Add(KindNamespace, p[:4], 0.1, 64<<20)
				b.Add(KindWorkload, wls[i], 0.1, 64<<20)
			}
		})
	}
	perRound := (cpuTime() - cpu0) / time.Duration(rounds)
	runtime.GC()
	runtime.ReadMemStats(&after)
	mib := float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)
	series := 0
	for k := Kind(0); k < numKinds; k++ {
		series += h.Len(k)
	}
	t.Logf("history: %d series × %d rounds = %.1f MiB (%.0f bytes/series); recording one round: %v CPU", series, h.Size(), mib, mib*(1<<20)/float64(series), perRound)
	if got := len(h.Series(KindPod, pods[0])); got != rounds {
		t.Fatalf("%d points kept", got)
	}
	if mib > 200 {
		t.Errorf("history uses %.1f MiB, target < 200 MiB", mib)
	}
	runtime.KeepAlive(h)
}
