package ingress

import (
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
	"net/http/httputil"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults of the per-route timeouts (as nginx's proxy_* defaults).
const (
	defaultConnectTimeout = 5 * time.Second
	defaultReadTimeout    = 60 * time.Second
	maxAttempts           = 3 // connects tried per idempotent request
)

// Sentinel errors turned into HTTP answers at the edge (fail).
var (
	errNoEndpoints   = errors.New("no ready endpoints")
	errBackendTimout = errors.New("backend timed out")
)

// Proxy is the ingress HTTP handler: it matches a request against the
// current Table and proxies it to one endpoint of the route's backend.
type Proxy struct {
	table atomic.Pointer[Table]
	rp    *httputil.ReverseProxy
	h1    *http.Transport // HTTP/1.1 with keep-alive pools per endpoint
	h2c   *http.Transport // prior-knowledge HTTP/2 (appProtocol kubernetes.io/h2c)
	// h1 and h2c dial connections with the default send timeout; routes
	// with another proxy-send-timeout use a pair of their own, made on
	// first use (time.Duration → *transports): a connection's writes
	// carry the timeout of the transport that dialed it (sendConn), so
	// connections are never shared between two timeouts. A pair no route
	// uses any more is let go when the table changes (setTable).
	others sync.Map
	dial   func(ctx context.Context, network, addr string) (net.Conn, error)

	// The fast path's dialer and the registry of endpoint pools that hold
	// idle connections (fastpath.go, connpool.go).
	dialer *net.Dialer
	pools  sync.Map // *connPool → struct{}
	// fastOff sends every request through ReverseProxy (tests compare).
	fastOff bool
	// noRoute are the metrics of requests no rule matched.
	noRoute routeStats

	httpsPort int // for redirects; 443 is left out of the URL
	// clientBodyTimeout bounds each wait for more of a request body from
	// the client (Options.ClientBodyTimeout).
	clientBodyTimeout time.Duration
	accessLog         *slog.Logger
	m                 *metrics
}

type ctxKey struct{}

// reqState travels with one proxied request.
type reqState struct {
	route   *route
	backend *backend
	path    string // rewritten path ("" = unchanged)
	// requestID is the X-Request-ID sent to the backend and the client.
	requestID string
	cfg       *routeConfig
	endpoint  string
	// picked is the endpoint whose in-flight count this request holds
	// until it ends (least_request balancing).
	picked   *endpoint
	timedOut atomic.Bool
	// clientTimedOut: the client sent nothing more of the request body
	// for the client body timeout; sendTimedOut: the backend took none of it
	// for the send timeout (sendBody).
	clientTimedOut atomic.Bool
	sendTimedOut   atomic.Bool
	// w is the client's ResponseWriter on the ReverseProxy path (sendBody
	// sets read deadlines on the client connection through it).
	w http.ResponseWriter
}

func newProxy(m *metrics, accessLog *slog.Logger, httpsPort int) *Proxy {
	p := &Proxy{m: m, accessLog: accessLog, httpsPort: httpsPort, clientBodyTimeout: DefaultClientBodyTimeout}
	dialer := &net.Dialer{KeepAlive: 30 * time.Second}
	p.dialer = dialer
	p.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		timeout := defaultConnectTimeout
		if st, _ := ctx.Value(ctxKey{}).(*reqState); st != nil && st.cfg.connectTimeout > 0 {
			timeout = st.cfg.connectTimeout
		}
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return dialer.DialContext(ctx, network, addr)
	}
	def := p.newTransports(defaultSendTimeout)
	p.h1, p.h2c = def.h1, def.h2c
	p.rp = &httputil.ReverseProxy{
		Rewrite:   p.rewrite,
		Transport: roundTripper{p},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p.fail(w, r, r.Context().Value(ctxKey{}).(*reqState), err)
		},
		BufferPool: bufferPool{},
		ErrorLog:   nil,
	}
	return p
}

