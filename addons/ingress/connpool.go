package ingress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Keep-alive pools of the fast path (fastpath.go): HTTP/1.1 connections to
// one endpoint, borrowed by one request at a time and put back once the
// answer was read to its end. No goroutine sits on an idle connection;
// a timer per pool closes the ones idle too long.
const (
	maxIdlePerEndpoint  = 512
	idleConnTimeout     = 90 * time.Second
	idleSweepInterval   = 30 * time.Second
	maxResponseHeader   = 1 << 20
	staleCheckAfterIdle = time.Second // idle longer: look for a close by the backend before reuse
)

var errResponseHeaderTooLarge = errors.New("backend response headers exceed 1 MiB")

// aLongTimeAgo is a deadline that interrupts blocked reads and writes.
var aLongTimeAgo = time.Unix(1, 0)

// pconn is one HTTP/1.1 connection to an endpoint. It is the source of
// its own bufio.Reader so that it can cap the response header size and
// notice whether a reused connection answered anything at all.
type pconn struct {
	conn   net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	limit  int64 // bytes reads may still return (header cap)
	nread  int64 // bytes read since the request was written
	idleAt int64 // unix ns when it went idle
	reused bool  // served a request before this one
	// bodyIdle > 0: once the answer head is in, every read of the body
	// must return within it (nginx's proxy_read_timeout, the longest gap
	// between two reads), else it fails with a timeout.
	bodyIdle time.Duration
	// interrupted is set when the client went away and the connection's
	// deadline was moved into the past (context.AfterFunc).
	interrupted atomic.Bool
	stopAfter   func() bool
	// sw writes the request head (bw writes here) under the route's send
	// timeout, set per request (sendwrite.go).
	sw sendWriter
}

// newPconn wraps a connection to an endpoint.
func newPconn(c net.Conn) *pconn {
	pc := &pconn{conn: c, limit: math.MaxInt64}
	pc.sw.init(c, &pc.interrupted)
	pc.br = bufio.NewReaderSize(pc, 16<<10)
	pc.bw = bufio.NewWriterSize(&pc.sw, 4<<10)
	return pc
}

func (pc *pconn) Read(b []byte) (int, error) {
	if pc.limit <= 0 {
		return 0, errResponseHeaderTooLarge
	}
	if int64(len(b)) > pc.limit {
		b = b[:pc.limit]
	}
	if pc.bodyIdle > 0 {
		_ = pc.conn.SetReadDeadline(time.Now().Add(pc.bodyIdle))
		// The client may have gone away between the store and our
		// deadline: keep the interruption (see watch).
		pc.sw.keepInterruption()
	}
	n, err := pc.conn.Read(b)
	pc.limit -= int64(n)
	pc.nread += int64(n)
	return n, err
}

// watch ties the connection to the request's context: when the client
// goes away, blocked reads and writes on the connection fail at once.
func (pc *pconn) watch(ctx context.Context) {
	pc.interrupted.Store(false)
	pc.stopAfter = context.AfterFunc(ctx, func() {
		pc.interrupted.Store(true)
		_ = pc.conn.SetDeadline(aLongTimeAgo)
	})
}

// release ends the watch; false when it fired (the connection's deadline
// is in the past and it must not be reused).
func (pc *pconn) release() bool {
	if pc.stopAfter == nil {
		return true
	}
	ok := pc.stopAfter()
	pc.stopAfter = nil
	return ok && !pc.interrupted.Load()
}

// headersRead lifts the header cap once the response headers are in; the
// read timeout now bounds each read of the body, not the whole of it
// (Read sets the deadline, and keeps an interruption that a deadline set
// since has overridden).
func (pc *pconn) headersRead(readTimeout time.Duration) {
	pc.limit = math.MaxInt64
	pc.bodyIdle = readTimeout
}

func (pc *pconn) close() {
	if pc.stopAfter != nil {
		pc.stopAfter()
		pc.stopAfter = nil
	}
	_ = pc.conn.Close()
}

// connPool holds the idle connections to one endpoint, most recently
// used last.
type connPool struct {
	mu    sync.Mutex
	idle  []*pconn
	timer *time.Timer // sweeps while there are idle connections
}

// get returns an idle connection that is still usable, or nil.
func (cp *connPool) get(now int64) *pconn {
	for {
		cp.mu.Lock()
		n := len(cp.idle)
		if n == 0 {
			cp.mu.Unlock()
			return nil
		}
		pc := cp.idle[n-1]
		cp.idle[n-1] = nil
		cp.idle = cp.idle[:n-1]
		cp.mu.Unlock()
		idle := time.Duration(now - pc.idleAt)
		if idle > idleConnTimeout {
			pc.close()
			continue
		}
		if idle > staleCheckAfterIdle {
			// The last answer's read deadline is still set (the next
			// request sets its own); a passed one would fail the peek.
			_ = pc.conn.SetReadDeadline(time.Time{})
			if peerClosed(pc.conn) {
				pc.close()
				continue
			}
		}
		pc.reused = true
		return pc
	}
}

// put keeps a connection whose last answer was read to its end.
func (cp *connPool) put(reg *sync.Map, pc *pconn, now int64) {
	pc.idleAt = now
	cp.mu.Lock()
	if len(cp.idle) >= maxIdlePerEndpoint {
		cp.mu.Unlock()
		pc.close()
		return
	}
	cp.idle = append(cp.idle, pc)
	if cp.timer == nil {
		reg.Store(cp, struct{}{})
		cp.timer = time.AfterFunc(idleSweepInterval, func() { cp.sweep(reg) })
	}
	cp.mu.Unlock()
}

// sweep closes connections idle longer than idleConnTimeout; the timer
// stops (and the pool leaves the registry) once none are idle.
func (cp *connPool) sweep(reg *sync.Map) {
	cutoff := time.Now().Add(-idleConnTimeout).UnixNano()
	var old []*pconn
	cp.mu.Lock()
	i := 0
	for i < len(cp.idle) && cp.idle[i].idleAt < cutoff {
		i++
	}
	if i > 0 {
		old = append(old, cp.idle[:i]...)
		n := copy(cp.idle, cp.idle[i:])
		clear(cp.idle[n:])
		cp.idle = cp.idle[:n]
	}
	if len(cp.idle) > 0 {
		cp.timer.Reset(idleSweepInterval)
	} else {
		cp.timer = nil
		reg.Delete(cp)
	}
	cp.mu.Unlock()
	for _, pc := range old {
		pc.close()
	}
}

// closeAll closes every idle connection (shutdown).
func (cp *connPool) closeAll(reg *sync.Map) {
	cp.mu.Lock()
	idle := cp.idle
	cp.idle = nil
	if cp.timer != nil {
		cp.timer.Stop()
		cp.timer = nil
	}
	reg.Delete(cp)
	cp.mu.Unlock()
	for _, pc := range idle {
		pc.close()
	}
}

// idleCount is the number of idle connections (tests).
func (cp *connPool) idleCount() int {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return len(cp.idle)
}

// dialEndpoint opens a new connection within the connect timeout.
func (p *Proxy) dialEndpoint(ctx context.Context, addr string, timeout time.Duration) (*pconn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := p.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	return newPconn(c), nil
}

// closeIdleConnections closes the idle fast-path connections of every
// endpoint.
func (p *Proxy) closeIdleConnections() {
	p.pools.Range(func(k, _ any) bool {
		k.(*connPool).closeAll(&p.pools)
		return true
	})
}
