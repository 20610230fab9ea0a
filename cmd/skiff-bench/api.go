package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/skiffhq/skiff/internal/bench"
	"github.com/skiffhq/skiff/internal/cpuprofile"
	"github.com/spf13/cobra"
)

// apiCommand is `skiff-bench api`.
func apiCommand() *cobra.Command {
	var (
		opts                     bench.Options
		jsonOnly                 bool
		cpuProfile, blockProfile string
	)
	cmd := &cobra.Command{
		Use:   "api",
		Short: "Benchmark the Kubernetes API: create, get, update, LIST, watch fan-out, idle RSS, bad-token flood",
		Long: `Benchmark the Kubernetes API through client-go (JSON, or protobuf
with --content-type protobuf).

With --embedded an in-process Skiff server is started (temporary data
directory, free loopback ports) and every phase is also run as raw etcd
requests against that server's etcd; the result has Skiff / etcd ratios.
With --kubeconfig any Kubernetes-compatible server is measured.

Progress goes to stderr; one JSON object is printed on stdout at the end.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if !jsonOnly {
				opts.Progress = os.Stderr
			} else {
				opts.Progress = io.Discard
			}
			stopProfile, err := cpuprofile.Start(cpuProfile)
			if err != nil {
				return err
			}
			defer stopProfile()
			if blockProfile != "" {
				// Samples blocking of 100µs and more: where a request waits.
				runtime.SetBlockProfileRate(int(100 * time.Microsecond))
				runtime.SetMutexProfileFraction(10)
				defer func() {
					if err := writeProfiles(blockProfile); err != nil {
						fmt.Fprintln(os.Stderr, err)
					}
				}()
			}
			res, err := bench.API(ctx, opts)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(res)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Kubeconfig, "kubeconfig", "", "kubeconfig of the cluster to measure")
	f.BoolVar(&opts.Embedded, "embedded", false, "start an in-process Skiff server and compare with its raw etcd")
	f.IntVar(&opts.Clients, "clients", 8, "parallel clients, each with its own connection")
	f.IntVar(&opts.Objects, "objects", 10000, "pods created for the LIST phase")
	f.IntVar(&opts.Watchers, "watchers", 1000, "watchers of the watch fan-out phase")
	f.IntVar(&opts.WatchConns, "watch-connections", 0, "HTTP/2 connections the watchers share (0 = one per 250 watchers)")
	f.IntVar(&opts.WatchWrites, "watch-writes", 20, "timed writes of the watch fan-out phase")
	f.StringVar(&opts.Namespace, "namespace", "skiff-bench", "namespace of the benchmark objects")
	f.IntVar(&opts.Count, "count", 2000, "operations per round of the create, get and update phases")
	f.DurationVar(&opts.Duration, "duration", 30*time.Second, "time limit of one round of the create, get and update phases")
	f.IntVar(&opts.Rounds, "rounds", 3, "rounds of create, get and update (throughput is their median)")
	f.IntVar(&opts.ListRuns, "list-runs", 5, "timed runs of each LIST")
	f.IntVar(&opts.PageLimit, "page-limit", 500, "page size of the paginated LIST")
	f.IntVar(&opts.FloodRequests, "flood-requests", 10000, "requests with invalid bearer tokens (0 = skip the phase)")
	f.IntVar(&opts.FloodWorkers, "flood-workers", 32, "goroutines sending the invalid requests")
	f.IntVar(&opts.FloodSources, "flood-sources", 64, "loopback source addresses a second flood is spread over, past the per-source throttle (0 = no second flood)")
	f.IntVar(&opts.ServerPID, "server-pid", 0, "with --kubeconfig: server process whose idle RSS to read")
	f.StringVar(&opts.ServerBin, "server-bin", defaultServerBin(), "with --embedded: skiff binary started as a separate `skiff server` for the idle RSS ('' = measure this process)")
	f.StringVar(&opts.ContentType, "content-type", "json", "wire format of the benchmark clients: json or protobuf")
	f.StringSliceVar(&opts.Phases, "phases", nil, "run only these phases: create,get,update,list,watch,flood (default all)")
	f.BoolVar(&jsonOnly, "json-only", false, "print nothing but the JSON result")
	f.StringVar(&blockProfile, "blockprofile", "", "write block and mutex profiles of this process to FILE and FILE.mutex")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of this process (with --embedded: the server too)")
	return cmd
}

func writeProfiles(path string) error {
	for name, file := range map[string]string{"block": path, "mutex": path + ".mutex"} {
		if err := writeProfile(file, name); err != nil {
			return err
		}
	}
	return nil
}

// writeProfile writes the runtime/pprof profile name to file.
func writeProfile(file, name string) error {
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("%s profile: %w", name, err)
	}
	err = pprof.Lookup(name).WriteTo(f, 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s profile: %w", name, err)
	}
	return nil
}

// defaultServerBin is the skiff binary next to this one, if there is one.
func defaultServerBin() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	bin := filepath.Join(filepath.Dir(exe), "skiff")
	if _, err := os.Stat(bin); err != nil {
		return ""
	}
	return bin
}
