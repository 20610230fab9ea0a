package backend

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Re-authorization. A subscription is authorized with the user's access
// reviews when it opens, but it streams from the backend's shared cache,
// so without more checks it would keep streaming after the user lost the
// right to see the kind. The re-authorizer therefore
//
//   - watches Roles, RoleBindings, ClusterRoles and ClusterRoleBindings
//     through the shared cache and, after any change, runs the access
//     reviews of every open subscription again (one pass per burst:
//     changes are coalesced for reauthSettle and passes are at least
//     reauthMinGap apart; a second pass reauthConfirm later covers the API
//     server's authorizer seeing the change after the backend did);
//   - every ReauthInterval runs the same pass, which covers authorizers
//     other than RBAC, and asks the API server who each session's token
//     belongs to (SelfSubjectReview): a token it no longer accepts (401)
//     or that now names another user ends the session, and so does a
//     client-certificate session the dashboard may no longer impersonate
//     (403).
//
// A refused subscription gets a "revoked" message and nothing after it;
// an ended session gets a "revoked" message without id and its sockets
// close.

// reviewVerbs are the verbs a subscription needs.
var reviewVerbs = []string{"list", "watch"}

// rbacKinds are the RBAC kinds whose changes trigger a pass.
var rbacKinds = []schema.GroupVersionResource{
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
}

const (
	// reauthSettle lets a burst of RBAC writes settle into one pass.
	reauthSettle = 200 * time.Millisecond
	// reauthMinGap is the least time between two passes.
	reauthMinGap = time.Second
	// reauthConfirm is when a pass after an RBAC change is repeated.
	reauthConfirm = 2 * time.Second
	// reauthParallel bounds the access reviews in flight.
	reauthParallel = 8
)

// startReauth starts the re-authorizer once, with the first authorized
// subscription; the RBAC informers it uses are synced when it returns, so
// no RBAC change after that goes unnoticed.
func (s *Server) startReauth() {
	s.reauthOnce.Do(func() {
		notify := make(chan struct{}, 1)
		var wg sync.WaitGroup
		for _, gvr := range rbacKinds {
			wg.Go(func() {
				if _, err := s.cache.acquire(s.bg, gvr, notify); err != nil {
					s.log.Warn("dashboard cannot watch RBAC: revoked access is noticed only by the periodic check",
						"resource", gvr.Resource, "err", err, "interval", s.opts.ReauthInterval)
				}
			})
		}
		wg.Wait()
		go s.reauthLoop(s.bg, notify)
	})
}

func (s *Server) reauthLoop(ctx context.Context, rbacChanged <-chan struct{}) {
	tick := time.NewTicker(s.opts.ReauthInterval)
	defer tick.Stop()
	var confirm <-chan time.Time
	var last time.Time
	for {
		periodic := false
		select {
		case <-ctx.Done():
			return
		case <-rbacChanged:
			if !sleepCtx(ctx, reauthSettle) {
				return
			}
			select {
			case <-rbacChanged:
			default:
			}
			confirm = time.After(reauthConfirm)
		case <-confirm:
			confirm = nil
		case <-tick.C:
			periodic = true
		}
		if !sleepCtx(ctx, reauthMinGap-time.Since(last)) {
			return
		}
		if periodic {
			s.recheckSessions(ctx)
		}
		s.reauthorize(ctx)
		last = time.Now()
	}
}

// sleepCtx waits d (nothing when d <= 0); false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// reviewKey identifies one access review of one session in a pass, so
// subscriptions asking the same question share the answer.
type reviewKey struct {
	sess    string
	cluster string
	verb    string
	gvr     schema.GroupVersionResource
	ns      string
	name    string
}

type reviewResult struct {
	once    sync.Once
	allowed bool
	err     error
}

