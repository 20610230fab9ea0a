// Package failover lets a node agent reach the API server through any of
// several servers: a client-side list with failover, as k3s's agent load
// balancer, but inside the client's dialer instead of a local listener.
//
// A Balancer keeps one current server and dials every new connection to
// it. When that dial fails, the next server that accepts becomes current.
// A health loop checks the current server (the API server's /readyz, so a
// server that lost etcd quorum counts as down) and, after two failed
// checks, moves to the next healthy server and closes every connection to
// the old one, so that open watches and idle HTTP/2 connections re-dial
// too instead of hanging on a server that was cut off. The list is the
// configured servers plus the ones learned from the `default/kubernetes`
// Endpoints, which list every live API server.
package failover

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// CheckFunc reports whether server (host:port) is healthy.
type CheckFunc func(ctx context.Context, server string) error

// LearnFunc returns the servers (host:port) the cluster currently lists.
type LearnFunc func(ctx context.Context) ([]string, error)

// Options configure a Balancer.
type Options struct {
	// Servers (host:port) are always kept, in this order, ahead of the
	// learned ones. At least one is required.
	Servers []string
	// Check is the health check; nil means a TCP connect.
	Check CheckFunc
	// DialTimeout bounds one dial attempt to one server (default 5s).
	DialTimeout time.Duration
	Logger      *slog.Logger
}

// Balancer dials the current server and fails over to the others.
type Balancer struct {
	log    *slog.Logger
	check  CheckFunc
	dialer net.Dialer

	mu       sync.Mutex
	static   []string
	learned  []string
	current  string
	failures int
	conns    map[string]map[*conn]struct{}
}

// New returns a Balancer whose current server is the first of
// opts.Servers.
func New(opts Options) (*Balancer, error) {
	if len(opts.Servers) == 0 {
		return nil, errors.New("failover: no server")
	}
	for _, s := range opts.Servers {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return nil, fmt.Errorf("failover: server %q: %w", s, err)
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 5 * time.Second
	}
	b := &Balancer{
		log:    opts.Logger.With("component", "apiserver-failover"),
		static: dedup(opts.Servers), current: opts.Servers[0],
		dialer: net.Dialer{Timeout: opts.DialTimeout, KeepAlive: 15 * time.Second},
		conns:  map[string]map[*conn]struct{}{},
	}
	b.check = opts.Check
	if b.check == nil {
		b.check = b.tcpCheck
	}
	return b, nil
}

// Current is the server new connections go to.
func (b *Balancer) Current() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.current
}

// Servers lists the configured servers, then the learned ones.
func (b *Balancer) Servers() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.serversLocked()
}

func (b *Balancer) serversLocked() []string {
	return dedup(append(slices.Clone(b.static), b.learned...))
}

// SetLearned replaces the learned servers. The configured ones stay, and
// so does the current server even when it is no longer listed (it is
// left only when it fails).
func (b *Balancer) SetLearned(servers []string) {
	servers = dedup(servers)
	slices.Sort(servers)
	b.mu.Lock()
	defer b.mu.Unlock()
	if !slices.Equal(servers, b.learned) {
		b.log.Info("API servers learned", "servers", servers)
		b.learned = servers
	}
}

// DialContext dials the current server, whatever addr says (it is the
// address of the URL the client was configured with), and on failure
// the others in list order; the first that answers becomes current.
func (b *Balancer) DialContext(ctx context.Context, network, _ string) (net.Conn, error) {
	var errs []error
	for range 3 {
		c, again := b.dialOnce(ctx, network, &errs)
		if c != nil {
			return c, nil
		}
		if !again {
			break
		}
	}
	return nil, fmt.Errorf("failover: no API server reachable: %w", errors.Join(errs...))
}

// dialOnce tries the servers in order. again reports that the current
// server changed while dialing (the health loop left it): the caller
// tries once more, in the new order.
func (b *Balancer) dialOnce(ctx context.Context, network string, errs *[]error) (_ net.Conn, again bool) {
	order := b.order()
	for _, s := range order {
		c, err := b.dialer.DialContext(ctx, network, s)
		if err != nil {
			*errs = append(*errs, err)
			if ctx.Err() != nil {
				return nil, false
			}
			continue
		}
		tc := &conn{Conn: c, b: b, server: s}
		if b.track(tc, order[0]) {
			return tc, false
		}
		_ = c.Close()
		*errs = append(*errs, fmt.Errorf("%s: left while dialing", s))
		return nil, true
	}
	return nil, false
}

// order is the current server, then the others from the one after it.
func (b *Balancer) order() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	all := b.serversLocked()
	i := slices.Index(all, b.current)
	if i < 0 {
		return append([]string{b.current}, all...)
	}
	return append(all[i:], all[:i]...)
}

