package apiserver

import (
	"testing"

	"github.com/skiffhq/skiff/controlplane/storage"
)

// FilterCachedReads makes f stand in for the watch cache in updates' first
// attempts until the test ends.
func FilterCachedReads(t testing.TB, f func(key string, kv storage.KV, ok bool) (storage.KV, bool)) {
	cachedKVFilter.Store(&f)
	t.Cleanup(func() { cachedKVFilter.Store(nil) })
}
