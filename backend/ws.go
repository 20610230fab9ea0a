package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Websocket protocol (JSON text frames), one socket per browser tab.
//
// Browser → backend:
//
//	{"type":"subscribe","id":"s1","group":"apps","version":"v1","resource":"deployments",
//	 "namespace":"default","filter":{...},"sort":{...},"page":{"offset":0,"limit":100},
//	 "known":{"default/web":"1234"}}
//	{"type":"unsubscribe","id":"s1"}
//	{"type":"ping"}
//
// A subscribe (or metrics feed) may add "cluster":"<member>" to read a
// member cluster of the federation add-on instead of the host (members.go;
// refused with code 403 unless the user may get the member's credentials
// Secret).
//
// A subscribe with an id in use replaces that subscription (new filter,
// sort or page). "known" lists the rows (key → resourceVersion) the
// browser already holds, e.g. after a reconnect: they are not sent again
// unless they changed (resume).
//
// Backend → browser:
//
//	{"type":"page","id":"s1","seq":42,"total":30000,"offset":0,"order":["ns/a",...],
//	 "upsert":[{...object...}],"remove":["ns/b"]}
//	{"type":"error","id":"s1","code":403,"message":"..."}
//	{"type":"revoked","id":"s1","code":403,"reason":"Forbidden","message":"..."}
//	{"type":"revoked","code":401,"reason":"SessionRevoked","message":"..."}
//	{"type":"pong"}
//
// order is the page's rows in order; upsert holds only rows the browser
// does not have yet or that changed; remove the rows it should drop. seq
// is the kind cache's change counter and only grows.
//
// Open subscriptions are authorized again (reauth.go) whenever an RBAC
// object changes and every ReauthInterval. A subscription the user may no
// longer list or watch ends with a "revoked" message carrying its id, and
// no page of it follows; the browser should drop its rows. A session
// whose token the API server no longer accepts ends with a "revoked"
// message without id (code 401): the backend forgets the session and
// closes the socket, and the browser should go back to the login.

type clientMsg struct {
	Type      string            `json:"type"`
	ID        string            `json:"id"`
	Group     string            `json:"group"`
	Version   string            `json:"version"`
	Resource  string            `json:"resource"`
	Namespace string            `json:"namespace"`
	Filter    Filter            `json:"filter"`
	Sort      Sort              `json:"sort"`
	Page      Page              `json:"page"`
	Known     map[string]string `json:"known"`
	// Cluster names a member cluster ("" = the host; members.go).
	Cluster string `json:"cluster,omitempty"`
	// Kind, Name and Limit describe a metrics feed (metrics.go).
	Kind  string `json:"kind"`
	Name  string `json:"name"`
	Limit int    `json:"limit"`
}

type pageMsg struct {
	Type   string           `json:"type"`
	ID     string           `json:"id"`
	Seq    uint64           `json:"seq"`
	Total  int              `json:"total"`
	Offset int              `json:"offset"`
	Order  []string         `json:"order"`
	Upsert []map[string]any `json:"upsert"`
	Remove []string         `json:"remove"`
}

type errorMsg struct {
	Type    string `json:"type"`
	ID      string `json:"id,omitempty"`
	Code    int    `json:"code"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message"`
}

// wsClose asks the writer to close the socket after the messages queued
// before it.
type wsClose struct {
	code int
	text string
}

// minPageInterval coalesces bursts of changes into one page per
// subscription at most every 40 ms.
const minPageInterval = 40 * time.Millisecond

var upgrader = websocket.Upgrader{
	ReadBufferSize:    4096,
	WriteBufferSize:   64 << 10,
	EnableCompression: true,
}

// wsConn is one browser tab.
type wsConn struct {
	s    *Server
	sess *session
	conn *websocket.Conn
	out  chan any
	ctx  context.Context

	mu   sync.Mutex
	subs map[string]*subscription
}

type subscription struct {
	id     string
	cancel context.CancelFunc
	done   chan struct{}
	// authz is what the subscription was authorized for, set once the
	// user's access reviews allowed it; the re-authorizer checks it again.
	authz atomic.Pointer[subAuthz]
}

// subAuthz is the access a subscription needs: list and watch of gvr in
// namespace ns ("" = all namespaces or cluster scope).
type subAuthz struct {
	gvr        schema.GroupVersionResource
	ns         string
	namespaced bool
	// verbs are the verbs reviewed (default list and watch); what names
	// the kind in messages (default the resource).
	verbs []string
	what  string
	// t is the cluster the subscription reads (nil: the host); for a
	// member, the user's access to its credentials Secret is reviewed too.
	t *target
}

// reviewVerbs are the verbs the subscription needs.
func (a *subAuthz) reviewVerbs() []string {
	if a.verbs != nil {
		return a.verbs
	}
	return reviewVerbs
}

// denied describes a refused verb for the user.
func (a *subAuthz) denied(user, verb string) string {
	where := "in all namespaces"
	if a.ns != "" {
		where = "in namespace " + a.ns
	}
	if !a.namespaced {
		where = "at cluster scope"
	}
	if a.t != nil && a.t.cluster != "" {
		where += " of member cluster " + a.t.cluster
	}
	what := a.what
	if what == "" {
		what = a.gvr.Resource
	}
	return fmt.Sprintf("%s cannot %s %s %s", user, verb, what, where)
}

