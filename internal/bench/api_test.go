package bench

import (
	"context"
	"encoding/json"
	"math"
	"testing"
	"time"
)

// TestAPIEmbeddedSmoke runs every phase with tiny numbers against an
// in-process server and checks the JSON result is complete. It asserts
// shape and sanity, not speed.
func TestAPIEmbeddedSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := API(ctx, Options{
		Embedded:      true,
		Clients:       2,
		Count:         20,
		Rounds:        2,
		Objects:       20,
		ListRuns:      2,
		PageLimit:     7,
		Watchers:      10,
		WatchConns:    2,
		WatchWrites:   3,
		FloodRequests: 40,
		FloodWorkers:  4,
		FloodSources:  3,
		Progress:      testWriter{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", b)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["benchmark"] != "api" || m["server"] != "skiff-embedded" {
		t.Errorf("benchmark/server = %v/%v", m["benchmark"], m["server"])
	}
	positive := []string{
		"idle_rss_mib", "host.cpus", "host.process_cpu_sec",
		"create.ops_per_sec", "create.p50_ms", "create.p99_ms", "create.etcd_ops_per_sec", "create.ratio_vs_etcd", "create.value_bytes",
		"create_pods.ops_per_sec",
		"get.ops_per_sec", "get.p50_ms", "get.etcd_ops_per_sec", "get.ratio_vs_etcd",
		"update.ops_per_sec", "update.p99_ms", "update.etcd_ops_per_sec", "update.ratio_vs_etcd",
		"list_10k.p50_ms", "list_10k.p99_ms", "list_10k.paginated_p50_ms", "list_10k.etcd_p50_ms", "list_10k.client_go_decoded_p50_ms", "list_10k.bytes",
		"watch_fanout.p50_ms", "watch_fanout.p99_ms", "watch_fanout.last_watcher_p99_ms", "watch_fanout.etcd_p99_ms",
		"bad_token_flood.baseline_valid_p50_ms", "bad_token_flood.flood_valid_p99_ms", "bad_token_flood.p99_ratio",
	}
	for _, path := range positive {
		if v := lookup(m, path); !(v > 0) {
			t.Errorf("%s = %v, want > 0", path, v)
		}
	}
	exact := map[string]float64{
		"create.ops":                     40, // 2 rounds of 20
		"create.errors":                  0,
		"update.errors":                  0,
		"list_10k.objects":               20,
		"list_10k.pages":                 3, // 20 pods, 7 a page
		"watch_fanout.watchers":          10,
		"watch_fanout.connections":       2,
		"watch_fanout.writes":            3,
		"watch_fanout.missed":            0,
		"bad_token_flood.bad_requests":   40,
		"bad_token_flood.bad_status.401": 40,
		"bad_token_flood.flood_sources":  1,
		// The second flood, one connection from each of 3 addresses.
		"bad_token_flood.spread.bad_requests":   40,
		"bad_token_flood.spread.bad_status.401": 40,
		"bad_token_flood.spread.flood_sources":  3,
		// Each client keeps one connection; watchers share WatchConns.
		"connections_opened.create": 0,
		"connections_opened.watch":  2,
		"connections_opened.flood":  4 + 3,
	}
	for path, want := range exact {
		if v := lookup(m, path); v != want {
			t.Errorf("%s = %v, want %v", path, v, want)
		}
	}
	for _, k := range []string{"create_ge_50pct_etcd", "list_10k_p50_under_300ms", "watch_fanout_p99_under_100ms", "idle_rss_under_100mib", "bad_token_flood_p99_under_2x"} {
		if _, ok := res.Targets[k]; !ok {
			t.Errorf("targets has no %s: %v", k, res.Targets)
		}
		if res.Measured[k] <= 0 {
			t.Errorf("target_values[%s] = %v, want > 0", k, res.Measured[k])
		}
	}
}

// lookup returns the number at a dotted path of a decoded JSON object
// (NaN when absent).
func lookup(m map[string]any, path string) float64 {
	var cur any = m
	start := 0
	for i := 0; i <= len(path); i++ {
		if i < len(path) && path[i] != '.' {
			continue
		}
		obj, ok := cur.(map[string]any)
		if !ok {
			return math.NaN()
		}
		cur, ok = obj[path[start:i]]
		if !ok {
			return math.NaN()
		}
		start = i + 1
	}
	f, ok := cur.(float64)
	if !ok {
		return math.NaN()
	}
	return f
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", p)
	return len(p), nil
}

func TestMedian(t *testing.T) {
	in := []float64{5, 1, 3}
	for _, c := range []struct {
		xs   []float64
		want float64
	}{{nil, 0}, {in, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := Median(c.xs); got != c.want {
			t.Errorf("Median(%v) = %v, want %v", c.xs, got, c.want)
		}
	}
	if in[0] != 5 {
		t.Errorf("Median sorted its argument: %v", in)
	}
}