// Table returns the current routing table.
func (p *Proxy) Table() *Table { return p.table.Load() }

// transports are the http.Transports of one send timeout.
type transports struct{ h1, h2c *http.Transport }

func (p *Proxy) newTransports(send time.Duration) *transports {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := p.dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return newSendConn(c, send), nil
	}
	h1 := &http.Transport{
		Proxy:                  nil, // never an environment proxy
		DialContext:            dial,
		MaxIdleConns:           0,
		MaxIdleConnsPerHost:    512,
		IdleConnTimeout:        90 * time.Second,
		ExpectContinueTimeout:  time.Second,
		DisableCompression:     true, // Accept-Encoding passes through as sent
		WriteBufferSize:        32 << 10,
		ReadBufferSize:         32 << 10,
		MaxResponseHeaderBytes: 1 << 20,
	}
	h2c := &http.Transport{
		DialContext:        dial,
		IdleConnTimeout:    90 * time.Second,
		DisableCompression: true,
	}
	h2c.Protocols = new(http.Protocols)
	h2c.Protocols.SetUnencryptedHTTP2(true)
	return &transports{h1: h1, h2c: h2c}
}

// transport is the Transport for a request: h2c or HTTP/1.1, dialing
// connections with the route's send timeout.
func (p *Proxy) transport(cfg *routeConfig, h2c bool) *http.Transport {
	h1, h2 := p.h1, p.h2c
	if d := sendTimeoutOf(cfg); d != defaultSendTimeout {
		v, ok := p.others.Load(d)
		if !ok {
			v, _ = p.others.LoadOrStore(d, p.newTransports(d))
		}
		tp := v.(*transports)
		h1, h2 = tp.h1, tp.h2c
	}
	if h2c {
		return h2
	}
	return h1
}

// setTable swaps in t and lets go of the Transports of send timeouts that
// no route of t uses any more: their idle connections are closed, and
// requests still on them finish (a connection they give back is closed
// by the idle timeout). A request on the old table may make its timeout's
// pair again; the next table lets go of it.
func (p *Proxy) setTable(t *Table) {
	p.table.Store(t)
	used := map[time.Duration]bool{}
	t.eachConfig(func(cfg *routeConfig) { used[sendTimeoutOf(cfg)] = true })
	p.others.Range(func(k, v any) bool {
		if !used[k.(time.Duration)] {
			p.others.Delete(k)
			tp := v.(*transports)
			tp.h1.CloseIdleConnections()
			tp.h2c.CloseIdleConnections()
		}
		return true
	})
}

// closeTransports closes the idle connections of every Transport.
func (p *Proxy) closeTransports() {
	p.h1.CloseIdleConnections()
	p.h2c.CloseIdleConnections()
	p.others.Range(func(_, v any) bool {
		tp := v.(*transports)
		tp.h1.CloseIdleConnections()
		tp.h2c.CloseIdleConnections()
		return true
	})
}

// rewrite shapes the outbound request: original Host, X-Forwarded-*,
// Forwarded, X-Real-IP, X-Request-ID, the rewritten path.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	st := pr.In.Context().Value(ctxKey{}).(*reqState)
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = st.backend.key // replaced by the endpoint in RoundTrip
	pr.Out.Host = pr.In.Host
	if st.path != "" {
		pr.Out.URL.Path, pr.Out.URL.RawPath = st.path, ""
	}
	// As nginx's $proxy_add_x_forwarded_for: the client's address is
	// appended to what the request already carried.
	if prior := pr.In.Header.Values("X-Forwarded-For"); len(prior) > 0 {
		pr.Out.Header["X-Forwarded-For"] = []string{strings.Join(prior, ", ")}
	}
	pr.SetXForwarded()
	ip := clientIP(pr.In)
	proto := "http"
	if pr.In.TLS != nil {
		proto = "https"
	}
	forIP := ip
	if strings.Contains(ip, ":") {
		forIP = `"[` + ip + `]"`
	}
	fwd := fmt.Sprintf("for=%s;host=%q;proto=%s", forIP, pr.In.Host, proto)
	if prev := pr.In.Header.Values("Forwarded"); len(prev) > 0 {
		fwd = strings.Join(prev, ", ") + ", " + fwd
	}
	pr.Out.Header.Set("Forwarded", fwd)
	pr.Out.Header.Set("X-Real-IP", ip)
	pr.Out.Header.Set("X-Request-ID", st.requestID)
	if _, ok := pr.In.Header["User-Agent"]; !ok {
		pr.Out.Header.Set("User-Agent", "")
	}
}

