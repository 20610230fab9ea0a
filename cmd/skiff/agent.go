package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/skiffhq/skiff/internal/memtrim"
	"github.com/skiffhq/skiff/nodeagent/agent"
	"github.com/skiffhq/skiff/nodeagent/failover"
	"github.com/skiffhq/skiff/nodeagent/hollow"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

func agentCmd() *cobra.Command {
	var (
		runtime, kubeconfig, token, labels, taints string
		servers                                    []string
		opts                                       hollow.Options
		real                                       realAgentFlags
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a node agent: real pods on containerd, or hollow nodes with --runtime fake",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := flagsFromEnv(cmd, joinEnv); err != nil {
				return err
			}
			switch runtime {
			case "containerd":
				if err := agent.ValidateProxyMode(real.proxyMode); err != nil {
					return fmt.Errorf("--proxy-mode: %w", err)
				}
				return runContainerdAgent(cmd, kubeconfig, token, servers, real)
			case "fake":
			default:
				return fmt.Errorf("--runtime %q: must be containerd or fake", runtime)
			}
			if token != "" {
				return errors.New("--token joins a real node; hollow nodes use --kubeconfig")
			}
			if opts.Nodes <= 0 {
				return errors.New("--hollow-nodes must be at least 1 with --runtime fake")
			}
			rc, err := agentClientConfig(cmd.Context(), kubeconfig, servers)
			if err != nil {
				return err
			}
			rc.QPS, rc.Burst = -1, 0
			if opts.Labels, err = parseLabels(labels); err != nil {
				return err
			}
			if opts.Taints, err = parseTaints(taints); err != nil {
				return err
			}
			opts.Logger = slog.Default()
			c, err := hollow.Start(cmd.Context(), rc, opts)
			if err != nil {
				return err
			}
			slog.Info("hollow nodes running", "nodes", opts.Nodes, "prefix", opts.NamePrefix)
			go memtrim.ReleaseAfter(cmd.Context(), 10*time.Second, slog.Default(), true)
			<-cmd.Context().Done()
			c.Stop()
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&runtime, "runtime", "containerd", "container runtime: containerd runs real pods, fake runs hollow nodes")
	f.StringSliceVar(&servers, "server", nil, "API server URLs, comma-separated: the first replaces the kubeconfig's server, the others are where the agent fails over to (it also learns every server the default/kubernetes Endpoints list; default $SKIFF_URL)")
	real.register(cmd)
	f.IntVar(&opts.Nodes, "hollow-nodes", 0, "number of hollow nodes to run with --runtime fake")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the cluster to join (default: <data-dir>/agent/kubeconfig, written by a join with --token)")
	f.StringVar(&token, "token", "", "node join token (`skiff token create`: SK10<ca hash>::<id>.<secret>) to join the cluster of --server with; used once, the node's own credentials are kept in <data-dir>/agent/kubeconfig; default $SKIFF_TOKEN")
	f.StringVar(&opts.NamePrefix, "node-name-prefix", "hollow-node-", "hollow nodes are named <prefix><index>")
	f.StringVar(&opts.CPU, "node-cpu", "4", "CPU capacity of each hollow node")
	f.StringVar(&opts.Memory, "node-memory", "16Gi", "memory capacity of each hollow node")
	f.StringVar(&opts.Pods, "node-pods", "110", "pod capacity of each hollow node")
	f.StringVar(&labels, "node-labels", "", "extra node labels, key=value,...")
	f.StringVar(&taints, "node-taints", "", "node taints, key=value:Effect,...")
	f.DurationVar(&opts.LeaseInterval, "lease-interval", 0, "how often node Leases are renewed (default 10s)")
	return cmd
}

func parseLabels(s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--node-labels: %q is not key=value", kv)
		}
		out[k] = v
	}
	return out, nil
}

func parseTaints(s string) ([]corev1.Taint, error) {
	if s == "" {
		return nil, nil
	}
	var out []corev1.Taint
	for _, t := range strings.Split(s, ",") {
		kv, effect, ok := strings.Cut(strings.TrimSpace(t), ":")
		if !ok {
			return nil, fmt.Errorf("--node-taints: %q has no :Effect", t)
		}
		k, v, _ := strings.Cut(kv, "=")
		e := corev1.TaintEffect(effect)
		if e != corev1.TaintEffectNoSchedule && e != corev1.TaintEffectPreferNoSchedule && e != corev1.TaintEffectNoExecute {
			return nil, fmt.Errorf("--node-taints: effect %q is not NoSchedule, PreferNoSchedule or NoExecute", effect)
		}
		out = append(out, corev1.Taint{Key: k, Value: v, Effect: e})
	}
	return out, nil
}

// Failover timing of an agent's API connection: the current server's
// /readyz every healthInterval (two failures in a row move to another
// server), the server list from default/kubernetes every learnInterval.
const (
	healthInterval = 2 * time.Second
	learnInterval  = 10 * time.Second
)

// agentClientConfig loads the agent's kubeconfig, points it at the first
// of servers (when given) and makes every connection fail over across the
// servers: those given, then those the cluster lists. The balancer runs
// until ctx ends.
func agentClientConfig(ctx context.Context, kubeconfig string, servers []string) (*rest.Config, error) {
	if kubeconfig == "" {
		return nil, errors.New("--kubeconfig is required")
	}
	first := ""
	if len(servers) > 0 {
		first = servers[0]
	}
	rc, err := clientcmd.BuildConfigFromFlags(first, kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	var others []string
	if len(servers) > 1 {
		others = servers[1:]
	}
	b, err := failover.Configure(rc, others, slog.Default())
	if err != nil {
		return nil, fmt.Errorf("--server: %w", err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	go b.Run(ctx, healthInterval, failover.Learner(cs), learnInterval)
	return rc, nil
}