func (s *Server) websocket(w http.ResponseWriter, r *http.Request) {
	sess := sessionFrom(r.Context())
	up := upgrader
	up.CheckOrigin = func(r *http.Request) bool { return s.originAllowed(r, true) }
	conn, err := up.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered with an error status
	}
	conn.SetReadLimit(1 << 20)
	// The request context ends with the server (BaseContext), which
	// closes the socket through the writer.
	ctx, cancel := context.WithCancel(r.Context())
	c := &wsConn{s: s, sess: sess, conn: conn, out: make(chan any, 64), ctx: ctx, subs: map[string]*subscription{}}
	s.connsMu.Lock()
	s.conns[c] = struct{}{}
	s.connsMu.Unlock()
	defer func() {
		s.connsMu.Lock()
		delete(s.conns, c)
		s.connsMu.Unlock()
	}()
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop()
		cancel()
		// Unblocks the reader when the server or the writer ended first.
		_ = conn.Close()
	}()
	c.readLoop()
	cancel()
	c.mu.Lock()
	for _, sub := range c.subs {
		sub.cancel()
	}
	c.mu.Unlock()
	<-writerDone
	_ = conn.Close()
}

func (c *wsConn) send(v any) {
	select {
	case c.out <- v:
	case <-c.ctx.Done():
	}
}

// sendSub queues a subscription's message unless the subscription ended
// (ctx), so a cancelled subscription never blocks on a slow socket.
func (c *wsConn) sendSub(ctx context.Context, v any) {
	select {
	case c.out <- v:
	case <-ctx.Done():
	}
}

func (c *wsConn) writeLoop() {
	ping := time.NewTicker(30 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-c.ctx.Done():
			_ = c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			return
		case <-ping.C:
			if err := c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(10*time.Second)); err != nil {
				return
			}
		case v := <-c.out:
			if cl, ok := v.(wsClose); ok {
				_ = c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(cl.code, cl.text), time.Now().Add(time.Second))
				return
			}
			_ = c.conn.SetWriteDeadline(time.Now().Add(15 * time.Second))
			if err := c.conn.WriteJSON(v); err != nil {
				return
			}
		}
	}
}

func (c *wsConn) readLoop() {
	for {
		_, data, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		if time.Now().After(c.sess.expires) || c.s.sessions.get(sessionRequest(c.sess.id)) == nil {
			c.send(errorMsg{Type: "error", Code: http.StatusUnauthorized, Message: "session expired: log in again"})
			return
		}
		if !c.sess.limiter.Allow() {
			c.send(errorMsg{Type: "error", Code: http.StatusTooManyRequests, Message: "too many messages: slow down"})
			continue
		}
		var m clientMsg
		if err := json.Unmarshal(data, &m); err != nil {
			c.send(errorMsg{Type: "error", Code: http.StatusBadRequest, Message: "bad message: " + err.Error()})
			continue
		}
		switch m.Type {
		case "ping":
			c.send(map[string]string{"type": "pong"})
		case "subscribe":
			c.subscribe(m)
		case "metrics":
			c.subscribeMetrics(m)
		case "unsubscribe":
			c.unsubscribe(m.ID)
		default:
			c.send(errorMsg{Type: "error", ID: m.ID, Code: http.StatusBadRequest, Message: fmt.Sprintf("unknown message type %q", m.Type)})
		}
	}
}

// sessionRequest builds a request carrying a session cookie, for
// re-checking a session from the websocket.
func sessionRequest(id string) *http.Request {
	r := &http.Request{Header: http.Header{}}
	r.AddCookie(&http.Cookie{Name: CookieName, Value: id})
	return r
}

func (c *wsConn) unsubscribe(id string) {
	c.mu.Lock()
	sub := c.subs[id]
	delete(c.subs, id)
	c.mu.Unlock()
	if sub != nil {
		sub.cancel()
		<-sub.done
	}
}

func (c *wsConn) subscribe(m clientMsg) {
	q, err := compileQuery(m.Filter, m.Sort, m.Page)
	gvr := schema.GroupVersionResource{Group: m.Group, Version: m.Version, Resource: m.Resource}
	c.start(m, func(ctx context.Context, sub *subscription) error {
		if err != nil {
			return &subError{http.StatusBadRequest, fmt.Sprintf("subscribe: %v", err)}
		}
		return c.runSubscription(ctx, sub, m, gvr, q)
	})
}

// subscribeMetrics starts a metrics feed (metrics.go).
func (c *wsConn) subscribeMetrics(m clientMsg) {
	c.start(m, func(ctx context.Context, sub *subscription) error { return c.runMetrics(ctx, sub, m) })
}

