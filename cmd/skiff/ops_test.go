package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiffhq/skiff/controlplane/etcdsnapshot"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/migrations"
	"github.com/spf13/cobra"
)

func runCmd(t *testing.T, cmd *cobra.Command, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("%s %v: %v\n%s", cmd.Name(), args, err, out.String())
	}
	return out.String()
}

// TestOperatorCommands runs `skiff etcd-snapshot`, `skiff certificate` and
// `skiff migrate` against a running server's data directory.
func TestOperatorCommands(t *testing.T) {
	ts := testserver.Start(t)
	dir := ts.DataDir

	// etcd-snapshot: the server recorded its endpoint; save, then list.
	out := runCmd(t, etcdSnapshotCmd(), "save", "--data-dir", dir, "--name", "manual")
	if !strings.Contains(out, "saved snapshot manual-") {
		t.Fatalf("save: %s", out)
	}
	var snaps []etcdsnapshot.Snapshot
	if err := json.Unmarshal([]byte(runCmd(t, etcdSnapshotCmd(), "ls", "--data-dir", dir, "-o", "json")), &snaps); err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 1 || snaps[0].Size == 0 || snaps[0].Credentials == "" || filepath.Dir(snaps[0].Path) != filepath.Join(dir, "snapshots") {
		t.Fatalf("ls: %+v", snaps)
	}
	restored := filepath.Join(t.TempDir(), "restored")
	out = runCmd(t, etcdSnapshotCmd(), "restore", "--snapshot", snaps[0].Path, "--data-dir", restored)
	if !strings.Contains(out, "restored") {
		t.Fatalf("restore: %s", out)
	}

	// certificate check lists the CA and the leaves; rotate renews one.
	var certs []certInfo
	if err := json.Unmarshal([]byte(runCmd(t, certificateCmd(), "check", "--data-dir", dir, "-o", "json")), &certs); err != nil {
		t.Fatal(err)
	}
	serial := map[string]string{}
	for _, c := range certs {
		serial[c.Name] = c.Serial
		if !c.CA && (c.DaysLeft < 360 || c.Status != "ok") {
			t.Errorf("%s: %.1f days left, %s", c.Name, c.DaysLeft, c.Status)
		}
	}
	for _, want := range []string{"server-ca", "serving-kube-apiserver", "client-system-admin", "client-system-kube-controller-manager",
		"etcd-ca", "etcd-server", "etcd-peer", "etcd-client-apiserver"} {
		if serial[want] == "" {
			t.Errorf("check does not list %s: %v", want, serial)
		}
	}
	out = runCmd(t, certificateCmd(), "rotate", "--data-dir", dir, "--service", "serving-kube-apiserver", "--service", "etcd-server")
	if !strings.Contains(out, "rotated serving-kube-apiserver") || !strings.Contains(out, "rotated etcd-server") || strings.Contains(out, "client-system-admin") {
		t.Fatalf("rotate: %s", out)
	}
	certs = nil
	if err := json.Unmarshal([]byte(runCmd(t, certificateCmd(), "check", "--data-dir", dir, "-o", "json")), &certs); err != nil {
		t.Fatal(err)
	}
	for _, c := range certs {
		changed := c.Serial != serial[c.Name]
		if changed != (c.Name == "serving-kube-apiserver" || c.Name == "etcd-server") {
			t.Errorf("%s: serial changed %v", c.Name, changed)
		}
	}
	var bad bytes.Buffer
	cmd := certificateCmd()
	cmd.SetOut(&bad)
	cmd.SetErr(&bad)
	cmd.SetArgs([]string{"rotate", "--data-dir", dir, "--service", "nope"})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "no such leaf") {
		t.Errorf("rotate --service nope: %v", err)
	}

	// migrate: the server ran what applies; the Secrets rewrite waits for
	// encryption.
	var recs []migrations.Record
	if err := json.Unmarshal([]byte(runCmd(t, migrateCmd(), "status", "--data-dir", dir, "-o", "json")), &recs); err != nil {
		t.Fatal(err)
	}
	if len(recs) == 0 || recs[0].Name != "0001-secrets-storage-encoding" || recs[0].Status != migrations.StatusPending {
		t.Fatalf("status: %+v", recs)
	}
	if out := runCmd(t, migrateCmd(), "--data-dir", dir); !strings.Contains(out, "nothing to run") {
		t.Fatalf("migrate: %s", out)
	}
}
