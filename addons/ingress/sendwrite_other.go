//go:build !unix

package ingress

import (
	"net"
	"syscall"
)

// rawConnOf: elsewhere sendWriter sets a write deadline before every
// write instead of only when one would block.
func rawConnOf(net.Conn) syscall.RawConn { return nil }

func (w *sendWriter) writeSome(uintptr) bool { return true }
