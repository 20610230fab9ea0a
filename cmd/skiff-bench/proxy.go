package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/skiffhq/skiff/internal/bench"
	"github.com/skiffhq/skiff/nodeagent/proxy"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Issue 7's targets (item 6).
const (
	proxyTargetFullSync = time.Second
	proxyTargetChange   = 50 * time.Millisecond
	proxyTargetRatio    = 0.9
)

type proxyBenchOpts struct {
	services, endpoints, changes int
	duration                     time.Duration
	rounds, clients              int
	// cpuProfile, when set, is where a CPU profile of the programming
	// phase (full sync, changes, resync) is written.
	cpuProfile string
}

type proxyThroughput struct {
	ConnsPerSec    float64 `json:"connections_per_sec"`
	RequestsPerSec float64 `json:"requests_per_sec"`
	Errors         int64   `json:"errors"`
}

type proxyBenchResult struct {
	Benchmark string     `json:"benchmark"`
	CPUs      int        `json:"cpus"`
	LoadAvg   [2]float64 `json:"loadavg_1m_start_end"`
	Services  int        `json:"services"`
	Endpoints int        `json:"endpoints_per_service"`
	// Programming time of the proxy's sync (table and ClusterIP link)
	// inside the benchmark's network namespace.
	FullSyncMs float64 `json:"full_sync_from_empty_ms"`
	// The parts of it: nftables transaction, ClusterIP addresses.
	FullSyncTableMs float64            `json:"full_sync_table_ms"`
	FullSyncAddrMs  float64            `json:"full_sync_addresses_ms"`
	ChangeTableMs   float64            `json:"endpoint_change_table_ms_median"`
	ChangeMsMedian  float64            `json:"endpoint_change_ms_median"`
	ChangeMs        []float64          `json:"endpoint_change_ms"`
	FullResyncMs    float64            `json:"full_resync_ms"`
	Rounds          int                `json:"rounds"`
	Clients         int                `json:"clients"`
	SecondsPerRun   float64            `json:"seconds_per_run"`
	Direct          proxyThroughput    `json:"direct"`
	VIP             proxyThroughput    `json:"service_vip"`
	ConnsRatio      float64            `json:"ratio_connections_vip_to_direct"`
	RequestsRatio   float64            `json:"ratio_requests_vip_to_direct"`
	ConnsRounds     []float64          `json:"ratio_connections_per_round"`
	RequestsRounds  []float64          `json:"ratio_requests_per_round"`
	Targets         map[string]float64 `json:"targets"`
	Meets           map[string]bool    `json:"meets"`
	MeetsTargets    bool               `json:"meets_targets"`
	Note            string             `json:"note"`
}

