// Package ingress is the Ingress controller add-on: it serves
// networking.k8s.io/v1 Ingresses of its IngressClass (controller
// skiff.io/ingress-controller) with a Go HTTP(S) reverse proxy that sends
// requests straight to ready EndpointSlice endpoints. Route tables are
// built from Ingress, IngressClass, Service, EndpointSlice and Secret
// informers and swapped atomically. It runs inside `skiff server` and
// alone as `skiff ingress`.
package ingress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/skiffhq/skiff/controlplane/pki"
	"k8s.io/client-go/kubernetes"
)

// Options configure the add-on. The zero value of each field is its default.
type Options struct {
	// Client reads Ingresses, IngressClasses, Services, EndpointSlices,
	// Secrets and Nodes, writes ingresses/status and events. Required.
	Client kubernetes.Interface
	// HTTPAddr and HTTPSAddr are the listen addresses (host:port, port 0 =
	// a free port, see Addrs); empty = that listener is off.
	HTTPAddr, HTTPSAddr string
	// Controller is the IngressClass spec.controller served (default
	// skiff.io/ingress-controller).
	Controller string
	// ClassName is accepted in the legacy kubernetes.io/ingress.class
	// annotation (default "skiff").
	ClassName string
	// WatchWithoutClass serves Ingresses without a class even when no
	// IngressClass of ours is the default.
	WatchWithoutClass bool
	// DefaultCertSecret ("namespace/name") is served when SNI matches no
	// Ingress; default: a self-signed certificate made at start.
	DefaultCertSecret string
	// PublishAddresses go into status.loadBalancer; empty = the nodes'
	// ExternalIP, else InternalIP addresses.
	PublishAddresses []string
	// NoStatus leaves status.loadBalancer alone.
	NoStatus bool
	// NetHTTP1 serves the plain listener with net/http's server instead
	// of the lean HTTP/1.1 loop (lean.go), which is the default: with the
	// proxy's CPU measured apart from the backend's (skiff-bench ingress,
	// README) the lean loop costs 36–51 µs per request against 58–81 for
	// net/http's server. Requests it does not take are handed to that
	// server either way.
	NetHTTP1 bool
	// LeanGoroutines runs the lean loop with a goroutine per connection
	// on Go's netpoller instead of the epoll event loops of our own (one
	// per CPU, epoll_linux.go), which are the default on Linux: they cost
	// about a third less proxy CPU per request (skiff-bench ingress,
	// README). Elsewhere the lean loop always runs with goroutines.
	LeanGoroutines bool
	// ClientBodyTimeout bounds each wait for more of a request body from
	// the client; a client that sends nothing for that long is answered
	// 408 (nginx's client_body_timeout, ingress-nginx's
	// client-body-timeout ConfigMap key). Default
	// DefaultClientBodyTimeout (60 s).
	ClientBodyTimeout time.Duration
	// AccessLog receives one JSON-able record per request (nil = off).
	AccessLog *slog.Logger
	// Registerer receives the metrics (nil = a private registry, served by
	// HealthHandler's /metrics).
	Registerer prometheus.Registerer
	Logger     *slog.Logger

	defaultCert *tls.Certificate
}

// Server is a running ingress add-on.
type Server struct {
	opts    Options
	log     *slog.Logger
	proxy   *Proxy
	w       *watcher
	promReg *prometheus.Registry
	ready   atomic.Bool

	mu      sync.Mutex
	lns     []net.Listener
	addrs   map[string]string // "http"/"https" → bound address
	lean    *leanServer       // the plain listener's lean loop, if any
	started chan struct{}
}

