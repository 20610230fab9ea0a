package esapi

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiffhq/skiff/addons/logging/store"
)

// discardWriter is a ResponseWriter that keeps only the status.
type discardWriter struct {
	hdr    http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.hdr }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(s int)           { w.status = s }

func processCPU() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// shipperBody appends a _bulk body of n documents as the shipper sends
// them (create actions with 32-hex-digit ids, ~390-byte sources with a
// 100-byte message and the kubernetes block), ids first..first+n-1.
func shipperBody(dst []byte, first, n int) []byte {
	for i := first; i < first+n; i++ {
		dst = fmt.Appendf(dst, `{"create":{"_index":"logs-kubernetes-bench-%d","_id":"%032x"}}`+"\n", i%4, i)
		dst = fmt.Appendf(dst, `{"@timestamp":"2026-12-02T07:00:%02d.%09dZ","stream":"stdout","message":"2026-12-02T07:00:00.000Z info request id=%08d handled GET /api/v1/items path=/items/%04d lorem ipsum","kubernetes":{"namespace_name":"bench","pod_name":"logbench-%d","pod_id":"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0","container_name":"writer","container_image":"docker.io/library/busybox:1.36","host":"node-1","labels":{"app":"logbench","app.kubernetes.io/name":"logbench"}}}`+"\n",
			i/1000%60, i%1000*1000, i, i%1000, i%4)
	}
	return dst
}

// BenchmarkBulkHandler measures a shipper-sized _bulk request (500
// documents, ~240 KiB) through the handler: body read, decode, store.Bulk
// (flatten, id set, head, WAL group commit) and the response, rendered
// with the shipper's filter_path. Heads are not sealed during the run.
func BenchmarkBulkHandler(b *testing.B) {
	b.Run("nosync", func(b *testing.B) { benchBulkHandler(b, true, false) })
	b.Run("fsync", func(b *testing.B) { benchBulkHandler(b, false, false) })
	b.Run("fsync-parallel", func(b *testing.B) { benchBulkHandler(b, false, true) })
}

func benchBulkHandler(b *testing.B, noSync, parallel bool) {
	st, err := store.Open(store.Options{Dir: b.TempDir(), MaxAge: -1, NoSync: noSync, HeadBytes: 4 << 30, FlushInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	h := &Handler{Store: st}
	const batch = 500
	var next atomic.Int64
	one := func(body []byte) []byte {
		first := int(next.Add(batch)) - batch
		body = shipperBody(body[:0], first, batch)
		r := httptest.NewRequest(http.MethodPost, "/_bulk?filter_path=errors,items.*.status,items.*.error", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/x-ndjson")
		w := &discardWriter{hdr: http.Header{}}
		h.ServeHTTP(w, r)
		if w.status != http.StatusOK {
			b.Fatalf("status %d", w.status)
		}
		return body
	}
	b.SetBytes(int64(len(shipperBody(nil, 0, batch))))
	b.ReportAllocs()
	cpu := processCPU()
	if parallel {
		b.RunParallel(func(pb *testing.PB) {
			var body []byte
			for pb.Next() {
				body = one(body)
			}
		})
	} else {
		var body []byte
		for b.Loop() {
			body = one(body)
		}
	}
	b.StopTimer() // not the seal at Close
	// The process's CPU time (user + system, all threads: GC and the
	// WAL's writes included) over the loop: on a shared machine it varies
	// less than the wall time.
	b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "docs/s")
}
