//go:build linux

package ingress

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The epoll loop (the default on Linux; Options.LeanGoroutines turns it
// off) serves what the lean
// loop serves without a goroutine per connection: one loop per CPU waits
// in epoll_wait on non-blocking sockets — the listener (EPOLLEXCLUSIVE),
// its client connections and their backend connections — and drives each
// request from head to answer in that loop: head.go parses, the lean
// loop's routing, request head, answer head and error answers are reused
// (leanConn's methods write into the connection's output buffer), the
// answer head and body go out with one write where they fit, and idle
// backend connections are kept per loop and endpoint. What the loop does
// not do itself it hands on with every byte read:
//   - a request the lean loop would hand to net/http goes to net/http
//     (the same handoff);
//   - an answer that is not a plain one with a Content-Length (1xx, 101,
//     chunked or close-delimited bodies) "escapes": both connections
//     leave the loop and a goroutine finishes the request with the lean
//     loop's relay, then serves the client connection as the lean loop
//     does from then on;
//   - new backend connections are dialed by a goroutine with the
//     proxy's dialer (the same errors, timeouts and retries) and join
//     the loop.
// Timeouts (header, idle, response head) are checked by a sweep every
// 100 ms.

const (
	epollSweep    = 100 * time.Millisecond
	epollMaxEvent = 256
	epollReadSize = 16 << 10
	// epollHeadBuf: a backend connection's buffer for answer heads (and
	// the body bytes that come with them); kept while idle.
	epollHeadBuf = 4 << 10
)

type epollServer struct {
	s     *leanServer
	loops []*epollLoop
	lnfd  int // our dup of the listener's socket
	wg    sync.WaitGroup
}

// epollSupported: the epoll loop exists on this platform.
const epollSupported = true

// serveEpoll runs the loops until Shutdown; it is Serve's body with
// the epoll loop (the default; see Options.LeanGoroutines).
func (s *leanServer) serveEpoll(ln net.Listener) error {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return fmt.Errorf("epoll loop: listener %T has no file descriptor", ln)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("epoll loop: %w", err)
	}
	lnfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) { lnfd, derr = unix.Dup(int(fd)) }); err != nil {
		return fmt.Errorf("epoll loop: %w", err)
	}
	if derr != nil {
		return fmt.Errorf("epoll loop: dup listener: %w", derr)
	}
	if err := unix.SetNonblock(lnfd, true); err != nil {
		unix.Close(lnfd)
		return fmt.Errorf("epoll loop: %w", err)
	}
	es := &epollServer{s: s, lnfd: lnfd}
	n := runtime.GOMAXPROCS(0)
	for range n {
		l, err := newEpollLoop(es)
		if err != nil {
			for _, o := range es.loops {
				o.closeFDs()
			}
			unix.Close(lnfd)
			return err
		}
		es.loops = append(es.loops, l)
	}
	s.mu.Lock()
	if s.closing.Load() {
		// Shut down before the loops ran: Shutdown may be waiting on s.wg
		// already, which must not be added to from zero now.
		s.mu.Unlock()
		for _, l := range es.loops {
			l.closeFDs()
		}
		unix.Close(lnfd)
		return http.ErrServerClosed
	}
	s.epoll = es
	// Counted under s.mu: Shutdown sets closing, then takes s.mu before it
	// waits, so it waits for these (as the goroutine loop's connections).
	s.wg.Add(len(es.loops))
	s.mu.Unlock()
	srvDone := make(chan struct{})
	go func() {
		defer close(srvDone)
		_ = s.srv.Serve(s.hand)
	}()
	for _, l := range es.loops {
		es.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer es.wg.Done()
			l.run()
		}()
	}
	es.wg.Wait()
	unix.Close(lnfd)
	if s.closing.Load() {
		return http.ErrServerClosed
	}
	_ = s.hand.Close()
	<-srvDone
	return errors.New("epoll loop stopped")
}

// stop wakes every loop: they stop accepting, close idle connections and
// return once their connections are gone (force: at once).
func (es *epollServer) stop(force bool) {
	for _, l := range es.loops {
		l.post(func() {
			if force {
				l.force = true
			}
		})
	}
}

type epollLoop struct {
	es   *epollServer
	s    *leanServer
	epfd int
	// epf holds epfd (non-blocking) in the runtime's netpoller: the loop
	// parks there when it has nothing to do (wait).
	epf      *os.File
	eprc     syscall.RawConn
	epDL     time.Time // epf's read deadline: the next sweep
	waitN    int
	waitErr  error
	waitPoll func(fd uintptr) bool
	wakefd   int
	lnOn     bool
	force    bool
	socks    map[int]epollSock
	idle     map[*endpoint][]*epBackend
	events   []unix.EpollEvent
	rbuf     []byte // scratch for reads
	now      time.Time
	// reqW writes request heads into a backend's wbuf (reqDst).
	reqW   *bufio.Writer
	reqDst appendBuf
	// headSrc and headBR read answer heads (parse).
	headSrc bytes.Reader
	headBR  *bufio.Reader

	mu     sync.Mutex
	posted []func()

	lastSweep time.Time
}

// epollSock is a client or backend socket of the loop.
type epollSock interface {
	event(ev uint32)
}

