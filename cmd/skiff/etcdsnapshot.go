package main

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/skiffhq/skiff/controlplane/etcdclient"
	"github.com/skiffhq/skiff/controlplane/etcdsnapshot"
	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcdFlags say how an operator command reaches the server's etcd: the
// record the server wrote in its data dir, unless --etcd-endpoint is given.
type etcdFlags struct {
	dataDir                  string
	endpoints                []string
	caFile, certFile, keyFil string
}

func (f *etcdFlags) register(cmd *cobra.Command) {
	fl := cmd.PersistentFlags()
	fl.StringVar(&f.dataDir, "data-dir", "/var/lib/skiff", "the server's data directory")
	fl.StringSliceVar(&f.endpoints, "etcd-endpoint", nil, "etcd endpoints (default: the ones the server recorded in <data-dir>/"+etcdclient.File+")")
	fl.StringVar(&f.caFile, "etcd-cafile", "", "CA of --etcd-endpoint")
	fl.StringVar(&f.certFile, "etcd-certfile", "", "client certificate for --etcd-endpoint")
	fl.StringVar(&f.keyFil, "etcd-keyfile", "", "client key for --etcd-endpoint")
}

func (f *etcdFlags) connect(cmd *cobra.Command) (*clientv3.Client, error) {
	info := etcdclient.Info{Endpoints: f.endpoints, CAFile: f.caFile, CertFile: f.certFile, KeyFile: f.keyFil}
	if len(f.endpoints) == 0 {
		var err error
		if info, err = etcdclient.Read(f.dataDir); err != nil {
			return nil, err
		}
	}
	return info.Connect(cmd.Context())
}

func etcdSnapshotCmd() *cobra.Command {
	var ef etcdFlags
	var dir string
	snapDir := func() string {
		if dir != "" {
			return dir
		}
		return filepath.Join(ef.dataDir, etcdsnapshot.DefaultDir)
	}
	cmd := &cobra.Command{
		Use:   "etcd-snapshot",
		Short: "Save, list, prune and restore snapshots of the server's etcd",
		Long: `Snapshots of the cluster state, as k3s's etcd-snapshot.

A snapshot is two files in --dir (default <data-dir>/snapshots):
<name>-<unix time>.db, etcd's backend image taken from the running etcd through its
maintenance API (with etcd's integrity hash), and <name>-<unix time>.credentials.tar.gz,
the server's tls/ and cred/ directories (cluster CA and keys, service account key,
Secrets encryption keys). Both are mode 0600 and hold every Secret: store them as such.

"restore" writes a fresh data directory; start "skiff server --data-dir NEW" on it.`,
	}
	ef.register(cmd)
	cmd.PersistentFlags().StringVar(&dir, "dir", "", "snapshot directory (default <data-dir>/snapshots)")

	var name string
	save := &cobra.Command{
		Use:   "save",
		Short: "Take a snapshot from the running server's etcd",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cli, err := ef.connect(cmd)
			if err != nil {
				return err
			}
			defer cli.Close()
			s, err := etcdsnapshot.Save(cmd.Context(), cli, ef.dataDir, snapDir(), name, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "saved snapshot %s (%d bytes) to %s\n", s.Name, s.Size, s.Path)
			return nil
		},
	}
	save.Flags().StringVar(&name, "name", "on-demand", "snapshot name prefix (the file is <name>-<unix time>.db)")

	var output string
	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List snapshots, newest first",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			snaps, err := etcdsnapshot.List(snapDir())
			if err != nil {
				return err
			}
			return printSnapshots(cmd.OutOrStdout(), snaps, output)
		},
	}
	ls.Flags().StringVarP(&output, "output", "o", "table", "table or json")

	var keep int
	var prefix string
	prune := &cobra.Command{
		Use:   "prune",
		Short: "Delete all but the newest --snapshot-retention snapshots named --name",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			deleted, err := etcdsnapshot.Prune(snapDir(), prefix, keep)
			for _, d := range deleted {
				fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", d.Path)
			}
			return err
		},
	}
	prune.Flags().IntVar(&keep, "snapshot-retention", 5, "how many to keep")
	prune.Flags().StringVar(&prefix, "name", "on-demand", "name prefix of the snapshots to prune (etcd-snapshot for scheduled ones)")

	var ro etcdsnapshot.RestoreOptions
	restore := &cobra.Command{
		Use:   "restore",
		Short: "Write a fresh --data-dir from a snapshot (no server may run on it)",
		Long: `Restore writes <--data-dir>/db/etcd (which must not exist yet) from the snapshot with etcd's own restore
logic (integrity hash checked; a new single-member cluster; object revisions, and so
resourceVersions, kept) and unpacks the snapshot's credentials archive into the new
data directory. Then start: skiff server --data-dir <that directory>.

By default the revision is raised by 1,000,000,000 and older revisions are marked
compacted, as the Kubernetes restore guide recommends: clients still watching the
old cluster relist instead of waiting for revisions that never come.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ro.DataDir = ef.dataDir
			if err := etcdsnapshot.Restore(ro); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restored %s into %s; start it with: skiff server --data-dir %s\n", ro.Snapshot, ro.DataDir, ro.DataDir)
			return nil
		},
	}
	restore.Flags().StringVar(&ro.Snapshot, "snapshot", "", "the snapshot's .db file")
	restore.Flags().StringVar(&ro.Credentials, "credentials", "", "credentials archive (default: the snapshot's .credentials.tar.gz)")
	restore.Flags().StringVar(&ro.PeerURL, "peer-url", "", "peer URL of the restored member (default http://127.0.0.1:2380)")
	restore.Flags().Uint64Var(&ro.RevisionBump, "bump-revision", 1_000_000_000, "raise etcd's revision by this much and mark older ones compacted (0 = off)")
	_ = restore.MarkFlagRequired("snapshot")
	cmd.AddCommand(save, ls, prune, restore)
	return cmd
}

func printSnapshots(w io.Writer, snaps []etcdsnapshot.Snapshot, output string) error {
	switch strings.ToLower(output) {
	case "json":
		if snaps == nil {
			snaps = []etcdsnapshot.Snapshot{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(snaps)
	case "table", "":
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSIZE\tCREATED\tCREDENTIALS\tLOCATION")
		for _, s := range snaps {
			creds := "yes"
			if s.Credentials == "" {
				creds = "missing"
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", s.Name, s.Size, s.Created.UTC().Format(time.RFC3339), creds, s.Path)
		}
		return tw.Flush()
	default:
		return fmt.Errorf("--output %q: table or json", output)
	}
}
