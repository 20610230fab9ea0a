package backend_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestScaleMeasurement (SKIFF_DASHBOARD_SCALE=N, off by default) creates N
// pods and measures, through the real websocket: time to the first
// filtered page, API write → delta message latency, and heap growth with
// the shared cache loaded. It prints one JSON object; it asserts only
// correctness (a page of 100 rows of N, the delta arriving), not speed.
func TestScaleMeasurement(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SKIFF_DASHBOARD_SCALE"))
	if n <= 0 {
		t.Skip("set SKIFF_DASHBOARD_SCALE=N to measure with N pods")
	}
	e := start(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p-%05d", i), Namespace: "team", Labels: map[string]string{"app": fmt.Sprintf("a%d", i%10)}},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
				if _, err := e.ts.Client.CoreV1().Pods("team").Create(ctx, p, metav1.CreateOptions{}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	c := e.login(adminToken).ws(t)
	t0 := time.Now()
	c.send(sub("p", "pods", "team", map[string]any{"page": map[string]any{"limit": 100}}))
	m := c.next("first page", func(m msg) bool { return m.Type == "page" })
	firstPage := time.Since(t0)
	if m.Total != n || len(m.Order) != 100 {
		t.Fatalf("first page: total %d rows %d", m.Total, len(m.Order))
	}
	t1 := time.Now()
	c.send(sub("p", "pods", "team", map[string]any{"filter": map[string]any{"labels": "app=a3", "text": "p-0"}, "sort": map[string]any{"by": "name", "desc": true}, "page": map[string]any{"limit": 100}}))
	c.next("filtered page", func(m msg) bool { return m.Type == "page" })
	filtered := time.Since(t1)

	// Write → delta: a new pod sorting first (desc) in the filtered view.
	var lat []time.Duration
	for i := range 5 {
		name := fmt.Sprintf("p-0999%d", i)
		ts := time.Now()
		if _, err := e.ts.Client.CoreV1().Pods("team").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "team", Labels: map[string]string{"app": "a3"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		c.next("delta", func(m msg) bool { return m.Type == "page" && contains(upsertNames(m), name) })
		lat = append(lat, time.Since(ts))
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	out, _ := json.Marshal(map[string]any{
		"pods": n, "firstPageMs": firstPage.Milliseconds(), "filteredPageMs": filtered.Milliseconds(),
		"writeToDeltaMs": func() []int64 {
			var r []int64
			for _, d := range lat {
				r = append(r, d.Milliseconds())
			}
			return r
		}(),
		"heapGrowthMiB": (int64(after.HeapAlloc) - int64(before.HeapAlloc)) >> 20,
	})
	t.Logf("%s", out)
}