// roundTripper picks endpoints: round-robin, skipping ejected ones, and
// retries a connect failure on another endpoint when the request is
// idempotent and has no body (it never reached a backend).
type roundTripper struct{ p *Proxy }

func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	st := req.Context().Value(ctxKey{}).(*reqState)
	tr := rt.p.transport(st.cfg, st.backend.h2c && req.Header.Get("Upgrade") == "")
	readTimeout := defaultReadTimeout
	if st.cfg.readTimeout > 0 {
		readTimeout = st.cfg.readTimeout
	}
	var tried []*endpoint
	var lastErr error
	sticky := st.cfg.affinity.valueIn(req)
	for attempt := 0; ; attempt++ {
		var e *endpoint
		if attempt == 0 && sticky != "" {
			e = st.backend.pool.byID(sticky, time.Now().UnixNano())
		}
		if e == nil {
			e = st.backend.pool.pick(tried, st.cfg.leastRequest)
		}
		if e == nil {
			if lastErr != nil {
				return nil, lastErr
			}
			if req.Body != nil {
				_ = req.Body.Close()
			}
			return nil, errNoEndpoints
		}
		tried = append(tried, e)
		e.active.Add(1)
		req.URL.Host = e.addr
		st.endpoint = e.addr
		// The read timeout bounds the wait for response headers, then
		// each read of the body (idleBody). With a request body it starts
		// once the body is sent (sendBody).
		ctx, cancel := context.WithCancel(req.Context())
		out := req.WithContext(ctx)
		var body *sendBody
		if req.Body != nil && req.Body != http.NoBody {
			body = &sendBody{ReadCloser: req.Body, st: st, readTimeout: readTimeout, sendTimeout: sendTimeoutOf(st.cfg), clientTimeout: rt.p.clientBodyTimeout}
			if st.w != nil {
				body.client = http.NewResponseController(st.w)
			}
			out.Body = body
		}
		timer := time.AfterFunc(readTimeout, func() {
			if body != nil && body.stalled() {
				st.sendTimedOut.Store(true)
			} else {
				st.timedOut.Store(true)
			}
			cancel()
		})
		if body != nil {
			timer.Stop()
			body.timer = timer
		}
		resp, err := tr.RoundTrip(out)
		if body != nil {
			body.answered()
		}
		timer.Stop()
		if err == nil {
			e.ok()
			st.picked = e // released when the request ends (ServeHTTP)
			if aff := st.cfg.affinity; aff != nil && e.stickyID != sticky {
				resp.Header.Add("Set-Cookie", aff.setCookie(e, st.route))
			}
			if resp.StatusCode == http.StatusSwitchingProtocols {
				// The body is the tunnel (ReverseProxy needs it to stay
				// an io.ReadWriteCloser).
				if rwc, ok := resp.Body.(io.ReadWriteCloser); ok {
					resp.Body = newIdleTunnel(rwc, readTimeout)
				}
			} else if resp.Body != nil && resp.Body != http.NoBody {
				resp.Body = &idleBody{ReadCloser: resp.Body, timer: timer, d: readTimeout}
			}
			return resp, nil
		}
		e.active.Add(-1)
		cancel()
		if st.clientTimedOut.Load() {
			return nil, fmt.Errorf("%w after %s: %w", errClientBodyTimeout, body.clientTimeout, err)
		}
		if st.sendTimedOut.Load() {
			return nil, fmt.Errorf("%w: the backend took none of the body for %s: %w", errSendTimeout, body.sendTimeout, err)
		}
		if st.timedOut.Load() {
			return nil, fmt.Errorf("%w after %s: %w", errBackendTimout, readTimeout, err)
		}
		if !isConnectError(err) {
			return nil, err
		}
		e.fail()
		rt.p.m.connectErrors.WithLabelValues(st.backend.namespace, st.backend.service).Inc()
		lastErr = err
		if !retryable(req) || attempt+1 >= maxAttempts || req.Context().Err() != nil {
			return nil, err
		}
	}
}

