package ingress

import (
	"slices"
	"sync/atomic"
	"time"
)

// backend is one Service port behind a route.
type backend struct {
	key       string // "<ns>/<service>:<port>"
	namespace string
	service   string
	port      string
	pool      *pool
	h2c       bool // appProtocol kubernetes.io/h2c
	// unavailable is why the backend has no endpoints (503 body).
	unavailable string
}

// endpoint is one ready address of a backend. Its ejection state survives
// table rebuilds as long as the address stays in the EndpointSlices.
type endpoint struct {
	addr         string
	stickyID     string       // session affinity cookie value (affinity.go)
	ejectedUntil atomic.Int64 // unix nanoseconds
	failures     atomic.Int32 // consecutive connect failures
	active       atomic.Int64 // requests in flight through this proxy
	conns        connPool     // idle keep-alive connections (fast path)
}

// Passive health: an endpoint that refuses a connection is skipped for
// ejectBase, doubling with each consecutive failure up to ejectMax.
const (
	ejectBase = 2 * time.Second
	ejectMax  = 30 * time.Second
)

func (e *endpoint) ejected(now int64) bool { return e.ejectedUntil.Load() > now }

// fail ejects the endpoint after a connect failure.
func (e *endpoint) fail() {
	n := e.failures.Add(1)
	d := ejectBase << min(n-1, 4)
	if d > ejectMax {
		d = ejectMax
	}
	e.ejectedUntil.Store(time.Now().Add(d).UnixNano())
}

// ok clears the failure count after a connection succeeded.
func (e *endpoint) ok() {
	if e.failures.Load() != 0 {
		e.failures.Store(0)
		e.ejectedUntil.Store(0)
	}
}

// pool balances requests over a backend's endpoints: round-robin, or to
// the endpoint with the fewest requests in flight (ties in round-robin
// order) when the route asks for least_request.
type pool struct {
	eps  atomic.Pointer[[]*endpoint]
	next atomic.Uint64
}

// set replaces the endpoint list, keeping the state of addresses that stay.
func (p *pool) set(addrs []string) {
	old := p.eps.Load()
	if old != nil && len(*old) == len(addrs) {
		same := true
		for i, e := range *old {
			if e.addr != addrs[i] {
				same = false
				break
			}
		}
		if same {
			return
		}
	}
	byAddr := map[string]*endpoint{}
	if old != nil {
		for _, e := range *old {
			byAddr[e.addr] = e
		}
	}
	eps := make([]*endpoint, 0, len(addrs))
	for _, a := range addrs {
		e := byAddr[a]
		if e == nil {
			e = &endpoint{addr: a, stickyID: stickyID(a)}
		}
		eps = append(eps, e)
	}
	p.eps.Store(&eps)
}

// size is the number of endpoints.
func (p *pool) size() int {
	if eps := p.eps.Load(); eps != nil {
		return len(*eps)
	}
	return 0
}

// pick returns the next endpoint in round-robin order that is neither
// ejected nor already tried by this request; with leastRequest, the one of
// those with the fewest requests in flight, the first in round-robin order
// on a tie. When every untried endpoint is ejected it returns the one whose
// ejection ends first (a backend that is all down still gets probed by
// real traffic); nil when all were tried.
func (p *pool) pick(tried []*endpoint, leastRequest bool) *endpoint {
	epsp := p.eps.Load()
	if epsp == nil || len(*epsp) == 0 {
		return nil
	}
	eps := *epsp
	now := time.Now().UnixNano()
	start := p.next.Add(1) - 1
	var fallback, least *endpoint
	var leastActive int64
	for i := range eps {
		e := eps[(start+uint64(i))%uint64(len(eps))]
		if slices.Contains(tried, e) {
			continue
		}
		if !e.ejected(now) {
			if !leastRequest {
				return e
			}
			if a := e.active.Load(); least == nil || a < leastActive {
				least, leastActive = e, a
			}
			continue
		}
		if fallback == nil || e.ejectedUntil.Load() < fallback.ejectedUntil.Load() {
			fallback = e
		}
	}
	if least != nil {
		return least
	}
	return fallback
}
