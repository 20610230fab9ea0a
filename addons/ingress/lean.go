package ingress

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// The lean listener serves the plain (non-TLS) HTTP listener's common
// case without net/http's server: one goroutine per connection reads each
// request head into a pooled buffer, parses it (head.go) and, when the
// request can take the fast path (bodiless, HTTP/1.x, plain Host and
// target, a route without CORS, auth, redirects, canaries or rewrites, an
// HTTP/1.1 backend), proxies it over the endpoint pools of connpool.go and
// writes the answer straight to the connection. The first request that
// cannot hands the whole connection, with the bytes already read, to the
// ordinary http.Server (h2c, upgrades, bodies, every annotation); the
// connection stays there.

const leanBufSize = 4 << 10

// leanServer accepts on the plain listener; srv serves handed-off
// connections.
type leanServer struct {
	p    *Proxy
	srv  *http.Server
	hand *handoffListener
	log  *slog.Logger
	// The http.Server's ReadHeaderTimeout and IdleTimeout.
	readHeaderTimeout, idleTimeout time.Duration

	mu      sync.Mutex
	ln      net.Listener
	conns   map[*leanConn]struct{}
	closing atomic.Bool
	wg      sync.WaitGroup

	// useEpoll: serve with the epoll loops (epoll_linux.go).
	useEpoll bool
	epoll    *epollServer

	// served counts requests answered here, handedOff connections given
	// to net/http (tests).
	served, handedOff atomic.Int64
}

func newLeanServer(p *Proxy, srv *http.Server, log *slog.Logger) *leanServer {
	return &leanServer{p: p, srv: srv, log: log, conns: map[*leanConn]struct{}{},
		readHeaderTimeout: srv.ReadHeaderTimeout, idleTimeout: srv.IdleTimeout}
}

// Serve accepts until ln is closed (Shutdown); it returns
// http.ErrServerClosed after Shutdown.
func (s *leanServer) Serve(ln net.Listener) error {
	s.mu.Lock()
	s.ln = ln
	s.hand = &handoffListener{addr: ln.Addr(), ch: make(chan net.Conn), done: make(chan struct{})}
	s.mu.Unlock()
	if s.useEpoll && epollSupported {
		return s.serveEpoll(ln)
	}
	srvDone := make(chan struct{})
	go func() {
		defer close(srvDone)
		_ = s.srv.Serve(s.hand)
	}()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && !errors.Is(err, net.ErrClosed) {
				// As net/http: back off on EMFILE and the like.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Debug("ingress accept", "err", err, "retry_in", delay)
				time.Sleep(delay)
				continue
			}
			_ = s.hand.Close()
			<-srvDone
			return err
		}
		delay = 0
		lc := &leanConn{s: s, c: c}
		s.mu.Lock()
		if s.closing.Load() {
			s.mu.Unlock()
			_ = c.Close()
			continue
		}
		s.conns[lc] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go lc.serve()
	}
}

// Shutdown stops accepting, closes idle lean connections, lets requests in
// flight finish and shuts the net/http server down (until ctx ends).
func (s *leanServer) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.mu.Lock()
	if s.ln != nil {
		_ = s.ln.Close()
	}
	for lc := range s.conns {
		lc.closeIfIdle()
	}
	es := s.epoll
	s.mu.Unlock()
	if es != nil {
		es.stop(false)
	}
	err := s.srv.Shutdown(ctx) // closes the handoff listener
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		if es != nil {
			es.stop(true)
		}
		s.mu.Lock()
		for lc := range s.conns {
			_ = lc.c.Close()
		}
		s.mu.Unlock()
		return ctx.Err()
	}
	return err
}

// handoffListener gives net/http the connections the lean loop hands off.
type handoffListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// replayConn returns the bytes the lean loop already read before reading
// the connection again.
type replayConn struct {
	net.Conn
	pending []byte
}

// CloseWrite lets net/http end its side before closing after an error
// answer (closeWriteAndWait), as on a *net.TCPConn.
func (c *replayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *replayConn) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		if len(c.pending) == 0 {
			c.pending = nil
		}
		return n, nil
	}
	return c.Conn.Read(b)
}

var (
	leanBufs    = sync.Pool{New: func() any { b := make([]byte, leanBufSize); return &b }}
	leanWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, leanBufSize) }}
)

