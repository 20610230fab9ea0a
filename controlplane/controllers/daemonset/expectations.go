package daemonset

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/sets"
)

// expectationsTimeout is how long unmet expectations block a sync before
// they are assumed lost (upstream's).
const expectationsTimeout = 5 * time.Minute

// expectations remember the creates and deletes a sync issued but the
// informer cache has not shown yet, so a sync on a stale cache does not
// create or delete again. One sync may both create and delete (surge).
type expectations struct {
	mu sync.Mutex
	m  map[string]*pending
}

type pending struct {
	adds int
	dels sets.Set[string]
	at   time.Time
}

func newExpectations() *expectations { return &expectations{m: map[string]*pending{}} }

func (e *expectations) expect(key string, adds int, dels []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m[key] = &pending{adds: adds, dels: sets.New(dels...), at: time.Now()}
}

func (e *expectations) creationObserved(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x, ok := e.m[key]; ok && x.adds > 0 {
		x.adds--
	}
}

func (e *expectations) deletionObserved(key, pod string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x, ok := e.m[key]; ok {
		x.dels.Delete(pod)
	}
}

func (e *expectations) satisfied(key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	x, ok := e.m[key]
	return !ok || (x.adds <= 0 && x.dels.Len() == 0) || time.Since(x.at) > expectationsTimeout
}

func (e *expectations) forget(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.m, key)
}