func newEpollLoop(es *epollServer) (*epollLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	wfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	l := &epollLoop{es: es, s: es.s, epfd: epfd, wakefd: wfd, socks: map[int]epollSock{},
		idle: map[*endpoint][]*epBackend{}, events: make([]unix.EpollEvent, epollMaxEvent), rbuf: make([]byte, epollReadSize),
		reqW: bufio.NewWriterSize(nil, leanBufSize), headBR: bufio.NewReaderSize(nil, 4096)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wfd)}); err != nil {
		l.closeFDs()
		return nil, fmt.Errorf("epoll_ctl eventfd: %w", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, es.lnfd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLEXCLUSIVE, Fd: int32(es.lnfd)}); err != nil {
		l.closeFDs()
		return nil, fmt.Errorf("epoll_ctl listener: %w", err)
	}
	l.lnOn = true
	if err := unix.SetNonblock(epfd, true); err != nil {
		l.closeFDs()
		return nil, fmt.Errorf("epoll fd: %w", err)
	}
	l.epf = os.NewFile(uintptr(epfd), "epoll")
	rc, err := l.epf.SyscallConn()
	if err != nil {
		l.closeFDs()
		return nil, fmt.Errorf("epoll fd: %w", err)
	}
	l.eprc = rc
	l.waitPoll = func(fd uintptr) bool {
		l.waitN, l.waitErr = rawEpollPoll(int(fd), l.events)
		if errors.Is(l.waitErr, unix.EINTR) {
			l.waitN, l.waitErr = 0, nil
		}
		return l.waitN > 0 || l.waitErr != nil
	}
	return l, nil
}

func (l *epollLoop) closeFDs() {
	if l.epf != nil {
		l.epf.Close()
	} else {
		unix.Close(l.epfd)
	}
	unix.Close(l.wakefd)
}

// wait parks the loop in the runtime's netpoller until its epoll fd has
// events or the next sweep is due, then takes the events. An epoll_wait
// that blocks in the kernel would hold the loop's P in a system call,
// which sysmon hands to another thread (a futex wake) and the loop must
// get back when the call returns; parked, the loop costs what a
// goroutine waiting on a socket costs.
func (l *epollLoop) wait() (int, error) {
	if dl := l.lastSweep.Add(epollSweep); !dl.Equal(l.epDL) {
		l.epDL = dl
		if err := l.epf.SetReadDeadline(dl); err != nil {
			return 0, fmt.Errorf("epoll deadline: %w", err)
		}
	}
	l.waitN, l.waitErr = 0, nil
	if err := l.eprc.Read(l.waitPoll); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, nil
		}
		return 0, err
	}
	return l.waitN, l.waitErr
}

// post runs f in the loop (from any goroutine).
func (l *epollLoop) post(f func()) {
	l.mu.Lock()
	l.posted = append(l.posted, f)
	l.mu.Unlock()
	var one = [8]byte{1}
	_, _ = unix.Write(l.wakefd, one[:])
}

func (l *epollLoop) add(fd int, s epollSock) error {
	l.socks[fd] = s
	err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd)})
	if err != nil {
		delete(l.socks, fd)
		return fmt.Errorf("epoll_ctl add: %w", err)
	}
	return nil
}

// remove takes fd out of the loop (before it is closed or detached).
func (l *epollLoop) remove(fd int) {
	delete(l.socks, fd)
	_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
}

func (l *epollLoop) clients() int {
	n := 0
	for _, s := range l.socks {
		if _, ok := s.(*epConn); ok {
			n++
		}
	}
	return n
}

func (l *epollLoop) run() {
	defer l.closeFDs()
	defer l.closeAll()
	l.now = time.Now()
	l.lastSweep = l.now
	for {
		if l.s.closing.Load() {
			if l.lnOn {
				l.lnOn = false
				_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, l.es.lnfd, nil)
			}
			for _, s := range l.socks {
				if c, ok := s.(*epConn); ok && (c.idleNow() || l.force) {
					c.close()
				}
			}
			if l.clients() == 0 {
				return
			}
		}
		// Look without blocking first: under load there is nearly always
		// something, and a wait that does not block costs the runtime no
		// handoff of the loop's P.
		n, err := rawEpollPoll(l.epfd, l.events)
		if n == 0 && (err == nil || errors.Is(err, unix.EINTR)) {
			n, err = l.wait()
		}
		l.now = time.Now()
		if err != nil && !errors.Is(err, unix.EINTR) {
			l.s.log.Error("ingress epoll_wait", "err", err)
			return
		}
		for i := range max(n, 0) {
			ev := &l.events[i]
			fd := int(ev.Fd)
			switch {
			case fd == l.wakefd:
				var b [8]byte
				_, _ = rawRead(l.wakefd, b[:])
				l.runPosted()
			case fd == l.es.lnfd:
				if l.lnOn {
					l.accept()
				}
			default:
				if s := l.socks[fd]; s != nil {
					s.event(ev.Events)
				}
			}
		}
		if l.now.Sub(l.lastSweep) >= epollSweep {
			l.lastSweep = l.now
			l.sweep()
		}
	}
}

func (l *epollLoop) runPosted() {
	l.mu.Lock()
	fs := l.posted
	l.posted = nil
	l.mu.Unlock()
	for _, f := range fs {
		f()
	}
}

func (l *epollLoop) closeAll() {
	l.runPosted()
	for _, s := range l.socks {
		switch x := s.(type) {
		case *epConn:
			x.close()
		case *epBackend:
			x.close()
		}
	}
	for e, bs := range l.idle {
		for _, b := range bs {
			b.close()
		}
		delete(l.idle, e)
	}
}

