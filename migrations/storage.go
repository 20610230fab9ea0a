package migrations

import (
	"context"
	"fmt"

	"github.com/skiffhq/skiff/controlplane/encryption"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// PageSize is how many keys ForEachKey reads per page (and how often it
// saves a checkpoint).
var PageSize int64 = 100

// ForEachKey calls fn for every key under prefix in key order, starting
// after the run's checkpoint, and saves the last key of each page as the
// checkpoint, so an interrupted run resumes with the page it was in.
func ForEachKey(ctx context.Context, run *Run, prefix string, fn func(ctx context.Context, kv *mvccpb.KeyValue) error) error {
	cli := run.Env.Etcd
	end := clientv3.GetPrefixRangeEnd(prefix)
	from := prefix
	if cp := run.Checkpoint(); cp != "" {
		from = cp + "\x00"
	}
	for {
		resp, err := cli.Get(ctx, from, clientv3.WithRange(end), clientv3.WithLimit(PageSize), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
		if err != nil {
			return fmt.Errorf("list %s: %w", prefix, err)
		}
		for _, kv := range resp.Kvs {
			if err := fn(ctx, kv); err != nil {
				return err
			}
		}
		if len(resp.Kvs) == 0 {
			return nil
		}
		last := string(resp.Kvs[len(resp.Kvs)-1].Key)
		if err := run.SaveCheckpoint(ctx, last); err != nil {
			return err
		}
		if !resp.More {
			return nil
		}
		from = last + "\x00"
	}
}

// RewriteStorage is a storage-version migration: it rewrites every value
// under prefix that is not stored the way the current transformer writes
// (provider and key), with a compare-and-swap on its mod revision, so a
// concurrent write through the API server (which already uses the current
// encoding) wins. The object's content is unchanged; its resourceVersion
// moves, and watchers see a MODIFIED event, as upstream's storage version
// migrator causes.
func RewriteStorage(name, description, prefix string) Migration {
	return Migration{
		Name:        name,
		Description: description,
		Applies:     func(env *Env) bool { return env.Encryption != nil },
		Up: func(ctx context.Context, run *Run) error {
			t := run.Env.Encryption
			rewritten := 0
			err := ForEachKey(ctx, run, prefix, func(ctx context.Context, kv *mvccpb.KeyValue) error {
				if t.Current(kv.Value) {
					return nil
				}
				key := string(kv.Key)
				plain, err := t.FromStorage(key, kv.Value)
				if err != nil {
					return err
				}
				out, err := t.ToStorage(key, plain)
				if err != nil {
					return err
				}
				resp, err := run.Env.Etcd.Txn(ctx).
					If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
					Then(clientv3.OpPut(key, string(out))).Commit()
				if err != nil {
					return fmt.Errorf("rewrite %s: %w", key, err)
				}
				if resp.Succeeded {
					rewritten++
				}
				return nil
			})
			if run.Env.Logger != nil {
				run.Env.Logger.Info("storage rewrite", "migration", name, "rewritten", rewritten)
			}
			return err
		},
	}
}

// FromEncryption adapts the Secrets encryption transformer.
func FromEncryption(t *encryption.Transformer) Transformer {
	if t == nil {
		return nil
	}
	return encryptionTransformer{t}
}

type encryptionTransformer struct{ *encryption.Transformer }

func (e encryptionTransformer) Current(stored []byte) bool {
	return encryption.KeyOf(stored) == e.State().WriteKey
}

func init() {
	Register(RewriteStorage("0001-secrets-storage-encoding",
		"rewrite every Secret in etcd with the current encryption key (Secrets written before --secrets-encryption, or with an older key)",
		encryption.SecretsPrefix))
	// Issue #12's log index templates register as "0002-..." from their
	// own package (Register in an init function) once they exist.
}
