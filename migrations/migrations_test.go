package migrations_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/skiffhq/skiff/internal/freeport"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/encryption"
	"github.com/skiffhq/skiff/controlplane/storage"
	"github.com/skiffhq/skiff/migrations"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func freePort(t *testing.T) int {
	t.Helper()
	p, err := freeport.On()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startEtcd runs a real embedded etcd and returns a function making clients.
func startEtcd(t *testing.T) func() *clientv3.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := storage.StartEmbedded(ctx, storage.EmbeddedConfig{
		Dir:       t.TempDir(),
		ClientURL: fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
		PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
		LogLevel:  "fatal",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close) // after the clients' cleanups (LIFO)
	return func() *clientv3.Client {
		cli, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints(), DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		return cli
	}
}

// TestConcurrentRunnersRunOnce starts three runners together on one etcd:
// every migration runs exactly once, in order.
func TestConcurrentRunnersRunOnce(t *testing.T) {
	newClient := startEtcd(t)
	var mu sync.Mutex
	count := map[string]int{}
	var order []string
	mk := func(name string) migrations.Migration {
		return migrations.Migration{Name: name, Up: func(ctx context.Context, run *migrations.Run) error {
			mu.Lock()
			count[name]++
			order = append(order, name)
			mu.Unlock()
			// Long enough that the other runners are waiting for the lock.
			select {
			case <-time.After(300 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
			return nil
		}}
	}
	list := []migrations.Migration{mk("0001-a"), mk("0002-b"), mk("0003-c")}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	ran := make([][]string, 3)
	for i := range 3 {
		r := &migrations.Runner{Env: migrations.Env{Etcd: newClient()}, Migrations: list, Prefix: "/test/migrations/", Holder: fmt.Sprintf("server-%d", i)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ran[i], errs[i] = r.Run(ctx)
		}()
	}
	wg.Wait()
	total := 0
	for i := range 3 {
		if errs[i] != nil {
			t.Fatalf("runner %d: %v", i, errs[i])
		}
		total += len(ran[i])
	}
	for _, m := range list {
		if count[m.Name] != 1 {
			t.Errorf("%s ran %d times, want once", m.Name, count[m.Name])
		}
	}
	if total != len(list) || strings.Join(order, ",") != "0001-a,0002-b,0003-c" {
		t.Errorf("runners completed %d migrations in order %v", total, order)
	}
	st, err := (&migrations.Runner{Env: migrations.Env{Etcd: newClient()}, Migrations: list, Prefix: "/test/migrations/"}).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range st {
		if rec.Status != migrations.StatusDone || rec.Runs != 1 || rec.Finished.IsZero() {
			t.Errorf("record %+v", rec)
		}
	}
}

// TestResumeFromCheckpoint interrupts a migration in its third page (as a
// crash would: no failure recorded) and runs it again: it resumes with
// that page, so the first two pages are not visited again.
func TestResumeFromCheckpoint(t *testing.T) {
	newClient := startEtcd(t)
	cli := newClient()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n = 250
	for i := range n {
		if _, err := cli.Put(ctx, fmt.Sprintf("/items/%04d", i), "x"); err != nil {
			t.Fatal(err)
		}
	}
	migrations.PageSize = 100
	visits := map[string]int{}
	var stop context.CancelFunc
	m := migrations.Migration{Name: "0001-visit", Up: func(ctx context.Context, run *migrations.Run) error {
		return migrations.ForEachKey(ctx, run, "/items/", func(ctx context.Context, kv *mvccpb.KeyValue) error {
			visits[string(kv.Key)]++
			if string(kv.Key) == "/items/0230" && stop != nil {
				stop() // the process dies here
				return ctx.Err()
			}
			return nil
		})
	}}
	r := &migrations.Runner{Env: migrations.Env{Etcd: cli}, Migrations: []migrations.Migration{m}}
	runCtx, c := context.WithCancel(ctx)
	stop = c
	if _, err := r.Run(runCtx); err == nil {
		t.Fatal("the interrupted run succeeded")
	}
	st, err := r.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st[0].Status != migrations.StatusRunning || st[0].Checkpoint != "/items/0199" {
		t.Fatalf("after the interruption: %+v", st[0])
	}
	stop = nil
	done, err := r.Run(ctx)
	if err != nil || len(done) != 1 {
		t.Fatalf("resumed run: %v %v", done, err)
	}
	for i := range n {
		k := fmt.Sprintf("/items/%04d", i)
		want := 1
		if i >= 200 && i <= 230 {
			want = 2 // the interrupted page is redone
		}
		if visits[k] != want {
			t.Errorf("%s visited %d times, want %d", k, visits[k], want)
		}
	}
	st, _ = r.Status(ctx)
	if st[0].Status != migrations.StatusDone || st[0].Runs != 2 || st[0].Checkpoint != "" {
		t.Errorf("after the resumed run: %+v", st[0])
	}
	// Done migrations do not run again.
	if done, err := r.Run(ctx); err != nil || len(done) != 0 {
		t.Errorf("third run: %v %v", done, err)
	}
}

// TestFailureRecorded keeps the error and stops before later migrations.
func TestFailureRecorded(t *testing.T) {
	cli := startEtcd(t)()
	ctx := context.Background()
	later := 0
	r := &migrations.Runner{Env: migrations.Env{Etcd: cli}, Migrations: []migrations.Migration{
		{Name: "0001-bad", Up: func(context.Context, *migrations.Run) error { return errors.New("boom") }},
		{Name: "0002-later", Up: func(context.Context, *migrations.Run) error { later++; return nil }},
	}}
	if _, err := r.Run(ctx); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("run: %v", err)
	}
	st, err := r.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st[0].Status != migrations.StatusFailed || st[0].Error != "boom" || st[1].Status != migrations.StatusPending || later != 0 {
		t.Fatalf("status %+v, later ran %d", st, later)
	}
}

// TestSecretsStorageEncoding is the built-in storage-version migration:
// plaintext Secrets (written before encryption was on) are rewritten with
// the current key, other resources are left alone, and without encryption
// the migration stays pending.
func TestSecretsStorageEncoding(t *testing.T) {
	cli := startEtcd(t)()
	ctx := context.Background()
	plain := map[string]string{}
	for i := range 5 {
		k := fmt.Sprintf("/registry/secrets/default/s%d", i)
		plain[k] = fmt.Sprintf(`{"kind":"Secret","apiVersion":"v1","metadata":{"name":"s%d","namespace":"default"},"data":{"k":"djE="}}`, i)
		if _, err := cli.Put(ctx, k, plain[k]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.Put(ctx, "/registry/configmaps/default/c", `{"kind":"ConfigMap"}`); err != nil {
		t.Fatal(err)
	}
	off := &migrations.Runner{Env: migrations.Env{Etcd: cli}}
	if done, err := off.Run(ctx); err != nil || len(done) != 0 {
		t.Fatalf("without encryption: %v %v", done, err)
	}
	if st, _ := off.Status(ctx); st[0].Name != "0001-secrets-storage-encoding" || st[0].Status != migrations.StatusPending {
		t.Fatalf("without encryption: %+v", st)
	}

	cfg, err := encryption.NewConfig("key1")
	if err != nil {
		t.Fatal(err)
	}
	tr, err := encryption.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	on := &migrations.Runner{Env: migrations.Env{Etcd: cli, Encryption: migrations.FromEncryption(tr)}}
	if done, err := on.Run(ctx); err != nil || len(done) != 1 {
		t.Fatalf("with encryption: %v %v", done, err)
	}
	resp, err := cli.Get(ctx, "/registry/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		k := string(kv.Key)
		if !strings.HasPrefix(k, encryption.SecretsPrefix) {
			if string(kv.Value) != `{"kind":"ConfigMap"}` {
				t.Errorf("%s changed: %s", k, kv.Value)
			}
			continue
		}
		if encryption.KeyOf(kv.Value) != tr.State().WriteKey {
			t.Errorf("%s stored with %q, want %q", k, encryption.KeyOf(kv.Value), tr.State().WriteKey)
		}
		got, err := tr.FromStorage(k, kv.Value)
		if err != nil || string(got) != plain[k] {
			t.Errorf("%s decrypts to %s, %v", k, got, err)
		}
	}
}
