package shipper

import (
	"errors"
	"sync"
)

// errStopped is what budget.acquire returns when one of its stop channels
// closed first.
var errStopped = errors.New("shipper: stopped while waiting for buffer space")

// budget bounds the bytes of the documents read but not yet acknowledged
// (MaxInFlightBytes). Waiters are served in order, so a large document is
// not starved by a stream of small ones; a document larger than the whole
// budget counts as the whole budget and is shipped alone.
type budget struct {
	mu      sync.Mutex
	max     int64
	used    int64
	peak    int64
	waiters []*budgetWaiter
}

type budgetWaiter struct {
	n     int64
	ready chan struct{}
}

func newBudget(max int64) *budget { return &budget{max: max} }

// clip is the weight n counts for: at most the whole budget.
func (b *budget) clip(n int64) int64 { return min(max(n, 1), b.max) }

// acquire waits until n bytes (clipped) fit, or until stop or abandon
// closes (errStopped, nothing held; a nil channel never closes). It
// returns the weight to release.
func (b *budget) acquire(n int64, stop, abandon <-chan struct{}) (int64, error) {
	n = b.clip(n)
	b.mu.Lock()
	if len(b.waiters) == 0 && b.used+n <= b.max {
		b.take(n)
		b.mu.Unlock()
		return n, nil
	}
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	b.waiters = append(b.waiters, w)
	b.mu.Unlock()
	select {
	case <-w.ready:
		return n, nil
	case <-stop:
	case <-abandon:
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-w.ready: // granted meanwhile: give it back
		b.used -= n
	default:
		for i, o := range b.waiters {
			if o == w {
				b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
				break
			}
		}
	}
	b.grantLocked()
	return 0, errStopped
}

// release returns n bytes (as acquire returned them).
func (b *budget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	b.grantLocked()
	b.mu.Unlock()
}

func (b *budget) take(n int64) {
	b.used += n
	b.peak = max(b.peak, b.used)
}

// grantLocked wakes the waiters at the head of the queue that fit now.
func (b *budget) grantLocked() {
	for len(b.waiters) > 0 {
		w := b.waiters[0]
		if b.used+w.n > b.max {
			return
		}
		b.take(w.n)
		close(w.ready)
		b.waiters = b.waiters[1:]
	}
}

// usage returns the bytes held now and the most ever held.
func (b *budget) usage() (used, peak int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used, b.peak
}