// leanConn is one client connection on the lean loop.
type leanConn struct {
	s        *leanServer
	c        net.Conn
	bw       *bufio.Writer
	remote   string // RemoteAddr
	ip       string // its host part
	idle     atomic.Bool
	closed   atomic.Bool
	head     requestHead
	handedTo bool
	req      leanReq  // the request in flight (begin)
	rid      [32]byte // its generated X-Request-Id (begin)
	// idleDeadline is the read deadline while idle (zero when the header
	// timeout is set instead).
	idleDeadline time.Time
}

// setHeaderDeadline starts the header timeout (the idle deadline is
// then set afresh).
func (lc *leanConn) setHeaderDeadline() {
	lc.idleDeadline = time.Time{}
	_ = lc.c.SetReadDeadline(time.Now().Add(lc.s.readHeaderTimeout))
}

func (lc *leanConn) closeIfIdle() {
	if lc.idle.Load() {
		_ = lc.c.SetReadDeadline(aLongTimeAgo)
	}
}

func (lc *leanConn) serve() {
	bp := leanBufs.Get().(*[]byte)
	lc.serveFrom(bp, 0, 0)
}

// serveFrom serves the connection with buf (*bp) holding bytes [start,
// end) already read (the epoll loop's escapes, epoll_linux.go).
func (lc *leanConn) serveFrom(bp *[]byte, start, end int) {
	s := lc.s
	buf := *bp
	defer func() {
		if cap(buf) == leanBufSize {
			*bp = buf[:leanBufSize]
			leanBufs.Put(bp)
		}
		if lc.bw != nil {
			lc.bw.Reset(nil)
			leanWriters.Put(lc.bw)
		}
		if !lc.handedTo {
			_ = lc.c.Close()
		}
		s.mu.Lock()
		delete(s.conns, lc)
		s.mu.Unlock()
		s.wg.Done()
	}()
	lc.remote = lc.c.RemoteAddr().String()
	lc.ip = lc.remote
	if h, _, err := net.SplitHostPort(lc.remote); err == nil {
		lc.ip = h
	}
	lc.bw = leanWriters.Get().(*bufio.Writer)
	lc.bw.Reset(lc.c)

	lc.setHeaderDeadline()
	for {
		// One request head: from what is buffered, else read more.
		var n int
		var err error
		newHead := false
		for {
			if end > start {
				n, err = parseRequestHead(buf[start:end], &lc.head)
				if err == nil && n > maxRequestHead {
					err = errHeadIncomplete
				}
				if err == nil {
					break
				}
				var he *headError
				switch {
				case errors.As(err, &he):
					lc.writeError(he.code, he.msg)
					return
				case errors.Is(err, errHeadHandoff):
					lc.handoff(buf[start:end])
					return
				}
				if newHead {
					// A new request started and its head is not complete:
					// the header timeout runs from here.
					newHead = false
					lc.setHeaderDeadline()
				}
				if end-start >= maxRequestHead {
					lc.writeError(http.StatusRequestHeaderFieldsTooLarge, "request headers exceed 64 KiB")
					return
				}
			}
			if start > 0 { // keep the partial head at the buffer's start
				end = copy(buf, buf[start:end])
				start = 0
			}
			if end == len(buf) {
				nb := make([]byte, min(2*len(buf), maxRequestHead+leanBufSize))
				copy(nb, buf[:end])
				buf = nb
			}
			wasIdle := end == 0 && lc.idle.Load()
			if s.closing.Load() && wasIdle {
				return
			}
			m, rerr := lc.c.Read(buf[end:])
			if m > 0 && wasIdle {
				lc.idle.Store(false)
				newHead = true
			}
			end += m
			if rerr != nil && m == 0 {
				return // closed, reset, header or idle timeout: as net/http, no answer
			}
		}
		lc.idle.Store(false)
		keep, handoff := lc.serveRequest(&lc.head)
		if handoff {
			lc.handoff(buf[start:end])
			return
		}
		if !keep || s.closing.Load() {
			return
		}
		start += n
		if start == end {
			start, end = 0, 0
			lc.idle.Store(true)
			if s.closing.Load() {
				return
			}
			// The idle deadline moves at most once a second (a timer
			// update per request costs more than the second is worth).
			if now := time.Now(); lc.idleDeadline.Sub(now) < s.idleTimeout-time.Second {
				lc.idleDeadline = now.Add(s.idleTimeout)
				_ = lc.c.SetReadDeadline(lc.idleDeadline)
			}
		} else {
			// Pipelined: the next head is (partly) here already.
			lc.setHeaderDeadline()
		}
	}
}

