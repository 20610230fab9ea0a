package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

// TestProxyModeFlag: an unknown --proxy-mode stops `skiff server` and
// `skiff agent` at once with a message naming the flag and the choices.
func TestProxyModeFlag(t *testing.T) {
	for name, args := range map[string][]string{
		"server": {"--proxy-mode", "ipvs", "--data-dir", t.TempDir()},
		"agent":  {"--proxy-mode", "ipvs", "--data-dir", t.TempDir()},
	} {
		cmd := serverCmd()
		if name == "agent" {
			cmd = agentCmd()
		}
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		cmd.SetArgs(args)
		err := cmd.ExecuteContext(context.Background())
		if err == nil || !strings.Contains(err.Error(), `--proxy-mode: unknown proxy mode "ipvs" (nftables, userspace or none)`) {
			t.Errorf("skiff %s --proxy-mode ipvs: %v", name, err)
		}
	}
}
