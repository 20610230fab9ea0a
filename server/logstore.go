package server

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"

	"github.com/go-chi/chi/v5"
	"github.com/skiffhq/skiff/addons/logging/esapi"
	"github.com/skiffhq/skiff/addons/logging/store"
)

// LogStoreName is the --disable name of the embedded log store.
const LogStoreName = "logstore"

// LogsPath is where the Elasticsearch-compatible API of the embedded log
// store is served on the API server (non-resource URLs under RBAC).
const LogsPath = "/logs"

// logsAddon holds the embedded log store of a server.
type logsAddon struct {
	store *store.Store
}

// startLogStore opens the embedded log store (addons/logging/store) in
// <data-dir>/logs and serves its Elasticsearch-compatible API under /logs/
// on the API server. It must run before the API server's handler is built.
func (s *Server) startLogStore(ctx context.Context) error {
	if s.disabled(LogStoreName) {
		return nil
	}
	st, err := store.Open(store.Options{
		Dir:      filepath.Join(s.cfg.DataDir, "logs"),
		MaxAge:   s.cfg.LogsMaxAge,
		MaxBytes: s.cfg.LogsMaxBytes,
		Logger:   s.cfg.Logger,
	})
	if err != nil {
		return fmt.Errorf("log store: %w", err)
	}
	s.logs.store = st
	h := http.StripPrefix(LogsPath, &esapi.Handler{Store: st, Logger: s.cfg.Logger})
	s.api.HandleExtra(func(r chi.Router) {
		r.Handle(LogsPath, h)
		r.Handle(LogsPath+"/*", h)
	})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		<-ctx.Done()
		if err := st.Close(); err != nil {
			s.log.Error("close log store", "err", err)
		}
	}()
	return nil
}

// LogStore returns the embedded log store (nil when disabled).
func (s *Server) LogStore() *store.Store { return s.logs.store }
