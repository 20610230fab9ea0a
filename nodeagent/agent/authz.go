package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// The agent API's authentication and authorization, as the kubelet's
// webhook modes: a client certificate of the cluster CA names the user
// (CN) and groups (O); otherwise a bearer token is checked with a
// TokenReview. Every request is then authorized with a SubjectAccessReview
// on the node: the verb from the HTTP method, resource "nodes", the node's
// name, and a subresource from the path (stats, metrics, log, spec,
// checkpoint; "proxy" for everything else, including exec, attach,
// portForward and containerLogs). Answers are cached for a short time
// with upstream's default TTLs.

// Cache TTLs: kubelet's authentication.webhook.cacheTTL and
// authorization.webhook.cacheAuthorizedTTL/cacheUnauthorizedTTL defaults.
const (
	tokenTTL        = 2 * time.Minute
	tokenFailTTL    = 10 * time.Second
	authorizedTTL   = 5 * time.Minute
	unauthorizedTTL = 30 * time.Second
	authCacheMax    = 4096
)

// apiUser is an authenticated caller.
type apiUser struct {
	Name, UID string
	Groups    []string
	Extra     map[string][]string
}

type cached[T any] struct {
	v       T
	expires time.Time
}

// apiAuth authenticates and authorizes calls to the agent API.
type apiAuth struct {
	client   kubernetes.Interface
	nodeName string

	mu        sync.Mutex
	tokens    map[string]cached[*apiUser] // sha256(token) → user (nil: rejected)
	decisions map[string]cached[bool]
}

func newAPIAuth(client kubernetes.Interface, nodeName string) *apiAuth {
	return &apiAuth{client: client, nodeName: nodeName, tokens: map[string]cached[*apiUser]{}, decisions: map[string]cached[bool]{}}
}

// wrap is the authentication and authorization filter in front of h.
func (z *apiAuth) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := z.authenticate(r)
		if err != nil || u == nil {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		verb, sub := requestAttributes(r)
		ok, err := z.authorize(r.Context(), u, verb, sub)
		if err != nil {
			http.Error(w, fmt.Sprintf("Authorization error (user=%s, verb=%s, resource=nodes, subresource=%s)", u.Name, verb, sub), http.StatusInternalServerError)
			return
		}
		if !ok {
			http.Error(w, fmt.Sprintf("Forbidden (user=%s, verb=%s, resource=nodes, subresource=%s)", u.Name, verb, sub), http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// authenticate finds the caller: a verified client certificate first,
// then a bearer token. nil means no credentials.
func (z *apiAuth) authenticate(r *http.Request) (*apiUser, error) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.PeerCertificates) > 0 {
		c := r.TLS.PeerCertificates[0]
		return &apiUser{Name: c.Subject.CommonName, Groups: append([]string(nil), c.Subject.Organization...)}, nil
	}
	h := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || strings.TrimSpace(token) == "" {
		return nil, nil
	}
	token = strings.TrimSpace(token)
	sum := sha256.Sum256([]byte(token))
	key := hex.EncodeToString(sum[:])
	z.mu.Lock()
	c, hit := z.tokens[key]
	z.mu.Unlock()
	if hit && time.Now().Before(c.expires) {
		return c.v, nil
	}
	tr, err := z.client.AuthenticationV1().TokenReviews().Create(r.Context(), &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("token review: %w", err)
	}
	var u *apiUser
	ttl := tokenFailTTL
	if tr.Status.Authenticated {
		ui := tr.Status.User
		u = &apiUser{Name: ui.Username, UID: ui.UID, Groups: ui.Groups, Extra: map[string][]string{}}
		for k, v := range ui.Extra {
			u.Extra[k] = v
		}
		ttl = tokenTTL
	}
	z.put(func() {
		if len(z.tokens) >= authCacheMax {
			clear(z.tokens)
		}
		z.tokens[key] = cached[*apiUser]{v: u, expires: time.Now().Add(ttl)}
	})
	return u, nil
}

func (z *apiAuth) put(fn func()) {
	z.mu.Lock()
	defer z.mu.Unlock()
	fn()
}

// authorize asks the API server whether u may verb nodes/<sub> on this
// node.
func (z *apiAuth) authorize(ctx context.Context, u *apiUser, verb, sub string) (bool, error) {
	key := decisionKey(u, verb, sub)
	z.mu.Lock()
	c, hit := z.decisions[key]
	z.mu.Unlock()
	if hit && time.Now().Before(c.expires) {
		return c.v, nil
	}
	extra := map[string]authorizationv1.ExtraValue{}
	for k, v := range u.Extra {
		extra[k] = v
	}
	sar, err := z.client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{
			User: u.Name, UID: u.UID, Groups: u.Groups, Extra: extra,
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb: verb, Version: "v1", Resource: "nodes", Subresource: sub, Name: z.nodeName,
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, fmt.Errorf("subject access review: %w", err)
	}
	ttl := unauthorizedTTL
	if sar.Status.Allowed {
		ttl = authorizedTTL
	}
	z.put(func() {
		if len(z.decisions) >= authCacheMax {
			clear(z.decisions)
		}
		z.decisions[key] = cached[bool]{v: sar.Status.Allowed, expires: time.Now().Add(ttl)}
	})
	return sar.Status.Allowed, nil
}

func decisionKey(u *apiUser, verb, sub string) string {
	groups := append([]string(nil), u.Groups...)
	sort.Strings(groups)
	keys := make([]string, 0, len(u.Extra))
	for k := range u.Extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%q %q %q %q %q", u.Name, u.UID, groups, verb, sub)
	for _, k := range keys {
		fmt.Fprintf(&b, " %q=%q", k, u.Extra[k])
	}
	return b.String()
}

// requestAttributes maps a request to the verb and nodes subresource the
// kubelet authorizes it as.
func requestAttributes(r *http.Request) (verb, sub string) {
	switch r.Method {
	case http.MethodPost:
		verb = "create"
	case http.MethodGet, http.MethodHead:
		verb = "get"
	case http.MethodPut:
		verb = "update"
	case http.MethodPatch:
		verb = "patch"
	case http.MethodDelete:
		verb = "delete"
	default:
		verb = strings.ToLower(r.Method)
	}
	sub = "proxy"
	for _, p := range []struct{ prefix, sub string }{
		{"/stats", "stats"}, {"/metrics", "metrics"}, {"/logs", "log"}, {"/spec", "spec"}, {"/checkpoint", "checkpoint"},
	} {
		if r.URL.Path == p.prefix || strings.HasPrefix(r.URL.Path, p.prefix+"/") {
			sub = p.sub
		}
	}
	return verb, sub
}
