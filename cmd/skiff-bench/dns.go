package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/skiffhq/skiff/internal/bench"
	"github.com/skiffhq/skiff/server"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Issue 8's targets.
const (
	dnsTargetRatio  = 1.0 // ≥ unbound's QPS for cluster names
	dnsTargetRSSMiB = 50.0
	// a new Service resolves within a second
	dnsTargetPropagation = time.Second
)

type dnsBenchOpts struct {
	services        int
	duration        time.Duration
	rounds          int
	clients         int
	dnsperf, unbund string
	skiffBin        string
	latencyQueries  int
}

type dnsServerResult struct {
	ClusterQPS   float64 `json:"cluster_names_qps"`
	ExternalQPS  float64 `json:"cached_external_names_qps"`
	ClusterLost  int64   `json:"cluster_queries_lost"`
	ExternalLost int64   `json:"external_queries_lost"`
	// CPU time per answered query (user+system, all threads), medians
	// over the rounds: unlike QPS, this does not move with the share of
	// the CPUs other processes on the machine take.
	ClusterCPUus  float64 `json:"cluster_cpu_us_per_query"`
	ExternalCPUus float64 `json:"external_cpu_us_per_query"`
	DNSPerfCPUus  float64 `json:"dnsperf_cpu_us_per_query"`
	P50Ms         float64 `json:"cluster_p50_ms"`
	P99Ms         float64 `json:"cluster_p99_ms"`
	RSSMiB        float64 `json:"rss_mib"`
	RSSAnonMiB    float64 `json:"rss_anon_mib"`
	RSSFileMiB    float64 `json:"rss_file_mib"`
}

type dnsBenchResult struct {
	Benchmark      string          `json:"benchmark"`
	CPUs           int             `json:"cpus"`
	Services       int             `json:"services"`
	Rounds         int             `json:"rounds"`
	Seconds        float64         `json:"seconds_per_run"`
	Clients        int             `json:"dnsperf_clients"`
	Skiff          dnsServerResult `json:"skiff_dns"`
	Unbound        dnsServerResult `json:"unbound"`
	UnboundVersion string          `json:"unbound_version"`
	ClusterRatio   float64         `json:"ratio_cluster_qps_skiff_to_unbound"`
	ExternalRatio  float64         `json:"ratio_external_qps_skiff_to_unbound"`
	TargetRatio    float64         `json:"target_ratio"`
	TargetRSSMiB   float64         `json:"target_rss_mib"`
	MeetsTargets   bool            `json:"meets_targets"`
	SetupSeconds   float64         `json:"setup_seconds"`
	// LoadAvg is the 1-minute load average when the measurements start
	// and end (the machine may be shared).
	LoadAvg [2]float64 `json:"loadavg_1m_start_end"`
	// PropagationMs is the median and the largest time from a Service's
	// create call returning to skiff dns answering its name (ms).
	PropagationMs [2]float64 `json:"propagation_ms_median_max"`
	Note          string     `json:"note"`
}

