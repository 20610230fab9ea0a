// Package apiserver serves the Kubernetes REST API over the storage
// package: discovery, CRUD, watch, patch, tables, subresources, and the
// authentication → authorization → admission → validation chain.
package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	"github.com/skiffhq/skiff/controlplane/storage"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/version"
)

// Config wires a Server.
type Config struct {
	// AuthFailures throttles sources that keep failing authentication.
	AuthFailures AuthFailureLimits
	Store        *storage.Store
	Cache        *storage.Cache
	Registry     *registry.Registry
	Logger       *slog.Logger
	// Version is served at /version.
	Version version.Info
	// ExternalAddress is host:port clients use (discovery's serverAddress).
	ExternalAddress string
	// Authenticator identifies the caller; nil lets every request in as
	// an anonymous admin (tests of the REST layer only).
	Authenticator Authenticator
	// Authorizer decides; nil allows everything authenticated.
	Authorizer Authorizer
	// Admission plugins, in order.
	Admission []AdmissionPlugin
	// Registerer receives the server's metrics; nil = a private registry.
	Registerer *prometheus.Registry
	// Audit, when set, wraps every authenticated request (the audit log).
	Audit Middleware
	// MaxWatchesPerUser bounds one user's open watches (429 beyond it;
	// system:masters exempt). 0 = DefaultMaxWatchesPerUser, < 0 = none.
	MaxWatchesPerUser int
}

// Authenticator identifies the user behind a request. It returns ok=false
// when the request carries no credentials it understands, and an error
// when it carries bad ones.
type Authenticator interface {
	AuthenticateRequest(r *http.Request) (*UserInfo, bool, error)
}

// Authorizer decides whether user may do what info describes. A denial
// returns allowed=false and a reason.
type Authorizer interface {
	Authorize(ctx context.Context, u *UserInfo, info *RequestInfo) (allowed bool, reason string, err error)
}

// SubresourceHandler serves a custom subresource (logs, exec, token...).
type SubresourceHandler func(w http.ResponseWriter, r *http.Request, res *registry.Resource, ns, name string)

// Server is the Kubernetes API server.
type Server struct {
	cfg      Config
	authFail *failureThrottle
	watches  *watchLimiter
	reg      *registry.Registry
	store    *storage.Store
	cache    *storage.Cache
	log      *slog.Logger

	mu          sync.RWMutex
	hooks       map[schema.GroupResource][]StorageHook
	subHandlers map[string]SubresourceHandler
	extraRoutes []func(chi.Router)

	ready      atomic.Bool
	aggregator atomic.Pointer[Aggregator]
	etcdHealth *etcdProbe
	metrics    *metrics
	promReg    *prometheus.Registry
	openapi    *openAPICache
}

// New creates a Server.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	promReg := cfg.Registerer
	if promReg == nil {
		promReg = prometheus.NewRegistry()
	}
	s := &Server{
		cfg:         cfg,
		reg:         cfg.Registry,
		store:       cfg.Store,
		cache:       cfg.Cache,
		log:         cfg.Logger.With("component", "apiserver"),
		hooks:       map[schema.GroupResource][]StorageHook{},
		subHandlers: map[string]SubresourceHandler{},
		metrics:     newMetrics(promReg),
		promReg:     promReg,
		openapi:     &openAPICache{},
		authFail:    newFailureThrottle(cfg.AuthFailures),
		watches:     newWatchLimiter(cfg.MaxWatchesPerUser),
		etcdHealth:  &etcdProbe{},
	}
	if cfg.Store != nil {
		s.etcdHealth.get = cfg.Store.Ping
	}
	s.reg.OnChange(s.openapi.invalidate)
	return s
}

// MetricsRegistry is the registry served on /metrics (in-process add-ons
// register their series here).
func (s *Server) MetricsRegistry() prometheus.Registerer { return s.promReg }

// Registry returns the resource registry.
func (s *Server) Registry() *registry.Registry { return s.reg }

// AddStorageHook attaches a storage hook to a resource.
func (s *Server) AddStorageHook(gr schema.GroupResource, h StorageHook) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hooks[gr] = append(s.hooks[gr], h)
}

func (s *Server) storageHooks(res *registry.Resource) []StorageHook {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.hooks[res.GVR().GroupResource()]
}

// HandleSubresource serves sub of group/resource with h.
func (s *Server) HandleSubresource(group, resource, sub string, h SubresourceHandler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subHandlers[group+"/"+resource+"/"+sub] = h
}

// HandleExtra adds routes outside the resource API (e.g. add-on endpoints).
func (s *Server) HandleExtra(fn func(chi.Router)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.extraRoutes = append(s.extraRoutes, fn)
}

// SetReady marks the server ready for /readyz.
func (s *Server) SetReady(v bool) { s.ready.Store(v) }

