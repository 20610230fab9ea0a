package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/skiffhq/skiff/internal/chaos"
	"github.com/skiffhq/skiff/internal/harness"
	"github.com/skiffhq/skiff/internal/multinode"
	"github.com/spf13/cobra"
)

func chaosCommand() *cobra.Command {
	var (
		bin, dataDir       string
		duration           time.Duration
		faultMin, faultMax time.Duration
		workers, keys      int
		hollow, deps       int
		seed               uint64
		realPods           bool
		instance           int
	)
	cmd := &cobra.Command{
		Use:   "chaos",
		Short: "fault injection: API writes with a ledger while the server is SIGKILLed at random moments",
		Long: `Runs ` + "`skiff server`" + ` (from --skiff-bin) on a fresh data directory and
drives ConfigMap creates, updates and deletes from --workers workers, each
owning --keys keys, recording every write the server acknowledged. At
random moments between --fault-min and --fault-max the server is killed
with SIGKILL and started again on the same directory; so is the hollow
node agent, while Deployments on its nodes are scaled and rolled. Writes whose answer
was lost are settled by reading them back. At the end every key is
checked: an acknowledged write must be there with its value, and nothing
may be there that nobody wrote; every Deployment must converge with
exactly its replicas.

Then, with --real-pods (root, containerd, busybox-static, ip, nsenter
and nft needed; skipped and said so otherwise), the real-pod run of the
fault suite (internal/chaos RunPods, also e2e TestChaosRealPods): three
HA servers and two agents, each in a network namespace of multinode
instance --instance, on a containerd of their own, with a Deployment
behind an ingress and DNS on each node and numbered log lines shipped to a
log store; each agent, containerd and one server with its etcd member
are killed in turn. Then failed requests and queries, log lines lost,
acknowledged writes lost, pods replaced or restarted, and what is left of
the pods on the nodes after their deletion are counted (real_pods).

Prints one JSON object; operations_lost, log_lines_lost and
leaked_resources must be 0. Exits non-zero when a promise is broken.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if bin == "" {
				return errors.New("chaos: --skiff-bin is needed (build bin/skiff)")
			}
			dir := dataDir
			if dir == "" {
				d, err := os.MkdirTemp("", "skiff-chaos-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(d)
				dir = d
			}
			srv := &chaos.Server{Proc: chaos.Proc{Bin: bin}, DataDir: filepath.Join(dir, "server")}
			defer srv.Stop()
			if seed == 0 {
				seed = uint64(time.Now().UnixNano())
			}
			rep, err := chaos.Run(cmd.Context(), chaos.Config{Server: srv, Duration: duration, FaultMin: faultMin, FaultMax: faultMax,
				Workers: workers, KeysPerWorker: keys, Seed: seed,
				HollowNodes: hollow, Deployments: deps, AgentDataDir: filepath.Join(dir, "agent")})
			if err == nil && realPods {
				err = addRealPods(cmd.Context(), rep, bin, instance)
			}
			if rep != nil {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				_ = enc.Encode(rep)
			}
			if err != nil {
				return fmt.Errorf("chaos: %w; server log tail:\n%s", err, srv.LogTail(3000))
			}
			if !rep.MeetsPromises {
				return fmt.Errorf("chaos: promises broken: %s", strings.Join(rep.Violations, "; "))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&bin, "skiff-bin", defaultServerBin(), "skiff binary to run as the server")
	f.StringVar(&dataDir, "data-dir", "", "server data directory (default: a new temporary one)")
	f.DurationVar(&duration, "duration", time.Minute, "length of the load, faults included")
	f.DurationVar(&faultMin, "fault-min", 3*time.Second, "shortest wait between faults")
	f.DurationVar(&faultMax, "fault-max", 10*time.Second, "longest wait between faults")
	f.IntVar(&workers, "workers", 8, "writers")
	f.IntVar(&keys, "keys", 20, "keys per writer")
	f.IntVar(&hollow, "hollow-nodes", 3, "hollow nodes in a `skiff agent --runtime fake` process, also killed at random (0: no agent, no Deployments)")
	f.IntVar(&deps, "deployments", 4, "Deployments scaled and rolled on the hollow nodes; all must converge after the faults")
	f.Uint64Var(&seed, "seed", 0, "fault timing seed (0: from the clock)")
	f.BoolVar(&realPods, "real-pods", true, "then run the real-pod faults (three HA servers, two agents on containerd) and count log lines lost and leaked resources")
	f.IntVar(&instance, "instance", 15, "multinode instance of the real-pod run: its node network is 10.250.<instance>.0/24")
	return cmd
}

// addRealPods runs chaos.RunPods and adds what it found to rep: its
// faults, writes and broken promises to the totals, log_lines_lost and
// leaked_resources from it alone. When this machine cannot run real pods,
// rep says why and those two stay null.
func addRealPods(ctx context.Context, rep *chaos.Report, bin string, instance int) error {
	var pods *chaos.PodsReport
	err := harness.Run(os.Stderr, func(t harness.T) {
		multinode.Require(t)
		ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
		pods = chaos.RunPods(ctx, t, chaos.PodsConfig{Bin: bin, Instance: instance})
	})
	if errors.Is(err, harness.ErrSkipped) {
		rep.RealPodsSkipped = err.Error()
		rep.LeakAudit = "not run: " + err.Error()
		return nil
	}
	if err != nil {
		return fmt.Errorf("real pods: %w", err)
	}
	rep.AddPods(pods)
	return nil
}
