package server

import (
	"context"
	"fmt"
	"time"

	"github.com/skiffhq/skiff/controlplane/encryption"
)

// setupSecretsEncryption installs the Secret encryption transformer on the
// store (before the watch cache loads) and reloads its configuration when
// `skiff secrets-encrypt` changes the file.
func (s *Server) setupSecretsEncryption(ctx context.Context) error {
	if !s.cfg.SecretsEncryption {
		return nil
	}
	c, err := encryption.LoadOrCreate(s.cfg.DataDir)
	if err != nil {
		return fmt.Errorf("secrets encryption: %w", err)
	}
	t, err := encryption.New(c)
	if err != nil {
		return fmt.Errorf("secrets encryption: %w", err)
	}
	s.store.SetTransformer(t)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t.Watch(ctx, s.cfg.DataDir, time.Second, s.log.With("component", "secrets-encryption"))
	}()
	s.log.Info("secrets encryption enabled", "writeKey", t.State().WriteKey)
	return nil
}
