package shipper

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/skiffhq/skiff/nodeagent/crilog"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// BenchmarkTailEncode measures lines/s through tail, CRI parsing, partial
// reassembly, metadata and document encoding (everything but the
// network): one b.N-line file read by the shipper's tailer.
func BenchmarkTailEncode(b *testing.B) {
	for _, size := range []int{100, 1000} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			root := b.TempDir()
			logDir := filepath.Join(root, "logs")
			path := filepath.Join(logDir, "ns1_web-0_uid-1", "app", "0.log")
			w, err := crilog.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			msg := bytes.Repeat([]byte("x"), size-1)
			msg = append(msg, '\n')
			for i := 0; i < b.N; i++ {
				_, _ = w.Stream(crilog.Stdout).Write(msg)
			}
			_ = w.Close()
			pod := testPod()
			s, err := New(Config{PodLogDir: logDir, StateDir: filepath.Join(root, "state"), URL: "http://127.0.0.1:1",
				Pod: func(types.UID) *corev1.Pod { return pod }, PollInterval: time.Millisecond})
			if err != nil {
				b.Fatal(err)
			}
			done := make(chan struct{})
			var n int
			s.ship = func(_ context.Context, d *doc) {
				d.t.ack(d.e)
				s.release(d)
				if n++; n == b.N {
					close(done)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			b.SetBytes(int64(size))
			b.ResetTimer()
			go func() { _ = s.Run(ctx) }()
			<-done
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
		})
	}
}
