package storage

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skiffhq/skiff/internal/failpoint"
)

// KV is one stored value with the revisions etcd gave it.
type KV struct {
	Key       string
	Value     []byte
	ModRev    int64
	CreateRev int64
}

// Transformer converts values on their way into and out of etcd, for example
// to encrypt Secrets at rest. Implementations must be safe for concurrent use.
type Transformer interface {
	// ToStorage returns the bytes to write for key.
	ToStorage(key string, plain []byte) ([]byte, error)
	// FromStorage reverses ToStorage.
	FromStorage(key string, stored []byte) ([]byte, error)
}

// Store is a key/value store over etcd with optimistic concurrency.
type Store struct {
	cli         *clientv3.Client
	transformer Transformer
	hasLeader   func() bool
	spaceCheck  func() error
}

// NewStore wraps an etcd client. t may be nil.
func NewStore(cli *clientv3.Client, t Transformer) *Store {
	return &Store{cli: cli, transformer: t}
}

// Client returns the underlying etcd client (for the cache and benchmarks).
func (s *Store) Client() *clientv3.Client { return s.cli }

// SetLeaderCheck makes every write first ask hasLeader whether the local
// etcd member knows a leader, and fail with ErrUnavailable (nothing
// stored) when it does not. It is for the in-process client of an
// embedded member, which bypasses etcd's gRPC require-leader check that
// writes over the network ask for.
func (s *Store) SetLeaderCheck(hasLeader func() bool) { s.hasLeader = hasLeader }

// SetSpaceCheck makes every write (deletes and compactions too) first ask
// check whether there is room (see SpaceGuard); its error is returned and
// nothing is stored. Deletes are asked as well, unlike under etcd's own
// NOSPACE alarm: on a full filesystem any write may need a new page of
// etcd's database file, and a failed backend write stops the member.
// Space comes back from the filesystem, not from deleting objects (a
// smaller history frees nothing on disk before a defragmentation).
func (s *Store) SetSpaceCheck(check func() error) { s.spaceCheck = check }

// writeCtx returns the context for one write: it asks etcd to refuse the
// write when the member has no leader, rather than propose it into a
// minority where it can neither commit nor be known to have failed.
func (s *Store) writeCtx(ctx context.Context, op, key string) (context.Context, error) {
	if s.hasLeader != nil && !s.hasLeader() {
		return nil, fmt.Errorf("%s %s: %w", op, key, ErrUnavailable)
	}
	if s.spaceCheck != nil {
		if err := s.spaceCheck(); err != nil {
			return nil, fmt.Errorf("%s %s: %w", op, key, err)
		}
	}
	if err := failpoint.Inject("storage/before-commit", key); err != nil {
		return nil, fmt.Errorf("%s %s: %w", op, key, err)
	}
	return clientv3.WithRequireLeader(ctx), nil
}

// committed is the failpoint between a write's commit in etcd and its
// answer: a crash here leaves a durable write whose client saw no reply.
func committed(op, key string) error {
	if err := failpoint.Inject("storage/after-commit", key); err != nil {
		return fmt.Errorf("%s %s: %w", op, key, err)
	}
	return nil
}

// SetTransformer replaces the value transformer.
func (s *Store) SetTransformer(t Transformer) { s.transformer = t }

func (s *Store) encode(key string, v []byte) ([]byte, error) {
	if s.transformer == nil {
		return v, nil
	}
	return s.transformer.ToStorage(key, v)
}

// Decode reverses the transformer for a value read from etcd directly.
func (s *Store) Decode(key string, v []byte) ([]byte, error) {
	if s.transformer == nil {
		return v, nil
	}
	return s.transformer.FromStorage(key, v)
}

