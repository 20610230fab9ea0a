// Command skiff-bench runs benchmarks against a Kubernetes-compatible
// cluster. Each benchmark prints one JSON object.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	root := &cobra.Command{
		Use:           "skiff-bench",
		Short:         "Benchmarks for Skiff and other Kubernetes-compatible servers",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(benchCommands()...)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "skiff-bench:", err)
		os.Exit(1)
	}
}