// handoff gives the connection and the bytes read from it to net/http.
func (lc *leanConn) handoff(pending []byte) {
	_ = lc.c.SetReadDeadline(time.Time{})
	rc := &replayConn{Conn: lc.c, pending: append([]byte(nil), pending...)}
	h := lc.s.hand
	lc.s.handedOff.Add(1) // before net/http can answer anything
	select {
	case h.ch <- rc:
		lc.handedTo = true
	case <-h.done:
		lc.s.handedOff.Add(-1)
	}
}

// leanWant reports whether the request in h can be served here, and its
// route.
func (lc *leanConn) leanWant(h *requestHead, host, path string) *route {
	if !h.hasHost || !plainHost(host) || string(h.method) == http.MethodConnect {
		return nil
	}
	for i := range h.fields {
		switch string(h.fields[i].name) {
		case "Upgrade", "Expect", "Http2-Settings":
			return nil
		}
	}
	rt := lc.s.p.table.Load().Match(host, path)
	if rt == nil || rt.backend == nil || rt.backend.h2c || rt.canary != nil {
		return nil
	}
	cfg := rt.cfg
	if rt.hostTLS && cfg.sslRedirect || cfg.forceSSLRedirect || cfg.cors != nil || cfg.auth != nil || cfg.rewriteTarget != "" || cfg.affinity != nil {
		return nil
	}
	return rt
}

// leanReq is what one lean request carries through the proxy.
type leanReq struct {
	h          *requestHead
	method     string
	host       string
	path       []byte
	query      []byte
	hasQuery   bool
	keepAlive  bool // the client lets the connection stay open
	connTokens []string
	st         reqState
	code       int
	bytes      int64
	start      time.Time
}

// serveRequest proxies one parsed request; handoff when it is not for
// the lean path (nothing was written then).
func (lc *leanConn) serveRequest(h *requestHead) (keep, handoff bool) {
	p := lc.s.p
	path, query, hasQuery := splitTarget(h.target)
	if p.fastOff {
		return false, true
	}
	lr := lc.begin(h, path, query, hasQuery)
	if lr == nil {
		return false, true
	}
	defer lc.end(lr)
	if l := lr.st.cfg.limiter; l != nil && !l.allow(lc.ip, lr.start) {
		return lc.leanError(lr, http.StatusServiceUnavailable, "rate limit exceeded"), false
	}
	return lc.proxy(lr), false
}

// end: the request's metrics and access log.
func (lc *leanConn) end(lr *leanReq) {
	if lr.st.picked != nil {
		lr.st.picked.active.Add(-1)
	}
	lc.finish(lr, lr.start)
}

// begin routes a parsed request; nil when it is not for the lean path.
//
// The leanReq is lc's own (lc.req), reused by the connection's next
// request: it lives until end, as the head it points into. Its host and
// generated request ID are views of memory the connection reuses too
// (the head's buffer, lc.rid): they may be written out during the
// request, never kept after it (finish copies what it logs).
func (lc *leanConn) begin(h *requestHead, path, query []byte, hasQuery bool) *leanReq {
	host := bytesView(h.host)
	rt := lc.leanWant(h, host, bytesView(path))
	if rt == nil {
		return nil
	}
	start := time.Now()
	lc.s.served.Add(1)
	lr := &lc.req
	*lr = leanReq{h: h, method: methodString(h.method), host: host, path: path, query: query, hasQuery: hasQuery, code: http.StatusOK, start: start,
		connTokens: lr.connTokens[:0]}
	lr.keepAlive = h.minor == 1
	rid := ""
	for i := range h.fields {
		f := &h.fields[i]
		switch string(f.name) {
		case "Connection":
			for tok := range strings.SplitSeq(string(f.value), ",") {
				tok = strings.TrimSpace(tok)
				switch {
				case tok == "":
				case strings.EqualFold(tok, "close"):
					lr.keepAlive = false
				case strings.EqualFold(tok, "keep-alive"):
					if h.minor == 0 {
						lr.keepAlive = true
					}
				}
				if tok != "" {
					lr.connTokens = append(lr.connTokens, tok)
				}
			}
		case "X-Request-Id":
			if rid == "" && !(len(f.value) == 0) {
				rid = string(f.value)
			}
		}
	}
	if rid == "" || len(rid) > 200 {
		rid = lc.newRequestID()
	}
	st := &lr.st
	st.requestID = rid
	st.route, st.cfg, st.backend = rt, rt.cfg, rt.backend
	return lr
}

