//go:build unix

package ingress

import (
	"net"
	"syscall"
)

// rawConnOf is the socket under c, for sendWriter's writes; nil when c is
// not one.
func rawConnOf(c net.Conn) syscall.RawConn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// writeSome is sendWriter's rc.Write callback: write(2) until w.b is out
// (true) or the socket is full (false: the poller waits for it, with the
// deadline onBlock set).
func (w *sendWriter) writeSome(fd uintptr) bool {
	for w.n < len(w.b) {
		m, err := syscall.Write(int(fd), w.b[w.n:])
		if m > 0 {
			w.n += m
		}
		switch err {
		case nil:
			if m <= 0 {
				w.err = syscall.EIO // (write(2) of a socket never takes nothing without saying why)
				return true
			}
		case syscall.EINTR:
		case syscall.EAGAIN:
			w.onBlock()
			return false
		default:
			w.err = err
			return true
		}
	}
	return true
}
