package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skiffhq/skiff/nodeagent/runtime"
	"github.com/skiffhq/skiff/version"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Probes (the kubelet's prober): one worker goroutine per container and
// probe type, bound to the container's runtime ID, so that a restarted
// container starts over with fresh results. Workers end when the
// container stops running, when its pod goes away, or when the agent
// stops; liveness and startup workers also end after they killed their
// container.

type probeType string

const (
	probeLiveness  probeType = "Liveness"
	probeReadiness probeType = "Readiness"
	probeStartup   probeType = "Startup"
)

type probeResult int8

const (
	probeUnknown probeResult = iota
	probeSuccess
	probeFailure
)

// maxProbeOutput bounds what a probe keeps of a command's output or a
// response body (upstream: 10 KiB).
const maxProbeOutput = 10 * 1024

type probeKey struct {
	uid       types.UID
	container string
	typ       probeType
}

// probeManager owns the probe workers of every pod on this node.
type probeManager struct {
	a   *Agent
	ctx context.Context // ends when the agent stops
	wg  sync.WaitGroup
	// http is shared by HTTP probes and hooks: no keep-alives (each
	// probe is a new connection, as upstream), no proxy, no TLS checks.
	http *http.Transport

	mu      sync.Mutex
	workers map[probeKey]*probeWorker
	running atomic.Int32 // worker goroutines alive
}

func newProbeManager(ctx context.Context, a *Agent) *probeManager {
	return &probeManager{a: a, ctx: ctx, workers: map[probeKey]*probeWorker{}, http: &http.Transport{
		Proxy:             nil,
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // upstream probes skip verification
		DisableKeepAlives: true,
	}}
}

type probeWorker struct {
	key    probeKey
	id     string // runtime container ID
	spec   *corev1.Probe
	cancel context.CancelFunc

	mu     sync.Mutex
	result probeResult
}

func (w *probeWorker) get() probeResult {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.result
}

// syncPod starts the workers a running pod needs and stops those of
// containers that no longer run.
func (m *probeManager) syncPod(pod *corev1.Pod, ctrs map[string][]runtime.Container, podIP string) {
	specs := make([]*corev1.Container, 0, len(pod.Spec.Containers)+len(pod.Spec.InitContainers))
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			specs = append(specs, c) // sidecars are probed like containers
		}
	}
	for i := range pod.Spec.Containers {
		specs = append(specs, &pod.Spec.Containers[i])
	}
	for _, c := range specs {
		var cur *runtime.Container
		if list := ctrs[c.Name]; len(list) > 0 && list[0].State == runtime.StateRunning {
			cur = &list[0]
		}
		for typ, spec := range map[probeType]*corev1.Probe{probeStartup: c.StartupProbe, probeLiveness: c.LivenessProbe, probeReadiness: c.ReadinessProbe} {
			key := probeKey{uid: pod.UID, container: c.Name, typ: typ}
			if spec == nil || cur == nil {
				m.stop(key)
				continue
			}
			m.ensure(key, pod, c, spec, *cur, podIP)
		}
	}
}

func (m *probeManager) ensure(key probeKey, pod *corev1.Pod, c *corev1.Container, spec *corev1.Probe, cur runtime.Container, podIP string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if w := m.workers[key]; w != nil {
		if w.id == cur.ID {
			return
		}
		w.cancel()
	}
	if m.ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithCancel(m.ctx)
	w := &probeWorker{key: key, id: cur.ID, spec: spec.DeepCopy(), cancel: cancel}
	switch key.typ {
	case probeLiveness:
		w.result = probeSuccess // alive until proven otherwise
	case probeReadiness:
		w.result = probeFailure // not ready until a probe succeeds
	}
	m.workers[key] = w
	m.wg.Add(1)
	m.running.Add(1)
	go func() {
		defer m.wg.Done()
		defer m.running.Add(-1)
		m.run(ctx, w, pod.DeepCopy(), c.DeepCopy(), cur.StartedAt, podIP)
	}()
}

func (m *probeManager) stop(key probeKey) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if w := m.workers[key]; w != nil {
		w.cancel()
		delete(m.workers, key)
	}
}

// stopPod stops every worker of a pod (deleted, terminating or done).
func (m *probeManager) stopPod(uid types.UID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, w := range m.workers {
		if k.uid == uid {
			w.cancel()
			delete(m.workers, k)
		}
	}
}

// wait blocks until every worker returned (after the agent's context
// ended).
func (m *probeManager) wait() { m.wg.Wait() }

// count is the number of workers (tests use it to prove none leak).
func (m *probeManager) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.workers)
}

func (m *probeManager) result(uid types.UID, name string, typ probeType, id string) probeResult {
	m.mu.Lock()
	w := m.workers[probeKey{uid: uid, container: name, typ: typ}]
	m.mu.Unlock()
	if w == nil || w.id != id {
		return probeUnknown
	}
	return w.get()
}

