// Package extserver serves the metrics add-on's metrics.k8s.io/v1beta1
// as an extension API server, as metrics-server does: HTTPS on its own
// port (metrics.Collector.APIHandler), delegated authentication and
// authorization (internal/extauth: front proxy headers, client
// certificates, TokenReview, SubjectAccessReview), and optionally its own
// registration with API aggregation (an ExternalName Service and the
// APIService v1beta1.metrics.k8s.io, Registration). `skiff metrics
// --secure-port` runs it.
package extserver

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/skiffhq/skiff/addons/metrics"
	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/internal/extauth"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// DefaultServiceHost is the Service's default externalName: the API
// server reaches the add-on on its own machine.
const DefaultServiceHost = "localhost"

// Options configure a Server.
type Options struct {
	// Collector is the add-on whose data is served. Required.
	Collector *metrics.Collector
	// Client reads the ConfigMap kube-system/extension-apiserver-
	// authentication, makes TokenReviews and SubjectAccessReviews, and
	// writes the Service when registering. Required.
	Client kubernetes.Interface
	// Dynamic writes the APIService; required with Register.
	Dynamic dynamic.Interface
	// BindAddress and Port are where HTTPS is served (port 0: a free
	// one, see Addr).
	BindAddress string
	Port        int
	// CertFile and KeyFile are the serving certificate and key (PEM);
	// without them a self-signed certificate is made (SelfSignedNames).
	// CAFile is the caBundle registered in the APIService (default: the
	// certificate file itself, or the self-signed certificate).
	CertFile, KeyFile, CAFile string
	// Register writes the Service and the APIService (Registration) and
	// keeps them current; ServiceHost is the Service's externalName
	// (default localhost).
	Register    bool
	ServiceHost string
	// Auth tunes the delegated authentication (Client and
	// AlwaysAllowPaths are set by the server).
	Auth   extauth.Options
	Logger *slog.Logger
}

// Server is a listening extension API server; Run serves it.
type Server struct {
	opts     Options
	log      *slog.Logger
	ln       net.Listener
	cert     tls.Certificate
	caBundle []byte
	auth     *extauth.Delegator
}

// New loads or makes the serving certificate and listens.
func New(opts Options) (*Server, error) {
	if opts.Collector == nil || opts.Client == nil {
		return nil, errors.New("extserver: a collector and a Kubernetes client are required")
	}
	if opts.Register && opts.Dynamic == nil {
		return nil, errors.New("extserver: registering needs a dynamic client")
	}
	if opts.ServiceHost == "" {
		opts.ServiceHost = DefaultServiceHost
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{opts: opts, log: opts.Logger.With("component", "metrics-apiserver")}
	var err error
	if s.cert, s.caBundle, err = servingCert(opts); err != nil {
		return nil, fmt.Errorf("extserver: %w", err)
	}
	ao := opts.Auth
	ao.Client, ao.AlwaysAllowPaths = opts.Client, []string{"/healthz", "/livez", "/readyz"}
	if ao.Logger == nil {
		ao.Logger = opts.Logger
	}
	if s.auth, err = extauth.New(ao); err != nil {
		return nil, fmt.Errorf("extserver: %w", err)
	}
	addr := net.JoinHostPort(opts.BindAddress, strconv.Itoa(opts.Port))
	if s.ln, err = net.Listen("tcp", addr); err != nil {
		return nil, fmt.Errorf("extserver: listen on %s: %w", addr, err)
	}
	return s, nil
}

// Addr is the listening address.
func (s *Server) Addr() *net.TCPAddr { return s.ln.Addr().(*net.TCPAddr) }

// CABundle is the PEM the API server verifies this server's certificate
// with (the APIService's caBundle).
func (s *Server) CABundle() []byte { return s.caBundle }

// Auth is the delegated authenticator and authorizer.
func (s *Server) Auth() *extauth.Delegator { return s.auth }

// Registration is what Run registers when Options.Register is set.
func (s *Server) Registration() *Registration {
	return &Registration{Client: s.opts.Client, Dynamic: s.opts.Dynamic, Host: s.opts.ServiceHost,
		Port: int32(s.Addr().Port), CABundle: s.caBundle, Logger: s.log}
}

// Run serves until ctx ends (then shuts down within 5 seconds). It
// first waits up to 30 seconds for the authentication ConfigMap's first
// read (the watch goes on after that either way).
func (s *Server) Run(ctx context.Context) error {
	if err := s.auth.Start(ctx); err != nil {
		_ = s.ln.Close()
		return fmt.Errorf("extserver: %w", err)
	}
	syncCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := s.auth.WaitForSync(syncCtx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			_ = s.ln.Close()
			return nil
		}
		s.log.Warn("authentication ConfigMap not read yet; serving anyway (only bearer tokens authenticate until it is)", "err", err)
	}
	srv := &http.Server{
		Handler:           s.auth.Handler(s.opts.Collector.APIHandler()),
		TLSConfig:         extauth.ServerTLSConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &s.cert, nil }),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	if s.opts.Register {
		wg.Go(func() { s.Registration().Run(ctx) })
	}
	wg.Go(func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
	s.log.Info("serving metrics.k8s.io", "address", s.Addr().String(), "register", s.opts.Register)
	if err := srv.ServeTLS(s.ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("extserver: %w", err)
	}
	return nil
}

// SelfSignedNames are the DNS names of the self-signed certificate
// (besides ServiceHost): the Service's names, which the API server's
// proxy verifies (<service>.<namespace>.svc), and localhost.
var SelfSignedNames = []string{
	ServiceName, ServiceName + "." + ServiceNamespace, ServiceName + "." + ServiceNamespace + ".svc",
	ServiceName + "." + ServiceNamespace + ".svc.cluster.local", "localhost",
}

func servingCert(opts Options) (tls.Certificate, []byte, error) {
	if opts.CertFile != "" || opts.KeyFile != "" || opts.CAFile != "" {
		if opts.CertFile == "" || opts.KeyFile == "" {
			return tls.Certificate{}, nil, errors.New("a CA file needs a certificate, and a certificate a key (--tls-cert-file, --tls-private-key-file)")
		}
		cert, err := tls.LoadX509KeyPair(opts.CertFile, opts.KeyFile)
		if err != nil {
			return tls.Certificate{}, nil, fmt.Errorf("serving certificate: %w", err)
		}
		caFile := opts.CAFile
		if caFile == "" {
			caFile = opts.CertFile
		}
		ca, err := os.ReadFile(caFile)
		if err != nil {
			return tls.Certificate{}, nil, fmt.Errorf("CA bundle: %w", err)
		}
		return cert, ca, nil
	}
	names := append([]string(nil), SelfSignedNames...)
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	for _, h := range []string{opts.ServiceHost, opts.BindAddress} {
		if ip := net.ParseIP(h); ip != nil {
			if !ip.IsUnspecified() && !ip.IsLoopback() {
				ips = append(ips, ip)
			}
		} else if h != "" && h != "localhost" {
			names = append(names, h)
		}
	}
	cert, err := pki.SelfSigned(ServiceName, names, ips, 365*24*time.Hour)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), nil
}
