// Package aggregator is the API server's aggregation layer, as upstream's
// kube-aggregator: an APIService (apiregistration.k8s.io/v1) with a
// service routes its group and version to an extension API server.
//
// Requests are proxied after the API server authenticated and authorized
// them. The extension server is reached over TLS verified with the
// APIService's caBundle, with the front-proxy client certificate, and the
// user in X-Remote-User/-Group/-Extra-* headers (the caller's own
// credentials are not forwarded). Extension servers trust those headers
// from the front-proxy CA, which the API server publishes in
// kube-system/extension-apiserver-authentication.
//
// The backend is a ready endpoint of the service (EndpointSlices), or the
// host of an ExternalName service, resolved by the availability check
// every CheckInterval (and again after a connection failure). The check
// also reads the group/version's resource list for discovery and sets the
// APIService's Available condition.
package aggregator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/skiffhq/skiff/controlplane/apiserver"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	apiregv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
)

// GVR is the APIService resource.
var GVR = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}

// Identity of the availability check, as upstream's: system:masters, so
// an extension server's authorization never hides it.
const (
	checkUser  = "system:kube-aggregator"
	checkGroup = "system:masters"
)

// Options configure an Aggregator.
type Options struct {
	// Client reads Services and EndpointSlices.
	Client kubernetes.Interface
	// Dynamic reads APIServices and writes their status.
	Dynamic dynamic.Interface
	// ProxyCert is the front-proxy client certificate presented to
	// extension servers.
	ProxyCert func(*tls.CertificateRequestInfo) (*tls.Certificate, error)
	// CheckInterval is how often every APIService is checked (default 10 s).
	CheckInterval time.Duration
	// DialTimeout bounds a connection to an extension server (default 5 s).
	DialTimeout time.Duration
	Logger      *slog.Logger
}

// Aggregator serves the aggregated group/versions (apiserver.Aggregator).
type Aggregator struct {
	opts Options
	log  *slog.Logger

	mu       sync.RWMutex
	services map[string]*backend // by APIService name
	recheck  chan struct{}
}

var _ apiserver.Aggregator = (*Aggregator)(nil)

// backend is one APIService with a service, and what its checks found.
// api is the object as first seen and is never written after: later
// versions with the same route only update cond.
type backend struct {
	api       *apiregv1.APIService
	transport *http.Transport
	proxy     *httputil.ReverseProxy

	mu        sync.Mutex
	addr      string // host:port of the last resolution
	available bool
	reason    string
	message   string
	resources []metav1.APIResource
	cond      apiregv1.APIServiceCondition // Available as the object last showed it
}

// New returns an Aggregator; Run feeds it.
func New(opts Options) *Aggregator {
	if opts.CheckInterval <= 0 {
		opts.CheckInterval = 10 * time.Second
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Aggregator{opts: opts, log: opts.Logger.With("component", "aggregator"), services: map[string]*backend{}, recheck: make(chan struct{}, 1)}
}

// Run watches APIServices and checks them until ctx ends.
func (a *Aggregator) Run(ctx context.Context) error {
	inf := cache.NewSharedIndexInformer(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return a.opts.Dynamic.Resource(GVR).List(ctx, o)
		},
		WatchFuncWithContext: a.watch,
	}, &unstructured.Unstructured{}, 0, cache.Indexers{})
	sync := func(any) { a.syncFrom(inf.GetStore().List()) }
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: sync, UpdateFunc: func(_, n any) { sync(n) }, DeleteFunc: sync,
	}); err != nil {
		return fmt.Errorf("apiservice informer: %w", err)
	}
	go inf.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return ctx.Err()
	}
	t := time.NewTicker(a.opts.CheckInterval)
	defer t.Stop()
	for {
		a.checkAll(ctx)
		select {
		case <-ctx.Done():
			a.closeAll()
			return nil
		case <-t.C:
		case <-a.recheck:
		}
	}
}

func (a *Aggregator) watch(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	return a.opts.Dynamic.Resource(GVR).Watch(ctx, o)
}