// newRequestID is newRequestID's (proxy.go) ID in lc.rid: a view valid
// until the connection's next request.
func (lc *leanConn) newRequestID() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], mrand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], mrand.Uint64())
	hex.Encode(lc.rid[:], b[:])
	return bytesView(lc.rid[:])
}

// bytesView is b as a string without a copy: only for a string that
// does not outlive b's bytes as they are (lookups, writes), never one
// that is stored.
func bytesView(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// finish: metrics and access log as Proxy.finish.
func (lc *leanConn) finish(lr *leanReq, start time.Time) {
	p := lc.s.p
	d := time.Since(start)
	rs := p.stats(&lr.st)
	rs.counter(p.m, lr.code).Inc()
	rs.duration.Observe(d.Seconds())
	if p.accessLog == nil || !p.accessLog.Enabled(context.Background(), slog.LevelInfo) {
		return // (LogAttrs would check the same; the strings are not made)
	}
	var ua, ref string
	for i := range lr.h.fields {
		switch f := &lr.h.fields[i]; string(f.name) {
		case "User-Agent":
			if ua == "" {
				ua = string(f.value)
			}
		case "Referer":
			if ref == "" {
				ref = string(f.value)
			}
		}
	}
	proto := "HTTP/1.1"
	if lr.h.minor == 0 {
		proto = "HTTP/1.0"
	}
	p.accessLog.LogAttrs(context.Background(), slog.LevelInfo, "access",
		// The record may outlive the request (a handler may keep it):
		// copies of the connection's reused memory (see begin).
		slog.String("request_id", strings.Clone(lr.st.requestID)),
		slog.String("remote_addr", lc.ip),
		slog.String("method", lr.method),
		slog.String("host", strings.Clone(lr.host)),
		slog.String("uri", string(lr.h.target)),
		slog.String("proto", proto),
		slog.Int("status", lr.code),
		slog.Int64("bytes", lr.bytes),
		slog.Float64("duration_ms", float64(d.Microseconds())/1000),
		slog.String("namespace", rs.namespace),
		slog.String("ingress", rs.ingress),
		slog.String("service", rs.service),
		slog.String("endpoint", lr.st.endpoint),
		slog.String("user_agent", ua),
		slog.String("referer", ref),
	)
}

// methodString avoids an allocation for the common methods.
func methodString(m []byte) string {
	switch string(m) {
	case "GET":
		return http.MethodGet
	case "HEAD":
		return http.MethodHead
	case "POST":
		return http.MethodPost
	case "PUT":
		return http.MethodPut
	case "DELETE":
		return http.MethodDelete
	case "OPTIONS":
		return http.MethodOptions
	case "PATCH":
		return http.MethodPatch
	}
	return string(m)
}

func leanRetryable(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// Requests ReadResponse needs to know whether an answer has a body.
var (
	leanHEAD  = &http.Request{Method: http.MethodHead}
	leanOther = &http.Request{Method: http.MethodGet}
)

// timeouts: the route's connect and read (response head) timeouts.
func (lr *leanReq) timeouts() (connectTimeout, readTimeout time.Duration) {
	connectTimeout, readTimeout = defaultConnectTimeout, defaultReadTimeout
	if lr.st.cfg.connectTimeout > 0 {
		connectTimeout = lr.st.cfg.connectTimeout
	}
	if lr.st.cfg.readTimeout > 0 {
		readTimeout = lr.st.cfg.readTimeout
	}
	return connectTimeout, readTimeout
}

// proxy: endpoint choice, passive health and retries as serveFast.
func (lc *leanConn) proxy(lr *leanReq) (keep bool) {
	p := lc.s.p
	st := &lr.st
	connectTimeout, readTimeout := lr.timeouts()
	var triedBuf [maxAttempts]*endpoint
	tried := triedBuf[:0]
	var lastErr error
	for attempt := 0; ; attempt++ {
		e := st.backend.pool.pick(tried, st.cfg.leastRequest)
		if e == nil {
			if lastErr == nil {
				lastErr = errNoEndpoints
			}
			return lc.leanFail(lr, lastErr)
		}
		tried = append(tried, e)
		e.active.Add(1)
		st.endpoint = e.addr
		resp, pc, err := lc.exchange(lr, e, connectTimeout, readTimeout)
		if err == nil {
			e.ok()
			st.picked = e
			return lc.relay(lr, e, pc, resp)
		}
		e.active.Add(-1)
		if !isConnectError(err) {
			return lc.leanFail(lr, err)
		}
		e.fail()
		p.m.connectErrors.WithLabelValues(st.backend.namespace, st.backend.service).Inc()
		lastErr = err
		if !leanRetryable(lr.method) || attempt+1 >= maxAttempts {
			return lc.leanFail(lr, err)
		}
	}
}

// exchange as Proxy.exchange.
func (lc *leanConn) exchange(lr *leanReq, e *endpoint, connectTimeout, readTimeout time.Duration) (*http.Response, *pconn, error) {
	p := lc.s.p
	pc := e.conns.get(time.Now().UnixNano())
	if pc == nil {
		var err error
		if pc, err = p.dialEndpoint(context.Background(), e.addr, connectTimeout); err != nil {
			return nil, nil, err
		}
	}
	resp, err := lc.send(lr, pc, readTimeout)
	if err == nil {
		return resp, pc, nil
	}
	pc.close()
	if !pc.reused || pc.nread != 0 || errors.Is(err, errBackendTimout) || errors.Is(err, errBadHeader) || errors.Is(err, errClientWrite) || !leanRetryable(lr.method) {
		return nil, nil, err
	}
	if pc, err = p.dialEndpoint(context.Background(), e.addr, connectTimeout); err != nil {
		return nil, nil, err
	}
	if resp, err = lc.send(lr, pc, readTimeout); err != nil {
		pc.close()
		return nil, nil, err
	}
	return resp, pc, nil
}

// errClientWrite: the client went away while 1xx answers were passed on.
var errClientWrite = errors.New("client write failed")

// send writes the request head and reads the answer's head (as
// Proxy.send); informational answers other than 101 go to the client.
func (lc *leanConn) send(lr *leanReq, pc *pconn, readTimeout time.Duration) (*http.Response, error) {
	pc.nread, pc.bodyIdle = 0, 0
	pc.sw.timeout = sendTimeoutOf(lr.st.cfg)
	pc.interrupted.Store(false)
	if err := lc.writeRequestHead(pc.bw, lr); err != nil {
		return nil, err
	}
	return lc.readAnswer(lr, pc, readTimeout)
}

// readAnswer reads the answer's head (the second half of send).
func (lc *leanConn) readAnswer(lr *leanReq, pc *pconn, readTimeout time.Duration) (*http.Response, error) {
	pc.limit = maxResponseHeader
	_ = pc.conn.SetReadDeadline(time.Now().Add(readTimeout))
	req := leanOther
	if lr.method == http.MethodHead {
		req = leanHEAD
	}
	for n1xx := 0; ; n1xx++ {
		resp, err := http.ReadResponse(pc.br, req)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil, fmt.Errorf("%w after %s: %w", errBackendTimout, readTimeout, err)
			}
			return nil, fmt.Errorf("read response: %w", err)
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			// A body already buffered whole never reaches the
			// connection, nor its deadline.
			pc.headersRead(readTimeout)
			return resp, nil
		}
		if n1xx >= 5 {
			return nil, errors.New("too many 1xx informational responses")
		}
		bw := lc.bw
		writeStatusLine(bw, resp.StatusCode)
		writeHeaderMap(bw, resp.Header, nil)
		bw.WriteString("X-Request-Id: ")
		bw.WriteString(lr.st.requestID)
		bw.WriteString("\r\n\r\n")
		if err := bw.Flush(); err != nil {
			return nil, fmt.Errorf("%w: %w", errClientWrite, err)
		}
		pc.limit = maxResponseHeader
	}
}

