package backend

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/skiffhq/skiff/addons/metrics"
	"github.com/skiffhq/skiff/controlplane/authn"
	"golang.org/x/time/rate"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// Options configure a dashboard backend.
type Options struct {
	// CacheConfig is the backend's own identity: it lists and watches
	// every kind for the shared cache (ClusterRole system:skiff-dashboard)
	// and nothing else. Users' requests never use it.
	CacheConfig *rest.Config
	// APIConfig is the API server's address and CA for users' requests
	// (credentials are dropped; default: CacheConfig's server).
	APIConfig *rest.Config
	// AllowedOrigins are extra origins (scheme://host:port) allowed to
	// open the websocket and send mutations; the dashboard's own origin
	// (the request's Host) is always allowed.
	AllowedOrigins []string
	// SessionTTL is a session's lifetime (default 8h).
	SessionTTL time.Duration
	// RequestRate and RequestBurst limit each session's HTTP requests and
	// websocket messages (default 50/s, burst 200); LoginRate limits
	// login attempts per client IP (default 2/s, burst 10).
	RequestRate  rate.Limit
	RequestBurst int
	LoginRate    rate.Limit
	// IdleWatch is how long a kind's watch stays open after its last
	// subscriber left (default 1m).
	IdleWatch time.Duration
	// Warm are kinds whose shared caches start listing when the backend
	// is built and stay loaded for its life, so the first browser to open
	// them does not wait for the list (DefaultWarm is what the dashboard
	// opens first). The cache reads with CacheConfig's identity as for
	// any subscription; every subscription is still authorized as its
	// user before it sees the cache. Nil: caches start on first use.
	Warm []schema.GroupVersionResource
	// ReauthInterval is how often every open subscription's access
	// reviews and every session's token are checked again even without an
	// RBAC change, which covers other authorizers (webhooks, node) and
	// tokens that expire or are revoked (default 1m). RBAC changes seen
	// by the backend's informers trigger a check at once.
	ReauthInterval time.Duration
	// Metrics is the metrics add-on's collector when it runs in the same
	// process (skiff server): the websocket then serves its history and
	// latest usage (metrics.go). Nil: charts say the history is
	// unavailable.
	Metrics *metrics.Collector
	// MetricsPoll is how often a metrics feed looks for a new scrape
	// round (default 1s).
	MetricsPoll time.Duration
	// ClientCAs is the cluster CA that signs client certificates (the one
	// the API server trusts for x509 client authentication). When set,
	// the HTTPS listener asks for a client certificate and users may log
	// in with it (certlogin.go): the session acts as the certificate's
	// user (CN) and groups (O) through impersonation by CacheConfig's
	// identity, which therefore needs verb impersonate on users and
	// groups. Nil: token login only.
	ClientCAs *x509.CertPool
	// InsecureCookies drops the cookie's Secure attribute (plain-HTTP
	// development only).
	InsecureCookies bool
	Logger          *slog.Logger
}

// Server is the dashboard backend.
type Server struct {
	opts  Options
	log   *slog.Logger
	api   *rest.Config
	cache *sharedCache
	// warm are the kinds of Options.Warm, loaded for the backend's life.
	warm []*kindCache
	// certAuth verifies client certificates (nil: certificate login off).
	certAuth *authn.X509
	sessions *sessionStore
	handler  http.Handler

	loginMu     sync.Mutex
	loginLimits map[string]*rate.Limiter

	// bg ends with Close; the re-authorizer runs under it.
	bg       context.Context
	bgCancel context.CancelFunc
	// reauthOnce starts the re-authorizer with the first subscription.
	reauthOnce sync.Once
	connsMu    sync.Mutex
	conns      map[*wsConn]struct{}
	// members are member clusters' clients and caches, by member and
	// credentials (members.go).
	membersMu sync.Mutex
	members   map[string]*target
	// searchAuthz caches the search's per-kind access reviews (search.go).
	searchAuthz searchAuthz
}

