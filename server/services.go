package server

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/skiffhq/skiff/controlplane/authz"
	"github.com/skiffhq/skiff/controlplane/authz/bootstrap"
	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/controllers/kubernetesservice"
	"github.com/skiffhq/skiff/controlplane/serviceip"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// serviceRepairInterval is how often the service ranges are reconciled
// with the stored Services after the pass at startup.
const serviceRepairInterval = 3 * time.Minute

// setupServices attaches cluster IP and node port allocation to services.
func (s *Server) setupServices() error {
	a, err := serviceip.New(serviceip.Config{Store: s.store, ServiceCIDR: s.cfg.ServiceCIDR, Logger: s.cfg.Logger})
	if err != nil {
		return fmt.Errorf("service ranges: %w", err)
	}
	s.services = a
	if res, ok := s.api.Registry().Get("", "v1", "services"); ok {
		// Upstream fills and drops type-dependent fields before validation.
		prev := res.Hooks.PrepareForUpdate
		res.Hooks.PrepareForUpdate = func(ctx context.Context, obj, old runtime.Object) {
			if prev != nil {
				prev(ctx, obj, old)
			}
			serviceip.PrepareForUpdate(obj, old)
		}
	}
	s.api.AddStorageHook(schema.GroupResource{Resource: "services"}, a)
	return nil
}

// disabled reports whether the component name was switched off.
func (s *Server) disabled(name string) bool {
	return slices.Contains(s.cfg.Disable, name)
}

// runController runs c in the background until ctx ends.
func (s *Server) runController(ctx context.Context, c controllers.Controller, workers int) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := c.Run(ctx, workers); err != nil && ctx.Err() == nil {
			s.log.Error("controller stopped", "controller", c.Name(), "err", err)
		}
	}()
}

// componentClient returns a clientset with its own identity.
func (s *Server) componentClient(user string, groups ...string) (kubernetes.Interface, error) {
	rc, err := s.ComponentConfig(user, groups)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(rc)
}

func (s *Server) kubernetesServiceController() (*kubernetesservice.Controller, error) {
	cs, err := s.componentClient(bootstrap.UserKubernetesService)
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(s.listener.Addr().String())
	p, _ := strconv.Atoi(port)
	cfg := kubernetesservice.Config{
		Client:    cs,
		ClusterIP: s.services.FirstIP().String(),
		Address:   s.kubernetesEndpointAddress(),
		Port:      int32(p),
		Logger:    s.cfg.Logger,
	}
	if s.haEnabled() {
		// Every server's identity Lease, read with the server's own
		// loopback identity (the controller's may not read Leases).
		peers, err := s.componentClient("system:apiserver", authz.SystemMasters)
		if err != nil {
			return nil, err
		}
		cfg.Peers = s.peerAddresses(peers)
	}
	return kubernetesservice.New(cfg), nil
}

// kubernetesEndpointAddress is this server's address in the `kubernetes`
// Endpoints: in HA the address the other servers reach it at.
func (s *Server) kubernetesEndpointAddress() string {
	if s.haEnabled() {
		return s.advertiseAddress()
	}
	return advertiseAddress(s.cfg.BindAddress)
}

// ensureKubernetesService creates the `kubernetes` Service, Endpoints and
// EndpointSlice at startup (a repair pass first, so that the Service's
// address is known to be reserved consistently).
func (s *Server) ensureKubernetesService(ctx context.Context) error {
	if err := s.services.Repair(ctx); err != nil {
		s.log.Warn("service range repair at startup failed", "err", err)
	}
	c, err := s.kubernetesServiceController()
	if err != nil {
		return err
	}
	// Servers sharing one etcd reconcile the same objects at start: a
	// conflict means another wrote first; read again and retry. Several
	// servers starting together can keep winning over one another, so a
	// conflict that outlasts the retries is left to the periodic loop
	// (startKubernetesService) rather than failing the start.
	err = retry.RetryOnConflict(bootstrapConflictBackoff, func() error { return c.Reconcile(ctx) })
	if apierrors.IsConflict(err) {
		s.log.Warn("kubernetes service still contended at startup; the controller will reconcile it", "err", err)
		return nil
	}
	return err
}

// bootstrapConflictBackoff spreads the retries of servers that start
// together against one etcd (jitter makes them stop colliding).
var bootstrapConflictBackoff = wait.Backoff{Steps: 8, Duration: 20 * time.Millisecond, Factor: 2, Jitter: 1}

// startServiceRepair reconciles the service ranges periodically.
func (s *Server) startServiceRepair(ctx context.Context) {
	if s.disabled("service-range-repair") {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(serviceRepairInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := s.services.Repair(ctx); err != nil && ctx.Err() == nil {
					s.log.Error("service range repair failed", "err", err)
				}
			}
		}
	}()
}

// startKubernetesService keeps the `kubernetes` Service and its endpoints.
func (s *Server) startKubernetesService(ctx context.Context) {
	if s.disabled(kubernetesservice.Name) {
		return
	}
	c, err := s.kubernetesServiceController()
	if err != nil {
		s.log.Error("kubernetes service controller", "err", err)
		return
	}
	s.runController(ctx, c, 1)
}

// advertiseAddress is the address other components reach the API server
// at: the bind address when it is specific, else the first global unicast
// address of this host, else loopback.
func advertiseAddress(bind string) string {
	if ip := net.ParseIP(bind); ip != nil && !ip.IsUnspecified() {
		return ip.String()
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
				return n.IP.String()
			}
		}
	}
	return "127.0.0.1"
}
