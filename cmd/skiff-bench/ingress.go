package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/skiffhq/skiff/addons/ingress"
	"github.com/skiffhq/skiff/internal/bench"
	"github.com/skiffhq/skiff/internal/cpuprofile"
	"github.com/skiffhq/skiff/server"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// Issue 10's targets.
const (
	ingressTargetRatio    = 0.9
	ingressTargetReconfMs = 100.0
)

type ingressBenchOpts struct {
	duration             time.Duration
	connections, threads int
	wrk, nginx           string
	reconfRounds         int
	bodyBytes            int
	cpuProfile           string
	cpuProfileOf         string
	rounds               int
}

type proxyResult struct {
	RequestsPerSec float64 `json:"requests_per_second"`
	P50Ms          float64 `json:"p50_ms"`
	P99Ms          float64 `json:"p99_ms"`
	Non2xx         int64   `json:"non_2xx"`
	SocketErrors   string  `json:"socket_errors,omitempty"`
	// Requests wrk completed and the CPU each part used per request over
	// the wrk run.
	Requests int64     `json:"requests"`
	CPU      cpuPerReq `json:"cpu_us_per_request"`
	LoadAvg  float64   `json:"load_avg_1m"`
}

// cpuPerReq is CPU time in microseconds per request over one wrk run:
// wrk (its rusage), the proxy (nginx's master and workers; for Skiff this
// benchmark's own process, which holds the ingress and an idle API
// server), the backend (a child process of its own, the same for every
// proxy), the machine's busy time from /proc/stat, and what is left of it
// (other processes and interrupts: foreign load shows here). IdlePct is
// the machine's idle share of the run.
type cpuPerReq struct {
	Wrk     float64 `json:"wrk"`
	Proxy   float64 `json:"proxy"`
	Backend float64 `json:"backend"`
	Machine float64 `json:"machine_busy"`
	Other   float64 `json:"other"`
	IdlePct float64 `json:"machine_idle_pct"`
}

// ingressRound is one alternation: Skiff's default listener (the lean
// HTTP/1.1 loop on epoll event loops), its net/http listener, the lean
// loop with a goroutine per connection and nginx, one wrk run each.
type ingressRound struct {
	Skiff        proxyResult `json:"skiff_ingress"`
	SkiffNetHTTP proxyResult `json:"skiff_ingress_nethttp"`
	SkiffGorout  proxyResult `json:"skiff_ingress_goroutines"`
	Nginx        proxyResult `json:"nginx"`
	NginxMinimal proxyResult `json:"nginx_minimal"`
	Ratio        float64     `json:"ratio_rps_skiff_to_nginx"`
	RatioMinimal float64     `json:"ratio_rps_skiff_to_nginx_minimal"`
	RatioNetHTTP float64     `json:"ratio_rps_skiff_nethttp_to_nginx"`
	RatioGorout  float64     `json:"ratio_rps_skiff_goroutines_to_nginx"`
}

type ingressBenchResult struct {
	Benchmark    string      `json:"benchmark"`
	CPUs         int         `json:"cpus"`
	Connections  int         `json:"connections"`
	Threads      int         `json:"threads"`
	Seconds      float64     `json:"seconds_per_run"`
	BodyBytes    int         `json:"body_bytes"`
	Skiff        proxyResult `json:"skiff_ingress"`
	SkiffNetHTTP proxyResult `json:"skiff_ingress_nethttp"`
	SkiffGorout  proxyResult `json:"skiff_ingress_goroutines"`
	// Nginx forwards the headers Skiff's ingress forwards (as
	// ingress-nginx does), so the backend parses the same request;
	// NginxMinimal only Host and X-Forwarded-For.
	Nginx        proxyResult `json:"nginx"`
	NginxMinimal proxyResult `json:"nginx_minimal"`
	NginxVersion string      `json:"nginx_version"`
	Ratio        float64     `json:"ratio_rps_skiff_to_nginx"`
	RatioMinimal float64     `json:"ratio_rps_skiff_to_nginx_minimal"`
	RatioNetHTTP float64     `json:"ratio_rps_skiff_nethttp_to_nginx"`
	RatioGorout  float64     `json:"ratio_rps_skiff_goroutines_to_nginx"`
	// Rounds holds every alternation; the fields above are medians over
	// them, field by field.
	Rounds       []ingressRound `json:"rounds"`
	TargetRatio  float64        `json:"target_ratio"`
	ReconfMs     []float64      `json:"reconfiguration_ms"`
	ReconfMedian float64        `json:"reconfiguration_median_ms"`
	// ReconfAPIMs is the part of each reconfiguration spent in the
	// Ingress update call itself (the API server's write to etcd, which
	// waits for its fsync), before the ingress could hear of the change.
	ReconfAPIMs     []float64 `json:"reconfiguration_api_ms"`
	ReconfAPIMedian float64   `json:"reconfiguration_api_median_ms"`
	TargetReconf    float64   `json:"target_reconfiguration_ms"`
	MeetsTargets    bool      `json:"meets_targets"`
	Note            string    `json:"note"`
	SetupSeconds    float64   `json:"setup_seconds"`
	BackendServer   string    `json:"backend"`
}