func proxyCommand() *cobra.Command {
	var o proxyBenchOpts
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "service proxy (nftables): programming time at scale, VIP vs direct throughput",
		Long: `Creates three network namespaces (proxy, client, backend) joined by veth
pairs, runs the node agent's nftables proxy sync code against the proxy
namespace's kernel with --services in-memory Services × --endpoints
EndpointSlice endpoints (nothing touches the host's own table), and times a
full sync from empty, --changes single-endpoint changes (partial syncs;
median) and a forced full resync. Then a Go HTTP server in the backend
namespace is loaded from the client namespace, through the proxy namespace,
straight to its address and through a Service VIP, alternating, --rounds
times: connections/s (a new TCP connection per request) and requests/s
(keep-alive). Prints one JSON object; every namespace is deleted at the
end, also on error or interrupt. Needs root.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := runProxyBench(ctx, o)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(res)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.services, "services", 10000, "Services programmed")
	f.IntVar(&o.endpoints, "endpoints", 5, "endpoints per Service")
	f.IntVar(&o.changes, "changes", 9, "single-endpoint changes timed (median reported)")
	f.DurationVar(&o.duration, "duration", time.Second, "length of each throughput run")
	f.IntVar(&o.rounds, "rounds", 7, "alternating throughput runs per path (medians reported; a ratio is the median of the rounds' VIP/direct)")
	f.IntVar(&o.clients, "clients", 4, "concurrent client connections")
	f.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the programming phase (syncs) to this file")
	return cmd
}

// Addresses inside the benchmark's namespaces (nothing else sees them).
const (
	pbClientIP   = "10.120.1.2"
	pbClientGW   = "10.120.1.1"
	pbBackendIP  = "10.121.0.2"
	pbBackendGW  = "10.121.0.1"
	pbBackendVIP = "10.96.255.250"
	pbPort       = 8080
	pbClusterNet = "10.64.0.0/10" // holds the client and every endpoint
	pbBody       = "skiff-bench proxy backend\n"
)

// pbNetns is the benchmark's namespaces.
type pbNetns struct{ proxy, client, backend string }

func ipRun(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// setup creates the namespaces and the veth pairs client—proxy—backend.
func (n pbNetns) setup() error {
	for _, ns := range []string{n.proxy, n.client, n.backend} {
		if err := ipRun("netns", "add", ns); err != nil {
			return err
		}
	}
	steps := [][]string{
		{"-n", n.proxy, "link", "set", "lo", "up"},
		{"-n", n.client, "link", "set", "lo", "up"},
		{"-n", n.backend, "link", "set", "lo", "up"},
		{"-n", n.proxy, "link", "add", "to-client", "type", "veth", "peer", "name", "eth0", "netns", n.client},
		{"-n", n.proxy, "link", "add", "to-backend", "type", "veth", "peer", "name", "eth0", "netns", n.backend},
		{"-n", n.proxy, "addr", "add", pbClientGW + "/24", "dev", "to-client"},
		{"-n", n.proxy, "addr", "add", pbBackendGW + "/24", "dev", "to-backend"},
		{"-n", n.proxy, "link", "set", "to-client", "up"},
		{"-n", n.proxy, "link", "set", "to-backend", "up"},
		{"-n", n.client, "addr", "add", pbClientIP + "/24", "dev", "eth0"},
		{"-n", n.client, "link", "set", "eth0", "up"},
		{"-n", n.client, "route", "add", "default", "via", pbClientGW},
		{"-n", n.backend, "addr", "add", pbBackendIP + "/24", "dev", "eth0"},
		{"-n", n.backend, "link", "set", "eth0", "up"},
		{"-n", n.backend, "route", "add", "default", "via", pbBackendGW},
	}
	for _, s := range steps {
		if err := ipRun(s...); err != nil {
			return err
		}
	}
	// The client opens thousands of connections a second and closes
	// each first (so the backend keeps no TIME_WAIT that a reused tuple
	// would run into): a wide port range, and ports in TIME_WAIT reused.
	for _, sc := range []struct{ ns, kv string }{
		{n.proxy, "net.ipv4.ip_forward=1"},
		{n.client, "net.ipv4.ip_local_port_range=1024 65000"},
		{n.client, "net.ipv4.tcp_tw_reuse=1"},
	} {
		if out, err := exec.Command("ip", "netns", "exec", sc.ns, "sysctl", "-qw", sc.kv).CombinedOutput(); err != nil {
			return fmt.Errorf("sysctl %s in %s: %w: %s", sc.kv, sc.ns, err, out)
		}
	}
	return nil
}

// cleanup deletes the namespaces, with everything in them (links, the
// nftables table, the ClusterIP link).
func (n pbNetns) cleanup() error {
	var errs []error
	for _, ns := range []string{n.proxy, n.client, n.backend} {
		if _, err := os.Stat("/run/netns/" + ns); err != nil {
			continue
		}
		errs = append(errs, ipRun("netns", "del", ns))
	}
	return errors.Join(errs...)
}

// pbCleanStale deletes namespaces a killed earlier run left behind (its
// process is gone).
func pbCleanStale() {
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		var kind string
		var pid int
		if n, _ := fmt.Sscanf(strings.ReplaceAll(e.Name(), "-", " "), "skb %s %d", &kind, &pid); n != 2 {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue
		}
		_ = ipRun("netns", "del", e.Name())
	}
}

// inNetns starts f on a thread moved into namespace ns and returns once
// it is there (not when f is done); the thread is never
// handed back (it ends with the goroutine), so nothing else runs there.
// Sockets f creates belong to ns.
func inNetns(ns string, f func()) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread dies with this goroutine.
		fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		errc <- nil
		f()
	}()
	return <-errc
}

// pbServices is n Services with m endpoints each (EndpointSlices), plus
// the one whose endpoint is the benchmark's backend.
func pbServices(n, m int) ([]*corev1.Service, []*discoveryv1.EndpointSlice) {
	svc := func(name, ip string, port int32) *corev1.Service {
		return &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: name},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: ip,
				Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: port}}},
		}
	}
	slice := func(name string, ips []string) *discoveryv1.EndpointSlice {
		s := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "bench", Name: name + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](pbPort)}},
		}
		for _, ip := range ips {
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}, NodeName: ptr.To("bench-node")})
		}
		return s
	}
	var svcs []*corev1.Service
	var slices []*discoveryv1.EndpointSlice
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("svc-%05d", i)
		svcs = append(svcs, svc(name, fmt.Sprintf("10.96.%d.%d", i>>8&255, i&255), 80))
		var ips []string
		for j := 0; j < m; j++ {
			ips = append(ips, fmt.Sprintf("10.%d.%d.%d", 100+j%20, i>>8&255, i&255))
		}
		slices = append(slices, slice(name, ips))
	}
	svcs = append(svcs, svc("backend", pbBackendVIP, 80))
	slices = append(slices, slice("backend", []string{pbBackendIP}))
	return svcs, slices
}

func runProxyBench(ctx context.Context, o proxyBenchOpts) (res *proxyBenchResult, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("proxy bench needs root (network namespaces, nftables)")
	}
	if o.services < 1 || o.endpoints < 1 || o.changes < 1 || o.rounds < 1 || o.clients < 1 {
		return nil, errors.New("--services, --endpoints, --changes, --rounds and --clients must be at least 1")
	}
	if o.services > 65000 {
		return nil, errors.New("--services: at most 65000 (ClusterIPs come from one /16)")
	}
	pbCleanStale()
	id := os.Getpid()
	ns := pbNetns{proxy: fmt.Sprintf("skb-px-%d", id), client: fmt.Sprintf("skb-cl-%d", id), backend: fmt.Sprintf("skb-be-%d", id)}
	defer func() {
		if cerr := ns.cleanup(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup: %w", cerr))
		}
	}()
	if err := ns.setup(); err != nil {
		return nil, err
	}
	res = &proxyBenchResult{Benchmark: "proxy", CPUs: runtime.NumCPU(), Services: o.services, Endpoints: o.endpoints,
		Rounds: o.rounds, Clients: o.clients, SecondsPerRun: o.duration.Seconds()}
	res.LoadAvg[0] = bench.LoadAvg()

	// (a) Programming time.
	p, err := proxy.New(nil, proxy.Options{NodeName: "bench-node", ClusterCIDR: pbClusterNet, NetNS: ns.proxy, NoLocalhostNodePorts: true})
	if err != nil {
		return nil, err
	}
	svcs, slices := pbServices(o.services, o.endpoints)
	stopProfile := func() {}
	if o.cpuProfile != "" {
		pf, err := os.Create(o.cpuProfile)
		if err != nil {
			return nil, fmt.Errorf("cpu profile: %w", err)
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			pf.Close()
			return nil, fmt.Errorf("cpu profile: %w", err)
		}
		stopProfile = func() { pprof.StopCPUProfile(); pf.Close(); stopProfile = func() {} }
		defer func() { stopProfile() }()
	}
	start := time.Now()
	if err := p.Program(svcs, slices); err != nil {
		return nil, fmt.Errorf("full sync: %w", err)
	}
	res.FullSyncMs = msOf(time.Since(start))
	if st := p.LastSync(); st.Full {
		res.FullSyncTableMs, res.FullSyncAddrMs = msOf(st.Table), msOf(st.Addresses)
	} else {
		return nil, errors.New("the first sync was not a full one")
	}
	var changeTable []float64
	for k := 0; k < o.changes; k++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		// One endpoint of one service stops being ready (a new slice
		// object, as an informer would hand over).
		i := (k*7919 + 1) % o.services
		s := slices[i].DeepCopy()
		e := &s.Endpoints[k%len(s.Endpoints)]
		e.Conditions.Ready = ptr.To(!*e.Conditions.Ready)
		slices[i] = s
		start := time.Now()
		if err := p.Program(svcs, slices); err != nil {
			return nil, fmt.Errorf("endpoint change: %w", err)
		}
		res.ChangeMs = append(res.ChangeMs, msOf(time.Since(start)))
		st := p.LastSync()
		if st.Full || st.Changed != 1 {
			return nil, fmt.Errorf("an endpoint change synced %+v, want a partial sync of one service port", st)
		}
		changeTable = append(changeTable, msOf(st.Table))
	}
	res.ChangeMsMedian = bench.Median(res.ChangeMs)
	res.ChangeTableMs = bench.Median(changeTable)
	p.ForceFullSync()
	start = time.Now()
	if err := p.Program(svcs, slices); err != nil {
		return nil, fmt.Errorf("full resync: %w", err)
	}
	res.FullResyncMs = msOf(time.Since(start))
	stopProfile()

	// (b) Throughput through the proxy namespace, direct and via the VIP.
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, pbBody) }),
		ReadHeaderTimeout: 10 * time.Second}
	type listened struct {
		ln  net.Listener
		err error
	}
	lc := make(chan listened, 1)
	if err := inNetns(ns.backend, func() {
		ln, err := net.Listen("tcp4", fmt.Sprintf("%s:%d", pbBackendIP, pbPort))
		lc <- listened{ln, err}
	}); err != nil {
		return nil, err
	}
	l := <-lc
	if l.err != nil {
		return nil, fmt.Errorf("backend listen: %w", l.err)
	}
	ln := l.ln
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	direct := fmt.Sprintf("%s:%d", pbBackendIP, pbPort)
	vip := fmt.Sprintf("%s:80", pbBackendVIP)
	var dc, dr, vc, vr []float64
	var derr, verr int64
	for r := 0; r < o.rounds; r++ {
		order := []string{direct, vip}
		if r%2 == 1 {
			order = []string{vip, direct}
		}
		for _, addr := range order {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			c, ce, err := pbLoad(ctx, ns.client, addr, o.clients, o.duration, false)
			if err != nil {
				return nil, err
			}
			q, qe, err := pbLoad(ctx, ns.client, addr, o.clients, o.duration, true)
			if err != nil {
				return nil, err
			}
			if addr == direct {
				dc, dr, derr = append(dc, c), append(dr, q), derr+ce+qe
			} else {
				vc, vr, verr = append(vc, c), append(vr, q), verr+ce+qe
			}
		}
	}
	res.Direct = proxyThroughput{ConnsPerSec: round1(bench.Median(dc)), RequestsPerSec: round1(bench.Median(dr)), Errors: derr}
	res.VIP = proxyThroughput{ConnsPerSec: round1(bench.Median(vc)), RequestsPerSec: round1(bench.Median(vr)), Errors: verr}
	// The ratios pair each VIP run with the direct run of its round (back
	// to back, so under the same machine load) and take the median: on a
	// noisy machine that is steadier than a ratio of two medians.
	res.ConnsRounds, res.RequestsRounds = pairedRatios(vc, dc), pairedRatios(vr, dr)
	res.ConnsRatio = round3f(bench.Median(res.ConnsRounds))
	res.RequestsRatio = round3f(bench.Median(res.RequestsRounds))
	res.LoadAvg[1] = bench.LoadAvg()
	res.Targets = map[string]float64{
		"full_sync_from_empty_ms": msOf(proxyTargetFullSync),
		"endpoint_change_ms":      msOf(proxyTargetChange),
		"vip_to_direct_ratio":     proxyTargetRatio,
	}
	res.Meets = map[string]bool{
		"full_sync_from_empty": res.FullSyncMs < msOf(proxyTargetFullSync),
		"endpoint_change":      res.ChangeMsMedian < msOf(proxyTargetChange),
		"vip_connections":      res.ConnsRatio >= proxyTargetRatio && res.VIP.Errors == 0,
		"vip_requests":         res.RequestsRatio >= proxyTargetRatio && res.VIP.Errors == 0,
	}
	res.MeetsTargets = true
	for _, ok := range res.Meets {
		res.MeetsTargets = res.MeetsTargets && ok
	}
	res.Note = "programming times are the proxy's sync (nftables transaction and ClusterIP addresses) in a private netns; " +
		"throughput is client netns -> proxy netns (forwarding, nftables) -> backend netns, the same run, alternating paths"
	return res, nil
}

// pbLoad runs clients workers against addr for d from namespace ns and
// returns operations/s: with keepAlive one connection per worker and
// requests/s, else a new connection per request (connections/s). Every
// response must be the backend's (a VIP not DNATed would be refused or
// answered by something else); others count as errors.
func pbLoad(ctx context.Context, ns, addr string, clients int, d time.Duration, keepAlive bool) (float64, int64, error) {
	var ops, errs atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	// Without keep-alive the client closes the connection after each
	// answer, before the server does.
	req := "GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
	once := func(c net.Conn, br *bufio.Reader) bool {
		if _, err := io.WriteString(c, req); err != nil {
			return false
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return false
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		return err == nil && string(body) == pbBody
	}
	for w := 0; w < clients; w++ {
		wg.Add(1)
		err := inNetns(ns, func() {
			defer wg.Done()
			dialer := net.Dialer{Timeout: 2 * time.Second}
			var c net.Conn
			var br *bufio.Reader
			defer func() {
				if c != nil {
					c.Close()
				}
			}()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				if c == nil {
					var err error
					if c, err = dialer.Dial("tcp4", addr); err != nil {
						errs.Add(1)
						time.Sleep(10 * time.Millisecond)
						continue
					}
					br = bufio.NewReader(c)
					_ = c.SetDeadline(deadline.Add(2 * time.Second))
				}
				ok := once(c, br)
				if ok {
					ops.Add(1)
				} else {
					errs.Add(1)
				}
				if !ok || !keepAlive {
					c.Close()
					c = nil
				}
			}
		})
		if err != nil {
			wg.Done()
			wg.Wait()
			return 0, 0, err
		}
	}
	wg.Wait()
	return float64(ops.Load()) / d.Seconds(), errs.Load(), ctx.Err()
}

// pairedRatios are a[i]/b[i] (rounded) for the rounds where b[i] > 0.
func pairedRatios(a, b []float64) []float64 {
	r := []float64{}
	for i := range min(len(a), len(b)) {
		if b[i] > 0 {
			r = append(r, round3f(a[i]/b[i]))
		}
	}
	return r
}

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func round1(f float64) float64  { return float64(int64(f*10+0.5)) / 10 }
func round3f(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }
