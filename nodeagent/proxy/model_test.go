package proxy

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func svc(name string, mut func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.43.0.10",
			Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, NodePort: 30080}}},
	}
	if mut != nil {
		mut(s)
	}
	return s
}

type epSpec struct {
	ip                          string
	node                        string
	ready, serving, terminating *bool
}

func slice(svcName string, port int32, eps ...epSpec) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: svcName + "-x", Labels: map[string]string{discoveryv1.LabelServiceName: svcName}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(port)}},
	}
	for _, e := range eps {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{e.ip}, NodeName: ptr.To(e.node),
			Conditions: discoveryv1.EndpointConditions{Ready: e.ready, Serving: e.serving, Terminating: e.terminating}})
	}
	return s
}

var yes, no = ptr.To(true), ptr.To(false)

func eps(l []Endpoint) string { return fmt.Sprint(l) }

func TestBuildServicePorts(t *testing.T) {
	ready := func(ip, node string) epSpec { return epSpec{ip: ip, node: node, ready: yes} }
	termServing := func(ip, node string) epSpec {
		return epSpec{ip: ip, node: node, ready: no, serving: yes, terminating: yes}
	}
	termNotServing := func(ip, node string) epSpec {
		return epSpec{ip: ip, node: node, ready: no, serving: no, terminating: yes}
	}
	for _, tc := range []struct {
		name                   string
		svc                    *corev1.Service
		slices                 []*discoveryv1.EndpointSlice
		cluster, local, all    string
		hasEndpoints, extLocal bool
		nodePort               int32
		affinity               time.Duration
	}{
		{name: "ready endpoints, terminating ignored", svc: svc("a", nil),
			slices:  []*discoveryv1.EndpointSlice{slice("a", 8080, ready("10.42.0.3", "me"), ready("10.42.1.3", "other"), termServing("10.42.0.9", "me"))},
			cluster: "[10.42.0.3:8080 10.42.1.3:8080]", local: "[10.42.0.3:8080]", all: "[10.42.0.3:8080 10.42.1.3:8080]", hasEndpoints: true},
		{name: "serving terminating endpoints only as last resort", svc: svc("a", nil),
			slices:  []*discoveryv1.EndpointSlice{slice("a", 8080, termServing("10.42.0.9", "me"), termNotServing("10.42.0.8", "me"))},
			cluster: "[10.42.0.9:8080]", local: "[10.42.0.9:8080]", all: "[10.42.0.9:8080]", hasEndpoints: true},
		{name: "no endpoints", svc: svc("a", nil), slices: []*discoveryv1.EndpointSlice{slice("a", 8080, termNotServing("10.42.0.8", "me"))},
			cluster: "[]", local: "[]", all: "[]"},
		{name: "nil ready counts as ready", svc: svc("a", nil), slices: []*discoveryv1.EndpointSlice{slice("a", 8080, epSpec{ip: "10.42.0.3", node: "x"})},
			cluster: "[10.42.0.3:8080]", local: "[]", all: "[10.42.0.3:8080]", hasEndpoints: true},
		{name: "internalTrafficPolicy Local", svc: svc("a", func(s *corev1.Service) {
			s.Spec.InternalTrafficPolicy = ptr.To(corev1.ServiceInternalTrafficPolicyLocal)
		}), slices: []*discoveryv1.EndpointSlice{slice("a", 8080, ready("10.42.1.3", "other"))},
			cluster: "[]", local: "[]", all: "[10.42.1.3:8080]", hasEndpoints: true},
		{name: "NodePort with externalTrafficPolicy Local", svc: svc("a", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}), slices: []*discoveryv1.EndpointSlice{slice("a", 8080, ready("10.42.1.3", "other"), ready("10.42.0.3", "me"))},
			cluster: "[10.42.0.3:8080 10.42.1.3:8080]", local: "[10.42.0.3:8080]", all: "[10.42.0.3:8080 10.42.1.3:8080]",
			hasEndpoints: true, extLocal: true, nodePort: 30080},
		{name: "ClusterIP type has no node port", svc: svc("a", func(s *corev1.Service) { s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal }),
			slices: nil, cluster: "[]", local: "[]", all: "[]"},
		{name: "affinity default timeout", svc: svc("a", func(s *corev1.Service) { s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP }),
			cluster: "[]", local: "[]", all: "[]", affinity: 3 * time.Hour},
		{name: "affinity timeout", svc: svc("a", func(s *corev1.Service) {
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
			s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](60)}}
		}), cluster: "[]", local: "[]", all: "[]", affinity: time.Minute},
		{name: "other service's slice and other port name ignored", svc: svc("a", nil), slices: []*discoveryv1.EndpointSlice{
			slice("b", 8080, ready("10.42.0.3", "me")),
			func() *discoveryv1.EndpointSlice {
				s := slice("a", 9090, ready("10.42.0.4", "me"))
				s.Ports[0].Name = ptr.To("metrics")
				return s
			}(),
		}, cluster: "[]", local: "[]", all: "[]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sps := BuildServicePorts([]*corev1.Service{tc.svc}, tc.slices, "me")
			if len(sps) != 1 {
				t.Fatalf("%d service ports", len(sps))
			}
			sp := sps[0]
			if got := eps(sp.Cluster); got != tc.cluster {
				t.Errorf("cluster = %s, want %s", got, tc.cluster)
			}
			if got := eps(sp.Local); got != tc.local {
				t.Errorf("local = %s, want %s", got, tc.local)
			}
			if got := eps(sp.All); got != tc.all {
				t.Errorf("all = %s, want %s", got, tc.all)
			}
			if sp.HasEndpoints != tc.hasEndpoints || sp.ExternalLocal != tc.extLocal || sp.NodePort != tc.nodePort || sp.Affinity != tc.affinity {
				t.Errorf("hasEndpoints=%v extLocal=%v nodePort=%d affinity=%v; want %v %v %d %v",
					sp.HasEndpoints, sp.ExternalLocal, sp.NodePort, sp.Affinity, tc.hasEndpoints, tc.extLocal, tc.nodePort, tc.affinity)
			}
			if sp.Key() != "ns/a/tcp/80" {
				t.Errorf("key %s", sp.Key())
			}
		})
	}
}

func TestBuildServicePortsSkips(t *testing.T) {
	sps := BuildServicePorts([]*corev1.Service{
		svc("headless", func(s *corev1.Service) { s.Spec.ClusterIP = corev1.ClusterIPNone }),
		svc("ext", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeExternalName; s.Spec.ClusterIP = "" }),
		svc("v6", func(s *corev1.Service) { s.Spec.ClusterIP = "fd00::1" }),
		svc("udp", func(s *corev1.Service) {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53})
		}),
	}, nil, "me")
	var keys []string
	for _, sp := range sps {
		keys = append(keys, sp.Key())
	}
	if fmt.Sprint(keys) != "[ns/udp/tcp/80 ns/udp/udp/53]" {
		t.Fatalf("service ports %v", keys)
	}
}
