package main

import (
	"fmt"

	"github.com/skiffhq/skiff/nodeagent/runtime"
	"github.com/spf13/cobra"
)

// imagesCmd is `skiff images`: the node's image store in containerd
// (namespace skiff), filled without a registry.
func imagesCmd() *cobra.Command {
	var endpoint string
	cmd := &cobra.Command{Use: "images", Short: "Manage the node's container images (containerd namespace skiff)"}
	cmd.PersistentFlags().StringVar(&endpoint, "container-runtime-endpoint", runtime.DefaultAddress, "containerd socket")
	imp := &cobra.Command{
		Use:   "import FILE.tar...",
		Short: "Import docker-archive or OCI tarballs into the node's image store",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rt, err := runtime.New(cmd.Context(), runtime.Options{Address: endpoint})
			if err != nil {
				return err
			}
			defer rt.Close()
			for _, f := range args {
				names, err := rt.ImportFile(cmd.Context(), f)
				if err != nil {
					return err
				}
				for _, n := range names {
					fmt.Fprintf(cmd.OutOrStdout(), "imported %s\n", n)
				}
			}
			return nil
		},
	}
	cmd.AddCommand(imp)
	return cmd
}
