package server

import (
	"context"
	"fmt"
	"os"

	"github.com/skiffhq/skiff/controlplane/encryption"
	"github.com/skiffhq/skiff/migrations"
)

// runMigrations runs the pending migrations of stored state before the
// watch cache loads (see migrations/). The lock in etcd makes servers
// starting together take turns; `--disable migrations` skips them (then
// `skiff migrate` runs them).
func (s *Server) runMigrations(ctx context.Context) error {
	if s.disabled("migrations") {
		return nil
	}
	env := migrations.Env{Etcd: s.etcdCli, Logger: s.log.With("component", "migrations")}
	if s.cfg.SecretsEncryption {
		c, err := encryption.LoadOrCreate(s.cfg.DataDir)
		if err != nil {
			return fmt.Errorf("migrations: %w", err)
		}
		t, err := encryption.New(c)
		if err != nil {
			return fmt.Errorf("migrations: %w", err)
		}
		env.Encryption = migrations.FromEncryption(t)
	}
	host, _ := os.Hostname()
	r := &migrations.Runner{Env: env, Holder: "skiff-server@" + host}
	done, err := r.Run(ctx)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if len(done) > 0 {
		s.log.Info("migrations ran", "names", done)
	}
	return nil
}
