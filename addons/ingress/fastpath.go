package ingress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The fast path proxies bodiless HTTP/1.1 requests over the keep-alive
// pools of connpool.go: the request borrows a connection, writes its head,
// reads the answer with http.ReadResponse, streams the body to the client
// and gives the connection back once the body was read to its end. No
// Transport goroutines or channel handoffs, no cloned request or header
// map. Everything else (request bodies, upgrades, h2c backends, Expect,
// hosts or URLs that need normalizing) goes through httputil.ReverseProxy
// and http.Transport; both paths shape requests and answers alike.

// fastEligible reports whether the fast path can carry r to be.
func fastEligible(r *http.Request, be *backend) bool {
	if be == nil || be.h2c || r.ContentLength != 0 || (r.Body != nil && r.Body != http.NoBody) ||
		r.Method == http.MethodConnect || r.URL.Opaque != "" || !plainHost(r.Host) {
		return false
	}
	h := r.Header
	if _, ok := h["Upgrade"]; ok {
		return false
	}
	if _, ok := h["Expect"]; ok {
		return false
	}
	return true
}

// plainHost: a non-empty Host of ASCII letters, digits and . - : [ ] _
// (anything else is normalized or refused by http.Transport).
func plainHost(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '_':
		default:
			return false
		}
	}
	return true
}

// serveFast proxies one eligible request: endpoint choice, passive health
// and retries as roundTripper.RoundTrip.
func (p *Proxy) serveFast(w *logWriter, r *http.Request, st *reqState) {
	ctx := r.Context()
	connectTimeout, readTimeout := defaultConnectTimeout, defaultReadTimeout
	if st.cfg.connectTimeout > 0 {
		connectTimeout = st.cfg.connectTimeout
	}
	if st.cfg.readTimeout > 0 {
		readTimeout = st.cfg.readTimeout
	}
	var triedBuf [maxAttempts]*endpoint
	tried := triedBuf[:0]
	var lastErr error
	for attempt := 0; ; attempt++ {
		e := st.backend.pool.pick(tried, st.cfg.leastRequest)
		if e == nil {
			if lastErr == nil {
				lastErr = errNoEndpoints
			}
			p.fail(w, r, st, lastErr)
			return
		}
		tried = append(tried, e)
		e.active.Add(1)
		st.endpoint = e.addr
		resp, pc, err := p.exchange(ctx, w, r, st, e, connectTimeout, readTimeout)
		if err == nil {
			e.ok()
			st.picked = e // released when the request ends (ServeHTTP)
			p.relay(w, r, e, pc, resp)
			return
		}
		e.active.Add(-1)
		if !isConnectError(err) || ctx.Err() != nil {
			p.fail(w, r, st, err)
			return
		}
		e.fail()
		p.m.connectErrors.WithLabelValues(st.backend.namespace, st.backend.service).Inc()
		lastErr = err
		if !retryable(r) || attempt+1 >= maxAttempts {
			p.fail(w, r, st, err)
			return
		}
	}
}

// exchange sends the request head on a pooled (or new) connection and
// reads the answer's head. A reused connection that fails before a single
// byte of answer (the backend closed it while idle) is replaced by a new
// one once, for idempotent requests only.
func (p *Proxy) exchange(ctx context.Context, w *logWriter, r *http.Request, st *reqState, e *endpoint, connectTimeout, readTimeout time.Duration) (*http.Response, *pconn, error) {
	pc := e.conns.get(time.Now().UnixNano())
	if pc == nil {
		var err error
		if pc, err = p.dialEndpoint(ctx, e.addr, connectTimeout); err != nil {
			return nil, nil, err
		}
	}
	resp, err := p.send(ctx, w, r, st, pc, readTimeout)
	if err == nil {
		return resp, pc, nil
	}
	pc.close()
	if !pc.reused || pc.nread != 0 || errors.Is(err, errBackendTimout) || errors.Is(err, errBadHeader) || ctx.Err() != nil || !retryable(r) {
		return nil, nil, err
	}
	if pc, err = p.dialEndpoint(ctx, e.addr, connectTimeout); err != nil {
		return nil, nil, err
	}
	if resp, err = p.send(ctx, w, r, st, pc, readTimeout); err != nil {
		pc.close()
		return nil, nil, err
	}
	return resp, pc, nil
}