func wrapErr(op, key string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, rpctypes.ErrCompacted) || errors.Is(err, rpctypes.ErrGRPCCompacted) {
		return fmt.Errorf("%s %s: %w", op, key, ErrExpired)
	}
	if errors.Is(err, rpctypes.ErrRequestTooLarge) || errors.Is(err, rpctypes.ErrGRPCRequestTooLarge) {
		return fmt.Errorf("%s %s: %w", op, key, ErrTooLarge)
	}
	if errors.Is(err, rpctypes.ErrNoSpace) || errors.Is(err, rpctypes.ErrGRPCNoSpace) {
		return fmt.Errorf("%s %s: %w: etcd's backend reached its quota (NOSPACE alarm): %w", op, key, ErrNoSpace, err)
	}
	write := op == "create" || op == "update" || op == "delete"
	if q := quorumErr(write, err); q != nil {
		return fmt.Errorf("%s %s: %w: %w", op, key, q, err)
	}
	return fmt.Errorf("%s %s: %w", op, key, err)
}

// Create writes key only if it does not exist and returns the new revision.
func (s *Store) Create(ctx context.Context, key string, value []byte) (int64, error) {
	v, err := s.encode(key, value)
	if err != nil {
		return 0, err
	}
	ctx, err = s.writeCtx(ctx, "create", key)
	if err != nil {
		return 0, err
	}
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(v))).
		Commit()
	if err != nil {
		return 0, wrapErr("create", key, err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("create %s: %w", key, ErrExists)
	}
	if err := committed("create", key); err != nil {
		return 0, err
	}
	return resp.Header.Revision, nil
}

// CreateGuarded writes key only if it does not exist and guard's
// modification revision is still guardRev (0: guard must not exist). It
// returns ErrExists when key exists and ErrConflict when guard changed.
func (s *Store) CreateGuarded(ctx context.Context, key string, value []byte, guard string, guardRev int64) (int64, error) {
	v, err := s.encode(key, value)
	if err != nil {
		return 0, err
	}
	ctx, err = s.writeCtx(ctx, "create", key)
	if err != nil {
		return 0, err
	}
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0), clientv3.Compare(clientv3.ModRevision(guard), "=", guardRev)).
		Then(clientv3.OpPut(key, string(v))).
		Else(clientv3.OpGet(key, clientv3.WithCountOnly())).
		Commit()
	if err != nil {
		return 0, wrapErr("create", key, err)
	}
	if !resp.Succeeded {
		if resp.Responses[0].GetResponseRange().Count > 0 {
			return 0, fmt.Errorf("create %s: %w", key, ErrExists)
		}
		return 0, fmt.Errorf("create %s (guard %s): %w", key, guard, ErrConflict)
	}
	if err := committed("create", key); err != nil {
		return 0, err
	}
	return resp.Header.Revision, nil
}

// Ping reads one key with a linearizable read: it succeeds only when the
// etcd cluster has a leader and answers (the API server's etcd health
// check).
func (s *Store) Ping(ctx context.Context) error {
	if _, err := s.cli.Get(ctx, "health", clientv3.WithCountOnly()); err != nil {
		return wrapErr("health", "health", err)
	}
	return nil
}

// Get reads the latest value of key.
func (s *Store) Get(ctx context.Context, key string) (KV, error) {
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return KV{}, wrapErr("get", key, err)
	}
	if len(resp.Kvs) == 0 {
		return KV{}, fmt.Errorf("get %s: %w", key, ErrNotFound)
	}
	kv := resp.Kvs[0]
	val, err := s.Decode(key, kv.Value)
	if err != nil {
		return KV{}, err
	}
	return KV{Key: key, Value: val, ModRev: kv.ModRevision, CreateRev: kv.CreateRevision}, nil
}

// Update replaces key if its modification revision is still modRev and
// returns the new revision. On conflict it returns ErrConflict and the
// current value (or ErrNotFound if it was deleted).
func (s *Store) Update(ctx context.Context, key string, value []byte, modRev int64) (int64, KV, error) {
	v, err := s.encode(key, value)
	if err != nil {
		return 0, KV{}, err
	}
	ctx, err = s.writeCtx(ctx, "update", key)
	if err != nil {
		return 0, KV{}, err
	}
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", modRev)).
		Then(clientv3.OpPut(key, string(v))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return 0, KV{}, wrapErr("update", key, err)
	}
	if !resp.Succeeded {
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			return 0, KV{}, fmt.Errorf("update %s: %w", key, ErrNotFound)
		}
		cur, derr := s.Decode(key, kvs[0].Value)
		if derr != nil {
			return 0, KV{}, derr
		}
		return 0, KV{Key: key, Value: cur, ModRev: kvs[0].ModRevision, CreateRev: kvs[0].CreateRevision},
			fmt.Errorf("update %s: %w", key, ErrConflict)
	}
	if err := committed("update", key); err != nil {
		return 0, KV{}, err
	}
	return resp.Header.Revision, KV{}, nil
}

