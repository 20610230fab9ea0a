package dns

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"

	mdns "github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
)

// BenchmarkServeUDP measures cluster-name queries over real loopback UDP
// against a table of 10,000 services, with parallel clients (each its own
// socket, one query in flight), through the same listen path as the add-on.
func BenchmarkServeUDP(b *testing.B) {
	tb := newTable("cluster.local.")
	batch := map[string]*service{}
	for i := range 10000 {
		name := fmt.Sprintf("web-%d", i)
		batch["bench/"+name] = buildService(svc("bench", name, func(s *corev1.Service) {
			s.Spec.ClusterIP = fmt.Sprintf("10.43.%d.%d", i/250, i%250+1)
			s.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80}}
		}), nil)
	}
	tb.apply(batch, map[string]bool{"bench": true})
	s := &Server{h: &Handler{zone: "cluster.local.", t: tb, ttl: 5, m: newMetrics(nil)}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	addr, err := s.listen("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		for _, srv := range s.servers {
			_ = srv.Shutdown()
		}
	})
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		conn, err := net.Dial("udp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer conn.Close()
		c := &mdns.Conn{Conn: conn}
		i := 0
		for pb.Next() {
			m := new(mdns.Msg)
			m.SetQuestion(fmt.Sprintf("web-%d.bench.svc.cluster.local.", i%10000), mdns.TypeA)
			i += 7919
			if err := c.WriteMsg(m); err != nil {
				b.Error(err)
				return
			}
			r, err := c.ReadMsg()
			if err != nil || len(r.Answer) != 1 {
				b.Errorf("answer %v, %v", r, err)
				return
			}
		}
	})
}
