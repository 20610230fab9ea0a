package replicaset

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/sets"
)

// expectationsTimeout is how long unmet expectations block a sync before
// they are assumed lost (upstream's ExpectationsTimeout).
const expectationsTimeout = 5 * time.Minute

// Expectations remember the creates and deletes a controller has issued but
// not yet seen in its informer cache, so a sync on a stale cache does not
// create or delete again. Deletes are tracked by pod key so a repeated
// delete event is counted once.
type Expectations struct {
	mu sync.Mutex
	m  map[string]*expectation
}

type expectation struct {
	adds int
	dels sets.Set[string]
	at   time.Time
}

// NewExpectations returns empty expectations.
func NewExpectations() *Expectations { return &Expectations{m: map[string]*expectation{}} }

// ExpectCreations records n creates issued for key.
func (e *Expectations) ExpectCreations(key string, n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m[key] = &expectation{adds: n, dels: sets.New[string](), at: time.Now()}
}

// ExpectDeletions records deletes issued for key, by pod key.
func (e *Expectations) ExpectDeletions(key string, pods []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m[key] = &expectation{dels: sets.New(pods...), at: time.Now()}
}

// CreationObserved lowers the pending creates of key by one.
func (e *Expectations) CreationObserved(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x, ok := e.m[key]; ok && x.adds > 0 {
		x.adds--
	}
}

// DeletionObserved marks the delete of pod as seen.
func (e *Expectations) DeletionObserved(key, pod string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x, ok := e.m[key]; ok {
		x.dels.Delete(pod)
	}
}

// Satisfied reports whether key may sync: nothing pending, nothing
// recorded, or the record is older than the timeout.
func (e *Expectations) Satisfied(key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	x, ok := e.m[key]
	if !ok {
		return true
	}
	return (x.adds <= 0 && x.dels.Len() == 0) || time.Since(x.at) > expectationsTimeout
}

// Delete forgets key.
func (e *Expectations) Delete(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.m, key)
}
