package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// These tests drive the userspace proxy's listeners directly (apply with
// service ports, as a sync would) on loopback: the "ClusterIPs" are
// addresses of 127.0.0.0/8, which are local without a holder link, and the
// endpoints are servers on 127.0.0.1. No root needed.

func newTestUserspace(t *testing.T) *Userspace {
	t.Helper()
	u, err := NewUserspace(nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	u.noLink = true
	u.dialTimeout = 500 * time.Millisecond
	t.Cleanup(u.shutdown)
	return u
}

// tcpBackend answers every connection with "name\n" and then echoes lines.
func tcpBackend(t *testing.T, name string) Endpoint {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprintf(c, "%s\n", name)
				r := bufio.NewReader(c)
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					fmt.Fprintf(c, "%s:%s", name, l)
				}
			}()
		}
	}()
	return endpointOf(t, ln.Addr())
}

// udpBackend answers every datagram with "name:<datagram>".
func udpBackend(t *testing.T, name string) Endpoint {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(name+":"+string(buf[:n])), from)
		}
	}()
	return endpointOf(t, pc.LocalAddr())
}

func endpointOf(t *testing.T, a net.Addr) Endpoint {
	t.Helper()
	h, p, _ := net.SplitHostPort(a.String())
	var port int32
	fmt.Sscan(p, &port)
	return Endpoint{IP: net.ParseIP(h).To4(), Port: port}
}

// freePort is a port number free on 127.0.0.1 for both protocols right
// now; the tests use it on their own loopback "ClusterIP".
func freePort(t *testing.T) int32 {
	t.Helper()
	for i := 0; i < 20; i++ {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if pc, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			pc.Close()
			return int32(port)
		}
	}
	t.Fatal("no free port")
	return 0
}

func servicePort(proto corev1.Protocol, vip string, port int32, eps ...Endpoint) *ServicePort {
	return &ServicePort{Namespace: "default", Name: "svc", Protocol: proto, ClusterIP: net.ParseIP(vip).To4(), Port: port,
		Cluster: eps, All: eps, HasEndpoints: len(eps) > 0}
}

// greet connects to addr and returns the backend's name.
func greet(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp4", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	l, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read from %s: %v", addr, err)
	}
	return strings.TrimSpace(l)
}

func apply(t *testing.T, u *Userspace, sps ...*ServicePort) {
	t.Helper()
	if err := u.apply(sps); err != nil {
		t.Fatal(err)
	}
}

