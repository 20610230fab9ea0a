package hollow

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/skiffhq/skiff/nodeagent/stats"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// processStart stands in for the hollow nodes' boot time.
var processStart = time.Now()

// statsIndex groups running pods by node; rebuilt at most once a second
// so a scrape round over every node scans the pod cache once.
type statsIndex struct {
	mu    sync.Mutex
	built time.Time
	pods  map[string][]stats.SyntheticPod
}

var statsIndexes sync.Map // *Cluster → *statsIndex

func (c *Cluster) podsByNode(now time.Time) map[string][]stats.SyntheticPod {
	v, _ := statsIndexes.LoadOrStore(c, &statsIndex{})
	ix := v.(*statsIndex)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.pods != nil && now.Sub(ix.built) < time.Second {
		return ix.pods
	}
	out := map[string][]stats.SyntheticPod{}
	for _, o := range c.pods.List() {
		p, ok := o.(*corev1.Pod)
		if !ok || p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil || c.nodes[p.Spec.NodeName] == nil {
			continue
		}
		sp := stats.SyntheticPod{Namespace: p.Namespace, Name: p.Name, UID: string(p.UID), StartTime: now}
		if p.Status.StartTime != nil {
			sp.StartTime = p.Status.StartTime.Time
		}
		for _, ct := range p.Spec.Containers {
			sp.Containers = append(sp.Containers, ct.Name)
		}
		out[p.Spec.NodeName] = append(out[p.Spec.NodeName], sp)
	}
	ix.pods, ix.built = out, now
	return out
}

// Summary is node's stats summary: SYNTHETIC numbers (see
// stats.Synthetic) for the pods it runs, so the metrics pipeline can be
// exercised at scale. ok is false for a node this cluster does not run.
func (c *Cluster) Summary(node string, now time.Time) (*statsv1alpha1.Summary, bool) {
	if c.nodes[node] == nil {
		return nil, false
	}
	cpu := resource.MustParse(c.opts.CPU)
	mem := resource.MustParse(c.opts.Memory)
	return stats.Synthetic(stats.SyntheticNode{Name: node, StartTime: processStart, CPUCores: cpu.AsApproximateFloat64(), MemoryBytes: uint64(mem.Value())},
		c.podsByNode(now)[node], now), true
}

// StatsHandler serves every node's summary at /<node>/stats/summary
// (hollow nodes have no agent API of their own; point the metrics add-on's
// scraper here). It does no authentication: bind it to loopback.
func (c *Cluster) StatsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		node, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		if rest != "stats/summary" || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		s, ok := c.Summary(node, time.Now())
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s)
	})
}