// New validates opts and builds the add-on; Run starts it.
func New(opts Options) (*Server, error) {
	if opts.Client == nil {
		return nil, errors.New("ingress: a Kubernetes client is required")
	}
	if opts.Controller == "" {
		opts.Controller = DefaultController
	}
	if opts.ClassName == "" {
		opts.ClassName = "skiff"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	// The fallback certificate (as ingress-nginx's "fake" one) for clients
	// whose SNI matches no Ingress.
	cert, err := pki.SelfSigned("Skiff Ingress Default Certificate", []string{"ingress.local"}, nil, 365*24*time.Hour)
	if err != nil {
		return nil, fmt.Errorf("ingress: default certificate: %w", err)
	}
	opts.defaultCert = &cert
	s := &Server{opts: opts, log: opts.Logger.With("component", "ingress"), addrs: map[string]string{}, started: make(chan struct{})}
	reg := opts.Registerer
	if reg == nil {
		s.promReg = prometheus.NewRegistry()
		reg = s.promReg
	}
	m := newMetrics(reg)
	httpsPort := 0
	if opts.HTTPSAddr != "" {
		_, port, err := net.SplitHostPort(opts.HTTPSAddr)
		if err != nil {
			return nil, fmt.Errorf("ingress: https address %q: %w", opts.HTTPSAddr, err)
		}
		fmt.Sscan(port, &httpsPort)
	}
	s.proxy = newProxy(m, opts.AccessLog, httpsPort)
	if opts.ClientBodyTimeout < 0 {
		return nil, fmt.Errorf("ingress: client body timeout %s is negative", opts.ClientBodyTimeout)
	}
	if opts.ClientBodyTimeout > 0 {
		s.proxy.clientBodyTimeout = opts.ClientBodyTimeout
	}
	s.w = newWatcher(opts.Client, &s.opts, s.proxy, m, s.log)
	return s, nil
}

// Handler is the proxy (for tests and embedding).
func (s *Server) Handler() *Proxy { return s.proxy }

// Ready reports whether the informers synced and the first route table
// is in place.
func (s *Server) Ready() bool { return s.ready.Load() }

// Addrs returns the bound addresses by listener ("http", "https") once
// Run bound them.
func (s *Server) Addrs() map[string]string {
	<-s.started
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for k, v := range s.addrs {
		out[k] = v
	}
	return out
}

// LeanStats reports how the plain listener's lean loop (goroutines, or
// the epoll loops unless Options.LeanGoroutines) fared so far: the requests it
// took itself and the connections it handed to net/http's server. ok is
// false when there is no lean loop (NetHTTP1, no plain listener, or Run
// has not bound it yet).
func (s *Server) LeanStats() (served, handedOff int64, ok bool) {
	s.mu.Lock()
	ls := s.lean
	s.mu.Unlock()
	if ls == nil {
		return 0, 0, false
	}
	return ls.served.Load(), ls.handedOff.Load(), true
}

// Run serves until ctx ends; then it stops accepting and lets requests in
// flight finish (at most 10 s).
func (s *Server) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var servers []*http.Server
	var leans []*leanServer // the plain listener's lean loop (lean.go); nil for TLS
	startErr := func() error {
		defer close(s.started)
		for _, l := range []struct{ name, addr string }{{"http", s.opts.HTTPAddr}, {"https", s.opts.HTTPSAddr}} {
			if l.addr == "" {
				continue
			}
			ln, err := net.Listen("tcp", l.addr)
			if err != nil {
				for _, o := range s.lns {
					_ = o.Close()
				}
				return fmt.Errorf("ingress: %s listener: %w", l.name, err)
			}
			srv := s.httpServer()
			if l.name == "https" {
				if _, port, _ := net.SplitHostPort(ln.Addr().String()); port != "" {
					fmt.Sscan(port, &s.proxy.httpsPort)
				}
				srv.TLSConfig = s.tlsConfig()
			}
			s.mu.Lock()
			s.lns = append(s.lns, ln)
			s.addrs[l.name] = ln.Addr().String()
			s.mu.Unlock()
			servers = append(servers, srv)
			if srv.TLSConfig == nil && !s.opts.NetHTTP1 {
				ls := newLeanServer(s.proxy, srv, s.log)
				ls.useEpoll = !s.opts.LeanGoroutines
				leans = append(leans, ls)
				s.mu.Lock()
				s.lean = ls
				s.mu.Unlock()
			} else {
				leans = append(leans, nil)
			}
			s.log.Info("ingress listening", "listener", l.name, "addr", ln.Addr().String())
		}
		return nil
	}()
	if startErr != nil {
		return startErr
	}
	var wg sync.WaitGroup
	for i, srv := range servers {
		ln := s.lns[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			switch {
			case srv.TLSConfig != nil:
				err = srv.ServeTLS(ln, "", "")
			case leans[i] != nil:
				err = leans[i].Serve(ln)
			default:
				err = srv.Serve(ln)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("ingress listener stopped", "addr", ln.Addr().String(), "err", err)
			}
		}()
	}
	errCh := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		errCh <- s.w.run(ctx)
	}()
	go func() {
		select {
		case <-s.w.ready:
			s.ready.Store(true)
			s.log.Info("ingress routes synced")
		case <-ctx.Done():
		}
	}()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errCh:
		if ctx.Err() != nil {
			err = nil
		}
	}
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	for i, srv := range servers {
		if leans[i] != nil {
			_ = leans[i].Shutdown(sctx)
		} else {
			_ = srv.Shutdown(sctx)
		}
	}
	wg.Wait()
	s.proxy.closeTransports()
	s.proxy.closeIdleConnections()
	return err
}

// httpServer: h2c next to HTTP/1.1 on plain listeners, HTTP/2 over TLS;
// header and idle timeouts against slow clients (slowloris).
func (s *Server) httpServer() *http.Server {
	srv := &http.Server{
		Handler:           s.proxy,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       75 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetHTTP2(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	return srv
}

// tlsConfig picks certificates by SNI from the current table; TLS 1.2+.
func (s *Server) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := s.proxy.table.Load().certificate(hello.ServerName); c != nil {
				return c, nil
			}
			return s.opts.defaultCert, nil
		},
	}
}

// HealthHandler serves /healthz, /readyz and, with a private registry,
// /metrics.
func (s *Server) HealthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.Ready() {
			http.Error(w, "ingress routes not synced", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	if s.promReg != nil {
		mux.Handle("/metrics", promhttp.HandlerFor(s.promReg, promhttp.HandlerOpts{}))
	}
	return mux
}