// Delete removes key if its modification revision is still modRev (0 means
// unconditionally) and returns the deletion revision.
func (s *Store) Delete(ctx context.Context, key string, modRev int64) (int64, error) {
	ctx, err := s.writeCtx(ctx, "delete", key)
	if err != nil {
		return 0, err
	}
	txn := s.cli.Txn(ctx)
	if modRev > 0 {
		txn = txn.If(clientv3.Compare(clientv3.ModRevision(key), "=", modRev))
	} else {
		txn = txn.If(clientv3.Compare(clientv3.CreateRevision(key), ">", 0))
	}
	resp, err := txn.Then(clientv3.OpDelete(key)).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return 0, wrapErr("delete", key, err)
	}
	if !resp.Succeeded {
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			return 0, fmt.Errorf("delete %s: %w", key, ErrNotFound)
		}
		return 0, fmt.Errorf("delete %s: %w", key, ErrConflict)
	}
	if err := committed("delete", key); err != nil {
		return 0, err
	}
	return resp.Header.Revision, nil
}

// ListResult is one page of a range read.
type ListResult struct {
	KVs []KV
	// Rev is the revision the page was read at.
	Rev int64
	// More is true when keys remain after the last one returned.
	More bool
	// Remaining counts the keys after this page (when More).
	Remaining int64
}

// List reads keys with prefix, starting at startKey (inclusive; "" means the
// prefix), at revision rev (0 = latest), at most limit keys (0 = all).
func (s *Store) List(ctx context.Context, prefix, startKey string, rev, limit int64) (ListResult, error) {
	if startKey == "" {
		startKey = prefix
	}
	opts := []clientv3.OpOption{clientv3.WithRange(clientv3.GetPrefixRangeEnd(prefix))}
	if rev > 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	if limit > 0 {
		opts = append(opts, clientv3.WithLimit(limit))
	}
	resp, err := s.cli.Get(ctx, startKey, opts...)
	if err != nil {
		return ListResult{}, wrapErr("list", prefix, err)
	}
	out := ListResult{Rev: resp.Header.Revision, More: resp.More}
	if rev > 0 {
		out.Rev = rev
	}
	if resp.More {
		out.Remaining = resp.Count - int64(len(resp.Kvs))
	}
	out.KVs = make([]KV, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		val, err := s.Decode(string(kv.Key), kv.Value)
		if err != nil {
			return ListResult{}, err
		}
		out.KVs = append(out.KVs, KV{Key: string(kv.Key), Value: val, ModRev: kv.ModRevision, CreateRev: kv.CreateRevision})
	}
	return out, nil
}

// Count returns how many keys have prefix.
func (s *Store) Count(ctx context.Context, prefix string) (int64, error) {
	resp, err := s.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, wrapErr("count", prefix, err)
	}
	return resp.Count, nil
}

// CurrentRevision returns etcd's latest revision, read with quorum.
func (s *Store) CurrentRevision(ctx context.Context) (int64, error) {
	resp, err := s.cli.Get(ctx, "/registry/", clientv3.WithLimit(1), clientv3.WithCountOnly())
	if err != nil {
		return 0, wrapErr("revision", "/registry/", err)
	}
	return resp.Header.Revision, nil
}

// Compact compacts etcd history up to rev.
func (s *Store) Compact(ctx context.Context, rev int64) error {
	if s.spaceCheck != nil {
		if err := s.spaceCheck(); err != nil {
			return fmt.Errorf("compact: %w", err)
		}
	}
	_, err := s.cli.Compact(ctx, rev, clientv3.WithCompactPhysical())
	return wrapErr("compact", "", err)
}