func (l *epollLoop) accept() {
	for {
		nfd, sa, err := unix.Accept4(l.es.lnfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) || errors.Is(err, unix.ECONNABORTED) {
				return
			}
			// EMFILE and the like: the sweep tries again.
			l.s.log.Debug("ingress accept", "err", err)
			return
		}
		_ = unix.SetsockoptInt(nfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		c := &epConn{l: l, fd: nfd}
		c.lc.s = l.s
		c.lc.remote = sockaddrString(sa)
		c.lc.ip = c.lc.remote
		if h, _, err := net.SplitHostPort(c.lc.remote); err == nil {
			c.lc.ip = h
		}
		c.lc.bw = bufio.NewWriterSize(&c.outw, leanBufSize)
		c.outw.c = c
		c.bp = leanBufs.Get().(*[]byte)
		c.in = *c.bp
		c.deadline = l.now.Add(l.s.readHeaderTimeout)
		c.idleAt = true
		c.rdy = true
		if err := l.add(nfd, c); err != nil {
			l.s.log.Debug("ingress epoll", "err", err)
			unix.Close(nfd)
			continue
		}
		c.drive()
	}
}

func sockaddrString(sa unix.Sockaddr) string {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return (&net.TCPAddr{IP: a.Addr[:], Port: a.Port}).String()
	case *unix.SockaddrInet6:
		return (&net.TCPAddr{IP: a.Addr[:], Port: a.Port}).String()
	}
	return ""
}

// sweep enforces deadlines and closes backend connections idle too long
// (and retries accepting after EMFILE).
func (l *epollLoop) sweep() {
	now := l.now
	var due []epollSock
	for _, s := range l.socks {
		switch x := s.(type) {
		case *epConn:
			if !x.deadline.IsZero() && now.After(x.deadline) {
				due = append(due, x)
			}
		case *epBackend:
			if x.c != nil && !x.deadline.IsZero() && now.After(x.deadline) {
				due = append(due, x)
			}
		}
	}
	for _, s := range due {
		switch x := s.(type) {
		case *epConn:
			x.close() // header or idle timeout: as net/http, no answer
		case *epBackend:
			// (Skipped when an earlier close in this sweep ended its
			// request.)
			if x.c != nil && !x.closed && x.c.b == x {
				x.c.backendTimedOut(x)
			}
		}
	}
	for e, bs := range l.idle {
		keep := bs[:0]
		for _, b := range bs {
			if now.Sub(b.idleAt) > idleConnTimeout {
				b.close()
			} else {
				keep = append(keep, b)
			}
		}
		if len(keep) == 0 {
			delete(l.idle, e)
		} else {
			l.idle[e] = keep
		}
	}
	if l.lnOn {
		l.accept()
	}
}

// outWriter appends to the connection's output (leanConn.bw writes here).
type outWriter struct{ c *epConn }

func (w *outWriter) Write(b []byte) (int, error) {
	if w.c.dead {
		return 0, net.ErrClosed
	}
	w.c.out = append(w.c.out, b...)
	return len(b), nil
}

// epConn is a client connection of the loop.
type epConn struct {
	l        *epollLoop
	fd       int
	lc       leanConn // routing, request and answer heads, errors, logs
	outw     outWriter
	bp       *[]byte
	in       []byte
	start    int
	end      int
	out      []byte
	outOff   int
	deadline time.Time
	idleAt   bool // between requests, nothing read of the next
	eof      bool // the client ended its side (or reading failed)
	dead     bool // closed or detached
	closeAft bool // close once out is written
	// The request in flight.
	lr       *leanReq
	headLen  int
	tried    [maxAttempts]*endpoint
	ntried   int
	lastErr  error
	redialed bool
	b        *epBackend
	resp     *http.Response
	bodyLeft int64
	respKeep bool
	dialGen  int
	curE     *endpoint // counted active, not yet picked
	// sniffNeed > 0: the answer head waits for that many body bytes.
	sniffNeed int
	inDrive   bool
	rdy       bool // reads may find data (edge-triggered readiness)
	draining  bool // answered a bad head: discarding input until EOF
}

func (c *epConn) idleNow() bool { return c.lr == nil && c.idleAt && len(c.out) == c.outOff }

func (c *epConn) event(ev uint32) {
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.rdy = true
	}
	c.drive()
}

// kick drives the connection unless a drive is already on the stack.
func (c *epConn) kick() {
	if !c.inDrive {
		c.drive()
	}
}

func (c *epConn) close() {
	if c.dead {
		return
	}
	c.abandon()
	c.dead = true
	c.l.remove(c.fd)
	unix.Close(c.fd)
	c.release()
}

// abandon ends the request in flight (its backend connection is closed).
func (c *epConn) abandon() {
	if c.b != nil {
		c.b.close()
		c.b = nil
	}
	if c.lr != nil {
		c.dialGen++
		if c.curE != nil {
			c.curE.active.Add(-1)
			c.curE = nil
		}
		c.lc.end(c.lr)
		c.lr = nil
	}
}

func (c *epConn) release() {
	if c.bp != nil && cap(c.in) == leanBufSize {
		*c.bp = c.in[:leanBufSize]
		leanBufs.Put(c.bp)
	}
	c.bp, c.in = nil, nil
}

// flushOut writes what is pending; false when the connection failed
// (closed) or the write would block.
func (c *epConn) flushOut() (done bool) {
	for c.outOff < len(c.out) {
		n, err := rawWrite(c.fd, c.out[c.outOff:])
		if n > 0 {
			c.outOff += n
		}
		if err != nil {
			if errors.Is(err, unix.EAGAIN) {
				return false
			}
			if errors.Is(err, unix.EINTR) {
				continue
			}
			c.close()
			return false
		}
	}
	c.out, c.outOff = c.out[:0], 0
	if cap(c.out) > 64<<10 {
		c.out = nil
	}
	return true
}

