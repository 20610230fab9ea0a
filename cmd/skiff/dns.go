package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/skiffhq/skiff/addons/dns"
	"github.com/skiffhq/skiff/internal/memtrim"
	"github.com/spf13/cobra"
)

func dnsCmd() *cobra.Command {
	var (
		api            apiFlags
		listen, health string
		port           int
		opts           dns.Options
	)
	cmd := &cobra.Command{
		Use:   "dns",
		Short: "Run the cluster DNS add-on against an API server (like kube-dns/CoreDNS)",
		RunE: func(cmd *cobra.Command, args []string) error {
			_, cs, err := api.clientset("skiff-dns", -1, 0)
			if err != nil {
				return err
			}
			opts.Client, opts.Logger = cs, slog.Default()
			opts.ClusterDNSPort = port
			if listen != "" {
				opts.Listen = []string{net.JoinHostPort(listen, strconv.Itoa(port))}
			}
			d, err := dns.New(opts)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if health != "" {
				srv := &http.Server{Addr: health, Handler: d.HealthHandler(), ReadHeaderTimeout: 10 * time.Second}
				go func() {
					if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
						slog.Error("dns health server", "err", err)
					}
				}()
				defer func() {
					sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					_ = srv.Shutdown(sctx)
				}()
			}
			// Give back the executable pages start-up touched (the add-on alone
			// runs a small part of the binary).
			go memtrim.ReleaseAfter(ctx, 10*time.Second, slog.Default(), true)
			// Queries allocate little and die young: a tighter heap goal
			// (GOGC 50 unless set) keeps the resident set near the live
			// record table at a few percent of CPU.
			if os.Getenv("GOGC") == "" {
				debug.SetGCPercent(50)
			}
			// The initial lists are garbage once the table is built: hand
			// that memory back rather than keep it as the heap's high water.
			go func() {
				for ctx.Err() == nil && !d.Ready() {
					time.Sleep(100 * time.Millisecond)
				}
				debug.FreeOSMemory()
			}()
			return d.Run(ctx)
		},
	}
	f := cmd.Flags()
	api.register(f, "kubeconfig with the API server's address and the add-on's credentials (needs list/watch on services, endpointslices, namespaces: ClusterRole system:skiff-dns)")
	f.StringVar(&opts.ClusterDNS, "cluster-dns", "10.43.0.10", "cluster DNS service IP, served once it is an address of this host (empty = off)")
	f.IntVar(&port, "dns-port", 53, "port of the cluster DNS IP and of --listen")
	f.StringVar(&listen, "listen", "127.0.0.1", "address always served on --dns-port (empty = only the cluster DNS IP)")
	f.StringVar(&opts.Zone, "cluster-domain", "cluster.local", "cluster zone")
	f.StringSliceVar(&opts.Upstreams, "dns-upstream", nil, "upstream resolvers (host or host:port) for other names (default: /etc/resolv.conf's nameservers)")
	f.StringVar(&opts.ResolvConf, "resolv-conf", "/etc/resolv.conf", "resolv.conf read when --dns-upstream is empty")
	f.BoolVar(&opts.NoForward, "no-forward", false, "answer REFUSED for names outside the cluster zone")
	f.IntVar(&opts.CacheSize, "cache-size", 10000, "forwarding cache capacity in entries (negative = no cache)")
	f.BoolVar(&opts.NoPodRecords, "no-pod-records", false, "do not serve the deprecated a-b-c-d.<ns>.pod.<zone> records")
	f.StringVar(&health, "health-address", "127.0.0.1:8081", "address serving /healthz, /readyz and /metrics over plain HTTP (empty = off)")
	return cmd
}