// syncFrom replaces the set of backends with the APIServices in objs.
func (a *Aggregator) syncFrom(objs []any) {
	seen := map[string]bool{}
	changed := false
	a.mu.Lock()
	for _, o := range objs {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		api := &apiregv1.APIService{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, api); err != nil {
			a.log.Warn("undecodable APIService", "name", u.GetName(), "err", err)
			continue
		}
		if api.Spec.Service == nil {
			continue // local: served by this API server itself
		}
		seen[api.Name] = true
		old := a.services[api.Name]
		if old != nil && sameRoute(old.api, api) {
			old.mu.Lock()
			old.cond = availableCondition(api)
			old.mu.Unlock()
			continue
		}
		if old != nil {
			old.transport.CloseIdleConnections()
		}
		a.services[api.Name] = a.newBackend(api)
		changed = true
	}
	for name, b := range a.services {
		if !seen[name] {
			b.transport.CloseIdleConnections()
			delete(a.services, name)
			changed = true
		}
	}
	a.mu.Unlock()
	if changed {
		a.kick()
	}
}

// sameRoute reports whether two versions of an APIService reach the same
// backend the same way, so that a status change keeps the backend, its
// connections and its last check. The port is compared by value: each
// decoded object has its own pointer.
func sameRoute(x, y *apiregv1.APIService) bool {
	return x.Spec.Group == y.Spec.Group && x.Spec.Version == y.Spec.Version &&
		x.Spec.Service.Namespace == y.Spec.Service.Namespace && x.Spec.Service.Name == y.Spec.Service.Name && portOf(x) == portOf(y) &&
		x.Spec.InsecureSkipTLSVerify == y.Spec.InsecureSkipTLSVerify && string(x.Spec.CABundle) == string(y.Spec.CABundle) &&
		x.Spec.GroupPriorityMinimum == y.Spec.GroupPriorityMinimum && x.Spec.VersionPriority == y.Spec.VersionPriority
}

func portOf(api *apiregv1.APIService) int32 {
	if api.Spec.Service.Port != nil {
		return *api.Spec.Service.Port
	}
	return 443
}

func (a *Aggregator) kick() {
	select {
	case a.recheck <- struct{}{}:
	default:
	}
}

func (a *Aggregator) closeAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, b := range a.services {
		b.transport.CloseIdleConnections()
	}
}

func (a *Aggregator) newBackend(api *apiregv1.APIService) *backend {
	svc := api.Spec.Service
	tc := &tls.Config{
		MinVersion:           tls.VersionTLS12,
		ServerName:           svc.Name + "." + svc.Namespace + ".svc",
		GetClientCertificate: a.opts.ProxyCert,
		InsecureSkipVerify:   api.Spec.InsecureSkipTLSVerify, //nolint:gosec // the APIService asks for it, as upstream allows
	}
	if len(api.Spec.CABundle) > 0 {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(api.Spec.CABundle)
		tc.RootCAs = pool
	}
	b := &backend{api: api, cond: availableCondition(api)}
	d := &net.Dialer{Timeout: a.opts.DialTimeout, KeepAlive: 30 * time.Second}
	b.transport = &http.Transport{
		TLSClientConfig:     tc,
		DialContext:         d.DialContext,
		ForceAttemptHTTP2:   true,
		TLSHandshakeTimeout: a.opts.DialTimeout,
		IdleConnTimeout:     90 * time.Second,
		MaxIdleConnsPerHost: 32,
	}
	b.proxy = &httputil.ReverseProxy{
		Rewrite:       b.rewrite,
		Transport:     b.transport,
		FlushInterval: -1, // watches stream
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			a.log.Warn("extension API server unreachable", "apiservice", api.Name, "err", err)
			if !errors.Is(err, context.Canceled) {
				a.kick() // resolve again
			}
			unavailable(w, api.Name)
		},
	}
	return b
}

