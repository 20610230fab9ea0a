package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// joinEnv names the environment variables `skiff server` and `skiff agent`
// read when --server or --token is not on the command line. The systemd
// units of deploy/install.sh keep the join URL and token in a 0600
// environment file, not on the command line, which any local user can
// read in /proc/<pid>/cmdline.
var joinEnv = [][2]string{{"server", "SKIFF_URL"}, {"token", "SKIFF_TOKEN"}}

// flagsFromEnv sets each flag of vars that the command line did not give
// from its environment variable, when that is not empty.
func flagsFromEnv(cmd *cobra.Command, vars [][2]string) error {
	for _, fv := range vars {
		name, env := fv[0], fv[1]
		v := os.Getenv(env)
		if v == "" || cmd.Flags().Changed(name) {
			continue
		}
		if err := cmd.Flags().Set(name, v); err != nil {
			return fmt.Errorf("%s (for --%s): %w", env, name, err)
		}
	}
	return nil
}