// send writes the request head and reads the answer's head within the
// read timeout; 1xx answers other than 101 are passed on to the client.
func (p *Proxy) send(ctx context.Context, w *logWriter, r *http.Request, st *reqState, pc *pconn, readTimeout time.Duration) (*http.Response, error) {
	pc.nread, pc.bodyIdle = 0, 0
	pc.sw.timeout = sendTimeoutOf(st.cfg)
	pc.watch(ctx)
	if err := writeRequestHead(pc.bw, r, st); err != nil {
		return nil, err
	}
	pc.limit = maxResponseHeader
	_ = pc.conn.SetReadDeadline(time.Now().Add(readTimeout))
	for n1xx := 0; ; n1xx++ {
		resp, err := http.ReadResponse(pc.br, r)
		if err != nil {
			var ne net.Error
			if !pc.interrupted.Load() && errors.As(err, &ne) && ne.Timeout() {
				return nil, fmt.Errorf("%w after %s: %w", errBackendTimout, readTimeout, err)
			}
			return nil, fmt.Errorf("read response: %w", err)
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			pc.headersRead(readTimeout)
			return resp, nil
		}
		if n1xx >= 5 {
			return nil, errors.New("too many 1xx informational responses")
		}
		// As ReverseProxy: forward the informational answer and clear the
		// header map it used.
		h := w.Header()
		copyHeaderTo(h, resp.Header)
		w.WriteHeader(resp.StatusCode)
		clear(h)
		h["X-Request-Id"] = []string{st.requestID}
		pc.limit = maxResponseHeader
	}
}

// errBadHeader is a header value http.Transport would refuse to send.
var errBadHeader = errors.New("invalid header field")

// writeRequestHead writes the outbound request head as ReverseProxy's
// rewrite and http.Transport would: the original Host, hop-by-hop headers
// dropped, the forwarding headers replaced, X-Request-ID, no default
// User-Agent or Accept-Encoding.
func writeRequestHead(bw *bufio.Writer, r *http.Request, st *reqState) error {
	h := r.Header
	// Headers named in Connection are hop-by-hop too.
	var connHeaders []string
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				connHeaders = append(connHeaders, textproto.CanonicalMIMEHeaderKey(f))
			}
		}
	}
	for k, vv := range h {
		if skipRequestHeader(k) {
			continue
		}
		if len(connHeaders) > 0 && slices.Contains(connHeaders, k) {
			continue
		}
		if !validHeaderKey(k) {
			return fmt.Errorf("%w name %q", errBadHeader, k)
		}
		for _, v := range vv {
			if !validHeaderValue(v) {
				return fmt.Errorf("%w value for %q", errBadHeader, k)
			}
		}
	}

	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	if st.path != "" {
		bw.WriteString((&url.URL{Path: st.path}).EscapedPath())
	} else if ep := r.URL.EscapedPath(); ep != "" {
		bw.WriteString(ep)
	} else {
		bw.WriteByte('/')
	}
	if q := cleanQueryParams(r.URL.RawQuery); q != "" || r.URL.ForceQuery {
		bw.WriteByte('?')
		bw.WriteString(q)
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(r.Host)
	bw.WriteString("\r\n")
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		bw.WriteString("Content-Length: 0\r\n") // as http.Transport
	}
	for k, vv := range h {
		if skipRequestHeader(k) || len(connHeaders) > 0 && slices.Contains(connHeaders, k) {
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(textproto.TrimString(v))
			bw.WriteString("\r\n")
		}
	}
	// Forwarding headers, as rewrite with SetXForwarded.
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err == nil {
		bw.WriteString("X-Forwarded-For: ")
		for _, v := range h["X-Forwarded-For"] {
			bw.WriteString(v)
			bw.WriteString(", ")
		}
		bw.WriteString(ip)
		bw.WriteString("\r\n")
	} else {
		ip = r.RemoteAddr
	}
	bw.WriteString("X-Forwarded-Host: ")
	bw.WriteString(r.Host)
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	bw.WriteString("\r\nX-Forwarded-Proto: ")
	bw.WriteString(proto)
	bw.WriteString("\r\nForwarded: ")
	for _, v := range h["Forwarded"] {
		bw.WriteString(v)
		bw.WriteString(", ")
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
	bw.Write(strconv.AppendQuote(bw.AvailableBuffer(), r.Host))
	bw.WriteString(";proto=")
	bw.WriteString(proto)
	bw.WriteString("\r\nX-Real-Ip: ")
	bw.WriteString(ip)
	bw.WriteString("\r\nX-Request-Id: ")
	bw.WriteString(st.requestID)
	bw.WriteString("\r\n")
	for _, v := range h["Te"] {
		if tokenListHas(v, "trailers") {
			bw.WriteString("Te: trailers\r\n")
			break
		}
	}
	bw.WriteString("\r\n")
	return bw.Flush()
}

