package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"github.com/skiffhq/skiff/backend"
	"github.com/skiffhq/skiff/controlplane/authz/bootstrap"
	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/internal/bench"
	"github.com/skiffhq/skiff/nodeagent/hollow"
	"github.com/skiffhq/skiff/server"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Issue 9's targets for `skiff-bench dashboard`.
const (
	dashTargetFirstRenderMs = 1000.0
	dashTargetUpdateMs      = 250.0
)

const (
	dashBenchNS    = "bench-dashboard"
	dashBenchToken = "skiff-bench-dashboard-admin"
)

type dashBenchOpts struct {
	pods, nodes, workers, updates, clients int
	script, chromium, nodeBin, dataDir     string
	settle, timeout                        time.Duration
}

// dashBrowserResult is the JSON line the browser script prints after
// "RESULT ".
type dashBrowserResult struct {
	LoginMs           float64   `json:"login_ms"`
	FirstRenderMs     float64   `json:"first_render_ms"`
	FirstRenderWarmMs float64   `json:"first_render_warm_ms"`
	PageLoadMs        float64   `json:"first_render_page_load_ms"`
	PageLoadWarmMs    float64   `json:"first_render_warm_page_load_ms"`
	FilterMs          float64   `json:"filter_ms"`
	FilterRows        int       `json:"filter_rows"`
	UpdateMs          []float64 `json:"update_ms"`
}

type dashTargets struct {
	FirstRenderMs float64 `json:"first_render_ms"`
	UpdateMs      float64 `json:"update_latency_ms"`
}

type dashBenchResult struct {
	Benchmark       string      `json:"benchmark"`
	CPUs            int         `json:"cpus"`
	LoadAvg         float64     `json:"load_avg_1m_at_start"`
	Pods            int         `json:"pods"`
	Nodes           int         `json:"hollow_nodes"`
	CreateSeconds   float64     `json:"create_seconds"`
	RunningSeconds  float64     `json:"all_running_seconds"`
	LoginMs         float64     `json:"login_ms"`
	FirstRenderMs   float64     `json:"first_render_ms"`
	FirstRenderWarm float64     `json:"first_render_warm_ms"`
	PageLoadMs      float64     `json:"first_render_page_load_ms"`
	PageLoadWarmMs  float64     `json:"first_render_warm_page_load_ms"`
	Filter          string      `json:"filter"`
	FilterRows      int         `json:"filter_rows"`
	FilterMs        float64     `json:"filter_ms"`
	Updates         int         `json:"updates"`
	UpdateP50Ms     float64     `json:"update_latency_ms_p50"`
	UpdateP99Ms     float64     `json:"update_latency_ms_p99"`
	UpdateMaxMs     float64     `json:"update_latency_ms_max"`
	WarmMs          float64     `json:"backend_warm_ms"`
	RSSIdleMiB      float64     `json:"backend_rss_mib_idle"`
	RSSBrowserMiB   float64     `json:"backend_rss_mib_1_browser"`
	Clients         int         `json:"ws_clients"`
	RSSClientsMiB   float64     `json:"backend_rss_mib_50_clients"`
	RSSPeakMiB      float64     `json:"backend_peak_rss_mib"`
	ClientsPageP50  float64     `json:"ws_clients_first_page_ms_p50"`
	ClientsPageMax  float64     `json:"ws_clients_first_page_ms_max"`
	Targets         dashTargets `json:"targets"`
	MeetsFirst      bool        `json:"meets_first_render"`
	MeetsUpdate     bool        `json:"meets_update_latency"`
	MeetsTargets    bool        `json:"meets_targets"`
	Note            string      `json:"note"`
}

