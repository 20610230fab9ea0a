package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Health endpoints as upstream's: /livez, /readyz and /healthz run named
// checks. The root paths are public (anonymous probes, as upstream's
// system:public-info-viewer allows) and withhold the reasons; a single
// check, /readyz/<name>, is authenticated and authorized like any other
// non-resource URL (system:monitoring may read them) and tells the reason.

// healthCheck is one named check.
type healthCheck struct {
	name  string
	check func(ctx context.Context) error
}

// healthCheckTimeout bounds one check (upstream's etcd health timeout).
const healthCheckTimeout = 2 * time.Second

// livezChecks serve /livez and /healthz.
func (s *Server) livezChecks() []healthCheck {
	return []healthCheck{{"ping", func(context.Context) error { return nil }}, {"etcd", s.etcdHealth.check}}
}

// readyzChecks serve /readyz: liveness, plus start-up done and the watch
// cache (which every read is served from) synced.
func (s *Server) readyzChecks() []healthCheck {
	return append(s.livezChecks(),
		healthCheck{"informer-sync", func(context.Context) error {
			select {
			case <-s.cache.Ready():
				return nil
			default:
				return errors.New("watch cache not synced")
			}
		}},
		healthCheck{"poststarthook/skiff-bootstrap", func(context.Context) error {
			if !s.ready.Load() {
				return errors.New("start-up not complete")
			}
			return nil
		}},
	)
}

// etcdProbe reads one key from etcd, at most once a second however often
// it is asked: probes from many clients cost etcd one read.
type etcdProbe struct {
	get func(ctx context.Context) error

	mu   sync.Mutex
	at   time.Time
	last error
}

func (p *etcdProbe) check(ctx context.Context) error {
	if p == nil || p.get == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.at) < time.Second {
		return p.last
	}
	ctx, cancel := context.WithTimeout(ctx, healthCheckTimeout)
	defer cancel()
	p.last = p.get(ctx)
	p.at = time.Now()
	return p.last
}

// healthRoot serves /livez, /readyz or /healthz: "ok", or with ?verbose
// (or on failure) one line per check. ?exclude=<name> skips a check.
func (s *Server) healthRoot(kind string, checks func() []healthCheck) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		excluded := map[string]bool{}
		for _, n := range q["exclude"] {
			excluded[strings.TrimSpace(n)] = true
		}
		_, verbose := q["verbose"]
		var out strings.Builder
		failed := false
		for _, c := range checks() {
			if excluded[c.name] {
				fmt.Fprintf(&out, "[+]%s excluded: ok\n", c.name)
				delete(excluded, c.name)
				continue
			}
			if err := c.check(r.Context()); err != nil {
				s.log.Info(kind+" check failed", "check", c.name, "err", err)
				fmt.Fprintf(&out, "[-]%s failed: reason withheld\n", c.name)
				failed = true
				continue
			}
			fmt.Fprintf(&out, "[+]%s ok\n", c.name)
		}
		for n := range excluded {
			fmt.Fprintf(&out, "warn: some health checks cannot be excluded: no matches for %q\n", n)
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if failed {
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintf(&out, "%s check failed\n", kind)
			_, _ = w.Write([]byte(out.String()))
			return
		}
		if !verbose {
			_, _ = w.Write([]byte("ok"))
			return
		}
		fmt.Fprintf(&out, "%s check passed\n", kind)
		_, _ = w.Write([]byte(out.String()))
	}
}

// healthOne serves /<kind>/<name>: one check, with its reason on failure.
func (s *Server) healthOne(checks func() []healthCheck) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := strings.Trim(r.URL.Path[strings.IndexByte(r.URL.Path[1:], '/')+2:], "/")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		for _, c := range checks() {
			if c.name != name {
				continue
			}
			if err := c.check(r.Context()); err != nil {
				http.Error(w, "internal server error: "+err.Error(), http.StatusInternalServerError)
				return
			}
			_, _ = w.Write([]byte("ok"))
			return
		}
		http.NotFound(w, r)
	}
}
