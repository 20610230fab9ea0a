// Package serviceip allocates Service cluster IPs and node ports.
//
// Every reservation is one etcd key outside the registry
// (/skiff/ranges/serviceips/<ip>, /skiff/ranges/servicenodeports/<port>)
// written with create-if-absent, so concurrent creates on one or several API
// servers sharing an etcd never hand out the same value twice. The value
// names the owning Service (namespace, name, UID) so that a release only
// removes a reservation its Service still holds.
//
// Allocator implements apiserver.StorageHook for core/v1 services; Repair
// reconciles reservations with the stored Services (startup and periodic).
package serviceip

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/skiffhq/skiff/controlplane/storage"
	"k8s.io/apimachinery/pkg/types"
)

// Key prefixes of the reservations.
const (
	IPPrefix       = "/skiff/ranges/serviceips/"
	NodePortPrefix = "/skiff/ranges/servicenodeports/"
)

// Sentinel errors, worded as upstream's allocators word them.
var (
	ErrAllocated = errors.New("already allocated")
	ErrFull      = errors.New("range is full")
)

// owner is the value of a reservation key.
type owner struct {
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	UID       types.UID `json:"uid"`
	// At is when the reservation was made; the repair pass leaves young
	// reservations alone because their Service may still be on its way.
	At time.Time `json:"at"`
}

func (o owner) encode() []byte {
	b, _ := json.Marshal(o)
	return b
}

func decodeOwner(b []byte) (owner, error) {
	var o owner
	err := json.Unmarshal(b, &o)
	return o, err
}

// span is a contiguous range of values, each addressed by an offset, whose
// reservations live under prefix.
type span struct {
	store  *storage.Store
	prefix string
	size   int
	// static offsets [0, static) are left for requested values: dynamic
	// allocation tries the rest first, as upstream's allocators do.
	static int
	// name renders an offset as the key suffix; parse reverses it.
	name  func(off int) string
	parse func(s string) (int, bool)
}

// staticBand is upstream's split of a range between static and dynamic
// allocation: min(max(lo, size/step), hi), none for tiny ranges.
func staticBand(size, lo, hi, step int) int {
	if size <= lo {
		return 0
	}
	n := size / step
	if n < lo {
		return lo
	}
	if n > hi {
		return hi
	}
	return n
}

func (s *span) key(off int) string { return s.prefix + s.name(off) }

// reserve takes offset off for o. Holding it already is not an error.
func (s *span) reserve(ctx context.Context, off int, o owner) error {
	_, err := s.store.Create(ctx, s.key(off), o.encode())
	if err == nil {
		return nil
	}
	if !errors.Is(err, storage.ErrExists) {
		return err
	}
	return s.heldBy(ctx, off, o)
}

// heldBy returns nil when off is free or held by o, ErrAllocated otherwise.
func (s *span) heldBy(ctx context.Context, off int, o owner) error {
	kv, err := s.store.Get(ctx, s.key(off))
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	cur, err := decodeOwner(kv.Value)
	if err == nil && cur.UID == o.UID && o.UID != "" {
		return nil
	}
	return ErrAllocated
}

// next reserves (or, for a dry run, finds) a free offset.
func (s *span) next(ctx context.Context, o owner, dryRun bool) (int, error) {
	try := func(off int) (bool, error) {
		if dryRun {
			err := s.heldBy(ctx, off, owner{})
			if errors.Is(err, ErrAllocated) {
				return false, nil
			}
			return err == nil, err
		}
		_, err := s.store.Create(ctx, s.key(off), o.encode())
		if errors.Is(err, storage.ErrExists) {
			return false, nil
		}
		return err == nil, err
	}
	dyn := s.size - s.static
	// A few random guesses in the dynamic band: cheap while it is sparse.
	for i := 0; i < 4 && dyn > 0; i++ {
		off := s.static + rand.IntN(dyn)
		ok, err := try(off)
		if err != nil {
			return 0, err
		}
		if ok {
			return off, nil
		}
	}
	// Crowded: read what is taken and walk the free offsets from a random
	// start, dynamic band first, then the static band.
	taken, err := s.taken(ctx)
	if err != nil {
		return 0, err
	}
	walk := func(lo, n int) (int, bool, error) {
		if n <= 0 {
			return 0, false, nil
		}
		start := rand.IntN(n)
		for i := 0; i < n; i++ {
			off := lo + (start+i)%n
			if taken[off] {
				continue
			}
			ok, err := try(off)
			if err != nil {
				return 0, false, err
			}
			if ok {
				return off, true, nil
			}
		}
		return 0, false, nil
	}
	if off, ok, err := walk(s.static, dyn); err != nil || ok {
		return off, err
	}
	if off, ok, err := walk(0, s.static); err != nil || ok {
		return off, err
	}
	return 0, ErrFull
}

// taken lists the reserved offsets.
func (s *span) taken(ctx context.Context) (map[int]bool, error) {
	out := map[int]bool{}
	err := s.each(ctx, func(off int, _ storage.KV) { out[off] = true })
	return out, err
}

// each calls fn for every reservation under the prefix.
func (s *span) each(ctx context.Context, fn func(off int, kv storage.KV)) error {
	start := ""
	for {
		res, err := s.store.List(ctx, s.prefix, start, 0, 1000)
		if err != nil {
			return fmt.Errorf("list reservations: %w", err)
		}
		for _, kv := range res.KVs {
			if off, ok := s.parse(kv.Key[len(s.prefix):]); ok {
				fn(off, kv)
			}
		}
		if !res.More || len(res.KVs) == 0 {
			return nil
		}
		start = res.KVs[len(res.KVs)-1].Key + "\x00"
	}
}

// release frees off if o still holds it.
func (s *span) release(ctx context.Context, off int, o owner) error {
	key := s.key(off)
	kv, err := s.store.Get(ctx, key)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	cur, err := decodeOwner(kv.Value)
	if err != nil || cur.UID != o.UID {
		return nil
	}
	_, err = s.store.Delete(ctx, key, kv.ModRev)
	if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrConflict) {
		return nil
	}
	return err
}
