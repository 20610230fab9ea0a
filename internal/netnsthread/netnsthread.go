// Package netnsthread runs a function on an OS thread that is moved into
// another network namespace and moved back before it is handed to other
// goroutines again.
//
// The move back is the normal path, not the thread's end: a locked
// goroutine that exits makes the runtime end its thread, except the main
// thread, which the runtime only parks. A parked main thread in a pod's
// namespace would make /proc/self/net and /proc/self/ns/net describe the
// pod instead of the host for the life of the process.
package netnsthread

import (
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// Run locks a new goroutine to its thread, calls enter (which moves the
// thread into a namespace: unshare or setns), then f, then moves the thread
// back to the namespace it started in. If the thread cannot go back it stays
// locked and ends with the goroutine. Run returns once all of that is done.
func Run(enter, f func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("netnsthread: open current namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := enter(); err != nil {
			// enter may have half-moved the thread; only a verified return
			// unlocks it.
			if unix.Setns(orig, unix.CLONE_NEWNET) == nil {
				runtime.UnlockOSThread()
			}
			done <- err
			return
		}
		ferr := f()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			done <- errors.Join(ferr, fmt.Errorf("netnsthread: return to the original namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
}

// Enter returns an enter function for Run that joins the namespace at path
// (a bind mount or /proc/PID/ns/net).
func Enter(path string) func() error {
	return func() error {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("netnsthread: open namespace %s: %w", path, err)
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("netnsthread: enter namespace %s: %w", path, err)
		}
		return nil
	}
}

// Unshare is an enter function for Run that moves the thread into a new,
// empty network namespace.
func Unshare() error {
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("netnsthread: unshare: %w", err)
	}
	return nil
}
