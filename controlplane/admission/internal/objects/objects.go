// Package objects reads the API server's state for admission plugins: from
// the watch cache (the API's in-memory view of every object) and, when a
// plugin needs a fresh read or a compare-and-swap write, from storage.
package objects

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	"github.com/skiffhq/skiff/controlplane/storage"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ErrNotFound is returned when an object does not exist.
var ErrNotFound = errors.New("not found")

// Reader reads objects of served resources.
type Reader struct {
	Store    *storage.Store
	Cache    *storage.Cache
	Registry *registry.Registry
}

// Prefix returns the storage key prefix of group/plural, or "" when the
// resource is not served.
func (r *Reader) Prefix(group, plural string) string {
	return r.Registry.StorageKeyPrefix(group, plural)
}

// Key returns the storage key of one object.
func (r *Reader) Key(group, plural, ns, name string) string {
	p := r.Prefix(group, plural)
	if ns != "" {
		return p + ns + "/" + name
	}
	return p + name
}

func decode[T any](value []byte, rev int64) (*T, error) {
	out := new(T)
	if err := json.Unmarshal(value, out); err != nil {
		return nil, fmt.Errorf("decode stored object: %w", err)
	}
	if acc, err := meta.Accessor(any(out)); err == nil {
		acc.SetResourceVersion(strconv.FormatInt(rev, 10))
	}
	return out, nil
}

// Get returns one object from the cache.
func Get[T any](r *Reader, group, plural, ns, name string) (*T, error) {
	o, _, ok := r.Cache.Get(r.Key(group, plural, ns, name))
	if !ok {
		return nil, ErrNotFound
	}
	return decode[T](o.Value, o.ModRev)
}

// GetFresh reads one object from storage (a live read after a cache miss).
func GetFresh[T any](ctx context.Context, r *Reader, group, plural, ns, name string) (*T, int64, error) {
	kv, err := r.Store.Get(ctx, r.Key(group, plural, ns, name))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, err
	}
	out, err := decode[T](kv.Value, kv.ModRev)
	return out, kv.ModRev, err
}

// List returns the cached objects of group/plural in ns ("" = all
// namespaces, or a cluster-scoped resource).
func List[T any](r *Reader, group, plural, ns string) ([]*T, error) {
	p := r.Prefix(group, plural)
	if p == "" {
		return nil, fmt.Errorf("resource %s.%s is not served", plural, group)
	}
	within := p
	if ns != "" {
		within = p + ns + "/"
	}
	objs, _, err := r.Cache.List(p, within, nil)
	if err != nil {
		return nil, err
	}
	out := make([]*T, 0, len(objs))
	for _, o := range objs {
		v, err := decode[T](o.Value, o.ModRev)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// Count returns how many objects of the bucket at prefix live in ns.
func (r *Reader) Count(prefix, ns string, keep func(value []byte) bool) (int64, error) {
	objs, _, err := r.Cache.List(prefix, prefix+ns+"/", nil)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, o := range objs {
		if keep == nil || keep(o.Value) {
			n++
		}
	}
	return n, nil
}

// CompareAndSwap writes obj at key if it is still at modRev; it returns
// storage.ErrConflict when someone else wrote first.
func (r *Reader) CompareAndSwap(ctx context.Context, key string, obj any, modRev int64) error {
	if acc, err := meta.Accessor(obj); err == nil {
		rv := acc.GetResourceVersion()
		acc.SetResourceVersion("")
		defer acc.SetResourceVersion(rv)
	}
	data, err := json.Marshal(obj)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	_, _, err = r.Store.Update(ctx, key, data, modRev)
	return err
}

// NewestDefault lists the cluster-scoped classes group/plural and returns
// the newest one isDefault marks (ties go to the smaller name), or nil: how
// upstream's DefaultStorageClass and DefaultIngressClass plugins choose
// when several classes are marked default.
func NewestDefault[T any, P interface {
	*T
	metav1.Object
}](r *Reader, group, plural string, isDefault func(P) bool) (P, error) {
	items, err := List[T](r, group, plural, "")
	if err != nil {
		return nil, err
	}
	var best P
	for _, it := range items {
		c := P(it)
		if !isDefault(c) {
			continue
		}
		if best == nil {
			best = c
			continue
		}
		ct, bt := c.GetCreationTimestamp(), best.GetCreationTimestamp()
		if ct.After(bt.Time) || (ct.Equal(&bt) && c.GetName() < best.GetName()) {
			best = c
		}
	}
	return best, nil
}
