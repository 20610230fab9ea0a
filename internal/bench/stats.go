package bench

import (
	"context"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// percentile returns the nearest-rank percentile p (0..1) of sorted
// durations, in milliseconds.
func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return ms(sorted[i])
}

// ms converts d to milliseconds rounded to microseconds.
func ms(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Microsecond)) / 1000
}

// round3 rounds to three decimals so the JSON stays readable.
func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// Median returns the median of xs (0 for none).
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// sample is the outcome of one run of a parallel phase.
type sample struct {
	ops       int
	errors    int
	firstErr  error
	elapsed   time.Duration
	latencies []time.Duration
}

func (s sample) opsPerSec() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(s.ops) / s.elapsed.Seconds()
}

// runParallel runs op for item indexes 0..count-1 on workers goroutines,
// stopping early when maxDur has passed or ctx ends. op gets the worker
// number and the item index; items are handed out in order.
func runParallel(ctx context.Context, workers, count int, maxDur time.Duration, op func(ctx context.Context, worker, item int) error) sample {
	var (
		next     atomic.Int64
		mu       sync.Mutex
		out      sample
		wg       sync.WaitGroup
		deadline = time.Now().Add(maxDur)
	)
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			errs := 0
			var firstErr error
			for ctx.Err() == nil && time.Now().Before(deadline) {
				i := int(next.Add(1) - 1)
				if i >= count {
					break
				}
				t0 := time.Now()
				if err := op(ctx, w, i); err != nil {
					if ctx.Err() != nil {
						break // cut short by the end of the phase
					}
					errs++
					if firstErr == nil {
						firstErr = err
					}
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			out.ops += len(lat)
			out.errors += errs
			if out.firstErr == nil {
				out.firstErr = firstErr
			}
			out.latencies = append(out.latencies, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	out.elapsed = time.Since(start)
	slices.Sort(out.latencies)
	return out
}