// containerReadiness is the started and ready flags of a running
// container: started once its startup probe succeeded (at once without
// one), ready once started and its readiness probe succeeded (at once
// without one).
func (m *probeManager) containerReadiness(uid types.UID, c *corev1.Container, id string) (started, ready bool) {
	started = c.StartupProbe == nil || m.result(uid, c.Name, probeStartup, id) == probeSuccess
	ready = started && (c.ReadinessProbe == nil || m.result(uid, c.Name, probeReadiness, id) == probeSuccess)
	return started, ready
}

func seconds(v int32, def int32) time.Duration {
	if v <= 0 {
		v = def
	}
	return time.Duration(v) * time.Second
}

// run probes every periodSeconds after initialDelaySeconds (counted from
// the container's start); results change only after successThreshold
// successes or failureThreshold failures in a row.
func (m *probeManager) run(ctx context.Context, w *probeWorker, pod *corev1.Pod, c *corev1.Container, startedAt time.Time, podIP string) {
	if startedAt.IsZero() {
		startedAt = time.Now()
	}
	timer := time.NewTimer(max(0, time.Until(startedAt.Add(time.Duration(w.spec.InitialDelaySeconds)*time.Second))))
	defer timer.Stop()
	var last probeResult
	run := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		timer.Reset(seconds(w.spec.PeriodSeconds, 10))
		if w.key.typ != probeStartup {
			if started, _ := m.containerReadiness(pod.UID, c, w.id); !started {
				continue // the startup probe gates liveness and readiness
			}
		}
		res, out := m.probe(ctx, w.spec, pod, c, w.id, podIP)
		if ctx.Err() != nil {
			return
		}
		if res == probeFailure {
			m.a.event(pod, corev1.EventTypeWarning, "Unhealthy", "%s probe failed: %s", w.key.typ, out)
		}
		if res == last {
			run++
		} else {
			last, run = res, 1
		}
		if (res == probeFailure && run < int(max(1, w.spec.FailureThreshold))) ||
			(res == probeSuccess && run < int(max(1, w.spec.SuccessThreshold))) {
			continue
		}
		w.mu.Lock()
		changed := w.result != res
		w.result = res
		w.mu.Unlock()
		if changed {
			m.a.queue.Add(pod.UID) // status (ready, started) changes
		}
		switch {
		case res == probeSuccess && w.key.typ == probeStartup:
			return // startup probes stop once the container started
		case res == probeFailure && w.key.typ != probeReadiness:
			grace := grace(&corev1.Pod{Spec: pod.Spec})
			if w.spec.TerminationGracePeriodSeconds != nil {
				grace = time.Duration(*w.spec.TerminationGracePeriodSeconds) * time.Second
			}
			msg := fmt.Sprintf("Container %s failed %s probe, will be restarted", c.Name, strings.ToLower(string(w.key.typ)))
			m.a.event(pod, corev1.EventTypeNormal, "Killing", "%s", msg)
			m.a.log.Info("killing unhealthy container", "pod", pod.Namespace+"/"+pod.Name, "container", c.Name, "probe", w.key.typ, "output", out)
			cur, err := m.a.rt.Get(ctx, w.id)
			if err == nil {
				err = m.a.stopContainer(ctx, pod, c, cur, grace, podIP)
			}
			if err != nil && ctx.Err() == nil {
				m.a.log.Warn("kill unhealthy container", "pod", pod.Namespace+"/"+pod.Name, "container", c.Name, "err", err)
			}
			return // on hold until the container is replaced
		}
	}
}

// probe runs one probe attempt with its timeout.
func (m *probeManager) probe(ctx context.Context, p *corev1.Probe, pod *corev1.Pod, c *corev1.Container, id, podIP string) (probeResult, string) {
	timeout := seconds(p.TimeoutSeconds, 1)
	switch {
	case p.Exec != nil:
		return m.a.execProbe(ctx, id, p.Exec.Command, timeout)
	case p.HTTPGet != nil:
		return m.httpProbe(ctx, p.HTTPGet, c, podIP, timeout)
	case p.TCPSocket != nil:
		port, err := resolvePort(p.TCPSocket.Port, c)
		if err != nil {
			return probeFailure, err.Error()
		}
		return tcpProbe(ctx, hostOr(p.TCPSocket.Host, podIP), port, timeout)
	case p.GRPC != nil:
		svc := ""
		if p.GRPC.Service != nil {
			svc = *p.GRPC.Service
		}
		return grpcProbe(ctx, podIP, int(p.GRPC.Port), svc, timeout)
	}
	return probeUnknown, "probe has no handler"
}

func hostOr(host, podIP string) string {
	if host != "" {
		return host
	}
	return podIP
}

// execProbe runs cmd in the container; exit 0 is success.
func (a *Agent) execProbe(ctx context.Context, id string, cmd []string, timeout time.Duration) (probeResult, string) {
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := &limitedBuffer{max: maxProbeOutput}
	code, err := a.rt.Exec(tctx, id, cmd, runtime.StreamIO{Stdout: out, Stderr: out})
	switch {
	case ctx.Err() != nil:
		return probeUnknown, ""
	case tctx.Err() != nil:
		return probeFailure, fmt.Sprintf("command %q timed out", strings.Join(cmd, " "))
	case err != nil:
		return probeFailure, err.Error()
	case code != 0:
		return probeFailure, out.String()
	}
	return probeSuccess, out.String()
}

