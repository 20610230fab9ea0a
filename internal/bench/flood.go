package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	neturl "net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// floodConns is the number of connections the bad-token requests use
// when they all come from one address.
const floodConns = 4

// floodPhase measures valid GETs alone, then while FloodRequests requests
// with invalid bearer tokens hit the server in parallel: first from one
// address (the server throttles a source that keeps failing), then, on a
// loopback target with FloodSources > 0, spread over that many loopback
// source addresses, as a distributed flood that no per-source limit
// catches, so the server's own cost of rejecting a bad token shows.
func (r *run) floodPhase(ctx context.Context) error {
	if r.opts.FloodRequests <= 0 {
		return nil
	}
	names, err := r.floodTargets(ctx)
	if err != nil {
		return err
	}
	valid := func(ctx context.Context, w, _ int) error {
		name := names[rand.IntN(len(names))]
		_, err := r.clients[w].CoreV1().ConfigMaps(r.ns).Get(ctx, name, metav1.GetOptions{})
		return err
	}
	base := runParallel(ctx, r.opts.Clients, r.opts.Count, r.opts.Duration, valid)
	url := r.t.cfg.Host + "/api/v1/namespaces/" + r.ns + "/configmaps/" + names[0]

	res, err := r.flood(ctx, url, valid, base, nil)
	if err != nil {
		return err
	}
	if sources := loopbackSources(r.t.cfg.Host, r.opts.FloodSources); len(sources) > 0 {
		spread, err := r.flood(ctx, url, valid, base, sources)
		if err != nil {
			return err
		}
		res.Spread = spread
	}
	r.res.BadToken = res
	return nil
}

// loopbackSources returns n loopback addresses (127.0.1.1 on) to spread
// a flood over, when the target's host is a loopback address; else none.
func loopbackSources(host string, n int) []net.IP {
	u, err := neturl.Parse(host)
	if err != nil || n <= 0 {
		return nil
	}
	if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() || ip.To4() == nil {
		return nil
	}
	out := make([]net.IP, 0, n)
	for i := range n {
		out = append(out, net.IPv4(127, 0, byte(1+i/250), byte(1+i%250)))
	}
	return out
}

// flood sends FloodRequests bad-token requests to url while the valid
// requests run, and compares the latter with base. Without sources the
// flood uses floodConns connections from the default address; with them,
// one connection from each.
func (r *run) flood(ctx context.Context, url string, valid func(context.Context, int, int) error, base sample, sources []net.IP) (*BadTokenResult, error) {
	conns := floodConns
	if len(sources) > 0 {
		conns = len(sources)
	}
	var bad []*http.Client
	for i := range conns {
		d := &net.Dialer{Timeout: 10 * time.Second}
		if len(sources) > 0 {
			d.LocalAddr = &net.TCPAddr{IP: sources[i]}
		}
		c := &rest.Config{
			Host:            r.t.cfg.Host,
			TLSClientConfig: rest.TLSClientConfig{CAData: r.t.cfg.CAData, CAFile: r.t.cfg.CAFile, Insecure: r.t.cfg.Insecure, ServerName: r.t.cfg.ServerName},
			Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
				r.t.dials.Add(1)
				return d.DialContext(ctx, network, addr)
			},
			UserAgent: "skiff-bench-flood",
		}
		hc, err := rest.HTTPClientFor(c)
		if err != nil {
			return nil, fmt.Errorf("flood client: %w", err)
		}
		// Open the connection before the workers share it.
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.t.cfg.Host+"/version", nil)
		if err != nil {
			return nil, fmt.Errorf("flood client: %w", err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, fmt.Errorf("flood client: %w", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		bad = append(bad, hc)
	}
	defer func() {
		for _, hc := range bad {
			hc.CloseIdleConnections()
		}
	}()

	var (
		next     atomic.Int64
		statusMu sync.Mutex
		status   = map[string]int{}
		wg       sync.WaitGroup
		floodEnd = make(chan struct{})
		// validDone counts valid requests answered during the flood: the
		// flood lasts until FloodRequests were sent and at least minValid
		// valid ones were answered (or 30 s passed), so a short flood (a
		// smoke run) still measures valid requests during it.
		validDone atomic.Int64
		minValid  = int64(max(1, r.opts.Clients))
	)
	floodCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	t0 := time.Now()
	for w := range r.opts.FloodWorkers {
		hc := bad[w%len(bad)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := map[string]int{}
			for floodCtx.Err() == nil && (int(next.Add(1)) <= r.opts.FloodRequests || validDone.Load() < minValid && time.Since(t0) < 30*time.Second) {
				req, err := http.NewRequestWithContext(floodCtx, http.MethodGet, url, nil)
				if err != nil {
					local["error"]++
					continue
				}
				req.Header.Set("Authorization", "Bearer invalid-"+strconv.Itoa(rand.Int())+".skiff-bench")
				resp, err := hc.Do(req)
				if err != nil {
					local["error"]++
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				local[strconv.Itoa(resp.StatusCode)]++
			}
			statusMu.Lock()
			for k, v := range local {
				status[k] += v
			}
			statusMu.Unlock()
		}()
	}
	go func() {
		wg.Wait()
		close(floodEnd)
	}()
	// Valid requests for as long as the flood lasts.
	validCtx, stopValid := context.WithCancel(ctx)
	go func() {
		<-floodEnd
		stopValid()
	}()
	counted := func(ctx context.Context, c, i int) error {
		err := valid(ctx, c, i)
		if err == nil {
			validDone.Add(1)
		}
		return err
	}
	during := runParallel(validCtx, r.opts.Clients, 1<<30, 10*time.Minute, counted)
	stopValid()
	<-floodEnd
	floodDur := time.Since(t0)

	sent := 0
	for _, v := range status {
		sent += v
	}
	res := &BadTokenResult{
		BadRequests: sent, BadStatus: status, FloodWorkers: r.opts.FloodWorkers, FloodSources: max(1, len(sources)),
		FloodSec: round3(floodDur.Seconds()), FloodPerSec: round3(float64(sent) / floodDur.Seconds()),
		BaselineOps: base.ops, BaselineP50ms: percentile(base.latencies, 0.5), BaselineP99ms: percentile(base.latencies, 0.99),
		DuringFloodOps: during.ops, DuringFloodP50: percentile(during.latencies, 0.5), DuringFloodP99: percentile(during.latencies, 0.99),
		DuringFloodErrs: during.errors,
	}
	if res.BaselineP50ms > 0 {
		res.P50Ratio = round3(res.DuringFloodP50 / res.BaselineP50ms)
	}
	if res.BaselineP99ms > 0 {
		res.P99Ratio = round3(res.DuringFloodP99 / res.BaselineP99ms)
	}
	if status["401"] != sent {
		r.note("bad-token flood from %d source(s): not every invalid request was answered 401: %v", res.FloodSources, status)
	}
	return res, nil
}

// floodTargets returns the ConfigMaps the valid requests read: those of
// the create phase, or one made here when that phase did not run.
func (r *run) floodTargets(ctx context.Context) ([]string, error) {
	if r.kv != nil && len(r.kv.cms) > 0 {
		names := make([]string, len(r.kv.cms))
		for i, cm := range r.kv.cms {
			names[i] = cm.Name
		}
		return names, nil
	}
	cm, err := r.clients[0].CoreV1().ConfigMaps(r.ns).Create(ctx, r.newConfigMap(0), metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create configmap: %w", err)
	}
	return []string{cm.Name}, nil
}