func dnsCommand() *cobra.Command {
	var o dnsBenchOpts
	cmd := &cobra.Command{
		Use:   "dns",
		Short: "cluster DNS add-on vs unbound: QPS (dnsperf), latency and memory with N services",
		Long: `Starts an in-process Skiff server, creates --services Services, runs the
DNS add-on as a separate ` + "`skiff dns`" + ` process (so its memory is its own), and
unbound configured with the same records as local data. dnsperf drives
each in turn, alternating, --rounds times, for cluster names and for cached
external names (both forward to a stub upstream this benchmark runs on
127.0.0.1, so nothing leaves the machine). Rounds alternate which server
goes first; each run also records the server's and dnsperf's CPU time per
query. Latency is sequential queries from one Go client; propagation is
the time from creating a Service to skiff dns answering its name. Prints
one JSON object with medians and ratios.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := runDNSBench(cmd.Context(), o)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(res)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.services, "services", 10000, "Services loaded")
	f.DurationVar(&o.duration, "duration", 10*time.Second, "length of each dnsperf run")
	f.IntVar(&o.rounds, "rounds", 3, "alternating runs per server and name set (medians reported)")
	f.IntVar(&o.clients, "clients", 8, "dnsperf clients (-c)")
	f.IntVar(&o.latencyQueries, "latency-queries", 5000, "sequential queries for p50/p99")
	f.StringVar(&o.dnsperf, "dnsperf", "dnsperf", "dnsperf binary (apt-get install dnsperf)")
	f.StringVar(&o.unbund, "unbound", "/usr/sbin/unbound", "unbound binary (apt-get install unbound)")
	f.StringVar(&o.skiffBin, "skiff-bin", defaultServerBin(), "skiff binary run as `skiff dns`")
	return cmd
}

func runDNSBench(ctx context.Context, o dnsBenchOpts) (*dnsBenchResult, error) {
	for _, bin := range []string{o.dnsperf, o.unbund, o.skiffBin} {
		if bin == "" {
			return nil, errors.New("dns: --skiff-bin is needed (build bin/skiff)")
		}
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("dns: %s not found (apt-get install dnsperf unbound): %w", bin, err)
		}
	}
	start := time.Now()
	dir, err := os.MkdirTemp("", "skiff-bench-dns-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	srv, _, cs, err := startServer(ctx, server.Config{
		DataDir: filepath.Join(dir, "skiff"), Disable: []string{server.DNSName, server.SchedulerName},
	})
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	const ns = "bench"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	ips, err := createDNSBenchServices(ctx, cs, ns, o.services)
	if err != nil {
		return nil, err
	}

	upstream, stopUpstream, err := startStubUpstream()
	if err != nil {
		return nil, err
	}
	defer stopUpstream()

	// The add-on as its own process.
	skiffPort, err := freeUDPTCPPort()
	if err != nil {
		return nil, err
	}
	healthPort, err := freeUDPTCPPort()
	if err != nil {
		return nil, err
	}
	dnsCmd := exec.CommandContext(ctx, o.skiffBin, "dns", "--kubeconfig", srv.Kubeconfig(),
		"--cluster-dns", "", "--listen", "127.0.0.1", "--dns-port", strconv.Itoa(skiffPort),
		"--dns-upstream", upstream, "--health-address", net.JoinHostPort("127.0.0.1", strconv.Itoa(healthPort)))
	errLog, err := os.Create(filepath.Join(dir, "skiff-dns.log"))
	if err != nil {
		return nil, err
	}
	defer errLog.Close()
	dnsCmd.Stderr = errLog
	if err := dnsCmd.Start(); err != nil {
		return nil, fmt.Errorf("start skiff dns: %w", err)
	}
	defer func() { _ = dnsCmd.Process.Kill(); _ = dnsCmd.Wait() }()
	skiffAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(skiffPort))
	last := fmt.Sprintf("web-%d.%s.svc.cluster.local.", o.services-1, ns)
	if err := waitDNSAnswer(ctx, skiffAddr, last, ips[o.services-1], 2*time.Minute); err != nil {
		return nil, fmt.Errorf("skiff dns: %w", err)
	}

	// unbound with the same records as local data.
	unboundPort, err := freeUDPTCPPort()
	if err != nil {
		return nil, err
	}
	conf, err := writeUnboundConf(dir, unboundPort, upstream, ns, ips)
	if err != nil {
		return nil, err
	}
	ubCmd := exec.CommandContext(ctx, o.unbund, "-d", "-c", conf)
	ubCmd.Stderr = io.Discard
	if err := ubCmd.Start(); err != nil {
		return nil, fmt.Errorf("start unbound: %w", err)
	}
	defer func() { _ = ubCmd.Process.Kill(); _ = ubCmd.Wait() }()
	unboundAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(unboundPort))
	if err := waitDNSAnswer(ctx, unboundAddr, last, ips[o.services-1], time.Minute); err != nil {
		return nil, fmt.Errorf("unbound: %w", err)
	}

	clusterFile := filepath.Join(dir, "cluster.txt")
	externalFile := filepath.Join(dir, "external.txt")
	var b strings.Builder
	for i := range o.services {
		fmt.Fprintf(&b, "web-%d.%s.svc.cluster.local A\n", i, ns)
	}
	if err := os.WriteFile(clusterFile, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	b.Reset()
	for i := range 200 {
		fmt.Fprintf(&b, "host-%d.ext.test A\n", i)
	}
	if err := os.WriteFile(externalFile, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	res := &dnsBenchResult{
		Benchmark: "dns", CPUs: runtime.NumCPU(), Services: o.services, Rounds: o.rounds,
		Seconds: o.duration.Seconds(), Clients: o.clients, TargetRatio: dnsTargetRatio, TargetRSSMiB: dnsTargetRSSMiB,
		SetupSeconds: round2(time.Since(start).Seconds()),
		Note:         "dnsperf and both servers share this machine's CPUs; medians over alternating rounds. External names are answered by a stub upstream on 127.0.0.1 and measured once cached.",
	}
	if out, err := exec.Command(o.unbund, "-V").Output(); err == nil {
		if m := regexp.MustCompile(`Version (\S+)`).FindSubmatch(out); m != nil {
			res.UnboundVersion = string(m[1])
		}
	}
	// Warm the caches (external names) before measuring.
	for _, addr := range []string{skiffAddr, unboundAddr} {
		if _, err := runDNSPerf(ctx, o.dnsperf, addr, externalFile, 2*time.Second, o.clients); err != nil {
			return nil, err
		}
	}
	type samples struct {
		cluster, external, clusterLost, externalLost []float64
		clusterCPU, externalCPU, perfCPU             []float64
	}
	type side struct {
		addr string
		pid  int
		into *samples
	}
	var sk, ub samples
	sides := []side{{skiffAddr, dnsCmd.Process.Pid, &sk}, {unboundAddr, ubCmd.Process.Pid, &ub}}
	res.LoadAvg[0] = bench.LoadAvg()
	for r := range o.rounds {
		// Each round swaps who goes first (skiff, unbound, unbound, skiff, ...).
		order := sides
		if r%2 == 1 {
			order = []side{sides[1], sides[0]}
		}
		for _, s := range order {
			run, err := measureDNSPerf(ctx, o, s.addr, clusterFile, s.pid)
			if err != nil {
				return nil, err
			}
			s.into.cluster, s.into.clusterLost = append(s.into.cluster, run.qps), append(s.into.clusterLost, float64(run.lost))
			s.into.clusterCPU, s.into.perfCPU = append(s.into.clusterCPU, run.serverCPUus), append(s.into.perfCPU, run.perfCPUus)
			run, err = measureDNSPerf(ctx, o, s.addr, externalFile, s.pid)
			if err != nil {
				return nil, err
			}
			s.into.external, s.into.externalLost = append(s.into.external, run.qps), append(s.into.externalLost, float64(run.lost))
			s.into.externalCPU = append(s.into.externalCPU, run.serverCPUus)
		}
	}
	res.LoadAvg[1] = bench.LoadAvg()
	fill := func(r *dnsServerResult, s samples, addr string, pid int) error {
		r.ClusterQPS, r.ExternalQPS = math.Round(bench.Median(s.cluster)), math.Round(bench.Median(s.external))
		r.ClusterLost, r.ExternalLost = int64(bench.Median(s.clusterLost)), int64(bench.Median(s.externalLost))
		r.ClusterCPUus, r.ExternalCPUus = round2(bench.Median(s.clusterCPU)), round2(bench.Median(s.externalCPU))
		r.DNSPerfCPUus = round2(bench.Median(s.perfCPU))
		p50, p99, err := dnsLatency(addr, ns, o.services, o.latencyQueries)
		if err != nil {
			return err
		}
		r.P50Ms, r.P99Ms = p50, p99
		rss, _, err := procRSS(pid)
		if err != nil {
			return err
		}
		r.RSSMiB = round2(float64(rss) / (1 << 20))
		anon, file, err := procRSSParts(pid)
		if err != nil {
			return err
		}
		r.RSSAnonMiB, r.RSSFileMiB = round2(float64(anon)/(1<<20)), round2(float64(file)/(1<<20))
		return nil
	}
	if err := fill(&res.Skiff, sk, skiffAddr, dnsCmd.Process.Pid); err != nil {
		return nil, err
	}
	if err := fill(&res.Unbound, ub, unboundAddr, ubCmd.Process.Pid); err != nil {
		return nil, err
	}
	if res.Unbound.ClusterQPS > 0 {
		res.ClusterRatio = round2(res.Skiff.ClusterQPS / res.Unbound.ClusterQPS)
	}
	if res.Unbound.ExternalQPS > 0 {
		res.ExternalRatio = round2(res.Skiff.ExternalQPS / res.Unbound.ExternalQPS)
	}
	prop, err := dnsPropagation(ctx, cs, ns, skiffAddr, 10)
	if err != nil {
		return nil, err
	}
	res.PropagationMs = prop
	res.MeetsTargets = res.ClusterRatio >= dnsTargetRatio && res.Skiff.RSSMiB < dnsTargetRSSMiB &&
		prop[1] <= float64(dnsTargetPropagation/time.Millisecond)
	return res, nil
}

// createDNSBenchServices creates n ClusterIP Services web-0..web-(n-1)
// with 16 writers and returns their cluster IPs by index.
func createDNSBenchServices(ctx context.Context, cs kubernetes.Interface, ns string, n int) ([]string, error) {
	ips := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	next := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				svc, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("web-%d", i)},
					Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
				}, metav1.CreateOptions{})
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					continue
				}
				ips[i] = svc.Spec.ClusterIP
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		return nil, fmt.Errorf("create services: %w", err)
	default:
	}
	return ips, nil
}

// startStubUpstream answers A queries for any name with an address in
// 127.0.0.0/8 (TTL 1 h): the "external" resolver both servers forward to.
func startStubUpstream() (string, func(), error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		if len(r.Question) == 1 && r.Question[0].Qtype == mdns.TypeA {
			m.Answer = append(m.Answer, &mdns.A{
				Hdr: mdns.RR_Header{Name: r.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 3600},
				A:   net.IPv4(127, 0, 0, byte(1+len(r.Question[0].Name)%200)),
			})
		}
		_ = w.WriteMsg(m)
	})
	s := &mdns.Server{PacketConn: pc, Handler: h}
	started := make(chan struct{})
	s.NotifyStartedFunc = func() { close(started) }
	go func() { _ = s.ActivateAndServe() }()
	<-started
	return pc.LocalAddr().String(), func() { _ = s.Shutdown() }, nil
}

// freeUDPTCPPort finds a loopback port free for both UDP and TCP.
func freeUDPTCPPort() (int, error) {
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		_ = pc.Close()
		if err == nil {
			_ = ln.Close()
			return port, nil
		}
	}
	return 0, errors.New("no free port for UDP and TCP")
}

// writeUnboundConf writes a foreground, unprivileged unbound config with
// every service's A record as local data and ext.test forwarded upstream.
func writeUnboundConf(dir string, port int, upstream, ns string, ips []string) (string, error) {
	host, uport, _ := net.SplitHostPort(upstream)
	var b strings.Builder
	fmt.Fprintf(&b, `server:
	interface: 127.0.0.1@%d
	port: %d
	do-daemonize: no
	chroot: ""
	username: ""
	directory: %q
	pidfile: ""
	use-syslog: no
	logfile: ""
	verbosity: 0
	num-threads: %d
	so-reuseport: yes
	access-control: 127.0.0.0/8 allow
	do-not-query-localhost: no
	module-config: "iterator"
	local-zone: "cluster.local." static
`, port, port, dir, runtime.NumCPU())
	for i, ip := range ips {
		fmt.Fprintf(&b, "\tlocal-data: \"web-%d.%s.svc.cluster.local. 5 IN A %s\"\n", i, ns, ip)
	}
	fmt.Fprintf(&b, "forward-zone:\n\tname: \"ext.test.\"\n\tforward-addr: %s@%s\n", host, uport)
	p := filepath.Join(dir, "unbound.conf")
	return p, os.WriteFile(p, []byte(b.String()), 0o644)
}

// dnsPropagation creates n Services one after the other, with the 10,000
// already loaded, and measures for each the time from its create call
// returning to addr answering its name with its cluster IP (polled every
// 5 ms). It returns the median and the largest in milliseconds.
func dnsPropagation(ctx context.Context, cs kubernetes.Interface, ns, addr string, n int) ([2]float64, error) {
	c := &mdns.Client{Timeout: time.Second}
	var ds []float64
	for i := range n {
		svc, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("new-%d", i)},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
		}, metav1.CreateOptions{})
		if err != nil {
			return [2]float64{}, fmt.Errorf("propagation: %w", err)
		}
		start := time.Now()
		name := fmt.Sprintf("new-%d.%s.svc.cluster.local.", i, ns)
		for {
			m := new(mdns.Msg)
			m.SetQuestion(name, mdns.TypeA)
			if r, _, err := c.ExchangeContext(ctx, m, addr); err == nil && len(r.Answer) == 1 {
				if a, ok := r.Answer[0].(*mdns.A); ok && a.A.String() == svc.Spec.ClusterIP {
					break
				}
			}
			if time.Since(start) > 30*time.Second {
				return [2]float64{}, fmt.Errorf("propagation: %s did not resolve in 30 s", name)
			}
			select {
			case <-ctx.Done():
				return [2]float64{}, ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
		ds = append(ds, float64(time.Since(start).Microseconds())/1000)
	}
	return [2]float64{round2(bench.Median(ds)), round2(slices.Max(ds))}, nil
}

// waitDNSAnswer polls addr until name resolves to want.
func waitDNSAnswer(ctx context.Context, addr, name, want string, timeout time.Duration) error {
	c := &mdns.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		m := new(mdns.Msg)
		m.SetQuestion(name, mdns.TypeA)
		r, _, err := c.ExchangeContext(ctx, m, addr)
		if err == nil && len(r.Answer) == 1 {
			if a, ok := r.Answer[0].(*mdns.A); ok && a.A.String() == want {
				return nil
			}
		}
		last = fmt.Sprint(r, err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not resolve %s to %s in %s (last: %s)", addr, name, want, timeout, last)
}

var (
	dnsperfQPS       = regexp.MustCompile(`Queries per second:\s+([0-9.]+)`)
	dnsperfLost      = regexp.MustCompile(`Queries lost:\s+([0-9]+)`)
	dnsperfCompleted = regexp.MustCompile(`Queries completed:\s+([0-9]+)`)
)

// dnsperfRun is one dnsperf run's result.
type dnsperfRun struct {
	qps             float64
	lost, completed int64
	perfCPU         time.Duration // dnsperf's own user+system time
	serverCPUus     float64       // the server's CPU µs per completed query
	perfCPUus       float64       // dnsperf's CPU µs per completed query
}

// measureDNSPerf runs dnsperf against the server pid listening on addr
// and adds the server's and dnsperf's CPU time per completed query.
func measureDNSPerf(ctx context.Context, o dnsBenchOpts, addr, file string, pid int) (dnsperfRun, error) {
	before, err := procCPU(pid)
	if err != nil {
		return dnsperfRun{}, err
	}
	run, err := runDNSPerf(ctx, o.dnsperf, addr, file, o.duration, o.clients)
	if err != nil {
		return run, err
	}
	after, err := procCPU(pid)
	if err != nil {
		return run, err
	}
	if run.completed > 0 {
		run.serverCPUus = float64(after-before) / float64(time.Microsecond) / float64(run.completed)
		run.perfCPUus = float64(run.perfCPU) / float64(time.Microsecond) / float64(run.completed)
	}
	return run, nil
}

// runDNSPerf runs dnsperf against addr: queries per second, lost and
// completed, and dnsperf's CPU time.
func runDNSPerf(ctx context.Context, bin, addr, file string, d time.Duration, clients int) (dnsperfRun, error) {
	host, port, _ := net.SplitHostPort(addr)
	secs := max(1, int(d.Round(time.Second)/time.Second))
	cmd := exec.CommandContext(ctx, bin, "-s", host, "-p", port, "-d", file, "-l", strconv.Itoa(secs),
		"-c", strconv.Itoa(clients), "-T", strconv.Itoa(min(clients, runtime.NumCPU())), "-q", "500", "-t", "2")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return dnsperfRun{}, fmt.Errorf("dnsperf: %w: %s", err, out)
	}
	var run dnsperfRun
	m := dnsperfQPS.FindSubmatch(out)
	if m == nil {
		return run, fmt.Errorf("dnsperf: no QPS in output: %s", out)
	}
	run.qps, _ = strconv.ParseFloat(string(m[1]), 64)
	if m := dnsperfLost.FindSubmatch(out); m != nil {
		run.lost, _ = strconv.ParseInt(string(m[1]), 10, 64)
	}
	if m := dnsperfCompleted.FindSubmatch(out); m != nil {
		run.completed, _ = strconv.ParseInt(string(m[1]), 10, 64)
	}
	run.perfCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return run, nil
}

// dnsLatency sends n sequential queries for cluster names and returns the
// p50 and p99 round trip in milliseconds.
func dnsLatency(addr, ns string, services, n int) (float64, float64, error) {
	conn, err := net.Dial("udp", addr)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	c := &mdns.Conn{Conn: conn}
	lat := make([]time.Duration, 0, n)
	for i := range n {
		m := new(mdns.Msg)
		m.SetQuestion(fmt.Sprintf("web-%d.%s.svc.cluster.local.", (i*7919)%services, ns), mdns.TypeA)
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		t0 := time.Now()
		if err := c.WriteMsg(m); err != nil {
			return 0, 0, err
		}
		r, err := c.ReadMsg()
		if err != nil {
			return 0, 0, fmt.Errorf("latency query %d: %w", i, err)
		}
		lat = append(lat, time.Since(t0))
		if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 {
			return 0, 0, fmt.Errorf("latency query %d: unexpected answer %v", i, r)
		}
	}
	slices.Sort(lat)
	q := func(p float64) float64 {
		i := min(len(lat)-1, int(math.Ceil(p*float64(len(lat))))-1)
		return math.Round(float64(lat[max(0, i)])/1e3) / 1e3
	}
	return q(0.5), q(0.99), nil
}

// procRSSParts reads RssAnon and RssFile of pid in bytes.
func procRSSParts(pid int) (anon, file int64, err error) {
	kb, err := procStatusKB(pid, "RssAnon", "RssFile")
	if err != nil {
		return 0, 0, err
	}
	return kb[0] * 1024, kb[1] * 1024, nil
}