// resolvePort finds a probe's port: a number, or the name of one of the
// container's ports.
func resolvePort(p intstr.IntOrString, c *corev1.Container) (int, error) {
	if p.Type == intstr.Int {
		if p.IntVal <= 0 || p.IntVal > 65535 {
			return 0, fmt.Errorf("invalid port number: %d", p.IntVal)
		}
		return int(p.IntVal), nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil && n > 0 && n <= 65535 {
		return n, nil
	}
	return 0, fmt.Errorf("couldn't find port: %v in %s", p.StrVal, c.Name)
}

// probeUserAgent is kube-probe/<major>.<minor>, as upstream sends.
func probeUserAgent() string {
	v := strings.TrimPrefix(version.Info().GitVersion, "v")
	parts := strings.SplitN(v, ".", 3)
	if len(parts) >= 2 {
		return "kube-probe/" + parts[0] + "." + parts[1]
	}
	return "kube-probe"
}

// httpGetURL builds the URL and headers of an httpGet probe or hook.
func httpGetURL(h *corev1.HTTPGetAction, c *corev1.Container, podIP string) (*url.URL, error) {
	port, err := resolvePort(h.Port, c)
	if err != nil {
		return nil, err
	}
	scheme := strings.ToLower(string(h.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	path := h.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u, err := url.Parse(path)
	if err != nil {
		return nil, fmt.Errorf("invalid path %q: %w", h.Path, err)
	}
	u.Scheme, u.Host = scheme, net.JoinHostPort(hostOr(h.Host, podIP), strconv.Itoa(port))
	return u, nil
}

// doHTTPGet sends an httpGet probe or hook: status 200-399 is success.
// Redirects are followed to the same host only (a redirect elsewhere
// counts as success, as upstream).
func (m *probeManager) doHTTPGet(ctx context.Context, h *corev1.HTTPGetAction, c *corev1.Container, podIP string, timeout time.Duration) (probeResult, string) {
	u, err := httpGetURL(h, c, podIP)
	if err != nil {
		return probeFailure, err.Error()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return probeFailure, err.Error()
	}
	req.Header.Set("User-Agent", probeUserAgent())
	req.Header.Set("Accept", "*/*")
	for _, hd := range h.HTTPHeaders {
		if strings.EqualFold(hd.Name, "Host") {
			req.Host = hd.Value
			continue
		}
		req.Header.Set(hd.Name, hd.Value)
	}
	client := &http.Client{Transport: m.http, Timeout: timeout, CheckRedirect: func(r *http.Request, via []*http.Request) error {
		if r.URL.Hostname() != via[0].URL.Hostname() || len(via) >= 10 {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	resp, err := client.Do(req)
	if err != nil {
		return probeFailure, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxProbeOutput))
	if resp.StatusCode >= http.StatusOK && resp.StatusCode < http.StatusBadRequest {
		return probeSuccess, string(body)
	}
	return probeFailure, fmt.Sprintf("HTTP probe failed with statuscode: %d", resp.StatusCode)
}

func (m *probeManager) httpProbe(ctx context.Context, h *corev1.HTTPGetAction, c *corev1.Container, podIP string, timeout time.Duration) (probeResult, string) {
	return m.doHTTPGet(ctx, h, c, podIP, timeout)
}

// tcpProbe succeeds when a TCP connection opens.
func tcpProbe(ctx context.Context, host string, port int, timeout time.Duration) (probeResult, string) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return probeFailure, err.Error()
	}
	_ = conn.Close()
	return probeSuccess, ""
}

// grpcProbe calls grpc.health.v1.Health/Check; SERVING is success. The
// messages are upstream's.
func grpcProbe(ctx context.Context, host string, port int, service string, timeout time.Duration) (probeResult, string) {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithUserAgent(probeUserAgent()))
	if err != nil {
		return probeFailure, fmt.Sprintf("timeout: failed to connect service %q within %v: %+v", addr, timeout, err)
	}
	defer conn.Close()
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(tctx, &healthpb.HealthCheckRequest{Service: service}, grpc.WaitForReady(false))
	if err != nil {
		st, ok := status.FromError(err)
		switch {
		case ok && st.Code() == codes.Unimplemented:
			return probeFailure, fmt.Sprintf("this server does not implement the grpc health protocol (grpc.health.v1.Health): %s", st.Message())
		case ok && st.Code() == codes.DeadlineExceeded, errors.Is(err, context.DeadlineExceeded):
			return probeFailure, fmt.Sprintf("timeout: health rpc did not complete within %v", timeout)
		case ok && st.Code() == codes.Unavailable:
			return probeFailure, fmt.Sprintf("timeout: failed to connect service %q within %v: %+v", addr, timeout, err)
		}
		return probeFailure, fmt.Sprintf("health rpc probe failed: %+v", err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return probeFailure, fmt.Sprintf("service unhealthy (responded with %q)", resp.GetStatus().String())
	}
	return probeSuccess, ""
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.max - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}
