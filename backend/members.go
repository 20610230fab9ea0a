package backend

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/skiffhq/skiff/addons/federation"
	"github.com/skiffhq/skiff/addons/federation/apis/v1alpha1"
	authzv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Member clusters (issue #14, federation add-on). A request naming a
// member in the ClusterHeader header (a websocket subscription: its
// "cluster" field) runs against that member instead of the host:
//
//   - the user must be allowed to get the MemberCluster and, as checked
//     with the user's own SelfSubjectAccessReview and then by reading it
//     with the user's token, the member's credentials Secret on the host;
//     otherwise the answer is a 403 naming the Secret;
//   - the member is then reached with the credentials in that Secret
//     (federation.MemberConfig), which never leave the backend: reads,
//     writes, access reviews and the member's own shared cache use them,
//     since a user who may read the Secret may act with it anyway;
//   - the grant is kept per session for memberGrantTTL, and every open
//     member subscription is re-authorized with the Secret's access review
//     on every pass (reauth.go), so losing access to the Secret ends it.
//
// Metrics history and log search cover the host only.

// ClusterHeader names the member cluster a request is for (absent: the host).
const ClusterHeader = "X-Skiff-Cluster"

// memberGrantTTL is how long a session's checked access to a member is
// reused before the Secret is read again.
const memberGrantTTL = 30 * time.Second

var secretsGVR = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}

// target is the cluster a request acts on: the host (cluster "") with the
// user's own clients, or a member with its credentials.
type target struct {
	cluster   string
	client    kubernetes.Interface
	dynamic   dynamic.Interface
	discovery discovery.DiscoveryInterface
	rest      *rest.Config
	cache     *sharedCache
	// secret is a member's credentials Secret on the host.
	secretNS, secretName string
}

// memberGrant is a session's checked access to one member.
type memberGrant struct {
	t  *target
	at time.Time
}

// memberGrants are a session's grants, by member name.
type memberGrants struct {
	mu sync.Mutex
	m  map[string]memberGrant
}

func (g *memberGrants) get(name string) *target {
	g.mu.Lock()
	defer g.mu.Unlock()
	if mg, ok := g.m[name]; ok && time.Since(mg.at) < memberGrantTTL {
		return mg.t
	}
	return nil
}

func (g *memberGrants) set(name string, t *target) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m == nil {
		g.m = map[string]memberGrant{}
	}
	g.m[name] = memberGrant{t: t, at: time.Now()}
}

func (g *memberGrants) drop(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.m, name)
}

// hostTarget is the host as the session's user.
func (s *Server) hostTarget(sess *session) *target {
	return &target{client: sess.client, dynamic: sess.dynamic, discovery: sess.discovery, rest: sess.rest, cache: s.cache}
}

// statusError is an answer with a status code for the browser.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

// targetFor returns the cluster r acts on, answering the error itself
// (false) when the member cannot be used.
func (s *Server) targetFor(w http.ResponseWriter, r *http.Request) (*target, bool) {
	sess := sessionFrom(r.Context())
	t, err := s.resolveTarget(r.Context(), sess, r.Header.Get(ClusterHeader))
	if err != nil {
		writeTargetError(w, err)
		return nil, false
	}
	return t, true
}

func writeTargetError(w http.ResponseWriter, err error) {
	var se *statusError
	if errors.As(err, &se) {
		writeError(w, se.code, se.msg)
		return
	}
	writeAPIError(w, err)
}

// resolveTarget returns the host (name "") or member name for sess,
// checking the user's access to the member's credentials Secret.
func (s *Server) resolveTarget(ctx context.Context, sess *session, name string) (*target, error) {
	if name == "" {
		return s.hostTarget(sess), nil
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return nil, &statusError{http.StatusBadRequest, fmt.Sprintf("bad member cluster name %q: %v", name, errs[0])}
	}
	if t := sess.members.get(name); t != nil {
		return t, nil
	}
	u, err := sess.dynamic.Resource(v1alpha1.MemberClusterGVR).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, &statusError{http.StatusNotFound, fmt.Sprintf("member cluster %q not found (is federation enabled on the host?)", name)}
	case err != nil:
		return nil, err
	}
	var mc v1alpha1.MemberCluster
	if err := v1alpha1.FromUnstructured(u, &mc); err != nil {
		return nil, &statusError{http.StatusBadGateway, fmt.Sprintf("member cluster %q: %v", name, err)}
	}
	ref := mc.Spec.SecretRef
	if ref == nil || ref.Name == "" {
		return nil, &statusError{http.StatusConflict, fmt.Sprintf("member cluster %q has no credentials Secret (spec.secretRef)", name)}
	}
	denied := &statusError{http.StatusForbidden, fmt.Sprintf(
		"%s cannot get secret %s/%s, the credentials of member cluster %q: switching to a member needs read access to its credentials Secret",
		sess.user, ref.Namespace, ref.Name, name)}
	ok, err := accessReview(ctx, sess.client, authzv1.ResourceAttributes{Verb: "get", Version: "v1", Resource: "secrets", Namespace: ref.Namespace, Name: ref.Name})
	if err != nil {
		return nil, fmt.Errorf("access review: %w", err)
	}
	if !ok {
		return nil, denied
	}
	// Read with the user's own token: the API server decides again.
	cfg, err := federation.MemberConfig(ctx, sess.client, &mc)
	switch {
	case apierrors.IsForbidden(err):
		return nil, denied
	case err != nil:
		return nil, &statusError{http.StatusBadGateway, fmt.Sprintf("member cluster %q: %v", name, err)}
	}
	t, err := s.memberTarget(name, cfg, ref.Namespace, ref.Name)
	if err != nil {
		return nil, err
	}
	sess.members.set(name, t)
	return t, nil
}

