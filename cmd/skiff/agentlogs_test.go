package main

import (
	"testing"
	"time"

	"github.com/spf13/cobra"
)

func TestLogsSetupFlags(t *testing.T) {
	parse := func(args ...string) (*realAgentFlags, *cobra.Command) {
		t.Helper()
		f := &realAgentFlags{}
		cmd := &cobra.Command{Use: "agent"}
		f.register(cmd)
		if err := cmd.Flags().Parse(args); err != nil {
			t.Fatal(err)
		}
		return f, cmd
	}
	f, cmd := parse()
	if lo, err := f.logsOptions(cmd); err != nil || lo.Setup != nil {
		t.Fatalf("default sink: setup %+v, err %v; want none (the embedded store)", lo.Setup, err)
	}
	f, cmd = parse("--logs-elasticsearch-url", "https://es:9200")
	if lo, err := f.logsOptions(cmd); err != nil || lo.Setup == nil || lo.Setup.Retention != 7*24*time.Hour {
		t.Fatalf("external sink: setup %+v, err %v; want 7 days' retention", lo.Setup, err)
	}
	f, cmd = parse("--logs-elasticsearch-url", "https://es:9200", "--logs-elasticsearch-retention", "0")
	if lo, err := f.logsOptions(cmd); err != nil || lo.Setup == nil || lo.Setup.Retention != 0 {
		t.Fatalf("retention 0: setup %+v, err %v", lo.Setup, err)
	}
	f, cmd = parse("--logs-elasticsearch-url", "http://vl:9428/insert/elasticsearch", "--logs-elasticsearch-setup=false")
	if lo, err := f.logsOptions(cmd); err != nil || lo.Setup != nil {
		t.Fatalf("setup off: setup %+v, err %v", lo.Setup, err)
	}
	f, cmd = parse("--logs-elasticsearch-url", "https://es:9200", "--logs-elasticsearch-retention", "-1h")
	if _, err := f.logsOptions(cmd); err == nil {
		t.Fatal("a negative retention was accepted")
	}
}
