package backend

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// CookieName is the session cookie.
const CookieName = "skiff_session"

// session is a logged-in user. The token never leaves the server after
// login: the browser holds only the random session id (HttpOnly cookie).
// A client-certificate user has no token: its clients impersonate the
// certificate's user and groups (certlogin.go).
type session struct {
	id      string
	user    string
	groups  []string
	csrf    string
	expires time.Time
	limiter *rate.Limiter
	// cert: the user logged in with a client certificate; the clients
	// below impersonate the user with the dashboard's identity. Otherwise
	// they carry the user's token. expires is at most the certificate's
	// NotAfter.
	cert bool

	client    kubernetes.Interface
	dynamic   dynamic.Interface
	discovery discovery.DiscoveryInterface
	rest      *rest.Config
	// members are the member clusters the user was checked for (members.go).
	members memberGrants
	// life ends (with a *sessionEnded cause) when the session does; the
	// session's streams end with it.
	life context.Context
	end  context.CancelCauseFunc
}

// sessionStore keeps sessions in memory (a restart logs everyone out).
type sessionStore struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]*session
}

func newSessionStore(ttl time.Duration) *sessionStore {
	return &sessionStore{ttl: ttl, m: map[string]*session{}}
}

func randomID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *sessionStore) add(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for id, o := range s.m {
		if now.After(o.expires) {
			delete(s.m, id)
		}
	}
	s.m[sess.id] = sess
}

// get returns the live session of r's cookie, or nil.
func (s *sessionStore) get(r *http.Request) *session {
	c, err := r.Cookie(CookieName)
	if err != nil || c.Value == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.m[c.Value]
	if sess == nil {
		return nil
	}
	if time.Now().After(sess.expires) {
		delete(s.m, c.Value)
		return nil
	}
	return sess
}

// remove forgets a session; it reports whether the session was there.
func (s *sessionStore) remove(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[id]
	delete(s.m, id)
	return ok
}

// all returns the sessions that have not expired.
func (s *sessionStore) all() []*session {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	out := make([]*session, 0, len(s.m))
	for _, sess := range s.m {
		if !now.After(sess.expires) {
			out = append(out, sess)
		}
	}
	return out
}

func (s *sessionStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

func (sess *session) checkCSRF(r *http.Request) bool {
	got := r.Header.Get("X-CSRF-Token")
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(sess.csrf)) == 1
}

// sessionEnded is why a session's streams were cancelled: logout,
// revocation or expiry.
type sessionEnded struct{ why string }

func (e *sessionEnded) Error() string { return "session ended: " + e.why + "; log in again" }

// stream returns the context of one stream of sess (an exec terminal, a
// merged-log stream): cancelled, with a *sessionEnded cause, when the
// session ends or expires, and by done.
func (sess *session) stream(parent context.Context) (ctx context.Context, done context.CancelFunc) {
	ctx, cancelExpiry := context.WithDeadlineCause(parent, sess.expires, &sessionEnded{why: "the session expired"})
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(sess.life, func() { cancel(context.Cause(sess.life)) })
	return ctx, func() {
		stop()
		cancel(nil)
		cancelExpiry()
	}
}

// endStreams ends the session's streams, now and any opened later (the
// first reason given stays).
func (sess *session) endStreams(why string) { sess.end(&sessionEnded{why: why}) }

// sessionEndOf is the session end that cancelled ctx, or nil.
func sessionEndOf(ctx context.Context) *sessionEnded {
	var e *sessionEnded
	if errors.As(context.Cause(ctx), &e) {
		return e
	}
	return nil
}
