package shipper

import (
	"testing"
	"time"
)

// TestBudget: acquisitions beyond the bound wait, in order; a weight over
// the bound counts as the whole bound; a stopped waiter holds nothing.
func TestBudget(t *testing.T) {
	b := newBudget(100)
	if w, err := b.acquire(60, nil, nil); err != nil || w != 60 {
		t.Fatalf("acquire 60: %d %v", w, err)
	}
	big := make(chan int64)
	go func() { w, _ := b.acquire(500, nil, nil); big <- w }() // clipped to 100: waits for an empty budget
	time.Sleep(20 * time.Millisecond)
	small := make(chan int64)
	go func() { w, _ := b.acquire(10, nil, nil); small <- w }() // fits, but queues behind the big one
	select {
	case <-big:
		t.Fatal("over-bound acquisition granted while 60 bytes are held")
	case <-small:
		t.Fatal("a later small acquisition overtook a waiting large one")
	case <-time.After(50 * time.Millisecond):
	}
	b.release(60)
	if w := <-big; w != 100 {
		t.Fatalf("big weight %d, want the bound 100", w)
	}
	if used, peak := b.usage(); used != 100 || peak != 100 {
		t.Fatalf("usage %d peak %d", used, peak)
	}
	b.release(100)
	if w := <-small; w != 10 {
		t.Fatalf("small weight %d", w)
	}
	stop := make(chan struct{})
	done := make(chan error)
	go func() { _, err := b.acquire(95, stop, nil); done <- err }()
	time.Sleep(20 * time.Millisecond)
	close(stop)
	if err := <-done; err != errStopped {
		t.Fatalf("stopped waiter: %v", err)
	}
	b.release(10)
	if used, peak := b.usage(); used != 0 || peak != 100 {
		t.Fatalf("after release: usage %d peak %d", used, peak)
	}
}