// drive moves the connection on as far as it can without blocking.
func (c *epConn) drive() {
	c.inDrive = true
	defer func() { c.inDrive = false }()
	for !c.dead {
		if !c.flushOut() {
			return
		}
		if c.draining {
			c.drain()
			return
		}
		if c.closeAft {
			c.close()
			return
		}
		if c.lr != nil {
			if c.b == nil || c.bodyLeft <= 0 || c.resp == nil || c.sniffNeed > 0 {
				return // waiting for the backend
			}
			if !c.b.pump() {
				return
			}
			continue
		}
		if !c.nextRequest() {
			return
		}
	}
}

// nextRequest parses the next head from what was read (reading more);
// false when it must wait.
func (c *epConn) nextRequest() bool {
	s := c.l.s
	for {
		if c.end > c.start {
			n, err := parseRequestHead(c.in[c.start:c.end], &c.lc.head)
			if err == nil && n > maxRequestHead {
				err = errHeadIncomplete
			}
			if err == nil {
				c.headLen = n
				c.idleAt = false
				c.startRequest()
				return true
			}
			var he *headError
			switch {
			case errors.As(err, &he):
				c.badHead(he.code, he.msg)
				return true
			case errors.Is(err, errHeadHandoff):
				c.handoff()
				return false
			}
			if c.end-c.start >= maxRequestHead {
				c.badHead(http.StatusRequestHeaderFieldsTooLarge, "request headers exceed 64 KiB")
				return true
			}
		}
		if !c.rdy {
			return false
		}
		if c.start > 0 {
			c.end = copy(c.in, c.in[c.start:c.end])
			c.start = 0
		}
		if c.end == len(c.in) {
			nb := make([]byte, min(2*len(c.in), maxRequestHead+leanBufSize))
			copy(nb, c.in[:c.end])
			c.in = nb
		}
		if s.closing.Load() && c.end == 0 {
			c.close()
			return false
		}
		m, err := rawRead(c.fd, c.in[c.end:])
		if err != nil {
			if errors.Is(err, unix.EAGAIN) {
				c.rdy = false
				return false
			}
			if errors.Is(err, unix.EINTR) {
				continue
			}
			m = 0
		}
		if m <= 0 {
			c.close() // closed, reset: as net/http, no answer
			return false
		}
		if c.idleAt && c.end == 0 {
			// A new request started: the header timeout runs from here.
			c.idleAt = false
			c.deadline = c.l.now.Add(s.readHeaderTimeout)
		}
		if m < len(c.in)-c.end {
			c.rdy = false // drained: the next data brings a new edge
		}
		c.end += m
	}
}

// badHead answers a broken head and closes after it (as writeError, the
// rest of what the client sends is not waited for).
func (c *epConn) badHead(code int, msg string) {
	writeHeadError(c.lc.bw, code, msg)
	_ = c.lc.bw.Flush()
	c.draining = true
	c.start, c.end = 0, 0
}

// drain: once the error answer is out, end our side and read what the
// client still sends for up to 500 ms (as net/http's closeWriteAndWait),
// so that closing with unread data does not reset the answer away.
func (c *epConn) drain() {
	if c.deadline.IsZero() || !c.closeAft {
		c.closeAft = true
		_ = unix.Shutdown(c.fd, unix.SHUT_WR)
		c.deadline = c.l.now.Add(500 * time.Millisecond)
		c.rdy = true
	}
	for c.rdy {
		n, err := rawRead(c.fd, c.l.rbuf)
		if err != nil && errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil && errors.Is(err, unix.EAGAIN) {
			c.rdy = false
			return
		}
		if n <= 0 {
			c.close()
			return
		}
	}
}

// detach takes the socket out of the loop as a net.Conn.
func (l *epollLoop) detach(fd int) (net.Conn, error) {
	l.remove(fd)
	f := os.NewFile(uintptr(fd), "")
	nc, err := net.FileConn(f)
	f.Close()
	return nc, err
}

// handoff gives the connection, with the bytes read, to net/http.
func (c *epConn) handoff() {
	pending := append([]byte(nil), c.in[c.start:c.end]...)
	c.dead = true
	nc, err := c.l.detach(c.fd)
	c.release()
	if err != nil {
		c.l.s.log.Debug("ingress epoll handoff", "err", err)
		return
	}
	lc := &leanConn{s: c.l.s, c: nc}
	s := c.l.s
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		lc.handoff(pending)
		if !lc.handedTo {
			_ = nc.Close()
		}
	}()
}

// startRequest routes the parsed head and starts the exchange.
func (c *epConn) startRequest() {
	h := &c.lc.head
	c.deadline = time.Time{}
	p := c.l.s.p
	if p.fastOff {
		c.handoff()
		return
	}
	path, query, hasQuery := splitTarget(h.target)
	lr := c.lc.begin(h, path, query, hasQuery)
	if lr == nil {
		c.handoff()
		return
	}
	c.lr = lr
	c.ntried, c.lastErr, c.resp, c.bodyLeft, c.curE, c.sniffNeed = 0, nil, nil, 0, nil, 0
	if l := lr.st.cfg.limiter; l != nil && !l.allow(c.lc.ip, lr.start) {
		c.done(c.lc.leanError(lr, http.StatusServiceUnavailable, "rate limit exceeded"))
		return
	}
	c.attempt()
}

