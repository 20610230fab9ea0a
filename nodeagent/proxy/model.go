package proxy

import (
	"crypto/sha256"
	"encoding/base32"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Endpoint is one backend of a service port.
type Endpoint struct {
	IP   net.IP
	Port int32
}

func (e Endpoint) String() string { return e.IP.String() + ":" + strconv.Itoa(int(e.Port)) }

// ServicePort is what the proxy programs for one port of one Service: the
// endpoints chosen for cluster (internal) and external traffic after
// traffic policies and the terminating-endpoint fallback were applied.
type ServicePort struct {
	Namespace, Name, PortName string
	Protocol                  corev1.Protocol
	ClusterIP                 net.IP
	Port                      int32
	NodePort                  int32
	// Affinity is the ClientIP session affinity timeout (0: none).
	Affinity time.Duration
	// Cluster are the endpoints for ClusterIP traffic (local only with
	// internalTrafficPolicy Local).
	Cluster []Endpoint
	// ExternalLocal is set with externalTrafficPolicy Local: NodePort
	// traffic from outside the node goes to Local only.
	ExternalLocal bool
	// All are the cluster-wide endpoints (what host-originated NodePort
	// traffic uses with externalTrafficPolicy Local, as upstream).
	All []Endpoint
	// Local are the endpoints on this node.
	Local []Endpoint
	// HasEndpoints says whether the service has any usable endpoint at
	// all: without, traffic is rejected; with endpoints but none allowed
	// by a Local policy, traffic is dropped (as upstream).
	HasEndpoints bool

	key string // Key, once computed
}

// Key names the service port: namespace/name/protocol/port.
func (sp *ServicePort) Key() string {
	if sp.key == "" {
		sp.key = sp.Namespace + "/" + sp.Name + "/" + strings.ToLower(string(sp.Protocol)) + "/" + strconv.Itoa(int(sp.Port))
	}
	return sp.key
}

// equal says whether a and b program the same objects.
func (sp *ServicePort) equal(o *ServicePort) bool {
	a, b := sp, o
	return a.Key() == b.Key() && a.PortName == b.PortName && a.ClusterIP.Equal(b.ClusterIP) && a.NodePort == b.NodePort &&
		a.Affinity == b.Affinity && a.ExternalLocal == b.ExternalLocal && a.HasEndpoints == b.HasEndpoints &&
		sameEndpoints(a.Cluster, b.Cluster) && sameEndpoints(a.All, b.All) && sameEndpoints(a.Local, b.Local)
}

func sameEndpoints(a, b []Endpoint) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Port != b[i].Port || !a[i].IP.Equal(b[i].IP) {
			return false
		}
	}
	return true
}