// reauthorize runs the access reviews of every open, authorized
// subscription again, as its user, and revokes those now refused.
func (s *Server) reauthorize(ctx context.Context) {
	type openSub struct {
		c   *wsConn
		sub *subscription
		az  *subAuthz
	}
	var targets []openSub
	s.connsMu.Lock()
	for c := range s.conns {
		c.mu.Lock()
		for _, sub := range c.subs {
			if az := sub.authz.Load(); az != nil {
				targets = append(targets, openSub{c, sub, az})
			}
		}
		c.mu.Unlock()
	}
	s.connsMu.Unlock()
	if len(targets) == 0 {
		return
	}
	var mu sync.Mutex
	results := map[reviewKey]*reviewResult{}
	// shared runs f once per key in this pass.
	shared := func(k reviewKey, f func(context.Context) (bool, error)) (bool, error) {
		mu.Lock()
		r := results[k]
		if r == nil {
			r = &reviewResult{}
			results[k] = r
		}
		mu.Unlock()
		r.once.Do(func() {
			rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			r.allowed, r.err = f(rctx)
		})
		return r.allowed, r.err
	}
	// review asks the subscription's cluster: the host as the user, a
	// member with its credentials.
	review := func(sess *session, verb string, az *subAuthz) (bool, error) {
		client, cluster := sess.client, ""
		if az.t != nil && az.t.cluster != "" {
			client, cluster = az.t.client, az.t.cluster
		}
		return shared(reviewKey{sess: sess.id, cluster: cluster, verb: verb, gvr: az.gvr, ns: az.ns}, func(ctx context.Context) (bool, error) {
			return canI(ctx, client, verb, az.gvr, az.ns, "")
		})
	}
	// secretReview asks whether the user may still read a member's
	// credentials Secret on the host.
	secretReview := func(sess *session, t *target) (bool, error) {
		return shared(reviewKey{sess: sess.id, verb: "get", gvr: secretsGVR, ns: t.secretNS, name: t.secretName}, func(ctx context.Context) (bool, error) {
			return accessReview(ctx, sess.client, authzv1.ResourceAttributes{Verb: "get", Version: "v1", Resource: "secrets", Namespace: t.secretNS, Name: t.secretName})
		})
	}
	sem := make(chan struct{}, reauthParallel)
	var wg sync.WaitGroup
	for _, t := range targets {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			sess := t.c.sess
			if mt := t.az.t; mt != nil && mt.cluster != "" {
				ok, err := secretReview(sess, mt)
				switch {
				case apierrors.IsUnauthorized(err):
					s.revokeSession(sess, "the API server no longer accepts this session's token")
					return
				case err != nil:
					s.log.Warn("dashboard re-authorization failed", "user", sess.user, "cluster", mt.cluster, "err", err)
					return
				case !ok:
					sess.members.drop(mt.cluster)
					s.log.Info("dashboard member subscription revoked", "user", sess.user, "cluster", mt.cluster)
					t.c.revoke(t.sub, fmt.Sprintf("access revoked: %s cannot get secret %s/%s, the credentials of member cluster %q",
						sess.user, mt.secretNS, mt.secretName, mt.cluster))
					return
				}
			}
			for _, verb := range t.az.reviewVerbs() {
				ok, err := review(sess, verb, t.az)
				switch {
				case apierrors.IsUnauthorized(err) && (t.az.t == nil || t.az.t.cluster == ""):
					s.revokeSession(sess, "the API server no longer accepts this session's token")
					return
				case err != nil:
					// Not a refusal: keep streaming; the next pass asks again.
					s.log.Warn("dashboard re-authorization failed", "user", sess.user, "resource", t.az.gvr.Resource, "err", err)
					return
				case !ok:
					s.log.Info("dashboard subscription revoked", "user", sess.user, "resource", t.az.gvr.Resource, "namespace", t.az.ns, "verb", verb)
					t.c.revoke(t.sub, "access revoked: "+t.az.denied(sess.user, verb))
					return
				}
			}
		}()
	}
	wg.Wait()
}