// done ends the request: the next one may start once the answer is out.
func (c *epConn) done(keep bool) {
	lr := c.lr
	c.lr, c.resp, c.b = nil, nil, nil
	if lr != nil {
		c.lc.end(lr)
	}
	c.start += c.headLen
	c.headLen = 0
	if !keep || c.l.s.closing.Load() {
		c.closeAft = true
	} else if c.start == c.end {
		c.start, c.end = 0, 0
		c.idleAt = true
		c.deadline = c.l.now.Add(c.l.s.idleTimeout)
	} else {
		c.deadline = c.l.now.Add(c.l.s.readHeaderTimeout) // pipelined
	}
	c.kick()
}

// fail answers an error of the exchange (leanFail).
func (c *epConn) fail(err error) {
	c.done(c.lc.leanFail(c.lr, err))
}

// attempt picks an endpoint and sends the request (proxy's loop).
func (c *epConn) attempt() {
	lr := c.lr
	st := &lr.st
	e := st.backend.pool.pick(c.tried[:c.ntried], st.cfg.leastRequest)
	if e == nil {
		err := c.lastErr
		if err == nil {
			err = errNoEndpoints
		}
		c.fail(err)
		return
	}
	c.tried[c.ntried] = e
	c.ntried++
	c.redialed = false
	e.active.Add(1)
	c.curE = e
	st.endpoint = e.addr
	if b := c.l.getIdle(e); b != nil {
		c.send(b)
		return
	}
	c.dial(e)
}

// dial connects to e in a goroutine with the proxy's dialer; the
// connection joins the loop.
func (c *epConn) dial(e *endpoint) {
	l := c.l
	p := l.s.p
	gen := c.dialGen
	connectTimeout, _ := c.lr.timeouts()
	go func() {
		pc, err := p.dialEndpoint(context.Background(), e.addr, connectTimeout)
		fd := -1
		if err == nil {
			fd, err = dupConnFD(pc.conn)
			_ = pc.conn.Close()
		}
		l.post(func() {
			if c.dead || c.dialGen != gen || c.lr == nil {
				if fd >= 0 {
					unix.Close(fd)
				}
				return
			}
			if err != nil {
				c.connectFailed(e, err)
				return
			}
			b := &epBackend{l: l, fd: fd, e: e, rdy: true}
			if aerr := l.add(fd, b); aerr != nil {
				unix.Close(fd)
				c.connectFailed(e, fmt.Errorf("connect to %s: %w", e.addr, aerr))
				return
			}
			c.send(b)
		})
	}()
}

func dupConnFD(nc net.Conn) (int, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return -1, fmt.Errorf("connection %T has no file descriptor", nc)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(f uintptr) { fd, derr = unix.Dup(int(f)) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, fmt.Errorf("dup: %w", derr)
	}
	unix.CloseOnExec(fd)
	return fd, unix.SetNonblock(fd, true)
}

// connectFailed: the endpoint is ejected and the next one tried (as
// proxy), for retryable requests.
func (c *epConn) connectFailed(e *endpoint, err error) {
	lr := c.lr
	e.active.Add(-1)
	c.curE = nil
	if !isConnectError(err) {
		c.fail(err)
		return
	}
	e.fail()
	c.l.s.p.m.connectErrors.WithLabelValues(lr.st.backend.namespace, lr.st.backend.service).Inc()
	c.lastErr = err
	if !leanRetryable(lr.method) || c.ntried >= maxAttempts {
		c.fail(err)
		return
	}
	c.attempt()
}

// send writes the request head on b.
func (c *epConn) send(b *epBackend) {
	c.b = b
	b.c = c
	b.nread = 0
	b.r0, b.r1 = 0, 0
	b.wbuf = b.wbuf[:0]
	bw := c.l.reqW
	c.l.reqDst.b = &b.wbuf
	bw.Reset(&c.l.reqDst)
	_ = c.lc.writeRequestHead(bw, c.lr)
	bw.Reset(nil)
	c.l.reqDst.b = nil
	b.woff = 0
	_, b.readTimeout = c.lr.timeouts()
	b.sendTimeout, b.sending = sendTimeoutOf(c.lr.st.cfg), false
	b.deadline = c.l.now.Add(b.readTimeout)
	b.drive()
}

type appendBuf struct{ b *[]byte }

func (a *appendBuf) Write(p []byte) (int, error) {
	*a.b = append(*a.b, p...)
	return len(p), nil
}

// backendFailed: the exchange on b failed before the answer head was in
// (exchange's retry on a fresh connection, then proxy's).
func (c *epConn) backendFailed(b *epBackend, err error) {
	e := b.e
	reused, nread := b.reused, b.nread
	b.close()
	c.b = nil
	if !reused || nread != 0 || c.redialed || errors.Is(err, errBackendTimout) || errors.Is(err, errBadHeader) || !leanRetryable(c.lr.method) {
		e.active.Add(-1)
		c.curE = nil
		c.fail(err)
		return
	}
	c.redialed = true
	c.dial(e)
}