// track records c, dialed when first was current. A dial that had to
// skip first makes c's server current. It reports false, leaving c
// untracked, when the current server changed while c was dialed (the
// health loop left it): the caller dials again.
func (b *Balancer) track(c *conn, first string) bool {
	b.mu.Lock()
	if b.current != first {
		ok := b.current == c.server
		if ok {
			b.addLocked(c)
		}
		b.mu.Unlock()
		return ok
	}
	b.addLocked(c)
	if c.server != first {
		b.switchLocked(first, c.server, "dial failed") // unlocks
		return true
	}
	b.mu.Unlock()
	return true
}

// switchLocked makes to current instead of from, unlocks b.mu and closes
// every connection to from.
func (b *Balancer) switchLocked(from, to, reason string) {
	b.current, b.failures = to, 0
	var stale []*conn
	for c := range b.conns[from] {
		stale = append(stale, c)
	}
	delete(b.conns, from)
	b.mu.Unlock()
	b.log.Warn("API server failover", "from", from, "to", to, "reason", reason, "closed", len(stale))
	for _, c := range stale {
		_ = c.Conn.Close()
	}
}

func (b *Balancer) addLocked(c *conn) {
	m := b.conns[c.server]
	if m == nil {
		m = map[*conn]struct{}{}
		b.conns[c.server] = m
	}
	m[c] = struct{}{}
}

// Conns is the number of open connections to server.
func (b *Balancer) Conns(server string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.conns[server])
}

// Run checks the current server every interval and learns the server list
// from learn (nil: never) every learnEvery, until ctx ends.
func (b *Balancer) Run(ctx context.Context, interval time.Duration, learn LearnFunc, learnEvery time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var lastLearn time.Time
	for {
		if learn != nil && time.Since(lastLearn) >= learnEvery {
			lastLearn = time.Now()
			lctx, cancel := context.WithTimeout(ctx, interval+5*time.Second)
			servers, err := learn(lctx)
			cancel()
			switch {
			case err != nil:
				if ctx.Err() == nil {
					b.log.Debug("learning API servers failed", "err", err)
				}
			case len(servers) > 0:
				b.SetLearned(servers)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		b.CheckOnce(ctx, interval)
	}
}

// failuresToLeave is how many checks in a row the current server must fail
// before the balancer moves away from it.
const failuresToLeave = 2

// CheckOnce checks the current server once (each check bounded by
// timeout) and, when it has failed failuresToLeave times in a row, moves
// to the first other server whose check passes.
func (b *Balancer) CheckOnce(ctx context.Context, timeout time.Duration) {
	cur := b.Current()
	cctx, cancel := context.WithTimeout(ctx, timeout)
	err := b.check(cctx, cur)
	cancel()
	b.mu.Lock()
	if cur != b.current {
		b.mu.Unlock()
		return // a dial moved meanwhile
	}
	if err == nil {
		b.failures = 0
		b.mu.Unlock()
		return
	}
	b.failures++
	n := b.failures
	b.mu.Unlock()
	if ctx.Err() != nil {
		return
	}
	b.log.Warn("API server health check failed", "server", cur, "failures", n, "err", err)
	if n < failuresToLeave {
		return
	}
	for _, s := range b.order()[1:] {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		err := b.check(cctx, s)
		cancel()
		if err != nil {
			continue
		}
		b.mu.Lock()
		if b.current != cur {
			b.mu.Unlock()
			return
		}
		b.switchLocked(cur, s, "health check failed") // unlocks
		return
	}
}

func (b *Balancer) tcpCheck(ctx context.Context, server string) error {
	c, err := b.dialer.DialContext(ctx, "tcp", server)
	if err != nil {
		return err
	}
	return c.Close()
}

// ReadyzCheck checks a server with GET https://<server>/readyz using
// tlsConfig (whose ServerName must name every server's certificate).
//
// Checks reuse one kept-alive connection per server, so an agent does not
// make a TLS handshake with its server every interval. Any failed check
// drops the idle connections, so the next check dials afresh. (A killed
// or cut-off server fails the check on its old connection too: the
// connection resets or the check times out.)
func ReadyzCheck(tlsConfig *tls.Config) CheckFunc {
	tr := &http.Transport{
		TLSClientConfig:     tlsConfig.Clone(),
		ForceAttemptHTTP2:   false,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     time.Minute,
	}
	c := &http.Client{Transport: tr}
	return func(ctx context.Context, server string) error {
		err := readyz(ctx, c, server)
		if err != nil {
			tr.CloseIdleConnections()
		}
		return err
	}
}

func readyz(ctx context.Context, c *http.Client, server string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+server+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz: %s", resp.Status)
	}
	return nil
}

// conn is a connection the balancer can close when its server fails.
type conn struct {
	net.Conn
	b      *Balancer
	server string
	once   sync.Once
}

func (c *conn) Close() error {
	c.once.Do(func() {
		c.b.mu.Lock()
		delete(c.b.conns[c.server], c)
		c.b.mu.Unlock()
	})
	return c.Conn.Close()
}

func dedup(in []string) []string {
	out := make([]string, 0, len(in))
	seen := map[string]bool{}
	for _, s := range in {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
