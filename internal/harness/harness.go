// Package harness lets the real-cluster test harnesses (multinode,
// nodetest, testserver) run both under `go test` and in a program such as
// skiff-bench: T is the part of testing.TB they use, which *testing.T
// satisfies, and Run gives a program one.
package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// T is what the harnesses need of a test: testing.TB's logging, failing,
// skipping, cleanups and temporary folders.
type T interface {
	Helper()
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Skip(args ...any)
	Skipf(format string, args ...any)
	Cleanup(func())
	TempDir() string
	Failed() bool
}

// ErrSkipped wraps the reason a Run was skipped (T.Skip): what it needs is
// not on this machine.
var ErrSkipped = errors.New("skipped")

// Run calls fn with a T whose logs go to w, then runs its cleanups (last
// registered first, as testing does) and removes its temporary folders.
// Fatal and Skip end fn at once, as runtime.Goexit ends a test; like in a
// test, they must be called from fn's goroutine. Run returns nil when
// nothing failed, an error wrapping ErrSkipped when fn was skipped, and
// the failures otherwise.
func Run(w io.Writer, fn func(T)) error {
	r := &runner{w: w}
	r.call(func() { fn(r) })
	for {
		r.mu.Lock()
		n := len(r.cleanups)
		if n == 0 {
			r.mu.Unlock()
			break
		}
		f := r.cleanups[n-1]
		r.cleanups = r.cleanups[:n-1]
		r.mu.Unlock()
		r.call(f)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) > 0 {
		return errors.New(strings.Join(r.errs, "\n"))
	}
	if r.skipped != "" {
		return fmt.Errorf("%w: %s", ErrSkipped, r.skipped)
	}
	return nil
}

// stop is what Fatal and Skip panic with, recovered by call.
type stop struct{}

type runner struct {
	w        io.Writer
	mu       sync.Mutex
	errs     []string
	skipped  string
	cleanups []func()
}

// call runs f, recovering the panic of a Fatal or Skip in it.
func (r *runner) call(f func()) {
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(stop); !ok {
				panic(v)
			}
		}
	}()
	f()
}

func (r *runner) Helper() {}

func (r *runner) Logf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	msg := fmt.Sprintf(format, args...)
	if !strings.HasSuffix(msg, "\n") {
		msg += "\n"
	}
	_, _ = io.WriteString(r.w, msg)
}

func (r *runner) Errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.Logf("%s", msg)
	r.mu.Lock()
	r.errs = append(r.errs, msg)
	r.mu.Unlock()
}

func (r *runner) Fatal(args ...any) {
	r.Errorf("%s", strings.TrimSuffix(fmt.Sprintln(args...), "\n"))
	panic(stop{})
}

func (r *runner) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	panic(stop{})
}

func (r *runner) Skip(args ...any) {
	r.Skipf("%s", strings.TrimSuffix(fmt.Sprintln(args...), "\n"))
}

func (r *runner) Skipf(format string, args ...any) {
	r.mu.Lock()
	r.skipped = fmt.Sprintf(format, args...)
	r.mu.Unlock()
	panic(stop{})
}

func (r *runner) Cleanup(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, f)
}

// TempDir makes a new folder, removed by a cleanup registered now (so
// after the cleanups registered later, as testing does).
func (r *runner) TempDir() string {
	dir, err := os.MkdirTemp("", "skiff-harness-")
	if err != nil {
		r.Fatalf("harness: temporary folder: %v", err)
	}
	r.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			r.Errorf("harness: remove %s: %v", dir, err)
		}
	})
	return dir
}

func (r *runner) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.errs) > 0
}

// Poll calls fn every 500 ms, each call bounded by 15 s, until it returns
// "", and ends t with its last answer after timeout.
func Poll(ctx context.Context, t T, timeout time.Duration, fn func(context.Context) string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		cctx, ccancel := context.WithTimeout(ctx, 15*time.Second)
		last := fn(cctx)
		ccancel()
		if last == "" {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%v: %s", ctx.Err(), last)
		case <-tick.C:
		}
	}
}