func ingressCommand() *cobra.Command {
	var o ingressBenchOpts
	cmd := &cobra.Command{
		Use:   "ingress",
		Short: "Benchmark the ingress add-on against nginx as a keep-alive reverse proxy to the same backend, with wrk (Debian packages wrk and nginx; nothing is installed)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := runIngressBench(cmd.Context(), o)
			if err != nil {
				return err
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
		},
	}
	f := cmd.Flags()
	f.DurationVar(&o.duration, "duration", 10*time.Second, "wrk run length per proxy")
	f.IntVar(&o.connections, "connections", 64, "wrk connections")
	f.IntVar(&o.threads, "threads", 2, "wrk threads")
	f.StringVar(&o.wrk, "wrk", "wrk", "wrk binary")
	f.StringVar(&o.nginx, "nginx", "nginx", "nginx binary")
	f.IntVar(&o.reconfRounds, "reconfigurations", 9, "Ingress changes timed to their first routed request")
	f.IntVar(&o.bodyBytes, "body-bytes", 128, "backend answer size")
	f.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of this process (the ingresses, the idle server) over the first round's wrk run through the listener --cpuprofile-of names")
	f.StringVar(&o.cpuProfileOf, "cpuprofile-of", "default", "the listener --cpuprofile covers: default (lean loop on epoll), nethttp or goroutines (lean loop, a goroutine per connection)")
	f.IntVar(&o.rounds, "rounds", 3, "rounds of Skiff default (lean loop on epoll) and nginx forwarding the same headers back to back (which goes first alternates), then nginx forwarding only Host and X-Forwarded-For, Skiff net/http and Skiff lean loop on goroutines; the top-level results are medians over them")
	return cmd
}

func freeLoopbackPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func runIngressBench(ctx context.Context, o ingressBenchOpts) (*ingressBenchResult, error) {
	wrkBin, err := exec.LookPath(o.wrk)
	if err != nil {
		return nil, fmt.Errorf("%s not found: install the Debian package wrk (apt-get install wrk); this benchmark installs nothing", o.wrk)
	}
	nginxBin, err := exec.LookPath(o.nginx)
	if err != nil {
		return nil, fmt.Errorf("%s not found: install the Debian package nginx (apt-get install nginx); this benchmark installs nothing", o.nginx)
	}
	setup := time.Now()
	dir, err := os.MkdirTemp("", "skiff-bench-ingress-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	// The backend all proxies send to: a process of its own, so that its
	// CPU is counted apart from the proxy's.
	backendPort, backendPID, stopBackend, err := startIngressBackend(o.bodyBytes)
	if err != nil {
		return nil, err
	}
	defer stopBackend()

	httpPort, err := freeLoopbackPort()
	if err != nil {
		return nil, err
	}
	s, _, cs, err := startServer(ctx, server.Config{
		DataDir:            filepath.Join(dir, "skiff"),
		DNSListenAddress:   "127.0.0.1:0",
		IngressHTTPAddress: net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort)),
	})
	if err != nil {
		return nil, err
	}
	defer s.Stop()
	if err := waitUntil(ctx, 60*time.Second, func() bool { return s.Ingress() != nil && s.Ingress().Ready() }); err != nil {
		return nil, fmt.Errorf("ingress not ready: %w", err)
	}
	const host = "bench.example.com"
	if err := createBenchObjects(ctx, cs, backendPort, host); err != nil {
		return nil, err
	}
	ingressURL := fmt.Sprintf("http://127.0.0.1:%d/", httpPort)
	client := &http.Client{Timeout: 5 * time.Second}
	routedAt := func(base, path string) bool {
		req, _ := http.NewRequest("GET", base+strings.TrimPrefix(path, "/"), nil)
		req.Host = host
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	routed := func(path string) bool { return routedAt(ingressURL, path) }
	if err := waitUntil(ctx, 30*time.Second, func() bool { return routed("/") }); err != nil {
		return nil, fmt.Errorf("ingress never routed: %w", err)
	}

	// A second ingress in this process with net/http's server on the
	// plain listener (Options.NetHTTP1), serving the same Ingress.
	netURL, stopNet, err := startNetHTTPIngress(ctx, cs)
	if err != nil {
		return nil, err
	}
	defer stopNet()
	if err := waitUntil(ctx, 30*time.Second, func() bool { return routedAt(netURL, "/") }); err != nil {
		return nil, fmt.Errorf("net/http ingress never routed: %w", err)
	}
	// And one with the lean loop on a goroutine per connection
	// (Options.LeanGoroutines) instead of the default epoll loops.
	gorURL, stopGor, err := startIngressWith(ctx, cs, "goroutines", ingress.Options{LeanGoroutines: true})
	if err != nil {
		return nil, err
	}
	defer stopGor()
	if err := waitUntil(ctx, 30*time.Second, func() bool { return routedAt(gorURL, "/") }); err != nil {
		return nil, fmt.Errorf("goroutines ingress never routed: %w", err)
	}

	// nginx as a plain keep-alive reverse proxy to the same backend.
	// Two servers: one forwarding the headers Skiff's ingress forwards
	// (X-Forwarded-Host and -Proto, Forwarded, X-Real-IP and a request
	// ID, also answered to the client, as ingress-nginx does), so the
	// backend parses the same request from both proxies; one minimal.
	nginxPort, err := freeLoopbackPort()
	if err != nil {
		return nil, err
	}
	nginxMinPort, err := freeLoopbackPort()
	if err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`daemon off;
worker_processes %d;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[2]s/body; proxy_temp_path %[2]s/proxy;
  fastcgi_temp_path %[2]s/fcgi; uwsgi_temp_path %[2]s/uwsgi; scgi_temp_path %[2]s/scgi;
  upstream backend { server 127.0.0.1:%[3]d; keepalive 256; }
  server {
    listen 127.0.0.1:%[4]d;
    location / {
      %[6]s
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header Forwarded "for=$remote_addr;host=\"$host\";proto=$scheme";
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Request-ID $request_id;
      add_header X-Request-ID $request_id always;
    }
  }
  server {
    listen 127.0.0.1:%[5]d;
    location / {
      %[6]s
    }
  }
}
`, runtime.NumCPU(), dir, backendPort, nginxPort, nginxMinPort,
		`proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host $host; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;`)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		return nil, err
	}
	nctx, ncancel := context.WithCancel(ctx)
	defer ncancel()
	ng := exec.CommandContext(nctx, nginxBin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log"))
	ng.Stderr = os.Stderr
	// SIGTERM lets the master stop its workers (SIGKILL would orphan them,
	// still listening).
	ng.Cancel = func() error { return ng.Process.Signal(syscall.SIGTERM) }
	ng.WaitDelay = 10 * time.Second
	if err := ng.Start(); err != nil {
		return nil, fmt.Errorf("start nginx: %w", err)
	}
	defer func() { ncancel(); _ = ng.Wait() }()
	nginxURL := fmt.Sprintf("http://127.0.0.1:%d/", nginxPort)
	nginxMinURL := fmt.Sprintf("http://127.0.0.1:%d/", nginxMinPort)
	for _, u := range []string{nginxURL, nginxMinURL} {
		if err := waitUntil(ctx, 10*time.Second, func() bool {
			resp, err := client.Get(u)
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 200
		}); err != nil {
			return nil, fmt.Errorf("nginx never answered at %s: %w", u, err)
		}
	}
	ver, _ := exec.Command(nginxBin, "-v").CombinedOutput()

	res := &ingressBenchResult{
		Benchmark: "ingress", CPUs: runtime.NumCPU(), Connections: o.connections, Threads: o.threads,
		Seconds: o.duration.Seconds(), BodyBytes: o.bodyBytes, TargetRatio: ingressTargetRatio,
		TargetReconf: ingressTargetReconfMs, NginxVersion: strings.TrimSpace(strings.TrimPrefix(string(ver), "nginx version: ")),
		SetupSeconds: time.Since(setup).Seconds(), BackendServer: "Go net/http on 127.0.0.1, a child process of the benchmark (ingress-backend), the same for every proxy",
		Note: "wrk, the proxies and the backend share this machine's CPUs; the proxies keep backend connections alive and log nothing; Skiff's proxy CPU is this whole process (both ingresses, an idle API server)",
	}
	self := os.Getpid()
	wrk := func(url string, proxyPID int) (proxyResult, error) {
		load := bench.LoadAvg()
		before, err := sampleCPU(proxyPID, backendPID)
		if err != nil {
			return proxyResult{}, err
		}
		cmd := exec.CommandContext(ctx, wrkBin, "-t", strconv.Itoa(o.threads), "-c", strconv.Itoa(o.connections),
			"-d", fmt.Sprintf("%ds", int(o.duration.Seconds())), "--latency", "-H", "Host: "+host, url)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return proxyResult{}, fmt.Errorf("wrk: %w: %s", err, out)
		}
		after, err := sampleCPU(proxyPID, backendPID)
		if err != nil {
			return proxyResult{}, err
		}
		r, err := parseWrk(string(out))
		if err != nil {
			return r, err
		}
		r.LoadAvg = load
		wrkCPU := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		r.CPU = after.perRequest(before, wrkCPU, r.Requests)
		return r, nil
	}
	// Warm all three (connection pools, page cache, scheduler).
	for _, u := range []string{ingressURL, netURL, gorURL, nginxURL, nginxMinURL} {
		_ = exec.CommandContext(ctx, wrkBin, "-t1", "-c8", "-d2s", "-H", "Host: "+host, u).Run()
	}
	for i := range max(o.rounds, 1) {
		var rd ingressRound
		// profiled runs wrk, under the CPU profile when it is the first
		// round's run through the listener --cpuprofile-of names.
		profiled := func(which, url string) (proxyResult, error) {
			stop := func() {}
			if i == 0 && which == o.cpuProfileOf {
				var err error
				if stop, err = cpuprofile.Start(o.cpuProfile); err != nil {
					return proxyResult{}, err
				}
			}
			defer stop()
			return wrk(url, self)
		}
		// The ratio's two runs come one right after the other, first one
		// then the other in turn, so a slow spell of this shared VM
		// (neighbours, steal) falls on both alike and on neither first.
		skiffRun := func() (err error) { rd.Skiff, err = profiled("default", ingressURL); return err }
		nginxRun := func() (err error) { rd.Nginx, err = wrk(nginxURL, ng.Process.Pid); return err }
		pair := []func() error{skiffRun, nginxRun}
		if i%2 == 1 {
			pair[0], pair[1] = pair[1], pair[0]
		}
		for _, run := range pair {
			if err := run(); err != nil {
				return nil, err
			}
		}
		if rd.NginxMinimal, err = wrk(nginxMinURL, ng.Process.Pid); err != nil {
			return nil, err
		}
		if rd.SkiffNetHTTP, err = profiled("nethttp", netURL); err != nil {
			return nil, err
		}
		if rd.SkiffGorout, err = profiled("goroutines", gorURL); err != nil {
			return nil, err
		}
		if rd.Nginx.RequestsPerSec > 0 {
			rd.Ratio = round3(rd.Skiff.RequestsPerSec / rd.Nginx.RequestsPerSec)
			rd.RatioNetHTTP = round3(rd.SkiffNetHTTP.RequestsPerSec / rd.Nginx.RequestsPerSec)
			rd.RatioGorout = round3(rd.SkiffGorout.RequestsPerSec / rd.Nginx.RequestsPerSec)
		}
		if rd.NginxMinimal.RequestsPerSec > 0 {
			rd.RatioMinimal = round3(rd.Skiff.RequestsPerSec / rd.NginxMinimal.RequestsPerSec)
		}
		res.Rounds = append(res.Rounds, rd)
	}
	res.Skiff = medianProxyResult(res.Rounds, func(r *ingressRound) *proxyResult { return &r.Skiff })
	res.SkiffNetHTTP = medianProxyResult(res.Rounds, func(r *ingressRound) *proxyResult { return &r.SkiffNetHTTP })
	res.SkiffGorout = medianProxyResult(res.Rounds, func(r *ingressRound) *proxyResult { return &r.SkiffGorout })
	res.Nginx = medianProxyResult(res.Rounds, func(r *ingressRound) *proxyResult { return &r.Nginx })
	res.NginxMinimal = medianProxyResult(res.Rounds, func(r *ingressRound) *proxyResult { return &r.NginxMinimal })
	res.RatioMinimal = medianOf(res.Rounds, func(r *ingressRound) float64 { return r.RatioMinimal })
	res.Ratio = medianOf(res.Rounds, func(r *ingressRound) float64 { return r.Ratio })
	res.RatioNetHTTP = medianOf(res.Rounds, func(r *ingressRound) float64 { return r.RatioNetHTTP })
	res.RatioGorout = medianOf(res.Rounds, func(r *ingressRound) float64 { return r.RatioGorout })

	// Reconfiguration: add a path, time until it answers.
	for i := range o.reconfRounds {
		path := fmt.Sprintf("/reconf-%d", i)
		ing, err := cs.NetworkingV1().Ingresses("default").Get(ctx, "bench", metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		ing.Spec.Rules[0].HTTP.Paths = append(ing.Spec.Rules[0].HTTP.Paths, networkingv1.HTTPIngressPath{
			Path: path, PathType: ptr.To(networkingv1.PathTypeExact),
			Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "bench", Port: networkingv1.ServiceBackendPort{Number: 80}}},
		})
		// The only other path is Exact "/": /reconf-N answers 404 until
		// its route is in.
		start := time.Now()
		if _, err := cs.NetworkingV1().Ingresses("default").Update(ctx, ing, metav1.UpdateOptions{}); err != nil {
			return nil, err
		}
		res.ReconfAPIMs = append(res.ReconfAPIMs, float64(time.Since(start).Microseconds())/1000)
		for !routed(path) {
			if time.Since(start) > 10*time.Second {
				return nil, fmt.Errorf("route %s never appeared", path)
			}
			time.Sleep(time.Millisecond)
		}
		res.ReconfMs = append(res.ReconfMs, float64(time.Since(start).Microseconds())/1000)
	}
	if len(res.ReconfMs) > 0 {
		sorted := slices.Clone(res.ReconfMs)
		slices.Sort(sorted)
		res.ReconfMedian = sorted[len(sorted)/2]
		sorted = slices.Clone(res.ReconfAPIMs)
		slices.Sort(sorted)
		res.ReconfAPIMedian = sorted[len(sorted)/2]
	}
	res.MeetsTargets = res.Ratio >= ingressTargetRatio && res.ReconfMedian < ingressTargetReconfMs && res.Skiff.Non2xx == 0
	return res, nil
}

