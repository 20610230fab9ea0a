package integration_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/skiffhq/skiff/addons/ingress"
	"github.com/skiffhq/skiff/internal/nodetest"
	"github.com/skiffhq/skiff/internal/testimages"
	"github.com/skiffhq/skiff/nodeagent/agent"
	"github.com/skiffhq/skiff/nodeagent/runtime"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// The real-pod test's own pod range and bridge (each package that runs
// pods has its own /24 in the blackholed 10.42.0.0/16).
const (
	podsCIDR   = "10.42.244.0/24"
	podsBridge = "skiffig0"
)

// podEnv is the ingress test server with a real node agent on this
// machine's containerd: pods get addresses on podsBridge, which the
// ingress (in the server, on the host) dials straight from the
// EndpointSlices the server's controllers write.
type podEnv struct {
	*env
	agent *agent.Agent
	// listeners: the plain listeners the load and routing checks go
	// through — the server's ingress (the lean loop on epoll event
	// loops, its default) and a second ingress in the test process with
	// the lean loop on a goroutine per connection
	// (Options.LeanGoroutines), both serving the same Ingresses.
	listeners []listener
}

// listener is a plain ingress listener and its lean loop's counters.
type listener struct {
	name, addr string
	stats      func() (served, handedOff int64, ok bool)
}

// startGoroutinesIngress starts the second ingress: the lean loop with a
// goroutine per connection on a plain loopback listener of its own, no
// status writes.
func (p *podEnv) startGoroutinesIngress(t *testing.T) listener {
	t.Helper()
	ing, err := ingress.New(ingress.Options{Client: p.ts.Client, HTTPAddr: "127.0.0.1:0", LeanGoroutines: true, NoStatus: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ing.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("goroutines ingress: %v", err)
		}
	})
	addr, ok := ing.Addrs()["http"]
	if !ok {
		cancel()
		t.Fatalf("goroutines ingress did not listen: %v", <-done)
	}
	waitFor(t, 30*time.Second, "goroutines ingress ready", func() (bool, string) { return ing.Ready(), "" })
	return listener{name: "goroutines", addr: addr, stats: ing.LeanStats}
}

func startWithNode(t *testing.T) *podEnv {
	t.Helper()
	nodetest.Require(t)
	began := time.Now()
	state := nodetest.StateDir(t, nodetest.HTTPServer)
	t.Logf("test image built in %v", time.Since(began).Round(time.Millisecond))
	e := start(t)
	opts := nodetest.AgentOptions(fmt.Sprintf("ingress-node-%d", time.Now().UnixNano()%1e6), state, podsCIDR, podsBridge)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	a, err := e.ts.StartAgent(ctx, opts)
	cancel()
	if err != nil {
		t.Fatalf("start agent: %v", err)
	}
	t.Logf("server and agent up after %v", time.Since(began).Round(time.Millisecond))
	t.Cleanup(func() {
		at := time.Now()
		cleanupNode(t, e, a, opts)
		t.Logf("node cleaned up in %v", time.Since(at).Round(time.Millisecond))
	})
	cs := e.ts.Client
	waitFor(t, 30*time.Second, "ServiceAccount default", func() (bool, string) {
		_, err := cs.CoreV1().ServiceAccounts(e.ns).Create(context.Background(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
		return err == nil || apierrors.IsAlreadyExists(err), fmt.Sprint(err)
	})
	p := &podEnv{env: e, agent: a}
	p.listeners = []listener{{name: "epoll", addr: e.httpAddr, stats: e.ts.Ingress().LeanStats}, p.startGoroutinesIngress(t)}
	return p
}

// cleanupNode deletes every pod, stops the agent and removes what is left
// of the pods (containers, network namespaces, the bridge and its nft
// guard), also when the test failed half way.
func cleanupNode(t *testing.T, e *env, a *agent.Agent, opts agent.Options) {
	ctx := context.Background()
	cs := e.ts.Client
	for _, ns := range []string{e.ns} {
		_ = cs.AppsV1().Deployments(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		_ = cs.AppsV1().ReplicaSets(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	}
	if pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err == nil {
		for _, p := range pods.Items {
			_ = cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		}
	}
	nodetest.Sweep(t, a, opts)
}

// deployment makes a Deployment of the test server image with a
// readiness probe over HTTP and a rolling update that never goes below
// the wanted replicas.
func deployment(name string, replicas int32, version string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{
				MaxUnavailable: ptr.To(intstr.FromInt32(0)), MaxSurge: ptr.To(intstr.FromInt32(1)),
			}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](10),
					Containers: []corev1.Container{{
						Name: "web", Image: testimages.HTTPServer, ImagePullPolicy: corev1.PullNever,
						Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: testimages.HTTPServerPort}},
						Env:   []corev1.EnvVar{{Name: "VERSION", Value: version}},
						// What a Kubernetes user does for zero-downtime
						// updates: the endpoint leaves the ingress's table
						// before the server hears SIGTERM (which it then
						// answers by draining, see the test server).
						Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 1}}},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}},
							PeriodSeconds: 1, FailureThreshold: 1,
						},
					}},
				},
			},
		},
	}
}

