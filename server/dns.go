package server

import (
	"context"
	"net"
	"strconv"

	"github.com/skiffhq/skiff/addons/dns"
	"github.com/skiffhq/skiff/controlplane/authz/bootstrap"
	"k8s.io/client-go/kubernetes"
)

// DNSName is the --disable name of the cluster DNS add-on.
const DNSName = "dns"

// startDNS runs the cluster DNS add-on (addons/dns) with its own identity:
// always on the loopback listen address, and on the cluster DNS IP once the
// node network makes that address local.
func (s *Server) startDNS(ctx context.Context) {
	if s.disabled(DNSName) {
		return
	}
	rc, err := s.ComponentConfig(bootstrap.UserDNS, nil)
	if err != nil {
		s.log.Error("dns identity", "err", err)
		return
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		s.log.Error("dns client", "err", err)
		return
	}
	port := s.cfg.DNSPort
	if port == 0 {
		port = 53
	}
	listen := s.cfg.DNSListenAddress
	if listen == "" {
		listen = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	d, err := dns.New(dns.Options{
		Client:         cs,
		Listen:         []string{listen},
		ClusterDNS:     s.cfg.ClusterDNS,
		ClusterDNSPort: port,
		Upstreams:      s.cfg.DNSUpstreams,
		Registerer:     s.api.MetricsRegistry(),
		Logger:         s.cfg.Logger,
	})
	if err != nil {
		s.log.Error("dns", "err", err)
		return
	}
	s.dns = d
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := d.Run(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("dns stopped", "err", err)
		}
	}()
}

// DNS returns the cluster DNS add-on (nil when disabled or not started).
func (s *Server) DNS() *dns.Server { return s.dns }