// rewrite sends the request to the resolved backend with the caller's
// identity in the front proxy's headers and none of its credentials.
func (b *backend) rewrite(pr *httputil.ProxyRequest) {
	b.mu.Lock()
	addr := b.addr
	b.mu.Unlock()
	pr.Out.URL.Scheme, pr.Out.URL.Host = "https", addr
	pr.Out.Host = ""
	h := pr.Out.Header
	for k := range h {
		lk := strings.ToLower(k)
		if lk == "authorization" || strings.HasPrefix(lk, "impersonate-") || strings.HasPrefix(lk, "x-remote-") {
			h.Del(k)
		}
	}
	if u, ok := apiserver.UserFrom(pr.In.Context()); ok {
		setIdentity(h, u.Name, u.Groups, u.Extra)
	}
	pr.SetXForwarded()
}

// setIdentity writes upstream's front-proxy identity headers.
func setIdentity(h http.Header, user string, groups []string, extra map[string][]string) {
	h.Set("X-Remote-User", user)
	for _, g := range groups {
		h.Add("X-Remote-Group", g)
	}
	for k, vs := range extra {
		name := "X-Remote-Extra-" + url.PathEscape(k)
		for _, v := range vs {
			h.Add(name, v)
		}
	}
}

// unavailable answers 503 as upstream's aggregator does when it cannot
// reach the extension server.
func unavailable(w http.ResponseWriter, name string) {
	st := apierrors.NewServiceUnavailable(fmt.Sprintf("the server is currently unable to handle the request (APIService %s is unavailable)", name)).ErrStatus
	st.Kind, st.APIVersion = "Status", "v1"
	b, _ := json.Marshal(st)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write(b)
}

// lookup returns the backend serving group/version.
func (a *Aggregator) lookup(group, version string) *backend {
	a.mu.RLock()
	defer a.mu.RUnlock()
	for _, b := range a.services {
		if b.api.Spec.Group == group && b.api.Spec.Version == version {
			return b
		}
	}
	return nil
}

// Proxied implements apiserver.Aggregator.
func (a *Aggregator) Proxied(group, version string) bool { return a.lookup(group, version) != nil }

// ServeHTTP implements apiserver.Aggregator.
func (a *Aggregator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	parts := strings.SplitN(strings.Trim(r.URL.Path, "/"), "/", 4)
	if len(parts) < 3 {
		unavailable(w, "")
		return
	}
	b := a.lookup(parts[1], parts[2])
	if b == nil {
		unavailable(w, parts[2]+"."+parts[1])
		return
	}
	b.mu.Lock()
	addr := b.addr
	b.mu.Unlock()
	if addr == "" {
		// Not resolved yet (just registered): resolve now.
		if err := a.resolve(r.Context(), b); err != nil {
			a.log.Warn("extension API server not resolvable", "apiservice", b.api.Name, "err", err)
			unavailable(w, b.api.Name)
			return
		}
	}
	b.proxy.ServeHTTP(w, r)
}

// Groups implements apiserver.Aggregator.
func (a *Aggregator) Groups() []apiserver.AggregatedGroup {
	a.mu.RLock()
	list := make([]*backend, 0, len(a.services))
	for _, b := range a.services {
		list = append(list, b)
	}
	a.mu.RUnlock()
	// Groups by their highest groupPriorityMinimum, then name; versions
	// by versionPriority, then Kubernetes version order (upstream's).
	slices.SortFunc(list, func(x, y *backend) int {
		if x.api.Spec.Group != y.api.Spec.Group {
			return strings.Compare(x.api.Spec.Group, y.api.Spec.Group)
		}
		if x.api.Spec.VersionPriority != y.api.Spec.VersionPriority {
			return int(y.api.Spec.VersionPriority - x.api.Spec.VersionPriority)
		}
		return -version.CompareKubeAwareVersionStrings(x.api.Spec.Version, y.api.Spec.Version)
	})
	var out []apiserver.AggregatedGroup
	prio := map[string]int32{}
	for _, b := range list {
		g := b.api.Spec.Group
		if len(out) == 0 || out[len(out)-1].Name != g {
			out = append(out, apiserver.AggregatedGroup{Name: g})
		}
		prio[g] = max(prio[g], b.api.Spec.GroupPriorityMinimum)
		b.mu.Lock()
		v := apiserver.AggregatedVersion{Version: b.api.Spec.Version, Available: b.available, Resources: b.resources}
		b.mu.Unlock()
		out[len(out)-1].Versions = append(out[len(out)-1].Versions, v)
	}
	slices.SortStableFunc(out, func(x, y apiserver.AggregatedGroup) int { return int(prio[y.Name] - prio[x.Name]) })
	return out
}