// answerer is the pod that answered: the test server says its hostname,
// which the agent sets to the pod's name.
func answerer(body string) string {
	f := strings.Fields(body)
	if len(f) == 0 || !strings.HasPrefix(f[0], "hostname=") {
		return ""
	}
	return strings.TrimPrefix(f[0], "hostname=")
}

// readyPods lists the pods of app that run, are Ready and are not being
// deleted; all is every pod of app.
func (p *podEnv) readyPods(ctx context.Context, app string) (ready []corev1.Pod, all []corev1.Pod) {
	l, err := p.ts.Client.CoreV1().Pods(p.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		return nil, nil
	}
	for _, pod := range l.Items {
		if pod.DeletionTimestamp == nil && pod.Status.PodIP != "" && podReady(&pod) {
			ready = append(ready, pod)
		}
	}
	return ready, l.Items
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func names(pods []corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Name)
	}
	sort.Strings(out)
	return out
}

// rolledOut says whether the Deployment has exactly its replicas, all of
// the current template and ready, and no other pod left.
func (p *podEnv) rolledOut(ctx context.Context, name string) (bool, string) {
	d, err := p.ts.Client.AppsV1().Deployments(p.ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, err.Error()
	}
	st := d.Status
	ready, all := p.readyPods(ctx, name)
	if st.ObservedGeneration < d.Generation || st.UpdatedReplicas != *d.Spec.Replicas || st.Replicas != *d.Spec.Replicas ||
		st.AvailableReplicas != *d.Spec.Replicas || len(all) != int(*d.Spec.Replicas) || len(ready) != len(all) {
		return false, fmt.Sprintf("generation %d observed %d, updated %d, replicas %d, available %d; pods %v, ready %v",
			d.Generation, st.ObservedGeneration, st.UpdatedReplicas, st.Replicas, st.AvailableReplicas, names(all), names(ready))
	}
	return true, ""
}

// result is one request of a load loop.
type result struct {
	method     string
	start, end time.Time
	code       int
	pod        string
	err        string
}

// loadLoop sends requests for host through the ingress until stop
// closes, each with its own bounded wait (timeout), one after the other
// with a short pause, and returns every result. Every other request is a
// POST with a body: one the ingress must never retry, as it may have
// reached a pod.
type loadLoop struct {
	p       *podEnv
	addr    string
	host    string
	workers int
	timeout time.Duration
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	results []result
	n       atomic.Int64
	// listener and its lean loop's served count at the start (loads).
	listener listener
	served0  int64
}