// start replaces subscription m.ID with one running run until it ends or
// is unsubscribed; run's error goes to the browser.
func (c *wsConn) start(m clientMsg, run func(ctx context.Context, sub *subscription) error) {
	fail := func(code int, format string, args ...any) {
		c.send(errorMsg{Type: "error", ID: m.ID, Code: code, Message: fmt.Sprintf(format, args...)})
	}
	if m.ID == "" || len(m.ID) > 64 {
		fail(http.StatusBadRequest, "subscribe: an id (at most 64 characters) is required")
		return
	}
	c.unsubscribe(m.ID)
	c.mu.Lock()
	n := len(c.subs)
	c.mu.Unlock()
	if n >= 32 {
		fail(http.StatusTooManyRequests, "subscribe: at most 32 subscriptions per connection")
		return
	}
	ctx, cancel := context.WithCancel(c.ctx)
	sub := &subscription{id: m.ID, cancel: cancel, done: make(chan struct{})}
	c.mu.Lock()
	c.subs[m.ID] = sub
	c.mu.Unlock()
	go func() {
		defer close(sub.done)
		defer cancel()
		if err := run(ctx, sub); err != nil && ctx.Err() == nil {
			var se *subError
			if errors.As(err, &se) {
				fail(se.code, "%s", se.msg)
			} else {
				fail(http.StatusInternalServerError, "%v", err)
			}
			c.mu.Lock()
			if c.subs[m.ID] == sub {
				delete(c.subs, m.ID)
			}
			c.mu.Unlock()
		}
	}()
}

type subError struct {
	code int
	msg  string
}

func (e *subError) Error() string { return e.msg }

// checkKind verifies through the user's discovery that the kind is served
// and whether it is namespaced.
func checkKind(t *target, gvr schema.GroupVersionResource) (bool, error) {
	if gvr.Version == "" || gvr.Resource == "" {
		return false, &subError{http.StatusBadRequest, "subscribe: version and resource are required"}
	}
	gv := gvr.GroupVersion().String()
	list, err := t.discovery.ServerResourcesForGroupVersion(gv)
	if err != nil {
		return false, &subError{http.StatusNotFound, fmt.Sprintf("unknown kind %s: group version %s is not served", gvr.Resource, gv)}
	}
	for _, r := range list.APIResources {
		if r.Name == gvr.Resource {
			return r.Namespaced, nil
		}
	}
	return false, &subError{http.StatusNotFound, fmt.Sprintf("unknown kind: %s is not served in %s", gvr.Resource, gv)}
}

func (c *wsConn) runSubscription(ctx context.Context, sub *subscription, m clientMsg, gvr schema.GroupVersionResource, q *query) error {
	t, err := c.s.resolveTarget(ctx, c.sess, m.Cluster)
	if err != nil {
		var se *statusError
		if errors.As(err, &se) {
			return &subError{se.code, se.msg}
		}
		return err
	}
	namespaced, err := checkKind(t, gvr)
	if err != nil {
		return err
	}
	ns := m.Namespace
	if !namespaced {
		ns = ""
	}
	// The shared cache reads with the backend's identity, so every
	// subscription is authorized as the user first, as list and watch.
	az := &subAuthz{gvr: gvr, ns: ns, namespaced: namespaced, t: t}
	for _, verb := range reviewVerbs {
		ok, err := canI(ctx, t.client, verb, gvr, ns, "")
		if err != nil {
			return fmt.Errorf("access review: %w", err)
		}
		if !ok {
			return &subError{http.StatusForbidden, az.denied(c.sess.user, verb)}
		}
	}
	// From now on the re-authorizer checks the subscription again on
	// every RBAC change and every ReauthInterval.
	c.s.startReauth()
	sub.authz.Store(az)
	notify := make(chan struct{}, 1)
	kc, err := t.cache.acquire(ctx, gvr, notify)
	if err != nil {
		return err
	}
	defer t.cache.release(kc, notify)

	sent := make(map[string]string, len(m.Known))
	for k, rv := range m.Known {
		sent[k] = rv
	}
	first := true
	var lastOrder []string
	lastTotal := -1
	for {
		seq := kc.seq.Load()
		page, total := q.run(kc.list(ns))
		msg := pageMsg{Type: "page", ID: m.ID, Seq: seq, Total: total, Offset: q.page.Offset,
			Order: make([]string, len(page)), Upsert: []map[string]any{}, Remove: []string{}}
		inPage := make(map[string]bool, len(page))
		for i, o := range page {
			k := objectKey(o)
			msg.Order[i] = k
			inPage[k] = true
			if rv := o.GetResourceVersion(); sent[k] != rv {
				msg.Upsert = append(msg.Upsert, o.Object)
				sent[k] = rv
			}
		}
		for k := range sent {
			if !inPage[k] {
				msg.Remove = append(msg.Remove, k)
				delete(sent, k)
			}
		}
		if first || len(msg.Upsert) > 0 || len(msg.Remove) > 0 || total != lastTotal || !equalStrings(lastOrder, msg.Order) {
			c.sendSub(ctx, msg)
			first = false
		}
		lastOrder, lastTotal = msg.Order, total
		select {
		case <-ctx.Done():
			return nil
		case <-notify:
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(minPageInterval):
		}
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
