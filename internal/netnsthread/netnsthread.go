// Package netnsthread runs a function on an OS thread moved into a new,
// empty network namespace (to bind-mount it, for example), and moves the
// thread back before it is handed to other goroutines again. Joining an
// existing namespace is containerd's netns.LoadNetNS(path).Do, which CNI's
// ns package implements the same way; neither creates one at a chosen
// path, and containerd's creation never unlocks its thread.
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

// InNew locks a new goroutine to its thread, moves the thread into a new
// network namespace, calls f there, then moves the thread back to the
// namespace it started in. A thread that cannot go back stays locked and
// ends with the goroutine. InNew returns once all of that is done, with
// f's error or the move's.
func InNew(f func() error) error {
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
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			// Unshare moves the thread or fails without moving it.
			runtime.UnlockOSThread()
			done <- fmt.Errorf("netnsthread: unshare: %w", err)
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