func TestUserspaceTCP(t *testing.T) {
	u := newTestUserspace(t)
	a, b := tcpBackend(t, "a"), tcpBackend(t, "b")
	port := freePort(t)
	vip := "127.0.0.5"
	addr := net.JoinHostPort(vip, fmt.Sprint(port))
	sp := servicePort(corev1.ProtocolTCP, vip, port, a, b)
	apply(t, u, sp)

	t.Run("round robin", func(t *testing.T) {
		got := []string{greet(t, addr), greet(t, addr), greet(t, addr), greet(t, addr)}
		if got[0] == got[1] || got[0] != got[2] || got[1] != got[3] {
			t.Fatalf("backends in turn: %v, want alternating a and b", got)
		}
	})
	t.Run("a dead endpoint is skipped", func(t *testing.T) {
		dead := Endpoint{IP: net.ParseIP("127.0.0.1").To4(), Port: freePort(t)}
		apply(t, u, servicePort(corev1.ProtocolTCP, vip, port, a, dead))
		for i := 0; i < 4; i++ {
			if got := greet(t, addr); got != "a" {
				t.Fatalf("connection %d reached %q, want a", i, got)
			}
		}
	})
	t.Run("sessionAffinity ClientIP keeps one backend", func(t *testing.T) {
		sticky := servicePort(corev1.ProtocolTCP, vip, port, a, b)
		sticky.Affinity = time.Hour
		apply(t, u, sticky)
		first := greet(t, addr)
		for i := 0; i < 6; i++ {
			if got := greet(t, addr); got != first {
				t.Fatalf("connection %d reached %s, the first %s", i, got, first)
			}
		}
		// The timeout ends the stickiness: both backends again.
		sticky = servicePort(corev1.ProtocolTCP, vip, port, a, b)
		sticky.Affinity = 50 * time.Millisecond
		apply(t, u, sticky)
		seen := map[string]bool{}
		for i := 0; i < 4; i++ {
			time.Sleep(60 * time.Millisecond)
			seen[greet(t, addr)] = true
		}
		if !seen["a"] || !seen["b"] {
			t.Fatalf("after the affinity timeout: %v, want both", seen)
		}
	})
	t.Run("endpoint removal: new connections stop at once, open ones keep running", func(t *testing.T) {
		apply(t, u, sp)
		// Open connections to both backends.
		var open []net.Conn
		names := map[string]net.Conn{}
		for len(names) < 2 {
			c, err := net.Dial("tcp4", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			l, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			names[strings.TrimSpace(l)] = c
			open = append(open, c)
		}
		apply(t, u, servicePort(corev1.ProtocolTCP, vip, port, a))
		for i := 0; i < 4; i++ {
			if got := greet(t, addr); got != "a" {
				t.Fatalf("connection %d after removing b reached %s", i, got)
			}
		}
		echo(t, names["b"], "b")
	})
	t.Run("no endpoints: refused at once; a reconfigure keeps an open connection", func(t *testing.T) {
		apply(t, u, sp)
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		r := bufio.NewReader(c)
		name, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		name = strings.TrimSpace(name)
		apply(t, u, servicePort(corev1.ProtocolTCP, vip, port)) // listener closed
		start := time.Now()
		_, err = net.DialTimeout("tcp4", addr, 2*time.Second)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial without endpoints: %v, want connection refused", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("refused only after %v", d)
		}
		apply(t, u, sp) // listener opened again
		fmt.Fprintf(c, "still there\n")
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if l, err := r.ReadString('\n'); err != nil || l != name+":still there\n" {
			t.Fatalf("open connection after the reconfigure: %q %v", l, err)
		}
		if got := greet(t, addr); got != "a" && got != "b" {
			t.Fatalf("new connection after the reconfigure: %q", got)
		}
	})
	t.Run("externalTrafficPolicy Local: host clients use every endpoint", func(t *testing.T) {
		np := freePort(t)
		ext := servicePort(corev1.ProtocolTCP, vip, port, a, b)
		ext.NodePort, ext.ExternalLocal, ext.Local = np, true, nil
		apply(t, u, ext)
		npAddr := net.JoinHostPort("127.0.0.1", fmt.Sprint(np))
		seen := map[string]bool{greet(t, npAddr): true, greet(t, npAddr): true}
		if !seen["a"] || !seen["b"] {
			t.Fatalf("NodePort from the host: %v, want both", seen)
		}
	})
}

// TestUserspaceBusyPort: a port another socket holds does not fail the
// sync (the other service ports work); Synced reports it, and a later sync
// binds once it is free.
func TestUserspaceBusyPort(t *testing.T) {
	u := newTestUserspace(t)
	a := tcpBackend(t, "a")
	busyPort, freeP := freePort(t), freePort(t)
	vip := "127.0.0.8"
	hold, err := net.Listen("tcp4", net.JoinHostPort(vip, fmt.Sprint(busyPort)))
	if err != nil {
		t.Fatal(err)
	}
	busy := servicePort(corev1.ProtocolTCP, vip, busyPort, a)
	other := servicePort(corev1.ProtocolTCP, vip, freeP, a)
	other.Name = "other"
	apply(t, u, busy, other)
	if _, err := u.Synced(); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Synced with a busy port: %v", err)
	}
	if got := greet(t, net.JoinHostPort(vip, fmt.Sprint(freeP))); got != "a" {
		t.Fatalf("the other service port: %q", got)
	}
	hold.Close()
	apply(t, u, busy, other)
	if _, err := u.Synced(); err != nil {
		t.Fatalf("Synced once the port is free: %v", err)
	}
	if got := greet(t, net.JoinHostPort(vip, fmt.Sprint(busyPort))); got != "a" {
		t.Fatalf("the once busy port: %q", got)
	}
}

func echo(t *testing.T, c net.Conn, name string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(c, "ping\n")
	l, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || l != name+":ping\n" {
		t.Fatalf("open connection to %s: %q %v", name, l, err)
	}
}