func (s *Server) admit(ctx context.Context, a *Attributes) error {
	for _, p := range s.cfg.Admission {
		if err := p.Admit(ctx, a); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) validateAdmission(ctx context.Context, a *Attributes) error {
	for _, p := range s.cfg.Admission {
		if err := p.Validate(ctx, a); err != nil {
			return err
		}
	}
	return nil
}

// Handler returns the HTTP handler of the whole API.
func (s *Server) Handler() http.Handler {
	r := chi.NewRouter()
	r.Use(s.recoverer)
	r.Use(s.instrument)
	r.Use(withWarningHeaders)
	r.Get("/healthz", s.healthRoot("healthz", s.livezChecks))
	r.Get("/livez", s.healthRoot("livez", s.livezChecks))
	r.Get("/readyz", s.healthRoot("readyz", s.readyzChecks))
	r.Get("/version", s.version)
	r.Group(func(r chi.Router) {
		r.Use(s.authenticate)
		if s.cfg.Audit != nil {
			r.Use(s.cfg.Audit)
		}
		r.Use(s.impersonate)
		r.Use(s.authorize)
		r.Use(s.limitWatches)
		r.Get("/metrics", promhttp.HandlerFor(s.promReg, promhttp.HandlerOpts{}).ServeHTTP)
		r.Get("/healthz/*", s.healthOne(s.livezChecks))
		r.Get("/livez/*", s.healthOne(s.livezChecks))
		r.Get("/readyz/*", s.healthOne(s.readyzChecks))
		// Profiling as upstream's --profiling: non-resource URLs that only
		// an identity granted /debug/* (cluster-admin) may read.
		r.HandleFunc("/debug/pprof/", pprof.Index)
		r.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		r.HandleFunc("/debug/pprof/profile", pprof.Profile)
		r.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		r.HandleFunc("/debug/pprof/trace", pprof.Trace)
		r.HandleFunc("/debug/pprof/{name}", pprof.Index)
		r.Get("/api", s.discoveryCore)
		r.Get("/apis", s.discoveryGroups)
		r.Get("/openapi/v2", s.openAPIV2)
		r.Get("/openapi/v3", s.openAPIV3Root)
		r.Get("/openapi/v3/*", s.openAPIV3Doc)
		s.mu.RLock()
		for _, fn := range s.extraRoutes {
			fn(r)
		}
		s.mu.RUnlock()
		r.HandleFunc("/api/*", s.serveAPI)
		r.HandleFunc("/apis/*", s.serveAPI)
		r.NotFound(func(w http.ResponseWriter, r *http.Request) {
			writeStatus(w, statusFor(apierrors.NewGenericServerResponse(http.StatusNotFound, "", schemaGR(""), "", "the server could not find the requested resource", 0, false)))
		})
		r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
			writeStatus(w, statusFor(apierrors.NewMethodNotSupported(schemaGR(""), r.Method)))
		})
	})
	return r
}

func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic serving request", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				writeStatus(w, statusFor(apierrors.NewInternalError(fmt.Errorf("an error on the server prevented the request from succeeding"))))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func (s *Server) version(w http.ResponseWriter, r *http.Request) {
	b, _ := json.MarshalIndent(s.cfg.Version, "", "  ")
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Authenticator == nil {
			next.ServeHTTP(w, r.WithContext(WithUser(r.Context(), &UserInfo{Name: "system:admin", Groups: []string{"system:masters", "system:authenticated"}})))
			return
		}
		u, ok, err := s.cfg.Authenticator.AuthenticateRequest(r)
		if err != nil || !ok {
			if err != nil {
				s.log.Debug("authentication failed", "path", r.URL.Path, "err", err)
			}
			s.authFail.wait(r)
			writeStatus(w, statusFor(apierrors.NewUnauthorized("Unauthorized")))
			return
		}
		next.ServeHTTP(w, r.WithContext(WithUser(r.Context(), u)))
	})
}

