//go:build !linux

package dns

import "net"

// batchConn exists on Linux only (recvmmsg/sendmmsg); elsewhere the UDP
// sockets are served one datagram at a time (fastReader.ReadUDP).
type batchConn struct{ net.PacketConn }

func (b *batchConn) next() ([]byte, net.Addr, error) {
	panic("dns: batched UDP is Linux only")
}

// udpConn returns c as miekg/dns serves it: without batching here.
func udpConn(_ *Handler, c *net.UDPConn, _ bool) (net.PacketConn, error) { return c, nil }
