package apiserver

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// DefaultMaxWatchesPerUser bounds the watches one user may hold open at
// once (Config.MaxWatchesPerUser). It is well above what a component
// needs (an informer per kind, a node agent's per-object watches) and
// keeps one client from tying up the server's memory and goroutines with
// thousands of streams, as API Priority and Fairness does upstream.
const DefaultMaxWatchesPerUser = 1000

// exemptGroup's members are not limited, as upstream's exempt priority
// level serves system:masters without queuing.
const exemptGroup = "system:masters"

// watchLimiter counts open watches per user.
type watchLimiter struct {
	max  int
	mu   sync.Mutex
	open map[string]int
}

func newWatchLimiter(max int) *watchLimiter {
	switch {
	case max < 0:
		return nil
	case max == 0:
		max = DefaultMaxWatchesPerUser
	}
	return &watchLimiter{max: max, open: map[string]int{}}
}

func (l *watchLimiter) acquire(user string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[user] >= l.max {
		return false
	}
	l.open[user]++
	return true
}

func (l *watchLimiter) release(user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[user]--; l.open[user] <= 0 {
		delete(l.open, user)
	}
}

// limitWatches answers 429 with Retry-After to a watch beyond the user's
// limit; other requests and other users are not affected.
func (s *Server) limitWatches(next http.Handler) http.Handler {
	if s.watches == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info, _ := RequestInfoFrom(r.Context())
		u, _ := UserFrom(r.Context())
		if info == nil || info.Verb != "watch" || u == nil || slices.Contains(u.Groups, exemptGroup) {
			next.ServeHTTP(w, r)
			return
		}
		if !s.watches.acquire(u.Name) {
			w.Header().Set("Retry-After", strconv.Itoa(1))
			writeStatus(w, statusFor(apierrors.NewTooManyRequests(
				fmt.Sprintf("too many open watches for user %q (limit %d); close some or retry later", u.Name, s.watches.max), 1)))
			return
		}
		defer s.watches.release(u.Name)
		next.ServeHTTP(w, r)
	})
}