// checkAll resolves and checks every backend, and writes what changed to
// the APIServices' status.
func (a *Aggregator) checkAll(ctx context.Context) {
	a.mu.RLock()
	list := make([]*backend, 0, len(a.services))
	for _, b := range a.services {
		list = append(list, b)
	}
	a.mu.RUnlock()
	var wg sync.WaitGroup
	for _, b := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.check(ctx, b)
		}()
	}
	wg.Wait()
}

// check is one availability check of b: resolve, then GET the
// group/version's resource list as system:kube-aggregator.
func (a *Aggregator) check(ctx context.Context, b *backend) {
	ok, reason, msg := true, "Passed", "all checks passed"
	var resources []metav1.APIResource
	if err := a.resolve(ctx, b); err != nil {
		ok, reason, msg = false, reasonOf(err), err.Error()
	} else if resources, err = a.discover(ctx, b); err != nil {
		ok, reason, msg = false, "FailedDiscoveryCheck", err.Error()
	}
	b.mu.Lock()
	changed := b.available != ok || b.reason != reason || b.message != msg
	b.available, b.reason, b.message = ok, reason, msg
	if ok {
		b.resources = resources
	}
	shown := b.cond.Status == conditionStatus(ok) && b.cond.Reason == reason
	b.mu.Unlock()
	if changed || !shown {
		a.writeStatus(ctx, b.api.Name, ok, reason, msg)
	}
}

// resolveError carries the condition reason of a failed resolution.
type resolveError struct {
	reason string
	err    error
}

func (e *resolveError) Error() string { return e.err.Error() }
func (e *resolveError) Unwrap() error { return e.err }

func reasonOf(err error) string {
	var re *resolveError
	if errors.As(err, &re) {
		return re.reason
	}
	return "ServiceAccessError"
}

// resolve finds b's backend address: the ExternalName host, or a ready
// endpoint of the service port (as upstream's endpoint routing).
func (a *Aggregator) resolve(ctx context.Context, b *backend) error {
	ref := b.api.Spec.Service
	port := portOf(b.api)
	svc, err := a.opts.Client.CoreV1().Services(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return &resolveError{"ServiceNotFound", fmt.Errorf("service/%s in %q is not present", ref.Name, ref.Namespace)}
	}
	if err != nil {
		return &resolveError{"ServiceAccessError", fmt.Errorf("service/%s in %q: %w", ref.Name, ref.Namespace, err)}
	}
	var addr string
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		addr = net.JoinHostPort(svc.Spec.ExternalName, strconv.Itoa(int(port)))
	} else {
		addr, err = a.endpoint(ctx, svc, port)
		if err != nil {
			return err
		}
	}
	b.mu.Lock()
	b.addr = addr
	b.mu.Unlock()
	return nil
}

