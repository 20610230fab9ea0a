package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/skiffhq/skiff/backend"
	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/spf13/cobra"
)

func dashboardCmd() *cobra.Command {
	var (
		api                       apiFlags
		listen, certFile, keyFile string
		clientCAFile              string
		insecureHTTP              bool
		opts                      backend.Options
	)
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Run the web dashboard against an API server (users log in with their own tokens)",
		RunE: func(cmd *cobra.Command, args []string) error {
			rc, err := api.config("skiff-dashboard", -1, 0)
			if err != nil {
				return err
			}
			opts.CacheConfig, opts.Logger, opts.Warm = rc, slog.Default(), backend.DefaultWarm
			opts.InsecureCookies = insecureHTTP
			if clientCAFile != "" {
				if insecureHTTP {
					return errors.New("--client-ca-file needs HTTPS (drop --insecure-http)")
				}
				pemBytes, err := os.ReadFile(clientCAFile)
				if err != nil {
					return fmt.Errorf("--client-ca-file: %w", err)
				}
				opts.ClientCAs = x509.NewCertPool()
				if !opts.ClientCAs.AppendCertsFromPEM(pemBytes) {
					return fmt.Errorf("--client-ca-file %s: no PEM certificates", clientCAFile)
				}
			}
			d, err := backend.New(opts)
			if err != nil {
				return err
			}
			var cert *tls.Certificate
			switch {
			case insecureHTTP:
			case certFile != "":
				c, err := tls.LoadX509KeyPair(certFile, keyFile)
				if err != nil {
					return fmt.Errorf("--tls-cert-file: %w", err)
				}
				cert = &c
			default:
				c, err := pki.SelfSigned("skiff-dashboard", []string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}, 365*24*time.Hour)
				if err != nil {
					return err
				}
				cert = &c
				slog.Warn("dashboard: no --tls-cert-file, serving a self-signed certificate")
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			slog.Info("dashboard listening", "address", ln.Addr().String(), "https", cert != nil)
			return d.Serve(cmd.Context(), ln, cert)
		},
	}
	f := cmd.Flags()
	api.register(f, "kubeconfig with the API server's address and CA and the dashboard's own identity (list/watch on everything: ClusterRole system:skiff-dashboard); users' requests use their own tokens")
	f.StringVar(&listen, "listen", "127.0.0.1:8443", "address the dashboard listens on")
	f.StringVar(&certFile, "tls-cert-file", "", "serving certificate (default: a self-signed one made at start)")
	f.StringVar(&keyFile, "tls-private-key-file", "", "serving certificate's key")
	f.StringVar(&clientCAFile, "client-ca-file", "", "CA that signs users' client certificates (the API server's --client-ca-file): users may then log in with a certificate (CN = user, O = groups), acted on by impersonation, so the dashboard's identity needs verb impersonate on users and groups")
	f.BoolVar(&insecureHTTP, "insecure-http", false, "serve plain HTTP and drop the cookie's Secure attribute (development on loopback only)")
	f.DurationVar(&opts.SessionTTL, "session-ttl", 8*time.Hour, "session lifetime")
	f.StringSliceVar(&opts.AllowedOrigins, "allowed-origin", nil, "extra origins (scheme://host:port) allowed to use the websocket and mutations")
	return cmd
}