func createBenchObjects(ctx context.Context, cs kubernetes.Interface, backendPort int, host string) error {
	if _, err := cs.NetworkingV1().IngressClasses().Create(ctx, &networkingv1.IngressClass{
		ObjectMeta: metav1.ObjectMeta{Name: "skiff"},
		Spec:       networkingv1.IngressClassSpec{Controller: ingress.DefaultController},
	}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		// skiff server makes the class itself; a bare API server does not.
		return err
	}
	if _, err := cs.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "bench"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := cs.DiscoveryV1().EndpointSlices("default").Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "bench", Labels: map[string]string{discoveryv1.LabelServiceName: "bench", discoveryv1.LabelManagedBy: "skiff-bench"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(backendPort))}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"127.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	_, err := cs.NetworkingV1().Ingresses("default").Create(ctx, &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: "bench"},
		Spec: networkingv1.IngressSpec{
			IngressClassName: ptr.To("skiff"),
			Rules: []networkingv1.IngressRule{{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
				Paths: []networkingv1.HTTPIngressPath{{
					Path: "/", PathType: ptr.To(networkingv1.PathTypeExact),
					Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "bench", Port: networkingv1.ServiceBackendPort{Number: 80}}},
				}},
			}}}},
		},
	}, metav1.CreateOptions{})
	return err
}