// skipRequestHeader: hop-by-hop headers and the ones the proxy writes
// itself (canonical names).
func skipRequestHeader(k string) bool {
	switch k {
	case "Host", "Content-Length", "Transfer-Encoding", "Trailer", "Connection", "Proxy-Connection",
		"Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Upgrade",
		"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip", "X-Request-Id":
		return true
	}
	return false
}

// hopResponseHeader: hop-by-hop headers of an answer (as ReverseProxy's
// removeHopByHopHeaders).
func hopResponseHeader(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// tokenListHas reports whether a comma-separated header value lists tok
// (case-insensitive).
func tokenListHas(v, tok string) bool {
	for f := range strings.SplitSeq(v, ",") {
		if strings.EqualFold(textproto.TrimString(f), tok) {
			return true
		}
	}
	return false
}

func validHeaderKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// copyHeaderTo adds src's headers except hop-by-hop ones (and the ones
// its Connection header names) to dst.
func copyHeaderTo(dst, src http.Header) {
	var connHeaders []string
	for _, v := range src["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				connHeaders = append(connHeaders, textproto.CanonicalMIMEHeaderKey(f))
			}
		}
	}
	for k, vv := range src {
		if hopResponseHeader(k) || len(connHeaders) > 0 && slices.Contains(connHeaders, k) {
			continue
		}
		if prev, ok := dst[k]; ok {
			dst[k] = append(prev, vv...)
		} else {
			dst[k] = vv
		}
	}
}

// relay streams the answer to the client, as ReverseProxy: headers,
// announced trailers, the body flushed as it comes when its length is
// unknown (or it is an event stream), trailers. The connection goes back
// to the pool when the body was read to its end and the backend keeps it
// open; a failure mid-body aborts the client's answer.
func (p *Proxy) relay(w *logWriter, r *http.Request, e *endpoint, pc *pconn, resp *http.Response) {
	if resp.StatusCode == http.StatusSwitchingProtocols {
		pc.close()
		httpError(w, http.StatusBadGateway, "backend switched protocols without an upgrade request")
		return
	}
	h := w.Header()
	copyHeaderTo(h, resp.Header)
	announced := len(resp.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		h.Add("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(resp.StatusCode)
	flush := resp.ContentLength == -1 || isEventStream(resp.Header)
	if flush {
		w.Flush()
	}
	if err := copyBody(w, resp.Body, flush); err != nil {
		pc.close()
		if r.Context().Value(http.ServerContextKey) != nil {
			// The answer is cut short: abort the client connection so it
			// cannot mistake it for a complete one (as ReverseProxy).
			panic(http.ErrAbortHandler)
		}
		return
	}
	if len(resp.Trailer) > 0 {
		w.Flush() // chunked, so the trailers can follow
		if len(resp.Trailer) == announced {
			copyHeaderTo(h, resp.Trailer)
		} else {
			for k, vv := range resp.Trailer {
				for _, v := range vv {
					h.Add(http.TrailerPrefix+k, v)
				}
			}
		}
	}
	// Bytes after the answer (a backend that broke framing) make the
	// connection unusable.
	if !resp.Close && pc.br.Buffered() == 0 && pc.release() {
		e.conns.put(&p.pools, pc, time.Now().UnixNano())
		return
	}
	pc.close()
}

func isEventStream(h http.Header) bool {
	ct := h.Get("Content-Type")
	if len(ct) < len("text/event-stream") || !strings.EqualFold(ct[:len("text/event-stream")], "text/event-stream") {
		return false // (without parsing: ParseMediaType allocates)
	}
	base, _, _ := mime.ParseMediaType(ct)
	return base == "text/event-stream"
}

// copyBody streams src to w with a pooled buffer; read errors other than
// EOF and write errors are returned.
func copyBody(w *logWriter, src io.Reader, flush bool) error {
	if src == http.NoBody {
		return nil
	}
	bp := buffers.Get().(*[]byte)
	defer buffers.Put(bp)
	buf := *bp
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if flush {
				w.Flush()
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

// cleanQueryParams drops query parameters ReverseProxy would (a ';' or a
// bad escape makes it re-encode what parses).
func cleanQueryParams(s string) string {
	reencode := func(s string) string {
		v, _ := url.ParseQuery(s)
		return v.Encode()
	}
	for i := 0; i < len(s); {
		switch s[i] {
		case ';':
			return reencode(s)
		case '%':
			if i+2 >= len(s) || !ishex(s[i+1]) || !ishex(s[i+2]) {
				return reencode(s)
			}
			i += 3
		default:
			i++
		}
	}
	return s
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
