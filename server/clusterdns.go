package server

import (
	"net"
	"strconv"
	"sync"

	"github.com/skiffhq/skiff/controlplane/authz"
	"github.com/skiffhq/skiff/controlplane/authz/bootstrap"
	"github.com/skiffhq/skiff/controlplane/controllers/kubernetesservice"
	"github.com/skiffhq/skiff/nodeagent/agent"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// clusterDNS publishes the DNS add-on as the kube-system/kube-dns Service
// once, for the first node agent this process runs.
type clusterDNS struct {
	once sync.Once
	mu   sync.Mutex
	addr string // host:port of this server's endpoint, once published
}

// endpoint is this server's kube-dns endpoint (host:port), "" before the
// node agent gave it one.
func (c *clusterDNS) endpoint() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addr
}

// publishClusterDNS makes the cluster DNS IP reach the DNS add-on from
// pods on any node: the add-on also listens on the pod bridge's gateway of
// this process's node agent, and kube-system/kube-dns (ClusterIP = the
// cluster DNS IP, port 53 UDP and TCP) has that gateway as an endpoint, so
// the service proxy DNATs pods' queries there (pods on other nodes reach
// it over the pod routes). Only the first agent is used; an agent without
// a pod network (hollow nodes) publishes nothing. A server with
// --disable-agent publishes its own address instead (startNodeAgent).
func (s *Server) publishClusterDNS(a *agent.Agent) {
	if a.Network() == nil || a.Network().Gateway() == nil {
		return
	}
	s.serveClusterDNS(a.Network().Gateway().String())
}

// serveClusterDNS serves the DNS add-on on host and runs the kube-dns
// controller with host as this server's endpoint. In HA every server with
// a node agent does so: each publishes its endpoint in its identity Lease
// and lists every fresh one, so all write the same Endpoints (each
// writing only its own would have them overwrite one another without
// end).
func (s *Server) serveClusterDNS(host string) {
	if s.dns == nil || s.disabled(kubernetesservice.Name) {
		return
	}
	s.clusterDNS.once.Do(func() {
		port := s.cfg.DNSPort
		if port == 0 {
			port = 53
		}
		s.dns.ServeOn(s.runCtx, host)
		cs, err := s.componentClient(bootstrap.UserKubernetesService)
		if err != nil {
			s.log.Error("kube-dns service", "err", err)
			return
		}
		target := intstr.FromInt32(int32(port))
		cfg := kubernetesservice.Config{
			Client:    cs,
			Namespace: metav1.NamespaceSystem,
			Service:   bootstrap.KubeDNSService,
			// Upstream's kube-dns labels; `kubectl cluster-info` lists
			// services labelled kubernetes.io/cluster-service.
			Labels:    map[string]string{"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "SkiffDNS"},
			ClusterIP: s.cfg.ClusterDNS,
			Address:   host,
			Ports: []corev1.ServicePort{
				{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53, TargetPort: target},
				{Name: "dns-tcp", Protocol: corev1.ProtocolTCP, Port: 53, TargetPort: target},
			},
			Logger: s.cfg.Logger,
		}
		if s.haEnabled() {
			// Read with the server's own loopback identity, as for the
			// `kubernetes` endpoints.
			peers, err := s.componentClient("system:apiserver", authz.SystemMasters)
			if err != nil {
				s.log.Error("kube-dns service", "err", err)
				return
			}
			cfg.Peers = s.leaseAddresses(peers, dnsAddressAnnotation, strconv.Itoa(port), "cluster DNS")
		}
		endpoint := net.JoinHostPort(host, strconv.Itoa(port))
		s.clusterDNS.mu.Lock()
		s.clusterDNS.addr = endpoint
		s.clusterDNS.mu.Unlock()
		s.log.Info("publishing cluster DNS", "service", "kube-system/"+bootstrap.KubeDNSService, "clusterIP", s.cfg.ClusterDNS, "endpoint", endpoint)
		s.runController(s.runCtx, kubernetesservice.New(cfg), 1)
	})
}
