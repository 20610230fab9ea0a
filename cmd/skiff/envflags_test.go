package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

// TestJoinFlagsFromEnvironment: SKIFF_URL and SKIFF_TOKEN stand in for
// --server and --token (the install script's units keep them in an
// environment file); a flag on the command line wins.
func TestJoinFlagsFromEnvironment(t *testing.T) {
	run := func(agent bool, args ...string) error {
		t.Helper()
		cmd := serverCmd()
		if agent {
			cmd = agentCmd()
		}
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		args = append(args, "--data-dir", t.TempDir())
		if !agent {
			// Should the environment not be read, the server fails on
			// this, which it checks after --server and --token, rather
			// than start for real on this machine.
			args = append(args, "--proxy-mode", "ipvs")
		}
		cmd.SetArgs(args)
		return cmd.ExecuteContext(context.Background())
	}
	want := func(err error, msg string) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("error %v, want one containing %q", err, msg)
		}
	}

	// The token alone: the server sees it and wants a URL with it.
	t.Setenv("SKIFF_TOKEN", "SK10abc::server:def")
	want(run(false), "--server (or SKIFF_URL) and --token (or SKIFF_TOKEN) go together")
	// Both: a join, which --cluster-init contradicts.
	t.Setenv("SKIFF_URL", "https://127.0.0.1:1")
	want(run(false, "--cluster-init"), "--cluster-init starts a cluster, --server joins one")
	// The agent parses the environment's token; --token on the command
	// line, even empty, replaces it.
	want(run(true, "--node-name", "n1"), "--token: not a node join token")
	want(run(true, "--node-name", "n1", "--token", ""), "no kubeconfig: give --kubeconfig, or --server and --token to join")
	want(run(true, "--runtime", "fake", "--hollow-nodes", "1"), "--token joins a real node")
	// An empty variable is as if unset.
	t.Setenv("SKIFF_URL", "")
	want(run(false), "--server (or SKIFF_URL) and --token (or SKIFF_TOKEN) go together")
}
