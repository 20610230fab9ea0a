package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/skiffhq/skiff/controlplane/etcdclient"
	"github.com/skiffhq/skiff/internal/chaos"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

type haOpts struct {
	bin      string
	duration time.Duration
	writers  int
	progress io.Writer
}

// haPhase is the write load against one layout.
type haPhase struct {
	Servers         int     `json:"servers"`
	Writes          int     `json:"writes"`
	Errors          int     `json:"errors"`
	WritesPerSecond float64 `json:"writes_per_second"`
	P50Ms           float64 `json:"p50_ms"`
	P99Ms           float64 `json:"p99_ms"`
}

type haResult struct {
	Benchmark       string  `json:"benchmark"`
	Writers         int     `json:"writers"`
	DurationSeconds float64 `json:"duration_seconds"`
	Single          haPhase `json:"single"`
	HA              haPhase `json:"ha3"`
	// Ratios of three servers to one (the peer: the same binary alone).
	WritesRatio float64 `json:"writes_per_second_ratio_ha3_vs_single"`
	P99Ratio    float64 `json:"p99_ratio_ha3_vs_single"`
	// LeaderKillToWriteSeconds: from SIGKILL of the server whose etcd
	// member leads to the first write another server acknowledges.
	LeaderKillToWriteSeconds float64 `json:"leader_kill_to_write_seconds"`
	FailedWritesAfterKill    int     `json:"failed_writes_after_kill"`
	LoadAvg                  string  `json:"host_loadavg"`
}

