package etcdsnapshot_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/etcdclient"
	"github.com/skiffhq/skiff/controlplane/etcdsnapshot"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TestSaveRestore snapshots a running server, changes the cluster, restores
// the snapshot into a fresh data directory and starts a server on it: the
// snapshot's objects exist with their resourceVersions, later changes do
// not, and Secrets encrypted at rest are readable (the credentials archive
// brought the key back).
func TestSaveRestore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ts := testserver.Start(t, func(c *server.Config) { c.SecretsEncryption = true })
	cs := ts.Client
	ns := "snap"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "b", "c"} {
		if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: n}, Data: map[string]string{"v": "1"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s"}, StringData: map[string]string{"password": "hunter2"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	want := state(ctx, t, cs, ns)

	info, err := etcdclient.Read(ts.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := info.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "snapshots")
	snap, err := etcdsnapshot.Save(ctx, cli, ts.DataDir, dir, "", time.Now())
	cli.Close()
	if err != nil {
		t.Fatal(err)
	}
	if snap.Credentials == "" || snap.Size == 0 {
		t.Fatalf("snapshot %+v", snap)
	}

	// Changes after the snapshot must not come back.
	if err := cs.CoreV1().ConfigMaps(ns).Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	b, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "b", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b.Data["v"] = "2"
	if _, err := cs.CoreV1().ConfigMaps(ns).Update(ctx, b, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "d"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ts.Stop()

	newDir := filepath.Join(t.TempDir(), "restored")
	const bump = 1_000_000_000
	if err := etcdsnapshot.Restore(etcdsnapshot.RestoreOptions{Snapshot: snap.Path, DataDir: newDir, RevisionBump: bump}); err != nil {
		t.Fatal(err)
	}
	if err := etcdsnapshot.Restore(etcdsnapshot.RestoreOptions{Snapshot: snap.Path, DataDir: newDir}); err == nil {
		t.Fatal("a second restore into the same data directory succeeded")
	}
	ts2 := testserver.Start(t, func(c *server.Config) { c.DataDir = newDir; c.SecretsEncryption = true })
	got := state(ctx, t, ts2.Client, ns)
	if len(got) != len(want) {
		t.Fatalf("restored objects %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: restored %q, want %q", k, got[k], v)
		}
	}
	sec, err := ts2.Client.CoreV1().Secrets(ns).Get(ctx, "s", metav1.GetOptions{})
	if err != nil || string(sec.Data["password"]) != "hunter2" {
		t.Fatalf("restored secret: %v %v", err, sec)
	}
	// New writes continue above the bumped revision.
	d, err := ts2.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "e"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rv, _ := strconv.ParseInt(d.ResourceVersion, 10, 64); rv < bump {
		t.Errorf("resourceVersion after restore %d, want above %d", rv, bump)
	}
}

// state maps "kind/name" to resourceVersion+data for the configmaps and
// secrets of ns.
func state(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns string) map[string]string {
	t.Helper()
	out := map[string]string{}
	cms, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cms.Items {
		if c.Name == "kube-root-ca.crt" {
			continue
		}
		out["configmap/"+c.Name] = c.ResourceVersion + " " + c.Data["v"]
	}
	secs, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secs.Items {
		out["secret/"+s.Name] = s.ResourceVersion + " " + string(s.Data["password"])
	}
	return out
}

// TestListPrune keeps the newest snapshots of one prefix and leaves others.
func TestListPrune(t *testing.T) {
	dir := t.TempDir()
	base := time.Now().Add(-time.Hour)
	for i, name := range []string{"etcd-snapshot-1", "etcd-snapshot-2", "etcd-snapshot-3", "on-demand-1"} {
		for _, suf := range []string{etcdsnapshot.DBSuffix, etcdsnapshot.CredentialsSuffix} {
			p := filepath.Join(dir, name+suf)
			if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			mt := base.Add(time.Duration(i) * time.Minute)
			if err := os.Chtimes(p, mt, mt); err != nil {
				t.Fatal(err)
			}
		}
	}
	deleted, err := etcdsnapshot.Prune(dir, "etcd-snapshot", 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(deleted) != 1 || deleted[0].Name != "etcd-snapshot-1" {
		t.Fatalf("deleted %+v", deleted)
	}
	left, err := etcdsnapshot.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range left {
		names = append(names, s.Name)
		if s.Credentials == "" {
			t.Errorf("%s: credentials not listed", s.Name)
		}
	}
	if want := []string{"on-demand-1", "etcd-snapshot-3", "etcd-snapshot-2"}; len(names) != 3 || names[0] != want[0] || names[1] != want[1] || names[2] != want[2] {
		t.Fatalf("left %v, want %v", names, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "etcd-snapshot-1"+etcdsnapshot.CredentialsSuffix)); !os.IsNotExist(err) {
		t.Errorf("pruned snapshot's credentials remain: %v", err)
	}
}