func waitUntil(ctx context.Context, d time.Duration, f func() bool) error {
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

var (
	wrkRPS     = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkPct     = regexp.MustCompile(`(?m)^\s+(50|99)(?:\.0+)?%\s+([0-9.]+)(us|ms|s)\b`)
	wrkNon2xx  = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
	wrkSockErr = regexp.MustCompile(`Socket errors:[^\n]*`)
	wrkCount   = regexp.MustCompile(`(\d+) requests in `)
)

// parseWrk reads requests/s and the p50/p99 latencies of wrk --latency.
func parseWrk(out string) (proxyResult, error) {
	var r proxyResult
	m := wrkRPS.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("wrk output without Requests/sec: %s", out)
	}
	r.RequestsPerSec, _ = strconv.ParseFloat(m[1], 64)
	for _, p := range wrkPct.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(p[2], 64)
		switch p[3] {
		case "us":
			v /= 1000
		case "s":
			v *= 1000
		}
		if p[1] == "50" {
			r.P50Ms = v
		} else {
			r.P99Ms = v
		}
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		r.Non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	r.SocketErrors = wrkSockErr.FindString(out)
	if m := wrkCount.FindStringSubmatch(out); m != nil {
		r.Requests, _ = strconv.ParseInt(m[1], 10, 64)
	}
	return r, nil
}