// idleBody fails a read of the answer body that waits longer than d for
// the backend (nginx's proxy_read_timeout between two reads): the timer
// cancels the exchange. The clock runs only inside Read, so a client that
// is slow to take the answer does not count against the backend.
type idleBody struct {
	io.ReadCloser
	timer *time.Timer
	d     time.Duration
}

func (b *idleBody) Read(p []byte) (int, error) {
	b.timer.Reset(b.d)
	n, err := b.ReadCloser.Read(p)
	b.timer.Stop()
	return n, err
}

func (b *idleBody) Close() error {
	b.timer.Stop()
	return b.ReadCloser.Close()
}

// idleTunnel is an upgraded backend connection (a WebSocket) under the
// read timeout, as nginx has it: a tunnel whose backend sends nothing for
// that long is closed, both ways. It is an idleBody (the clock runs only
// inside Read, so a client slow to take what came does not count against
// the backend) whose timer closes the connection, and writes go straight
// through. A WebSocket kept open longer pings or sets proxy-read-timeout
// higher, as behind ingress-nginx.
type idleTunnel struct {
	*idleBody
	io.Writer
}

func newIdleTunnel(c io.ReadWriteCloser, d time.Duration) idleTunnel {
	timer := time.AfterFunc(d, func() { _ = c.Close() })
	timer.Stop()
	return idleTunnel{idleBody: &idleBody{ReadCloser: c, timer: timer, d: d}, Writer: c}
}

// DefaultClientBodyTimeout bounds each wait for more of a request body
// from the client unless Options.ClientBodyTimeout says otherwise (nginx's
// client_body_timeout default; 408).
const DefaultClientBodyTimeout = 60 * time.Second

// errClientBodyTimeout: the client stopped sending its request body.
var errClientBodyTimeout = errors.New("the client stopped sending the request body")

// sendBody is a request body on its way to the backend: the Transport
// reads a piece, writes it, reads the next. The exchange's read timer
// (RoundTrip) is used for each stage in turn:
//   - while the Transport writes what it read (from a read's return to
//     the next read), the send timeout: a backend that takes no more of
//     the body is given up on (504), also when the wait is not a socket
//     write (sendConn bounds those) but HTTP/2 flow control (h2c);
//   - while a read waits for the client, nothing: clientTimeout
//     bounds it with a read deadline on the client connection (408);
//   - once the body was read to its end, the read timeout: the wait for
//     the answer head starts when the request is sent, as nginx's
//     proxy_read_timeout, so an upload may take longer than it.
//
// After the answer head is in (answered) the timer is idleBody's and the
// body leaves it alone. This costs a lock, a timer update and a read
// deadline per read of up to 32 KiB, on this path only.
type sendBody struct {
	io.ReadCloser
	st                       *reqState
	client                   *http.ResponseController // nil: no client read deadlines
	timer                    *time.Timer              // the exchange's read timer
	readTimeout, sendTimeout time.Duration
	clientTimeout            time.Duration // each wait for the client (408)

	mu      sync.Mutex
	sending bool // between reads: the timer is the send timeout's
	done    bool // answered: the timer is no longer ours
}

