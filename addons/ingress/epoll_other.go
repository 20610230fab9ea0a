//go:build !linux

package ingress

import (
	"errors"
	"net"
)

// The epoll loop is Linux only; elsewhere the lean loop runs with a goroutine
// per connection whatever Options.LeanGoroutines says.
const epollSupported = false

type epollServer struct{ loops []struct{} }

func (es *epollServer) stop(force bool) {}

func (s *leanServer) serveEpoll(ln net.Listener) error {
	return errors.New("epoll loop: not supported on this platform")
}

func (s *leanServer) epollIdle() int { return 0 }