// GETs and POSTs go over connections of their own: the lean loop hands a
// connection to net/http's server at its first request with a body, and
// the GETs are to stay on the lean loop (epoll or goroutines).
func (p *podEnv) load(addr, host string, workers int) *loadLoop {
	l := &loadLoop{p: p, addr: addr, host: host, workers: workers, timeout: 15 * time.Second, stop: make(chan struct{})}
	getTr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: workers}
	postTr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: workers}
	getClient := &http.Client{Transport: getTr, Timeout: l.timeout}
	postClient := &http.Client{Transport: postTr, Timeout: l.timeout}
	for range workers {
		l.wg.Go(func() {
			var mine []result
			defer func() {
				l.mu.Lock()
				l.results = append(l.results, mine...)
				l.mu.Unlock()
			}()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				case <-time.After(3 * time.Millisecond):
				}
				r := result{method: "GET", start: time.Now()}
				var body io.Reader
				client := getClient
				if i%2 == 1 {
					r.method, body, client = "POST", strings.NewReader("a body"), postClient
				}
				req, _ := http.NewRequest(r.method, "http://"+l.addr+"/load", body)
				req.Host = host
				resp, err := client.Do(req)
				if err == nil {
					var b []byte
					b, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					r.code, r.pod = resp.StatusCode, answerer(string(b))
					if r.code != http.StatusOK {
						r.err = strings.TrimSpace(string(b))
					}
				}
				if err != nil {
					r.err = err.Error()
				}
				r.end = time.Now()
				mine = append(mine, r)
				l.n.Add(1)
			}
		})
	}
	l.p.t.Cleanup(func() { l.finish(); getTr.CloseIdleConnections(); postTr.CloseIdleConnections() })
	return l
}

// finish stops the loops and returns the results sorted by start.
func (l *loadLoop) finish() []result {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	slices.SortFunc(l.results, func(a, b result) int { return a.start.Compare(b.start) })
	return l.results
}

// waitCount waits until the loops have sent n more requests than now.
func (l *loadLoop) waitMore(n int64) {
	l.p.t.Helper()
	target := l.n.Load() + n
	waitFor(l.p.t, 60*time.Second, fmt.Sprintf("%d more requests", n), func() (bool, string) {
		return l.n.Load() >= target, fmt.Sprint(l.n.Load())
	})
}