// endpoint picks a ready endpoint of svc's port numbered port.
func (a *Aggregator) endpoint(ctx context.Context, svc *corev1.Service, port int32) (string, error) {
	var sp *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if svc.Spec.Ports[i].Port == port {
			sp = &svc.Spec.Ports[i]
		}
	}
	if sp == nil {
		return "", &resolveError{"ServicePortError", fmt.Errorf("service/%s in %q is not listening on port %d", svc.Name, svc.Namespace, port)}
	}
	eps, err := a.opts.Client.DiscoveryV1().EndpointSlices(svc.Namespace).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc.Name})
	if err != nil {
		return "", &resolveError{"ServiceAccessError", fmt.Errorf("endpoints of service/%s in %q: %w", svc.Name, svc.Namespace, err)}
	}
	var ready []string
	for _, s := range eps.Items {
		var target int32
		for _, p := range s.Ports {
			if p.Name != nil && *p.Name == sp.Name && p.Port != nil {
				target = *p.Port
			}
		}
		if target == 0 {
			continue
		}
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			for _, ip := range e.Addresses {
				ready = append(ready, net.JoinHostPort(ip, strconv.Itoa(int(target))))
			}
		}
	}
	if len(ready) == 0 {
		return "", &resolveError{"MissingEndpoints", fmt.Errorf("endpoints for service/%s in %q have no addresses with port name %q", svc.Name, svc.Namespace, sp.Name)}
	}
	return ready[rand.IntN(len(ready))], nil
}

// discover reads /apis/<group>/<version> from b as system:kube-aggregator.
func (a *Aggregator) discover(ctx context.Context, b *backend) ([]metav1.APIResource, error) {
	b.mu.Lock()
	addr := b.addr
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	u := "https://" + addr + "/apis/" + b.api.Spec.Group + "/" + b.api.Spec.Version
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	setIdentity(req.Header, checkUser, []string{checkGroup}, nil)
	resp, err := b.transport.RoundTrip(req)
	if err != nil {
		return nil, fmt.Errorf("failing or missing response from %s: %w", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", u, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("failing or missing response from %s: bad status from %s: %d", u, u, resp.StatusCode)
	}
	var list metav1.APIResourceList
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("%s did not answer an APIResourceList: %w", u, err)
	}
	if list.APIResources == nil {
		list.APIResources = []metav1.APIResource{}
	}
	return list.APIResources, nil
}

// availableCondition returns api's Available condition (zero if none).
func availableCondition(api *apiregv1.APIService) apiregv1.APIServiceCondition {
	for _, c := range api.Status.Conditions {
		if c.Type == apiregv1.Available {
			return c
		}
	}
	return apiregv1.APIServiceCondition{}
}

func conditionStatus(ok bool) apiregv1.ConditionStatus {
	if ok {
		return apiregv1.ConditionTrue
	}
	return apiregv1.ConditionFalse
}

// writeStatus sets the Available condition of the named APIService.
func (a *Aggregator) writeStatus(ctx context.Context, name string, ok bool, reason, msg string) {
	res := a.opts.Dynamic.Resource(GVR)
	u, err := res.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return
	}
	api := &apiregv1.APIService{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, api); err != nil {
		return
	}
	st := conditionStatus(ok)
	cond := apiregv1.APIServiceCondition{Type: apiregv1.Available, Status: st, Reason: reason, Message: msg, LastTransitionTime: metav1.Now()}
	i := slices.IndexFunc(api.Status.Conditions, func(c apiregv1.APIServiceCondition) bool { return c.Type == apiregv1.Available })
	switch {
	case i < 0:
		api.Status.Conditions = append(api.Status.Conditions, cond)
	case api.Status.Conditions[i].Status == st && api.Status.Conditions[i].Reason == reason && api.Status.Conditions[i].Message == msg:
		return
	default:
		if api.Status.Conditions[i].Status == st {
			cond.LastTransitionTime = api.Status.Conditions[i].LastTransitionTime
		}
		api.Status.Conditions[i] = cond
	}
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(api)
	if err != nil {
		return
	}
	if _, err := res.UpdateStatus(ctx, &unstructured.Unstructured{Object: obj}, metav1.UpdateOptions{}); err != nil {
		if !apierrors.IsConflict(err) && ctx.Err() == nil {
			a.log.Warn("APIService status", "name", name, "err", err)
		}
		return
	}
	a.log.Info("APIService availability", "name", name, "available", ok, "reason", reason, "message", msg)
}