// writeRequestHead writes the same head as writeRequestHead (fastpath.go)
// from the parsed head.
func (lc *leanConn) writeRequestHead(bw *bufio.Writer, lr *leanReq) error {
	h := lr.h
	hop := func(name []byte) bool {
		if skipRequestHeader(string(name)) {
			return true
		}
		for _, t := range lr.connTokens {
			if strings.EqualFold(t, string(name)) {
				return true
			}
		}
		return false
	}
	bw.WriteString(lr.method)
	bw.WriteByte(' ')
	bw.Write(lr.path)
	if lr.hasQuery {
		q := cleanQueryParams(bytesView(lr.query)) // written at once, not kept
		if q != "" || len(lr.query) == 0 {
			bw.WriteByte('?')
			bw.WriteString(q)
		}
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(lr.host)
	bw.WriteString("\r\n")
	switch lr.method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		bw.WriteString("Content-Length: 0\r\n")
	}
	te := false
	for i := range h.fields {
		f := &h.fields[i]
		if string(f.name) == "Te" && tokenListHas(string(f.value), "trailers") {
			te = true
		}
		if hop(f.name) {
			continue
		}
		bw.Write(f.name)
		bw.WriteString(": ")
		bw.Write(f.value)
		bw.WriteString("\r\n")
	}
	bw.WriteString("X-Forwarded-For: ")
	for i := range h.fields {
		if f := &h.fields[i]; string(f.name) == "X-Forwarded-For" {
			bw.Write(f.value)
			bw.WriteString(", ")
		}
	}
	ip := lc.ip
	bw.WriteString(ip)
	bw.WriteString("\r\nX-Forwarded-Host: ")
	bw.WriteString(lr.host)
	bw.WriteString("\r\nX-Forwarded-Proto: http\r\nForwarded: ")
	for i := range h.fields {
		if f := &h.fields[i]; string(f.name) == "Forwarded" {
			bw.Write(f.value)
			bw.WriteString(", ")
		}
	}
	bw.WriteString("for=")
	if strings.Contains(ip, ":") {
		bw.WriteString(`"[`)
		bw.WriteString(ip)
		bw.WriteString(`]"`)
	} else {
		bw.WriteString(ip)
	}
	bw.WriteString(";host=")
	bw.Write(strconv.AppendQuote(bw.AvailableBuffer(), lr.host))
	bw.WriteString(";proto=http\r\nX-Real-Ip: ")
	bw.WriteString(ip)
	bw.WriteString("\r\nX-Request-Id: ")
	bw.WriteString(lr.st.requestID)
	bw.WriteString("\r\n")
	if te {
		bw.WriteString("Te: trailers\r\n")
	}
	bw.WriteString("\r\n")
	return bw.Flush()
}

// relay writes the answer to the client as net/http's server would for
// relay in fastpath.go: status line, the backend's end-to-end headers,
// X-Request-Id, Date and a sniffed Content-Type when missing, the body
// with its length or chunked (flushed as it comes), trailers.
func (lc *leanConn) relay(lr *leanReq, e *endpoint, pc *pconn, resp *http.Response) (keep bool) {
	p := lc.s.p
	if resp.StatusCode == http.StatusSwitchingProtocols {
		pc.close()
		return lc.leanError(lr, http.StatusBadGateway, "backend switched protocols without an upgrade request")
	}
	bw := lc.bw
	keep, chunked, flush := writeAnswerHead(bw, lr, resp, func(n int) []byte {
		b, _ := pc.br.Peek(n)
		return b
	})
	if flush {
		if err := bw.Flush(); err != nil {
			pc.close()
			return false
		}
	}
	var err error
	if resp.Body != http.NoBody {
		if chunked {
			err = lc.copyChunked(lr, resp.Body)
		} else {
			err = lc.copyPlain(lr, resp.Body, flush)
		}
	}
	if err != nil {
		// Cut short: close the client connection so the answer cannot be
		// mistaken for a complete one (as ReverseProxy's abort).
		pc.close()
		return false
	}
	if chunked {
		bw.WriteString("0\r\n")
		writeHeaderMap(bw, resp.Trailer, nil)
		bw.WriteString("\r\n")
	}
	// The backend connection goes back before the client sees the end
	// of the answer (its next request may want it at once).
	if !resp.Close && pc.br.Buffered() == 0 && pc.release() {
		e.conns.put(&p.pools, pc, time.Now().UnixNano())
	} else {
		pc.close()
	}
	return bw.Flush() == nil && keep
}

