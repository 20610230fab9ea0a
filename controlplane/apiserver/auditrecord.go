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
	// annotations are added by admission plugins (AddAuditAnnotation).
	annotations map[string]string
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

// Annotations returns a copy of the annotations later stages added.
func (a *AuditRecord) Annotations() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.annotations) == 0 {
		return nil
	}
	out := make(map[string]string, len(a.annotations))
	for k, v := range a.annotations {
		out[k] = v
	}
	return out
}

// AddAuditAnnotation attaches key=value to the audit event of the request
// in ctx (upstream's audit annotations, e.g. from PodSecurity's audit
// mode). The first value set for a key wins; without an audit log it does
// nothing.
func AddAuditAnnotation(ctx context.Context, key, value string) {
	a, ok := ctx.Value(auditRecordKey{}).(*AuditRecord)
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.annotations == nil {
		a.annotations = map[string]string{}
	}
	if _, dup := a.annotations[key]; !dup {
		a.annotations[key] = value
	}
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