// chainName is upstream's naming: a prefix, a hash (the key may be longer
// than a name allows) and the readable key.
func chainName(prefix, key string) string {
	h := sha256.Sum256([]byte(key))
	s := prefix + "-" + base32.StdEncoding.EncodeToString(h[:])[:8] + "-" + key
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// shortName is for sets, whose names are short on older kernels.
func shortName(prefix, key string) string {
	h := sha256.Sum256([]byte(key))
	return prefix + "-" + strings.ToLower(base32.StdEncoding.EncodeToString(h[:])[:16])
}

// protocolNumber is the IP protocol number nftables matches on.
func protocolNumber(p corev1.Protocol) (byte, bool) {
	switch p {
	case corev1.ProtocolTCP, "":
		return 6, true
	case corev1.ProtocolUDP:
		return 17, true
	case corev1.ProtocolSCTP:
		return 132, true
	}
	return 0, false
}

type candidate struct {
	ep                                 Endpoint
	local, ready, serving, terminating bool
}

// BuildServicePorts turns Services and their EndpointSlices into the
// service ports to program for node nodeName. Services without a
// ClusterIP (headless, ExternalName) or with a non-IPv4 ClusterIP are
// skipped; so are slices of other address types.
func BuildServicePorts(services []*corev1.Service, slices []*discoveryv1.EndpointSlice, nodeName string) []*ServicePort {
	bySvc := map[string][]*discoveryv1.EndpointSlice{}
	for _, s := range slices {
		if s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		name := s.Labels[discoveryv1.LabelServiceName]
		if name == "" {
			continue
		}
		bySvc[s.Namespace+"/"+name] = append(bySvc[s.Namespace+"/"+name], s)
	}
	var out []*ServicePort
	for _, svc := range services {
		if svc.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		vip := net.ParseIP(svc.Spec.ClusterIP).To4()
		if vip == nil {
			continue
		}
		var affinity time.Duration
		if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
			affinity = 10800 * time.Second
			if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
				affinity = time.Duration(*c.ClientIP.TimeoutSeconds) * time.Second
			}
		}
		for _, p := range svc.Spec.Ports {
			if _, ok := protocolNumber(p.Protocol); !ok {
				continue
			}
			proto := p.Protocol
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			sp := &ServicePort{
				Namespace: svc.Namespace, Name: svc.Name, PortName: p.Name, Protocol: proto,
				ClusterIP: vip, Port: p.Port, Affinity: affinity,
			}
			if svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
				sp.NodePort = p.NodePort
			}
			var cands []candidate
			seen := map[string]bool{}
			for _, sl := range bySvc[svc.Namespace+"/"+svc.Name] {
				var port *int32
				for _, ep := range sl.Ports {
					epProto := corev1.ProtocolTCP
					if ep.Protocol != nil {
						epProto = *ep.Protocol
					}
					name := ""
					if ep.Name != nil {
						name = *ep.Name
					}
					if name == p.Name && epProto == proto && ep.Port != nil {
						port = ep.Port
						break
					}
				}
				if port == nil {
					continue
				}
				for _, e := range sl.Endpoints {
					if len(e.Addresses) == 0 {
						continue
					}
					ip := net.ParseIP(e.Addresses[0]).To4()
					if ip == nil {
						continue
					}
					c := candidate{ep: Endpoint{IP: ip, Port: *port}}
					c.ready = e.Conditions.Ready == nil || *e.Conditions.Ready
					c.serving = c.ready
					if e.Conditions.Serving != nil {
						c.serving = *e.Conditions.Serving
					}
					c.terminating = e.Conditions.Terminating != nil && *e.Conditions.Terminating
					c.local = e.NodeName != nil && *e.NodeName == nodeName
					if seen[c.ep.String()] {
						continue
					}
					seen[c.ep.String()] = true
					cands = append(cands, c)
				}
			}
			sp.All = pick(cands, false)
			sp.Local = pick(cands, true)
			sp.HasEndpoints = len(sp.All) > 0
			sp.Cluster = sp.All
			if svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal {
				sp.Cluster = sp.Local
			}
			sp.ExternalLocal = sp.NodePort != 0 && svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
			out = append(out, sp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// pick chooses endpoints as upstream's CategorizeEndpoints: the ready ones;
// when none is ready, the serving and terminating ones (a rolling update's
// last pods keep serving rather than the service going dark).
func pick(cands []candidate, localOnly bool) []Endpoint {
	var ready, term []Endpoint
	for _, c := range cands {
		if localOnly && !c.local {
			continue
		}
		switch {
		case c.ready && !c.terminating:
			ready = append(ready, c.ep)
		case c.serving && c.terminating:
			term = append(term, c.ep)
		}
	}
	out := ready
	if len(out) == 0 {
		out = term
	}
	// By "ip:port" text; the strings are made once (a 10,000-service
	// sync sorts 50,000 endpoints).
	keys := make([]string, len(out))
	for i, ep := range out {
		keys[i] = ep.String()
	}
	sort.Sort(byKey{keys, out})
	return out
}

type byKey struct {
	keys []string
	eps  []Endpoint
}

func (b byKey) Len() int           { return len(b.keys) }
func (b byKey) Less(i, j int) bool { return b.keys[i] < b.keys[j] }
func (b byKey) Swap(i, j int) {
	b.keys[i], b.keys[j] = b.keys[j], b.keys[i]
	b.eps[i], b.eps[j] = b.eps[j], b.eps[i]
}
