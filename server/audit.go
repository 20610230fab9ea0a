package server

import (
	"context"
	"fmt"

	"github.com/skiffhq/skiff/controlplane/apiserver"
	"github.com/skiffhq/skiff/controlplane/audit"
)

// openAudit starts the audit log when --audit-log-path is set; the log is
// closed when ctx ends (after the HTTPS server has shut down).
func (s *Server) openAudit(ctx context.Context) (apiserver.Middleware, error) {
	if s.cfg.AuditLogPath == "" {
		return nil, nil
	}
	policy := audit.DefaultPolicy()
	if s.cfg.AuditPolicyFile != "" {
		p, err := audit.LoadPolicy(s.cfg.AuditPolicyFile)
		if err != nil {
			return nil, fmt.Errorf("--audit-policy-file: %w", err)
		}
		policy = p
	}
	l, err := audit.Open(s.cfg.AuditLogPath, policy, s.cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("--audit-log-path: %w", err)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		<-ctx.Done()
		if err := l.Close(); err != nil {
			s.log.Error("close audit log", "err", err)
		}
	}()
	s.log.Info("audit log enabled", "path", s.cfg.AuditLogPath)
	return l.Middleware, nil
}