// TestRealPods puts the ingress in front of real pods: Deployments of the
// test server on containerd behind Services, their EndpointSlices written
// by the server's controllers from the agent's readiness probes.
// Routing by host and path reaches the pods the Services select; TLS
// picks each host's certificate by SNI; a WebSocket echoes through to a
// pod. A rolling update of the Deployment (maxSurge 1, maxUnavailable 0)
// under steady GETs fails no request, and once it is done only new pods
// answer. A pod deleted with grace 0 under load: no request hangs, every
// answer is the pod's 200 or a fast 502, and the others keep answering.
// The plain-HTTP routing, the rollout and the kills go through both the
// server's ingress (the lean loop on epoll, its default) and a second one
// with a goroutine per connection (Options.LeanGoroutines), each loop
// checked to have taken the GETs itself.
func TestRealPods(t *testing.T) {
	began := time.Now()
	p := startWithNode(t)
	ctx := t.Context()
	cs := p.ts.Client
	for _, d := range []*appsv1.Deployment{deployment("web", 3, "v1"), deployment("api", 1, "v1")} {
		if _, err := cs.AppsV1().Deployments(p.ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CoreV1().Services(p.ns).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: d.Name},
			Spec: corev1.ServiceSpec{Selector: d.Spec.Selector.MatchLabels,
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	webCrt, webKey, _ := cert(t, "web.test")
	apiCrt, apiKey, _ := cert(t, "api.test")
	for name, kp := range map[string][2][]byte{"web-tls": {webCrt, webKey}, "api-tls": {apiCrt, apiKey}} {
		if _, err := cs.CoreV1().Secrets(p.ns).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name}, Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{corev1.TLSCertKey: kp[0], corev1.TLSPrivateKeyKey: kp[1]},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	p.ingress("pods", nil, networkingv1.IngressSpec{
		TLS: []networkingv1.IngressTLS{{Hosts: []string{"web.test"}, SecretName: "web-tls"}, {Hosts: []string{"api.test"}, SecretName: "api-tls"}},
		Rules: []networkingv1.IngressRule{
			rule("web.test", path(prefix, "/", "web"), path(prefix, "/api", "api"), path(exact, "/exact", "api")),
			rule("api.test", path(prefix, "/", "api")),
			rule("plain.test", path(prefix, "/", "web"), path(prefix, "/api", "api"), path(exact, "/exact", "api")),
		},
	})
	waitFor(t, 90*time.Second, "the Deployments rolled out", func() (bool, string) {
		for _, d := range []string{"web", "api"} {
			if ok, why := p.rolledOut(ctx, d); !ok {
				return false, d + ": " + why
			}
		}
		return true, ""
	})
	webPods, _ := p.readyPods(ctx, "web")
	apiPods, _ := p.readyPods(ctx, "api")
	t.Logf("web pods %v, api pods %v ready after %v", names(webPods), names(apiPods), time.Since(began).Round(time.Millisecond))

	// Plain HTTP to the TLS hosts is redirected; these requests ask for
	// no redirect by going over HTTPS, the others use X-Forwarded-Proto.
	https := func(host, uri string) (int, string) {
		t.Helper()
		leaf, code, body, err := p.tlsGet(host, uri)
		if err != nil {
			t.Fatalf("https %s%s: %v", host, uri, err)
		}
		if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != host {
			t.Errorf("https %s: served the certificate of %v", host, leaf.DNSNames)
		}
		return code, body
	}
	// The first answers may still find the route building.
	waitFor(t, 30*time.Second, "web.test routed to a web pod", func() (bool, string) {
		code, body := https("web.test", "/")
		return code == 200 && slices.Contains(names(webPods), answerer(body)), fmt.Sprintf("%d %s", code, body)
	})

	t.Run("host and path routing reach the pods", func(t *testing.T) {
		for _, c := range []struct {
			host, uri string
			pods      []corev1.Pod
		}{
			{"web.test", "/", webPods}, {"web.test", "/some/page", webPods}, {"web.test", "/api/v1", apiPods},
			{"web.test", "/apiv1", webPods}, {"web.test", "/exact", apiPods}, {"web.test", "/exact/more", webPods},
			{"api.test", "/", apiPods}, {"api.test", "/web", apiPods},
		} {
			seen := map[string]bool{}
			// Round-robin: 3 requests per pod meet each of them.
			for range 3 * len(c.pods) {
				code, body := https(c.host, c.uri)
				pod := answerer(body)
				if code != 200 || !slices.Contains(names(c.pods), pod) || !strings.Contains(body, "path="+c.uri+"\n") {
					t.Errorf("%s%s: %d %q, want an answer from one of %v for that path", c.host, c.uri, code, body, names(c.pods))
				}
				seen[pod] = true
			}
			if len(seen) != len(c.pods) {
				t.Errorf("%s%s: answered by %v, want every one of %v", c.host, c.uri, seen, names(c.pods))
			}
		}
		// Plain HTTP: the TLS hosts redirect; an unknown host has no route.
		if resp, _ := p.do("GET", "web.test", "/x", nil, nil); resp.StatusCode != http.StatusPermanentRedirect {
			t.Errorf("plain HTTP to a TLS host: %d, want 308", resp.StatusCode)
		}
		if resp, b := p.do("GET", "other.test", "/", nil, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("unknown host: %d %s, want 404", resp.StatusCode, b)
		}
	})

	// The same over plain HTTP to a host without TLS, through the epoll
	// loops (the server's ingress) and the lean loop on goroutines (the
	// second ingress): each loop must have served every request itself.
	t.Run("plain HTTP routing through the epoll and goroutine loops", func(t *testing.T) {
		for _, ls := range p.listeners {
			t.Run(ls.name, func(t *testing.T) {
				served0, handed0, ok := ls.stats()
				if !ok {
					t.Fatal("no lean loop on the plain listener")
				}
				tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4}
				defer tr.CloseIdleConnections()
				client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
				sent := 0
				for _, c := range []struct {
					uri  string
					pods []corev1.Pod
				}{
					{"/", webPods}, {"/some/page", webPods}, {"/api/v1", apiPods}, {"/apiv1", webPods},
					{"/exact", apiPods}, {"/exact/more", webPods},
				} {
					seen := map[string]bool{}
					for range 3 * len(c.pods) {
						req, _ := http.NewRequest("GET", "http://"+ls.addr+c.uri, nil)
						req.Host = "plain.test"
						resp, err := client.Do(req)
						if err != nil {
							t.Fatalf("plain.test%s: %v", c.uri, err)
						}
						b, err := io.ReadAll(resp.Body)
						resp.Body.Close()
						sent++
						body, pod := string(b), answerer(string(b))
						if err != nil || resp.StatusCode != 200 || !slices.Contains(names(c.pods), pod) || !strings.Contains(body, "path="+c.uri+"\n") {
							t.Errorf("plain.test%s: %d %q %v, want an answer from one of %v for that path", c.uri, resp.StatusCode, body, err, names(c.pods))
						}
						seen[pod] = true
					}
					if len(seen) != len(c.pods) {
						t.Errorf("plain.test%s: answered by %v, want every one of %v", c.uri, seen, names(c.pods))
					}
				}
				served, handed, _ := ls.stats()
				if served-served0 != int64(sent) || handed != handed0 {
					t.Errorf("the %s loop took %d of the %d requests and handed %d connections to net/http, want all taken, none handed", ls.name, served-served0, sent, handed-handed0)
				}
			})
		}
	})

	t.Run("TLS by SNI with two certificates", func(t *testing.T) {
		for host, pods := range map[string][]corev1.Pod{"web.test": webPods, "api.test": apiPods} {
			// https checks the served certificate is the host's own.
			if code, body := https(host, "/tls"); code != 200 || !slices.Contains(names(pods), answerer(body)) {
				t.Errorf("https %s: %d %q, want an answer from %v", host, code, body, names(pods))
			}
		}
	})

	t.Run("websocket echo to a pod", func(t *testing.T) {
		for _, c := range []struct{ url, addr string }{{"ws://plain.test/ws", p.httpAddr}, {"wss://web.test/ws", p.httpsAddr}} {
			d := websocket.Dialer{
				NetDial:          func(string, string) (net.Conn, error) { return net.Dial("tcp", c.addr) },
				TLSClientConfig:  &tls.Config{ServerName: "web.test", InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}},
				HandshakeTimeout: 10 * time.Second,
			}
			conn, resp, err := d.Dial(c.url, nil)
			if err != nil {
				t.Fatalf("websocket %s: %v (%v)", c.url, err, resp)
			}
			for i := range 5 {
				msg := fmt.Sprintf("hello %d over %s", i, c.url)
				_ = conn.NetConn().SetDeadline(time.Now().Add(10 * time.Second))
				if err := conn.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
					t.Fatalf("websocket %s write: %v", c.url, err)
				}
				if kind, got, err := conn.ReadMessage(); err != nil || kind != websocket.TextMessage || string(got) != msg {
					t.Fatalf("websocket %s echo: %d %q %v, want %q", c.url, kind, got, err, msg)
				}
			}
			conn.Close()
		}
	})

	// The load goes through both plain listeners at once; each one's
	// results are checked on their own.
	t.Run("rolling update under load fails no request", func(t *testing.T) {
		old, _ := p.readyPods(ctx, "web")
		loads := p.loads("plain.test", 4)
		for _, l := range loads {
			l.waitMore(200)
		}
		begin := time.Now()
		d, err := cs.AppsV1().Deployments(p.ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		d.Spec.Template.Spec.Containers[0].Env[0].Value = "v2"
		if _, err := cs.AppsV1().Deployments(p.ns).Update(ctx, d, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 90*time.Second, "the rolling update", func() (bool, string) {
			ok, why := p.rolledOut(ctx, "web")
			if ok {
				cur, _ := p.readyPods(ctx, "web")
				for _, pod := range cur {
					if slices.Contains(names(old), pod.Name) {
						return false, "old pod " + pod.Name + " still there"
					}
				}
			}
			return ok, why
		})
		done := time.Now()
		cur, _ := p.readyPods(ctx, "web")
		for _, l := range loads {
			l.waitMore(200)
		}
		t.Logf("rollout %v -> %v in %v", names(old), names(cur), done.Sub(begin).Round(time.Millisecond))
		for i, ls := range p.listeners {
			res := loads[i].finish()
			t.Run(ls.name, func(t *testing.T) {
				var failed, after, during []result
				for _, r := range res {
					switch {
					case r.code != http.StatusOK:
						failed = append(failed, r)
					case r.start.After(done):
						after = append(after, r)
					case r.end.After(begin):
						during = append(during, r)
					}
				}
				t.Logf("%d requests: %d during the rollout, %d after it, %d failed", len(res), len(during), len(after), len(failed))
				for i, r := range failed {
					if i == 10 {
						t.Errorf("... and %d more", len(failed)-10)
						break
					}
					t.Errorf("%s at +%v failed after %v: %d %s", r.method, r.start.Sub(begin).Round(time.Millisecond), r.end.Sub(r.start).Round(time.Millisecond), r.code, r.err)
				}
				if len(during) < 100 || len(after) < 100 {
					t.Errorf("the load barely ran: %d requests during the rollout, %d after", len(during), len(after))
				}
				for _, r := range during {
					if !slices.Contains(names(old), r.pod) && !slices.Contains(names(cur), r.pod) {
						t.Errorf("answer from %q during the rollout: neither an old nor a new pod", r.pod)
						break
					}
				}
				for _, r := range after {
					if !slices.Contains(names(cur), r.pod) {
						t.Errorf("answer from %q after the rollout, want only the new pods %v", r.pod, names(cur))
						break
					}
				}
				loads[i].checkServed(t, res)
			})
		}
	})

	// The API's way: the pod is gone from the API at once, the agent
	// kills its container and tears its network down while the
	// EndpointSlice change travels to the ingress.
	t.Run("pod deleted with grace 0 under load", func(t *testing.T) {
		p.killUnderLoad(t, func(victim corev1.Pod) {
			if err := cs.CoreV1().Pods(p.ns).Delete(ctx, victim.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 60*time.Second, "the victim gone from the API", func() (bool, string) {
				_, all := p.readyPods(ctx, "web")
				return !slices.Contains(names(all), victim.Name), fmt.Sprint(names(all))
			})
		}, true)
	})

	// A crash: the server process dies while its endpoint is still
	// listed ready (until the readiness probe notices); connects to it
	// are refused and the ingress must take them elsewhere.
	t.Run("container killed under load", func(t *testing.T) {
		waitFor(t, 60*time.Second, "3 ready web pods again", func() (bool, string) {
			ok, why := p.rolledOut(ctx, "web")
			return ok, why
		})
		p.killUnderLoad(t, func(victim corev1.Pod) {
			cts, err := p.agent.Runtime().ListPod(ctx, string(victim.UID))
			if err != nil {
				t.Fatal(err)
			}
			var pid uint32
			for _, c := range cts {
				if c.State == runtime.StateRunning && c.Labels[runtime.LabelContainer] == "web" {
					pid = c.Pid
				}
			}
			if pid == 0 {
				t.Fatalf("no running container of %s: %+v", victim.Name, cts)
			}
			if err := syscall.Kill(int(pid), syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			// The agent notices the exit and starts the container again
			// (the restart count says it saw the crash).
			waitFor(t, 30*time.Second, "the victim's container restarted", func() (bool, string) {
				pod, err := cs.CoreV1().Pods(p.ns).Get(ctx, victim.Name, metav1.GetOptions{})
				if err != nil {
					return false, err.Error()
				}
				for _, st := range pod.Status.ContainerStatuses {
					if st.RestartCount > 0 {
						return true, ""
					}
				}
				return false, fmt.Sprintf("%+v", pod.Status.ContainerStatuses)
			})
		}, false)
	})
}

// loads starts a load loop through each plain listener (p.listeners'
// order), remembering each lean loop's counters.
func (p *podEnv) loads(host string, workers int) []*loadLoop {
	var out []*loadLoop
	for _, ls := range p.listeners {
		l := p.load(ls.addr, host, workers)
		l.listener = ls
		l.served0, _, _ = ls.stats()
		out = append(out, l)
	}
	return out
}

// checkServed: the listener's lean loop (epoll or goroutines) took every GET that
// got an answer itself (GETs keep their connections apart from the POSTs,
// which are handed to net/http's server).
func (l *loadLoop) checkServed(t *testing.T, res []result) {
	t.Helper()
	gets := 0
	for _, r := range res {
		if r.method == "GET" && r.code != 0 {
			gets++
		}
	}
	served, _, _ := l.listener.stats()
	if served-l.served0 < int64(gets) {
		t.Errorf("the %s loop took %d requests, fewer than the %d GETs answered through it", l.listener.name, served-l.served0, gets)
	}
}

// killUnderLoad runs requests through each plain listener to the web
// pods, kills one of them with kill (which returns once the kill took
// effect in the API), and checks per listener: every request ended with
// an answer from the ingress (none hung until the client's bound, no
// connection error), each a pod's 200 or the ingress's own 502/503/504,
// and traffic went on to the other pods. gone says the victim never
// answers again.
func (p *podEnv) killUnderLoad(t *testing.T, kill func(victim corev1.Pod), gone bool) {
	ctx := t.Context()
	before, _ := p.readyPods(ctx, "web")
	if len(before) != 3 {
		t.Fatalf("want 3 ready web pods, have %v", names(before))
	}
	victim := before[0]
	loads := p.loads("plain.test", 4)
	for _, l := range loads {
		l.waitMore(200)
	}
	killed := time.Now()
	kill(victim)
	for _, l := range loads {
		l.waitMore(400)
	}
	for i, ls := range p.listeners {
		res := loads[i].finish()
		t.Run(ls.name, func(t *testing.T) {
			checkKilled(t, res, loads[i].timeout, victim, killed, gone)
			loads[i].checkServed(t, res)
		})
	}
}

func checkKilled(t *testing.T, res []result, timeout time.Duration, victim corev1.Pod, killed time.Time, gone bool) {
	var ok, failedFast, afterKill, fromVictim int
	var slowest time.Duration
	for _, r := range res {
		if dur := r.end.Sub(r.start); dur > slowest {
			slowest = dur
		}
		switch {
		case r.code == http.StatusOK:
			ok++
			if r.start.After(killed) {
				afterKill++
				if r.pod == victim.Name {
					fromVictim++
				}
			}
		case r.method == "GET" && strings.Contains(r.err, "could not connect"):
			// Other pods were there: a connect failure is retried.
			t.Errorf("GET at %+v: %d %s: not retried on another pod", r.start.Sub(killed).Round(time.Millisecond), r.code, r.err)
		case r.code == http.StatusBadGateway || r.code == http.StatusServiceUnavailable || r.code == http.StatusGatewayTimeout:
			failedFast++
			t.Logf("%s at %+v failed fast after %v: %d %s", r.method, r.start.Sub(killed).Round(time.Millisecond), r.end.Sub(r.start).Round(time.Millisecond), r.code, r.err)
		default:
			t.Errorf("%s at %+v: %d %s (no answer from the ingress within %v)", r.method, r.start.Sub(killed).Round(time.Millisecond), r.code, r.err, timeout)
		}
	}
	t.Logf("%d requests: %d answered by pods (%d after the kill, %d of them by the victim %s), %d failed fast; slowest %v",
		len(res), ok, afterKill, fromVictim, victim.Name, failedFast, slowest.Round(time.Millisecond))
	if afterKill < 300 {
		t.Errorf("only %d answers after the kill: traffic did not go on", afterKill)
	}
	if gone {
		for _, r := range res[max(len(res)-50, 0):] {
			if r.pod == victim.Name {
				t.Errorf("the deleted pod %s still answers at the end", victim.Name)
				break
			}
		}
	}
}
