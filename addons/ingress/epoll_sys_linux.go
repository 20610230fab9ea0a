//go:build linux

package ingress

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The epoll loop's sockets are non-blocking, so their reads, writes and
// polls never wait in the kernel: they are made as raw system calls,
// without the runtime's entersyscall/exitsyscall. A P in a system call
// (unix.Read and friends) is one sysmon may hand to another thread when
// the call outlasts its 20 µs tick — a loopback write often does, as it
// runs the receiver's TCP processing — and every such handoff wakes a
// thread (futex) and makes the loop find a P again when the call returns.
// The loop does the same work either way; raw calls keep it on its P.
// (The one wait that blocks goes through the runtime's netpoller, see
// epollLoop.wait.)

func rawRead(fd int, p []byte) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

func rawWrite(fd int, p []byte) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// rawEpollPoll is epoll_wait without waiting (timeout 0).
func rawEpollPoll(epfd int, events []unix.EpollEvent) (int, error) {
	if len(events) == 0 {
		return 0, nil
	}
	r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