// epBackend is a backend connection of the loop.
type epBackend struct {
	l           *epollLoop
	fd          int
	e           *endpoint
	c           *epConn // the request using it; nil while idle
	reused      bool
	idleAt      time.Time
	nread       int
	wbuf        []byte
	woff        int
	rb          []byte
	r0, r1      int
	deadline    time.Time
	readTimeout time.Duration
	// sending: the request head's write would block and deadline is the
	// send timeout's, set at sentAt bytes (drive).
	sendTimeout time.Duration
	sending     bool
	sentAt      int
	rdy         bool
	closed      bool
	// ans holds the parsed plain answer head (c.resp) of the request
	// using the connection; reused for the next answer on it, after the
	// request has ended (finishAnswer and every failure path clear c.resp
	// before the connection can serve another request).
	ans plainAnswer
}

func (b *epBackend) event(ev uint32) {
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		b.rdy = true
	}
	if b.c == nil {
		if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			// An idle connection the backend closed (or sent to).
			b.l.dropIdle(b)
		}
		return
	}
	c := b.c
	if c.sniffNeed > 0 {
		if b.fillFor(c.sniffNeed) {
			b.startAnswer()
		}
		return
	}
	if c.resp != nil {
		c.drive()
		return
	}
	b.drive()
}

func (b *epBackend) close() {
	if b.closed {
		return
	}
	b.closed = true
	b.l.remove(b.fd)
	unix.Close(b.fd)
}

func (l *epollLoop) dropIdle(b *epBackend) {
	bs := l.idle[b.e]
	for i, x := range bs {
		if x == b {
			bs = append(bs[:i], bs[i+1:]...)
			break
		}
	}
	if len(bs) == 0 {
		delete(l.idle, b.e)
	} else {
		l.idle[b.e] = bs
	}
	b.close()
}

// getIdle returns the most recently used idle connection to e.
func (l *epollLoop) getIdle(e *endpoint) *epBackend {
	for {
		bs := l.idle[e]
		if len(bs) == 0 {
			return nil
		}
		b := bs[len(bs)-1]
		bs[len(bs)-1] = nil
		// An emptied list stays for putIdle to append to (the sweep
		// deletes empty ones).
		l.idle[e] = bs[:len(bs)-1]
		if l.now.Sub(b.idleAt) > idleConnTimeout || l.now.Sub(b.idleAt) > staleCheckAfterIdle && fdPeerClosed(b.fd) {
			b.close()
			continue
		}
		b.reused = true
		return b
	}
}

