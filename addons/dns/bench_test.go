package dns

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// BenchmarkServeUDPPipelined measures throughput rather than latency: 4
// clients keep 16 queries each in flight (as dnsperf does), against the
// add-on's listener ("listener": batched on Linux) and against the same
// sockets served one datagram at a time with packet-info control messages
// ("udpconn": miekg/dns's own UDP reading, the fast path inside it).
func BenchmarkServeUDPPipelined(b *testing.B) {
	for _, mode := range []string{"listener", "udpconn"} {
		b.Run(mode, func(b *testing.B) {
			tb := newTable("cluster.local.")
			batch := map[string]*service{}
			for i := range 1000 {
				name := fmt.Sprintf("web-%d", i)
				batch["bench/"+name] = buildService(svc("bench", name, func(s *corev1.Service) {
					s.Spec.ClusterIP = fmt.Sprintf("10.43.%d.%d", i/250, i%250+1)
				}), nil)
			}
			tb.apply(batch, map[string]bool{"bench": true})
			h := &Handler{zone: "cluster.local.", t: tb, ttl: 5, m: newMetrics(nil)}
			var addr string
			if mode == "listener" {
				s := &Server{h: h, log: slog.New(slog.DiscardHandler)}
				var err error
				if addr, err = s.listen("127.0.0.1:0"); err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() {
					for _, srv := range s.servers {
						_ = srv.Shutdown()
					}
				})
			} else {
				pc, err := reusePort.ListenPacket(context.Background(), "udp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				addr = pc.LocalAddr().String()
				pcs := []net.PacketConn{pc}
				for range runtime.GOMAXPROCS(0) - 1 {
					more, err := reusePort.ListenPacket(context.Background(), "udp", addr)
					if err != nil {
						b.Fatal(err)
					}
					pcs = append(pcs, more)
				}
				for _, c := range pcs {
					srv := &mdns.Server{PacketConn: c, Handler: h, UDPSize: maxUDPSize, DecorateReader: h.decorateReader}
					started := make(chan struct{})
					srv.NotifyStartedFunc = func() { close(started) }
					go func() { _ = srv.ActivateAndServe() }()
					<-started
					b.Cleanup(func() { _ = srv.Shutdown() })
				}
			}
			queries := make([][]byte, 1000)
			for i := range queries {
				m := new(mdns.Msg)
				m.SetQuestion(fmt.Sprintf("web-%d.bench.svc.cluster.local.", i), mdns.TypeA)
				queries[i], _ = m.Pack()
				c, err := net.Dial("udp", addr) // warm the fast path
				if err != nil {
					b.Fatal(err)
				}
				mc := &mdns.Conn{Conn: c}
				_ = mc.WriteMsg(m)
				_, _ = mc.ReadMsg()
				c.Close()
			}
			const clients, window = 4, 16
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			var lost atomic.Int64
			for c := range clients {
				quota := b.N / clients
				if c == 0 {
					quota += b.N % clients
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					conn, err := net.Dial("udp", addr)
					if err != nil {
						b.Error(err)
						return
					}
					defer conn.Close()
					buf := make([]byte, 4096)
					sent, done, q := 0, 0, c*997
					send := func() {
						_, _ = conn.Write(queries[q%len(queries)])
						q++
						sent++
					}
					for sent < min(window, quota) {
						send()
					}
					for done < quota {
						_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
						if _, err := conn.Read(buf); err != nil {
							lost.Add(int64(sent - done)) // refill the window
							sent = done
							for sent < min(done+window, quota) {
								send()
							}
							continue
						}
						done++
						if sent < quota {
							send()
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "qps")
			b.ReportMetric(float64(lost.Load()), "lost")
		})
	}
}