// memberTarget returns the shared clients and cache for a member's
// credentials (one per member and credentials, whoever asks).
func (s *Server) memberTarget(name string, cfg *rest.Config, secretNS, secretName string) (*target, error) {
	h := sha256.New()
	for _, p := range []string{name, cfg.Host, cfg.BearerToken, string(cfg.CAData), string(cfg.CertData), string(cfg.KeyData), cfg.TLSClientConfig.ServerName, cfg.Username, cfg.Password} {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	key := hex.EncodeToString(h.Sum(nil))
	s.membersMu.Lock()
	defer s.membersMu.Unlock()
	if t := s.members[key]; t != nil {
		return t, nil
	}
	c := rest.CopyConfig(cfg)
	c.UserAgent = "skiff-dashboard"
	c.QPS, c.Burst = 50, 100
	cs, err := kubernetes.NewForConfig(c)
	if err != nil {
		return nil, fmt.Errorf("member %s client: %w", name, err)
	}
	dyn, md, typed, err := cacheClients(c)
	if err != nil {
		return nil, fmt.Errorf("member %s: %w", name, err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(c)
	if err != nil {
		return nil, fmt.Errorf("member %s client: %w", name, err)
	}
	t := &target{cluster: name, client: cs, dynamic: dyn, discovery: disc, rest: c,
		cache: newSharedCache(dyn, md, typed, s.opts.IdleWatch, s.log.With("member", name)), secretNS: secretNS, secretName: secretName}
	// Credentials changed: new requests use the new entry; the old one's
	// informers keep serving its open subscriptions and stop when idle.
	for k, o := range s.members {
		if o.cluster == name {
			delete(s.members, k)
		}
	}
	s.members[key] = t
	return t, nil
}

// clusterInfo answers POST /api/cluster.
type clusterInfo struct {
	Cluster string `json:"cluster"`
	Version string `json:"version,omitempty"`
}

// switchCluster checks that the user may use member {"cluster"} ("" = the
// host) and that it answers; the browser then names it in ClusterHeader.
func (s *Server) switchCluster(w http.ResponseWriter, r *http.Request) {
	sess := sessionFrom(r.Context())
	var body struct {
		Cluster string `json:"cluster"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "bad cluster request: "+err.Error())
		return
	}
	// Switching checks the Secret again rather than a cached grant.
	if body.Cluster != "" {
		sess.members.drop(body.Cluster)
	}
	t, err := s.resolveTarget(r.Context(), sess, body.Cluster)
	if err != nil {
		s.log.Info("dashboard cluster switch refused", "user", sess.user, "cluster", body.Cluster, "err", err)
		writeTargetError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	v, err := serverVersion(ctx, t)
	if err != nil {
		what := "the host"
		if t.cluster != "" {
			what = fmt.Sprintf("member cluster %q", t.cluster)
		}
		writeError(w, http.StatusBadGateway, fmt.Sprintf("%s is unreachable: %v", what, err))
		return
	}
	s.log.Info("dashboard cluster switch", "user", sess.user, "cluster", t.cluster)
	writeJSON(w, http.StatusOK, clusterInfo{Cluster: t.cluster, Version: v})
}

// serverVersion asks /version within ctx.
func serverVersion(ctx context.Context, t *target) (string, error) {
	b, err := t.discovery.RESTClient().Get().AbsPath("/version").Do(ctx).Raw()
	if err != nil {
		return "", err
	}
	var v struct {
		GitVersion string `json:"gitVersion"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return "", fmt.Errorf("version: %w", err)
	}
	return v.GitVersion, nil
}

// hostOnly refuses requests naming a member for features that cover the
// host only (log search).
func hostOnly(what string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if c := r.Header.Get(ClusterHeader); c != "" {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("%s covers the host cluster only (this request names member cluster %q)", what, c))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// accessReview asks the API server of client whether its user may do attrs.
func accessReview(ctx context.Context, client kubernetes.Interface, attrs authzv1.ResourceAttributes) (bool, error) {
	rev, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authzv1.SelfSubjectAccessReview{
		Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &attrs},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	return rev.Status.Allowed, nil
}

// stopMembers stops every member's shared cache.
func (s *Server) stopMembers() {
	s.membersMu.Lock()
	defer s.membersMu.Unlock()
	for k, t := range s.members {
		t.cache.stop()
		delete(s.members, k)
	}
}
