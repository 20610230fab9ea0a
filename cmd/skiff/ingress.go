package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/skiffhq/skiff/addons/ingress"
	"github.com/spf13/cobra"
)

func ingressCmd() *cobra.Command {
	var (
		api                     apiFlags
		bind, health, accessLog string
		httpPort, httpsPort     int
		opts                    ingress.Options
	)
	cmd := &cobra.Command{
		Use:   "ingress",
		Short: "Run the ingress controller add-on against an API server (Ingresses of class controller skiff.io/ingress-controller)",
		RunE: func(cmd *cobra.Command, args []string) error {
			_, cs, err := api.clientset("skiff-ingress", -1, 0)
			if err != nil {
				return err
			}
			opts.Client, opts.Logger = cs, slog.Default()
			if httpPort > 0 {
				opts.HTTPAddr = net.JoinHostPort(bind, strconv.Itoa(httpPort))
			}
			if httpsPort > 0 {
				opts.HTTPSAddr = net.JoinHostPort(bind, strconv.Itoa(httpsPort))
			}
			switch accessLog {
			case "":
			case "-":
				opts.AccessLog = slog.New(slog.NewJSONHandler(os.Stdout, nil))
			default:
				f, err := os.OpenFile(accessLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
				if err != nil {
					return fmt.Errorf("--access-log: %w", err)
				}
				defer f.Close()
				opts.AccessLog = slog.New(slog.NewJSONHandler(f, nil))
			}
			ing, err := ingress.New(opts)
			if err != nil {
				return err
			}
			if health != "" {
				srv := &http.Server{Addr: health, Handler: ing.HealthHandler(), ReadHeaderTimeout: 10 * time.Second}
				go func() {
					if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
						slog.Error("ingress health server", "err", err)
					}
				}()
				defer func() {
					sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					_ = srv.Shutdown(sctx)
				}()
			}
			return ing.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	api.register(f, "kubeconfig with the API server's address and the add-on's credentials (ClusterRole system:skiff-ingress: list/watch ingresses, ingressclasses, services, endpointslices, secrets, nodes; update ingresses/status; events)")
	f.StringVar(&bind, "bind-address", "0.0.0.0", "address the HTTP and HTTPS listeners bind")
	f.IntVar(&httpPort, "ingress-http-port", 80, "HTTP port (0 = off)")
	f.IntVar(&httpsPort, "ingress-https-port", 443, "HTTPS port (0 = off)")
	f.StringVar(&opts.Controller, "controller-name", ingress.DefaultController, "IngressClass spec.controller served")
	f.StringVar(&opts.ClassName, "ingress-class", "skiff", "class name also accepted in the legacy kubernetes.io/ingress.class annotation")
	f.BoolVar(&opts.LeanGoroutines, "lean-goroutines", false, "run the lean HTTP/1.1 loop with a goroutine per connection instead of epoll event loops (one per CPU, the default on Linux; see addons/ingress/README.md)")
	f.BoolVar(&opts.NetHTTP1, "net-http1", false, "serve the plain listener with net/http's server instead of the lean HTTP/1.1 loop (see addons/ingress/README.md)")
	f.BoolVar(&opts.WatchWithoutClass, "watch-ingress-without-class", false, "serve Ingresses without a class even when no IngressClass of ours is the default")
	f.StringVar(&opts.DefaultCertSecret, "default-ssl-certificate", "", "namespace/name of a tls Secret served when SNI matches no Ingress (default: a self-signed certificate)")
	f.StringSliceVar(&opts.PublishAddresses, "publish-address", nil, "addresses written to Ingress status.loadBalancer (default: the nodes' ExternalIP, else InternalIP)")
	f.DurationVar(&opts.ClientBodyTimeout, "client-body-timeout", ingress.DefaultClientBodyTimeout, "each wait for more of a request body from the client; a client silent that long is answered 408 (ingress-nginx's client-body-timeout)")
	f.StringVar(&accessLog, "access-log", "-", "JSON access log file ('-' = stdout, '' = off)")
	f.StringVar(&health, "health-address", "127.0.0.1:8082", "address serving /healthz, /readyz and /metrics over plain HTTP (empty = off)")
	return cmd
}
