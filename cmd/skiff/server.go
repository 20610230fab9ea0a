package main

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/skiffhq/skiff/addons/ingress"
	"github.com/skiffhq/skiff/nodeagent/agent"
	"github.com/skiffhq/skiff/server"
	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"
)

func serverCmd() *cobra.Command {
	var cfg server.Config
	var disable string
	var datastore string
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the control plane (etcd, API server, controllers, add-ons) and a node agent",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := flagsFromEnv(cmd, joinEnv); err != nil {
				return err
			}
			if datastore != "" {
				for _, e := range strings.Split(datastore, ",") {
					if e = strings.TrimSpace(e); e != "" {
						cfg.DatastoreEndpoints = append(cfg.DatastoreEndpoints, e)
					}
				}
			}
			if disable != "" {
				cfg.Disable = strings.Split(disable, ",")
			}
			if (cfg.JoinServer == "") != (cfg.Token == "") {
				return fmt.Errorf("--server (or SKIFF_URL) and --token (or SKIFF_TOKEN) go together")
			}
			if cfg.JoinServer != "" && cfg.ClusterInit {
				return fmt.Errorf("--cluster-init starts a cluster, --server joins one: not both")
			}
			if err := agent.ValidateProxyMode(cfg.ProxyMode); err != nil {
				return fmt.Errorf("--proxy-mode: %w", err)
			}
			cfg.Logger = slog.Default()
			return server.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", "/var/lib/skiff", "directory for state: etcd data, certificates, kubeconfig")
	f.StringVar(&cfg.BindAddress, "bind-address", "0.0.0.0", "address the API server listens on")
	f.IntVar(&cfg.HTTPSPort, "https-listen-port", 6443, "HTTPS port of the API server")
	f.StringVar(&cfg.WriteKubeconfig, "write-kubeconfig", "", "where to write the admin kubeconfig (default <data-dir>/admin.kubeconfig)")
	f.BoolVar(&cfg.DisableAgent, "disable-agent", false, "do not run a node agent on this host")
	f.Int64Var(&cfg.PodMaxPids, "pod-max-pids", agent.DefaultPodPidsLimit, "processes and threads each container of the built-in agent may have (its pids cgroup; -1: no bound)")
	f.StringVar(&cfg.ProxyMode, "proxy-mode", "nftables", "the node agent's service proxy: nftables, userspace (listening sockets, for kernels without nftables) or none")
	f.StringVar(&cfg.ClusterCIDR, "cluster-cidr", "10.42.0.0/16", "pod network range")
	f.StringVar(&cfg.ServiceCIDR, "service-cidr", "10.43.0.0/16", "service ClusterIP range")
	f.StringVar(&datastore, "datastore-endpoint", "", "external etcd endpoints, comma separated (default: embedded etcd)")
	f.StringVar(&cfg.DatastoreCAFile, "datastore-cafile", "", "CA bundle for the external etcd")
	f.StringVar(&cfg.DatastoreCertFile, "datastore-certfile", "", "client certificate for the external etcd")
	f.StringVar(&cfg.DatastoreKeyFile, "datastore-keyfile", "", "client key for the external etcd")
	f.BoolVar(&cfg.ClusterInit, "cluster-init", false, "start the first server of an HA cluster on embedded etcd, or make a single server with its data the first one (peer port on --advertise-address; join token in <data-dir>/server/token)")
	f.StringVar(&cfg.JoinServer, "server", "", "join the HA cluster of the server at this URL (https://HOST:PORT) as another etcd member and API server; needs --token (default $SKIFF_URL)")
	f.StringVar(&cfg.Token, "token", "", "server token to join with: <data-dir>/server/token of a server of the cluster (SK10<ca hash>::server:<secret>; default $SKIFF_TOKEN)")
	f.StringVar(&cfg.AdvertiseAddress, "advertise-address", "", "address other servers reach this server's etcd peer port at (default --bind-address, or the host's first global IPv4 address)")
	f.IntVar(&cfg.EtcdClientPort, "etcd-client-port", 2379, "client port of the embedded etcd (0 = any free port)")
	f.IntVar(&cfg.EtcdPeerPort, "etcd-peer-port", 2380, "peer port of the embedded etcd (0 = any free port)")
	f.Var(&bytesFlag{&cfg.StorageReserve}, "storage-reserve", "free space the embedded etcd's data directory keeps: writes are refused with 507 below it (a quantity, e.g. 512Mi; 0: 128Mi; -1: no check)")
	f.IntVar(&cfg.WatchCacheSize, "watch-cache-size", 4096, "events kept per resource for watch resume")
	f.StringVar(&disable, "disable", "", "comma-separated components not to start")
	f.StringSliceVar(&cfg.Enable, "enable", nil, "opt-in add-ons to start: federation (this server becomes a federation host)")
	f.StringVar(&cfg.TokenAuthFile, "token-auth-file", "", "static bearer tokens, CSV: token,user,uid,\"group1,group2\"")
	f.StringVar(&cfg.ServiceAccountIssuer, "service-account-issuer", "https://kubernetes.default.svc.cluster.local", "issuer (iss) of service account tokens, also the API audience")
	f.StringVar(&cfg.AuditLogPath, "audit-log-path", "", "write audit.k8s.io/v1 events as JSON lines to this file ('-' = stdout)")
	f.StringVar(&cfg.AuditPolicyFile, "audit-policy-file", "", "audit.k8s.io/v1 Policy (default: Metadata level for every request)")
	f.BoolVar(&cfg.SecretsEncryption, "secrets-encryption", false, "encrypt Secrets in etcd with AES-GCM (key in <data-dir>/cred/encryption-config.json)")
	f.StringSliceVar(&cfg.Controllers, "controllers", nil, "controller manager controllers: '*', 'foo', '-foo' (upstream names; default '*')")
	f.StringSliceVar(&cfg.EnableAdmissionPlugins, "enable-admission-plugins", nil, "admission plugins to enable in addition to the default ones (upstream names; the order is fixed)")
	f.IntVar(&cfg.MaxWatchesPerUser, "max-watches-per-user", 0, "open watches one user may hold before 429 Too Many Requests (0: 1000, -1: no limit; system:masters exempt)")
	f.StringSliceVar(&cfg.DisableAdmissionPlugins, "disable-admission-plugins", nil, "admission plugins to disable although they are on by default")
	f.DurationVar(&cfg.NodeMonitorGracePeriod, "node-monitor-grace-period", 40*time.Second, "how long a node may go without renewing its Lease or status before it is marked Unknown and tainted")
	f.StringVar(&cfg.ControllerManagerMetricsAddress, "controller-manager-metrics-bind-address", "", "address of the controller manager's /metrics (default off)")
	f.StringVar(&cfg.ClusterDNS, "cluster-dns", "", "cluster DNS service IP: pods' nameserver, served by the DNS add-on once it is an address of this host (default: the 10th address of --service-cidr, 10.43.0.10)")
	f.IntVar(&cfg.DNSPort, "dns-port", 53, "DNS add-on port on the cluster DNS IP and on 127.0.0.1")
	f.StringSliceVar(&cfg.DNSUpstreams, "dns-upstream", nil, "upstream resolvers for non-cluster names (default: /etc/resolv.conf's nameservers)")
	f.DurationVar(&cfg.MetricsResolution, "metric-resolution", 15*time.Second, "how often the metrics add-on scrapes every node's stats summary (metrics-server's flag)")
	remoteWriteFlags(f, &cfg.MetricsRemoteWrite)
	f.IntVar(&cfg.IngressHTTPPort, "ingress-http-port", 80, "ingress add-on HTTP port (0 = off; both ports 0 or --disable ingress = no ingress)")
	f.IntVar(&cfg.IngressHTTPSPort, "ingress-https-port", 443, "ingress add-on HTTPS port (0 = off)")
	f.StringVar(&cfg.IngressBindAddress, "ingress-bind-address", "0.0.0.0", "address the ingress listeners bind")
	f.StringVar(&cfg.IngressAccessLog, "ingress-access-log", "-", "ingress JSON access log file ('-' = stdout, '' = off)")
	f.BoolVar(&cfg.IngressLeanGoroutines, "ingress-lean-goroutines", false, "serve plain HTTP with a goroutine per connection instead of the ingress's epoll event loops (the default on Linux)")
	f.DurationVar(&cfg.IngressClientBodyTimeout, "ingress-client-body-timeout", ingress.DefaultClientBodyTimeout, "each wait of the ingress for more of a request body from the client (408 after it)")
	f.IntVar(&cfg.DashboardPort, "dashboard-port", 8443, "web dashboard HTTPS port on --bind-address (0 = off)")
	f.StringVar(&cfg.EtcdSnapshotScheduleCron, "etcd-snapshot-schedule-cron", "0 */12 * * *", "take etcd snapshots on this cron schedule ('' = never; --disable etcd-snapshot)")
	f.IntVar(&cfg.EtcdSnapshotRetention, "etcd-snapshot-retention", 5, "keep this many scheduled snapshots")
	f.StringVar(&cfg.EtcdSnapshotDir, "etcd-snapshot-dir", "", "where snapshots go (default <data-dir>/snapshots)")
	f.DurationVar(&cfg.CertLifetime, "cert-lifetime", 365*24*time.Hour, "lifetime of the leaf certificates the server issues (serving, admin, components)")
	f.Float64Var(&cfg.CertRenewBefore, "cert-renew-before", 0.25, "renew a leaf certificate, without a restart, when less than this fraction of its lifetime remains")
	return cmd
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Run: func(cmd *cobra.Command, args []string) {
			fmt.Println(versionString())
		},
	}
}

// bytesFlag is a size flag written as a Kubernetes quantity ("512Mi",
// "1G", "0", "-1").
type bytesFlag struct{ v *int64 }

func (b *bytesFlag) String() string {
	if b.v == nil {
		return "0"
	}
	return resource.NewQuantity(*b.v, resource.BinarySI).String()
}

func (b *bytesFlag) Set(s string) error {
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return fmt.Errorf("not a quantity (e.g. 512Mi): %w", err)
	}
	*b.v = q.Value()
	return nil
}

func (b *bytesFlag) Type() string { return "quantity" }