// revoke ends sub (unless it already ended or was replaced) and then
// tells the browser: no page of it follows the message.
func (c *wsConn) revoke(sub *subscription, message string) {
	c.mu.Lock()
	if c.subs[sub.id] != sub {
		c.mu.Unlock()
		return
	}
	delete(c.subs, sub.id)
	c.mu.Unlock()
	sub.cancel()
	<-sub.done
	c.send(errorMsg{Type: "revoked", ID: sub.id, Code: http.StatusForbidden, Reason: string(metav1.StatusReasonForbidden), Message: message})
}

// recheckSessions ends the sockets of expired sessions, asks the API
// server who each session's token belongs to and ends the sessions whose
// token it refuses or now maps to another user.
func (s *Server) recheckSessions(ctx context.Context) {
	now := time.Now()
	for _, sess := range s.sessionsWithSockets() {
		if now.After(sess.expires) {
			s.sessions.remove(sess.id)
			s.closeSessionSockets(sess, "the session expired")
		}
	}
	sessions := s.sessions.all()
	sem := make(chan struct{}, reauthParallel)
	var wg sync.WaitGroup
	for _, sess := range sessions {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			rev, err := sess.client.AuthenticationV1().SelfSubjectReviews().Create(rctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
			switch {
			case apierrors.IsUnauthorized(err):
				s.revokeSession(sess, "the API server no longer accepts this session's token")
			case sess.cert && apierrors.IsForbidden(err):
				// A certificate session acts by impersonation.
				s.revokeSession(sess, "the dashboard may no longer act as this certificate's user")
			case err != nil:
				s.log.Warn("dashboard session check failed", "user", sess.user, "err", err)
			case rev.Status.UserInfo.Username != sess.user:
				s.revokeSession(sess, fmt.Sprintf("this session's token now belongs to %q", rev.Status.UserInfo.Username))
			}
		}()
	}
	wg.Wait()
}

// revokeSession forgets sess and ends its sockets with a message telling
// the browser to log in again.
func (s *Server) revokeSession(sess *session, why string) {
	if !s.sessions.remove(sess.id) {
		return // already ended
	}
	s.log.Info("dashboard session revoked", "user", sess.user, "why", why)
	s.closeSessionSockets(sess, why)
}

// sessionsWithSockets returns the sessions that have a socket open.
func (s *Server) sessionsWithSockets() []*session {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	seen := map[*session]bool{}
	var out []*session
	for c := range s.conns {
		if !seen[c.sess] {
			seen[c.sess] = true
			out = append(out, c.sess)
		}
	}
	return out
}

// closeSessionSockets ends every socket and stream (exec terminals,
// merged logs) of sess (the session itself was removed by the caller).
func (s *Server) closeSessionSockets(sess *session, why string) {
	sess.endStreams(why)
	var conns []*wsConn
	s.connsMu.Lock()
	for c := range s.conns {
		if c.sess == sess {
			conns = append(conns, c)
		}
	}
	s.connsMu.Unlock()
	for _, c := range conns {
		c.endSession(why)
	}
}

// endSession stops every subscription of the socket, sends the session's
// revocation and closes the socket.
func (c *wsConn) endSession(why string) {
	c.mu.Lock()
	subs := make([]*subscription, 0, len(c.subs))
	for id, sub := range c.subs {
		subs = append(subs, sub)
		delete(c.subs, id)
	}
	c.mu.Unlock()
	for _, sub := range subs {
		sub.cancel()
		<-sub.done
	}
	c.send(errorMsg{Type: "revoked", Code: http.StatusUnauthorized, Reason: "SessionRevoked", Message: "session ended: " + why + "; log in again"})
	c.send(wsClose{code: websocket4401, text: "session revoked"})
}

// websocket4401 is the close code of a revoked session (application
// codes are 4000-4999; 4401 mirrors HTTP 401).
const websocket4401 = 4401
