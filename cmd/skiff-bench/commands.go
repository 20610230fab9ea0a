package main

import "github.com/spf13/cobra"

// benchCommands lists the benchmark subcommands.
func benchCommands() []*cobra.Command {
	return []*cobra.Command{apiCommand(), schedulerCommand(), controllersCommand(), ingressCommand(), ingressBackendCommand(), logsStoreCommand(), logsCommand(), logsShipperCommand(), dnsCommand(), proxyCommand(), metricsCommand(), metricsAgentsCommand(), chaosCommand(), podsCommand(), podsAgentCommand(), haCommand(), dashboardCommand(), dashboardBackendCommand()}
}
