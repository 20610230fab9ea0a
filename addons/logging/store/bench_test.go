package store

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"
)

// BenchmarkBulk measures store.Bulk (flatten, id check, head, WAL group
// commit with fsync) for 100-byte log lines in batches of 1000.
func BenchmarkBulk(b *testing.B) {
	b.Run("fsync", func(b *testing.B) { benchBulk(b, false) })
	b.Run("nosync", func(b *testing.B) { benchBulk(b, true) })
}

func benchBulk(b *testing.B, noSync bool) {
	s, err := Open(Options{Dir: b.TempDir(), MaxAge: -1, NoSync: noSync})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	base := time.Now()
	const batch = 1000
	ops := make([]Op, batch)
	b.SetBytes(0)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		for j := range ops {
			msg := fmt.Sprintf("%s info request id=%d handled GET /api/v1/items path=/items/%d lorem ipsum dolor sit amet", base.Format("15:04:05.000"), n, n%1000)
			ops[j] = Op{Index: "logs-kubernetes-ns-" + strconv.Itoa(n%10), ID: strconv.Itoa(n), Create: true, Source: doc(n, base.Add(time.Duration(n)*time.Millisecond), msg)}
			n++
		}
		if _, err := s.Bulk(context.Background(), ops); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "docs/s")
}
