package ingress

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
)

// Session affinity by cookie (ingress-nginx's affinity: cookie): the first
// answer sets a cookie naming the endpoint that served it, and requests
// that bring it back go to that endpoint while it is ready and not
// ejected; otherwise the usual pick serves them and the cookie is set
// anew. Routes with affinity take the ReverseProxy path.

// affinityConfig is the session-cookie-* annotations of an Ingress.
type affinityConfig struct {
	name     string // session-cookie-name, default INGRESSCOOKIE
	path     string // session-cookie-path; "" = the matched path
	domain   string
	secure   bool
	sameSite http.SameSite
	maxAge   int // seconds; 0 = a session cookie
	expires  int // seconds from now; 0 = none
}

// parseAffinity reads the affinity annotations; nil when affinity is off.
func parseAffinity(ing *networkingv1.Ingress, bad func(name, v string, err error)) *affinityConfig {
	v, ok := annotation(ing, "affinity")
	if !ok || v == "" {
		return nil
	}
	if v != "cookie" {
		bad("affinity", v, fmt.Errorf("only cookie is supported"))
		return nil
	}
	a := &affinityConfig{name: "INGRESSCOOKIE"}
	if v, ok := annotation(ing, "affinity-mode"); ok && v != "balanced" && v != "persistent" && v != "" {
		bad("affinity-mode", v, fmt.Errorf("want balanced or persistent"))
	}
	if v, ok := annotation(ing, "session-cookie-name"); ok && v != "" {
		if !validCookieName(v) {
			bad("session-cookie-name", v, fmt.Errorf("not a cookie name"))
		} else {
			a.name = v
		}
	}
	if v, ok := annotation(ing, "session-cookie-path"); ok && v != "" {
		if !strings.HasPrefix(v, "/") || strings.ContainsAny(v, ";\r\n") {
			bad("session-cookie-path", v, fmt.Errorf("want a path starting with /"))
		} else {
			a.path = v
		}
	}
	if v, ok := annotation(ing, "session-cookie-domain"); ok && v != "" {
		if strings.ContainsAny(v, "; \r\n") {
			bad("session-cookie-domain", v, fmt.Errorf("not a domain"))
		} else {
			a.domain = v
		}
	}
	if v, ok := annotation(ing, "session-cookie-secure"); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad("session-cookie-secure", v, err)
		}
		a.secure = b
	}
	if v, ok := annotation(ing, "session-cookie-samesite"); ok && v != "" {
		switch strings.ToLower(v) {
		case "none":
			a.sameSite = http.SameSiteNoneMode
		case "lax":
			a.sameSite = http.SameSiteLaxMode
		case "strict":
			a.sameSite = http.SameSiteStrictMode
		default:
			bad("session-cookie-samesite", v, fmt.Errorf("want None, Lax or Strict"))
		}
	}
	for name, dst := range map[string]*int{"session-cookie-max-age": &a.maxAge, "session-cookie-expires": &a.expires} {
		if v, ok := annotation(ing, name); ok && v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				bad(name, v, fmt.Errorf("want a positive number of seconds"))
				continue
			}
			*dst = n
		}
	}
	return a
}

// validCookieName: an RFC 6265 token.
func validCookieName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return s != ""
}

// stickyID is an endpoint's cookie value: a hash of its address, so that
// every ingress process (and a restarted one) names it alike without
// telling clients the pod's address.
func stickyID(addr string) string {
	sum := sha256.Sum256([]byte("skiff-ingress-affinity\x00" + addr))
	return hex.EncodeToString(sum[:16])
}

// valueIn is the value of a's cookie in r ("" when absent or a is nil).
func (a *affinityConfig) valueIn(r *http.Request) string {
	if a == nil {
		return ""
	}
	c, err := r.Cookie(a.name)
	if err != nil {
		return ""
	}
	return c.Value
}

// setCookie is the Set-Cookie line naming e, for a request that matched
// rt: HttpOnly, on the matched path unless session-cookie-path says
// otherwise ("/" for a regex path).
func (a *affinityConfig) setCookie(e *endpoint, rt *route) string {
	c := &http.Cookie{Name: a.name, Value: e.stickyID, Path: a.path, Domain: a.domain, HttpOnly: true,
		Secure: a.secure, SameSite: a.sameSite, MaxAge: a.maxAge}
	if c.Path == "" {
		c.Path = "/"
		if rt != nil && rt.re == nil && rt.path != "" {
			c.Path = rt.path
		}
	}
	if a.expires > 0 {
		c.Expires = time.Now().Add(time.Duration(a.expires) * time.Second)
	}
	return c.String()
}

// byID is the endpoint of p whose stickyID is id, if it is ready and not
// ejected.
func (p *pool) byID(id string, now int64) *endpoint {
	if e := p.named(id); e != nil && !e.ejected(now) {
		return e
	}
	return nil
}

// has reports whether one of p's endpoints is named id (ejected or not).
func (p *pool) has(id string) bool { return p.named(id) != nil }

// named is the endpoint of p whose stickyID is id, or nil.
func (p *pool) named(id string) *endpoint {
	if eps := p.eps.Load(); eps != nil && id != "" {
		for _, e := range *eps {
			if e.stickyID == id {
				return e
			}
		}
	}
	return nil
}