func fdPeerClosed(fd int) bool {
	var p [1]byte
	n, _, err := unix.Recvfrom(fd, p[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
		return false
	}
	return err != nil || n >= 0
}

func (l *epollLoop) putIdle(b *epBackend) {
	b.c = nil
	b.deadline = time.Time{}
	b.idleAt = l.now
	b.r0, b.r1 = 0, 0
	if cap(b.rb) > epollHeadBuf {
		b.rb = nil // a large head or sniffed body grew it
	}
	bs := l.idle[b.e]
	if len(bs) >= maxIdlePerEndpoint {
		b.close()
		return
	}
	l.idle[b.e] = append(bs, b)
}

// drive writes the request head, then reads the answer head.
//
// A head that does not go out with one write waits under the send
// timeout (nginx's proxy_send_timeout), set when a write would block and
// afresh after each write that made progress; once the head is out the
// read timeout runs from there. The common head that goes out at once
// costs no more than before: the deadline is a field the sweep checks.
func (b *epBackend) drive() {
	c := b.c
	for b.woff < len(b.wbuf) {
		n, err := rawWrite(b.fd, b.wbuf[b.woff:])
		if n > 0 {
			b.woff += n
		}
		if err != nil {
			if errors.Is(err, unix.EAGAIN) {
				if !b.sending || b.woff != b.sentAt {
					b.sending, b.sentAt = true, b.woff
					b.deadline = b.l.now.Add(b.sendTimeout)
				}
				return
			}
			if errors.Is(err, unix.EINTR) {
				continue
			}
			c.backendFailed(b, fmt.Errorf("write request: %w", os.NewSyscallError("write", err)))
			return
		}
	}
	if b.sending {
		b.sending = false
		b.deadline = b.l.now.Add(b.readTimeout)
	}
	for {
		if b.r1 > b.r0 {
			if done := b.tryHead(); done {
				return
			}
		}
		if b.r1-b.r0 >= maxResponseHeader {
			c.backendFailed(b, fmt.Errorf("read response: %w", errResponseHeaderTooLarge))
			return
		}
		if b.rb == nil {
			b.rb = make([]byte, epollHeadBuf)
		}
		if b.r1 == len(b.rb) {
			nb := make([]byte, 2*len(b.rb))
			b.r1 = copy(nb, b.rb[b.r0:b.r1])
			b.r0 = 0
			b.rb = nb
		}
		if !b.rdy {
			return
		}
		n, err := rawRead(b.fd, b.rb[b.r1:])
		if err != nil {
			if errors.Is(err, unix.EAGAIN) {
				b.rdy = false
				return
			}
			if errors.Is(err, unix.EINTR) {
				continue
			}
			c.backendFailed(b, fmt.Errorf("read response: %w", os.NewSyscallError("read", err)))
			return
		}
		if n == 0 {
			// The backend closed before the head was complete: the
			// same error as ReadResponse's.
			_, perr := b.parse()
			if perr == nil {
				perr = io.ErrUnexpectedEOF
			}
			c.backendFailed(b, fmt.Errorf("read response: %w", perr))
			return
		}
		if n < len(b.rb)-b.r1 {
			b.rdy = false
		}
		b.r1 += n
		b.nread += n
	}
}

// headEnd reports whether rb[r0:r1] holds a complete answer head (an
// empty line, with or without CR, as textproto reads it).
func headComplete(p []byte) bool {
	return bytes.Contains(p, []byte("\n\r\n")) || bytes.Contains(p, []byte("\n\n"))
}

// parse reads the answer head from rb[r0:r1] (parsePlainAnswer, else
// http.ReadResponse) and moves r0 past it.
func (b *epBackend) parse() (*http.Response, error) {
	req := leanOther
	if b.c != nil && b.c.lr != nil && b.c.lr.method == http.MethodHead {
		req = leanHEAD
	}
	if resp, n, ok := parsePlainAnswerInto(&b.ans, b.rb[b.r0:b.r1], req); ok {
		b.r0 += n
		return resp, nil
	}
	src, br := &b.l.headSrc, b.l.headBR
	src.Reset(b.rb[b.r0:b.r1])
	br.Reset(src)
	resp, err := http.ReadResponse(br, req)
	consumed := (b.r1 - b.r0) - br.Buffered() - src.Len()
	br.Reset(nil)
	src.Reset(nil)
	if err == nil {
		b.r0 += consumed
	}
	return resp, err
}

// tryHead parses a complete head and starts the answer; false when more
// is needed.
func (b *epBackend) tryHead() bool {
	c := b.c
	lr := c.lr
	if !headComplete(b.rb[b.r0:b.r1]) {
		return false
	}
	start := b.r0
	resp, err := b.parse()
	if err != nil {
		c.backendFailed(b, fmt.Errorf("read response: %w", err))
		return true
	}
	code := resp.StatusCode
	plain := code >= 200 && code != http.StatusSwitchingProtocols &&
		len(resp.TransferEncoding) == 0 && (resp.Body == http.NoBody || resp.ContentLength >= 0)
	if !plain {
		b.r0 = start
		c.escape(b)
		return true
	}
	e := b.e
	e.ok()
	lr.st.picked = e
	c.curE = nil
	b.deadline = time.Time{}
	c.resp = resp
	c.bodyLeft = 0
	if resp.Body != http.NoBody {
		c.bodyLeft = resp.ContentLength
	}
	// Sniffing wants up to 512 bytes of the body before the head goes out.
	_, hasCT := resp.Header["Content-Type"]
	if !hasCT && c.bodyLeft > 0 && bodyAllowedForStatus(code) && lr.method != http.MethodHead {
		if need := int(min(c.bodyLeft, 512)); b.r1-b.r0 < need {
			c.sniffNeed = need
			if !b.fillFor(need) {
				b.deadline = c.l.now.Add(b.readTimeout) // for the whole of the sniffed bytes
				return true
			}
		}
	}
	b.startAnswer()
	return true
}

// fillFor reads until n body bytes are buffered (false: wait, or failed).
func (b *epBackend) fillFor(n int) bool {
	for b.r1-b.r0 < n {
		if b.r1 == len(b.rb) {
			nb := make([]byte, max(2*len(b.rb), b.r1-b.r0+n))
			b.r1 = copy(nb, b.rb[b.r0:b.r1])
			b.r0 = 0
			b.rb = nb
		}
		if !b.rdy {
			return false
		}
		m, err := rawRead(b.fd, b.rb[b.r1:])
		if err != nil && errors.Is(err, unix.EAGAIN) {
			b.rdy = false
			return false
		}
		if err != nil && errors.Is(err, unix.EINTR) {
			continue
		}
		if m <= 0 {
			// Cut short before the sniffed bytes: the head goes out with
			// what there is, the body is cut (relay's behaviour).
			return true
		}
		b.r1 += m
	}
	return true
}

// startAnswer writes the answer head and what body is buffered.
func (b *epBackend) startAnswer() {
	c := b.c
	c.sniffNeed = 0
	b.deadline = time.Time{}
	lr := c.lr
	resp := c.resp
	keep, _, _ := writeAnswerHead(c.lc.bw, lr, resp, func(n int) []byte {
		return b.rb[b.r0:min(b.r1, b.r0+n)]
	})
	_ = c.lc.bw.Flush()
	c.respKeep = keep
	b.moveBody()
	if c.bodyLeft == 0 {
		c.finishAnswer() // kicks
		return
	}
	c.kick()
}

// moveBody moves buffered body bytes to the client's output.
func (b *epBackend) moveBody() {
	c := b.c
	if n := min(int64(b.r1-b.r0), c.bodyLeft); n > 0 {
		c.out = append(c.out, b.rb[b.r0:b.r0+int(n)]...)
		b.r0 += int(n)
		c.bodyLeft -= n
		c.lr.bytes += n
	}
}

// pump reads more of the body into the client's output; false when it
// must wait (or the exchange ended).
func (b *epBackend) pump() bool {
	c := b.c
	for c.bodyLeft > 0 {
		if len(c.out)-c.outOff >= epollReadSize {
			// Write first: the client is the one behind, not the backend.
			b.deadline = time.Time{}
			return true
		}
		if !b.rdy {
			b.awaitBody()
			return false
		}
		buf := c.l.rbuf[:min(int64(len(c.l.rbuf)), c.bodyLeft)]
		n, err := rawRead(b.fd, buf)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) {
				b.rdy = false
				b.awaitBody()
				return false
			}
			if errors.Is(err, unix.EINTR) {
				continue
			}
			n = 0
		}
		if n <= 0 {
			c.cutAnswer()
			return true
		}
		b.deadline = time.Time{}
		if n < len(buf) {
			b.rdy = false
		}
		c.out = append(c.out, buf[:n]...)
		c.bodyLeft -= int64(n)
		c.lr.bytes += int64(n)
	}
	c.finishAnswer()
	return true
}

