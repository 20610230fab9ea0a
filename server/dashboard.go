package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"

	"github.com/skiffhq/skiff/backend"
	"github.com/skiffhq/skiff/controlplane/authz/bootstrap"
)

// DashboardName is the --disable name of the dashboard.
const DashboardName = "dashboard"

// startDashboard serves the dashboard (backend/) over HTTPS with a serving
// certificate of the cluster CA. Its shared cache runs as
// system:skiff-dashboard; users act with their own tokens, or, logged in
// with a client certificate of the cluster CA, through impersonation by
// system:skiff-dashboard.
func (s *Server) startDashboard(ctx context.Context) {
	if s.disabled(DashboardName) || (s.cfg.DashboardPort == 0 && s.cfg.DashboardAddress == "") {
		return
	}
	if err := s.runDashboard(ctx); err != nil {
		s.log.Error("dashboard", "err", err)
	}
}

func (s *Server) runDashboard(ctx context.Context) error {
	rc, err := s.ComponentConfig(bootstrap.UserDashboard, nil)
	if err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	// The metrics add-on (started before) feeds the dashboard's charts.
	// Users log in with a token or with a client certificate of the
	// cluster CA, the one the API server trusts for x509 client auth.
	// The kinds the dashboard opens first are listed now, not when the
	// first browser asks.
	d, err := backend.New(backend.Options{CacheConfig: rc, ClientCAs: s.ca.Pool(), Metrics: s.metrics, Logger: s.cfg.Logger, Warm: backend.DefaultWarm})
	if err != nil {
		return err
	}
	addr := s.cfg.DashboardAddress
	if addr == "" {
		addr = net.JoinHostPort(s.cfg.BindAddress, strconv.Itoa(s.cfg.DashboardPort))
	}
	cert, err := s.ca.EnsureServing(filepath.Join(s.cfg.DataDir, "tls"), "serving-dashboard", servingHosts(), servingIPs(s.cfg))
	if err != nil {
		return fmt.Errorf("serving certificate: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	s.dashboardURL = "https://" + net.JoinHostPort(host, port)
	s.log.Info("dashboard listening", "url", s.dashboardURL)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := d.Serve(ctx, ln, &cert); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("dashboard stopped", "err", err)
		}
	}()
	return nil
}

// DashboardURL returns the dashboard's URL ("" when it is off).
func (s *Server) DashboardURL() string { return s.dashboardURL }