func dashboardCommand() *cobra.Command {
	var o dashBenchOpts
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Benchmark the web dashboard: N pods on hollow nodes, headless Chromium (first pods-table render, filter, API write to DOM) and the backend's RSS with 1 browser and with 50 websocket clients",
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := runDashboardBench(cmd.Context(), o)
			if err != nil {
				return err
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.pods, "pods", 30000, "pods in the benchmark namespace, all Running on hollow nodes")
	f.IntVar(&o.nodes, "nodes", 100, "hollow nodes the pods are spread over")
	f.IntVar(&o.workers, "workers", 32, "concurrent pod creators")
	f.IntVar(&o.updates, "updates", 30, "API writes (pod creates) timed until their row is in the browser's DOM")
	f.IntVar(&o.clients, "clients", 50, "simulated websocket clients (each logs in and subscribes to the pods table)")
	f.StringVar(&o.script, "script", "web/e2e/dashboard.bench.mjs", "the playwright-core browser script (its repository's node_modules must hold playwright-core)")
	f.StringVar(&o.chromium, "chromium", "/usr/bin/chromium", "Chromium binary")
	f.StringVar(&o.nodeBin, "node", "node", "Node.js binary")
	f.DurationVar(&o.settle, "settle", 5*time.Second, "wait before reading the backend's RSS")
	f.DurationVar(&o.timeout, "phase-timeout", 15*time.Minute, "give up on a phase after this long")
	f.StringVar(&o.dataDir, "data-dir", "", "server data directory (default: a temporary directory)")
	return cmd
}

// dashboardBackendCommand is the dashboard backend the benchmark runs in a
// process of its own, so that its RSS is the backend's alone. It prints
// its URL on stdout once it listens.
func dashboardBackendCommand() *cobra.Command {
	var kubeconfig string
	cmd := &cobra.Command{
		Use:    "dashboard-backend",
		Hidden: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
			if err != nil {
				return fmt.Errorf("kubeconfig: %w", err)
			}
			rc.QPS, rc.Burst = -1, 0
			// As skiff server: the kinds the dashboard opens first are
			// listed at start.
			t0 := time.Now()
			d, err := backend.New(backend.Options{CacheConfig: rc, Warm: backend.DefaultWarm,
				Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
			if err != nil {
				return err
			}
			cert, err := pki.SelfSigned("skiff-bench-dashboard", nil, []net.IP{net.IPv4(127, 0, 0, 1)}, 24*time.Hour)
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			fmt.Printf("https://%s\n", ln.Addr())
			go func() {
				// The parent reads when the warm caches held their list.
				if d.WaitWarm(ctx) == nil {
					fmt.Printf("warm %d\n", time.Since(t0).Milliseconds())
				}
			}()
			return d.Serve(ctx, ln, &cert)
		},
	}
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "the backend's identity (system:skiff-dashboard)")
	return cmd
}

// dashFilter picks a name filter for n pods named pod-%05d that matches
// the ten pods pod-XXXX0..pod-XXXX9 around the middle, and returns how many
// of the n pods it matches.
func dashFilter(n int) (string, int) {
	f := fmt.Sprintf("pod-%04d", (n/2)/10)
	m := 0
	for i := (n / 2) / 10 * 10; i < n && fmt.Sprintf("pod-%05d", i)[:len(f)] == f; i++ {
		m++
	}
	return f, m
}

// parseBrowserResult finds the script's "RESULT {...}" line.
func parseBrowserResult(line string) (*dashBrowserResult, bool, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(line), "RESULT ")
	if !ok {
		return nil, false, nil
	}
	var r dashBrowserResult
	if err := json.Unmarshal([]byte(rest), &r); err != nil {
		return nil, true, fmt.Errorf("browser result: %w", err)
	}
	return &r, true, nil
}

// msDurations turns milliseconds into sorted durations.
func msDurations(ms []float64) []time.Duration {
	out := make([]time.Duration, len(ms))
	for i, v := range ms {
		out[i] = time.Duration(v * float64(time.Millisecond))
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func runDashboardBench(ctx context.Context, o dashBenchOpts) (res *dashBenchResult, err error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if o.pods < 20 || o.nodes <= 0 || o.workers <= 0 || o.updates <= 0 || o.clients <= 0 {
		return nil, errors.New("--pods must be at least 20; --nodes, --workers, --updates and --clients positive")
	}
	script, err := findScript(o.script)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(o.chromium); err != nil {
		return nil, fmt.Errorf("--chromium: %w", err)
	}
	res = &dashBenchResult{Benchmark: "dashboard", CPUs: runtime.NumCPU(), LoadAvg: bench.LoadAvg(), Pods: o.pods, Nodes: o.nodes,
		Updates: o.updates, Clients: o.clients, Targets: dashTargets{FirstRenderMs: dashTargetFirstRenderMs, UpdateMs: dashTargetUpdateMs}}
	dir := o.dataDir
	if dir == "" {
		d, err := os.MkdirTemp("", "skiff-bench-dashboard-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(dashBenchToken+",bench-admin,1,system:masters\n"), 0o600); err != nil {
		return nil, err
	}
	srv, rc, cs, err := startServer(ctx, server.Config{DataDir: filepath.Join(dir, "server"), TokenAuthFile: tokens,
		// The pods are bound by the benchmark (spec.nodeName), so no
		// scheduler; no node lifecycle controller, whose taints on a busy
		// machine's late lease renewals would evict them.
		Disable: []string{server.SchedulerName, "nodelifecycle"}})
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, rc.CAData, 0o600); err != nil {
		return nil, err
	}
	if len(rc.CAData) == 0 && rc.CAFile != "" {
		caFile = rc.CAFile
	}

	perNode := (o.pods+o.nodes-1)/o.nodes + 20
	hc, err := hollow.Start(ctx, rc, hollow.Options{Nodes: o.nodes, CPU: "64", Memory: "256Gi", Pods: strconv.Itoa(perNode)})
	if err != nil {
		return nil, fmt.Errorf("hollow nodes: %w", err)
	}
	defer hc.Stop()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: dashBenchNS}}, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("namespace: %w", err)
	}
	created, running, err := dashCreatePods(ctx, cs, hc.NodeNames(), o)
	if err != nil {
		return nil, err
	}
	res.CreateSeconds, res.RunningSeconds = round3s(created.Seconds()), round3s(running.Seconds())
	fmt.Fprintf(os.Stderr, "skiff-bench: %d pods created in %.1f s, all Running after %.1f s\n", o.pods, created.Seconds(), running.Seconds())

	// The backend in a child process, as system:skiff-dashboard.
	kubeconfig := filepath.Join(dir, "dashboard.kubeconfig")
	drc, err := srv.ComponentConfig(bootstrap.UserDashboard, nil)
	if err != nil {
		return nil, fmt.Errorf("dashboard credential: %w", err)
	}
	if err := writeRESTKubeconfig(drc, kubeconfig); err != nil {
		return nil, err
	}
	be, err := startDashboardBackend(kubeconfig)
	if err != nil {
		return nil, err
	}
	defer be.stop()
	if err := checkBuiltUI(be.url); err != nil {
		return nil, err
	}
	time.Sleep(o.settle)
	if rss, _, err := procRSS(be.pid); err == nil {
		res.RSSIdleMiB = mib(rss)
	}

	// Phase 1: one browser.
	filter, rows := dashFilter(o.pods)
	res.Filter, res.FilterRows = filter, rows
	br, err := runBrowser(ctx, o, script, be.url, srv.URL(), caFile, filter, rows, func() {
		time.Sleep(o.settle)
		if rss, _, err := procRSS(be.pid); err == nil {
			res.RSSBrowserMiB = mib(rss)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("browser: %w", err)
	}
	res.LoginMs, res.FirstRenderMs, res.FirstRenderWarm, res.FilterMs = br.LoginMs, br.FirstRenderMs, br.FirstRenderWarmMs, br.FilterMs
	res.PageLoadMs, res.PageLoadWarmMs = br.PageLoadMs, br.PageLoadWarmMs
	lat := msDurations(br.UpdateMs)
	res.UpdateP50Ms, res.UpdateP99Ms, res.UpdateMaxMs = pctMs(lat, 0.50), pctMs(lat, 0.99), pctMs(lat, 1)

	// Phase 2: simulated websocket clients (the browser has closed).
	firstPages, closeClients, err := startWSClients(ctx, be.url, o.clients, o.timeout)
	if err != nil {
		return nil, fmt.Errorf("websocket clients: %w", err)
	}
	time.Sleep(o.settle)
	if rss, _, err := procRSS(be.pid); err == nil {
		res.RSSClientsMiB = mib(rss)
	}
	closeClients()
	res.ClientsPageP50, res.ClientsPageMax = pctMs(firstPages, 0.5), pctMs(firstPages, 1)
	if _, peak, err := procRSS(be.pid); err == nil {
		res.RSSPeakMiB = mib(peak)
	}
	res.WarmMs = float64(be.warmMs.Load())
	res.MeetsFirst = res.FirstRenderMs < dashTargetFirstRenderMs
	res.MeetsUpdate = res.UpdateP50Ms < dashTargetUpdateMs && res.UpdateP99Ms < dashTargetUpdateMs
	res.MeetsTargets = res.MeetsFirst && res.MeetsUpdate
	res.Note = "in-process API server + hollow nodes; the dashboard backend alone in a child process (RSS = its VmRSS after --settle; idle = before any client, " +
		"with the caches it warms at start (pods, nodes, namespaces, events, deployments; backend_warm_ms = start until they held their list, 0 if not by the end)); " +
		"headless Chromium via playwright-core. first_render = navigation of a new tab to the pods table until the first row and " +
		"the total are in the DOM (the first subscription to pods: it waits for the warm-up if that is not done); warm = the same in a second tab; page_load = the tab's DOMContentLoaded (the app's script ran) within it; filter = the filter " +
		"input set until only the matching rows are in the DOM; update latency = API create of a pod sorting first (POST from Node) until its row is in " +
		"the DOM (MutationObserver); the ws clients each log in and subscribe to namespaces and the pods table as the browser does, RSS read with all connected " +
		"(the browser closed)"
	return res, nil
}

func findScript(p string) (string, error) {
	cands := []string{p}
	if !filepath.IsAbs(p) {
		if exe, err := os.Executable(); err == nil {
			cands = append(cands, filepath.Join(filepath.Dir(exe), "..", p))
		}
	}
	for _, c := range cands {
		if fileExists(c) {
			abs, err := filepath.Abs(c)
			if err != nil {
				return "", err
			}
			return abs, nil
		}
	}
	return "", fmt.Errorf("browser script %s not found (run from the repository root, or pass --script)", p)
}

// dashCreatePods creates o.pods pods bound round-robin to the hollow
// nodes and waits until all are Running.
func dashCreatePods(ctx context.Context, cs kubernetes.Interface, nodes []string, o dashBenchOpts) (created, running time.Duration, err error) {
	w, err := watchPods(ctx, cs, dashBenchNS)
	if err != nil {
		return 0, 0, err
	}
	defer w.Stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		up := make(map[string]bool, o.pods)
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || ev.Type == watch.Deleted || p.Status.Phase != corev1.PodRunning {
				continue
			}
			up[p.Name] = true
			if len(up) == o.pods {
				return
			}
		}
	}()
	start := time.Now()
	jobs := make(chan int)
	errs := make(chan error, o.workers)
	var wg sync.WaitGroup
	for range o.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				p := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%05d", i), Namespace: dashBenchNS, Labels: map[string]string{"app": fmt.Sprintf("a%d", i%10)}},
					Spec:       corev1.PodSpec{NodeName: nodes[i%len(nodes)], Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}}},
				}
				if _, err := cs.CoreV1().Pods(dashBenchNS).Create(ctx, p, metav1.CreateOptions{}); err != nil {
					errs <- fmt.Errorf("create %s: %w", p.Name, err)
					return
				}
			}
		}()
	}
