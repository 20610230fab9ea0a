package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/skiffhq/skiff/addons/logging/shipper"
	"github.com/skiffhq/skiff/nodeagent/agent"
	"github.com/skiffhq/skiff/nodeagent/bootstrap"
	"github.com/skiffhq/skiff/nodeagent/crilog"
	"github.com/skiffhq/skiff/nodeagent/runtime"
	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/rest"
)

// realAgentFlags are the flags of `skiff agent --runtime containerd`.
type realAgentFlags struct {
	dataDir, nodeName, nodeIP, endpoint, clusterCIDR, podCIDR, clusterDNS, podLogDir string
	certFile, keyFile, clientCAFile, proxyMode                                       string
	serviceCIDR, bridge                                                              string
	egressCIDRs                                                                      []string
	port, containerLogMaxFiles                                                       int
	containerLogMaxSize                                                              string
	logsURL, logsAPIKey, logsUser, logsPassword, logsCAFile                          string
	logsHeaders                                                                      []string
	logsSetup                                                                        bool
	logsRetention                                                                    time.Duration
	podCIDRWait                                                                      time.Duration
	imageGCHigh, imageGCLow                                                          int
	podMaxPids                                                                       int64
	imageMinGCAge                                                                    time.Duration
}

func (f *realAgentFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.dataDir, "data-dir", "/var/lib/skiff", "data folder; the agent keeps its state in <data-dir>/agent and imports <data-dir>/agent/images/*.tar at start")
	fl.StringVar(&f.nodeName, "node-name", "", "node name (default: the hostname)")
	fl.StringVar(&f.nodeIP, "node-ip", "", "InternalIP to advertise (default: this machine's first global address)")
	fl.StringVar(&f.endpoint, "container-runtime-endpoint", runtime.DefaultAddress, "containerd socket")
	fl.StringVar(&f.clusterCIDR, "cluster-cidr", agent.DefaultClusterCIDR, "cluster pod range; without a node podCIDR the agent takes its first /24")
	fl.StringVar(&f.podCIDR, "pod-cidr", "", "this node's pod range (overrides the node's spec.podCIDR)")
	fl.DurationVar(&f.podCIDRWait, "pod-cidr-wait", 30*time.Second, "without --pod-cidr, how long to wait for the node IPAM controller to assign spec.podCIDR before taking the cluster CIDR's first /24 (0: do not wait)")
	fl.StringVar(&f.serviceCIDR, "service-cidr", agent.DefaultServiceCIDR, "service ClusterIP range (blackholed like the cluster CIDR)")
	fl.StringSliceVar(&f.egressCIDRs, "pod-egress-cidrs", nil, "destinations outside the cluster CIDR that pods may reach, masqueraded to the node IP (e.g. 0.0.0.0/0; default none)")
	fl.StringVar(&f.bridge, "bridge", "", "Linux bridge of the pod network (default skiff0)")
	fl.StringVar(&f.clusterDNS, "cluster-dns", agent.DefaultClusterDNS, "nameserver written into ClusterFirst pods' resolv.conf")
	fl.StringVar(&f.podLogDir, "pod-log-dir", agent.DefaultPodLogDir, "where CRI-format container logs are written")
	fl.StringVar(&f.containerLogMaxSize, "container-log-max-size", "10Mi", "rotate a container's log file at this size (kubelet's containerLogMaxSize; -1 never rotates)")
	fl.IntVar(&f.containerLogMaxFiles, "container-log-max-files", crilog.DefaultMaxFiles, "log files kept per container, the current one included (kubelet's containerLogMaxFiles)")
	fl.StringVar(&f.logsURL, "logs-elasticsearch-url", "", "Elasticsearch-compatible API the log shipper sends container logs to (default: the API server's embedded store, <server>/logs, as this node; an explicit empty string disables shipping)")
	fl.StringVar(&f.logsAPIKey, "logs-elasticsearch-api-key", "", "API key (base64 id:key) for --logs-elasticsearch-url")
	fl.StringVar(&f.logsUser, "logs-elasticsearch-username", "", "basic auth user for --logs-elasticsearch-url")
	fl.StringVar(&f.logsPassword, "logs-elasticsearch-password", "", "basic auth password for --logs-elasticsearch-url (or SKIFF_LOGS_ELASTICSEARCH_PASSWORD)")
	fl.StringVar(&f.logsCAFile, "logs-elasticsearch-ca-file", "", "CA bundle that verifies --logs-elasticsearch-url")
	fl.StringArrayVar(&f.logsHeaders, "logs-elasticsearch-header", nil, "extra request header Name:Value for the log sink, repeatable (VictoriaLogs: VL-Time-Field:@timestamp)")
	fl.BoolVar(&f.logsSetup, "logs-elasticsearch-setup", true, "at start, put the index template and ILM policy "+shipper.SetupName+" on --logs-elasticsearch-url (data streams logs-kubernetes-*, flattened labels); a sink that refuses them is shipped to without")
	fl.DurationVar(&f.logsRetention, "logs-elasticsearch-retention", 7*24*time.Hour, "with --logs-elasticsearch-setup: delete log indices this long after their rollover (0: keep)")
	fl.StringVar(&f.proxyMode, "proxy-mode", agent.ProxyModeNFTables, "service proxy: nftables, userspace (listening sockets, for kernels without nftables) or none")
	fl.IntVar(&f.port, "port", agent.DefaultPort, "HTTPS port of the agent's API (container logs)")
	fl.StringVar(&f.certFile, "tls-cert-file", "", "serving certificate of the agent's API, issued by the cluster CA (default: for an agent that joined with --token, one issued through a kubelet-serving CSR and renewed; otherwise self-signed, which the API server cannot verify)")
	fl.StringVar(&f.keyFile, "tls-private-key-file", "", "key of --tls-cert-file")
	fl.StringVar(&f.clientCAFile, "client-ca-file", "", "CA bundle that verifies callers of the agent's API (the cluster CA; default for an agent that joined with --token: the CA its join verified)")
	fl.Int64Var(&f.podMaxPids, "pod-max-pids", agent.DefaultPodPidsLimit, "processes and threads each container may have (its pids cgroup; -1: no bound)")
	fl.IntVar(&f.imageGCHigh, "image-gc-high-threshold", agent.DefaultImageGCHighThresholdPercent, "percent of the image filesystem's capacity at which image garbage collection starts (100 disables it)")
	fl.IntVar(&f.imageGCLow, "image-gc-low-threshold", agent.DefaultImageGCLowThresholdPercent, "percent of the image filesystem's capacity image garbage collection frees down to")
	fl.DurationVar(&f.imageMinGCAge, "image-minimum-gc-age", agent.DefaultImageMinimumGCAge, "minimum age of an unused image before it is garbage collected")
}

