package extauth

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Cache TTL defaults (the brief's; the kubelet's webhook defaults).
const (
	DefaultTokenSuccessTTL = 2 * time.Minute
	DefaultTokenFailureTTL = 10 * time.Second
	DefaultAllowedTTL      = 5 * time.Minute
	DefaultDeniedTTL       = 30 * time.Second
)

// Options configure a Delegator; zero values are defaults.
type Options struct {
	// Client reads the ConfigMap and creates TokenReviews and
	// SubjectAccessReviews (ClusterRole system:auth-delegator, Role
	// kube-system/extension-apiserver-authentication-reader). Required.
	Client kubernetes.Interface
	// AlwaysAllowPaths are served without authentication or authorization
	// (upstream extension servers' /healthz, /livez, /readyz).
	AlwaysAllowPaths []string
	// Audiences are the TokenReview's (empty = the API server's).
	Audiences []string
	// Cache TTLs; a negative one turns that cache off.
	TokenSuccessTTL, TokenFailureTTL, AllowedTTL, DeniedTTL time.Duration
	Logger                                                  *slog.Logger
	// Now is the clock of the caches (tests); default time.Now.
	Now func() time.Time
}

// Delegator authenticates and authorizes requests by delegating to the
// API server. Build it with New, start it with Start.
type Delegator struct {
	opts      Options
	client    kubernetes.Interface
	log       *slog.Logger
	config    atomic.Pointer[Config]
	tokens    *ttlCache[*User]
	decisions *ttlCache[decision]
	informer  atomic.Pointer[cache.SharedIndexInformer]
}

// New builds a Delegator that trusts no certificate until Start (or
// SetConfig) gives it the ConfigMap's CAs.
func New(opts Options) (*Delegator, error) {
	if opts.Client == nil {
		return nil, errors.New("extauth: a Kubernetes client is required")
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&opts.TokenSuccessTTL, DefaultTokenSuccessTTL}, {&opts.TokenFailureTTL, DefaultTokenFailureTTL},
		{&opts.AllowedTTL, DefaultAllowedTTL}, {&opts.DeniedTTL, DefaultDeniedTTL},
	} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	d := &Delegator{
		opts: opts, client: opts.Client, log: opts.Logger.With("component", "extauth"),
		tokens: newTTLCache[*User](opts.Now), decisions: newTTLCache[decision](opts.Now),
	}
	d.config.Store(&Config{})
	return d, nil
}

// Config is the configuration in use.
func (d *Delegator) Config() *Config { return d.config.Load() }

// SetConfig replaces the configuration (Start keeps it current from the
// ConfigMap; a test or a static setup may set it directly).
func (d *Delegator) SetConfig(c *Config) {
	if c == nil {
		c = &Config{}
	}
	d.config.Store(c)
}

// Start watches the ConfigMap until ctx ends; WaitForSync waits for its
// first list. A missing ConfigMap is not an error (only bearer tokens
// authenticate until it appears); a ConfigMap that does not parse keeps
// the previous configuration.
func (d *Delegator) Start(ctx context.Context) error {
	f := informers.NewSharedInformerFactoryWithOptions(d.client, 10*time.Minute,
		informers.WithNamespace(ConfigMapNamespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", ConfigMapName).String()
		}))
	inf := f.Core().V1().ConfigMaps().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { d.apply(o) },
		UpdateFunc: func(_, o any) { d.apply(o) },
		DeleteFunc: func(any) {
			d.log.Warn("ConfigMap deleted: client certificates and the front proxy are no longer trusted", "configmap", ConfigMapNamespace+"/"+ConfigMapName)
			d.SetConfig(nil)
		},
	}); err != nil {
		return fmt.Errorf("extauth: %w", err)
	}
	d.informer.Store(&inf)
	f.Start(ctx.Done())
	go func() {
		<-ctx.Done()
		f.Shutdown()
	}()
	return nil
}

// WaitForSync waits until the ConfigMap was first listed (after Start)
// or ctx ends.
func (d *Delegator) WaitForSync(ctx context.Context) error {
	p := d.informer.Load()
	if p == nil {
		return errors.New("extauth: not started")
	}
	inf := *p
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return fmt.Errorf("extauth: ConfigMap %s/%s not listed: %w", ConfigMapNamespace, ConfigMapName, context.Cause(ctx))
	}
	if _, ok, _ := inf.GetStore().GetByKey(ConfigMapNamespace + "/" + ConfigMapName); !ok {
		d.log.Warn("no ConfigMap yet: only bearer tokens authenticate until it exists", "configmap", ConfigMapNamespace+"/"+ConfigMapName)
	}
	return nil
}

func (d *Delegator) apply(o any) {
	cm, ok := o.(*corev1.ConfigMap)
	if !ok || cm.Name != ConfigMapName {
		return
	}
	c, err := ParseConfigMap(cm.Data)
	if err != nil {
		d.log.Error("ConfigMap does not parse; keeping the previous configuration", "configmap", ConfigMapNamespace+"/"+ConfigMapName, "err", err)
		return
	}
	d.SetConfig(c)
	d.log.Info("authentication configuration loaded", "client_ca", c.ClientCA != nil, "requestheader_ca", c.RequestHeaderCA != nil,
		"allowed_names", c.AllowedNames, "username_headers", c.UsernameHeaders)
}

// Handler authenticates and authorizes each request before h (the user
// is in the request's context, UserFrom): 401 without valid credentials,
// 403 when the SubjectAccessReview denies, 500 when it cannot be made,
// each a Status as upstream's.
func (d *Delegator) Handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slices.Contains(d.opts.AlwaysAllowPaths, r.URL.Path) {
			h.ServeHTTP(w, r)
			return
		}
		u, err := d.Authenticate(r)
		if err != nil {
			d.log.Debug("unauthenticated request", "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
			WriteStatus(w, apierrors.NewUnauthorized("Unauthorized"))
			return
		}
		a := RequestAttributes(r)
		ok, reason, err := d.Authorize(r.Context(), u, a)
		switch {
		case err != nil:
			d.log.Error("authorization failed", "user", u.Name, "path", r.URL.Path, "err", err)
			WriteStatus(w, apierrors.NewInternalError(err))
		case !ok:
			WriteStatus(w, Forbidden(u, a, reason))
		default:
			h.ServeHTTP(w, r.WithContext(WithUser(r.Context(), u)))
		}
	})
}

// ServerTLSConfig serves cert and requests (does not require) client
// certificates, which Authenticate verifies against the current CAs.
func ServerTLSConfig(cert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{GetCertificate: cert, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
}