func (b *sendBody) Read(p []byte) (int, error) {
	b.setTimer(false, 0)
	if b.client != nil && b.client.SetReadDeadline(time.Now().Add(b.clientTimeout)) != nil {
		b.client = nil // not supported by this connection
	}
	n, err := b.ReadCloser.Read(p)
	if err == nil {
		b.setTimer(true, b.sendTimeout)
		return n, nil
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// (The deadline stays: closing the body reads on, to drain it.)
		b.st.clientTimedOut.Store(true)
		return n, fmt.Errorf("%w: %w", errClientBodyTimeout, err)
	}
	if b.client != nil {
		// A later read of the client connection (net/http's check for a
		// client that went away, the next request) is not ours to bound.
		_ = b.client.SetReadDeadline(time.Time{})
	}
	// Sent (or failed): the wait for the answer starts.
	b.setTimer(false, b.readTimeout)
	return n, err
}

// setTimer runs the timer for d (0: stops it) unless the answer is in.
func (b *sendBody) setTimer(sending bool, d time.Duration) {
	b.mu.Lock()
	if !b.done {
		b.sending = sending
		if d > 0 {
			b.timer.Reset(d)
		} else {
			b.timer.Stop()
		}
	}
	b.mu.Unlock()
}

// stalled: the timer that fired was the send timeout's.
func (b *sendBody) stalled() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sending && !b.done
}

// answered: the answer head is in (or the exchange failed).
func (b *sendBody) answered() {
	b.mu.Lock()
	b.done = true
	b.mu.Unlock()
}

// isConnectError reports whether err happened before the request was
// sent: the connection could not be made.
func isConnectError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
}

// retryable: idempotent methods without a body (a consumed body cannot be
// sent again without buffering it).
func retryable(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
	default:
		return false
	}
	return req.Body == nil || req.Body == http.NoBody || req.ContentLength == 0 && req.Header.Get("Transfer-Encoding") == ""
}

// fail turns proxy errors into clear 502/503/504 answers.
func (p *Proxy) fail(w http.ResponseWriter, r *http.Request, st *reqState, err error) {
	be := st.backend
	var mbe *http.MaxBytesError
	switch {
	case errors.Is(err, errNoEndpoints):
		msg := be.unavailable
		if msg == "" {
			msg = fmt.Sprintf("service %s/%s port %s has no ready endpoints", be.namespace, be.service, be.port)
		}
		httpError(w, http.StatusServiceUnavailable, msg)
	case errors.As(err, &mbe):
		httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", mbe.Limit))
	case errors.Is(err, errSendTimeout):
		httpError(w, http.StatusGatewayTimeout, fmt.Sprintf("backend %s (endpoint %s) stopped taking the request", be.key, st.endpoint))
	case errors.Is(err, errBackendTimout):
		httpError(w, http.StatusGatewayTimeout, fmt.Sprintf("backend %s (endpoint %s) did not answer in time", be.key, st.endpoint))
	case errors.Is(err, errClientBodyTimeout):
		// (The client connection's read failed: net/http has cancelled
		// the request's context, which the next case would take for a
		// client that went away.)
		httpError(w, http.StatusRequestTimeout, fmt.Sprintf("no more of the request body arrived for %s", p.clientBodyTimeout))
	case r.Context().Err() != nil:
		// The client went away; nobody reads an answer.
		w.WriteHeader(499)
	case isConnectError(err):
		httpError(w, http.StatusBadGateway, fmt.Sprintf("could not connect to backend %s (last endpoint tried %s)", be.key, st.endpoint))
	default:
		httpError(w, http.StatusBadGateway, fmt.Sprintf("backend %s (endpoint %s) failed: %v", be.key, st.endpoint, err))
	}
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = fmt.Fprintf(w, "%d %s: %s\n", code, http.StatusText(code), msg)
}