func runContainerdAgent(cmd *cobra.Command, kubeconfig, token string, servers []string, f realAgentFlags) error {
	// No heap profiler in a process that only runs the agent (unless
	// GODEBUG asks for one).
	agent.QuietMemProfiler()
	if kubeconfig == "" {
		// Join with a node token, or use the kubeconfig an earlier join
		// wrote: a credential for system:node:<name> in system:nodes.
		name := f.nodeName
		if name == "" {
			h, err := os.Hostname()
			if err != nil {
				return fmt.Errorf("node name: %w", err)
			}
			name = strings.ToLower(h)
		}
		first := ""
		if len(servers) > 0 {
			first = servers[0]
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
		path, err := bootstrap.Join(ctx, filepath.Join(f.dataDir, "agent"), first, token, name)
		cancel()
		if err != nil {
			return err
		}
		kubeconfig = path
		f.nodeName = name
	}
	rc, err := agentClientConfig(cmd.Context(), kubeconfig, servers)
	if err != nil {
		return err
	}
	dir := filepath.Join(f.dataDir, "agent")
	joined := f.nodeName != "" && bootstrap.Joined(dir, kubeconfig)
	if joined {
		// Credentials of a join are the agent's own to renew.
		r := &bootstrap.Renewer{Dir: dir, Node: f.nodeName, Config: rest.CopyConfig(rc), Logger: slog.Default()}
		go r.Run(cmd.Context())
	}
	opts := agent.Options{
		NodeName: f.nodeName, NodeIP: f.nodeIP, StateDir: filepath.Join(f.dataDir, "agent"),
		PodLogDir: f.podLogDir, ContainerdAddress: f.endpoint, ClusterCIDR: f.clusterCIDR, PodCIDR: f.podCIDR, PodCIDRWait: f.podCIDRWait,
		ClusterDNS: f.clusterDNS, Port: f.port, Logger: slog.Default(), ProxyMode: f.proxyMode,
		ServiceCIDR: f.serviceCIDR, EgressCIDRs: f.egressCIDRs, Bridge: f.bridge,
		ImageGC:      agent.ImageGCPolicy{HighThresholdPercent: f.imageGCHigh, LowThresholdPercent: f.imageGCLow, MinAge: f.imageMinGCAge},
		PodPidsLimit: f.podMaxPids,
	}
	if f.containerLogMaxSize != "" {
		q, err := resource.ParseQuantity(f.containerLogMaxSize)
		if err != nil {
			return fmt.Errorf("--container-log-max-size: %w", err)
		}
		opts.ContainerLogMaxSize = q.Value()
	}
	if f.containerLogMaxFiles < 2 {
		return fmt.Errorf("--container-log-max-files %d: must be at least 2", f.containerLogMaxFiles)
	}
	opts.ContainerLogMaxFiles = f.containerLogMaxFiles
	if opts.Logs, err = f.logsOptions(cmd); err != nil {
		return err
	}
	if f.certFile != "" || f.keyFile != "" {
		cert, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
		if err != nil {
			return fmt.Errorf("--tls-cert-file: %w", err)
		}
		opts.ServingCert = &cert
	}
	if f.clientCAFile != "" {
		b, err := os.ReadFile(f.clientCAFile)
		if err != nil {
			return fmt.Errorf("--client-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return fmt.Errorf("--client-ca-file %s holds no certificate", f.clientCAFile)
		}
		opts.ClientCAs = pool
	}
	if joined && (opts.ServingCert == nil || opts.ClientCAs == nil) {
		// A joined agent trusts the cluster CA its join verified: it
		// checks the API server's client certificate with it and gets its
		// serving certificate from it.
		pool, err := kubeconfigCA(rc)
		if err != nil {
			return err
		}
		if opts.ClientCAs == nil {
			opts.ClientCAs = pool
		}
		if opts.ServingCert == nil {
			s := &bootstrap.Serving{Dir: dir, Node: f.nodeName, Config: rest.CopyConfig(rc), Roots: pool, Logger: slog.Default()}
			if err := s.Start(cmd.Context()); err != nil {
				return err
			}
			opts.GetServingCertificate = s.GetCertificate
		}
	}
	a, err := agent.Start(cmd.Context(), rc, opts)
	if err != nil {
		return err
	}
	slog.Info("node agent running", "node", a.NodeName(), "api", a.APIAddress())
	// A smaller heap goal, and the executable pages start-up touched given
	// back: the agent runs a small part of the binary.
	agent.TuneProcess(cmd.Context(), slog.Default())
	<-cmd.Context().Done()
	a.Stop()
	return nil
}

// logsOptions turns the --logs-elasticsearch-* flags into the shipper's
// options: unset URL = the embedded store, explicit empty = disabled.
func (f *realAgentFlags) logsOptions(cmd *cobra.Command) (agent.LogsOptions, error) {
	lo := agent.LogsOptions{ElasticsearchURL: f.logsURL, APIKey: f.logsAPIKey, Username: f.logsUser, Password: f.logsPassword}
	if cmd.Flags().Changed("logs-elasticsearch-url") && f.logsURL == "" {
		return agent.LogsOptions{Disabled: true}, nil
	}
	if lo.Password == "" {
		lo.Password = os.Getenv("SKIFF_LOGS_ELASTICSEARCH_PASSWORD")
	}
	if f.logsURL != "" && f.logsSetup {
		if f.logsRetention < 0 {
			return lo, fmt.Errorf("--logs-elasticsearch-retention %v: must not be negative", f.logsRetention)
		}
		lo.Setup = &shipper.Setup{Retention: f.logsRetention}
	}
	if f.logsCAFile != "" {
		b, err := os.ReadFile(f.logsCAFile)
		if err != nil {
			return lo, fmt.Errorf("--logs-elasticsearch-ca-file: %w", err)
		}
		lo.CACert = b
	}
	for _, h := range f.logsHeaders {
		k, v, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return lo, fmt.Errorf("--logs-elasticsearch-header %q: want Name:Value", h)
		}
		if lo.Header == nil {
			lo.Header = http.Header{}
		}
		lo.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return lo, nil
}

// kubeconfigCA is the CA that verifies the API server in rc.
func kubeconfigCA(rc *rest.Config) (*x509.CertPool, error) {
	b := rc.TLSClientConfig.CAData
	if len(b) == 0 && rc.TLSClientConfig.CAFile != "" {
		var err error
		if b, err = os.ReadFile(rc.TLSClientConfig.CAFile); err != nil {
			return nil, fmt.Errorf("cluster CA: %w", err)
		}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("the agent's kubeconfig names no cluster CA")
	}
	return pool, nil
}