// writeAnswerHead writes the client's answer head for resp (relay and
// the epoll loop); peek returns up to n bytes of the body for sniffing.
// flush: the head should go out before the body (unknown length, event
// streams).
func writeAnswerHead(bw *bufio.Writer, lr *leanReq, resp *http.Response, peek func(n int) []byte) (keep, chunked, flush bool) {
	code := resp.StatusCode
	lr.code = code
	bodyAllowed := bodyAllowedForStatus(code) && lr.method != http.MethodHead
	cl := resp.ContentLength
	_, hasCL := resp.Header["Content-Length"]
	keep = lr.keepAlive
	writeStatusLine(bw, code)
	writeHeaderMap(bw, resp.Header, resp.Trailer)
	bw.WriteString("X-Request-Id: ")
	bw.WriteString(lr.st.requestID)
	bw.WriteString("\r\n")
	if _, ok := resp.Header["Date"]; !ok {
		bw.WriteString("Date: ")
		bw.Write(httpDate())
		bw.WriteString("\r\n")
	}
	if _, ok := resp.Header["Content-Type"]; !ok && bodyAllowed && cl > 0 {
		// net/http sniffs the first bytes written; the fast path writes
		// them before any flush when the length is known.
		b := peek(int(min(cl, 512)))
		if len(b) > 0 {
			bw.WriteString("Content-Type: ")
			bw.WriteString(http.DetectContentType(b))
			bw.WriteString("\r\n")
		}
	}
	if bodyAllowed && !hasCL && cl < 0 {
		if lr.h.minor == 1 {
			chunked = true
			bw.WriteString("Transfer-Encoding: chunked\r\n")
		} else {
			keep = false // the end of the body is the end of the connection
		}
	}
	if !keep {
		bw.WriteString("Connection: close\r\n")
	} else if lr.h.minor == 0 {
		bw.WriteString("Connection: keep-alive\r\n")
	}
	bw.WriteString("\r\n")
	flush = cl == -1 || isEventStream(resp.Header)
	return keep, chunked, flush
}

