package ingress

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The send timeout (proxy-send-timeout, nginx's proxy_send_timeout)
// bounds each wait while a request is written to a backend: from a write
// that would block (the backend stopped reading and the socket buffers
// are full) until the socket takes more. It is not a bound on the whole
// transmission: a backend that reads a large body slowly but steadily
// gets all of it. A write that waits longer fails with errSendTimeout;
// the exchange is abandoned (504 when no answer head went out yet) and
// the connection closed, never reused.
//
// What it costs: nothing in the common case. sendWriter writes through
// the socket's syscall.RawConn, the same write(2) net.Conn.Write makes,
// and sets the write deadline (a runtime timer update, no system call)
// only when write(2) says EAGAIN, just before the runtime's poller waits;
// after such a wait the deadline is cleared again. A request head sent
// on an idle keep-alive connection never waits, so the fast path, the
// lean loop and the epoll loop (which checks its own deadline, see
// epBackend.drive) make exactly the system calls and timer updates they
// made before. A deadline set before every write, as the read timeout
// does for reads, would cost a timer update per request.
//
// ReverseProxy's Transports write through sendConn (the same sendWriter);
// request bodies are also timed between two reads (sendBody, proxy.go),
// which catches an h2c backend that stops granting flow-control window
// (then no socket write ever blocks).

// defaultSendTimeout is nginx's proxy_send_timeout default.
const defaultSendTimeout = 60 * time.Second

// errSendTimeout: the backend did not take the request in time. It is an
// errBackendTimout (504, never retried).
var errSendTimeout = fmt.Errorf("%w: the request could not be sent", errBackendTimout)

// sendTimeoutOf is a route's send timeout (the default when unset).
func sendTimeoutOf(cfg *routeConfig) time.Duration {
	if cfg != nil && cfg.sendTimeout > 0 {
		return cfg.sendTimeout
	}
	return defaultSendTimeout
}

// sendWriter writes to a backend connection under the send timeout. One
// write at a time (pconn has one request at a time; sendConn locks).
type sendWriter struct {
	conn net.Conn
	rc   syscall.RawConn       // nil: not a socket we can write raw; every write sets a deadline first
	fn   func(fd uintptr) bool // rc.Write's callback, made once per connection (no allocation per write)
	// timeout is the current request's send timeout (0 = the default).
	timeout time.Duration
	// interrupted, when not nil, is set once the client went away and the
	// connection's deadlines were moved into the past (pconn.watch): a
	// deadline set here must not undo that.
	interrupted *atomic.Bool

	// The write in progress (writeSome).
	b       []byte
	n       int
	err     error
	d       time.Duration
	armed   bool
	armedAt int // n when the deadline was last set
}

func (w *sendWriter) init(c net.Conn, interrupted *atomic.Bool) {
	w.conn, w.interrupted = c, interrupted
	if rc := rawConnOf(c); rc != nil {
		w.rc = rc
		w.fn = w.writeSome
	}
}

func (w *sendWriter) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	d := w.timeout
	if d <= 0 {
		d = defaultSendTimeout
	}
	if w.rc == nil {
		_ = w.conn.SetWriteDeadline(time.Now().Add(d))
		w.keepInterruption()
		n, err := w.conn.Write(b)
		return n, w.timedOut(err, d)
	}
	w.b, w.n, w.err, w.d, w.armed, w.armedAt = b, 0, nil, d, false, 0
	err := w.rc.Write(w.fn)
	n, armed := w.n, w.armed
	if w.err != nil {
		err = &net.OpError{Op: "write", Net: "tcp", Source: w.conn.LocalAddr(), Addr: w.conn.RemoteAddr(), Err: os.NewSyscallError("write", w.err)}
	}
	w.b, w.err = nil, nil
	if armed {
		if err == nil {
			// The wait is over: a later write starts without a deadline.
			_ = w.conn.SetWriteDeadline(time.Time{})
			w.keepInterruption()
		}
		err = w.timedOut(err, d)
	}
	return n, err
}

// onBlock runs when write(2) would block, before the poller waits: the
// timeout runs from here, afresh after each write that made progress.
func (w *sendWriter) onBlock() {
	if w.armed && w.n == w.armedAt {
		return // no progress since the deadline was set (a spurious wake)
	}
	w.armed, w.armedAt = true, w.n
	_ = w.conn.SetWriteDeadline(time.Now().Add(w.d))
	w.keepInterruption()
}

// keepInterruption moves the connection's deadlines back into the past
// when the client went away (pconn.watch) and a deadline just set would
// have undone that; pconn.Read uses it for its body deadline too.
func (w *sendWriter) keepInterruption() {
	if w.interrupted != nil && w.interrupted.Load() {
		_ = w.conn.SetDeadline(aLongTimeAgo)
	}
}

// timedOut turns a passed write deadline into errSendTimeout (unless the
// deadline was the client going away).
func (w *sendWriter) timedOut(err error, d time.Duration) error {
	if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) || w.interrupted != nil && w.interrupted.Load() {
		return err
	}
	return fmt.Errorf("%w: the backend took nothing for %s: %w", errSendTimeout, d, err)
}

// sendConn is a connection of the proxy's http.Transports (ReverseProxy:
// request bodies, upgrades, h2c): its writes go through a sendWriter with
// the send timeout of the transport that dialed it.
type sendConn struct {
	net.Conn
	mu sync.Mutex
	w  sendWriter
}

func newSendConn(c net.Conn, timeout time.Duration) *sendConn {
	sc := &sendConn{Conn: c}
	sc.w.init(c, nil)
	sc.w.timeout = timeout
	return sc
}

func (c *sendConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.w.Write(b)
}
