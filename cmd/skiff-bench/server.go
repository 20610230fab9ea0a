package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/skiffhq/skiff/server"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// startServer starts an in-process Skiff server without a node agent on
// loopback (quiet logs unless cfg has a Logger; cfg's other fields as
// given) and returns it with an unthrottled admin client. The caller stops
// the server.
func startServer(ctx context.Context, cfg server.Config) (*server.Server, *rest.Config, kubernetes.Interface, error) {
	cfg.BindAddress, cfg.DisableAgent = "127.0.0.1", true
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.EtcdLogLevel == "" {
		cfg.EtcdLogLevel = "fatal"
	}
	srv, err := server.Start(ctx, cfg)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("start server: %w", err)
	}
	rc, err := srv.AdminConfig()
	if err != nil {
		srv.Stop()
		return nil, nil, nil, err
	}
	rc.QPS, rc.Burst = -1, 0
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		srv.Stop()
		return nil, nil, nil, err
	}
	return srv, rc, cs, nil
}