feed:
	for i := 0; i < o.pods; i++ {
		select {
		case jobs <- i:
		case err = <-errs:
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	if err != nil {
		return 0, 0, err
	}
	created = time.Since(start)
	select {
	case <-done:
	case <-time.After(o.timeout):
		return 0, 0, fmt.Errorf("not all %d pods Running after %v", o.pods, o.timeout)
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
	return created, time.Since(start), nil
}

// writeRESTKubeconfig writes rc (client certificate) as a kubeconfig.
func writeRESTKubeconfig(rc *rest.Config, path string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["skiff"] = &clientcmdapi.Cluster{Server: rc.Host, CertificateAuthorityData: rc.CAData, CertificateAuthority: rc.CAFile}
	cfg.AuthInfos["user"] = &clientcmdapi.AuthInfo{ClientCertificate: rc.CertFile, ClientKey: rc.KeyFile,
		ClientCertificateData: rc.CertData, ClientKeyData: rc.KeyData, Token: rc.BearerToken}
	cfg.Contexts["user"] = &clientcmdapi.Context{Cluster: "skiff", AuthInfo: "user"}
	cfg.CurrentContext = "user"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}

type dashBackend struct {
	url  string
	pid  int
	stop func()
	// warmMs is the time from the backend's start until its warm caches
	// held their first list (0 until it printed it).
	warmMs atomic.Int64
}

func startDashboardBackend(kubeconfig string) (*dashBackend, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	c := exec.Command(self, "dashboard-backend", "--kubeconfig", kubeconfig)
	c.Stderr = os.Stderr
	out, err := c.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := c.Start(); err != nil {
		return nil, fmt.Errorf("start dashboard backend: %w", err)
	}
	stop := func() {
		_ = c.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = c.Process.Kill()
			<-done
		}
	}
	be := &dashBackend{pid: c.Process.Pid, stop: stop}
	urlCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			urlCh <- strings.TrimSpace(sc.Text())
		}
		close(urlCh)
		for sc.Scan() {
			if ms, ok := strings.CutPrefix(sc.Text(), "warm "); ok {
				if n, err := strconv.ParseInt(ms, 10, 64); err == nil {
					be.warmMs.Store(n)
				}
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case u, ok := <-urlCh:
		if !ok || !strings.HasPrefix(u, "https://") {
			stop()
			return nil, fmt.Errorf("dashboard backend did not start (printed %q)", u)
		}
		be.url = u
		return be, nil
	case <-time.After(time.Minute):
		stop()
		return nil, errors.New("dashboard backend did not start in a minute")
	}
}

func insecureLoopbackClient() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // self-signed loopback backend
}