// copyPlain copies the body into the client writer's buffer.
func (lc *leanConn) copyPlain(lr *leanReq, src io.Reader, flush bool) error {
	bw := lc.bw
	for {
		if bw.Available() == 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
		buf := bw.AvailableBuffer()
		n, rerr := src.Read(buf[:cap(buf)])
		if n > 0 {
			_, _ = bw.Write(buf[:n])
			lr.bytes += int64(n)
			if flush {
				if err := bw.Flush(); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// copyChunked re-frames an answer of unknown length as chunks, one per
// read, each flushed.
func (lc *leanConn) copyChunked(lr *leanReq, src io.Reader) error {
	bp := buffers.Get().(*[]byte)
	defer buffers.Put(bp)
	buf := *bp
	bw := lc.bw
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(n), 16))
			bw.WriteString("\r\n")
			bw.Write(buf[:n])
			bw.WriteString("\r\n")
			lr.bytes += int64(n)
			if err := bw.Flush(); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// leanFail answers proxy errors as Proxy.fail (no client context here:
// a client that went away shows as a failed write).
func (lc *leanConn) leanFail(lr *leanReq, err error) bool {
	be := lr.st.backend
	switch {
	case errors.Is(err, errNoEndpoints):
		msg := be.unavailable
		if msg == "" {
			msg = fmt.Sprintf("service %s/%s port %s has no ready endpoints", be.namespace, be.service, be.port)
		}
		return lc.leanError(lr, http.StatusServiceUnavailable, msg)
	case errors.Is(err, errSendTimeout):
		return lc.leanError(lr, http.StatusGatewayTimeout, fmt.Sprintf("backend %s (endpoint %s) stopped taking the request", be.key, lr.st.endpoint))
	case errors.Is(err, errBackendTimout):
		return lc.leanError(lr, http.StatusGatewayTimeout, fmt.Sprintf("backend %s (endpoint %s) did not answer in time", be.key, lr.st.endpoint))
	case errors.Is(err, errClientWrite):
		lr.code = 499
		return false
	case isConnectError(err):
		return lc.leanError(lr, http.StatusBadGateway, fmt.Sprintf("could not connect to backend %s (last endpoint tried %s)", be.key, lr.st.endpoint))
	default:
		return lc.leanError(lr, http.StatusBadGateway, fmt.Sprintf("backend %s (endpoint %s) failed: %v", be.key, lr.st.endpoint, err))
	}
}

// leanError writes httpError's answer for a proxied request.
func (lc *leanConn) leanError(lr *leanReq, code int, msg string) bool {
	lr.code = code
	body := fmt.Sprintf("%d %s: %s\n", code, http.StatusText(code), msg)
	if lr.method != http.MethodHead {
		lr.bytes = int64(len(body))
	} else {
		body = body[:0]
	}
	bw := lc.bw
	writeStatusLine(bw, code)
	bw.WriteString("Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nX-Request-Id: ")
	bw.WriteString(lr.st.requestID)
	bw.WriteString("\r\nDate: ")
	bw.Write(httpDate())
	bw.WriteString("\r\nContent-Length: ")
	bw.WriteString(strconv.Itoa(int(lr.bytes)))
	if !lr.keepAlive {
		bw.WriteString("\r\nConnection: close")
	} else if lr.h.minor == 0 {
		bw.WriteString("\r\nConnection: keep-alive")
	}
	bw.WriteString("\r\n\r\n")
	bw.WriteString(body)
	return bw.Flush() == nil && lr.keepAlive
}

// writeError answers a head that could not be parsed (400, 431) and the
// connection is closed after it, as net/http does.
func (lc *leanConn) writeError(code int, msg string) {
	writeHeadError(lc.bw, code, msg)
	if lc.bw.Flush() != nil {
		return
	}
	// As net/http's closeWriteAndWait: end our side and read what the
	// client is still sending for a moment, so that closing with unread
	// data does not reset the connection before the answer was read.
	if cw, ok := lc.c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = lc.c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, _ = io.CopyN(io.Discard, lc.c, 1<<20)
}

// writeHeadError writes the answer to a head that could not be parsed,
// closing the connection after it (both loops; not flushed).
func writeHeadError(bw *bufio.Writer, code int, msg string) {
	body := fmt.Sprintf("%d %s: %s\n", code, http.StatusText(code), msg)
	writeStatusLine(bw, code)
	bw.WriteString("Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nDate: ")
	bw.Write(httpDate())
	bw.WriteString("\r\nContent-Length: ")
	bw.WriteString(strconv.Itoa(len(body)))
	bw.WriteString("\r\nConnection: close\r\n\r\n")
	bw.WriteString(body)
}

func writeStatusLine(bw *bufio.Writer, code int) {
	bw.WriteString("HTTP/1.1 ")
	// Appending to AvailableBuffer writes in place (a local array would
	// escape to the heap through Write).
	bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(code), 10))
	bw.WriteByte(' ')
	if t := http.StatusText(code); t != "" {
		bw.WriteString(t)
	} else {
		bw.WriteString("status code ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(code), 10))
	}
	bw.WriteString("\r\n")
}

// writeHeaderMap writes an answer's end-to-end headers (copyHeaderTo's
// selection) and, when the backend announced trailers, a Trailer header.
func writeHeaderMap(bw *bufio.Writer, src, trailer http.Header) {
	var connHeaders []string
	for _, v := range src["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				connHeaders = append(connHeaders, http.CanonicalHeaderKey(f))
			}
		}
	}
	for k, vv := range src {
		if hopResponseHeader(k) || len(connHeaders) > 0 && containsString(connHeaders, k) {
			continue
		}
		if !validHeaderKey(k) {
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			// As net/http's header writer: newlines become spaces, the
			// value is trimmed.
			v = strings.TrimSpace(v)
			for i := 0; i < len(v); i++ {
				c := v[i]
				if c == '\r' || c == '\n' {
					c = ' '
				}
				bw.WriteByte(c)
			}
			bw.WriteString("\r\n")
		}
	}
	if len(trailer) > 0 {
		bw.WriteString("Trailer: ")
		first := true
		for k := range trailer {
			if !first {
				bw.WriteString(", ")
			}
			first = false
			bw.WriteString(k)
		}
		bw.WriteString("\r\n")
	}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// bodyAllowedForStatus as net/http: no body for 1xx, 204, 304.
func bodyAllowedForStatus(code int) bool {
	switch {
	case code >= 100 && code <= 199, code == 204, code == 304:
		return false
	}
	return true
}

// httpDate is the Date header's value, formatted once per second.
func httpDate() []byte {
	now := time.Now()
	sec := now.Unix()
	if d := cachedDate.Load(); d != nil && d.sec == sec {
		return d.b
	}
	d := &dateCache{sec: sec, b: now.UTC().AppendFormat(nil, http.TimeFormat)}
	cachedDate.Store(d)
	return d.b
}

type dateCache struct {
	sec int64
	b   []byte
}

var cachedDate atomic.Pointer[dateCache]
