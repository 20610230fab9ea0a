package framework

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
)

// DefaultParallelism is upstream's default number of goroutines for
// filtering and scoring.
const DefaultParallelism = 16

type parallelizer struct{ workers int }

// NewParallelizer returns a Parallelizer with at most workers goroutines.
func NewParallelizer(workers int) Parallelizer {
	if workers <= 0 {
		workers = DefaultParallelism
	}
	return parallelizer{workers: workers}
}

// Until runs work(i) for i in [0, pieces) in chunks across the workers,
// stopping early when ctx ends.
func (p parallelizer) Until(ctx context.Context, pieces int, work func(i int)) {
	if pieces <= 0 {
		return
	}
	chunk := max(1, int(math.Sqrt(float64(pieces))))
	workers := min(p.workers, (pieces+chunk-1)/chunk)
	if workers <= 1 {
		for i := 0; i < pieces; i++ {
			if ctx.Err() != nil {
				return
			}
			work(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	wg.Add(workers)
	for w := 0; w < workers; w++ {
		go func() {
			defer wg.Done()
			for {
				start := int(next.Add(int64(chunk))) - chunk
				if start >= pieces || ctx.Err() != nil {
					return
				}
				for i := start; i < min(start+chunk, pieces); i++ {
					work(i)
				}
			}
		}()
	}
	wg.Wait()
}