func TestUserspaceUDP(t *testing.T) {
	u := newTestUserspace(t)
	u.udpIdle = 300 * time.Millisecond
	a, b := udpBackend(t, "a"), udpBackend(t, "b")
	port := freePort(t)
	vip := "127.0.0.6"
	vaddr := &net.UDPAddr{IP: net.ParseIP(vip), Port: int(port)}
	sp := servicePort(corev1.ProtocolUDP, vip, port, a, b)
	sp.NodePort = freePort(t)
	apply(t, u, sp)

	ask := func(c *net.UDPConn, msg string) (string, net.Addr) {
		t.Helper()
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 1500)
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatalf("answer to %q: %v", msg, err)
		}
		return string(buf[:n]), from
	}
	client := func(to *net.UDPAddr) *net.UDPConn {
		c, err := net.DialUDP("udp4", nil, to)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	t.Run("echo; a session sticks, clients take turns", func(t *testing.T) {
		c1, c2 := client(vaddr), client(vaddr)
		r1, from := ask(c1, "x")
		if from.String() != vaddr.String() {
			t.Fatalf("answer from %s, want %s", from, vaddr)
		}
		r2, _ := ask(c2, "x")
		if r1[:1] == r2[:1] {
			t.Fatalf("two clients reached the same backend: %q %q", r1, r2)
		}
		for i := 0; i < 3; i++ {
			if r, _ := ask(c1, "y"); r != r1[:1]+":y" {
				t.Fatalf("datagram %d of one session: %q, want backend %s", i, r, r1[:1])
			}
		}
	})
	t.Run("NodePort on the wildcard address answers from the address asked", func(t *testing.T) {
		to := &net.UDPAddr{IP: net.ParseIP("127.0.0.7"), Port: int(sp.NodePort)}
		r, from := ask(client(to), "np")
		if from.String() != to.String() || !strings.HasSuffix(r, ":np") {
			t.Fatalf("answer %q from %s, want from %s", r, from, to)
		}
	})
	t.Run("idle sessions end", func(t *testing.T) {
		deadline := time.Now().Add(3 * time.Second)
		for {
			u.mu.Lock()
			fr := u.fronts[frontKey(corev1.ProtocolUDP, sp.ClusterIP, port)]
			u.mu.Unlock()
			fr.mu.Lock()
			n := len(fr.sessions)
			fr.mu.Unlock()
			if n == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d sessions still open after the idle timeout", n)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	t.Run("endpoint removal ends its sessions", func(t *testing.T) {
		c := client(vaddr)
		r, _ := ask(c, "z")
		keep := a
		if r[:1] == "a" {
			keep = b
		}
		apply(t, u, servicePort(corev1.ProtocolUDP, vip, port, keep))
		want := "b:z"
		if keep.Port == a.Port {
			want = "a:z"
		}
		// UDP may drop a datagram while the old session is torn down:
		// ask again until the kept endpoint answers.
		deadline := time.Now().Add(5 * time.Second)
		last := ""
		for {
			if _, err := c.Write([]byte("z")); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			buf := make([]byte, 1500)
			if n, err := c.Read(buf); err == nil {
				if last = string(buf[:n]); last == want {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no answer from the kept endpoint (last answer %q): the session still reaches the removed endpoint", last)
			}
		}
	})
	t.Run("no endpoints: port unreachable", func(t *testing.T) {
		apply(t, u, servicePort(corev1.ProtocolUDP, vip, port))
		c := client(vaddr)
		_, _ = c.Write([]byte("x"))
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err := c.Read(make([]byte, 10))
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("read without endpoints: %v, want connection refused (ICMP port unreachable)", err)
		}
	})
}

// TestUserspaceProgram: Services and EndpointSlices go through
// BuildServicePorts (model.go) into listeners; a not-ready endpoint gets
// nothing.
func TestUserspaceProgram(t *testing.T) {
	u := newTestUserspace(t)
	port, vipPort := freePort(t), freePort(t)
	var eps []discoveryv1.Endpoint
	for i, name := range []string{"a", "b", "c"} {
		ip := fmt.Sprintf("127.0.0.%d", 11+i)
		ln, err := net.Listen("tcp4", net.JoinHostPort(ip, fmt.Sprint(port)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				fmt.Fprintf(c, "%s\n", name)
				c.Close()
			}
		}()
		eps = append(eps, discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(name != "c")}})
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: corev1.ServiceSpec{ClusterIP: "127.0.0.10", Ports: []corev1.ServicePort{{Name: "http", Port: vipPort, Protocol: corev1.ProtocolTCP}}}}
	slice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-1",
		Labels: map[string]string{discoveryv1.LabelServiceName: "web"}}, AddressType: discoveryv1.AddressTypeIPv4,
		Ports:     []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints: eps}
	if err := u.Program([]*corev1.Service{svc}, []*discoveryv1.EndpointSlice{slice}); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.10", fmt.Sprint(vipPort))
	seen := map[string]int{}
	for i := 0; i < 6; i++ {
		seen[greet(t, addr)]++
	}
	if seen["a"] != 3 || seen["b"] != 3 {
		t.Fatalf("answers %v, want a and b three times each, never c (not ready)", seen)
	}
}