func haCommand() *cobra.Command {
	var (
		o        haOpts
		jsonOnly bool
	)
	cmd := &cobra.Command{
		Use:   "ha",
		Short: "Write throughput and p99 with 1 vs 3 servers (embedded etcd), and the time to serve writes again after the etcd leader's server is killed",
		Long: `Runs ` + "`skiff server`" + ` processes on loopback: first one server alone, then
an HA cluster of three (127.0.0.1, .2 and .3 on one port, --cluster-init and
two joins). Against each, --writers clients create ConfigMaps for --duration
(spread over the servers in the HA case). Then the server whose etcd member
is the leader is killed with SIGKILL, and a client of another server writes
every 10 ms until one write is acknowledged.

Progress goes to stderr; one JSON object is printed on stdout at the end.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			o.progress = os.Stderr
			if jsonOnly {
				o.progress = io.Discard
			}
			if o.bin == "" {
				return errors.New("--skiff: no skiff binary next to skiff-bench; build it (make build) or name it")
			}
			res, err := runHABench(ctx, o)
			if err != nil {
				return err
			}
			return json.NewEncoder(os.Stdout).Encode(res)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.bin, "skiff", defaultServerBin(), "skiff binary")
	f.DurationVar(&o.duration, "duration", 10*time.Second, "write load per layout")
	f.IntVar(&o.writers, "writers", 8, "concurrent writers")
	f.BoolVar(&jsonOnly, "json", false, "print only the JSON result")
	return cmd
}

var haIPs = []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}

func runHABench(ctx context.Context, o haOpts) (*haResult, error) {
	root, err := os.MkdirTemp("", "skiff-bench-ha-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(root)
	res := &haResult{Benchmark: "ha", Writers: o.writers, DurationSeconds: o.duration.Seconds()}
	common := []string{"--dashboard-port", "0", "--disable", "dns,etcd-snapshot"}

	// One server.
	single := &chaos.Server{DataDir: filepath.Join(root, "single"), Extra: common}
	single.Bin = o.bin
	fmt.Fprintln(o.progress, "ha: one server")
	if err := single.Start(ctx); err != nil {
		return nil, fmt.Errorf("single server: %w\n%s", err, single.LogTail(2000))
	}
	res.Single, err = haLoad(ctx, o, []*chaos.Server{single})
	single.Stop()
	if err != nil {
		return nil, err
	}

	// Three servers.
	port, err := testserver.FreePortOn(haIPs...)
	if err != nil {
		return nil, err
	}
	var servers []*chaos.Server
	defer func() {
		for _, s := range servers {
			s.Stop()
		}
	}()
	for i, ip := range haIPs {
		s := &chaos.Server{DataDir: filepath.Join(root, fmt.Sprint("ha", i+1)), Address: ip, Port: port,
			Extra: append([]string{"--advertise-address", ip}, common...)}
		s.Bin = o.bin
		if i == 0 {
			s.Extra = append(s.Extra, "--cluster-init")
		} else {
			tok, err := os.ReadFile(filepath.Join(servers[0].DataDir, "server", "token"))
			if err != nil {
				return nil, err
			}
			s.Extra = append(s.Extra, "--server", fmt.Sprintf("https://%s:%d", haIPs[0], port), "--token", strings.TrimSpace(string(tok)))
		}
		fmt.Fprintf(o.progress, "ha: server %d of 3 at %s:%d\n", i+1, ip, port)
		servers = append(servers, s)
		if err := s.Start(ctx); err != nil {
			return nil, fmt.Errorf("HA server %d: %w\n%s", i+1, err, s.LogTail(2000))
		}
	}
	if res.HA, err = haLoad(ctx, o, servers); err != nil {
		return nil, err
	}
	res.HA.Servers = 3
	if res.Single.WritesPerSecond > 0 {
		res.WritesRatio = res.HA.WritesPerSecond / res.Single.WritesPerSecond
	}
	if res.Single.P99Ms > 0 {
		res.P99Ratio = res.HA.P99Ms / res.Single.P99Ms
	}

	// Kill the leader's server; write through another until one lands.
	leader, err := etcdLeader(ctx, servers)
	if err != nil {
		return nil, err
	}
	other := servers[(leader+1)%len(servers)]
	cs, err := other.Client(time.Second)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.progress, "ha: SIGKILL of server %d (etcd leader)\n", leader+1)
	killed := time.Now()
	servers[leader].Kill()
	for i := 0; ; i++ {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if time.Since(killed) > time.Minute {
			return nil, errors.New("no write acknowledged within a minute of the leader's kill")
		}
		_, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("after-kill-%d", i)}}, metav1.CreateOptions{})
		if err == nil {
			res.LeaderKillToWriteSeconds = time.Since(killed).Seconds()
			break
		}
		res.FailedWritesAfterKill++
		time.Sleep(10 * time.Millisecond)
	}
	res.LoadAvg = loadAvg()
	return res, nil
}

// haLoad runs o.writers writers against servers (writer i on server
// i mod n) for o.duration.
func haLoad(ctx context.Context, o haOpts, servers []*chaos.Server) (haPhase, error) {
	clients := make([]kubernetes.Interface, len(servers))
	for i, s := range servers {
		cs, err := s.Client(10 * time.Second)
		if err != nil {
			return haPhase{}, err
		}
		clients[i] = cs
	}
	var (
		mu     sync.Mutex
		lat    []time.Duration
		errs   int
		wg     sync.WaitGroup
		prefix = fmt.Sprintf("w%d-", time.Now().UnixNano()%1e6)
	)
	lctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	start := time.Now()
	for w := range o.writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cs := clients[w%len(clients)]
			var mine []time.Duration
			bad := 0
			for i := 0; lctx.Err() == nil; i++ {
				cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s%d-%d", prefix, w, i)}, Data: map[string]string{"k": strings.Repeat("v", 256)}}
				t0 := time.Now()
				_, err := cs.CoreV1().ConfigMaps("default").Create(lctx, cm, metav1.CreateOptions{})
				if lctx.Err() != nil {
					break
				}
				if err != nil {
					bad++
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat, errs = append(lat, mine...), errs+bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if ctx.Err() != nil {
		return haPhase{}, ctx.Err()
	}
	if len(lat) == 0 {
		return haPhase{}, fmt.Errorf("no write succeeded (%d errors)", errs)
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	return haPhase{Servers: len(servers), Writes: len(lat), Errors: errs, WritesPerSecond: float64(len(lat)) / elapsed.Seconds(),
		P50Ms: pct(0.50), P99Ms: pct(0.99)}, nil
}

// etcdLeader is the index of the server whose etcd member leads.
func etcdLeader(ctx context.Context, servers []*chaos.Server) (int, error) {
	info, err := etcdclient.Read(servers[0].DataDir)
	if err != nil {
		return 0, err
	}
	cli, err := info.Connect(ctx)
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	st, err := cli.Status(ctx, info.Endpoints[0])
	if err != nil {
		return 0, fmt.Errorf("etcd status: %w", err)
	}
	members, err := cli.MemberList(ctx)
	if err != nil {
		return 0, fmt.Errorf("etcd member list: %w", err)
	}
	for _, m := range members.Members {
		if m.ID != st.Leader {
			continue
		}
		for i, s := range servers {
			name, err := os.ReadFile(filepath.Join(s.DataDir, "server", "etcd-name"))
			if err == nil && strings.TrimSpace(string(name)) == m.Name {
				return i, nil
			}
		}
	}
	return 0, fmt.Errorf("etcd leader %x is none of the servers", st.Leader)
}
