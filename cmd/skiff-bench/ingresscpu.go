package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/skiffhq/skiff/addons/ingress"
	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
)

// ingressBackendCommand is the backend of the ingress benchmark, run as a
// child process so that its CPU is counted apart from the proxy's and it
// is the same for every proxy. It prints its port and serves until
// SIGTERM.
func ingressBackendCommand() *cobra.Command {
	var bodyBytes int
	cmd := &cobra.Command{
		Use:    "ingress-backend",
		Hidden: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			body := []byte(strings.Repeat("x", bodyBytes))
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return fmt.Errorf("backend listen: %w", err)
			}
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				_, _ = w.Write(body)
			}), ReadHeaderTimeout: 10 * time.Second}
			go func() { <-ctx.Done(); _ = srv.Close() }()
			fmt.Fprintln(cmd.OutOrStdout(), ln.Addr().(*net.TCPAddr).Port)
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("backend: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&bodyBytes, "body-bytes", 128, "answer size")
	return cmd
}

// startIngressBackend runs ingress-backend and returns its port and pid.
func startIngressBackend(bodyBytes int) (port, pid int, stop func(), err error) {
	self, err := os.Executable()
	if err != nil {
		return 0, 0, nil, err
	}
	cmd := exec.Command(self, "ingress-backend", "--body-bytes", strconv.Itoa(bodyBytes))
	cmd.Stderr = os.Stderr
	// The backend keeps Go's defaults whatever GOMAXPROCS/GOGC the
	// benchmark runs with, so proxy settings can be compared.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOMAXPROCS=") && !strings.HasPrefix(kv, "GOGC=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, nil, err
	}
	if err := cmd.Start(); err != nil {
		return 0, 0, nil, fmt.Errorf("start backend: %w", err)
	}
	stop = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err == nil {
		port, err = strconv.Atoi(strings.TrimSpace(line))
	}
	if err != nil {
		stop()
		return 0, 0, nil, fmt.Errorf("backend port: %w", err)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	return port, cmd.Process.Pid, stop, nil
}

// startNetHTTPIngress runs a second ingress add-on in this process with
// net/http's server on the plain listener (not the default lean loop) on
// a free loopback port; it serves the same Ingresses as skiff server's.
func startNetHTTPIngress(ctx context.Context, cs kubernetes.Interface) (url string, stop func(), err error) {
	return startIngressWith(ctx, cs, "net/http", ingress.Options{NetHTTP1: true})
}

// startIngressWith runs one more ingress in this process with opts'
// listener choice (NetHTTP1, LeanGoroutines), serving the same Ingresses.
func startIngressWith(ctx context.Context, cs kubernetes.Interface, name string, opts ingress.Options) (url string, stop func(), err error) {
	ing, err := ingress.New(ingress.Options{
		Client: cs, HTTPAddr: "127.0.0.1:0", NetHTTP1: opts.NetHTTP1, LeanGoroutines: opts.LeanGoroutines, NoStatus: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return "", nil, fmt.Errorf("%s ingress: %w", name, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ing.Run(ctx) }()
	addr, ok := ing.Addrs()["http"]
	if !ok {
		cancel()
		return "", nil, fmt.Errorf("%s ingress: %w", name, <-done)
	}
	return "http://" + addr + "/", func() { cancel(); <-done }, nil
}

// cpuSample is the CPU time of the proxy, the backend and the machine at
// one moment.
type cpuSample struct {
	proxy, backend           time.Duration
	machineBusy, machineIdle time.Duration
}

// sampleCPU reads the CPU time of proxyPID and its children (nginx's
// workers), of backendPID and of the machine (/proc/stat).
func sampleCPU(proxyPID, backendPID int) (cpuSample, error) {
	var s cpuSample
	pids, err := withChildren(proxyPID)
	if err != nil {
		return s, err
	}
	for _, pid := range pids {
		if pid == backendPID {
			continue
		}
		d, err := procCPU(pid)
		if err != nil && pid == proxyPID {
			return s, fmt.Errorf("proxy cpu: %w", err)
		}
		s.proxy += d
	}
	if s.backend, err = procCPU(backendPID); err != nil {
		return s, fmt.Errorf("backend cpu: %w", err)
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s, err
	}
	s.machineBusy, s.machineIdle, err = parseProcStatCPU(string(b))
	return s, err
}

// parseProcStatCPU reads the machine's busy and idle (idle + iowait)
// time from /proc/stat's first "cpu" line.
func parseProcStatCPU(stat string) (busy, idle time.Duration, err error) {
	t, err := procStatCPUTicks(stat)
	if err != nil {
		return 0, 0, err
	}
	// user nice system idle iowait irq softirq steal (guest time is in user).
	b := t[0] + t[1] + t[2] + t[5] + t[6] + t[7]
	return ticksDuration(b), ticksDuration(t[3] + t[4]), nil
}

// procStatCPUTicks reads the first eight values of /proc/stat's first
// "cpu" line (user nice system idle iowait irq softirq steal; one a kernel
// does not print is 0), in USER_HZ ticks.
func procStatCPUTicks(stat string) ([8]int64, error) {
	var ticks [8]int64
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return ticks, fmt.Errorf("bad /proc/stat line %q", line)
	}
	for i := range ticks {
		if i+1 >= len(f) {
			break
		}
		v, err := strconv.ParseInt(f[i+1], 10, 64)
		if err != nil {
			return ticks, fmt.Errorf("bad /proc/stat line %q: %w", line, err)
		}
		ticks[i] = v
	}
	return ticks, nil
}

// ticksDuration is a time in /proc/stat's USER_HZ ticks, which Linux
// fixes at 100 a second there whatever the kernel's HZ.
func ticksDuration(ticks int64) time.Duration { return time.Duration(ticks) * time.Second / 100 }

// withChildren returns pid and the pids whose parent it is.
func withChildren(pid int) ([]int, error) {
	out := []int{pid}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil || c == pid {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		if f := strings.Fields(s[i+1:]); len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, c)
		}
	}
	return out, nil
}

