// Package migrations runs versioned, idempotent, resumable migrations of
// the state Skiff stores in etcd. Migrations are registered in name order
// (a numeric prefix keeps them ordered); each runs once per cluster: its
// record under /skiff/migrations/records/<name> says whether it is done,
// when it started and finished, and the checkpoint from which an
// interrupted run resumes. A lock (etcd's concurrency mutex, held through
// a lease) makes sure two servers starting together never run one twice,
// and every record write is guarded by still holding that lock.
package migrations

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// DefaultPrefix is where migration state lives in etcd.
const DefaultPrefix = "/skiff/migrations/"

// Statuses of a record.
const (
	StatusPending = "pending" // never started (no record)
	StatusRunning = "running" // started; a run in progress or interrupted
	StatusFailed  = "failed"  // the last run returned an error
	StatusDone    = "done"
)

// ErrLockLost is returned when the lock's lease expired during a run: the
// record is not written and another server may carry on.
var ErrLockLost = errors.New("migration lock lost")

// Migration is one named change of stored state. Up must be idempotent:
// it may run again after an interruption, starting from the checkpoint
// it last saved (Run.Checkpoint).
type Migration struct {
	// Name orders migrations and names their records, e.g.
	// "0001-secrets-encryption".
	Name        string
	Description string
	// Applies reports whether the migration can run in env (nil = always).
	// One that does not apply stays pending and is tried at the next run
	// (for example the Secrets rewrite waits for --secrets-encryption).
	Applies func(env *Env) bool
	Up      func(ctx context.Context, run *Run) error
}

// Env is what migrations work with. Fields are added as migrations need
// them; a migration checks the ones it uses in Applies.
type Env struct {
	Etcd *clientv3.Client
	// Encryption transforms Secret values (nil when encryption at rest is
	// off).
	Encryption Transformer
	Logger     *slog.Logger
}

// Transformer is storage.Transformer with the envelope of the current
// write key (encryption.Transformer implements it).
type Transformer interface {
	ToStorage(key string, plain []byte) ([]byte, error)
	FromStorage(key string, stored []byte) ([]byte, error)
	// Current reports whether stored is written the way ToStorage writes
	// now (same provider and key).
	Current(stored []byte) bool
}

// Record is a migration's state in etcd.
type Record struct {
	Name       string    `json:"name"`
	Status     string    `json:"status"`
	Started    time.Time `json:"started,omitzero"`
	Finished   time.Time `json:"finished,omitzero"`
	Checkpoint string    `json:"checkpoint,omitempty"`
	// Runs counts the runs that started (more than one = resumed).
	Runs   int    `json:"runs"`
	Error  string `json:"error,omitempty"`
	Holder string `json:"holder,omitempty"`
}

var (
	regMu    sync.Mutex
	registry []Migration
)

// Register adds a migration to the built-in list (call from init). Names
// must be unique.
func Register(m Migration) {
	regMu.Lock()
	defer regMu.Unlock()
	for _, o := range registry {
		if o.Name == m.Name {
			panic("migrations: duplicate migration " + m.Name)
		}
	}
	registry = append(registry, m)
}

// Registered returns the built-in migrations in name order.
func Registered() []Migration {
	regMu.Lock()
	defer regMu.Unlock()
	out := slices.Clone(registry)
	slices.SortFunc(out, func(a, b Migration) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Runner runs migrations against one etcd.
type Runner struct {
	Env Env
	// Migrations to run in order (default Registered()).
	Migrations []Migration
	// Prefix of the lock and records (default DefaultPrefix).
	Prefix string
	// Holder names this runner in records (a host name, say).
	Holder string
	// LockTTL is the lease of the lock in seconds (default 15): a crashed
	// runner's lock frees itself after that long.
	LockTTL int
}

func (r *Runner) prefix() string {
	if r.Prefix == "" {
		return DefaultPrefix
	}
	return r.Prefix
}

func (r *Runner) migrations() []Migration {
	if r.Migrations != nil {
		return r.Migrations
	}
	return Registered()
}

func (r *Runner) recordKey(name string) string { return r.prefix() + "records/" + name }

func (r *Runner) log() *slog.Logger {
	if r.Env.Logger != nil {
		return r.Env.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Status returns a record for every migration, pending ones included,
// followed by records of migrations this binary does not know.
func (r *Runner) Status(ctx context.Context) ([]Record, error) {
	resp, err := r.Env.Etcd.Get(ctx, r.prefix()+"records/", clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("read migration records: %w", err)
	}
	stored := map[string]Record{}
	for _, kv := range resp.Kvs {
		var rec Record
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			return nil, fmt.Errorf("migration record %s: %w", kv.Key, err)
		}
		stored[rec.Name] = rec
	}
	var out []Record
	for _, m := range r.migrations() {
		rec, ok := stored[m.Name]
		if !ok {
			rec = Record{Name: m.Name, Status: StatusPending}
		}
		delete(stored, m.Name)
		out = append(out, rec)
	}
	var unknown []string
	for n := range stored {
		unknown = append(unknown, n)
	}
	slices.Sort(unknown)
	for _, n := range unknown {
		out = append(out, stored[n])
	}
	return out, nil
}

// Run takes the lock and runs every migration that is not done, in order,
// stopping at the first failure. It returns the names of the migrations
// it completed.
func (r *Runner) Run(ctx context.Context) (done []string, err error) {
	ttl := r.LockTTL
	if ttl <= 0 {
		ttl = 15
	}
	sess, err := concurrency.NewSession(r.Env.Etcd, concurrency.WithTTL(ttl), concurrency.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("migration lock session: %w", err)
	}
	defer sess.Close()
	mu := concurrency.NewMutex(sess, r.prefix()+"lock")
	if err := mu.Lock(ctx); err != nil {
		return nil, fmt.Errorf("take the migration lock: %w", err)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = mu.Unlock(uctx)
	}()
	// Cancel the runs when the lease goes (a network partition, say).
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-sess.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	for _, m := range r.migrations() {
		if err := r.runOne(ctx, mu, m); err != nil {
			if errors.Is(err, errNotApplicable) {
				continue
			}
			return done, err
		}
		done = append(done, m.Name)
	}
	return done, nil
}

var errNotApplicable = errors.New("not applicable")

func (r *Runner) runOne(ctx context.Context, mu *concurrency.Mutex, m Migration) error {
	key := r.recordKey(m.Name)
	resp, err := r.Env.Etcd.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("read migration record %s: %w", m.Name, err)
	}
	rec := Record{Name: m.Name}
	if len(resp.Kvs) == 1 {
		if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
			return fmt.Errorf("migration record %s: %w", m.Name, err)
		}
	}
	if rec.Status == StatusDone {
		return errNotApplicable
	}
	if m.Applies != nil && !m.Applies(&r.Env) {
		r.log().Info("migration does not apply yet", "migration", m.Name)
		return errNotApplicable
	}
	if rec.Started.IsZero() {
		rec.Started = time.Now().UTC()
	}
	rec.Status, rec.Error, rec.Holder = StatusRunning, "", r.Holder
	rec.Runs++
	run := &Run{Env: &r.Env, runner: r, mu: mu, rec: &rec, key: key}
	if err := run.save(ctx); err != nil {
		return err
	}
	r.log().Info("running migration", "migration", m.Name, "run", rec.Runs, "checkpoint", rec.Checkpoint)
	if uerr := m.Up(ctx, run); uerr != nil {
		if errors.Is(uerr, ErrLockLost) || ctx.Err() != nil {
			return fmt.Errorf("migration %s interrupted at %q: %w", m.Name, rec.Checkpoint, uerr)
		}
		rec.Status, rec.Error = StatusFailed, uerr.Error()
		if err := run.save(context.WithoutCancel(ctx)); err != nil {
			return errors.Join(uerr, err)
		}
		return fmt.Errorf("migration %s: %w", m.Name, uerr)
	}
	rec.Status, rec.Finished, rec.Checkpoint = StatusDone, time.Now().UTC(), ""
	if err := run.save(ctx); err != nil {
		return err
	}
	r.log().Info("migration done", "migration", m.Name)
	return nil
}

// Run is one run of a migration.
type Run struct {
	Env    *Env
	runner *Runner
	mu     *concurrency.Mutex
	rec    *Record
	key    string
}

// Checkpoint is where an interrupted run stopped ("" = from the start).
func (r *Run) Checkpoint() string { return r.rec.Checkpoint }

// SaveCheckpoint records progress: a later run starts from cp.
func (r *Run) SaveCheckpoint(ctx context.Context, cp string) error {
	r.rec.Checkpoint = cp
	return r.save(ctx)
}

// save writes the record if this runner still holds the lock.
func (r *Run) save(ctx context.Context) error {
	data, err := json.Marshal(r.rec)
	if err != nil {
		return err
	}
	resp, err := r.Env.Etcd.Txn(ctx).If(r.mu.IsOwner()).Then(clientv3.OpPut(r.key, string(data))).Commit()
	if err != nil {
		return fmt.Errorf("write migration record %s: %w", r.rec.Name, err)
	}
	if !resp.Succeeded {
		return ErrLockLost
	}
	return nil
}

// Owner is the comparison that holds while this run owns the lock, for
// migrations that want their own writes guarded the same way.
func (r *Run) Owner() clientv3.Cmp { return r.mu.IsOwner() }