func (s *Server) authorize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info := ParseRequestInfo(r)
		ctx := WithRequestInfo(r.Context(), info)
		if s.cfg.Authorizer != nil {
			u, _ := UserFrom(ctx)
			allowed, reason, err := s.cfg.Authorizer.Authorize(ctx, u, info)
			if err != nil {
				s.log.Warn("authorization error", "err", err)
			}
			auditAuthorization(ctx, allowed, reason)
			if !allowed {
				writeStatus(w, statusFor(forbidden(u, info, reason)))
				return
			}
		} else {
			auditAuthorization(ctx, true, "")
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// forbidden builds upstream's 403 message.
func forbidden(u *UserInfo, info *RequestInfo, reason string) error {
	name := "system:anonymous"
	if u != nil {
		name = u.Name
	}
	var msg string
	if info.IsResourceRequest {
		res := info.Resource
		if info.Subresource != "" {
			res += "/" + info.Subresource
		}
		msg = fmt.Sprintf("User %q cannot %s resource %q in API group %q", name, info.Verb, res, info.APIGroup)
		if info.Namespace != "" {
			msg += fmt.Sprintf(" in the namespace %q", info.Namespace)
		} else {
			msg += " at the cluster scope"
		}
	} else {
		msg = fmt.Sprintf("User %q cannot %s path %q", name, info.Verb, info.Path)
	}
	if reason != "" {
		msg += ": " + reason
	}
	gr := schema.GroupResource{Group: info.APIGroup, Resource: info.Resource}
	return apierrors.NewForbidden(gr, info.Name, fmt.Errorf("%s", msg))
}

// serveAPI dispatches a resource request.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	info, ok := RequestInfoFrom(r.Context())
	if !ok {
		info = ParseRequestInfo(r)
	}
	notFound := func() {
		writeStatus(w, statusFor(apierrors.NewGenericServerResponse(http.StatusNotFound, "", schemaGR(""), "", "the server could not find the requested resource", 0, false)))
	}
	if s.proxied(w, r) {
		return
	}
	if !info.IsResourceRequest {
		s.serveDiscoveryPath(w, r, info)
		return
	}
	res, ok := s.reg.Get(info.APIGroup, info.APIVersion, info.Resource)
	if !ok {
		notFound()
		return
	}
	ns, name, sub := info.Namespace, info.PathName(), info.Subresource
	switch sub {
	case "exec", "attach", "portforward", "proxy", "log":
		// Streams, not objects: no negotiation.
	default:
		builtIn := hasProtobuf(res)
		out := negotiateOutput(r.Header.Get("Accept"), builtIn)
		if !out.ok {
			writeStatus(w, statusFor(notAcceptableMedia(builtIn)))
			return
		}
		r = r.WithContext(withOutput(r.Context(), out))
		if out.proto {
			w = &protoResponse{ResponseWriter: w}
		}
	}
	if !res.Namespaced {
		if res.Plural != "namespaces" && ns != "" {
			notFound()
			return
		}
		ns = ""
	}
	if len(info.Parts) > 3 && sub != "proxy" && sub != "portforward" && sub != "exec" && sub != "attach" {
		notFound()
		return
	}
	if res.Create != nil {
		s.serveVirtual(w, r, res, info, ns)
		return
	}
	if res.Get != nil || res.List != nil {
		s.serveReadOnly(w, r, res, info, ns)
		return
	}
	if sub != "" {
		if !res.HasSubresource(sub) {
			notFound()
			return
		}
		s.serveSubresource(w, r, res, info, ns, name, sub)
		return
	}
	if res.Namespaced && ns == "" && name != "" {
		notFound()
		return
	}
	switch info.Verb {
	case "get":
		s.handleGet(w, r, res, ns, name)
	case "list":
		s.handleList(w, r, res, ns)
	case "watch":
		s.handleWatch(w, r, res, ns, name)
	case "create":
		if name != "" {
			writeStatus(w, statusFor(apierrors.NewMethodNotSupported(res.GVR().GroupResource(), "create")))
			return
		}
		if res.Namespaced && ns == "" {
			notFound()
			return
		}
		s.handleCreate(w, r, res, ns)
	case "update":
		s.handleUpdate(w, r, res, ns, name, "")
	case "patch":
		s.handlePatch(w, r, res, ns, name, "")
	case "delete":
		s.handleDelete(w, r, res, ns, name)
	case "deletecollection":
		s.handleDeleteCollection(w, r, res, ns)
	default:
		writeStatus(w, statusFor(apierrors.NewMethodNotSupported(res.GVR().GroupResource(), r.Method)))
	}
}

func (s *Server) serveSubresource(w http.ResponseWriter, r *http.Request, res *registry.Resource, info *RequestInfo, ns, name, sub string) {
	s.mu.RLock()
	h := s.subHandlers[res.Group+"/"+res.Plural+"/"+sub]
	s.mu.RUnlock()
	if h != nil {
		h(w, r, res, ns, name)
		return
	}
	method := r.Method
	switch sub {
	case "status", "approval":
		switch method {
		case http.MethodGet:
			s.handleGet(w, r, res, ns, name)
		case http.MethodPut:
			s.handleUpdate(w, r, res, ns, name, sub)
		case http.MethodPatch:
			s.handlePatch(w, r, res, ns, name, sub)
		default:
			writeStatus(w, statusFor(apierrors.NewMethodNotSupported(res.GVR().GroupResource(), method)))
		}
	case "scale":
		s.handleScale(w, r, res, ns, name)
	case "binding":
		s.handleBinding(w, r, res, ns, name)
	case "eviction":
		s.handleEviction(w, r, res, ns, name)
	case "finalize":
		if method != http.MethodPut {
			writeStatus(w, statusFor(apierrors.NewMethodNotSupported(res.GVR().GroupResource(), method)))
			return
		}
		s.handleFinalize(w, r, res, name)
	default:
		writeStatus(w, statusFor(apierrors.NewGenericServerResponse(http.StatusNotFound, "", schemaGR(""), "",
			fmt.Sprintf("subresource %s of %s is not served", sub, strings.TrimSuffix(res.Plural, "/")), 0, false)))
	}
}
