package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/skiffhq/skiff/addons/metrics"
	"github.com/skiffhq/skiff/addons/metrics/extserver"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/dynamic"
)

// metricsCmd runs the metrics add-on alone. It scrapes the agents with the
// kubeconfig's credentials (they need get on nodes/stats, and list/watch on
// nodes and pods) and keeps the latest usage and the history. With
// --secure-port it also serves metrics.k8s.io/v1beta1 as an extension API
// server (addons/metrics/extserver) that the API server reaches through
// API aggregation, and with --register-apiservice it registers itself
// (see addons/metrics/README.md for the rights that takes).
func metricsCmd() *cobra.Command {
	var (
		api    apiFlags
		health string
		opts   metrics.Options
		ext    extserver.Options
	)
	cmd := &cobra.Command{
		Use:   "metrics",
		Short: "Run the metrics add-on against an API server (scrapes node agents' /stats/summary)",
		RunE: func(cmd *cobra.Command, args []string) error {
			rc, cs, err := api.clientset("skiff-metrics", -1, 0)
			if err != nil {
				return err
			}
			scraper, err := metrics.NewHTTPScraper(rc)
			if err != nil {
				return err
			}
			reg := prometheus.NewRegistry()
			opts.Client, opts.Scraper, opts.Registerer, opts.Logger = cs, scraper, reg, slog.Default()
			c, err := metrics.New(opts)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			var srv *extserver.Server
			if ext.Port != 0 {
				ext.Collector, ext.Client, ext.Logger = c, cs, slog.Default()
				if ext.Register {
					if ext.Dynamic, err = dynamic.NewForConfig(rc); err != nil {
						return fmt.Errorf("dynamic client: %w", err)
					}
				}
				if srv, err = extserver.New(ext); err != nil {
					return err
				}
			}
			if health != "" {
				mux := http.NewServeMux()
				mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
				mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
					if !c.Ready() {
						http.Error(w, "no scrape round completed yet", http.StatusServiceUnavailable)
						return
					}
					_, _ = w.Write([]byte("ok"))
				})
				mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
				srv := &http.Server{Addr: health, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
				go func() {
					if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
						slog.Error("metrics health server", "err", err)
					}
				}()
				defer func() {
					sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					_ = srv.Shutdown(sctx)
				}()
			}
			if srv == nil {
				return c.Run(ctx)
			}
			var wg sync.WaitGroup
			var serveErr error
			wg.Go(func() {
				serveErr = srv.Run(ctx)
				cancel() // a server that stopped stops the add-on
			})
			err = c.Run(ctx)
			cancel()
			wg.Wait()
			return errors.Join(err, serveErr)
		},
	}
	f := cmd.Flags()
	api.register(f, "kubeconfig with the API server's address and the add-on's credentials (list/watch nodes and pods, get nodes/stats)")
	f.DurationVar(&opts.Interval, "metric-resolution", metrics.DefaultInterval, "how often every node is scraped")
	f.DurationVar(&opts.Timeout, "scrape-timeout", metrics.DefaultTimeout, "timeout of one node's scrape (at most --metric-resolution)")
	f.IntVar(&opts.Workers, "scrape-workers", metrics.DefaultWorkers, "nodes scraped concurrently")
	f.DurationVar(&opts.History, "history", metrics.DefaultHistory, "how far back the in-memory history reaches")
	f.StringVar(&health, "health-address", "127.0.0.1:8082", "address serving /healthz, /readyz and /metrics (the add-on's own and the cluster usage) over plain HTTP (empty = off)")
	remoteWriteFlags(f, &opts.RemoteWrite)
	f.IntVar(&ext.Port, "secure-port", 0, "HTTPS port serving metrics.k8s.io/v1beta1 as an extension API server for API aggregation, with delegated authentication and authorization (0 = off: no API served)")
	f.StringVar(&ext.BindAddress, "bind-address", "127.0.0.1", "address --secure-port listens on")
	f.StringVar(&ext.CertFile, "tls-cert-file", "", "serving certificate (PEM) for --secure-port (default: a self-signed one for skiff-metrics.kube-system.svc, localhost and 127.0.0.1, made at each start)")
	f.StringVar(&ext.KeyFile, "tls-private-key-file", "", "key of --tls-cert-file")
	f.StringVar(&ext.CAFile, "tls-ca-file", "", "CA bundle (PEM) registered as the APIService's caBundle (default: --tls-cert-file's contents, or the self-signed certificate)")
	f.BoolVar(&ext.Register, "register-apiservice", false, "create or update the ExternalName Service kube-system/skiff-metrics and the APIService v1beta1.metrics.k8s.io pointing at --secure-port (retried until it succeeds)")
	f.StringVar(&ext.ServiceHost, "apiservice-host", extserver.DefaultServiceHost, "the Service's externalName: the host the API server reaches --secure-port at")
	return cmd
}

// remoteWriteFlags are the metrics add-on's remote write flags, shared by
// `skiff server` and `skiff metrics`.
func remoteWriteFlags(f *pflag.FlagSet, o *metrics.RemoteWriteOptions) {
	f.StringVar(&o.URL, "metrics-remote-write-url", "", "Prometheus remote write (1.0) endpoint the metrics add-on writes the cluster usage series to every scrape round (empty = off)")
	f.StringVar(&o.BearerTokenFile, "metrics-remote-write-bearer-token-file", "", "file with a bearer token for the remote write endpoint (read before every request)")
	f.StringVar(&o.Username, "metrics-remote-write-username", "", "basic auth user for the remote write endpoint")
	f.StringVar(&o.PasswordFile, "metrics-remote-write-password-file", "", "file with the basic auth password for the remote write endpoint")
	f.StringVar(&o.CAFile, "metrics-remote-write-ca-file", "", "PEM CA bundle the remote write endpoint's certificate is checked against (default: system roots)")
	f.IntVar(&o.MaxSamplesPerSend, "metrics-remote-write-max-samples-per-send", 2000, "most samples in one remote write request (a round is split into requests)")
	f.IntVar(&o.Shards, "metrics-remote-write-shards", 4, "remote write requests of one round in flight at once")
}
