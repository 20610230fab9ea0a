package server

import (
	"context"

	"github.com/skiffhq/skiff/controlplane/controllers/garbagecollector"
	"github.com/skiffhq/skiff/controlplane/controllers/namespace"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
)

// startNamespaceController empties and finalizes terminating namespaces.
func (s *Server) startNamespaceController(ctx context.Context) {
	if s.disabled(namespace.Name) {
		return
	}
	rc, err := s.ComponentConfig("system:controller:namespace-controller", nil)
	if err != nil {
		s.log.Error("namespace controller identity", "err", err)
		return
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		s.log.Error("namespace controller client", "err", err)
		return
	}
	md, err := metadata.NewForConfig(rc)
	if err != nil {
		s.log.Error("namespace controller client", "err", err)
		return
	}
	s.runController(ctx, namespace.New(namespace.Config{Client: cs, Metadata: md, Logger: s.cfg.Logger}), 2)
}

// startGarbageCollector collects dependents of deleted owners.
func (s *Server) startGarbageCollector(ctx context.Context) {
	if s.disabled(garbagecollector.Name) {
		return
	}
	rc, err := s.ComponentConfig("system:controller:generic-garbage-collector", nil)
	if err != nil {
		s.log.Error("garbage collector identity", "err", err)
		return
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		s.log.Error("garbage collector client", "err", err)
		return
	}
	md, err := metadata.NewForConfig(rc)
	if err != nil {
		s.log.Error("garbage collector client", "err", err)
		return
	}
	s.runController(ctx, garbagecollector.New(garbagecollector.Config{Discovery: cs.Discovery(), Metadata: md, Logger: s.cfg.Logger}), 4)
}
