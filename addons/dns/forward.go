package dns

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

// ErrNoUpstream is returned when every upstream failed.
var ErrNoUpstream = errors.New("dns: no upstream answered")

// forwarder resolves names outside the cluster zone through upstream
// resolvers (per stub domain, else the default list), with a cache.
type forwarder struct {
	upstreams []string            // host:port
	stubs     map[string][]string // zone (lower-case FQDN) -> host:port
	udp, tcp  *mdns.Client
	cache     *cache
	m         *metrics
}

func newForwarder(upstreams []string, stubs map[string][]string, c *cache, m *metrics, timeout time.Duration) *forwarder {
	st := map[string][]string{}
	for z, us := range stubs {
		st[mdns.Fqdn(strings.ToLower(z))] = us
	}
	return &forwarder{
		upstreams: upstreams,
		stubs:     st,
		udp:       &mdns.Client{Net: "udp", Timeout: timeout, UDPSize: maxUDPSize},
		tcp:       &mdns.Client{Net: "tcp", Timeout: timeout},
		cache:     c,
		m:         m,
	}
}

// pick returns the upstreams for name: the longest matching stub domain,
// else the defaults.
func (f *forwarder) pick(name string) []string {
	best, bestLen := f.upstreams, -1
	for z, us := range f.stubs {
		if mdns.IsSubDomain(z, name) && len(z) > bestLen {
			best, bestLen = us, len(z)
		}
	}
	return best
}

// forward answers r from the cache or the upstreams. The returned message
// is the caller's to modify. An answer from the cache comes with the
// entry's times (for the UDP fast path); a prefetching hit and an
// upstream answer come with none.
func (f *forwarder) forward(ctx context.Context, r *mdns.Msg) (*mdns.Msg, cacheHit, error) {
	q := r.Question[0]
	key := cacheKey(q, r)
	if m, refresh, hit := f.cache.lookup(key); m != nil {
		f.m.cacheHit()
		if refresh {
			// Prefetch: a popular entry near its expiry is refreshed in
			// the background, so its clients never wait on a miss.
			go f.prefetch(key, r.Copy())
			hit = cacheHit{}
		}
		return reply(r, m), hit, nil
	}
	f.m.cacheMiss()
	m, err := f.exchange(ctx, key, r)
	return m, cacheHit{}, err
}

// prefetch refreshes the cache entry key with an upstream exchange for r.
func (f *forwarder) prefetch(key string, r *mdns.Msg) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = f.exchange(ctx, key, r)
	f.cache.prefetched(key)
}

// exchange asks the upstreams for r's question and caches the answer.
func (f *forwarder) exchange(ctx context.Context, key string, r *mdns.Msg) (*mdns.Msg, error) {
	q := r.Question[0]
	req := new(mdns.Msg)
	req.SetQuestion(q.Name, q.Qtype)
	req.Question[0].Qclass = q.Qclass
	req.RecursionDesired = true
	req.CheckingDisabled = r.CheckingDisabled
	do := false
	if opt := r.IsEdns0(); opt != nil {
		do = opt.Do()
	}
	req.SetEdns0(maxUDPSize, do)
	var lastErr error = ErrNoUpstream
	for _, up := range f.pick(strings.ToLower(q.Name)) {
		resp, _, err := f.udp.ExchangeContext(ctx, req, up)
		if err == nil && resp.Truncated {
			resp, _, err = f.tcp.ExchangeContext(ctx, req, up)
		}
		if err != nil {
			f.m.forwardError()
			lastErr = fmt.Errorf("upstream %s: %w", up, err)
			continue
		}
		if resp.Rcode == mdns.RcodeServerFailure || resp.Rcode == mdns.RcodeRefused {
			lastErr = fmt.Errorf("upstream %s: %s", up, mdns.RcodeToString[resp.Rcode])
			continue
		}
		f.cache.put(key, resp)
		return reply(r, resp.Copy()), nil
	}
	return nil, lastErr
}

// reply turns an upstream (or cached) answer into the answer to r: r's
// id, question spelling and flags, and our own OPT record.
func reply(r, m *mdns.Msg) *mdns.Msg {
	m.Id = r.Id
	m.Question = r.Question
	m.RecursionDesired = r.RecursionDesired
	m.RecursionAvailable = true
	m.Authoritative = false
	m.Compress = true
	extra := m.Extra[:0:0]
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != mdns.TypeOPT {
			extra = append(extra, rr)
		}
	}
	m.Extra = extra
	if opt := r.IsEdns0(); opt != nil {
		m.SetEdns0(maxUDPSize, opt.Do())
	}
	return m
}

func cacheKey(q mdns.Question, r *mdns.Msg) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(q.Name))
	fmt.Fprintf(&b, "/%d/%d", q.Qtype, q.Qclass)
	if opt := r.IsEdns0(); opt != nil && opt.Do() {
		b.WriteString("/do")
	}
	if r.CheckingDisabled {
		b.WriteString("/cd")
	}
	return b.String()
}

