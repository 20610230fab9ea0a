//go:build !linux

package ingress

import "net"

// peerClosed is only implemented on Linux; elsewhere a connection the
// backend closed is found when the request on it fails.
func peerClosed(net.Conn) bool { return false }
