package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"

	"github.com/skiffhq/skiff/addons/ingress"
	"github.com/skiffhq/skiff/controlplane/authz/bootstrap"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// IngressName is the --disable name of the ingress add-on.
const IngressName = "ingress"

// ingressAddrs are the add-on's listen addresses: the explicit
// IngressHTTP(S)Address, else IngressBindAddress with the port; port 0
// (the zero Config) turns that listener off.
func (c *Config) ingressAddrs() (httpAddr, httpsAddr string) {
	bind := c.IngressBindAddress
	if bind == "" {
		bind = "0.0.0.0"
	}
	httpAddr, httpsAddr = c.IngressHTTPAddress, c.IngressHTTPSAddress
	if httpAddr == "" && c.IngressHTTPPort > 0 {
		httpAddr = net.JoinHostPort(bind, strconv.Itoa(c.IngressHTTPPort))
	}
	if httpsAddr == "" && c.IngressHTTPSPort > 0 {
		httpsAddr = net.JoinHostPort(bind, strconv.Itoa(c.IngressHTTPSPort))
	}
	return httpAddr, httpsAddr
}

// startIngress runs the ingress add-on (addons/ingress) with its own
// identity. A listener that cannot bind (port 80 in use, no privilege)
// stops the add-on with an error in the log; the server keeps running.
func (s *Server) startIngress(ctx context.Context) {
	httpAddr, httpsAddr := s.cfg.ingressAddrs()
	if s.disabled(IngressName) || (httpAddr == "" && httpsAddr == "") {
		return
	}
	if err := s.ensureIngressClass(ctx); err != nil {
		s.log.Error("ingress class", "err", err)
	}
	rc, err := s.ComponentConfig(bootstrap.UserIngress, nil)
	if err != nil {
		s.log.Error("ingress identity", "err", err)
		return
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		s.log.Error("ingress client", "err", err)
		return
	}
	accessLog, err := accessLogger(s.cfg.IngressAccessLog)
	if err != nil {
		s.log.Error("ingress access log", "err", err)
		return
	}
	ing, err := ingress.New(ingress.Options{
		Client:            cs,
		HTTPAddr:          httpAddr,
		HTTPSAddr:         httpsAddr,
		AccessLog:         accessLog,
		LeanGoroutines:    s.cfg.IngressLeanGoroutines,
		ClientBodyTimeout: s.cfg.IngressClientBodyTimeout,
		Registerer:        s.api.MetricsRegistry(),
		Logger:            s.cfg.Logger,
	})
	if err != nil {
		s.log.Error("ingress", "err", err)
		return
	}
	s.ingress = ing
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := ing.Run(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("ingress stopped", "err", err)
		}
	}()
}

// IngressClassName is the IngressClass the server creates for its ingress
// add-on, marked as the cluster's default.
const IngressClassName = "skiff"

// ensureIngressClass creates the `skiff` IngressClass (controller
// skiff.io/ingress-controller), the cluster's default, as k3s ships one for
// its bundled controller: Ingresses created without a class get it through
// the DefaultIngressClass admission plugin. An existing class of that name
// is left as it is (a user may have removed the default mark).
func (s *Server) ensureIngressClass(ctx context.Context) error {
	class := &networkingv1.IngressClass{
		ObjectMeta: metav1.ObjectMeta{
			Name:        IngressClassName,
			Annotations: map[string]string{"ingressclass.kubernetes.io/is-default-class": "true"},
		},
		Spec: networkingv1.IngressClassSpec{Controller: ingress.DefaultController},
	}
	if err := s.api.Ensure(ctx, "networking.k8s.io", "v1", "ingressclasses", class); err != nil {
		return fmt.Errorf("ingress class %s: %w", IngressClassName, err)
	}
	return nil
}

// accessLogger writes JSON lines to path ("-" = stdout, "" = off).
func accessLogger(path string) (*slog.Logger, error) {
	switch path {
	case "":
		return nil, nil
	case "-":
		return slog.New(slog.NewJSONHandler(os.Stdout, nil)), nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return slog.New(slog.NewJSONHandler(f, nil)), nil
}

// Ingress returns the ingress add-on (nil when off or not started).
func (s *Server) Ingress() *ingress.Server { return s.ingress }