// cache is a bounded answer cache. Positive answers live for their
// smallest TTL (at most maxTTL), negative answers (NXDOMAIN, NODATA) for
// the SOA's negative TTL (at most maxNegTTL). When full, an expired entry
// or else an arbitrary one is evicted (Go's map order is random).
//
// Prefetch (as CoreDNS's cache plugin): an entry that was stored for at
// least prefetchMinTTL, was hit at least prefetchHits times and has less
// than a tenth of its lifetime left is refreshed once in the background on
// its next hit.
type cache struct {
	mu        sync.Mutex
	cap       int
	maxTTL    time.Duration
	maxNegTTL time.Duration
	entries   map[string]cacheEntry
	now       func() time.Time
}

// cacheHit is what a cache answer's TTLs were computed from: the entry's
// storage time and expiry, and the age (whole seconds since stored) taken
// off every TTL.
type cacheHit struct {
	stored, expires time.Time
	age             uint32
}

// fastUntil is the instant after which the fast path must stop repeating
// this entry's answer: its expiry, or for an entry that may be prefetched
// the start of its last tenth of life (the full path's hits there count
// towards, and trigger, the prefetch).
func (h cacheHit) fastUntil() time.Time {
	life := h.expires.Sub(h.stored)
	if life >= prefetchMinTTL {
		return h.expires.Add(-life / 10)
	}
	return h.expires
}

type cacheEntry struct {
	msg         *mdns.Msg
	stored      time.Time
	expires     time.Time
	hits        int
	prefetching bool
}

// Prefetch thresholds.
const (
	prefetchMinTTL = 10 * time.Second
	prefetchHits   = 2
)

func newCache(capacity int, maxTTL, maxNegTTL time.Duration) *cache {
	return &cache{cap: capacity, maxTTL: maxTTL, maxNegTTL: maxNegTTL, entries: map[string]cacheEntry{}, now: time.Now}
}

// ttl is how long m may be cached (0 = not at all).
func (c *cache) ttl(m *mdns.Msg) time.Duration {
	if m.Truncated {
		return 0
	}
	switch {
	case m.Rcode == mdns.RcodeSuccess && len(m.Answer) > 0:
		minTTL := uint32(1<<31 - 1)
		for _, rr := range m.Answer {
			minTTL = min(minTTL, rr.Header().Ttl)
		}
		return min(time.Duration(minTTL)*time.Second, c.maxTTL)
	case m.Rcode == mdns.RcodeSuccess || m.Rcode == mdns.RcodeNameError:
		for _, rr := range m.Ns {
			if soa, ok := rr.(*mdns.SOA); ok {
				neg := min(soa.Hdr.Ttl, soa.Minttl)
				return min(time.Duration(neg)*time.Second, c.maxNegTTL)
			}
		}
	}
	return 0
}

func (c *cache) put(key string, m *mdns.Msg) {
	if c == nil || c.cap <= 0 {
		return
	}
	ttl := c.ttl(m)
	if ttl <= 0 {
		return
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[key]; !ok && len(c.entries) >= c.cap {
		c.evictLocked(now)
	}
	c.entries[key] = cacheEntry{msg: m.Copy(), stored: now, expires: now.Add(ttl)}
}

func (c *cache) evictLocked(now time.Time) {
	victim, n := "", 0
	for k, e := range c.entries {
		if victim == "" {
			victim = k
		}
		if !now.Before(e.expires) {
			victim = k
			break
		}
		if n++; n >= 8 {
			break
		}
	}
	delete(c.entries, victim)
}

// get returns a copy of a live entry with TTLs reduced by its age, and
// whether the caller should prefetch it (at most one caller per entry
// until prefetched is called).
func (c *cache) get(key string) (*mdns.Msg, bool) {
	m, refresh, _ := c.lookup(key)
	return m, refresh
}

// lookup is get, also returning the entry's times.
func (c *cache) lookup(key string) (*mdns.Msg, bool, cacheHit) {
	if c == nil {
		return nil, false, cacheHit{}
	}
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[key]
	if ok && !now.Before(e.expires) {
		delete(c.entries, key)
		ok = false
	}
	refresh := false
	if ok {
		e.hits++
		life := e.expires.Sub(e.stored)
		if !e.prefetching && life >= prefetchMinTTL && e.hits >= prefetchHits && e.expires.Sub(now) < life/10 {
			e.prefetching, refresh = true, true
		}
		c.entries[key] = e
	}
	c.mu.Unlock()
	if !ok {
		return nil, false, cacheHit{}
	}
	m := e.msg.Copy()
	age := uint32(now.Sub(e.stored) / time.Second)
	for _, sec := range [][]mdns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			h := rr.Header()
			if h.Rrtype == mdns.TypeOPT {
				continue
			}
			if h.Ttl > age {
				h.Ttl -= age
			} else {
				h.Ttl = 0
			}
		}
	}
	return m, refresh, cacheHit{stored: e.stored, expires: e.expires, age: age}
}

// prefetched clears the prefetch mark of key (a failed refresh may be
// tried again on a later hit; a successful one replaced the entry).
func (c *cache) prefetched(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[key]; ok && e.prefetching {
		e.prefetching = false
		c.entries[key] = e
	}
}

// len reports the number of entries (for tests).
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
