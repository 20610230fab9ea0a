package ingress

import (
	"crypto/tls"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Well-known names.
const (
	// DefaultController is spec.controller of the IngressClasses this
	// add-on serves.
	DefaultController = "skiff.io/ingress-controller"
	// annotationDefaultClass marks the IngressClass used by Ingresses
	// without a class.
	annotationDefaultClass = "ingressclass.kubernetes.io/is-default-class"
	// annotationLegacyClass is the deprecated class annotation.
	annotationLegacyClass = "kubernetes.io/ingress.class"
	// appProtocolH2C marks a service port spoken as HTTP/2 without TLS.
	appProtocolH2C = "kubernetes.io/h2c"
)

// Input is everything a Table is built from.
type Input struct {
	Controller string // DefaultController when empty
	// ClassName is accepted in the legacy kubernetes.io/ingress.class
	// annotation even without an IngressClass object (default "skiff").
	ClassName string
	// WatchWithoutClass serves Ingresses without any class even when no
	// IngressClass of ours is marked default.
	WatchWithoutClass bool
	Ingresses         []*networkingv1.Ingress
	Classes           []*networkingv1.IngressClass
	Services          map[types.NamespacedName]*corev1.Service
	// Slices by service (namespace + kubernetes.io/service-name label).
	Slices  map[types.NamespacedName][]*discoveryv1.EndpointSlice
	Secrets map[types.NamespacedName]*corev1.Secret
	// DefaultCert is served to clients whose SNI matches no Ingress TLS host.
	DefaultCert *tls.Certificate
}

// Problem is something wrong with one Ingress: it becomes a Warning event
// on that Ingress; the rest of the Ingress and every other Ingress keep
// their routes.
type Problem struct {
	Ingress types.NamespacedName
	Reason  string
	Message string
}

// builder keeps the state that outlives one Table: endpoint pools (their
// round-robin position and ejections) and parsed certificates.
type builder struct {
	pools        map[string]*pool
	certs        map[string]certEntry // secret UID → parsed pair at a resourceVersion
	limiters     map[string]*ipLimiter
	usedLimiters map[string]bool
}

type certEntry struct {
	rv   string
	cert *tls.Certificate
	err  error
}

func newBuilder() *builder {
	return &builder{pools: map[string]*pool{}, certs: map[string]certEntry{}, limiters: map[string]*ipLimiter{}}
}

// Ours reports whether the Ingress belongs to this controller.
func (in *Input) Ours(ing *networkingv1.Ingress) bool {
	ctrl := in.Controller
	if ctrl == "" {
		ctrl = DefaultController
	}
	className := in.ClassName
	if className == "" {
		className = "skiff"
	}
	classOf := func(name string) *networkingv1.IngressClass {
		for _, c := range in.Classes {
			if c.Name == name {
				return c
			}
		}
		return nil
	}
	if ing.Spec.IngressClassName != nil {
		c := classOf(*ing.Spec.IngressClassName)
		return c != nil && c.Spec.Controller == ctrl
	}
	if v, ok := ing.Annotations[annotationLegacyClass]; ok {
		if v == className {
			return true
		}
		c := classOf(v)
		return c != nil && c.Spec.Controller == ctrl
	}
	if in.WatchWithoutClass {
		return true
	}
	for _, c := range in.Classes {
		if c.Spec.Controller == ctrl && c.Annotations[annotationDefaultClass] == "true" {
			return true
		}
	}
	return false
}

// build turns the Input into a Table and the problems found on the way.
func (b *builder) build(in *Input) (*Table, []Problem) {
	t := &Table{
		exact:         map[string]*hostRoutes{},
		wildcard:      map[string]*hostRoutes{},
		certs:         map[string]*tls.Certificate{},
		wildcardCerts: map[string]*tls.Certificate{},
		defaultCert:   in.DefaultCert,
	}
	var problems []Problem
	usedPools := map[string]bool{}
	usedCerts := map[string]bool{}
	b.usedLimiters = map[string]bool{}

	ings := make([]*networkingv1.Ingress, 0, len(in.Ingresses))
	for _, ing := range in.Ingresses {
		if ing.DeletionTimestamp == nil && in.Ours(ing) {
			ings = append(ings, ing)
		}
	}
	rankOf := func(ing *networkingv1.Ingress) ingressRank {
		return ingressRank{created: ing.CreationTimestamp.UnixNano(), key: ing.Namespace + "/" + ing.Name}
	}
	sort.Slice(ings, func(i, j int) bool { return rankOf(ings[i]).less(rankOf(ings[j])) })

	group := func(host string) *hostRoutes {
		var m map[string]*hostRoutes
		key := host
		switch {
		case host == "":
			if t.anyHost == nil {
				t.anyHost = &hostRoutes{exact: map[string]*route{}}
			}
			return t.anyHost
		case strings.HasPrefix(host, "*."):
			m, key = t.wildcard, host[2:]
		default:
			m = t.exact
		}
		hr := m[key]
		if hr == nil {
			hr = &hostRoutes{host: host, exact: map[string]*route{}}
			m[key] = hr
		}
		return hr
	}

	type canaryIng struct {
		ing *networkingv1.Ingress
		cfg *routeConfig
	}
	var canaries []canaryIng

	for _, ing := range ings {
		id := types.NamespacedName{Namespace: ing.Namespace, Name: ing.Name}
		rank := rankOf(ing)
		report := func(reason, format string, args ...any) {
			problems = append(problems, Problem{Ingress: id, Reason: reason, Message: fmt.Sprintf(format, args...)})
		}
		cfg, cfgProblems := b.parseConfig(ing, in.Secrets)
		for _, p := range cfgProblems {
			report("InvalidAnnotation", "%s", p)
		}
		if cfg.canary {
			canaries = append(canaries, canaryIng{ing, cfg})
			continue
		}
		mkBackend := func(ib *networkingv1.IngressBackend, where string) *backend {
			if ib == nil {
				return nil
			}
			if ib.Resource != nil {
				report("UnsupportedBackend", "%s: resource backends (%s %s) are not supported by %s; only service backends", where, ib.Resource.Kind, ib.Resource.Name, DefaultController)
				return nil
			}
			if ib.Service == nil {
				report("InvalidBackend", "%s: backend without a service", where)
				return nil
			}
			be, msg := b.backendFor(in, ing.Namespace, ib.Service, usedPools)
			if msg != "" {
				report("BackendNotReady", "%s: %s", where, msg)
			}
			return be
		}

		// TLS hosts and certificates.
		tlsHosts := map[string]bool{}
		for i, tl := range ing.Spec.TLS {
			hosts := tl.Hosts
			if len(hosts) == 0 {
				for _, r := range ing.Spec.Rules {
					hosts = append(hosts, r.Host)
				}
			}
			for _, h := range hosts {
				tlsHosts[strings.ToLower(h)] = true
			}
			if tl.SecretName == "" {
				continue
			}
			cert, err := b.certificate(in, types.NamespacedName{Namespace: ing.Namespace, Name: tl.SecretName}, usedCerts)
			if err != nil {
				report("InvalidTLS", "spec.tls[%d]: %v", i, err)
				continue
			}
			for _, h := range hosts {
				h = strings.ToLower(h)
				if strings.HasPrefix(h, "*.") {
					if t.wildcardCerts[h[2:]] == nil {
						t.wildcardCerts[h[2:]] = cert
					}
				} else if h != "" && t.certs[h] == nil {
					t.certs[h] = cert
				}
			}
		}

		var def *route
		if ing.Spec.DefaultBackend != nil {
			if be := mkBackend(ing.Spec.DefaultBackend, "spec.defaultBackend"); be != nil {
				def = &route{pathType: networkingv1.PathTypePrefix, path: "/", ingress: id, backend: be, cfg: cfg, rank: rank, stats: new([2]atomic.Pointer[routeStats])}
				if t.def == nil {
					t.def = def
				}
			}
		}
		for ri, rule := range ing.Spec.Rules {
			host := strings.ToLower(rule.Host)
			hr := group(host)
			hostTLS := tlsHosts[host]
			if hostTLS {
				hr.tls = true
			}
			if def != nil && hr.def == nil {
				d := *def
				d.hostTLS = hostTLS
				hr.def = &d
			}
			if rule.HTTP == nil {
				continue
			}
			for pi, p := range rule.HTTP.Paths {
				where := fmt.Sprintf("spec.rules[%d].http.paths[%d]", ri, pi)
				be := mkBackend(&p.Backend, where)
				if be == nil {
					continue
				}
				pt := networkingv1.PathTypeImplementationSpecific
				if p.PathType != nil {
					pt = *p.PathType
				}
				path := p.Path
				if path == "" {
					path = "/"
				}
				r := &route{path: path, pathType: pt, ingress: id, backend: be, cfg: cfg, hostTLS: hostTLS, rank: rank, stats: new([2]atomic.Pointer[routeStats])}
				switch {
				case pt == networkingv1.PathTypeExact:
					if hr.exact[path] == nil {
						hr.exact[path] = r
					} else {
						report("PathConflict", "%s: %s %s is served by the older Ingress %s", where, host, path, hr.exact[path].ingress)
					}
				case pt == networkingv1.PathTypeImplementationSpecific && cfg.useRegex:
					re, err := regexp.Compile("(?i)^" + path)
					if err != nil {
						report("InvalidPath", "%s: regex %q: %v", where, path, err)
						continue
					}
					r.re = re
					hr.regex = append(hr.regex, r)
				default: // Prefix, and ImplementationSpecific as Prefix
					r.path = normalizePrefix(path)
					dup := false
					for _, o := range hr.prefix {
						if o.path == r.path {
							dup = true
							report("PathConflict", "%s: %s %s is served by the older Ingress %s", where, host, path, o.ingress)
							break
						}
					}
					if !dup {
						hr.prefix = append(hr.prefix, r)
					}
				}
			}
		}
	}

	// Canary Ingresses attach to the same host and path of a main Ingress.
	for _, c := range canaries {
		id := types.NamespacedName{Namespace: c.ing.Namespace, Name: c.ing.Name}
		for ri, rule := range c.ing.Spec.Rules {
			if rule.HTTP == nil {
				continue
			}
			host := strings.ToLower(rule.Host)
			for pi, p := range rule.HTTP.Paths {
				where := fmt.Sprintf("spec.rules[%d].http.paths[%d]", ri, pi)
				if p.Backend.Service == nil {
					problems = append(problems, Problem{id, "UnsupportedBackend", where + ": canary backends must be services"})
					continue
				}
				main := findRoute(t, host, p)
				if main == nil {
					problems = append(problems, Problem{id, "CanaryWithoutMain", fmt.Sprintf("%s: no main Ingress serves %s%s; canary ignored", where, host, p.Path)})
					continue
				}
				be, msg := b.backendFor(in, c.ing.Namespace, p.Backend.Service, usedPools)
				if msg != "" {
					problems = append(problems, Problem{id, "BackendNotReady", where + ": " + msg})
				}
				main.canary = &canaryRoute{
					backend: be, ingress: id, header: c.cfg.canaryHeader, headerValue: c.cfg.canaryHeaderValue,
					weight: c.cfg.canaryWeight, weightTotal: c.cfg.canaryWeightTotal, cfg: c.cfg,
				}
			}
		}
	}

	for _, hr := range t.exact {
		hr.sortRoutes()
	}
	for _, hr := range t.wildcard {
		hr.sortRoutes()
	}
	if t.anyHost != nil {
		t.anyHost.sortRoutes()
	}
	for k := range b.pools {
		if !usedPools[k] {
			delete(b.pools, k)
		}
	}
	for k := range b.limiters {
		if !b.usedLimiters[k] {
			delete(b.limiters, k)
		}
	}
	for k := range b.certs {
		if !usedCerts[k] {
			delete(b.certs, k)
		}
	}
	return t, problems
}

// findRoute finds the route a canary path shares with its main Ingress.
func findRoute(t *Table, host string, p networkingv1.HTTPIngressPath) *route {
	var hr *hostRoutes
	switch {
	case host == "":
		hr = t.anyHost
	case strings.HasPrefix(host, "*."):
		hr = t.wildcard[host[2:]]
	default:
		hr = t.exact[host]
	}
	if hr == nil {
		return nil
	}
	path := p.Path
	if path == "" {
		path = "/"
	}
	if p.PathType != nil && *p.PathType == networkingv1.PathTypeExact {
		return hr.exact[path]
	}
	for _, r := range hr.prefix {
		if r.path == normalizePrefix(path) {
			return r
		}
	}
	for _, r := range hr.regex {
		if r.path == path {
			return r
		}
	}
	return nil
}

// backendFor resolves a service backend to an endpoint pool. The backend
// is returned even when it has no endpoints (it answers 503 with msg).
func (b *builder) backendFor(in *Input, ns string, sb *networkingv1.IngressServiceBackend, used map[string]bool) (*backend, string) {
	portKey := sb.Port.Name
	if portKey == "" {
		portKey = strconv.Itoa(int(sb.Port.Number))
	}
	key := ns + "/" + sb.Name + ":" + portKey
	be := &backend{key: key, namespace: ns, service: sb.Name, port: portKey}
	p := b.pools[key]
	if p == nil {
		p = &pool{}
		b.pools[key] = p
	}
	used[key] = true
	be.pool = p

	svc := in.Services[types.NamespacedName{Namespace: ns, Name: sb.Name}]
	if svc == nil {
		be.unavailable = fmt.Sprintf("service %s/%s not found", ns, sb.Name)
		p.set(nil)
		return be, be.unavailable
	}
	var sp *corev1.ServicePort
	for i := range svc.Spec.Ports {
		q := &svc.Spec.Ports[i]
		if q.Protocol != "" && q.Protocol != corev1.ProtocolTCP {
			continue
		}
		if (sb.Port.Name != "" && q.Name == sb.Port.Name) || (sb.Port.Name == "" && q.Port == sb.Port.Number) {
			sp = q
			break
		}
	}
	if sp == nil {
		be.unavailable = fmt.Sprintf("service %s/%s has no TCP port %s", ns, sb.Name, portKey)
		p.set(nil)
		return be, be.unavailable
	}
	if sp.AppProtocol != nil && *sp.AppProtocol == appProtocolH2C {
		be.h2c = true
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		p.set([]string{net.JoinHostPort(svc.Spec.ExternalName, strconv.Itoa(int(sp.Port)))})
		return be, ""
	}
	var ready, serving []string
	seen := map[string]bool{}
	for _, sl := range in.Slices[types.NamespacedName{Namespace: ns, Name: sb.Name}] {
		if sl.AddressType == discoveryv1.AddressTypeFQDN {
			continue
		}
		var port int32 = -1
		for _, ep := range sl.Ports {
			name := ""
			if ep.Name != nil {
				name = *ep.Name
			}
			proto := corev1.ProtocolTCP
			if ep.Protocol != nil {
				proto = *ep.Protocol
			}
			if name == sp.Name && proto == corev1.ProtocolTCP && ep.Port != nil {
				port = *ep.Port
				break
			}
		}
		if port < 0 {
			continue
		}
		for _, ep := range sl.Endpoints {
			if len(ep.Addresses) == 0 {
				continue
			}
			addr := net.JoinHostPort(ep.Addresses[0], strconv.Itoa(int(port)))
			if seen[addr] {
				continue
			}
			seen[addr] = true
			switch {
			case ep.Conditions.Ready == nil || *ep.Conditions.Ready:
				ready = append(ready, addr)
			case ep.Conditions.Serving != nil && *ep.Conditions.Serving:
				serving = append(serving, addr)
			}
		}
	}
	// Terminating but still serving endpoints are a last resort, as
	// kube-proxy uses them.
	if len(ready) == 0 {
		ready = serving
	}
	sort.Strings(ready)
	p.set(ready)
	if len(ready) == 0 {
		be.unavailable = fmt.Sprintf("service %s/%s port %s has no ready endpoints", ns, sb.Name, portKey)
		return be, ""
	}
	return be, ""
}

// certificate parses a TLS Secret once per resourceVersion.
func (b *builder) certificate(in *Input, name types.NamespacedName, used map[string]bool) (*tls.Certificate, error) {
	s := in.Secrets[name]
	if s == nil {
		return nil, fmt.Errorf("secret %s not found", name)
	}
	used[string(s.UID)] = true
	if e, ok := b.certs[string(s.UID)]; ok && e.rv == s.ResourceVersion {
		return e.cert, e.err
	}
	crt, key := s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]
	var e certEntry
	e.rv = s.ResourceVersion
	if len(crt) == 0 || len(key) == 0 {
		e.err = fmt.Errorf("secret %s has no %s/%s", name, corev1.TLSCertKey, corev1.TLSPrivateKeyKey)
	} else if c, err := tls.X509KeyPair(crt, key); err != nil {
		e.err = fmt.Errorf("secret %s: %w", name, err)
	} else {
		e.cert = &c
	}
	b.certs[string(s.UID)] = e
	return e.cert, e.err
}