// checkBuiltUI fails unless the backend serves the built front end.
func checkBuiltUI(url string) error {
	resp, err := insecureLoopbackClient().Get(url + "/")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(b), `id="root"`) {
		return errors.New("skiff-bench embeds no built UI: run `npm ci && npm run build` (or make build) before building it")
	}
	return nil
}

// runBrowser runs the browser script, calls hold once it has printed its
// result (the browser still open on the pods table), then lets it close.
func runBrowser(ctx context.Context, o dashBenchOpts, script, dashURL, apiURL, caFile, filter string, rows int, hold func()) (*dashBrowserResult, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	root := filepath.Dir(filepath.Dir(filepath.Dir(script))) // <root>/web/e2e/x.mjs
	c := exec.CommandContext(ctx, o.nodeBin, script)
	c.Dir = root
	home, err := os.MkdirTemp("", "skiff-bench-dashboard-home-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(home)
	c.Env = append(os.Environ(), "HOME="+home, "CHROMIUM="+o.chromium, "DASHBOARD_URL="+dashURL, "ADMIN_TOKEN="+dashBenchToken,
		"API_URL="+apiURL, "API_CA="+caFile, "NS="+dashBenchNS, "PODS="+strconv.Itoa(o.pods), "FILTER="+filter,
		"FILTER_ROWS="+strconv.Itoa(rows), "UPDATES="+strconv.Itoa(o.updates))
	c.Stderr = os.Stderr
	c.WaitDelay = 10 * time.Second
	stdin, err := c.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := c.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := c.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", o.nodeBin, err)
	}
	var res *dashBrowserResult
	var perr error
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		r, ok, err := parseBrowserResult(line)
		if !ok {
			fmt.Fprintln(os.Stderr, "browser:", line)
			continue
		}
		if err != nil {
			perr = err
			break
		}
		res = r
		hold()
		break
	}
	_ = stdin.Close()
	_, _ = io.Copy(io.Discard, out)
	werr := c.Wait()
	switch {
	case perr != nil:
		return nil, perr
	case res == nil && werr != nil:
		return nil, fmt.Errorf("browser script: %w", werr)
	case res == nil:
		return nil, errors.New("browser script printed no result")
	}
	return res, nil
}

