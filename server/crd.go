package server

import (
	"context"
	"fmt"

	"github.com/skiffhq/skiff/controlplane/apiserver/crd"
	"github.com/skiffhq/skiff/controlplane/authz/bootstrap"
)

// startCRDController serves CustomResourceDefinitions: it returns once the
// CRDs that already exist are served.
func (s *Server) startCRDController(ctx context.Context) error {
	cfg, err := s.ComponentConfig(bootstrap.UserCRDController, nil)
	if err != nil {
		return fmt.Errorf("crd controller identity: %w", err)
	}
	c, err := crd.NewController(cfg, s.api.Registry(), s.cfg.Logger)
	if err != nil {
		return err
	}
	if err := c.Start(ctx); err != nil {
		return fmt.Errorf("crd controller: %w", err)
	}
	return nil
}
