package ingress

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
)

// Annotation prefixes: skiff.io/<name> wins over the ingress-nginx name.
const (
	prefixSkiff = "skiff.io/"
	prefixNginx = "nginx.ingress.kubernetes.io/"
)

// routeConfig is what an Ingress's annotations ask of its routes.
type routeConfig struct {
	useRegex      bool
	rewriteTarget string
	// sslRedirect redirects plain HTTP to HTTPS for hosts with TLS
	// (default true); forceSSLRedirect does so even without TLS.
	sslRedirect      bool
	forceSSLRedirect bool
	bodyLimit        int64 // bytes; 0 = unlimited
	connectTimeout   time.Duration
	readTimeout      time.Duration // response head wait, then each wait for more of the body
	sendTimeout      time.Duration // each wait while writing the request (proxy_send_timeout); 0 = default
	limiter          *ipLimiter
	auth             *basicAuth
	cors             *corsConfig

	// leastRequest balances to the endpoint with the fewest requests in
	// flight (load-balance: least_request) instead of round-robin.
	leastRequest bool
	// affinity sends a client back to the endpoint named in its cookie
	// (affinity: cookie; affinity.go).
	affinity *affinityConfig

	canary            bool
	canaryHeader      string
	canaryHeaderValue string
	canaryWeight      int
	canaryWeightTotal int
}

type corsConfig struct {
	allowOrigins     []string // "*" = any
	allowMethods     string
	allowHeaders     string
	exposeHeaders    string
	allowCredentials bool
	maxAge           string
}

func annotation(ing *networkingv1.Ingress, name string) (string, bool) {
	if v, ok := ing.Annotations[prefixSkiff+name]; ok {
		return strings.TrimSpace(v), true
	}
	v, ok := ing.Annotations[prefixNginx+name]
	return strings.TrimSpace(v), ok
}