// ServeHTTP routes one request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rid := ""
	if v := r.Header["X-Request-Id"]; len(v) > 0 {
		rid = v[0]
	}
	if rid == "" || len(rid) > 200 {
		rid = newRequestID()
	}
	// One allocation for the per-request state.
	rs := &struct {
		lw logWriter
		st reqState
	}{lw: logWriter{ResponseWriter: w, code: http.StatusOK}, st: reqState{requestID: rid}}
	lw, st := &rs.lw, &rs.st
	lw.Header()["X-Request-Id"] = []string{rid}
	defer func() {
		if st.picked != nil {
			st.picked.active.Add(-1)
		}
		p.finish(r, lw, st, start)
	}()

	rt := p.table.Load().Match(r.Host, r.URL.Path)
	if rt == nil {
		httpError(lw, http.StatusNotFound, fmt.Sprintf("no Ingress rule for host %q and path %q", normalizeHost(r.Host), r.URL.Path))
		return
	}
	st.route, st.cfg, st.backend = rt, rt.cfg, rt.backend
	cfg := rt.cfg
	if r.TLS == nil && ((rt.hostTLS && cfg.sslRedirect) || cfg.forceSSLRedirect) {
		host := normalizeHost(r.Host)
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		if p.httpsPort != 443 && p.httpsPort != 0 {
			host += ":" + strconv.Itoa(p.httpsPort)
		}
		http.Redirect(lw, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
		return
	}
	if cfg.cors != nil && cfg.cors.apply(lw, r) {
		return // preflight answered
	}
	if cfg.limiter != nil && !cfg.limiter.allow(clientIP(r), start) {
		httpError(lw, http.StatusServiceUnavailable, "rate limit exceeded")
		return
	}
	if a := cfg.auth; a != nil {
		if a.broken != "" {
			httpError(lw, http.StatusServiceUnavailable, "authentication is misconfigured for this route")
			return
		}
		u, pw, ok := r.BasicAuth()
		if !ok || !a.check(u, pw) {
			lw.Header().Set("WWW-Authenticate", fmt.Sprintf("Basic realm=%q", a.realm))
			httpError(lw, http.StatusUnauthorized, "authentication required")
			return
		}
	}
	if cfg.bodyLimit > 0 {
		if r.ContentLength > cfg.bodyLimit {
			httpError(lw, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", cfg.bodyLimit))
			return
		}
		r.Body = http.MaxBytesReader(lw, r.Body, cfg.bodyLimit)
	}
	if c := rt.canary; c != nil && c.backend != nil {
		// A client with an affinity cookie stays on the side (canary or
		// not) that holds its endpoint, as ingress-nginx's default sticky
		// canary behavior.
		switch id := cfg.affinity.valueIn(r); {
		case id != "" && c.backend.pool.has(id):
			st.backend = c.backend
		case id != "" && rt.backend != nil && rt.backend.pool.has(id):
		case useCanary(c, r):
			st.backend = c.backend
		}
	}
	if cfg.rewriteTarget != "" {
		st.path = rewritePath(rt, cfg.rewriteTarget, r.URL.Path)
	}
	if !p.fastOff && cfg.affinity == nil && fastEligible(r, st.backend) {
		p.serveFast(lw, r, st)
		return
	}
	st.w = lw
	p.rp.ServeHTTP(lw, r.WithContext(context.WithValue(r.Context(), ctxKey{}, st)))
}

// useCanary decides for one request: the header first (a value match, or
// "always"/"never"), then the weight.
func useCanary(c *canaryRoute, r *http.Request) bool {
	if c.header != "" {
		v := r.Header.Get(c.header)
		if c.headerValue != "" {
			if v == c.headerValue {
				return true
			}
		} else {
			switch v {
			case "always":
				return true
			case "never":
				return false
			}
		}
	}
	return c.weight > 0 && mrand.IntN(c.weightTotal) < c.weight
}

// rewritePath applies rewrite-target: for a regex path the target with
// $n capture groups replaces the whole path (nginx's rewrite); for a
// prefix path the matched prefix is replaced by the target.
func rewritePath(rt *route, target, path string) string {
	if rt.re != nil {
		m := rt.re.FindStringSubmatchIndex(path)
		if m == nil {
			return path
		}
		out := string(rt.re.ExpandString(nil, target, path, m))
		if !strings.HasPrefix(out, "/") {
			out = "/" + out
		}
		return out
	}
	rest := strings.TrimPrefix(path, strings.TrimSuffix(rt.path, "/"))
	out := strings.TrimSuffix(target, "/") + rest
	if out == "" {
		out = "/"
	}
	if !strings.HasPrefix(out, "/") {
		out = "/" + out
	}
	return out
}

// apply adds CORS headers for an allowed Origin and answers preflights
// (true = answered).
func (c *corsConfig) apply(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	allowed := ""
	for _, o := range c.allowOrigins {
		if o == "*" {
			allowed = "*"
			if c.allowCredentials {
				allowed = origin // "*" is not valid with credentials
			}
			break
		}
		if strings.EqualFold(o, origin) {
			allowed = origin
			break
		}
	}
	if allowed == "" {
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", allowed)
	if allowed != "*" {
		h.Add("Vary", "Origin")
	}
	if c.allowCredentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if c.exposeHeaders != "" {
		h.Set("Access-Control-Expose-Headers", c.exposeHeaders)
	}
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.Set("Access-Control-Allow-Methods", c.allowMethods)
		h.Set("Access-Control-Allow-Headers", c.allowHeaders)
		h.Set("Access-Control-Max-Age", c.maxAge)
		h.Set("Content-Length", "0")
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	return false
}

// finish writes the access log line and the metrics of one request.
func (p *Proxy) finish(r *http.Request, lw *logWriter, st *reqState, start time.Time) {
	d := time.Since(start)
	rs := p.stats(st)
	rs.counter(p.m, lw.code).Inc()
	rs.duration.Observe(d.Seconds())
	if p.accessLog != nil {
		ns, ing, svc := rs.namespace, rs.ingress, rs.service
		p.accessLog.LogAttrs(r.Context(), slog.LevelInfo, "access",
			slog.String("request_id", st.requestID),
			slog.String("remote_addr", clientIP(r)),
			slog.String("method", r.Method),
			slog.String("host", r.Host),
			slog.String("uri", r.RequestURI),
			slog.String("proto", r.Proto),
			slog.Int("status", lw.code),
			slog.Int64("bytes", lw.bytes),
			slog.Float64("duration_ms", float64(d.Microseconds())/1000),
			slog.String("namespace", ns),
			slog.String("ingress", ing),
			slog.String("service", svc),
			slog.String("endpoint", st.endpoint),
			slog.String("user_agent", r.UserAgent()),
			slog.String("referer", r.Referer()),
		)
	}
}

// logWriter records the status and size of an answer. It unwraps for
// http.ResponseController (flush, hijack for upgrades).
type logWriter struct {
	http.ResponseWriter
	code        int
	bytes       int64
	wroteHeader bool
}

func (w *logWriter) WriteHeader(code int) {
	if !w.wroteHeader && code >= 200 || code == http.StatusSwitchingProtocols {
		w.code, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *logWriter) Write(b []byte) (int, error) {
	w.wroteHeader = true
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *logWriter) Flush() { _ = http.NewResponseController(w.ResponseWriter).Flush() }

func (w *logWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var _ io.Writer = (*logWriter)(nil)

func clientIP(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

// newRequestID is 32 random hex digits, as nginx's $request_id. The
// runtime's per-thread ChaCha8 generator (seeded from the OS) is unique
// enough and, unlike crypto/rand, needs no system call.
func newRequestID() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], mrand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], mrand.Uint64())
	return hex.EncodeToString(b[:])
}

// bufferPool shares the 32 KiB copy buffers of streamed bodies.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *(buffers.Get().(*[]byte)) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }
