package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/skiffhq/skiff/addons/metrics"
	"github.com/skiffhq/skiff/internal/bench"
	"github.com/skiffhq/skiff/internal/cpuprofile"
	"github.com/skiffhq/skiff/nodeagent/stats"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

// Issue 11's targets and the peer's published figure.
const (
	metricsTargetRoundCPUSeconds = 1.0
	metricsTargetHistoryMiB      = 200.0
	metricsServerMiBPerNode      = 2.0 // metrics-server's sizing guide, no history
)

type metricsBenchOpts struct {
	nodes, pods, rounds, history int
	workers                      int
	memProfile, cpuProfile       string
}

type metricsBenchResult struct {
	Benchmark              string    `json:"benchmark"`
	CPUs                   int       `json:"cpus"`
	Nodes                  int       `json:"nodes"`
	PodsPerNode            int       `json:"pods_per_node"`
	Pods                   int       `json:"pods"`
	Path                   string    `json:"path"`
	Workers                int       `json:"scrape_workers"`
	FirstRoundCPUSeconds   float64   `json:"first_round_cpu_seconds"`
	FirstRoundWallSeconds  float64   `json:"first_round_wall_seconds"`
	RoundCPUSeconds        []float64 `json:"round_cpu_seconds"`
	MedianRoundCPUSeconds  float64   `json:"median_round_cpu_seconds"`
	MeanRoundCPUSeconds    float64   `json:"mean_round_cpu_seconds"`
	MedianRoundWallSeconds float64   `json:"median_round_wall_seconds"`
	HistoryRounds          int       `json:"history_rounds"`
	HistorySeries          int       `json:"history_series"`
	HeapDeltaMiB           float64   `json:"heap_delta_mib_after_history_rounds"`
	HeapBytesPerPod        float64   `json:"heap_delta_bytes_per_pod"`
	HeapMiBPerNode         float64   `json:"heap_delta_mib_per_node"`
	UsageSeries            int       `json:"usage_metrics_series"`
	UsageGatherCPUSeconds  float64   `json:"usage_metrics_gather_cpu_seconds"`
	TargetRoundCPUSeconds  float64   `json:"target_round_cpu_seconds"`
	TargetHistoryMiB       float64   `json:"target_history_mib_30000_pods"`
	MetricsServerMiBPerNod float64   `json:"metrics_server_reference_mib_per_node_without_history"`
	RatioMemoryToMS        float64   `json:"ratio_heap_per_node_to_metrics_server"`
	MeetsTargets           bool      `json:"meets_targets"`
	Note                   string    `json:"note"`
}

func metricsCommand() *cobra.Command {
	var o metricsBenchOpts
	cmd := &cobra.Command{
		Use:   "metrics",
		Short: "Benchmark the metrics add-on: CPU of a scrape round over hollow nodes' summaries through real HTTPS, and the heap of an hour of history",
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := runMetricsBench(cmd.Context(), o)
			if err != nil {
				return err
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.nodes, "nodes", 1000, "hollow nodes (each on its own loopback address, 127.1.x.y)")
	f.IntVar(&o.pods, "pods-per-node", 30, "pods per node (one container each)")
	f.IntVar(&o.rounds, "rounds", 20, "scrape rounds measured (after a first round); the mean includes the garbage collections the rounds cause")
	f.IntVar(&o.history, "history-rounds", 240, "rounds of history filled before the heap is measured (240 = 1 hour at 15 s)")
	f.IntVar(&o.workers, "workers", metrics.DefaultWorkers, "concurrent scrapes")
	f.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of this process over the measured rounds")
	f.StringVar(&o.memProfile, "memprofile", "", "write a heap profile of this process when the history heap is measured")
	return cmd
}

// metricsAgentsCommand is the hidden child process serving the hollow
// nodes' summaries, so their CPU is not the add-on's.
func metricsAgentsCommand() *cobra.Command {
	var nodes, pods, port int
	var cert, key string
	cmd := &cobra.Command{
		Use:    "metrics-agents",
		Hidden: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serveHollowSummaries(cmd.Context(), nodes, pods, port, cert, key)
		},
	}
	f := cmd.Flags()
	f.IntVar(&nodes, "nodes", 1000, "")
	f.IntVar(&pods, "pods-per-node", 30, "")
	f.IntVar(&port, "port", 0, "")
	f.StringVar(&cert, "cert", "", "")
	f.StringVar(&key, "key", "", "")
	return cmd
}

var benchStart = time.Now().Add(-time.Hour).Truncate(time.Second)

// hollowAddr is node i's loopback address: 127.1.0.1, 127.1.0.2, ...
func hollowAddr(i int) string { return fmt.Sprintf("127.1.%d.%d", i/250, i%250+1) }

func hollowPod(i, j int) (ns, name, uid, workload string) {
	w := (i*1000 + j) % 3000
	return fmt.Sprintf("ns-%d", j%20), fmt.Sprintf("p-%d-%d", i, j), fmt.Sprintf("uid-%d-%d", i, j), fmt.Sprintf("d-%d", w)
}

// serveHollowSummaries serves node i's synthetic summary (stats.Synthetic,
// what hollow nodes serve) over HTTPS on hollowAddr(i):port; ?r=k is the
// k-th round, 15 s after the previous one.
func serveHollowSummaries(ctx context.Context, nodes, pods, port int, cert, key string) error {
	synth := make([][]stats.SyntheticPod, nodes)
	for i := range synth {
		for j := 0; j < pods; j++ {
			ns, name, uid, _ := hollowPod(i, j)
			synth[i] = append(synth[i], stats.SyntheticPod{Namespace: ns, Name: name, UID: uid, Containers: []string{"c"}, StartTime: benchStart})
		}
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, ErrorLog: nil, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		la, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		tcp, ok := la.(*net.TCPAddr)
		ip := tcp.IP.To4()
		if !ok || ip == nil || r.URL.Path != "/stats/summary" {
			http.NotFound(w, r)
			return
		}
		i := int(ip[2])*250 + int(ip[3]) - 1
		round, _ := strconv.Atoi(r.URL.Query().Get("r"))
		if i < 0 || i >= nodes {
			http.NotFound(w, r)
			return
		}
		s := stats.Synthetic(stats.SyntheticNode{Name: fmt.Sprintf("hollow-node-%d", i), StartTime: benchStart, CPUCores: 8, MemoryBytes: 32 << 30},
			synth[i], benchStart.Add(30*time.Minute+time.Duration(round)*15*time.Second))
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s)
	})}
	for i := 0; i < nodes; i++ {
		l, err := net.Listen("tcp", net.JoinHostPort(hollowAddr(i), strconv.Itoa(port)))
		if err != nil {
			return err
		}
		go func() { _ = srv.ServeTLS(l, cert, key) }()
	}
	fmt.Println("ready")
	// The parent closes stdin when done (or dies).
	_, _ = io.Copy(io.Discard, os.Stdin)
	return srv.Close()
}

// benchCert writes a self-signed serving certificate for the hollow
// nodes' addresses and returns its PEM.
func benchCert(dir string, nodes int) (certPEM []byte, certFile, keyFile string, err error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", "", err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "skiff-bench hollow agents"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true}
	for i := 0; i < nodes; i++ {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(hollowAddr(i)))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return nil, "", "", err
	}
	kd, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, "", "", err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	certFile, keyFile = filepath.Join(dir, "agent.crt"), filepath.Join(dir, "agent.key")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		return nil, "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		return nil, "", "", err
	}
	return certPEM, certFile, keyFile, nil
}

func hollowPort() (int, error) {
	l, err := net.Listen("tcp", "127.1.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// benchObjects are the hollow nodes and their pods (each a Deployment's,
// through a ReplicaSet, 3,000 Deployments in 20 namespaces).
func benchObjects(nodes, pods, port int) []k8sruntime.Object {
	objs := make([]k8sruntime.Object, 0, nodes*(pods+1))
	for i := 0; i < nodes; i++ {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("hollow-node-%d", i)}}
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: hollowAddr(i)}}
		n.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(port)
		objs = append(objs, n)
		for j := 0; j < pods; j++ {
			ns, name, uid, dep := hollowPod(i, j)
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid),
				Labels:          map[string]string{"app": dep, "pod-template-hash": "5d8f7c9b4"},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: dep + "-5d8f7c9b4", UID: "rs", Controller: ptr.To(true)}}},
				Spec:   corev1.PodSpec{NodeName: n.Name, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
				Status: corev1.PodStatus{Phase: corev1.PodRunning}}
			objs = append(objs, p)
		}
	}
	return objs
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("heap profile: %w", err)
	}
	return f.Close()
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func runMetricsBench(ctx context.Context, o metricsBenchOpts) (*metricsBenchResult, error) {
	if o.nodes <= 0 || o.nodes > 250*250 || o.pods <= 0 || o.rounds < 1 {
		return nil, errors.New("metrics bench: bad --nodes, --pods-per-node or --rounds")
	}
	dir, err := os.MkdirTemp("", "skiff-bench-metrics-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	caPEM, certFile, keyFile, err := benchCert(dir, o.nodes)
	if err != nil {
		return nil, err
	}
	port, err := hollowPort()
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	child := exec.CommandContext(ctx, self, "metrics-agents", "--nodes", strconv.Itoa(o.nodes), "--pods-per-node", strconv.Itoa(o.pods),
		"--port", strconv.Itoa(port), "--cert", certFile, "--key", keyFile)
	child.Stderr = os.Stderr
	stdin, err := child.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := child.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := child.Start(); err != nil {
		return nil, err
	}
	defer func() {
		_ = stdin.Close()
		done := make(chan struct{})
		go func() { _ = child.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = child.Process.Kill()
			<-done
		}
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		return nil, fmt.Errorf("hollow agents did not start: %q %v", line, err)
	}

	cs := fake.NewClientset(benchObjects(o.nodes, o.pods, port)...)
	var round atomic.Int64
	scraper, err := metrics.NewHTTPScraper(&rest.Config{Host: "https://127.0.0.1", TLSClientConfig: rest.TLSClientConfig{CAData: caPEM}})
	if err != nil {
		return nil, err
	}
	scraper.URL = func(n *corev1.Node) (string, error) {
		return fmt.Sprintf("https://%s/stats/summary?r=%d", net.JoinHostPort(n.Status.Addresses[0].Address, strconv.Itoa(port)), round.Load()), nil
	}
	reg := prometheus.NewRegistry()
	c, err := metrics.New(metrics.Options{
		Client: cs, Workers: o.workers, Registerer: reg,
		Scraper: scraper,
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return nil, err
	}
	ictx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := c.Sync(ictx); err != nil {
		return nil, err
	}
	res := &metricsBenchResult{Benchmark: "metrics", CPUs: runtime.NumCPU(), Nodes: o.nodes, PodsPerNode: o.pods, Pods: o.nodes * o.pods, Workers: o.workers,
		Path:                  "collector (this process) -> HTTPS (client-go transport, keep-alive) on one loopback address per node -> hollow agents in a child process (stats.Synthetic JSON); decode, rates, snapshot, history",
		TargetRoundCPUSeconds: metricsTargetRoundCPUSeconds, TargetHistoryMiB: metricsTargetHistoryMiB, MetricsServerMiBPerNod: metricsServerMiBPerNode,
		Note: "CPU is this process's user+system time (getrusage) over a round, all cores, garbage collection included (the rounds right after the first, which allocated the history, collect more often; meets_targets uses the mean); the agents' CPU is the child's. The heap delta is measured after the informer caches synced (it holds the history, the latest snapshot, per-node rate state and idle connections); rounds after the measured ones re-record the latest snapshot (Collector.RecordLatest). metrics-server's 2 MiB/node is its sizing guide's, with no history."}
	check := func() error {
		snap := c.Latest()
		if len(snap.Nodes) != o.nodes || len(snap.Pods) != o.nodes*o.pods {
			return fmt.Errorf("round has %d nodes, %d pods; want %d, %d", len(snap.Nodes), len(snap.Pods), o.nodes, o.nodes*o.pods)
		}
		return nil
	}
	heap0 := heapAlloc()
	var walls []float64
	stopProfile := func() {}
	for r := 0; r <= o.rounds; r++ {
		if r == 1 {
			if stopProfile, err = cpuprofile.Start(o.cpuProfile); err != nil {
				return nil, err
			}
		}
		round.Store(int64(r))
		cpu0, t0 := cpuSeconds(), time.Now()
		c.Round(ctx)
		cpu, wall := cpuSeconds()-cpu0, time.Since(t0).Seconds()
		if err := check(); err != nil {
			return nil, err
		}
		if r == 0 {
			res.FirstRoundCPUSeconds, res.FirstRoundWallSeconds = cpu, wall
			continue
		}
		res.RoundCPUSeconds = append(res.RoundCPUSeconds, cpu)
		walls = append(walls, wall)
	}
	stopProfile()
	res.MedianRoundCPUSeconds, res.MedianRoundWallSeconds = bench.Median(res.RoundCPUSeconds), bench.Median(walls)
	for _, c := range res.RoundCPUSeconds {
		res.MeanRoundCPUSeconds += c / float64(len(res.RoundCPUSeconds))
	}
	last := c.Latest().Time
	for r := o.rounds + 1; r < o.history; r++ {
		c.RecordLatest(last.Add(time.Duration(r-o.rounds) * metrics.DefaultInterval))
	}
	res.HistoryRounds = max(o.history, o.rounds+1)
	heap1 := heapAlloc()
	if o.memProfile != "" {
		if err := writeHeapProfile(o.memProfile); err != nil {
			return nil, err
		}
	}
	res.HeapDeltaMiB = float64(int64(heap1)-int64(heap0)) / (1 << 20)
	res.HeapBytesPerPod = float64(int64(heap1)-int64(heap0)) / float64(res.Pods)
	res.HeapMiBPerNode = res.HeapDeltaMiB / float64(o.nodes)
	res.RatioMemoryToMS = res.HeapMiBPerNode / metricsServerMiBPerNode
	h := c.History()
	for _, k := range []metrics.Kind{metrics.KindNode, metrics.KindNamespace, metrics.KindWorkload, metrics.KindPod, metrics.KindContainer} {
		res.HistorySeries += h.Len(k)
	}
	cpu0 := cpuSeconds()
	fams, err := reg.Gather()
	res.UsageGatherCPUSeconds = cpuSeconds() - cpu0
	if err != nil {
		return nil, err
	}
	for _, f := range fams {
		if len(f.GetName()) > 0 && f.GetName()[0] != 's' { // not skiff_*
			res.UsageSeries += len(f.Metric)
		}
	}
	res.MeetsTargets = res.MeanRoundCPUSeconds < metricsTargetRoundCPUSeconds && res.HeapDeltaMiB*30000/float64(res.Pods) < metricsTargetHistoryMiB
	runtime.KeepAlive(c)
	return res, nil
}
