package main

import (
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
)

// etcdCmd is `skiff etcd member list|remove`: the members of the embedded
// etcd of an HA cluster. A server that leaves the cluster for good is
// removed with `skiff etcd member remove <name>` run on any other server
// (then its data dir is wiped before it may join again).
func etcdCmd() *cobra.Command {
	var ef etcdFlags
	cmd := &cobra.Command{Use: "etcd", Short: "Manage the embedded etcd cluster of HA servers"}
	ef.register(cmd)
	member := &cobra.Command{Use: "member", Short: "List and remove etcd members"}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the etcd members",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cli, err := ef.connect(cmd)
			if err != nil {
				return err
			}
			defer cli.Close()
			resp, err := cli.MemberList(cmd.Context())
			if err != nil {
				return fmt.Errorf("etcd member list: %w", err)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tPEER URLS\tLEARNER")
			for _, m := range resp.Members {
				fmt.Fprintf(tw, "%x\t%s\t%v\t%v\n", m.ID, m.Name, m.PeerURLs, m.IsLearner)
			}
			return tw.Flush()
		},
	}
	remove := &cobra.Command{
		Use:   "remove <name or hex id>",
		Short: "Remove a server's etcd member from the cluster",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cli, err := ef.connect(cmd)
			if err != nil {
				return err
			}
			defer cli.Close()
			resp, err := cli.MemberList(cmd.Context())
			if err != nil {
				return fmt.Errorf("etcd member list: %w", err)
			}
			m := findMember(resp.Members, args[0])
			if m == nil {
				return fmt.Errorf("no etcd member named %q (see `skiff etcd member list`)", args[0])
			}
			if len(resp.Members) == 1 {
				return fmt.Errorf("%s is the only member: removing it would end the cluster", m.Name)
			}
			if _, err := cli.MemberRemove(cmd.Context(), m.ID); err != nil {
				return fmt.Errorf("etcd member remove %s: %w", m.Name, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed etcd member %s (%x)\n", m.Name, m.ID)
			return nil
		},
	}
	member.AddCommand(list, remove)
	cmd.AddCommand(member)
	return cmd
}

func findMember(members []*etcdserverpb.Member, nameOrID string) *etcdserverpb.Member {
	id, idErr := strconv.ParseUint(nameOrID, 16, 64)
	for _, m := range members {
		if m.Name == nameOrID || (idErr == nil && m.ID == id) {
			return m
		}
	}
	return nil
}
