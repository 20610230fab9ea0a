package apiserver

import (
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// failureThrottle slows down sources that keep failing authentication.
// Each source IP may fail at Rate per second (with a burst), and all
// sources together at GlobalRate; beyond either its 401 answers wait for
// their turn, at most MaxWait. Valid requests never wait, so a flood of
// bad tokens costs the server (and the clients it serves) little, whether
// it comes from one place or is spread over many, and guessing tokens
// gets slow.
type failureThrottle struct {
	rate    rate.Limit
	burst   int
	maxWait time.Duration
	global  *rate.Limiter

	mu      sync.Mutex
	sources map[string]*throttleEntry
	swept   time.Time
}

type throttleEntry struct {
	lim  *rate.Limiter
	seen time.Time
}

// AuthFailureLimits tunes the throttle (Config.AuthFailures); zero
// values take the defaults, a negative Rate turns it off.
type AuthFailureLimits struct {
	// Rate is the failed authentications per second one source IP may
	// make before its answers are delayed (default 500).
	Rate float64
	// Burst is how many may come at once (default 500).
	Burst int
	// GlobalRate is the failed authentications per second of all
	// sources together before answers are delayed (default 1000, with a
	// burst of as many); a negative value turns only this limit off.
	GlobalRate float64
	// MaxWait caps the delay of one answer (default 1s).
	MaxWait time.Duration
}

func newFailureThrottle(l AuthFailureLimits) *failureThrottle {
	if l.Rate < 0 {
		return nil
	}
	if l.Rate == 0 {
		l.Rate = 500
	}
	if l.Burst <= 0 {
		l.Burst = 500
	}
	if l.MaxWait <= 0 {
		l.MaxWait = time.Second
	}
	t := &failureThrottle{rate: rate.Limit(l.Rate), burst: l.Burst, maxWait: l.MaxWait, sources: map[string]*throttleEntry{}}
	if l.GlobalRate == 0 {
		l.GlobalRate = 1000
	}
	if l.GlobalRate > 0 {
		t.global = rate.NewLimiter(rate.Limit(l.GlobalRate), max(1, int(l.GlobalRate)))
	}
	return t
}

// delay records one failure of the request's source and returns how long
// its answer should wait.
func (t *failureThrottle) delay(r *http.Request, now time.Time) time.Duration {
	if t == nil {
		return 0
	}
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		ip = r.RemoteAddr
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Sub(t.swept) > time.Minute {
		// Forget sources that have been quiet long enough to be whole again.
		for k, e := range t.sources {
			if now.Sub(e.seen) > time.Minute {
				delete(t.sources, k)
			}
		}
		t.swept = now
	}
	e := t.sources[ip]
	if e == nil {
		e = &throttleEntry{lim: rate.NewLimiter(t.rate, t.burst)}
		t.sources[ip] = e
	}
	e.seen = now
	d := e.lim.ReserveN(now, 1).DelayFrom(now)
	if t.global != nil {
		d = max(d, t.global.ReserveN(now, 1).DelayFrom(now))
	}
	if d > t.maxWait {
		d = t.maxWait
	}
	return d
}

// wait holds the failed request's answer back as the throttle says, or
// until the client goes away.
func (t *failureThrottle) wait(r *http.Request) {
	d := t.delay(r, time.Now())
	if d <= 0 {
		return
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-r.Context().Done():
	}
}
