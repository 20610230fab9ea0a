package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/skiffhq/skiff/addons/logging/esapi"
	"github.com/skiffhq/skiff/addons/logging/store"
	"github.com/skiffhq/skiff/controlplane/authz"
	"k8s.io/client-go/rest"
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
	eh := &esapi.Handler{Store: st, Logger: s.cfg.Logger}
	if s.haEnabled() {
		rc, err := s.componentConfig("system:apiserver", []string{authz.SystemMasters})
		if err != nil {
			return fmt.Errorf("log store: client of the other servers: %w", err)
		}
		client, err := rest.HTTPClientFor(rc)
		if err != nil {
			return fmt.Errorf("log store: client of the other servers: %w", err)
		}
		eh.Peers = &esapi.Peers{List: s.logStorePeers(), Client: client}
	}
	h := http.StripPrefix(LogsPath, eh)
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

// logStorePeers lists the other servers' log store URLs for searches over
// the whole cluster (esapi.Peers): the servers with a fresh identity Lease
// on this server's port (those the `kubernetes` Endpoints list), but this
// one. The list is kept for a few seconds; the client, authenticated as
// a server, is made at first use (the log store starts before the API
// server serves).
func (s *Server) logStorePeers() func(ctx context.Context) ([]string, error) {
	var (
		mu      sync.Mutex
		list    func(ctx context.Context) ([]string, error)
		peers   []string
		fetched time.Time
	)
	_, port, _ := net.SplitHostPort(s.listener.Addr().String())
	self := s.kubernetesEndpointAddress()
	return func(ctx context.Context) ([]string, error) {
		mu.Lock()
		defer mu.Unlock()
		if list != nil && time.Since(fetched) < logPeersTTL {
			return peers, nil
		}
		if list == nil {
			cs, err := s.componentClient("system:apiserver", authz.SystemMasters)
			if err != nil {
				return nil, err
			}
			list = s.leaseAddresses(cs, addressAnnotation, port, "log store")
		}
		hosts, err := list(ctx)
		if err != nil {
			return nil, err
		}
		peers = peers[:0:0]
		for _, h := range hosts {
			if h != self {
				peers = append(peers, "https://"+net.JoinHostPort(h, port)+LogsPath)
			}
		}
		slices.Sort(peers)
		fetched = time.Now()
		return peers, nil
	}
}

// logPeersTTL is how long the list of the other servers is reused.
const logPeersTTL = 5 * time.Second

// LogStore returns the embedded log store (nil when disabled).
func (s *Server) LogStore() *store.Store { return s.logs.store }