// New builds a backend; it starts nothing until requests arrive but the
// shared caches of Options.Warm.
func New(opts Options) (*Server, error) {
	if opts.CacheConfig == nil {
		return nil, errors.New("backend: CacheConfig is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = 8 * time.Hour
	}
	if opts.RequestRate <= 0 {
		opts.RequestRate, opts.RequestBurst = 50, 200
	}
	if opts.RequestBurst <= 0 {
		opts.RequestBurst = int(opts.RequestRate) * 4
	}
	if opts.LoginRate <= 0 {
		opts.LoginRate = 2
	}
	if opts.MetricsPoll <= 0 {
		opts.MetricsPoll = time.Second
	}
	if opts.ReauthInterval <= 0 {
		opts.ReauthInterval = time.Minute
	}
	base := opts.APIConfig
	if base == nil {
		base = opts.CacheConfig
	}
	cc := rest.CopyConfig(opts.CacheConfig)
	cc.UserAgent = "skiff-dashboard"
	dyn, md, typed, err := cacheClients(cc)
	if err != nil {
		return nil, fmt.Errorf("backend: %w", err)
	}
	s := &Server{
		opts:        opts,
		log:         opts.Logger.With("component", "dashboard"),
		api:         rest.AnonymousClientConfig(base),
		sessions:    newSessionStore(opts.SessionTTL),
		loginLimits: map[string]*rate.Limiter{},
		conns:       map[*wsConn]struct{}{},
		members:     map[string]*target{},
	}
	if opts.ClientCAs != nil {
		s.certAuth = &authn.X509{Roots: opts.ClientCAs}
	}
	s.bg, s.bgCancel = context.WithCancel(context.Background())
	s.cache = newSharedCache(dyn, md, typed, opts.IdleWatch, s.log)
	s.handler = s.routes()
	for _, gvr := range opts.Warm {
		s.warm = append(s.warm, s.cache.pin(gvr))
	}
	if len(s.warm) > 0 {
		go func() {
			t0 := time.Now()
			if err := s.WaitWarm(s.bg); err == nil {
				s.log.Info("dashboard caches warm", "kinds", len(s.warm), "took", time.Since(t0).Round(time.Millisecond))
			}
		}()
	}
	return s, nil
}

// WaitWarm waits until the shared caches of Options.Warm hold their first
// list (at once without Options.Warm).
func (s *Server) WaitWarm(ctx context.Context) error {
	for _, k := range s.warm {
		if !cache.WaitForCacheSync(ctx.Done(), k.informer.HasSynced) {
			return fmt.Errorf("dashboard cache of %s: %w", k.gvr.Resource, context.Cause(ctx))
		}
	}
	return nil
}

// DefaultWarm are the kinds whose shared caches `skiff server` and `skiff
// dashboard` load when the backend starts (Options.Warm): what the
// dashboard's first pages subscribe to (the namespace switcher, the
// overview's nodes and warnings, the pods and deployments tables).
var DefaultWarm = []schema.GroupVersionResource{
	{Version: "v1", Resource: "pods"},
	{Version: "v1", Resource: "nodes"},
	{Version: "v1", Resource: "namespaces"},
	{Version: "v1", Resource: "events"},
	{Group: "apps", Version: "v1", Resource: "deployments"},
}

// Handler serves the dashboard (front end, /api/..., /api/ws).
func (s *Server) Handler() http.Handler { return s.handler }

// Watches reports how many kind watches run and how many were started
// since the backend began (tests check one watch per kind).
func (s *Server) Watches() (running int, started int64) { return s.cache.watches() }

// Close stops the re-authorizer and the shared cache.
func (s *Server) Close() {
	s.bgCancel()
	s.cache.stop()
	s.stopMembers()
}

// Serve serves HTTPS (cert non-nil) or HTTP on l until ctx ends.
func (s *Server) Serve(ctx context.Context, l net.Listener, cert *tls.Certificate) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	if cert != nil {
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12}
		if s.certAuth != nil {
			// Asked for, not required, and verified per request by the
			// API server's x509 authenticator (certlogin.go). ClientCAs
			// tells the browser which certificates to offer.
			srv.TLSConfig.ClientAuth = tls.RequestClientCert
			srv.TLSConfig.ClientCAs = s.opts.ClientCAs
		}
	}
	errCh := make(chan error, 1)
	go func() {
		if cert != nil {
			errCh <- srv.ServeTLS(l, "", "")
		} else {
			errCh <- srv.Serve(l)
		}
	}()
	select {
	case err := <-errCh:
		s.Close()
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	s.Close()
	return nil
}

