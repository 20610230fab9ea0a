package ingress

import (
	"crypto/tls"
	"net"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Table is one immutable routing snapshot: host groups, their paths and
// the TLS certificates by server name. A new Table is built on every
// relevant change and swapped in atomically; requests in flight keep the
// Table they started with.
type Table struct {
	exact    map[string]*hostRoutes // lower-case host
	wildcard map[string]*hostRoutes // "*.foo.com" keyed by "foo.com"
	anyHost  *hostRoutes            // rules without a host
	def      *route                 // the oldest Ingress's defaultBackend

	certs         map[string]*tls.Certificate // exact server names
	wildcardCerts map[string]*tls.Certificate // "*.foo.com" keyed by "foo.com"
	defaultCert   *tls.Certificate
}

// hostRoutes are the paths of one host (merged across Ingresses).
type hostRoutes struct {
	host   string
	exact  map[string]*route
	prefix []*route // longest normalized path first
	regex  []*route // longest pattern first
	def    *route   // defaultBackend of the oldest Ingress with rules here
	tls    bool     // some Ingress lists this host under spec.tls
}

// route is one path rule's target and the settings of its Ingress.
type route struct {
	path     string // as written (normalized for Prefix)
	pathType networkingv1.PathType
	re       *regexp.Regexp // use-regex paths
	ingress  types.NamespacedName
	backend  *backend
	cfg      *routeConfig
	canary   *canaryRoute
	hostTLS  bool // the host has TLS (redirect target)
	rank     ingressRank
	// stats caches the metric children for the route's backend [0] and
	// its canary's [1] (metrics.go); copies of a route share it.
	stats *[2]atomic.Pointer[routeStats]
}

// canaryRoute sends part of a route's traffic to another backend
// (nginx.ingress.kubernetes.io/canary on a second Ingress).
type canaryRoute struct {
	backend     *backend
	ingress     types.NamespacedName
	header      string
	headerValue string
	weight      int
	weightTotal int
	cfg         *routeConfig
}

// ingressRank orders Ingresses for conflicts: oldest first, then by
// namespace/name, as ingress-nginx resolves duplicate host/paths.
type ingressRank struct {
	created int64
	key     string
}

func (a ingressRank) less(b ingressRank) bool {
	if a.created != b.created {
		return a.created < b.created
	}
	return a.key < b.key
}

// normalizeHost lower-cases a Host header and strips its port.
func normalizeHost(h string) string {
	// (SplitHostPort allocates its error for a host without a port.)
	if strings.IndexByte(h, ':') >= 0 {
		if host, _, err := net.SplitHostPort(h); err == nil {
			h = host
		}
	}
	h = strings.TrimSuffix(h, ".")
	return strings.ToLower(strings.Trim(h, "[]"))
}

// eachConfig calls fn with the settings of every route in t and of their
// canaries (a setting shared by several routes, once per route).
func (t *Table) eachConfig(fn func(*routeConfig)) {
	if t == nil {
		return
	}
	visit := func(r *route) {
		if r == nil {
			return
		}
		fn(r.cfg)
		if r.canary != nil {
			fn(r.canary.cfg)
		}
	}
	group := func(hr *hostRoutes) {
		if hr == nil {
			return
		}
		for _, r := range hr.exact {
			visit(r)
		}
		for _, r := range hr.prefix {
			visit(r)
		}
		for _, r := range hr.regex {
			visit(r)
		}
		visit(hr.def)
	}
	for _, hr := range t.exact {
		group(hr)
	}
	for _, hr := range t.wildcard {
		group(hr)
	}
	group(t.anyHost)
	visit(t.def)
}

// hostGroup picks the routes for a request host: an exact host rule first,
// then a "*." wildcard covering exactly one more label, then rules without
// a host.
func (t *Table) hostGroup(host string) *hostRoutes {
	if hr := t.exact[host]; hr != nil {
		return hr
	}
	if i := strings.IndexByte(host, '.'); i > 0 {
		if hr := t.wildcard[host[i+1:]]; hr != nil {
			return hr
		}
	}
	return t.anyHost
}

// Match returns the route for a request's host (Host header, any port) and
// URL path, or nil (404).
func (t *Table) Match(hostHeader, path string) *route {
	if t == nil {
		return nil
	}
	if path == "" {
		path = "/"
	}
	hr := t.hostGroup(normalizeHost(hostHeader))
	if hr != nil {
		if r := hr.match(path); r != nil {
			return r
		}
		if hr.def != nil {
			return hr.def
		}
	}
	return t.def
}

// match applies the spec's precedence inside one host: an Exact match,
// else the longest matching Prefix (element-wise) or regex path.
func (hr *hostRoutes) match(path string) *route {
	if r := hr.exact[path]; r != nil {
		return r
	}
	var best *route
	for _, r := range hr.prefix {
		if prefixMatch(r.path, path) {
			best = r
			break
		}
	}
	for _, r := range hr.regex {
		if best != nil && len(r.path) <= len(best.path) {
			break
		}
		if r.re.MatchString(path) {
			best = r
			break
		}
	}
	return best
}

// prefixMatch is the spec's element-wise prefix match: p (normalized,
// without a trailing slash unless it is "/") matches path when p's
// elements are the first elements of path.
func prefixMatch(p, path string) bool {
	if p == "/" {
		return true
	}
	if !strings.HasPrefix(path, p) {
		return false
	}
	return len(path) == len(p) || path[len(p)] == '/'
}

// normalizePrefix drops trailing slashes ("/foo/" matches like "/foo").
func normalizePrefix(p string) string {
	q := strings.TrimRight(p, "/")
	if q == "" {
		return "/"
	}
	return q
}

// sortRoutes orders prefix and regex routes longest first (ties: older
// Ingress first) so the first match is the spec's winner.
func (hr *hostRoutes) sortRoutes() {
	byLen := func(rs []*route) {
		sort.SliceStable(rs, func(i, j int) bool {
			if len(rs[i].path) != len(rs[j].path) {
				return len(rs[i].path) > len(rs[j].path)
			}
			return rs[i].rank.less(rs[j].rank)
		})
	}
	byLen(hr.prefix)
	byLen(hr.regex)
}

// certificate picks the certificate for a TLS server name (SNI): exact,
// then a "*." wildcard certificate, then the default.
func (t *Table) certificate(serverName string) *tls.Certificate {
	if t != nil {
		name := strings.ToLower(strings.TrimSuffix(serverName, "."))
		if c := t.certs[name]; c != nil {
			return c
		}
		if i := strings.IndexByte(name, '.'); i > 0 {
			if c := t.wildcardCerts[name[i+1:]]; c != nil {
				return c
			}
		}
		return t.defaultCert
	}
	return nil
}
