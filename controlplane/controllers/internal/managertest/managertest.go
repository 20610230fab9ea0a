// Package managertest runs controller managers for tests that stop one in
// the middle of its work and start another.
package managertest

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/skiffhq/skiff/controlplane/controllers/manager"
	"k8s.io/client-go/rest"
)

// Start runs a controller manager with the named controllers against cfg,
// its log discarded, and returns a function that stops it and waits for
// it to end.
func Start(t testing.TB, cfg *rest.Config, controllers ...string) (stop func()) {
	t.Helper()
	m, err := manager.New(manager.Config{RestConfig: cfg, Controllers: controllers, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = m.Run(ctx); close(done) }()
	return func() { cancel(); <-done }
}
