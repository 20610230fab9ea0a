package backend

import "k8s.io/apimachinery/pkg/runtime/schema"

// CachedObjects returns what the shared cache's informer store holds for
// gvr (nil when the kind is not cached), for tests to inspect.
func CachedObjects(s *Server, gvr schema.GroupVersionResource) []any {
	s.cache.mu.Lock()
	k := s.cache.kinds[gvr]
	s.cache.mu.Unlock()
	if k == nil {
		return nil
	}
	return k.informer.GetStore().List()
}

// ExecSessions is the number of exec relays open.
func ExecSessions() int64 { return execSessions.Load() }

// ExecThrottled is the number of exec browser frames that waited for the
// rate limit.
func ExecThrottled() int64 { return execThrottled.Load() }