func (s *Server) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(securityHeaders)
	r.Route("/api", func(r chi.Router) {
		r.Post("/login", s.login)
		r.Get("/login/certificate", s.certificateInfo)
		r.Group(func(r chi.Router) {
			r.Use(s.requireSession)
			r.Get("/session", s.getSession)
			r.Post("/logout", s.logout)
			r.Get("/discovery", s.discoveryHandler)
			r.Get("/openapi/v3", s.openAPIRoot)
			r.Get("/openapi/v3/*", s.openAPIDoc)
			r.Get("/rules", s.rulesHandler)
			r.Get("/access", s.accessHandler)
			r.Get("/object", s.getObject)
			r.Delete("/object", s.deleteObject)
			r.Post("/apply", s.apply)
			r.Post("/scale", s.scale)
			r.Post("/patch", s.patch)
			r.Post("/evict", s.evict)
			r.Get("/logs", s.logs)
			r.Get("/workloadlogs", s.workloadLogs)
			r.Get("/search", s.search)
			r.Get("/exec", s.exec)
			r.Post("/cluster", s.switchCluster)
			r.With(hostOnly("log search")).Get("/logsearch", s.logSearch)
			r.With(hostOnly("log search")).Get("/logsearch/context", s.logContext)
			r.Get("/ws", s.websocket)
		})
		r.NotFound(func(w http.ResponseWriter, r *http.Request) {
			writeError(w, http.StatusNotFound, "no such API endpoint")
		})
	})
	r.Handle("/*", staticHandler())
	return r
}

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

// originAllowed accepts a request without Origin only when it is not a
// browser's cross-site request (safe methods); otherwise the Origin must
// be the dashboard's own or an allowed one.
func (s *Server) originAllowed(r *http.Request, required bool) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return !required
	}
	u, err := url.Parse(o)
	if err != nil {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, a := range s.opts.AllowedOrigins {
		if strings.EqualFold(strings.TrimRight(a, "/"), o) {
			return true
		}
	}
	return false
}

type ctxKey struct{}

func sessionFrom(ctx context.Context) *session {
	s, _ := ctx.Value(ctxKey{}).(*session)
	return s
}

// requireSession authenticates the cookie, rate limits the session and,
// for mutations, checks the Origin and the CSRF token.
func (s *Server) requireSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess := s.sessions.get(r)
		if sess == nil {
			writeError(w, http.StatusUnauthorized, "not logged in or session expired")
			return
		}
		if !sess.limiter.Allow() {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusTooManyRequests, "too many requests")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if !s.originAllowed(r, true) {
				writeError(w, http.StatusForbidden, "origin not allowed")
				return
			}
			if !sess.checkCSRF(r) {
				writeError(w, http.StatusForbidden, "missing or wrong CSRF token")
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, sess)))
	})
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (s *Server) loginAllowed(r *http.Request) bool {
	s.loginMu.Lock()
	defer s.loginMu.Unlock()
	ip := clientIP(r)
	l := s.loginLimits[ip]
	if l == nil {
		if len(s.loginLimits) > 10000 {
			clear(s.loginLimits)
		}
		l = rate.NewLimiter(s.opts.LoginRate, 10)
		s.loginLimits[ip] = l
	}
	return l.Allow()
}

type sessionInfo struct {
	User   string   `json:"user"`
	Groups []string `json:"groups"`
	CSRF   string   `json:"csrf"`
}