// awaitBody starts the read timeout's clock as the loop begins to wait
// for more of the body: nginx's proxy_read_timeout, the longest gap
// between two reads.
func (b *epBackend) awaitBody() {
	if b.deadline.IsZero() {
		b.deadline = b.l.now.Add(b.readTimeout)
	}
}

// cutAnswer ends an answer cut short (the backend closed, failed or
// stalled mid-body): the client connection closes once what it has is
// written, so the answer cannot be mistaken for a complete one.
func (c *epConn) cutAnswer() {
	if c.b != nil {
		c.b.close()
		c.b = nil
	}
	lr := c.lr
	c.lr, c.resp = nil, nil
	c.sniffNeed = 0
	c.lc.end(lr)
	c.closeAft = true
}

// backendTimedOut: the sweep found b past its read deadline. Before the
// answer head went out the client gets 504 (as a slow head); once the
// body streams it is cut short.
func (c *epConn) backendTimedOut(b *epBackend) {
	err := fmt.Errorf("%w after %s: %w", errBackendTimout, b.readTimeout, os.ErrDeadlineExceeded)
	if b.sending {
		err = fmt.Errorf("%w: the backend took nothing for %s: %w", errSendTimeout, b.sendTimeout, os.ErrDeadlineExceeded)
	}
	switch {
	case c.resp == nil:
		c.backendFailed(b, err)
	case c.sniffNeed > 0:
		// The head waited for body bytes to sniff: nothing was written,
		// and the endpoint was picked (end releases it).
		b.close()
		c.b, c.resp, c.sniffNeed = nil, nil, 0
		c.fail(err)
	default:
		c.cutAnswer()
		c.kick()
	}
}

// finishAnswer: the body is all in the output; the backend connection
// goes back to the loop's pool when it can be reused.
func (c *epConn) finishAnswer() {
	b := c.b
	if !c.resp.Close && b.r0 == b.r1 {
		c.l.putIdle(b)
	} else {
		b.close()
	}
	c.b = nil
	c.done(c.respKeep)
}

// escape finishes the request outside the loop: both connections become
// net.Conns and a goroutine relays the answer as the lean loop does, then
// serves the client connection as the lean loop.
func (c *epConn) escape(b *epBackend) {
	l := c.l
	s := l.s
	lr := c.lr
	pendingBackend := append([]byte(nil), b.rb[b.r0:b.r1]...)
	bnc, berr := l.detach(b.fd)
	b.closed = true
	c.b = nil
	// Bytes of the client after this request's head.
	rest := c.in[c.start+c.headLen : c.end]
	nbp := leanBufs.Get().(*[]byte)
	nbuf := *nbp
	if len(rest) > len(nbuf) {
		nbuf = make([]byte, len(rest)+leanBufSize)
	}
	end := copy(nbuf, rest)
	*nbp = nbuf
	// The parsed head points into c.in: lr keeps it (c.in is not reused).
	c.bp = nil
	c.dead = true
	c.lr = nil
	c.curE = nil
	cnc, cerr := l.detach(c.fd)
	if cerr != nil || berr != nil {
		if bnc != nil {
			_ = bnc.Close()
		}
		if cnc != nil {
			_ = cnc.Close()
		}
		lr.st.endpoint = b.e.addr
		b.e.active.Add(-1)
		c.lc.end(lr)
		return
	}
	lc := &leanConn{s: s, c: cnc, remote: c.lc.remote, ip: c.lc.ip}
	lc.head = c.lc.head
	pc := newPconn(&replayConn{Conn: bnc, pending: pendingBackend})
	pc.limit, pc.reused = maxResponseHeader, true
	s.mu.Lock()
	s.conns[lc] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		lc.bw = leanWriters.Get().(*bufio.Writer)
		lc.bw.Reset(lc.c)
		keep := lc.finishEscaped(lr, b.e, pc)
		if !keep || s.closing.Load() {
			lc.bw.Reset(nil)
			leanWriters.Put(lc.bw)
			lc.bw = nil
			_ = lc.c.Close()
			s.mu.Lock()
			delete(s.conns, lc)
			s.mu.Unlock()
			s.wg.Done()
			return
		}
		lc.bw.Reset(nil)
		leanWriters.Put(lc.bw)
		lc.bw = nil
		lc.serveFrom(nbp, 0, end)
	}()
}

// finishEscaped reads the answer head again from the replayed bytes and
// relays it as the lean loop.
func (lc *leanConn) finishEscaped(lr *leanReq, e *endpoint, pc *pconn) (keep bool) {
	defer lc.end(lr)
	_, readTimeout := lr.timeouts()
	resp, err := lc.readAnswer(lr, pc, readTimeout)
	if err != nil {
		pc.close()
		e.active.Add(-1)
		return lc.leanFail(lr, err)
	}
	e.ok()
	lr.st.picked = e
	return lc.relay(lr, e, pc, resp)
}

// epollIdle counts the loops' idle backend connections (tests).
func (s *leanServer) epollIdle() int {
	s.mu.Lock()
	es := s.epoll
	s.mu.Unlock()
	if es == nil {
		return 0
	}
	n := 0
	for _, l := range es.loops {
		ch := make(chan int, 1)
		l.post(func() {
			k := 0
			for _, bs := range l.idle {
				k += len(bs)
			}
			ch <- k
		})
		n += <-ch
	}
	return n
}
