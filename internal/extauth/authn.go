package extauth

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Well-known groups (k8s.io/apiserver/pkg/authentication/user).
const (
	AllAuthenticated   = "system:authenticated"
	AllUnauthenticated = "system:unauthenticated"
)

// User is an authenticated caller.
type User struct {
	Name, UID string
	Groups    []string
	Extra     map[string][]string
}

// ErrUnauthenticated is returned (wrapped, with what each way of
// authenticating found) when a request has no valid credentials.
var ErrUnauthenticated = errors.New("no valid credentials")

type userKey struct{}

// WithUser stores u in ctx.
func WithUser(ctx context.Context, u *User) context.Context {
	return context.WithValue(ctx, userKey{}, u)
}

// UserFrom returns the user Handler authenticated.
func UserFrom(ctx context.Context) (*User, bool) {
	u, ok := ctx.Value(userKey{}).(*User)
	return u, ok
}

// Authenticate finds the caller in upstream's order: front proxy
// (request header) certificate and headers, client certificate, bearer
// token. The headers it used are removed from r, as upstream does. The
// error wraps ErrUnauthenticated unless a TokenReview could not be made.
func (d *Delegator) Authenticate(r *http.Request) (*User, error) {
	cfg := d.Config()
	var errs []error
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		leaf := r.TLS.PeerCertificates[0]
		inter := x509.NewCertPool()
		for _, c := range r.TLS.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		if cfg.RequestHeaderCA != nil {
			err := verifyClient(leaf, cfg.RequestHeaderCA, inter)
			if err == nil && !allowedName(cfg.AllowedNames, leaf.Subject.CommonName) {
				err = fmt.Errorf("x509: subject with cn=%s is not in the allowed list", leaf.Subject.CommonName)
			}
			if err == nil {
				if u := userFromHeaders(r.Header, cfg); u != nil {
					return withAuthenticated(u), nil
				}
				// A front proxy request without a user name is not
				// authenticated by this path (upstream returns no user).
			} else {
				errs = append(errs, fmt.Errorf("request header: %w", err))
			}
		}
		if cfg.ClientCA != nil {
			err := verifyClient(leaf, cfg.ClientCA, inter)
			if err == nil && leaf.Subject.CommonName != "" {
				return withAuthenticated(&User{Name: leaf.Subject.CommonName, Groups: slices.Clone(leaf.Subject.Organization)}), nil
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("client certificate: %w", err))
			}
		}
	}
	if token, ok := bearerToken(r.Header); ok {
		u, err := d.reviewToken(r.Context(), token)
		if err != nil {
			return nil, err
		}
		if u != nil {
			r.Header.Del("Authorization")
			return withAuthenticated(u), nil
		}
		errs = append(errs, errors.New("token: rejected by the TokenReview"))
	}
	return nil, fmt.Errorf("%w: %w", ErrUnauthenticated, errors.Join(errs...))
}

func verifyClient(leaf *x509.Certificate, roots, inter *x509.CertPool) error {
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err
}

func allowedName(allowed []string, cn string) bool {
	return len(allowed) == 0 || slices.Contains(allowed, cn)
}

// userFromHeaders is upstream's request header authenticator: the name
// from the first username header that has a value (nil when none has),
// the UID likewise, groups from every value of every group header, extra
// from headers with an extra prefix (key lower-cased after the prefix and
// %-unescaped). It removes those headers from h.
func userFromHeaders(h http.Header, cfg *Config) *User {
	name := firstValue(h, cfg.UsernameHeaders)
	if name == "" {
		return nil
	}
	u := &User{Name: name, UID: firstValue(h, cfg.UIDHeaders), Groups: allValues(h, cfg.GroupHeaders), Extra: extraFromHeaders(h, cfg.ExtraHeaderPrefixes)}
	for _, l := range [][]string{cfg.UsernameHeaders, cfg.UIDHeaders, cfg.GroupHeaders} {
		for _, n := range l {
			h.Del(n)
		}
	}
	for k := range h {
		for _, p := range cfg.ExtraHeaderPrefixes {
			if hasPrefixFold(k, p) {
				delete(h, k)
			}
		}
	}
	return u
}

func firstValue(h http.Header, names []string) string {
	for _, n := range names {
		if v := h.Get(n); v != "" {
			return v
		}
	}
	return ""
}

func allValues(h http.Header, names []string) []string {
	out := []string{}
	for _, n := range names {
		for _, v := range h[http.CanonicalHeaderKey(n)] {
			if v != "" {
				out = append(out, v)
			}
		}
	}
	return out
}

// extraFromHeaders is upstream's newExtra: prefixes in order, so that
// values of one key keep the prefixes' order.
func extraFromHeaders(h http.Header, prefixes []string) map[string][]string {
	out := map[string][]string{}
	for _, p := range prefixes {
		for name, vv := range h {
			if !hasPrefixFold(name, p) {
				continue
			}
			key := unescapeExtraKey(strings.ToLower(name[len(p):]))
			out[key] = append(out[key], vv...)
		}
	}
	return out
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// unescapeExtraKey %-decodes a key; a malformed one is kept as it is.
func unescapeExtraKey(k string) string {
	u, err := url.PathUnescape(k)
	if err != nil {
		return k
	}
	return u
}

// bearerToken is upstream's bearer token parsing: "Bearer <token>" (the
// scheme in any case); ok is false without such a header.
func bearerToken(h http.Header) (string, bool) {
	auth := strings.TrimSpace(h.Get("Authorization"))
	parts := strings.SplitN(auth, " ", 3)
	if len(parts) < 2 || !strings.EqualFold(parts[0], "bearer") || parts[1] == "" {
		return "", false
	}
	return parts[1], true
}

// reviewToken checks a token with a TokenReview, cached; nil = rejected.
func (d *Delegator) reviewToken(ctx context.Context, token string) (*User, error) {
	sum := sha256.Sum256([]byte(token))
	key := hex.EncodeToString(sum[:])
	if u, ok := d.tokens.get(key); ok {
		return u, nil
	}
	tr, err := d.client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: d.opts.Audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("token review: %w", err)
	}
	if !tr.Status.Authenticated {
		d.tokens.put(key, nil, d.opts.TokenFailureTTL)
		return nil, nil
	}
	ui := tr.Status.User
	u := &User{Name: ui.Username, UID: ui.UID, Groups: slices.Clone(ui.Groups)}
	if len(ui.Extra) > 0 {
		u.Extra = make(map[string][]string, len(ui.Extra))
		for k, v := range ui.Extra {
			u.Extra[k] = slices.Clone(v)
		}
	}
	d.tokens.put(key, u, d.opts.TokenSuccessTTL)
	return u, nil
}

// withAuthenticated adds system:authenticated to u's groups unless it
// has it or system:unauthenticated (upstream's AuthenticatedGroupAdder).
// u is not shared: cached users are copied.
func withAuthenticated(u *User) *User {
	c := *u
	if slices.Contains(c.Groups, AllAuthenticated) || slices.Contains(c.Groups, AllUnauthenticated) {
		c.Groups = slices.Clone(c.Groups)
		return &c
	}
	c.Groups = append(slices.Clone(c.Groups), AllAuthenticated)
	return &c
}