// parseConfig reads an Ingress's annotations. An invalid value is reported
// and ignored (the default applies), except for authentication, which
// then denies every request (503) rather than serving unprotected.
func (b *builder) parseConfig(ing *networkingv1.Ingress, secrets map[types.NamespacedName]*corev1.Secret) (*routeConfig, []string) {
	c := &routeConfig{sslRedirect: true, canaryWeightTotal: 100}
	var problems []string
	bad := func(name, v string, err error) {
		problems = append(problems, fmt.Sprintf("annotation %s=%q: %v", name, v, err))
	}
	boolean := func(name string, dst *bool) {
		if v, ok := annotation(ing, name); ok {
			x, err := strconv.ParseBool(v)
			if err != nil {
				bad(name, v, err)
				return
			}
			*dst = x
		}
	}
	seconds := func(name string, dst *time.Duration) {
		if v, ok := annotation(ing, name); ok {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				d, derr := time.ParseDuration(v)
				if derr != nil || d <= 0 {
					bad(name, v, fmt.Errorf("want seconds > 0"))
					return
				}
				*dst = d
				return
			}
			*dst = time.Duration(n) * time.Second
		}
	}
	integer := func(name string, dst *int, lo, hi int) {
		if v, ok := annotation(ing, name); ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < lo || n > hi {
				bad(name, v, fmt.Errorf("want an integer in [%d, %d]", lo, hi))
				return
			}
			*dst = n
		}
	}
	boolean("use-regex", &c.useRegex)
	if v, ok := annotation(ing, "rewrite-target"); ok && v != "" {
		c.rewriteTarget = v
		// ingress-nginx treats paths as regexes once rewrite-target is
		// set, so "/app(/|$)(.*)" with "/$2" works the same here.
		c.useRegex = true
	}
	boolean("ssl-redirect", &c.sslRedirect)
	boolean("force-ssl-redirect", &c.forceSSLRedirect)
	if v, ok := annotation(ing, "proxy-body-size"); ok {
		n, err := parseSize(v)
		if err != nil {
			bad("proxy-body-size", v, err)
		} else {
			c.bodyLimit = n
		}
	}
	if v, ok := annotation(ing, "load-balance"); ok {
		switch v {
		case "round_robin":
		case "least_request":
			c.leastRequest = true
		default:
			bad("load-balance", v, fmt.Errorf("want round_robin or least_request"))
		}
	}
	c.affinity = parseAffinity(ing, bad)
	seconds("proxy-connect-timeout", &c.connectTimeout)
	seconds("proxy-read-timeout", &c.readTimeout)
	seconds("proxy-send-timeout", &c.sendTimeout)

	rps, burst := 0, 5
	integer("limit-rps", &rps, 0, 1<<20)
	integer("limit-burst-multiplier", &burst, 1, 1000)
	if rps > 0 {
		key := fmt.Sprintf("%s/%s/%d/%d", ing.Namespace, ing.Name, rps, burst)
		l := b.limiters[key]
		if l == nil {
			l = newIPLimiter(float64(rps), float64(rps*burst))
			b.limiters[key] = l
		}
		b.usedLimiters[key] = true
		c.limiter = l
	}

	if v, ok := annotation(ing, "auth-type"); ok {
		if v != "basic" {
			bad("auth-type", v, fmt.Errorf("only basic is supported"))
			c.auth = &basicAuth{broken: "unsupported auth-type"}
		} else {
			c.auth = b.basicAuth(ing, secrets, &problems)
		}
	}

	enable := false
	boolean("enable-cors", &enable)
	if enable {
		cc := &corsConfig{
			allowOrigins: []string{"*"},
			allowMethods: "GET, PUT, POST, DELETE, PATCH, OPTIONS",
			allowHeaders: "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization",
			maxAge:       "1728000",
		}
		if v, ok := annotation(ing, "cors-allow-origin"); ok && v != "" {
			cc.allowOrigins = nil
			for o := range strings.SplitSeq(v, ",") {
				if o = strings.TrimSpace(o); o != "" {
					cc.allowOrigins = append(cc.allowOrigins, o)
				}
			}
		}
		if v, ok := annotation(ing, "cors-allow-methods"); ok && v != "" {
			cc.allowMethods = v
		}
		if v, ok := annotation(ing, "cors-allow-headers"); ok && v != "" {
			cc.allowHeaders = v
		}
		if v, ok := annotation(ing, "cors-expose-headers"); ok {
			cc.exposeHeaders = v
		}
		cc.allowCredentials = true
		boolean("cors-allow-credentials", &cc.allowCredentials)
		if v, ok := annotation(ing, "cors-max-age"); ok && v != "" {
			if _, err := strconv.Atoi(v); err != nil {
				bad("cors-max-age", v, err)
			} else {
				cc.maxAge = v
			}
		}
		c.cors = cc
	}

	boolean("canary", &c.canary)
	if c.canary {
		if v, ok := annotation(ing, "canary-by-header"); ok {
			c.canaryHeader = v
		}
		if v, ok := annotation(ing, "canary-by-header-value"); ok {
			c.canaryHeaderValue = v
		}
		integer("canary-weight-total", &c.canaryWeightTotal, 1, 1<<20)
		integer("canary-weight", &c.canaryWeight, 0, c.canaryWeightTotal)
	}
	return c, problems
}

// parseSize reads nginx sizes ("8k", "1m", "1g", "0") and Kubernetes
// quantities ("1Mi").
func parseSize(v string) (int64, error) {
	s := strings.ToLower(v)
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "k"):
		mult, s = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(s, "m"):
		mult, s = 1<<20, s[:len(s)-1]
	case strings.HasSuffix(s, "g"):
		mult, s = 1<<30, s[:len(s)-1]
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
		return n * mult, nil
	}
	q, err := resource.ParseQuantity(v)
	if err != nil || q.Sign() < 0 {
		return 0, fmt.Errorf("want a size like 8k, 1m or 1Mi")
	}
	return q.Value(), nil
}
