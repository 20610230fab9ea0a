package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/manager"
	"github.com/spf13/cobra"
)

func controllerManagerCmd() *cobra.Command {
	var (
		api        apiFlags
		rootCAFile string
		ctrls      []string
		apiContent string
		qps        float32
		burst      int
		cfg        manager.Config
	)
	cmd := &cobra.Command{
		Use:   "controller-manager",
		Short: "Run the controller manager against an API server (like kube-controller-manager)",
		RunE: func(cmd *cobra.Command, args []string) error {
			rc, err := api.config("skiff-controller-manager", qps, burst)
			if err != nil {
				return err
			}
			if err := setContentType(rc, apiContent, ""); err != nil {
				return fmt.Errorf("--kube-api-content-type: %w", err)
			}
			cfg.RestConfig = rc
			cfg.Controllers = ctrls
			cfg.Logger = slog.Default()
			if rootCAFile != "" {
				if cfg.RootCA, err = os.ReadFile(rootCAFile); err != nil {
					return fmt.Errorf("--root-ca-file: %w", err)
				}
			}
			if len(cfg.RootCA) == 0 && rc.CAFile != "" {
				if cfg.RootCA, err = os.ReadFile(rc.CAFile); err != nil {
					return fmt.Errorf("kubeconfig CA: %w", err)
				}
			}
			if len(cfg.RootCA) == 0 {
				cfg.RootCA = rc.CAData
			}
			m, err := manager.New(cfg)
			if err != nil {
				return err
			}
			return m.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	api.register(f, "kubeconfig with the API server's address and the manager's credentials")
	f.StringSliceVar(&ctrls, "controllers", []string{"*"}, "controllers to enable: '*' enables all on by default, 'foo' enables foo, '-foo' disables foo. Known: "+strings.Join(manager.KnownNames(manager.Specs()), ", "))
	f.Float32Var(&qps, "kube-api-qps", 200, "requests per second to the API server (< 0: no client-side limit, as inside skiff server)")
	f.IntVar(&burst, "kube-api-burst", 400, "burst of requests to the API server above --kube-api-qps")
	f.StringVar(&apiContent, "kube-api-content-type", protobufContentType, "content type of requests sent to the API server (application/json or "+protobufContentType+")")
	f.BoolVar(&cfg.LeaderElect, "leader-elect", true, "run the controllers only while holding the leader Lease")
	f.StringVar(&cfg.LeaseNamespace, "leader-elect-resource-namespace", "kube-system", "namespace of the leader Lease")
	f.StringVar(&cfg.LeaseName, "leader-elect-resource-name", "kube-controller-manager", "name of the leader Lease")
	f.DurationVar(&cfg.LeaseDuration, "leader-elect-lease-duration", 15e9, "how long a non-leader waits before taking over")
	f.DurationVar(&cfg.RenewDeadline, "leader-elect-renew-deadline", 10e9, "how long the leader retries renewing before giving up")
	f.DurationVar(&cfg.RetryPeriod, "leader-elect-retry-period", 2e9, "wait between leader election attempts")
	f.StringVar(&cfg.MetricsBindAddress, "metrics-bind-address", manager.DefaultMetricsBindAddress, "address serving /metrics and /healthz (empty = off)")
	f.IntVar(&cfg.TerminatedPodGCThreshold, "terminated-pod-gc-threshold", 12500, "terminated pods kept before PodGC deletes the oldest (<=0: never)")
	f.StringVar(&cfg.ClusterCIDR, "cluster-cidr", "", "pod range the node IPAM controller splits into node pod CIDRs (empty: node IPAM off)")
	f.DurationVar(&cfg.NodeLifecycle.MonitorGracePeriod, "node-monitor-grace-period", 40*time.Second, "how long a node may go without renewing its Lease or status before it is marked Unknown and tainted")
	f.DurationVar(&cfg.NodeLifecycle.StartupGracePeriod, "node-startup-grace-period", 60*time.Second, "grace period for a node that never posted status")
	f.DurationVar(&cfg.NodeLifecycle.MonitorPeriod, "node-monitor-period", 5*time.Second, "how often node health is checked")
	f.Float32Var(&cfg.NodeLifecycle.EvictionRate, "node-eviction-rate", 0.1, "nodes per second tainted for eviction in a healthy zone")
	f.Float32Var(&cfg.NodeLifecycle.SecondaryEvictionRate, "secondary-node-eviction-rate", 0.01, "nodes per second tainted for eviction in a partially disrupted large zone")
	f.Float32Var(&cfg.NodeLifecycle.UnhealthyZoneThreshold, "unhealthy-zone-threshold", 0.55, "fraction of not-ready nodes (at least 3) that makes a zone partially disrupted")
	f.IntVar(&cfg.NodeLifecycle.LargeClusterSizeThreshold, "large-cluster-size-threshold", 50, "zones larger than this keep tainting at the secondary rate when partially disrupted")
	f.StringVar(&rootCAFile, "root-ca-file", "", "cluster CA bundle to publish as kube-root-ca.crt (default: the kubeconfig's CA)")
	return cmd
}