// perRequest turns the CPU used from before to s (and wrk's) into
// microseconds per request.
func (s cpuSample) perRequest(before cpuSample, wrk time.Duration, requests int64) cpuPerReq {
	if requests <= 0 {
		return cpuPerReq{}
	}
	us := func(d time.Duration) float64 { return round2(float64(d.Microseconds()) / float64(requests)) }
	busy := s.machineBusy - before.machineBusy
	idle := s.machineIdle - before.machineIdle
	proxy, backend := s.proxy-before.proxy, s.backend-before.backend
	c := cpuPerReq{Wrk: us(wrk), Proxy: us(proxy), Backend: us(backend), Machine: us(busy),
		Other: us(busy - wrk - proxy - backend)}
	if busy+idle > 0 {
		c.IdlePct = round2(100 * float64(idle) / float64(busy+idle))
	}
	return c
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

func medianOf(rounds []ingressRound, f func(*ingressRound) float64) float64 {
	if len(rounds) == 0 {
		return 0
	}
	v := make([]float64, len(rounds))
	for i := range rounds {
		v[i] = f(&rounds[i])
	}
	slices.Sort(v)
	return v[len(v)/2]
}

// medianProxyResult is the median of each field of one proxy's results
// over the rounds.
func medianProxyResult(rounds []ingressRound, pick func(*ingressRound) *proxyResult) proxyResult {
	m := func(f func(*proxyResult) float64) float64 {
		return medianOf(rounds, func(r *ingressRound) float64 { return f(pick(r)) })
	}
	var r proxyResult
	r.RequestsPerSec = m(func(p *proxyResult) float64 { return p.RequestsPerSec })
	r.P50Ms = m(func(p *proxyResult) float64 { return p.P50Ms })
	r.P99Ms = m(func(p *proxyResult) float64 { return p.P99Ms })
	r.Non2xx = int64(m(func(p *proxyResult) float64 { return float64(p.Non2xx) }))
	r.Requests = int64(m(func(p *proxyResult) float64 { return float64(p.Requests) }))
	r.LoadAvg = m(func(p *proxyResult) float64 { return p.LoadAvg })
	r.CPU = cpuPerReq{
		Wrk:     m(func(p *proxyResult) float64 { return p.CPU.Wrk }),
		Proxy:   m(func(p *proxyResult) float64 { return p.CPU.Proxy }),
		Backend: m(func(p *proxyResult) float64 { return p.CPU.Backend }),
		Machine: m(func(p *proxyResult) float64 { return p.CPU.Machine }),
		Other:   m(func(p *proxyResult) float64 { return p.CPU.Other }),
		IdlePct: m(func(p *proxyResult) float64 { return p.CPU.IdlePct }),
	}
	return r
}