// login logs a user in. Method "token" (the default) validates a bearer
// token by asking the API server who its bearer is (SelfSubjectReview,
// `kubectl auth whoami`), as that user; method "certificate" logs in the
// user of the connection's client certificate (certlogin.go).
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if !s.originAllowed(r, true) {
		writeError(w, http.StatusForbidden, "origin not allowed")
		return
	}
	if !s.loginAllowed(r) {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "too many login attempts")
		return
	}
	var body struct {
		Method string `json:"method"`
		Token  string `json:"token"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "bad login request: "+err.Error())
		return
	}
	switch body.Method {
	case "", "token":
	case "certificate":
		s.certificateLogin(w, r)
		return
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown login method %q (token or certificate)", body.Method))
		return
	}
	token := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(body.Token), "Bearer "))
	if token == "" {
		writeError(w, http.StatusBadRequest, "a token is required")
		return
	}
	uc := userConfig(s.api)
	uc.BearerToken = token
	cs, err := kubernetes.NewForConfig(uc)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "client: "+err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	rev, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		s.log.Info("dashboard login refused", "ip", clientIP(r), "err", err)
		writeError(w, http.StatusUnauthorized, "the API server did not accept this token")
		return
	}
	ui := rev.Status.UserInfo
	if ui.Username == "" || ui.Username == "system:anonymous" {
		writeError(w, http.StatusUnauthorized, "the API server did not accept this token")
		return
	}
	sess, err := s.newSession(uc, cs, ui.Username, ui.Groups, time.Now().Add(s.opts.SessionTTL))
	if err != nil {
		writeError(w, http.StatusInternalServerError, "client: "+err.Error())
		return
	}
	s.startSession(w, sess)
	s.log.Info("dashboard login", "user", sess.user, "method", "token")
	writeJSON(w, http.StatusOK, sessionInfo{User: sess.user, Groups: sess.groups, CSRF: sess.csrf})
}

// userConfig is base for one user's session: the dashboard's user agent
// and the session's own client rate. The caller adds the credentials.
func userConfig(base *rest.Config) *rest.Config {
	uc := rest.CopyConfig(base)
	uc.UserAgent = "skiff-dashboard"
	uc.QPS, uc.Burst = 50, 100
	return uc
}

// newSession is a session for user on uc (a userConfig with the user's
// credentials), with cs the client the login confirmed the user with.
func (s *Server) newSession(uc *rest.Config, cs kubernetes.Interface, user string, groups []string, expires time.Time) (*session, error) {
	dyn, err := dynamic.NewForConfig(uc)
	if err != nil {
		return nil, err
	}
	disc, err := discovery.NewDiscoveryClientForConfig(uc)
	if err != nil {
		return nil, err
	}
	return &session{
		id: randomID(), user: user, groups: groups, csrf: randomID(),
		expires: expires,
		limiter: rate.NewLimiter(s.opts.RequestRate, s.opts.RequestBurst),
		client:  cs, dynamic: dyn, discovery: disc, rest: uc,
	}, nil
}

// startSession stores sess and sets its cookie (Secure, HttpOnly,
// SameSite=Strict, expiring with the session).
func (s *Server) startSession(w http.ResponseWriter, sess *session) {
	sess.life, sess.end = context.WithCancelCause(context.Background())
	s.sessions.add(sess)
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: sess.id, Path: "/",
		Expires: sess.expires, HttpOnly: true, Secure: !s.opts.InsecureCookies,
		SameSite: http.SameSiteStrictMode,
	})
}

func (s *Server) getSession(w http.ResponseWriter, r *http.Request) {
	sess := sessionFrom(r.Context())
	writeJSON(w, http.StatusOK, sessionInfo{User: sess.user, Groups: sess.groups, CSRF: sess.csrf})
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	sess := sessionFrom(r.Context())
	s.sessions.remove(sess.id)
	// The session's other tabs stop streaming too.
	s.closeSessionSockets(sess, "logged out")
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: !s.opts.InsecureCookies, SameSite: http.SameSiteStrictMode})
	w.WriteHeader(http.StatusNoContent)
}

type apiError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Reason  string `json:"reason,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, apiError{Code: code, Message: msg})
}