// dashLogin logs in to the dashboard with the token and returns the
// session cookie header value.
func dashLogin(ctx context.Context, hc *http.Client, url, token string) (string, error) {
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/api/login", strings.NewReader(fmt.Sprintf(`{"token":%q}`, token)))
		if err != nil {
			return "", err
		}
		req.Header.Set("Origin", url)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return "", err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests && attempt < 200 {
			// Logins are limited per client IP (2/s, burst 10).
			select {
			case <-time.After(300 * time.Millisecond):
			case <-ctx.Done():
				return "", ctx.Err()
			}
			continue
		}
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("login: %s", resp.Status)
		}
		for _, ck := range resp.Cookies() {
			if ck.Name == backend.CookieName {
				return ck.Name + "=" + ck.Value, nil
			}
		}
		return "", errors.New("login set no session cookie")
	}
}

// dashSubscribe is what the browser's pods table subscribes to.
func dashSubscribe(id, resource, ns string, limit int) map[string]any {
	return map[string]any{"type": "subscribe", "id": id, "group": "", "version": "v1", "resource": resource, "namespace": ns,
		"filter": map[string]any{"text": "", "labels": ""}, "sort": map[string]any{"by": "name", "desc": false},
		"page": map[string]any{"offset": 0, "limit": limit}, "known": map[string]any{}}
}

// startWSClients logs n clients in, each with its own session, opens their
// sockets, subscribes each to namespaces and the benchmark's pods table,
// and returns once every one has its first pods page (the times from
// subscribe to first page, sorted) with a function that closes them.
func startWSClients(ctx context.Context, url string, n int, timeout time.Duration) ([]time.Duration, func(), error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hc := insecureLoopbackClient()
	d := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, EnableCompression: true} //nolint:gosec // self-signed loopback backend
	var conns []*websocket.Conn
	closeAll := func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}
	type first struct {
		d   time.Duration
		err error
	}
	firsts := make(chan first, n)
	for i := 0; i < n; i++ {
		cookie, err := dashLogin(ctx, hc, url, dashBenchToken)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("client %d: %w", i, err)
		}
		conn, resp, err := d.DialContext(ctx, "wss"+strings.TrimPrefix(url, "https")+"/api/ws", http.Header{"Origin": {url}, "Cookie": {cookie}})
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("client %d: websocket: %w", i, err)
		}
		conns = append(conns, conn)
		t0 := time.Now()
		if err := conn.WriteJSON(dashSubscribe("ns", "namespaces", "", 500)); err != nil {
			closeAll()
			return nil, nil, err
		}
		if err := conn.WriteJSON(dashSubscribe("p", "pods", dashBenchNS, 200)); err != nil {
			closeAll()
			return nil, nil, err
		}
		go func() {
			got := false
			for {
				var m struct {
					Type, ID, Message string
				}
				if err := conn.ReadJSON(&m); err != nil {
					if !got {
						firsts <- first{err: err}
					}
					return
				}
				if m.Type == "error" && !got {
					got = true
					firsts <- first{err: fmt.Errorf("subscription %s: %s", m.ID, m.Message)}
				}
				if m.Type == "page" && m.ID == "p" && !got {
					got = true
					firsts <- first{d: time.Since(t0)}
				}
			}
		}()
	}
	var out []time.Duration
	for len(out) < n {
		select {
		case f := <-firsts:
			if f.err != nil {
				closeAll()
				return nil, nil, f.err
			}
			out = append(out, f.d)
		case <-ctx.Done():
			closeAll()
			return nil, nil, fmt.Errorf("%d of %d clients got their first page: %w", len(out), n, ctx.Err())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, closeAll, nil
}
