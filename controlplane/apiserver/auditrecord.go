package apiserver

import (
	"context"
	"net/http"
	"sync"
)

// AuditRecord carries what the later stages of the request chain decide
// (the effective user after impersonation, the authorization decision)
// back to an audit middleware installed with Config.Audit, which runs
// before them.
type AuditRecord struct {
	mu      sync.Mutex
	user    *UserInfo
	decided bool
	allowed bool
	reason  string
}

type auditRecordKey struct{}

// WithAuditRecord stores rec in ctx for the later stages to fill.
func WithAuditRecord(ctx context.Context, rec *AuditRecord) context.Context {
	return context.WithValue(ctx, auditRecordKey{}, rec)
}

// Authorization returns the user the request was authorized as and the
// decision; decided is false when the request never reached authorization.
func (a *AuditRecord) Authorization() (user *UserInfo, decided, allowed bool, reason string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.user, a.decided, a.allowed, a.reason
}

// auditAuthorization records the authorization decision of the request
// in ctx, if an audit middleware asked for it.
func auditAuthorization(ctx context.Context, allowed bool, reason string) {
	a, ok := ctx.Value(auditRecordKey{}).(*AuditRecord)
	if !ok {
		return
	}
	u, _ := UserFrom(ctx)
	a.mu.Lock()
	a.user, a.decided, a.allowed, a.reason = u, true, allowed, reason
	a.mu.Unlock()
}

// Middleware wraps an http.Handler (the audit log, for example).
type Middleware func(http.Handler) http.Handler
