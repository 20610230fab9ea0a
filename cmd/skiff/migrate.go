package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/skiffhq/skiff/controlplane/encryption"
	"github.com/skiffhq/skiff/migrations"
	"github.com/spf13/cobra"
)

func migrateCmd() *cobra.Command {
	var ef etcdFlags
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Run pending migrations of stored state (the server runs them at start too)",
		Long: `Run the migrations of stored state that have not run yet, in order, under a lock in
etcd, so this command and servers starting at the same time never run one twice. An
interrupted migration resumes from its checkpoint. A migration that does not apply yet
(the Secrets rewrite without --secrets-encryption) stays pending.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel func()
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			r, closeFn, err := migrationRunner(cmd, &ef)
			if err != nil {
				return err
			}
			defer closeFn()
			done, err := r.Run(ctx)
			for _, n := range done {
				fmt.Fprintf(cmd.OutOrStdout(), "ran %s\n", n)
			}
			if err == nil && len(done) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "nothing to run")
			}
			return err
		},
	}
	ef.register(cmd)
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (0 = never)")
	var output string
	status := &cobra.Command{
		Use:   "status",
		Short: "List migrations: pending, running (interrupted), failed or done",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			r, closeFn, err := migrationRunner(cmd, &ef)
			if err != nil {
				return err
			}
			defer closeFn()
			recs, err := r.Status(cmd.Context())
			if err != nil {
				return err
			}
			return printMigrations(cmd.OutOrStdout(), recs, output)
		},
	}
	status.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	cmd.AddCommand(status)
	return cmd
}

// migrationRunner connects to the server's etcd and loads the Secrets
// encryption configuration of its data dir, if any.
func migrationRunner(cmd *cobra.Command, ef *etcdFlags) (*migrations.Runner, func(), error) {
	env := migrations.Env{}
	c, err := encryption.LoadConfig(filepath.Join(ef.dataDir, encryption.ConfigFile))
	switch {
	case err == nil:
		t, err := encryption.New(c)
		if err != nil {
			return nil, nil, err
		}
		env.Encryption = migrations.FromEncryption(t)
	case !errors.Is(err, os.ErrNotExist):
		return nil, nil, err
	}
	cli, err := ef.connect(cmd)
	if err != nil {
		return nil, nil, err
	}
	env.Etcd = cli
	host, _ := os.Hostname()
	return &migrations.Runner{Env: env, Holder: "skiff-migrate@" + host}, func() { cli.Close() }, nil
}

func printMigrations(w io.Writer, recs []migrations.Record, output string) error {
	switch output {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(recs)
	case "table", "":
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSTATUS\tRUNS\tSTARTED\tFINISHED\tCHECKPOINT\tERROR")
		ts := func(t time.Time) string {
			if t.IsZero() {
				return "-"
			}
			return t.UTC().Format(time.RFC3339)
		}
		for _, r := range recs {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", r.Name, r.Status, r.Runs, ts(r.Started), ts(r.Finished), r.Checkpoint, r.Error)
		}
		return tw.Flush()
	default:
		return fmt.Errorf("--output %q: table or json", output)
	}
}
