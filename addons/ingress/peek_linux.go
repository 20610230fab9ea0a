package ingress

import (
	"net"
	"syscall"
)

// peerClosed reports whether an idle connection is no longer usable: the
// backend closed it (EOF), reset it, or sent bytes nobody asked for. One
// non-blocking MSG_PEEK recv; nothing is consumed.
func peerClosed(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	closed := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case rerr == syscall.EAGAIN || rerr == syscall.EINTR:
			// Nothing to read: the connection is idle and open.
		default:
			// EOF (n == 0), an error, or unexpected data.
			closed = rerr != nil || n >= 0
		}
		return true // never wait for readiness
	})
	return closed || err != nil
}
