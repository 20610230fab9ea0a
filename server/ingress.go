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
		Client:     cs,
		HTTPAddr:   httpAddr,
		HTTPSAddr:  httpsAddr,
		AccessLog:  accessLog,
		Registerer: s.api.MetricsRegistry(),
		Logger:     s.cfg.Logger,
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
